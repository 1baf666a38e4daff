//! The PLC: the full handshake of a smart camera over Modbus, in three roles that share one register map
//! ([`map`], documented for controls engineers in docs/PLC.md):
//! - `kind = "tcp"` (role client): the station is a Modbus TCP client of a PLC that is a server;
//! - `kind = "tcp"`, `role = "server"`: the station is a Modbus TCP server polled by the PLC ([`server`]);
//! - `kind = "rtu"`: the station is the Modbus RTU master of a PLC on a serial line;
//! - `kind = "simulated"`: the demo's in-process PLC ([`sim`]), reached as a TCP client.
//!
//! [`handshake`] runs the handshake in one tokio task: triggers with part IDs, result buffer and acknowledge,
//! heartbeats and watchdog, link loss; the reject output ([`output`]) drives the coil from the gate's timing
//! ([`gate`]) on a thread and (TCP client) a connection of its own. [`status`] is what it shows the operator.
//! Every Modbus call runs under `timeout_ms`, waited `slow_answer_retries` more times before it fails
//! (tokio-modbus has no timeout of its own); a failed link is re-opened with backoff (`reconnect_min_ms` ..
//! `reconnect_max_ms`, with jitter), the outage logged once and counted.

pub mod config;
pub mod gate;
pub mod handshake;
pub mod map;
pub mod output;
pub mod server;
pub mod sim;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::timeout;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{Slave, rtu, tcp};

use crate::decision::ResultCode;
use crate::metrics::{Counters, bump};
pub use crate::part::PlcTag;
use crate::part::Seq;
pub use config::{Parity, PlcConfig, PlcLink, RejectTiming, RtuConfig};

pub use handshake::{PlcHandle, PlcInfo, start};

/// One verdict to deliver.
#[derive(Debug, Clone)]
pub struct PlcJob {
    pub part_id: String,
    pub seq: u64,
    pub code: ResultCode,
    pub reject: bool,
}

/// What the orchestrator tells the PLC task, in part order.
#[derive(Debug, Clone)]
pub enum PlcMsg {
    /// A part was triggered (every trigger kind): it enters the gate's shift register.
    Triggered {
        seq: Seq,
        part_id: String,
        at: Instant,
        tag: Option<PlcTag>,
    },
    /// A part's verdict.
    Verdict(PlcJob),
    /// A recipe the PLC asked for is in force from the next part on (`ok`), or was refused.
    Recipe { number: u16, ok: bool },
}

/// A call not tried because the link is down (waiting for the next reconnect attempt).
pub(crate) const LINK_DOWN: &str = "PLC link down";

/// How long a Modbus call may take: `timeout` (`plc.timeout_ms`), then `slow_retries` more periods of it
/// (`plc.slow_answer_retries`) before the call fails and the link counts as down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub timeout: Duration,
    pub slow_retries: u32,
}

impl Limit {
    pub fn of(config: &PlcConfig) -> Limit {
        Limit {
            timeout: Duration::from_millis(config.timeout_ms),
            slow_retries: config.slow_answer_retries,
        }
    }
}

/// Runs a Modbus call under its limit, folding "timed out", "link broke" and "device refused" into one message.
/// A slow answer is waited for once more per retry (the request is not sent again: over TCP it is not lost,
/// only late, and a second request would get the first one's answer), and logged.
pub async fn call<T, E1: std::fmt::Display, E2: std::fmt::Debug>(
    limit: Limit,
    what: &str,
    fut: impl Future<Output = Result<Result<T, E2>, E1>>,
) -> Result<T, String> {
    tokio::pin!(fut);
    let mut waited = 0;
    loop {
        match timeout(limit.timeout, &mut fut).await {
            Err(_) if waited < limit.slow_retries => {
                waited += 1;
                tracing::warn!(
                    "{what}: no answer within {} ms; waiting once more before the link counts as down",
                    limit.timeout.as_millis()
                );
            }
            Err(_) => {
                return Err(format!(
                    "{what}: no answer within {} ms",
                    limit.timeout.as_millis() * u128::from(waited + 1)
                ));
            }
            Ok(Err(link)) => return Err(format!("{what}: link error: {link}")),
            Ok(Ok(Err(exception))) => return Err(format!("{what}: PLC refused: {exception:?}")),
            Ok(Ok(Ok(value))) => return Ok(value),
        }
    }
}

/// Where the station reaches the PLC as a client (master).
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Rtu(RtuConfig),
}

impl Endpoint {
    /// The client endpoint of a link, if the station is a client there.
    pub fn of(link: &PlcLink) -> Option<Endpoint> {
        match link {
            PlcLink::Tcp(addr) => Some(Endpoint::Tcp(*addr)),
            PlcLink::Rtu(rtu) => Some(Endpoint::Rtu(rtu.clone())),
            _ => None,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Rtu(r) => write!(f, "{} ({} baud)", r.device.display(), r.baud_rate),
        }
    }
}

/// Opens a Modbus connection (TCP, or RTU on a serial port) under a timeout.
pub async fn connect(endpoint: &Endpoint, unit_id: u8, limit: Duration) -> Result<Context, String> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            match timeout(limit, tcp::connect_slave(*addr, Slave(unit_id))).await {
                Err(_) => Err(format!(
                    "connect to {addr}: no answer within {} ms",
                    limit.as_millis()
                )),
                Ok(Err(e)) => Err(format!("connect to {addr}: {e}")),
                Ok(Ok(ctx)) => Ok(ctx),
            }
        }
        Endpoint::Rtu(r) => {
            let parity = match r.parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            };
            let stop_bits = if r.stop_bits == 2 {
                tokio_serial::StopBits::Two
            } else {
                tokio_serial::StopBits::One
            };
            let device = r.device.to_string_lossy();
            let port = tokio_serial::SerialStream::open(
                &tokio_serial::new(device.as_ref(), r.baud_rate)
                    .parity(parity)
                    .stop_bits(stop_bits)
                    .data_bits(tokio_serial::DataBits::Eight),
            )
            .map_err(|e| format!("open serial port {device}: {e}"))?;
            Ok(rtu::attach_slave(port, Slave(unit_id)))
        }
    }
}

/// Checks that a PLC answers (for `station validate`): connect and read the command block.
pub async fn probe(config: &PlcConfig, endpoint: &Endpoint) -> Result<(), String> {
    let limit = Limit::of(config);
    let mut ctx = connect(endpoint, config.unit_id, limit.timeout).await?;
    call(
        limit,
        "read the command block",
        ctx.read_holding_registers(config.command_register, map::COMMAND_LEN),
    )
    .await?;
    Ok(())
}

/// A Modbus client link that reconnects with backoff.
pub struct Link {
    /// What it is for, in its log lines ("PLC link", "reject output link").
    name: &'static str,
    endpoint: Endpoint,
    unit_id: u8,
    limit: Limit,
    min_backoff: Duration,
    max_backoff: Duration,
    ctx: Option<Context>,
    backoff: Duration,
    next_attempt: Instant,
    down_since: Option<Instant>,
    /// Outages are counted for the handshake's link only (the output's failures are missed pulses).
    counters: Option<Arc<Counters>>,
}

impl Link {
    /// The handshake's link: its outages are counted.
    pub fn new(config: &PlcConfig, endpoint: Endpoint, counters: Arc<Counters>) -> Self {
        Self::named(config, endpoint, "PLC link", Some(counters))
    }

    /// A second connection to the same PLC, for the reject output.
    pub fn for_output(config: &PlcConfig, endpoint: Endpoint) -> Self {
        Self::named(config, endpoint, "PLC reject output link", None)
    }

    fn named(
        config: &PlcConfig,
        endpoint: Endpoint,
        name: &'static str,
        counters: Option<Arc<Counters>>,
    ) -> Self {
        let min_backoff = Duration::from_millis(config.reconnect_min_ms);
        Self {
            name,
            endpoint,
            unit_id: config.unit_id,
            limit: Limit::of(config),
            min_backoff,
            max_backoff: Duration::from_millis(config.reconnect_max_ms),
            ctx: None,
            backoff: min_backoff,
            next_attempt: Instant::now(),
            down_since: None,
            counters,
        }
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Since when the link is down (None: up, or never tried).
    pub fn down_since(&self) -> Option<Instant> {
        self.down_since
    }

    /// The open connection, reconnecting if the backoff allows; None while the link is down.
    /// Returns `(context, freshly_connected)`.
    pub async fn get(&mut self) -> Option<(&mut Context, bool)> {
        let mut fresh = false;
        if self.ctx.is_none() {
            if Instant::now() < self.next_attempt {
                return None;
            }
            match connect(&self.endpoint, self.unit_id, self.limit.timeout).await {
                Ok(ctx) => {
                    self.ctx = Some(ctx);
                    fresh = true;
                    self.backoff = self.min_backoff;
                    if let Some(since) = self.down_since.take() {
                        tracing::info!(
                            "{} {} is back after {:.1} s",
                            self.name,
                            self.endpoint,
                            since.elapsed().as_secs_f64()
                        );
                    }
                }
                Err(e) => {
                    self.mark_down(&e);
                    return None;
                }
            }
        }
        self.ctx.as_mut().map(|ctx| (ctx, fresh))
    }

    /// Drops the connection after a failure and schedules the next attempt.
    pub fn mark_down(&mut self, why: &str) {
        self.ctx = None;
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            if let Some(counters) = &self.counters {
                bump(&counters.plc_outages);
            }
            tracing::warn!(
                "{} {} lost: {why}; parts go on being judged and recorded",
                self.name,
                self.endpoint
            );
        }
        // Jitter (+-20%) so that stations restarted together do not knock on the PLC in step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = u64::from(nanos) ^ u64::from(std::process::id());
        let jitter = 0.8 + 0.4 * crate::rng::Rng::new(seed).unit();
        self.next_attempt = Instant::now() + self.backoff.mul_f64(jitter);
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }
}
