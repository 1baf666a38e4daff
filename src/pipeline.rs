//! The pipeline: wires the stages together and runs the line.
//!
//! ```text
//! trigger task ──TriggerEvent──▶ orchestrator ──Job──▶ capture thread ──▶ preprocess thread ──▶ inference thread
//!                                    ▲   │                  │ fault              │ fault             │ scored/fault
//!                                    │   │                  └────────────────────┴───── StageReport ─┘
//!                                    └───┼───────────────────────────────────────────────────────────┘
//!                                        ├──PlcMsg──▶ PLC handshake task (Modbus) ──Actuated──┐
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
//!
//! With `[audio]`, the capture thread fills the audio ring continuously; at each trigger the orchestrator tells the
//! audio source and hands the part to the acoustic thread (bounded channel), which waits until the post-trigger
//! window has elapsed, cuts the part's slice and scores it (`AcousticReport`). A part then waits for both scores;
//! its deadline still rejects it fail-safe if either is late.

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

use crate::acoustic::{self, AcousticError, AcousticJob, AcousticModel, AcousticReport};
use crate::audio::{AudioConfig, AudioError, AudioInput};
use crate::capture::{self, SourceError};
use crate::clock::Clock;
use crate::config::Config;
use crate::decision::{Decision, Reason, Verdict};
use crate::metrics::{
    AcousticSummary, Counters, Detection, Latencies, RunSummary, Spread, bump, read,
};
use crate::model::{self, Model, ModelError, ModelInfo};
use crate::part::{Frame, Job, Seq, Stage, StageReport, StageTimes};
use crate::plc::{self, PlcJob, PlcMsg};
use crate::preprocess::{self, Preprocessor};
use crate::recipe;
use crate::store::{self, AcousticRecord, PartRecord, PlcOutcome, Store, StoreError, StoreMsg};
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
    #[error("cannot start the PLC link (simulated PLC or Modbus server): {0}")]
    SimulatedPlc(std::io::Error),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    #[error(transparent)]
    Acoustic(#[from] AcousticError),
    #[error("{0} (set [audio] required = false to run without the acoustic score)")]
    Audio(AudioError),
    #[error("acoustic model {model}: {detail}")]
    AcousticMismatch { model: String, detail: String },
}

/// Loads the acoustic model and opens the audio input. A missing or failing audio input is an error when the
/// config requires audio; otherwise the line runs without the acoustic score (`Ok(None)`, with a warning).
pub fn open_acoustic(
    audio: &AudioConfig,
) -> Result<Option<(AudioInput, AcousticModel)>, PipelineError> {
    let model = AcousticModel::load(&audio.model_dir, audio.threshold)?;
    let mismatch = |detail: String| PipelineError::AcousticMismatch {
        model: model.dir.display().to_string(),
        detail,
    };
    if model.sample_rate_hz() != audio.sample_rate_hz {
        return Err(mismatch(format!(
            "trained at {} Hz but [audio] sample_rate_hz is {}",
            model.sample_rate_hz(),
            audio.sample_rate_hz
        )));
    }
    let window_ms = audio.pre_ms + audio.post_ms;
    if model.manifest.window_ms != window_ms {
        tracing::warn!(
            "acoustic model {} was trained on {} ms slices but [audio] pre_ms + post_ms = {window_ms} ms; scores may shift",
            model.dir.display(),
            model.manifest.window_ms
        );
    }
    match AudioInput::open(audio) {
        Ok(input) => Ok(Some((input, model))),
        Err(e) if audio.required => Err(PipelineError::Audio(e)),
        Err(e) => {
            tracing::warn!("{e}; running WITHOUT the acoustic score ([audio] required = false)");
            Ok(None)
        }
    }
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
    let shadow_model = match &config.model.shadow_dir {
        Some(dir) => {
            let shadow =
                model::shadow::load(dir, &model, config.station.onnxruntime_path.as_deref())?;
            tracing::info!(
                "shadow model {} v{} (sha256 {}, threshold {}): scored and recorded, never drives the reject",
                shadow.info.name,
                shadow.info.version,
                &shadow.info.sha256[..12],
                shadow.info.threshold
            );
            Some(shadow)
        }
        None => None,
    };
    let registry = model.registry.clone();
    let shadow_name = shadow_model
        .as_ref()
        .map(|m| format!("{} v{}", m.info.name, m.info.version));
    let pre = Preprocessor::new(&config.preprocess, &model.manifest.input);
    let source = capture::open(&config.source)?;
    let listening = match &config.audio {
        Some(audio) => open_acoustic(audio)?,
        None => None,
    };
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
        // Subscribe first: a threshold set between the two calls would otherwise count as seen, never applied.
        let rx = t.model.subscribe();
        t.model.send_replace(Some(info.clone()));
        rx
    });
    let run_id = store.run_id;
    let database = store.db_path().display().to_string();
    let (store_tx, store_rx) = mpsc::channel::<StoreMsg>(1024);
    let store_task = tokio::spawn(store::run_writer(store, store_rx));

    let recipe_numbers: Vec<u16> = config.recipes.iter().map(|r| r.number).collect();
    let plc = plc::start(
        &config.plc,
        &config.trigger,
        &recipe_numbers,
        depth,
        counters.clone(),
        clock,
        store_tx.clone(),
    )
    .await
    .map_err(PipelineError::SimulatedPlc)?;
    let (plc_tx, plc_triggers, plc_recipes, plc_task, plc_info) = match plc {
        Some(h) => (
            Some(h.tx),
            h.triggers,
            h.recipes,
            Some(h.task),
            Some(h.info),
        ),
        None => (None, None, None, None, None),
    };
    let recipes_rx = recipe::start_loader(config, plc_recipes);
    let swaps_rx = recipe::watch_registry(config, registry, info.version.clone());
    let plc_addr = plc_info.as_ref().map(|i| i.addr);

    // CPU stages, each on its own thread, joined by bounded channels.
    let progress: [Arc<AtomicU64>; 3] = Default::default();
    let (report_tx, report_rx) = mpsc::channel::<StageReport>(depth * 3 + 8);
    let (capture_tx, capture_rx) = sync_channel::<Job>(depth);
    let (pre_tx, pre_rx) = sync_channel::<Job>(depth);
    let (infer_tx, infer_rx) = sync_channel::<Job>(depth);
    let (pre_switch_tx, pre_switch_rx) = std::sync::mpsc::channel();
    let (model_switch_tx, model_switch_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    let spawn = |name: &'static str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| PipelineError::Thread(name, e))
    };
    let (acoustic_tx, mut acoustic_rx) = mpsc::channel::<AcousticReport>(depth * 2 + 8);
    let listener = match listening {
        Some((input, model)) => {
            tracing::info!(
                "acoustic model {} v{} (sha256 {}, threshold {}), audio: {}",
                model.info.name,
                model.info.version,
                &model.info.sha256[..12],
                model.info.threshold,
                input.describe()
            );
            let input = Arc::new(input);
            let (jobs_tx, jobs_rx) = sync_channel::<AcousticJob>(depth);
            let info = model.info.clone();
            let (worker_input, give_up) = (
                input.clone(),
                Duration::from_millis(config.decision.deadline_ms),
            );
            threads.push(spawn(
                "acoustic",
                Box::new(move || {
                    acoustic::run_worker(worker_input, model, jobs_rx, acoustic_tx, give_up)
                }),
            )?);
            Some(Listener {
                summary: AcousticSummary {
                    model: format!("{} v{}", info.name, info.version),
                    source: input.describe(),
                    ..Default::default()
                },
                input,
                jobs: Some(jobs_tx),
                info,
                latency: Latencies::default(),
            })
        }
        None => {
            drop(acoustic_tx);
            None
        }
    };
    let shadow_tap = match shadow_model {
        Some(shadow) => {
            let (jobs_tx, jobs_rx) = sync_channel(depth);
            let (store, shadow_counters) = (store_tx.clone(), counters.clone());
            threads.push(spawn(
                "shadow",
                Box::new(move || {
                    model::shadow::run_worker(shadow, jobs_rx, store, run_id, shadow_counters)
                }),
            )?);
            Some(model::shadow::ShadowTap {
                jobs: jobs_tx,
                counters: counters.clone(),
            })
        }
        None => None,
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
            Box::new(move || {
                let switches = recipe::Pending::new(pre_switch_rx);
                preprocess::run_worker(pre, pre_rx, infer_tx, reports, done, switches)
            }),
        )?);
        let (reports, done) = (report_tx, progress[2].clone());
        threads.push(spawn(
            "inference",
            Box::new(move || {
                let switches = recipe::Pending::new(model_switch_rx);
                model::run_worker(model, infer_rx, reports, done, switches, shadow_tap)
            }),
        )?);
    }

    let trigger = Trigger::bind(&config.trigger, plc_triggers).await?;
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
        infos: vec![(1, info.clone())],
        switches: recipe::Switches {
            preprocess: pre_switch_tx,
            inference: model_switch_tx,
        },
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
        listener,
        plc_status: plc_info.as_ref().map(|i| i.status.clone()),
        model_rx,
        model_tx: opts.tap.as_ref().map(|t| t.model.clone()),
        base_in_force: true,
        used_models: vec![format!("{} v{}", info.name, info.version)],
    };
    orchestrator
        .run(
            trigger_rx,
            report_rx,
            &mut acoustic_rx,
            recipes_rx,
            swaps_rx,
            shutdown,
        )
        .await;

    // Drain: no more parts; let the workers, the PLC queue and the record writer finish.
    // Consuming the orchestrator closes its senders: capture (workers exit), PLC, and its record-writer handle.
    let acoustic = orchestrator.listener.take().map(|l| {
        let mut summary = l.summary;
        summary.overruns = l.input.overruns();
        summary.latency = Spread::of(&l.latency);
        summary
    });
    let models = orchestrator.used_models.clone();
    let (latency, detection) = orchestrator.into_figures();
    drop(acoustic_rx);
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
        models,
        model_swaps: read(&c.model_swaps),
        shadow: shadow_name,
        shadow_scored: read(&c.shadow_scored),
        shadow_dropped: read(&c.shadow_dropped),
        plc_status: plc_info
            .as_ref()
            .map(|i| plc::status::read(&i.status).to_string()),
        simulated_plc_pulses: plc_info
            .as_ref()
            .and_then(|i| i.sim.as_ref())
            .map(|s| s.reject_pulses()),
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
        acoustic,
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
    /// Whether the part waits for an acoustic score.
    listening: bool,
    /// The vision result, kept while the part waits for its acoustic score.
    vision: Option<(StageTimes, Frame, f32)>,
    acoustic: Option<Heard>,
}

/// A part's acoustic result as it waits for the vision result.
struct Heard {
    result: Result<(f32, Vec<f32>), String>,
    truth: Option<String>,
}

/// The acoustic stage as the orchestrator sees it.
struct Listener {
    input: Arc<AudioInput>,
    jobs: Option<SyncSender<AcousticJob>>,
    info: ModelInfo,
    summary: AcousticSummary,
    latency: Latencies,
}

struct Orchestrator {
    clock: Clock,
    run_id: i64,
    deadline: Duration,
    /// The model info (threshold) in force from each part on: one entry per recipe switch.
    infos: Vec<(Seq, ModelInfo)>,
    switches: recipe::Switches,
    save_passed_every: u64,
    counters: Arc<Counters>,
    /// Last sequence number each CPU stage finished: capture, preprocess, inference.
    progress: [Arc<AtomicU64>; 3],
    capture_tx: Option<SyncSender<Job>>,
    store_tx: mpsc::Sender<StoreMsg>,
    plc_tx: Option<mpsc::Sender<PlcMsg>>,
    pending: VecDeque<Pending>,
    next_seq: Seq,
    detection: Detection,
    latency: StageLatencies,
    stop_tx: watch::Sender<bool>,
    status_line: bool,
    started: Instant,
    listener: Option<Listener>,
    plc_status: Option<plc::status::SharedStatus>,
    /// The model in force as the live view sees it: a technician may change the threshold there.
    model_rx: Option<watch::Receiver<Option<ModelInfo>>>,
    /// Told the new model at a hot swap.
    model_tx: Option<watch::Sender<Option<ModelInfo>>>,
    /// No recipe has replaced the configured model (hot swaps of a promoted version apply to it only).
    base_in_force: bool,
    /// Every model put in force in this run, in order ("name vX").
    used_models: Vec<String>,
}

impl Orchestrator {
    fn into_figures(self) -> (StageLatencies, Detection) {
        (self.latency, self.detection)
    }

    async fn run(
        &mut self,
        mut triggers: mpsc::Receiver<TriggerEvent>,
        mut reports: mpsc::Receiver<StageReport>,
        acoustic: &mut mpsc::Receiver<AcousticReport>,
        mut recipes: mpsc::Receiver<recipe::LoadResult>,
        mut swaps: mpsc::Receiver<recipe::Loaded>,
        shutdown: impl Future<Output = ()>,
    ) {
        let listening = self.listener.is_some();
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
                Some(report) = acoustic.recv(), if listening => self.on_acoustic(report).await,
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
                Some(loaded) = recipes.recv() => self.on_recipe(loaded),
                Some(loaded) = swaps.recv() => self.on_swap(loaded),
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
        if let Some(plc_tx) = &self.plc_tx {
            let msg = PlcMsg::Triggered {
                seq,
                part_id: self.part_id(seq),
                at: event.at,
                tag: event.tag,
            };
            if plc_tx.try_send(msg).is_err() {
                tracing::warn!("part {seq}: PLC queue full; the reject gate does not know it");
            }
        }
        if event.refused {
            bump(&self.counters.overloaded);
            let times = job.times;
            self.finish(
                seq,
                times,
                Decision::fail_safe(Reason::PipelineOverloaded),
                None,
                None,
            )
            .await;
            return;
        }
        let Some(capture_tx) = &self.capture_tx else {
            return;
        };
        match capture_tx.try_send(job) {
            Ok(()) => {
                let acoustic = self.listen(seq, event.at);
                self.pending.push_back(Pending {
                    seq,
                    triggered: event.at,
                    deadline: event.at + self.deadline,
                    listening: self.listener.is_some(),
                    vision: None,
                    acoustic,
                });
            }
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

    /// Tells the audio source about the part and hands it to the acoustic worker; a full queue is a fault at once.
    fn listen(&mut self, seq: Seq, at: Instant) -> Option<Heard> {
        let listener = self.listener.as_mut()?;
        listener.input.mark(seq, at);
        let job = AcousticJob { seq, triggered: at };
        let detail = match listener.jobs.as_ref()?.try_send(job) {
            Ok(()) => return None,
            Err(TrySendError::Full(_)) => "the acoustic queue was full (scoring falls behind)",
            Err(TrySendError::Disconnected(_)) => "the acoustic worker has stopped",
        };
        Some(Heard {
            result: Err(detail.into()),
            truth: None,
        })
    }

    /// The pending part `seq`, if it is still waiting and its deadline has not passed (a result after the deadline
    /// is counted as late and the part rejected by the deadline).
    async fn still_pending(&mut self, seq: Seq) -> Option<usize> {
        let Some(index) = self.pending.iter().position(|p| p.seq == seq) else {
            // Its deadline already rejected it.
            bump(&self.counters.late_results);
            return None;
        };
        if Instant::now() > self.pending[index].deadline {
            // Arrived after the deadline but before the timer fired: still a miss.
            bump(&self.counters.late_results);
            self.on_deadlines().await;
            return None;
        }
        Some(index)
    }

    async fn on_acoustic(&mut self, report: AcousticReport) {
        let Some(p) = self.pending.iter().find(|p| p.seq == report.seq) else {
            // The part already has its verdict (a vision fault, or its deadline, which counted it).
            return;
        };
        let waited = report.scored.saturating_duration_since(p.triggered);
        if let Some(l) = self.listener.as_mut() {
            l.latency.push(waited);
        }
        let Some(index) = self.still_pending(report.seq).await else {
            return;
        };
        let heard = Heard {
            result: report.result.map(|s| (s.score, s.samples)),
            truth: report.truth,
        };
        let p = &mut self.pending[index];
        p.acoustic = Some(heard);
        if p.vision.is_some()
            && let Some(p) = self.pending.remove(index)
        {
            self.judge(p).await;
        }
    }

    /// Both scores are in (or the station does not listen): the verdict.
    async fn judge(&mut self, mut p: Pending) {
        let Some((times, frame, score)) = p.vision.take() else {
            return;
        };
        let mut decision = Decision::judge(score, self.info_for(p.seq).threshold);
        if let (Some(heard), Some(l)) = (&p.acoustic, &mut self.listener) {
            l.summary.scored += 1;
            match &heard.result {
                Ok((s, _)) => decision.add_acoustic(*s, l.info.threshold),
                Err(detail) => {
                    tracing::warn!("part {}: sound: {detail}", p.seq);
                    decision.add(Reason::AudioFault {
                        detail: detail.clone(),
                    });
                }
            }
        }
        self.finish_heard(p.seq, times, decision, Some(frame), Some(score), p.acoustic)
            .await;
    }

    /// The model info of the recipe part `seq` was triggered under.
    fn info_for(&self, seq: Seq) -> &ModelInfo {
        let at = self.infos.partition_point(|(from, _)| *from <= seq);
        &self.infos[at.saturating_sub(1)].1
    }

    /// Hands a loaded model and its preprocessor to the workers, in force from the next part on; returns that
    /// part's number, or `None` when the workers have stopped.
    fn switch_to(&mut self, loaded: recipe::Loaded) -> Option<Seq> {
        let from = self.next_seq;
        let info = loaded.model.info.clone();
        let sent = self
            .switches
            .preprocess
            .send((from, loaded.preprocessor))
            .is_ok()
            && self.switches.inference.send((from, loaded.model)).is_ok();
        if !sent {
            return None;
        }
        let oldest = self.pending.front().map_or(from, |p| p.seq);
        while self.infos.len() > 1 && self.infos[1].0 <= oldest {
            self.infos.remove(0);
        }
        self.used_models.push(format!(
            "{} v{} (from part {from})",
            info.name, info.version
        ));
        self.infos.push((from, info));
        Some(from)
    }

    /// A promoted version of the configured model was loaded: a hot swap between two parts.
    fn on_swap(&mut self, loaded: recipe::Loaded) {
        if !self.base_in_force {
            tracing::warn!(
                "model {} v{} was promoted, but a recipe's model is in force: it applies when the configured model \
                 is selected again",
                loaded.model.info.name,
                loaded.model.info.version
            );
            return;
        }
        let info = loaded.model.info.clone();
        let old = self.infos.last().map(|(_, i)| format!("v{}", i.version));
        if let Some(from) = self.switch_to(loaded) {
            bump(&self.counters.model_swaps);
            tracing::info!(
                "hot swap: model {} v{} (sha256 {}, threshold {}) in force from part {from} (was {})",
                info.name,
                info.version,
                &info.sha256[..12],
                info.threshold,
                old.unwrap_or_default()
            );
            if let Some(tx) = &self.model_tx {
                tx.send_replace(Some(info));
                if let Some(rx) = &mut self.model_rx {
                    rx.borrow_and_update();
                }
            }
        }
    }

    /// A recipe was loaded (or failed to): it applies from the next part on, in every stage at once.
    fn on_recipe(&mut self, loaded: recipe::LoadResult) {
        let (number, ok) = match loaded {
            Ok(l) => {
                let number = l.number;
                let info = l.model.info.clone();
                let sent = self.switch_to(l);
                if let Some(from) = sent {
                    self.base_in_force = false;
                    tracing::info!(
                        "recipe {number} ({} v{}, threshold {}) in force from part {from}",
                        info.name,
                        info.version,
                        info.threshold
                    );
                }
                (number, sent.is_some())
            }
            Err((number, detail)) => {
                tracing::error!("recipe {number} refused: {detail}");
                (number, false)
            }
        };
        if let Some(plc_tx) = &self.plc_tx {
            let _ = plc_tx.try_send(PlcMsg::Recipe { number, ok });
        }
    }

    fn part_id(&self, seq: Seq) -> String {
        format!("{}-{seq:06}", self.run_id)
    }

    /// Takes up a threshold changed on the review page (a technician's decision, audited there).
    fn follow_threshold(&mut self) {
        let Some(rx) = &mut self.model_rx else { return };
        if rx.has_changed().unwrap_or(false) {
            // The current recipe's model: parts judged from now on use the new threshold.
            if let (Some(model), Some((_, info))) =
                (&*rx.borrow_and_update(), self.infos.last_mut())
                && model.threshold != info.threshold
            {
                tracing::info!(
                    "threshold changed from {} to {}",
                    info.threshold,
                    model.threshold
                );
                info.threshold = model.threshold;
            }
        }
    }

    async fn on_report(&mut self, report: StageReport) {
        self.follow_threshold();
        let seq = report.seq();
        let Some(index) = self.still_pending(seq).await else {
            return;
        };
        if let StageReport::Scored {
            times,
            frame,
            inference,
            ..
        } = report
        {
            let p = &mut self.pending[index];
            p.vision = Some((times, frame, inference.score));
            if (!p.listening || p.acoustic.is_some())
                && let Some(p) = self.pending.remove(index)
            {
                self.judge(p).await;
            }
            return;
        }
        self.pending.remove(index);
        match report {
            StageReport::Scored { .. } => {}
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
            let deadline_ms = self.deadline.as_millis() as u64;
            if let Some((times, frame, score)) = p.vision {
                // Vision was done; the sound was not.
                bump(&self.counters.deadline_misses);
                tracing::warn!("part {}: no acoustic score within {deadline_ms} ms", p.seq);
                let reason = Reason::DeadlineMissed {
                    deadline_ms,
                    stage: "acoustic".into(),
                };
                let decision = Decision::fail_safe(reason);
                self.finish(p.seq, times, decision, Some(frame), Some(score))
                    .await;
                continue;
            }
            let done = |i: usize| self.progress[i].load(Ordering::Acquire);
            let stage = if done(0) < p.seq {
                Stage::Capture
            } else if done(1) < p.seq {
                Stage::Preprocess
            } else {
                Stage::Inference
            };
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

    /// Records a verdict reached without the part's sound.
    async fn finish(
        &mut self,
        seq: Seq,
        times: StageTimes,
        decision: Decision,
        frame: Option<Frame>,
        score: Option<f32>,
    ) {
        self.finish_heard(seq, times, decision, frame, score, None)
            .await;
    }

    /// Records the verdict, tells the PLC, updates the figures.
    async fn finish_heard(
        &mut self,
        seq: Seq,
        times: StageTimes,
        decision: Decision,
        frame: Option<Frame>,
        score: Option<f32>,
        heard: Option<Heard>,
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

        let acoustic = self.listener.as_mut().map(|l| {
            let for_sound = decision
                .reasons
                .iter()
                .any(|r| matches!(r, Reason::AcousticScoreOverThreshold { .. }));
            l.summary.rejected += u64::from(for_sound);
            let (score, samples, truth) = match heard {
                Some(Heard {
                    result: Ok((s, samples)),
                    truth,
                }) => (Some(s), Some(samples), truth),
                Some(Heard {
                    result: Err(_),
                    truth,
                }) => {
                    l.summary.faults += 1;
                    (None, None, truth)
                }
                None => (None, None, None),
            };
            if let Some(t) = &truth {
                let t = if t == "normal" { "good" } else { t.as_str() };
                l.summary.detection.add(t, for_sound);
            }
            AcousticRecord {
                score,
                model: l.info.clone(),
                truth,
                sound: samples
                    .filter(|_| rejected)
                    .map(|s| (s, l.input.sample_rate_hz())),
                spectrogram_path: None,
            }
        });
        let sound_truth = acoustic.as_ref().and_then(|a| a.truth.clone());
        let mut heatmap = None;
        let (origin, truth, image) = match frame {
            Some(frame) => {
                if let Some(truth) = &frame.truth {
                    // A part is good only if it looks and sounds good.
                    let truth = match sound_truth.as_deref() {
                        Some(sound) if truth == "good" && sound != "normal" => sound,
                        _ => truth.as_str(),
                    };
                    self.detection.add(truth, rejected);
                }
                let sample =
                    self.save_passed_every > 0 && read(&c.passed) % self.save_passed_every == 0;
                let keep = rejected || sample;
                heatmap = frame
                    .anomaly_map
                    .filter(|_| rejected)
                    .map(|map| (map, frame.roi));
                (frame.origin, frame.truth, keep.then_some(frame.image))
            }
            None => ("(no frame)".to_string(), None, None),
        };
        let part_id = self.part_id(seq);
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
            model: self.info_for(seq).clone(),
            plc_status: if self.plc_tx.is_some() {
                "pending"
            } else {
                "off"
            },
            image,
            heatmap,
            heatmap_path: None,
            acoustic,
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
            if let Err(e) = plc_tx.try_send(PlcMsg::Verdict(job)) {
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
        let line = match &self.plc_status {
            Some(status) => format!("{line}  |  {}", plc::status::read(status)),
            None => line,
        };
        if terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }
}
