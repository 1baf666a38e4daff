//! The reject output: a task on a thread of its own that drives the reject coil from the gate's shift register
//! ([`super::gate`]), so that when a pulse starts and how long it lasts never wait on the handshake's other Modbus
//! calls (a slow result-block write, a command read from a PLC that answers once per scan).
//!
//! - Client roles over TCP: its own Modbus connection to the PLC (same timeout and reconnect backoff as the
//!   handshake's), kept alive by re-writing the coil's state every second while idle, so that a connection the
//!   PLC dropped is found before a pulse needs it.
//! - Server role: the coil in the served image.
//! - RTU: a serial line carries one request at a time, so the write is handed to the handshake task
//!   ([`CoilWrite`]), which puts it on the line before its next call; the same with
//!   `plc.output_connection = "shared"` over TCP, for a PLC that accepts one client connection.
//!
//! A pulse's ON write is sent when its part falls due (or at its verdict, without gate timing) and its OFF write
//! `reject_pulse_ms` after the ON write was sent, so the width at the station's side is the thread's sleep accuracy
//! (the last 3 ms before an edge are slept precisely, not on the runtime's 1 ms timer); the
//! PLC sees the coil change as each write arrives (the width plus the difference of the two writes' latencies). A
//! pulse whose ON write fails is dropped, not replayed (a late pulse would hit another part): its parts are
//! reported missed. A failed OFF write is retried every 50 ms until the coil is low.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_modbus::client::Writer;

use super::gate::{AtGate, Gate};
use super::server::{self, Memory};
use super::{Link, call};
use crate::part::Seq;

/// An idle connection is refreshed this often (the coil's state written again).
const KEEPALIVE: Duration = Duration::from_secs(1);
/// How close to a deadline the thread stops using the runtime's timer and sleeps precisely.
const PRECISE: Duration = Duration::from_millis(3);
/// A failed OFF write is tried again after this long.
const RETRY: Duration = Duration::from_millis(50);

/// What happened at the gate and on the output, for the handshake to record.
#[derive(Debug, Clone, PartialEq)]
pub enum GateEvent {
    /// A part reached the gate; a rejected one gets an `On` or a `Missed` next.
    Passage(AtGate),
    /// The output was driven high for these parts: the write was sent at `sent`. `extended`: it was already
    /// high for an earlier part and the pulse was lengthened.
    On {
        seqs: Vec<Seq>,
        sent: Instant,
        extended: bool,
    },
    /// The pulse for these parts could not be written.
    Missed { seqs: Vec<Seq>, why: String },
    /// The pulse that carried these parts ended: the OFF write was sent at `sent`.
    Off { seqs: Vec<Seq>, sent: Instant },
}

/// A coil write the handshake task puts on the serial line for the output (RTU).
pub struct CoilWrite {
    pub on: bool,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Where the coil is written.
pub enum Port {
    /// The served image (server role).
    Memory(Arc<Mutex<Memory>>, u16),
    /// Its own Modbus TCP connection.
    Link(Box<Link>, u16),
    /// Through the handshake task's link (RTU, or a shared TCP connection).
    Serial(mpsc::Sender<CoilWrite>),
}

impl Port {
    async fn write(&mut self, on: bool) -> Result<(), String> {
        match self {
            Port::Memory(memory, coil) => {
                server::lock(memory).coils[usize::from(*coil)] = on;
                Ok(())
            }
            Port::Link(link, coil) => {
                let limit = link.limit();
                let Some((ctx, _)) = link.get().await else {
                    return Err(super::LINK_DOWN.into());
                };
                let r = call(
                    limit,
                    "write the reject coil",
                    ctx.write_single_coil(*coil, on),
                )
                .await;
                if let Err(e) = &r {
                    link.mark_down(e);
                }
                r
            }
            Port::Serial(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(CoilWrite { on, reply })
                    .await
                    .map_err(|_| "the handshake task stopped".to_string())?;
                rx.await
                    .map_err(|_| "the handshake task stopped".to_string())?
            }
        }
    }
}

struct State {
    gate: Gate,
    encoder: Option<u32>,
    stop: bool,
}

/// The running output task. The gate is shared: the handshake enters parts and verdicts, the task moves it.
pub struct Output {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Output {
    /// Starts the task on its own thread; what it does is sent to `events`.
    pub fn start(
        gate: Gate,
        port: Port,
        events: mpsc::UnboundedSender<GateEvent>,
    ) -> std::io::Result<Output> {
        let state = Arc::new(Mutex::new(State {
            gate,
            encoder: None,
            stop: false,
        }));
        let wake = Arc::new(Notify::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (s, w) = (state.clone(), wake.clone());
        let thread = std::thread::Builder::new()
            .name("reject-output".into())
            .spawn(move || runtime.block_on(drive(s, w, port, events)))?;
        Ok(Output {
            state,
            wake,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Works on the gate (a part, a verdict) and wakes the task to act on it.
    pub fn with<R>(&self, f: impl FnOnce(&mut Gate) -> R) -> R {
        let r = f(&mut self.lock().gate);
        self.wake.notify_one();
        r
    }

    /// Reads the gate without waking the task.
    pub fn peek<R>(&self, f: impl FnOnce(&Gate) -> R) -> R {
        f(&self.lock().gate)
    }

    /// The PLC's encoder count, just read (distance timing).
    pub fn encoder(&self, count: u32) {
        self.lock().encoder = Some(count);
        self.wake.notify_one();
    }

    /// Lets a running pulse finish, drives the coil low and ends the task: done when the returned handle is
    /// (over RTU the handshake goes on serving the task's writes meanwhile).
    pub fn stop(&mut self) -> tokio::task::JoinHandle<()> {
        self.lock().stop = true;
        self.wake.notify_one();
        let thread = self.thread.take();
        tokio::task::spawn_blocking(move || {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        })
    }
}

async fn drive(
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    mut port: Port,
    events: mpsc::UnboundedSender<GateEvent>,
) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let send = |e: GateEvent| {
        let _ = events.send(e);
    };
    let keepalive = matches!(port, Port::Link(..));
    // What the coil was last written to (None: unknown, after a failed write).
    let mut written: Option<bool> = None;
    let mut pulse: Vec<Seq> = Vec::new();
    let mut last_write = Instant::now();
    let mut retry_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let (passages, want, fired, next, stop) = {
            let mut s = lock();
            let encoder = s.encoder;
            let passages = s.gate.advance(now, encoder);
            let fired = s.gate.take_fired();
            // A part fired while the last write was on its way may find its pulse's time over: it is driven now,
            // for its full width from this write (late by that write's round trip, which its record shows).
            let want = s.gate.coil(now) || !fired.is_empty();
            (passages, want, fired, s.gate.next_change(now), s.stop)
        };
        passages
            .into_iter()
            .for_each(|p| send(GateEvent::Passage(p)));
        if want && written != Some(true) {
            let sent = Instant::now();
            match port.write(true).await {
                Ok(()) => {
                    written = Some(true);
                    lock().gate.driven(sent);
                    pulse.extend(&fired);
                    send(GateEvent::On {
                        seqs: fired,
                        sent,
                        extended: false,
                    });
                }
                Err(why) => {
                    written = None;
                    lock().gate.cancel();
                    send(GateEvent::Missed { seqs: fired, why });
                }
            }
            last_write = Instant::now();
        } else if want {
            if !fired.is_empty() {
                pulse.extend(&fired);
                send(GateEvent::On {
                    seqs: fired,
                    sent: now,
                    extended: true,
                });
            }
        } else {
            let refresh = keepalive && now >= last_write + KEEPALIVE;
            let due = written != Some(false) && (stop || retry_at.is_none_or(|t| now >= t));
            if due || refresh {
                let sent = Instant::now();
                match port.write(false).await {
                    Ok(()) => {
                        written = Some(false);
                        retry_at = None;
                        if !pulse.is_empty() {
                            send(GateEvent::Off {
                                seqs: std::mem::take(&mut pulse),
                                sent,
                            });
                        }
                    }
                    Err(why) => {
                        if retry_at.is_none() && !pulse.is_empty() {
                            tracing::warn!("PLC: the reject output could not be turned off: {why}");
                        }
                        written = None;
                        retry_at = Some(Instant::now() + RETRY);
                    }
                }
                last_write = Instant::now();
            }
            if stop {
                return;
            }
        }
        let mut wake_at = next;
        if written != Some(false) && !want {
            wake_at = [wake_at, retry_at].into_iter().flatten().min();
        }
        if keepalive {
            wake_at =
                Some(wake_at.map_or(last_write + KEEPALIVE, |t| t.min(last_write + KEEPALIVE)));
        }
        // The runtime's timer has 1 ms steps and wakes late by up to one: the last stretch before a pulse edge
        // is slept precisely on this thread (nothing else waits on it meanwhile).
        let now = Instant::now();
        if let Some(at) = wake_at.filter(|at| *at <= now + PRECISE) {
            std::thread::sleep(at.saturating_duration_since(now));
            continue;
        }
        let far = now + Duration::from_secs(3600);
        let coarse = wake_at.map_or(far, |at| at - PRECISE);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(coarse)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plc::config::RejectTiming;

    const MS: Duration = Duration::from_millis(1);

    async fn next(events: &mut mpsc::UnboundedReceiver<GateEvent>) -> GateEvent {
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("the task runs")
    }

    #[tokio::test]
    async fn a_reject_drives_the_served_coil_for_its_width_and_a_pass_does_not() {
        let memory = Arc::new(Mutex::new(Memory::new(64, 3, None)));
        let (tx, mut events) = mpsc::unbounded_channel();
        let gate = Gate::new(RejectTiming::DelayMs(40), 25 * MS);
        let mut output = Output::start(gate, Port::Memory(memory.clone(), 3), tx).unwrap();
        let t0 = Instant::now();
        output.with(|g| {
            g.part(1, t0, 0);
            g.part(2, t0 + 5 * MS, 0);
            g.verdict(1, true, t0);
            g.verdict(2, false, t0)
        });
        assert_eq!(
            next(&mut events).await,
            GateEvent::Passage(AtGate::Rejected(1))
        );
        let GateEvent::On {
            seqs,
            sent,
            extended,
        } = next(&mut events).await
        else {
            panic!("the pulse starts")
        };
        assert_eq!((seqs, extended), (vec![1], false));
        assert!(sent >= t0 + 40 * MS, "never before the part is due");
        assert!(server::lock(&memory).coils[3], "the coil is high");
        assert_eq!(
            next(&mut events).await,
            GateEvent::Passage(AtGate::Passed(2))
        );
        let GateEvent::Off { seqs, sent: off } = next(&mut events).await else {
            panic!("the pulse ends")
        };
        assert_eq!(seqs, [1]);
        let width = off - sent;
        assert!(width >= 25 * MS && width < 35 * MS, "{width:?} for 25 ms");
        assert!(!server::lock(&memory).coils[3]);
        output.stop().await.unwrap();
        assert_eq!(output.peek(|g| g.pulses), 1);
    }

    #[tokio::test]
    async fn a_pulse_that_cannot_be_written_is_reported_missed_not_replayed() {
        // A port nothing listens on: the connect is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let text = format!("kind = \"tcp\"\naddress = \"{addr}\"\n");
        let raw: crate::plc::config::RawPlc = toml::from_str(&text).unwrap();
        let mut problems = crate::problems::Problems::new(std::path::Path::new("."));
        let config = crate::plc::config::validate(&mut problems, raw, 4);
        let link = Link::for_output(&config, crate::plc::Endpoint::Tcp(addr));
        let (tx, mut events) = mpsc::unbounded_channel();
        let gate = Gate::new(RejectTiming::OnVerdict, 20 * MS);
        let mut output = Output::start(gate, Port::Link(Box::new(link), 0), tx).unwrap();
        output.with(|g| g.verdict(7, true, Instant::now()));
        let GateEvent::Missed { seqs, why } = next(&mut events).await else {
            panic!("the pulse is missed")
        };
        assert_eq!(seqs, [7]);
        // The task's first write (the coil low, at start) found the PLC unreachable; the pulse came in the backoff.
        assert_eq!(why, crate::plc::LINK_DOWN);
        output.stop().await.unwrap();
        assert!(
            events.try_recv().is_err(),
            "no pulse later: a missed pulse is not replayed"
        );
    }
}
