//! The pipeline: wires the stages together and runs the line.
//!
//! ```text
//! trigger task ──TriggerEvent──▶ orchestrator ──Job──▶ capture thread ──▶ preprocess thread ──▶ inference thread
//!                                    ▲   │                  │ fault              │ fault             │ scored/fault
//!                                    │   │                  └────────────────────┴───── StageReport ─┘
//!                                    └───┼───────────────────────────────────────────────────────────┘
//!                                        ├──PlcJob──▶ PLC output task (Modbus) ──Actuated──┐
//!                                        └──StoreMsg (Insert)──────────────────────────────┴─▶ record writer (SQLite)
//! ```
//!
//! The orchestrator (a tokio task) owns every part in flight, in trigger order, each with its deadline. A part
//! leaves it in exactly one of three ways: the model scored it (judged against the threshold), a stage reported a
//! fault (REJECT fail-safe), or its deadline passed first (REJECT fail-safe; the late result is counted and
//! ignored). A trigger that finds the capture queue full is rejected at once as `pipeline_overloaded` and
//! counted. Every part with a verdict is recorded, and sent to the PLC when one is configured.
//! Shutdown (part limit reached, source exhausted, or Ctrl-C): the trigger stops, parts in flight finish or time
//! out, then the PLC queue and the record writer are drained and the worker threads joined.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::capture::{self, SourceError};
use crate::clock::Clock;
use crate::config::{Config, PlcLink};
use crate::decision::{Decision, Reason, Verdict};
use crate::metrics::{Counters, Detection, Latencies, RunSummary, Spread, bump, read};
use crate::model::{self, Model, ModelError, ModelInfo};
use crate::part::{Frame, Job, Seq, Stage, StageReport, StageTimes};
use crate::plc::{self, PlcJob, sim::SimPlc};
use crate::preprocess::{self, Preprocessor};
use crate::store::{self, PartRecord, PlcOutcome, Store, StoreError, StoreMsg};
use crate::trigger::{Trigger, TriggerError, TriggerEvent};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error("cannot start the simulated PLC: {0}")]
    SimulatedPlc(std::io::Error),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// Addresses of a started line, for whoever drives it (tests, a line controller).
#[derive(Debug, Clone)]
pub struct Ready {
    pub http_trigger: Option<SocketAddr>,
    pub plc: Option<SocketAddr>,
    pub run_id: i64,
}

/// How to run the line.
#[derive(Default)]
pub struct RunOptions {
    /// Stop after this many parts.
    pub max_parts: Option<u64>,
    /// Print the live status line.
    pub status_line: bool,
    /// Told the addresses once the line is running.
    pub ready: Option<oneshot::Sender<Ready>>,
    /// The live view's tap (the review web page): parts as recorded, counters, the model in force.
    pub tap: Option<crate::live::LineTap>,
}

/// Runs the line until the part limit, the end of a replay, or `shutdown` resolves; returns the summary.
pub async fn run(
    config: &Config,
    mut opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, PipelineError> {
    let clock = Clock::new();
    let started = Instant::now();
    let counters = opts
        .tap
        .as_ref()
        .map_or_else(Arc::default, |t| t.counters.clone());
    let depth = config.station.queue_depth;

    let model = Model::load(&config.model, config.station.onnxruntime_path.as_deref())?;
    let info = model.info.clone();
    let pre = Preprocessor::new(&config.preprocess, &model.manifest.input);
    let source = capture::open(&config.source)?;
    let limit = match (opts.max_parts, source.part_count()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    tracing::info!(
        "model {} v{} (sha256 {}, threshold {}), source: {}",
        info.name,
        info.version,
        &info.sha256[..12],
        info.threshold,
        source.describe()
    );

    let mut store = Store::open(
        &config.record.database,
        &config.record.images_dir,
        &config.station.name,
        &config.file,
    )?;
    store.live = opts.tap.as_ref().map(|t| t.events.clone());
    let model_rx = opts.tap.as_ref().map(|t| {
        t.model.send_replace(Some(info.clone()));
        t.model.subscribe()
    });
    let run_id = store.run_id;
    let database = store.db_path().display().to_string();
    let (store_tx, store_rx) = mpsc::channel::<StoreMsg>(1024);
    let store_task = tokio::spawn(store::run_writer(store, store_rx));

    let sim = match config.plc.link {
        PlcLink::Simulated => Some(
            SimPlc::start(config.plc.reject_coil)
                .await
                .map_err(PipelineError::SimulatedPlc)?,
        ),
        _ => None,
    };
    let plc_addr = match config.plc.link {
        PlcLink::Simulated => sim.as_ref().map(|s| s.addr),
        PlcLink::Tcp(addr) => Some(addr),
        PlcLink::Off => None,
    };
    let (plc_tx, plc_task) = match plc_addr {
        Some(addr) => {
            let (tx, rx) = mpsc::channel::<PlcJob>(depth * 4);
            let task = tokio::spawn(plc::run_output(
                config.plc.clone(),
                addr,
                rx,
                store_tx.clone(),
                counters.clone(),
                clock,
            ));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };

    // CPU stages, each on its own thread, joined by bounded channels.
    let progress: [Arc<AtomicU64>; 3] = Default::default();
    let (report_tx, report_rx) = mpsc::channel::<StageReport>(depth * 3 + 8);
    let (capture_tx, capture_rx) = sync_channel::<Job>(depth);
    let (pre_tx, pre_rx) = sync_channel::<Job>(depth);
    let (infer_tx, infer_rx) = sync_channel::<Job>(depth);
    let mut threads = Vec::new();
    let spawn = |name: &'static str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| PipelineError::Thread(name, e))
    };
    {
        let (reports, done) = (report_tx.clone(), progress[0].clone());
        threads.push(spawn(
            "capture",
            Box::new(move || capture::run_worker(source, capture_rx, pre_tx, reports, done)),
        )?);
        let (reports, done) = (report_tx.clone(), progress[1].clone());
        threads.push(spawn(
            "preprocess",
            Box::new(move || preprocess::run_worker(pre, pre_rx, infer_tx, reports, done)),
        )?);
        let (reports, done) = (report_tx, progress[2].clone());
        threads.push(spawn(
            "inference",
            Box::new(move || model::run_worker(model, infer_rx, reports, done)),
        )?);
    }

    let trigger = Trigger::bind(&config.trigger, &config.plc, counters.clone()).await?;
    let http_trigger = trigger.http_addr();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (trigger_tx, trigger_rx) = mpsc::channel::<TriggerEvent>(depth);
    let trigger_task = tokio::spawn(trigger.run(trigger_tx, limit, stop_rx));
    if let Some(ready) = opts.ready.take() {
        let _ = ready.send(Ready {
            http_trigger,
            plc: plc_addr,
            run_id,
        });
    }

    let mut orchestrator = Orchestrator {
        clock,
        run_id,
        deadline: Duration::from_millis(config.decision.deadline_ms),
        info,
        save_passed_every: config.record.save_passed_every,
        counters: counters.clone(),
        progress,
        capture_tx: Some(capture_tx),
        store_tx: store_tx.clone(),
        plc_tx,
        pending: VecDeque::new(),
        next_seq: 1,
        detection: Detection::default(),
        latency: StageLatencies::default(),
        stop_tx,
        status_line: opts.status_line,
        started,
        model_rx,
    };
    orchestrator.run(trigger_rx, report_rx, shutdown).await;

    // Drain: no more parts; let the workers, the PLC queue and the record writer finish.
    // Consuming the orchestrator closes its senders: capture (workers exit), PLC, and its record-writer handle.
    let (latency, detection) = orchestrator.into_figures();
    if let Some(tap) = &opts.tap {
        tap.model.send_replace(None);
    }
    let _ = trigger_task.await;
    if let Some(task) = plc_task {
        let _ = task.await;
    }
    drop(store_tx);
    let store = store_task.await.ok();
    join_workers(threads);

    let c = &counters;
    Ok(RunSummary {
        run_id,
        elapsed: started.elapsed(),
        parts: read(&c.parts),
        passed: read(&c.passed),
        rejected: read(&c.rejected),
        frame_faults: read(&c.frame_faults),
        model_errors: read(&c.model_errors),
        deadline_misses: read(&c.deadline_misses),
        overloaded: read(&c.overloaded),
        late_results: read(&c.late_results),
        plc_outages: read(&c.plc_outages),
        plc_delivered: read(&c.plc_delivered),
        plc_undelivered: read(&c.plc_undelivered),
        simulated_plc_pulses: sim.as_ref().map(SimPlc::reject_pulses),
        detection,
        end_to_end: Spread::of(&latency.end_to_end),
        after_capture: Spread::of(&latency.after_capture),
        capture: Spread::of(&latency.capture),
        preprocess: Spread::of(&latency.preprocess),
        inference: Spread::of(&latency.inference),
        database: match store {
            Some(s) if s.write_errors > 0 => format!(
                "{database} ({} records NOT written: see log)",
                s.write_errors
            ),
            _ => database,
        },
    })
}

/// Joins the worker threads; a thread stuck in a device call (a stalled source) is left behind after a grace
/// period, with a warning, rather than hanging the shutdown.
fn join_workers(threads: Vec<JoinHandle<()>>) {
    let grace = Instant::now() + Duration::from_secs(5);
    for handle in threads {
        while !handle.is_finished() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        let name = handle.thread().name().unwrap_or("worker").to_string();
        if handle.is_finished() {
            if handle.join().is_err() {
                tracing::error!("the {name} thread panicked");
            }
        } else {
            tracing::warn!(
                "the {name} thread is still blocked (stalled device?); leaving it behind"
            );
        }
    }
}

#[derive(Default)]
struct StageLatencies {
    end_to_end: Latencies,
    after_capture: Latencies,
    capture: Latencies,
    preprocess: Latencies,
    inference: Latencies,
}

struct Pending {
    seq: Seq,
    triggered: Instant,
    deadline: Instant,
}

struct Orchestrator {
    clock: Clock,
    run_id: i64,
    deadline: Duration,
    info: ModelInfo,
    save_passed_every: u64,
    counters: Arc<Counters>,
    /// Last sequence number each CPU stage finished: capture, preprocess, inference.
    progress: [Arc<AtomicU64>; 3],
    capture_tx: Option<SyncSender<Job>>,
    store_tx: mpsc::Sender<StoreMsg>,
    plc_tx: Option<mpsc::Sender<PlcJob>>,
    pending: VecDeque<Pending>,
    next_seq: Seq,
    detection: Detection,
    latency: StageLatencies,
    stop_tx: watch::Sender<bool>,
    status_line: bool,
    started: Instant,
    /// The model in force as the live view sees it: a technician may change the threshold there.
    model_rx: Option<watch::Receiver<Option<ModelInfo>>>,
}

impl Orchestrator {
    fn into_figures(self) -> (StageLatencies, Detection) {
        (self.latency, self.detection)
    }

    async fn run(
        &mut self,
        mut triggers: mpsc::Receiver<TriggerEvent>,
        mut reports: mpsc::Receiver<StageReport>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut triggers_open = true;
        let mut stopping = false;
        let mut status = tokio::time::interval(Duration::from_secs(1));
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let terminal = std::io::stderr().is_terminal();
        loop {
            if !triggers_open && self.pending.is_empty() {
                break;
            }
            let next_deadline = self
                .pending
                .front()
                .map(|p| tokio::time::Instant::from_std(p.deadline));
            tokio::select! {
                biased;
                Some(report) = reports.recv() => self.on_report(report).await,
                _ = async { tokio::time::sleep_until(next_deadline.unwrap_or_else(tokio::time::Instant::now)).await },
                    if next_deadline.is_some() => self.on_deadlines().await,
                event = triggers.recv(), if triggers_open => match event {
                    Some(event) => self.on_trigger(event).await,
                    None => triggers_open = false,
                },
                _ = &mut shutdown, if !stopping => {
                    stopping = true;
                    tracing::info!("stopping: finishing {} part(s) in flight", self.pending.len());
                    let _ = self.stop_tx.send(true);
                }
                _ = status.tick(), if self.status_line => self.print_status(terminal),
            }
        }
        if self.status_line && terminal {
            eprintln!();
        }
    }

    async fn on_trigger(&mut self, event: TriggerEvent) {
        self.follow_threshold();
        let seq = self.next_seq;
        self.next_seq += 1;
        let job = Job {
            seq,
            times: StageTimes::new(event.at),
            frame: None,
            tensor: Vec::new(),
        };
        let Some(capture_tx) = &self.capture_tx else {
            return;
        };
        match capture_tx.try_send(job) {
            Ok(()) => self.pending.push_back(Pending {
                seq,
                triggered: event.at,
                deadline: event.at + self.deadline,
            }),
            Err(TrySendError::Full(job)) => {
                bump(&self.counters.overloaded);
                tracing::warn!("part {seq}: pipeline full, rejected without inspection");
                self.finish(
                    seq,
                    job.times,
                    Decision::fail_safe(Reason::PipelineOverloaded),
                    None,
                    None,
                )
                .await;
            }
            Err(TrySendError::Disconnected(job)) => {
                bump(&self.counters.frame_faults);
                let reason = Reason::FrameFault {
                    detail: "the capture worker has stopped".into(),
                };
                self.finish(seq, job.times, Decision::fail_safe(reason), None, None)
                    .await;
            }
        }
    }

    /// Takes up a threshold changed on the review page (a technician's decision, audited there).
    fn follow_threshold(&mut self) {
        let Some(rx) = &mut self.model_rx else { return };
        if rx.has_changed().unwrap_or(false) {
            if let Some(model) = &*rx.borrow_and_update() {
                if model.threshold != self.info.threshold {
                    tracing::info!(
                        "threshold changed from {} to {}",
                        self.info.threshold,
                        model.threshold
                    );
                    self.info.threshold = model.threshold;
                }
            }
        }
    }

    fn take_pending(&mut self, seq: Seq) -> Option<Pending> {
        let index = self.pending.iter().position(|p| p.seq == seq)?;
        self.pending.remove(index)
    }

    async fn on_report(&mut self, report: StageReport) {
        self.follow_threshold();
        let seq = report.seq();
        let Some(pending) = self.take_pending(seq) else {
            // Its deadline already rejected it.
            bump(&self.counters.late_results);
            return;
        };
        if Instant::now() > pending.deadline {
            // Arrived after the deadline but before the timer fired: still a miss.
            self.pending.push_front(pending);
            bump(&self.counters.late_results);
            self.on_deadlines().await;
            return;
        }
        match report {
            StageReport::Scored {
                times,
                frame,
                inference,
                ..
            } => {
                let decision = Decision::judge(inference.score, self.info.threshold);
                self.finish(seq, times, decision, Some(frame), Some(inference.score))
                    .await;
            }
            StageReport::Fault {
                source_exhausted: true,
                detail,
                ..
            } => {
                // A replay ran out of frames: no part was there. Stop the line.
                tracing::info!("{detail}; stopping");
                let _ = self.stop_tx.send(true);
            }
            StageReport::Fault {
                times,
                stage,
                detail,
                frame,
                ..
            } => {
                bump(match stage {
                    Stage::Capture | Stage::Preprocess => &self.counters.frame_faults,
                    Stage::Inference => &self.counters.model_errors,
                });
                tracing::warn!("part {seq}: {detail}");
                let decision = Decision::fail_safe(Reason::from_fault(stage, detail));
                self.finish(seq, times, decision, frame, None).await;
            }
        }
    }

    /// Rejects every part whose deadline has passed.
    async fn on_deadlines(&mut self) {
        self.follow_threshold();
        let now = Instant::now();
        while self.pending.front().is_some_and(|p| p.deadline <= now) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let done = |i: usize| self.progress[i].load(Ordering::Acquire);
            let stage = if done(0) < p.seq {
                Stage::Capture
            } else if done(1) < p.seq {
                Stage::Preprocess
            } else {
                Stage::Inference
            };
            let deadline_ms = self.deadline.as_millis() as u64;
            let reason = if stage == Stage::Capture && done(0) + 1 == p.seq {
                bump(&self.counters.frame_faults);
                Reason::FrameFault {
                    detail: format!(
                        "capture stalled: no frame within the {deadline_ms} ms deadline"
                    ),
                }
            } else {
                bump(&self.counters.deadline_misses);
                Reason::DeadlineMissed {
                    deadline_ms,
                    stage: stage.name().into(),
                }
            };
            tracing::warn!(
                "part {}: no verdict within {deadline_ms} ms (at {})",
                p.seq,
                stage.name()
            );
            self.finish(
                p.seq,
                StageTimes::new(p.triggered),
                Decision::fail_safe(reason),
                None,
                None,
            )
            .await;
        }
    }

    /// Records the verdict, tells the PLC, updates the figures.
    async fn finish(
        &mut self,
        seq: Seq,
        times: StageTimes,
        decision: Decision,
        frame: Option<Frame>,
        score: Option<f32>,
    ) {
        let decided = Instant::now();
        let c = &self.counters;
        bump(&c.parts);
        let rejected = decision.verdict == Verdict::Reject;
        bump(if rejected { &c.rejected } else { &c.passed });

        let l = &mut self.latency;
        l.end_to_end.push(decided - times.triggered);
        if let Some(captured) = times.captured {
            l.capture.push(captured - times.triggered);
            l.after_capture.push(decided - captured);
            if let Some(pre) = times.preprocessed {
                l.preprocess.push(pre - captured);
                if let Some(inferred) = times.inferred {
                    l.inference.push(inferred - pre);
                }
            }
        }

        let (origin, truth, image) = match frame {
            Some(frame) => {
                if let Some(truth) = &frame.truth {
                    self.detection.add(truth, rejected);
                }
                let sample =
                    self.save_passed_every > 0 && read(&c.passed) % self.save_passed_every == 0;
                let keep = rejected || sample;
                (frame.origin, frame.truth, keep.then_some(frame.image))
            }
            None => ("(no frame)".to_string(), None, None),
        };
        let part_id = format!("{}-{seq:06}", self.run_id);
        let wall = |t: Option<Instant>| t.map(|t| self.clock.wall_us(t));
        let record = PartRecord {
            part_id: part_id.clone(),
            seq,
            origin,
            truth,
            triggered_us: self.clock.wall_us(times.triggered),
            captured_us: wall(times.captured),
            preprocessed_us: wall(times.preprocessed),
            inferred_us: wall(times.inferred),
            decided_us: self.clock.wall_us(decided),
            score,
            verdict: decision.verdict,
            reasons_json: decision.reasons_json(),
            result_code: decision.result_code() as u16,
            model: self.info.clone(),
            plc_status: if self.plc_tx.is_some() {
                "pending"
            } else {
                "off"
            },
            image,
        };
        if self
            .store_tx
            .send(StoreMsg::Insert(Box::new(record)))
            .await
            .is_err()
        {
            tracing::error!("part {part_id}: the record writer has stopped; record lost");
        }
        if let Some(plc_tx) = &self.plc_tx {
            let job = PlcJob {
                part_id: part_id.clone(),
                seq,
                code: decision.result_code(),
                reject: rejected,
            };
            if let Err(e) = plc_tx.try_send(job) {
                bump(&self.counters.plc_undelivered);
                let detail = match e {
                    mpsc::error::TrySendError::Full(_) => "PLC queue full",
                    mpsc::error::TrySendError::Closed(_) => "PLC task stopped",
                };
                let msg = StoreMsg::Actuated {
                    part_id,
                    outcome: PlcOutcome::Undelivered {
                        detail: detail.into(),
                    },
                };
                let _ = self.store_tx.send(msg).await;
            }
        }
    }

    fn print_status(&self, terminal: bool) {
        let c = &self.counters;
        let parts = read(&c.parts);
        let rate = parts as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let p = |q| {
            self.latency
                .end_to_end
                .recent_percentile(1000, q)
                .unwrap_or(0.0)
        };
        let line = format!(
            "parts {parts}  {rate:.1}/s  pass {}  reject {}  latency p50 {:.1} ms p99 {:.1} ms  faults {}  overloaded {}  plc undelivered {}",
            read(&c.passed),
            read(&c.rejected),
            p(50.0),
            p(99.0),
            read(&c.frame_faults) + read(&c.model_errors) + read(&c.deadline_misses),
            read(&c.overloaded),
            read(&c.plc_undelivered),
        );
        if terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }
}
