//! The handshake task: one tokio task that plays the station's side of the register map ([`super::map`]) in every
//! role. Each scan it reads the PLC's command block (client: one Modbus read; server: the served image) every
//! `poll_ms` (at the heartbeat's pace when neither a PLC trigger nor the acknowledge needs more), reacts to it,
//! enters parts and verdicts into the reject gate (driven by [`super::output`]), and writes the result block.
//!
//! - **Triggers** (`trigger.kind = "plc"`): a rising edge of the trigger bit is one part, tagged with the part ID
//!   and encoder count read in the same request. TRIGGER_ACK follows until the PLC drops the bit; a bit held high
//!   never re-fires. A trigger while BUSY (`max_parts_in_flight` parts without a verdict) is refused: flagged,
//!   counted, and the part is recorded REJECT `pipeline_overloaded` and rejected at the gate.
//! - **Results** carry their own part's inspection counter (the trigger's sequence number) and part ID, so they
//!   cannot lag one trigger, and go out in trigger order (a fail-safe verdict that overtakes an inspected part
//!   waits for it). With `result_ack`, RESULT_READY stays set until the PLC sets RESULT_ACK; the station
//!   then clears RESULT_READY and shows the next result only after the PLC has dropped RESULT_ACK. Waiting results
//!   queue in a buffer of `result_buffer`; a result that finds it full sets OVERRUN (latched) and is not delivered:
//!   its part is rejected at the gate and recorded REJECT `plc_undelivered` (fail-safe). Without `result_ack`,
//!   each result is written and held for `result_hold_ms` before the next replaces it (the buffer and overrun
//!   work the same way), so none is overwritten unseen.
//! - **Reject gate** ([`super::gate`]): by delay, encoder distance, or at the verdict; a part without a verdict at
//!   the gate is rejected fail-safe and its record gets `verdict_late_at_gate`. The coil is driven by the output
//!   task ([`super::output`], its own thread and connection); this task records what it reports. A trigger's
//!   time is when the answer of the read that saw it arrived, so a pulse is never early; the read's round trip
//!   is recorded as the time's error bound.
//! - **Watchdog**: the station heartbeat counts up every `heartbeat_ms`; a PLC heartbeat unchanged for
//!   `heartbeat_missed` periods sets HEARTBEAT_LOST and ALARM, logs and counts a fault.
//! - **Link loss** (client roles): results wait in the buffer and are delivered, in order, when the link returns;
//!   those that overflow it are undelivered (see above). A reject pulse that cannot be written is not replayed (a
//!   late pulse would hit another part): the part is recorded REJECT `plc_undelivered` and counted.
//!
//! Each part's PLC outcome goes to the record writer once, when its result and its gate passage are settled.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::task::JoinHandle;
use tokio_modbus::client::{Reader, Writer};

use super::config::{PlcConfig, PlcLink, RejectTiming};
use super::gate::{AtGate, Gate, OnVerdict};
use super::map::{COMMAND_LEN, Commands, Fault, STATUS_LEN, Status, command, status};
use super::output::{CoilWrite, GateEvent, Output, Port};
use super::server::{Memory, ModbusServer, WriteGuard};
use super::sim::{SimPlc, image_size};
use super::status::{PlcStatus, SharedStatus};
use super::{Endpoint, LINK_DOWN, Link, PlcMsg, PlcTag, call};
use crate::clock::Clock;
use crate::decision::ResultCode;
use crate::metrics::{Counters, bump, read};
use crate::part::Seq;
use crate::part::TriggerEvent;
use crate::part::record::{PlcOutcome, RecordMsg};
use crate::trigger::{PlcInputKind, TriggerConfig};

/// Parts remembered at most (a part whose verdict never comes is forgotten after this many newer ones).
const PARTS_KEPT: usize = 65_536;
/// How long the task goes on after the line stopped, for results to be acknowledged and parts to reach the gate.
const DRAIN: Duration = Duration::from_secs(2);
/// How often the shared status is refreshed.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// A started PLC task. It ends once `tx` (and its clones) are dropped and it has drained.
pub struct PlcHandle {
    pub tx: Sender<PlcMsg>,
    /// PLC triggers, when `trigger.kind = "plc"`.
    pub triggers: Option<Receiver<TriggerEvent>>,
    /// Recipe numbers the PLC selected (known ones only), when recipes are configured.
    pub recipes: Option<Receiver<u16>>,
    pub task: JoinHandle<()>,
    pub info: PlcInfo,
}

/// What the rest of the station may look at while the PLC task runs.
pub struct PlcInfo {
    pub status: SharedStatus,
    /// The PLC's address (client; 0.0.0.0:0 over RTU), or where the station listens (server).
    pub addr: SocketAddr,
    /// The demo's PLC, when simulated.
    pub sim: Option<SimPlc>,
}

/// Starts the PLC task for `config` (None with `kind = "off"`).
pub async fn start(
    config: &PlcConfig,
    trigger: &TriggerConfig,
    recipes: &[u16],
    queue_depth: usize,
    counters: Arc<Counters>,
    clock: Clock,
    store: Sender<RecordMsg>,
) -> std::io::Result<Option<PlcHandle>> {
    let mut config = config.clone();
    let input = match trigger {
        TriggerConfig::Plc {
            input_kind,
            input_address,
            poll_ms,
        } => {
            // `trigger.poll_ms` (older configs) still sets how often the trigger is looked at.
            config.poll_ms = config.poll_ms.min(*poll_ms);
            Some((*input_kind, *input_address))
        }
        _ => None,
    };
    let config = &config;
    let Some((transport, addr, sim)) = open_transport(config, input, &counters).await? else {
        return Ok(None);
    };
    let (tx, rx) = mpsc::channel::<PlcMsg>(queue_depth * 8);
    let (trigger_tx, triggers) = match input {
        Some(_) => {
            let (t, r) = mpsc::channel(queue_depth * 4 + 64);
            (Some(t), Some(r))
        }
        None => (None, None),
    };
    let (recipe_tx, recipe_rx) = if recipes.is_empty() {
        (None, None)
    } else {
        let (t, r) = mpsc::channel(4);
        (Some(t), Some(r))
    };
    let shared: SharedStatus = Arc::new(Mutex::new(PlcStatus::default()));
    let now = Instant::now();
    let (coil_tx, coil_rx) = mpsc::channel::<CoilWrite>(4);
    let port = match (&transport, &config.link) {
        (Transport::Server(server), _) => Port::Memory(server.memory.clone(), config.reject_coil),
        (Transport::Client(_), PlcLink::Rtu(_)) => Port::Serial(coil_tx),
        (Transport::Client(_), _) if config.output_shares_link => Port::Serial(coil_tx),
        (Transport::Client(link), _) => Port::Link(
            Box::new(Link::for_output(config, link.endpoint().clone())),
            config.reject_coil,
        ),
    };
    let (events_tx, gate_events) = mpsc::unbounded_channel();
    let gate = Gate::new(
        config.reject_timing,
        Duration::from_millis(config.reject_pulse_ms),
    );
    let output = Output::start(gate, port, events_tx)?;
    let hs = Handshake {
        output,
        gate_events,
        coil_rx,
        pulse_records: HashMap::new(),
        cfg: config.clone(),
        transport,
        input,
        trigger_tx,
        recipe_tx,
        known_recipes: recipes.to_vec(),
        requested_recipe: 0,
        store,
        counters,
        clock,
        shared: shared.clone(),
        out: Status::default(),
        written: None,
        cmd: None,
        trigger_high: false,
        reset_high: false,
        ack_wait_low: false,
        shown: None,
        queue: VecDeque::new(),
        parts: BTreeMap::new(),
        forwarded: 0,
        triggered: 0,
        verdicts: 0,
        plc_heartbeat: None,
        heartbeat_lost: false,
        next_beat: now,
        fault: Fault::None,
        overrun: false,
        refused: false,
        view: PlcStatus::default(),
        started: now,
        published: now,
        stopping: false,
        missed_writes: 0,
    };
    let task = tokio::spawn(hs.run(rx));
    Ok(Some(PlcHandle {
        tx,
        triggers,
        recipes: recipe_rx,
        task,
        info: PlcInfo {
            status: shared,
            addr,
            sim,
        },
    }))
}

/// The link of the configured role: a client of the (simulated) PLC over TCP or RTU, or the station's own Modbus
/// server; `None` with `kind = "off"`.
async fn open_transport(
    config: &PlcConfig,
    input: Option<(PlcInputKind, u16)>,
    counters: &Arc<Counters>,
) -> std::io::Result<Option<(Transport, SocketAddr, Option<SimPlc>)>> {
    let mut sim = None;
    let (transport, addr) = match &config.link {
        PlcLink::Off => return Ok(None),
        PlcLink::Simulated => {
            let s = SimPlc::start(config).await?;
            let addr = s.addr;
            sim = Some(s);
            let link = Link::new(config, Endpoint::Tcp(addr), counters.clone());
            (Transport::Client(Box::new(link)), addr)
        }
        PlcLink::Tcp(addr) => {
            let link = Link::new(config, Endpoint::Tcp(*addr), counters.clone());
            (Transport::Client(Box::new(link)), *addr)
        }
        PlcLink::Rtu(rtu) => {
            let link = Link::new(config, Endpoint::Rtu(rtu.clone()), counters.clone());
            (
                Transport::Client(Box::new(link)),
                SocketAddr::from(([0, 0, 0, 0], 0)),
            )
        }
        PlcLink::Serve(listen) => {
            let cmd = usize::from(config.command_register);
            let mut coils = Vec::new();
            if let Some((PlcInputKind::Coil, address)) = input {
                coils.push(usize::from(address));
            }
            let guard = WriteGuard {
                holding: cmd..cmd + usize::from(COMMAND_LEN),
                coils,
            };
            let memory = Memory::new(image_size(config), config.reject_coil, Some(guard));
            let server = ModbusServer::start(*listen, memory).await?;
            tracing::info!("PLC handshake: serving Modbus TCP on {}", server.addr);
            let addr = server.addr;
            (Transport::Server(server), addr)
        }
    };
    Ok(Some((transport, addr, sim)))
}

enum Transport {
    Client(Box<Link>),
    Server(ModbusServer),
}

/// A result on its way to the PLC.
#[derive(Debug, Clone, Copy)]
struct Shown {
    seq: Seq,
    part_id: u32,
    code: ResultCode,
    /// The result block showing it reached the PLC (or the served image).
    written: bool,
    /// When it was first written (without acknowledge it stays shown `result_hold_ms` from then).
    written_at: Option<Instant>,
}

/// One read of the PLC's commands: what it said, and when (see [`PlcTag::uncertainty_us`]).
struct Seen {
    cmd: Commands,
    trigger_bit: Option<bool>,
    at: Instant,
    uncertainty: Duration,
}

/// What the task knows about a part until its outcome is recorded.
#[derive(Debug)]
struct Part {
    record: String,
    plc_part_id: u32,
    verdict: bool,
    /// Passed the gate (or no gate timing).
    gate_done: bool,
    /// Result delivered (Some(actuated_us)) or failed; None while pending.
    result: Option<Result<i64, ()>>,
    late_at_gate: bool,
    /// Its verdict was PASS (the counts move it to the rejects if its record becomes REJECT).
    passed: bool,
    failures: Vec<String>,
    /// When the result block holding this part's result was written, and when the reject output went high.
    written_us: Option<i64>,
    reject_on_us: Option<i64>,
    /// What became of its reject pulse (the `reject_pulse` column), once known.
    pulse: Option<&'static str>,
}

impl Part {
    fn new(record: String, plc_part_id: u32, gate_done: bool) -> Part {
        Part {
            record,
            plc_part_id,
            verdict: false,
            gate_done,
            result: None,
            late_at_gate: false,
            passed: false,
            failures: Vec::new(),
            written_us: None,
            reject_on_us: None,
            pulse: None,
        }
    }
}

struct Handshake {
    cfg: PlcConfig,
    transport: Transport,
    /// Where the trigger bit is, when the PLC triggers.
    input: Option<(PlcInputKind, u16)>,
    trigger_tx: Option<Sender<TriggerEvent>>,
    recipe_tx: Option<Sender<u16>>,
    known_recipes: Vec<u16>,
    /// The recipe number last asked for by the PLC (0: none).
    requested_recipe: u16,
    store: Sender<RecordMsg>,
    counters: Arc<Counters>,
    clock: Clock,
    shared: SharedStatus,
    /// The reject output's task, which owns the gate's timing; what it did comes back on `gate_events`.
    output: Output,
    gate_events: mpsc::UnboundedReceiver<GateEvent>,
    /// Coil writes the output hands over (RTU: one serial line; or a shared TCP connection).
    coil_rx: Receiver<CoilWrite>,
    /// The records of the parts whose reject pulse is on now (told when it ends).
    pulse_records: HashMap<Seq, String>,
    out: Status,
    written: Option<[u16; STATUS_LEN as usize]>,
    /// The last command block read.
    cmd: Option<Commands>,
    trigger_high: bool,
    reset_high: bool,
    ack_wait_low: bool,
    shown: Option<Shown>,
    queue: VecDeque<Shown>,
    parts: BTreeMap<Seq, Part>,
    /// PLC triggers sent to the line, `Triggered` messages and verdicts received.
    forwarded: u64,
    triggered: u64,
    verdicts: u64,
    /// The PLC heartbeat's value and when it last changed.
    plc_heartbeat: Option<(u16, Instant)>,
    heartbeat_lost: bool,
    next_beat: Instant,
    /// Latched until the PLC's fault reset.
    fault: Fault,
    overrun: bool,
    refused: bool,
    view: PlcStatus,
    started: Instant,
    published: Instant,
    /// The station is shutting down: the last status written takes READY away.
    stopping: bool,
    /// Pulses whose ON write failed (each may carry several parts).
    missed_writes: u64,
}

impl Handshake {
    async fn run(mut self, mut rx: Receiver<PlcMsg>) {
        // The command block is read every `poll_ms` only when something in it needs that pace (a PLC trigger,
        // the result acknowledge); otherwise only the heartbeat, fault reset and recipe are read from it, at the
        // heartbeat's pace, and results are written when they come (the wake-ups above).
        let fast = self.input.is_some() || self.cfg.result_ack;
        let poll = if fast {
            Duration::from_millis(self.cfg.poll_ms)
        } else {
            Duration::from_millis(self.cfg.heartbeat_ms.max(self.cfg.poll_ms))
        };
        let mut scan = tokio::time::interval(poll);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        let mut drain_until: Option<Instant> = None;
        loop {
            let change = self.release_at();
            let wake = tokio::time::Instant::from_std(
                change.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                biased;
                msg = rx.recv(), if open => match msg {
                    Some(msg) => {
                        self.on_msg(msg);
                        while let Ok(msg) = rx.try_recv() {
                            self.on_msg(msg);
                        }
                        self.step(false).await;
                    }
                    None => {
                        open = false;
                        let delay = match self.cfg.reject_timing {
                            RejectTiming::DelayMs(ms) => Duration::from_millis(ms),
                            _ => Duration::ZERO,
                        };
                        drain_until = Some(Instant::now() + DRAIN + delay);
                        self.trigger_tx = None;
                    }
                },
                Some(event) = self.gate_events.recv() => {
                    self.on_gate_event(event).await;
                    while let Ok(event) = self.gate_events.try_recv() {
                        self.on_gate_event(event).await;
                    }
                    self.step(false).await;
                }
                Some(write) = self.coil_rx.recv() => self.serve_coil(write).await,
                _ = tokio::time::sleep_until(wake), if change.is_some() => self.step(false).await,
                _ = scan.tick() => self.step(true).await,
            }
            if drain_until.is_some_and(|until| self.parts.is_empty() || Instant::now() >= until) {
                break;
            }
        }
        self.finish().await;
    }

    fn on_msg(&mut self, msg: PlcMsg) {
        match msg {
            PlcMsg::Triggered {
                seq,
                part_id,
                at,
                tag,
            } => {
                self.triggered += 1;
                let encoder = tag
                    .map(|t| t.encoder)
                    .or(self.cmd.map(|c| c.encoder))
                    .unwrap_or(0);
                self.output.with(|g| g.part(seq, at, encoder));
                if self.parts.len() >= PARTS_KEPT {
                    if let Some((old, _)) = self.parts.pop_first() {
                        tracing::warn!("PLC: part {old} never got its verdict; forgotten");
                    }
                }
                let no_gate = self.cfg.reject_timing == RejectTiming::OnVerdict;
                let plc_part_id = tag.map_or(seq as u32, |t| t.part_id);
                self.parts
                    .insert(seq, Part::new(part_id, plc_part_id, no_gate));
            }
            PlcMsg::Recipe { number, ok } => {
                if ok {
                    self.out.recipe = number;
                } else {
                    self.fault = Fault::UnknownRecipe;
                }
            }
            PlcMsg::Verdict(job) => {
                self.verdicts += 1;
                let now = Instant::now();
                // With acknowledge the shown result waits for the PLC; without, for its hold time.
                let full =
                    self.queue.len() + usize::from(self.shown.is_some()) >= self.cfg.result_buffer;
                let (why, station) = if full {
                    self.why_full(job.seq)
                } else {
                    (String::new(), false)
                };
                let part = self
                    .parts
                    .entry(job.seq)
                    .or_insert_with(|| Part::new(job.part_id.clone(), job.seq as u32, true));
                part.verdict = true;
                part.passed = !job.reject;
                let plc_part_id = part.plc_part_id;
                let mut code = job.code;
                let reject = job.reject || full;
                match self.output.with(|g| g.verdict(job.seq, reject, now)) {
                    OnVerdict::AlreadyRejected => {
                        code = ResultCode::RejectFailSafe;
                        part.late_at_gate = true;
                    }
                    // The output task reports the pulse.
                    OnVerdict::Fired => part.gate_done = false,
                    OnVerdict::Scheduled => {}
                    OnVerdict::Unknown => {
                        if part.pulse.is_none() && !reject {
                            part.pulse = Some("not_needed");
                        }
                    }
                }
                if full {
                    part.result = Some(Err(()));
                    part.failures.push(format!(
                        "result buffer full ({} results waiting: {why}): rejected at the gate",
                        self.cfg.result_buffer
                    ));
                    self.view.faults.overruns += 1;
                    self.out.diag.overruns = self.out.diag.overruns.wrapping_add(1);
                    self.overrun = true;
                    self.fault = if station {
                        Fault::StationHoldsResults
                    } else {
                        Fault::ResultOverrun
                    };
                    tracing::warn!(
                        "PLC: result buffer overrun ({why}); part {} rejected fail-safe",
                        job.seq
                    );
                    return;
                }
                let shown = Shown {
                    seq: job.seq,
                    part_id: plc_part_id,
                    code,
                    written: false,
                    written_at: None,
                };
                // In trigger order: a fail-safe verdict can overtake an inspected part's.
                let at = self.queue.partition_point(|s| s.seq < shown.seq);
                self.queue.insert(at, shown);
            }
        }
    }

    fn settle_result(&mut self, seq: Seq, result: Result<i64, String>) {
        if let Some(part) = self.parts.get_mut(&seq) {
            part.result = Some(match result {
                Ok(us) => Ok(us),
                Err(why) => {
                    part.failures.push(why);
                    Err(())
                }
            });
        }
    }

    fn in_flight(&self) -> u64 {
        self.forwarded
            .max(self.triggered)
            .saturating_sub(self.verdicts)
    }

    /// One scan: read the commands (when `read`), react, write the result block.
    async fn step(&mut self, read: bool) {
        if read {
            match self.read_commands().await {
                Ok(seen) => self.on_commands(seen),
                Err(e) => self.link_failed(&e),
            }
        }
        let now = Instant::now();
        // The PLC's heartbeat cannot be seen while the link is down: the outage is its own fault, not the PLC's.
        if self.link_down() {
            if let Some((value, _)) = self.plc_heartbeat {
                self.plc_heartbeat = Some((value, now));
            }
        } else {
            self.watch_heartbeat(now);
        }
        if now >= self.next_beat {
            self.out.heartbeat = self.out.heartbeat.wrapping_add(1);
            self.next_beat = now + Duration::from_millis(self.cfg.heartbeat_ms);
        }
        self.write_outputs(now).await;
        self.settle_parts().await;
        if now >= self.published + PUBLISH_EVERY {
            self.publish(now);
        }
    }

    async fn read_commands(&mut self) -> Result<Seen, String> {
        let base = self.cfg.command_register;
        let input = self.input;
        match &mut self.transport {
            Transport::Server(server) => {
                let m = server.memory();
                let b = usize::from(base);
                let cmd = Commands::decode(&m.holding[b..b + usize::from(COMMAND_LEN)]);
                let bit = match input {
                    Some((PlcInputKind::Coil, a)) => Some(m.coils[usize::from(a)]),
                    _ => None,
                };
                // The PLC wrote its trigger: the time is when that write arrived, not this look at the image.
                let at = m.last_write.unwrap_or_else(Instant::now);
                Ok(Seen {
                    cmd,
                    trigger_bit: bit,
                    at,
                    uncertainty: Duration::ZERO,
                })
            }
            Transport::Client(link) => {
                let limit = link.limit();
                let Some((ctx, fresh)) = link.get().await else {
                    return Err(LINK_DOWN.into());
                };
                if fresh {
                    self.written = None;
                }
                let t0 = Instant::now();
                let regs = call(
                    limit,
                    "read the command block",
                    ctx.read_holding_registers(base, COMMAND_LEN),
                )
                .await?;
                let t1 = Instant::now();
                self.view.add_rtt((t1 - t0).as_secs_f64() * 1e3);
                // The trigger is in the read that carries it: its time is when the answer came (the PLC sampled
                // it at most one round trip earlier).
                let (bit, sent) = match input {
                    Some((PlcInputKind::Coil, a)) => (
                        Some(call(limit, "read the trigger coil", ctx.read_coils(a, 1)).await?),
                        t1,
                    ),
                    Some((PlcInputKind::DiscreteInput, a)) => (
                        Some(
                            call(
                                limit,
                                "read the trigger input",
                                ctx.read_discrete_inputs(a, 1),
                            )
                            .await?,
                        ),
                        t1,
                    ),
                    _ => (None, t0),
                };
                let at = Instant::now();
                Ok(Seen {
                    cmd: Commands::decode(&regs),
                    trigger_bit: bit.map(|bits| bits.first().copied().unwrap_or(false)),
                    at,
                    uncertainty: at - sent,
                })
            }
        }
    }

    /// Who holds the results when the buffer is full: the link, the PLC, or the station itself (a result waits
    /// for an earlier part's verdict, since results go out in trigger order); true when it is the station.
    fn why_full(&self, arriving: Seq) -> (String, bool) {
        if self.link_down() {
            return ("the PLC link is down".into(), false);
        }
        if let Some(front) = self.queue.front()
            && let Some((seq, _)) = self
                .parts
                .range(..front.seq)
                .find(|(s, p)| !p.verdict && **s != arriving)
        {
            return (
                format!(
                    "the station holds them: part {seq} has no verdict yet and results go out in trigger order"
                ),
                true,
            );
        }
        let why = match (&self.shown, self.cfg.result_ack) {
            (Some(s), true) if s.written => format!(
                "the PLC has not acknowledged the result of part {} (RESULT_ACK)",
                s.seq
            ),
            (Some(_), true) => "the result shown is not written yet".into(),
            (_, false) => format!(
                "results come faster than one per plc.result_hold_ms ({} ms)",
                self.cfg.result_hold_ms
            ),
            (None, true) => "the PLC has not dropped RESULT_ACK after the last result".into(),
        };
        (why, false)
    }

    fn link_down(&self) -> bool {
        matches!(&self.transport, Transport::Client(link) if link.down_since().is_some())
    }

    fn link_failed(&mut self, why: &str) {
        if let Transport::Client(link) = &mut self.transport {
            if why != LINK_DOWN {
                let was_up = link.down_since().is_none();
                link.mark_down(why);
                if was_up {
                    self.view.faults.outages += 1;
                    self.out.diag.outages = self.out.diag.outages.wrapping_add(1);
                }
            }
            self.written = None;
        }
    }

    fn on_commands(&mut self, seen: Seen) {
        let Seen {
            cmd,
            trigger_bit,
            at,
            uncertainty,
        } = seen;
        let now = Instant::now();
        self.cmd = Some(cmd);
        if matches!(self.cfg.reject_timing, RejectTiming::DistanceCounts(_)) {
            self.output.encoder(cmd.encoder);
        }
        match self.plc_heartbeat {
            Some((value, _)) if value == cmd.heartbeat => {}
            _ => {
                if self.heartbeat_lost {
                    tracing::info!("PLC heartbeat is back");
                }
                self.heartbeat_lost = false;
                self.plc_heartbeat = Some((cmd.heartbeat, now));
            }
        }
        // Fault reset (rising edge): clears the latched faults whose cause is gone.
        let reset = cmd.has(command::FAULT_RESET);
        if reset && !self.reset_high {
            self.fault = if self.heartbeat_lost {
                Fault::HeartbeatLost
            } else {
                Fault::None
            };
            self.overrun = false;
            self.refused = false;
            tracing::info!("PLC: fault reset");
        }
        self.reset_high = reset;
        // Trigger: rising edge only.
        if let Some(tx) = &self.trigger_tx {
            let high = trigger_bit.unwrap_or(cmd.has(command::TRIGGER));
            if high && !self.trigger_high {
                let busy = self.in_flight() >= self.cfg.max_parts_in_flight as u64;
                let event = TriggerEvent {
                    at,
                    tag: Some(PlcTag {
                        part_id: cmd.part_id,
                        encoder: cmd.encoder,
                        uncertainty_us: uncertainty.as_micros().min(u128::from(u32::MAX)) as u32,
                    }),
                    refused: busy,
                };
                if busy {
                    self.refused = true;
                    self.fault = Fault::TriggerRefused;
                    self.view.faults.refused += 1;
                    self.out.diag.refused = self.out.diag.refused.wrapping_add(1);
                    tracing::warn!(
                        "PLC: trigger for part ID {} refused: busy ({} parts in flight); it will be rejected",
                        cmd.part_id,
                        self.in_flight()
                    );
                } else {
                    self.out.diag.triggers = self.out.diag.triggers.wrapping_add(1);
                }
                tracing::debug!("PLC trigger: part ID {} (busy: {busy})", cmd.part_id);
                match tx.try_send(event) {
                    Ok(()) => self.forwarded += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::error!(
                            "PLC: trigger for part ID {} lost: the trigger queue is full",
                            cmd.part_id
                        );
                        self.view.faults.refused += 1;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            self.trigger_high = high;
        }
        // Recipe select (0: no request).
        if cmd.recipe != 0 && cmd.recipe != self.requested_recipe {
            self.requested_recipe = cmd.recipe;
            match &self.recipe_tx {
                Some(tx) if self.known_recipes.contains(&cmd.recipe) => {
                    if tx.try_send(cmd.recipe).is_err() {
                        tracing::error!("PLC: recipe {} not requested: loader busy", cmd.recipe);
                        self.fault = Fault::UnknownRecipe;
                    }
                }
                _ => {
                    tracing::warn!(
                        "PLC asks for recipe {}, which is not configured ([[recipe]]): refused",
                        cmd.recipe
                    );
                    self.fault = Fault::UnknownRecipe;
                }
            }
        }
        // Result handshake.
        let ack = cmd.has(command::RESULT_ACK);
        if self.cfg.result_ack {
            if !ack {
                self.ack_wait_low = false;
            }
            let acked = self
                .shown
                .filter(|s| s.written && ack && !self.ack_wait_low);
            if let Some(shown) = acked {
                self.shown = None;
                self.ack_wait_low = true;
                let us = self.clock.wall_us(now);
                self.settle_result(shown.seq, Ok(us));
            }
        }
    }

    fn watch_heartbeat(&mut self, now: Instant) {
        if self.cfg.heartbeat_missed == 0 || self.heartbeat_lost {
            return;
        }
        let since = self.plc_heartbeat.map_or(self.started, |(_, t)| t);
        let limit =
            Duration::from_millis(self.cfg.heartbeat_ms * u64::from(self.cfg.heartbeat_missed));
        if now.duration_since(since) > limit {
            self.heartbeat_lost = true;
            // A missed reject pulse stays latched: the PLC must learn that a reject may have passed the gate.
            if self.fault != Fault::RejectPulseMissed {
                self.fault = Fault::HeartbeatLost;
            }
            self.view.faults.heartbeat += 1;
            self.out.diag.heartbeat_faults = self.out.diag.heartbeat_faults.wrapping_add(1);
            tracing::warn!(
                "PLC heartbeat unchanged for {} ms ({} periods): alarm",
                limit.as_millis(),
                self.cfg.heartbeat_missed
            );
        }
    }

    /// Without acknowledge, when the shown result's hold ends while others wait (a step then shows the next).
    fn release_at(&self) -> Option<Instant> {
        if self.cfg.result_ack {
            return None;
        }
        // Only when the next result may go (every part before it has its verdict): no wake-up to do nothing.
        let next = self.queue.front()?.seq;
        if self.parts.range(..next).any(|(_, p)| !p.verdict) {
            return None;
        }
        let at = self.shown?.written_at?;
        Some(at + Duration::from_millis(self.cfg.result_hold_ms))
    }

    /// The next result to show, when every part triggered before it has its verdict (results go out in
    /// trigger order).
    fn next_result(&mut self) -> Option<Shown> {
        let seq = self.queue.front()?.seq;
        if self.parts.range(..seq).any(|(_, p)| !p.verdict) {
            return None;
        }
        self.queue.pop_front()
    }

    fn compose(&mut self, now: Instant) {
        if self.cfg.result_ack {
            if self.shown.is_none() && !self.ack_wait_low {
                self.shown = self.next_result();
            }
        } else {
            // Every result is written and stays shown for its hold time, so a PLC reading that often sees each;
            // the next ones wait in the buffer meanwhile (and overflow it as with acknowledge).
            let hold = Duration::from_millis(self.cfg.result_hold_ms);
            let held = self
                .shown
                .is_some_and(|s| s.written_at.is_none_or(|at| now < at + hold));
            if !held && let Some(next) = self.next_result() {
                self.shown = Some(next);
            }
        }
        let busy = self.in_flight() >= self.cfg.max_parts_in_flight as u64;
        // The record writer cannot write anywhere: no READY, and the fault code says why, while it lasts.
        let records_down = read(&self.counters.records_alarm) > 0;
        if records_down {
            self.fault = Fault::RecordsAtRisk;
        }
        let o = &mut self.out;
        // A stopping station takes READY away in its last write: the PLC must not send parts to it.
        o.set(status::READY, !busy && !records_down && !self.stopping);
        o.set(status::BUSY, busy);
        o.set(status::TRIGGER_ACK, self.trigger_high);
        o.set(status::RESULT_READY, self.shown.is_some());
        o.set(status::OVERRUN, self.overrun);
        o.set(
            status::ALARM,
            self.fault != Fault::None || self.heartbeat_lost,
        );
        o.set(status::TRIGGER_REFUSED, self.refused);
        o.set(status::HEARTBEAT_LOST, self.heartbeat_lost);
        if let Some(s) = &self.shown {
            o.result_code = s.code as u16;
            o.counter = s.seq as u16;
            o.part_id = s.part_id;
        }
        o.buffer_depth = (self.queue.len() + usize::from(self.shown.is_some())) as u16;
        o.fault = self.fault as u16;
        // Pulses written to the output, not merely decided: a pulse the link lost counts as missed instead.
        let pulses = self.output.peek(|g| g.pulses);
        o.diag.reject_pulses = pulses.saturating_sub(self.missed_writes) as u16;
        o.diag.missed_pulses = self.view.faults.missed_pulses as u16;
    }

    /// Records what the output task reports: parts through the gate, pulses driven, missed and ended.
    async fn on_gate_event(&mut self, event: GateEvent) {
        match event {
            GateEvent::Passage(AtGate::Passed(seq)) => {
                if let Some(p) = self.parts.get_mut(&seq) {
                    p.gate_done = true;
                    p.pulse = Some("not_needed");
                }
            }
            GateEvent::Passage(AtGate::Rejected(_)) => {}
            GateEvent::Passage(AtGate::FailSafe(seq)) => {
                self.view.faults.late_at_gate += 1;
                self.out.diag.gate_fail_safe = self.out.diag.gate_fail_safe.wrapping_add(1);
                self.fault = Fault::VerdictLateAtGate;
                tracing::warn!("PLC: part {seq} reached the gate without a verdict: rejected");
                if let Some(p) = self.parts.get_mut(&seq) {
                    p.late_at_gate = true;
                }
            }
            GateEvent::On {
                seqs,
                sent,
                extended,
            } => {
                let us = self.clock.wall_us(sent);
                for seq in seqs {
                    if let Some(p) = self.parts.get_mut(&seq) {
                        p.reject_on_us.get_or_insert(us);
                        p.pulse = Some(if extended { "extended" } else { "driven" });
                        p.gate_done = true;
                        self.pulse_records.insert(seq, p.record.clone());
                    }
                }
            }
            GateEvent::Missed { seqs, why } => {
                self.missed_writes += 1;
                for seq in seqs {
                    self.view.faults.missed_pulses += 1;
                    self.fault = Fault::RejectPulseMissed;
                    tracing::warn!("PLC: reject pulse for part {seq} not written: {why}");
                    if let Some(p) = self.parts.get_mut(&seq) {
                        p.failures.push(format!("reject pulse not written: {why}"));
                        p.pulse = Some(if why == LINK_DOWN {
                            "missed_link_down"
                        } else {
                            "missed_write_failed"
                        });
                        p.gate_done = true;
                    }
                }
            }
            GateEvent::Off { seqs, sent } => {
                let reject_off_us = self.clock.wall_us(sent);
                for seq in seqs {
                    if let Some(part_id) = self.pulse_records.remove(&seq) {
                        let outcome = PlcOutcome::PulseEnded { reject_off_us };
                        let _ = self
                            .store
                            .send(RecordMsg::Actuated { part_id, outcome })
                            .await;
                    }
                }
            }
        }
    }

    /// A coil write the output task hands over (RTU, or `output_connection = "shared"`), put on the link now.
    async fn serve_coil(&mut self, write: CoilWrite) {
        let coil = self.cfg.reject_coil;
        let result = match &mut self.transport {
            Transport::Client(link) => {
                let limit = link.limit();
                match link.get().await {
                    None => Err(LINK_DOWN.to_string()),
                    Some((ctx, _)) => {
                        call(
                            limit,
                            "write the reject coil",
                            ctx.write_single_coil(coil, write.on),
                        )
                        .await
                    }
                }
            }
            Transport::Server(_) => Err("no serial line in the server role".into()),
        };
        if let Err(e) = &result {
            self.link_failed(e);
        }
        let _ = write.reply.send(result);
    }

    async fn write_outputs(&mut self, now: Instant) {
        self.compose(now);
        let block = self.out.encode();
        let base = self.cfg.result_register;
        let result: Result<(), String> = match &mut self.transport {
            Transport::Server(server) => {
                let mut m = server.memory();
                let b = usize::from(base);
                m.holding[b..b + block.len()].copy_from_slice(&block);
                self.written = Some(block);
                Ok(())
            }
            Transport::Client(link) => {
                let limit = link.limit();
                match link.get().await {
                    None => Err(LINK_DOWN.into()),
                    Some((ctx, fresh)) => {
                        if fresh {
                            self.written = None;
                        }
                        let mut r = Ok(());
                        if self.written != Some(block) {
                            r = call(
                                limit,
                                "write the result block",
                                ctx.write_multiple_registers(base, &block),
                            )
                            .await;
                            if r.is_ok() {
                                self.written = Some(block);
                            }
                        }
                        r
                    }
                }
            }
        };
        if let Err(e) = result {
            self.link_failed(&e);
            return;
        }
        let written = self.written == Some(block);
        if let Some(shown) = self.shown.as_mut().filter(|s| written && !s.written) {
            shown.written = true;
            shown.written_at = Some(now);
            let seq = shown.seq;
            let us = self.clock.wall_us(Instant::now());
            if let Some(p) = self.parts.get_mut(&seq) {
                p.written_us = Some(us);
            }
            if !self.cfg.result_ack {
                let us = self.clock.wall_us(now);
                self.settle_result(seq, Ok(us));
            }
        }
    }

    /// Records the outcome of every part whose verdict, result and gate passage are settled.
    async fn settle_parts(&mut self) {
        let done: Vec<Seq> = self
            .parts
            .iter()
            .filter(|(_, p)| p.verdict && p.gate_done && p.result.is_some())
            .map(|(s, _)| *s)
            .collect();
        for seq in done {
            if let Some(part) = self.parts.remove(&seq) {
                self.record(part).await;
            }
        }
    }

    async fn record(&mut self, part: Part) {
        let delivered = matches!(
            (&part.result, part.failures.is_empty()),
            (Some(Ok(_)), true)
        );
        if part.passed && (part.late_at_gate || !delivered) {
            crate::metrics::pass_became_reject(&self.counters);
        }
        if part.late_at_gate {
            let msg = RecordMsg::Actuated {
                part_id: part.record.clone(),
                outcome: PlcOutcome::RejectedAtGate {
                    detail: "no verdict when the part reached the reject gate: rejected fail-safe"
                        .into(),
                },
            };
            let _ = self.store.send(msg).await;
        }
        let outcome = match (part.result, part.failures.is_empty()) {
            (Some(Ok(actuated_us)), true) => {
                bump(&self.counters.plc_delivered);
                PlcOutcome::Delivered {
                    actuated_us,
                    result_written_us: part.written_us,
                    reject_on_us: part.reject_on_us,
                    reject_pulse: part.pulse,
                }
            }
            _ => {
                bump(&self.counters.plc_undelivered);
                PlcOutcome::Undelivered {
                    detail: if part.failures.is_empty() {
                        "result not delivered".into()
                    } else {
                        part.failures.join("; ")
                    },
                    reject_pulse: part.pulse,
                }
            }
        };
        let msg = RecordMsg::Actuated {
            part_id: part.record,
            outcome,
        };
        if self.store.send(msg).await.is_err() {
            tracing::error!("record writer stopped; PLC outcome not recorded");
        }
    }

    fn publish(&mut self, now: Instant) {
        self.published = now;
        let v = &mut self.view;
        v.link = match &self.transport {
            Transport::Client(link) => match link.down_since() {
                None if self.cmd.is_some() => format!("up ({})", link.endpoint()),
                None => format!("connecting ({})", link.endpoint()),
                Some(t) => format!(
                    "DOWN for {:.1} s ({})",
                    now.duration_since(t).as_secs_f64(),
                    link.endpoint()
                ),
            },
            Transport::Server(server) => {
                let m = server.memory();
                match m.last_request {
                    Some(t) => format!(
                        "serving {} (last PLC request {} ms ago)",
                        server.addr,
                        now.duration_since(t).as_millis()
                    ),
                    None => format!("serving {} (no PLC request yet)", server.addr),
                }
            }
        };
        v.plc_heartbeat_age_ms = self
            .plc_heartbeat
            .map(|(_, t)| now.duration_since(t).as_millis() as u64);
        v.buffer_depth = usize::from(self.out.buffer_depth);
        let up = match &self.transport {
            Transport::Client(link) => link.down_since().is_none() && self.cmd.is_some(),
            Transport::Server(server) => server
                .memory()
                .last_request
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(2)),
        };
        self.counters
            .plc_link_up
            .store(u64::from(up), Ordering::Relaxed);
        self.counters
            .plc_result_buffer
            .store(u64::from(self.out.buffer_depth), Ordering::Relaxed);
        (v.parts_before_gate, v.reject_pulses, v.merged_pulses) =
            self.output.peek(|g| (g.len(), g.pulses, g.merged));
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = v.clone();
    }

    /// After the drain: the output lets a running pulse finish (a shutdown must not shorten a reject) and
    /// releases the coil; parts still unsettled are recorded undelivered; the last status write clears READY.
    async fn finish(mut self) {
        let mut stopped = self.output.stop();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Some(write) = self.coil_rx.recv() => self.serve_coil(write).await,
            }
        }
        while let Ok(event) = self.gate_events.try_recv() {
            self.on_gate_event(event).await;
        }
        let parts = std::mem::take(&mut self.parts);
        for (_, mut part) in parts {
            if !part.verdict {
                continue;
            }
            if part.result.is_none() {
                part.failures
                    .push("the station stopped before the PLC acknowledged the result".into());
            }
            if !part.gate_done {
                part.failures
                    .push("the station stopped before the part reached the gate".into());
                part.pulse.get_or_insert("stopped");
            }
            self.record(part).await;
        }
        let now = Instant::now();
        self.stopping = true;
        self.write_outputs(now).await;
        self.publish(now);
    }
}
