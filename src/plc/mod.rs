//! PLC output over Modbus TCP (tokio-modbus client): for every verdict, write the result block to holding
//! registers and, for a reject, pulse the reject coil.
//!
//! Register map (base addresses from `[plc]`):
//! - holding registers `result_register + 0..4`: result code (1 pass, 2 reject-vision, 3 reject-acoustic,
//!   4 reject-fail-safe, 5 error), inspection counter (results delivered, wrapping at 65536), part sequence
//!   number high word, low word;
//! - coil `reject_coil`: high for `reject_pulse_ms` for each rejected part.
//!
//! Every Modbus call runs under `timeout_ms` (tokio-modbus has no timeout of its own). When a call fails or times
//! out the link is dropped and re-opened with exponential backoff (`reconnect_min_ms` .. `reconnect_max_ms`);
//! the outage is logged once and counted. Policy for parts judged during an outage: they are recorded at once
//! (the store never waits for the PLC); their results are NOT replayed later, since a late pulse would hit a
//! different part on the belt. Each is counted as undelivered and its record becomes REJECT `plc_undelivered`.
//! [`sim`] is the in-process PLC of the demo.

pub mod sim;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{Receiver, Sender};
use tokio::time::{Instant, sleep, timeout};
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::{Slave, tcp};

use crate::clock::Clock;
use crate::config::PlcConfig;
use crate::decision::ResultCode;
use crate::metrics::{Counters, bump};
use crate::store::{PlcOutcome, StoreMsg};

/// One verdict to deliver.
#[derive(Debug, Clone)]
pub struct PlcJob {
    pub part_id: String,
    pub seq: u64,
    pub code: ResultCode,
    pub reject: bool,
}

/// The result block as written to the holding registers.
pub fn result_block(code: ResultCode, counter: u16, seq: u64) -> [u16; 4] {
    [code as u16, counter, (seq >> 16) as u16, seq as u16]
}

/// Runs a Modbus call under a timeout, folding "timed out", "link broke" and "device refused" into one message.
pub async fn call<T, E1: std::fmt::Display, E2: std::fmt::Debug>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<Result<T, E2>, E1>>,
) -> Result<T, String> {
    match timeout(limit, fut).await {
        Err(_) => Err(format!("{what}: no answer within {} ms", limit.as_millis())),
        Ok(Err(link)) => Err(format!("{what}: link error: {link}")),
        Ok(Ok(Err(exception))) => Err(format!("{what}: PLC refused: {exception:?}")),
        Ok(Ok(Ok(value))) => Ok(value),
    }
}

/// Opens a Modbus TCP connection under a timeout.
pub async fn connect(addr: SocketAddr, unit_id: u8, limit: Duration) -> Result<Context, String> {
    match timeout(limit, tcp::connect_slave(addr, Slave(unit_id))).await {
        Err(_) => Err(format!(
            "connect to {addr}: no answer within {} ms",
            limit.as_millis()
        )),
        Ok(Err(e)) => Err(format!("connect to {addr}: {e}")),
        Ok(Ok(ctx)) => Ok(ctx),
    }
}

/// Checks that a PLC answers at `addr` (for `station validate`): connect and read the result block.
pub async fn probe(config: &PlcConfig, addr: SocketAddr) -> Result<(), String> {
    let limit = Duration::from_millis(config.timeout_ms);
    let mut ctx = connect(addr, config.unit_id, limit).await?;
    call(
        limit,
        "read result registers",
        ctx.read_holding_registers(config.result_register, 4),
    )
    .await?;
    Ok(())
}

/// A Modbus link that reconnects with backoff.
pub struct Link {
    addr: SocketAddr,
    unit_id: u8,
    limit: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    ctx: Option<Context>,
    backoff: Duration,
    next_attempt: Instant,
    down_since: Option<Instant>,
    counters: Arc<Counters>,
}

impl Link {
    pub fn new(config: &PlcConfig, addr: SocketAddr, counters: Arc<Counters>) -> Self {
        let min_backoff = Duration::from_millis(config.reconnect_min_ms);
        Self {
            addr,
            unit_id: config.unit_id,
            limit: Duration::from_millis(config.timeout_ms),
            min_backoff,
            max_backoff: Duration::from_millis(config.reconnect_max_ms),
            ctx: None,
            backoff: min_backoff,
            next_attempt: Instant::now(),
            down_since: None,
            counters,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// The open connection, reconnecting if the backoff allows; None while the link is down.
    /// Returns `(context, freshly_connected)`.
    pub async fn get(&mut self) -> Option<(&mut Context, bool)> {
        let mut fresh = false;
        if self.ctx.is_none() {
            if Instant::now() < self.next_attempt {
                return None;
            }
            match connect(self.addr, self.unit_id, self.limit).await {
                Ok(ctx) => {
                    self.ctx = Some(ctx);
                    fresh = true;
                    self.backoff = self.min_backoff;
                    if let Some(since) = self.down_since.take() {
                        tracing::info!(
                            "PLC link {} is back after {:.1} s",
                            self.addr,
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
            bump(&self.counters.plc_outages);
            tracing::warn!(
                "PLC link {} lost: {why}; parts go on being judged and recorded",
                self.addr
            );
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }
}

/// The PLC output task: delivers verdicts in order until the channel closes.
pub async fn run_output(
    config: PlcConfig,
    addr: SocketAddr,
    mut jobs: Receiver<PlcJob>,
    store: Sender<StoreMsg>,
    counters: Arc<Counters>,
    clock: Clock,
) {
    let mut link = Link::new(&config, addr, counters.clone());
    let mut counter: u16 = 0;
    let pulse = Duration::from_millis(config.reject_pulse_ms);
    while let Some(job) = jobs.recv().await {
        let outcome = match deliver(
            &config,
            &mut link,
            &job,
            counter.wrapping_add(1),
            pulse,
            &clock,
        )
        .await
        {
            Ok(actuated_us) => {
                counter = counter.wrapping_add(1);
                bump(&counters.plc_delivered);
                PlcOutcome::Delivered { actuated_us }
            }
            Err(detail) => {
                bump(&counters.plc_undelivered);
                PlcOutcome::Undelivered { detail }
            }
        };
        let msg = StoreMsg::Actuated {
            part_id: job.part_id,
            outcome,
        };
        if store.send(msg).await.is_err() {
            tracing::error!("record writer stopped; PLC outcome not recorded");
        }
    }
}

async fn deliver(
    config: &PlcConfig,
    link: &mut Link,
    job: &PlcJob,
    counter: u16,
    pulse: Duration,
    clock: &Clock,
) -> Result<i64, String> {
    let limit = link.limit();
    let Some((ctx, fresh)) = link.get().await else {
        return Err("PLC link down".into());
    };
    let result: Result<i64, String> = async {
        if fresh {
            // A pulse may have been cut by the outage: start from a released coil.
            call(
                limit,
                "release reject coil",
                ctx.write_single_coil(config.reject_coil, false),
            )
            .await?;
        }
        let block = result_block(job.code, counter, job.seq);
        call(
            limit,
            "write result",
            ctx.write_multiple_registers(config.result_register, &block),
        )
        .await?;
        let actuated_us = clock.now_us();
        if job.reject {
            call(
                limit,
                "set reject coil",
                ctx.write_single_coil(config.reject_coil, true),
            )
            .await?;
            sleep(pulse).await;
            call(
                limit,
                "release reject coil",
                ctx.write_single_coil(config.reject_coil, false),
            )
            .await?;
        }
        Ok(actuated_us)
    }
    .await;
    if let Err(e) = &result {
        link.mark_down(e);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_block_splits_the_sequence_number() {
        assert_eq!(
            result_block(ResultCode::RejectVision, 7, 0x0001_0002),
            [2, 7, 1, 2]
        );
        assert_eq!(
            result_block(ResultCode::Pass, 65535, 70_000),
            [1, 65535, 1, 4464]
        );
    }
}
