//! Build: every piece of the line opened and started, in order, before the first part: the models, the frame
//! source and the audio input, the record writer, the PLC link, the recipe loader and registry watcher, the CPU
//! worker threads, and the trigger. What comes back ([`Line`]) is a plain value holding the started pieces; `run`
//! drives it and `drain` takes it down. Anything that cannot start fails here, before a part is triggered.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::identities::Identities;
use super::inflight::InFlight;
use super::listener::{Listener, open_acoustic};
use super::orchestrator::{Inputs, Orchestrator};
use super::{PipelineError, RunOptions};
use crate::acoustic::{self, AcousticJob, AcousticModel, AcousticReport};
use crate::audio::AudioInput;
use crate::capture::{self, FrameSource};
use crate::clock::Clock;
use crate::config::Config;
use crate::identity::IdentitySource;
use crate::identity::reader::{self, ScanEvent};
use crate::metrics::{AcousticSummary, Counters};
use crate::model::{self, Model, ModelInfo};
use crate::part::record::{ImageBudget, RecordMsg};
use crate::part::switch::Pending;
use crate::part::{Job, Seq, StageReport, TriggerEvent};
use crate::plc::{self, PlcInfo, PlcMsg};
use crate::preprocess::{self, Preprocessor};
use crate::recipe::{self, RecipeConfig};
use crate::store::{self, Store};
use crate::trigger::Trigger;

/// The started line, not yet running.
pub struct Line {
    pub orchestrator: Orchestrator,
    pub run_id: i64,
    pub database: String,
    /// Parts to run, when limited (the part limit, or the replay's length).
    pub limit: Option<u64>,
    pub shadow: Option<String>,
    pub http_trigger: Option<std::net::SocketAddr>,
    pub plc: Option<PlcParts>,
    pub store_task: tokio::task::JoinHandle<Store>,
    pub trigger_task: tokio::task::JoinHandle<()>,
    pub threads: Vec<JoinHandle<()>>,
}

/// The started PLC link.
pub struct PlcParts {
    pub task: tokio::task::JoinHandle<()>,
    pub info: PlcInfo,
}

/// The models, as loaded and checked.
struct Models {
    model: Model,
    shadow: Option<Model>,
}

/// The record writer, started.
struct Records {
    tx: mpsc::Sender<RecordMsg>,
    task: tokio::task::JoinHandle<Store>,
    run_id: i64,
    database: String,
    model_rx: Option<watch::Receiver<Option<ModelInfo>>>,
}

/// Opens and starts every piece of the line, in order; returns it with what its orchestrator listens to.
pub async fn build(config: &Config, opts: &RunOptions) -> Result<(Line, Inputs), PipelineError> {
    let started = Instant::now();
    let clock = Clock::new();
    let counters = opts
        .tap
        .as_ref()
        .map_or_else(Arc::default, |t| t.counters.clone());
    let models = load_models(config)?;
    let info = models.model.info.clone();
    let gray = capture::decode_gray(&models.model.manifest.input, config.recipes.len());
    let (source, listening) = open_sources(config, &info, gray)?;
    let limit = match (opts.max_parts, source.part_count()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let records = open_records(config, opts, &info, &counters)?;
    let (plc_tx, plc_triggers, plc_recipes, plc) =
        start_plc(config, &counters, clock, &records.tx).await?;
    let (recipes, swaps) = start_recipes(config, &models, plc_recipes);
    let shadow = models
        .shadow
        .as_ref()
        .map(|m| format!("{} v{}", m.info.name, m.info.version));
    let (mut workers, ends) = Workers::new(config.station.queue_depth);
    let listener = workers.listen(listening, config.decision.deadline_ms)?;
    let pre = Preprocessor::new(&config.preprocess, &models.model.manifest.input);
    workers.vision(ends, source, pre, models, &records, &counters)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    // Before the trigger: a part triggered once the line is up finds the scanner reading.
    let scans = start_scanner(config, &counters, stop_rx.clone())?;
    let trigger = Trigger::bind(&config.trigger, plc_triggers).await?;
    let http_trigger = trigger.http_addr();
    let (trigger_tx, triggers) = mpsc::channel::<TriggerEvent>(config.station.queue_depth);
    let trigger_task = tokio::spawn(trigger.run(trigger_tx, limit, stop_rx));
    let deadline = Duration::from_millis(config.decision.deadline_ms);
    let acoustic_threshold = listener.as_ref().map(|l| l.info.threshold);
    let orchestrator = Orchestrator {
        parts: InFlight::new(deadline, info.clone(), acoustic_threshold),
        clock,
        run_id: records.run_id,
        switches: workers.switches,
        save_passed_every: config.record.save_passed_every,
        uncertain_margin: config.web.uncertain_margin,
        images: ImageBudget::new(config.record.images.queue_bytes),
        counters,
        progress: workers.progress,
        capture_tx: Some(workers.capture_tx),
        records: records.tx,
        plc_tx,
        detection: Default::default(),
        latency: Default::default(),
        stop_tx,
        status_line: opts.status_line,
        started,
        listener,
        plc_status: plc.as_ref().map(|p| p.info.status.clone()),
        model_rx: records.model_rx,
        model_tx: opts.tap.as_ref().map(|t| t.model.clone()),
        base_in_force: true,
        used_models: vec![format!("{} v{}", info.name, info.version)],
        identities: Identities::new(&config.identity),
    };
    let inputs = Inputs {
        triggers,
        reports: workers.reports,
        sounds: workers.sounds,
        recipes,
        swaps,
        scans,
    };
    let line = Line {
        orchestrator,
        run_id: records.run_id,
        database: records.database,
        limit,
        shadow,
        http_trigger,
        plc,
        store_task: records.task,
        trigger_task,
        threads: workers.threads,
    };
    Ok((line, inputs))
}

/// The scanner's reader, when parts are identified by scans: its port must open now (later failures reopen it).
fn start_scanner(
    config: &Config,
    counters: &Arc<Counters>,
    stop: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<ScanEvent>, PipelineError> {
    let (tx, rx) = mpsc::channel(64);
    if let IdentitySource::Scanner(scanner) = &config.identity.source {
        let port = reader::open(scanner).map_err(PipelineError::Scanner)?;
        tracing::info!(
            "identity: scanner on {} at {} baud; a scan is a part's within {} ms before its trigger",
            scanner.port.display(),
            scanner.baud,
            scanner.scan_window_ms
        );
        tokio::spawn(reader::run(
            scanner.clone(),
            Some(port),
            tx,
            counters.clone(),
            stop,
        ));
    }
    Ok(rx)
}

/// The active model, and the shadow model beside it when configured.
fn load_models(config: &Config) -> Result<Models, PipelineError> {
    let ort = config.station.onnxruntime_path.as_deref();
    let model = Model::load(&config.model, ort)?;
    let shadow = match &config.model.shadow_dir {
        Some(dir) => {
            let shadow = model::shadow::load(dir, &model, ort)?;
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
    Ok(Models { model, shadow })
}

/// The frame source, and the audio input with its model when the station listens.
#[allow(clippy::type_complexity)]
fn open_sources(
    config: &Config,
    info: &ModelInfo,
    gray: bool,
) -> Result<(Box<dyn FrameSource>, Option<(AudioInput, AcousticModel)>), PipelineError> {
    let source = capture::open(&config.source, gray)?;
    let listening = match &config.audio {
        Some(audio) => open_acoustic(audio)?,
        None => None,
    };
    tracing::info!(
        "model {} v{} (sha256 {}, threshold {}), source: {}",
        info.name,
        info.version,
        &info.sha256[..12],
        info.threshold,
        source.describe()
    );
    Ok((source, listening))
}

/// The recipe loader (recipe numbers the PLC asks for) and the registry watcher (promoted versions).
fn start_recipes(
    config: &Config,
    models: &Models,
    plc_recipes: Option<mpsc::Receiver<u16>>,
) -> (
    mpsc::Receiver<recipe::LoadResult>,
    mpsc::Receiver<recipe::Loaded>,
) {
    let ort = config.station.onnxruntime_path.clone();
    let recipes = recipe::start_loader(config.recipes.clone(), ort.clone(), plc_recipes);
    let base = RecipeConfig {
        number: 0,
        model: config.model.clone(),
        preprocess: config.preprocess.clone(),
    };
    let registry = models.model.registry.clone();
    let swaps = recipe::watch_registry(base, ort, registry, models.model.info.version.clone());
    (recipes, swaps)
}

/// Opens the database, starts the run and the record writer; tells the live view which model is in force.
fn open_records(
    config: &Config,
    opts: &RunOptions,
    info: &ModelInfo,
    counters: &Arc<Counters>,
) -> Result<Records, PipelineError> {
    let mut store = Store::open(
        &config.record,
        &config.station.name,
        &config.file,
        counters.clone(),
    )?;
    store.notify = opts.tap.as_ref().map(|t| t.events.clone());
    let model_rx = opts.tap.as_ref().map(|t| {
        // Subscribe first: a threshold set between the two calls would otherwise count as seen, never applied.
        let rx = t.model.subscribe();
        t.model.send_replace(Some(info.clone()));
        rx
    });
    let run_id = store.run_id;
    let database = store.db_path().display().to_string();
    let (tx, rx) = mpsc::channel::<RecordMsg>(1024);
    let task = tokio::spawn(store::run_writer(store, rx));
    Ok(Records {
        tx,
        task,
        run_id,
        database,
        model_rx,
    })
}

/// The PLC end of the line: the verdict queue, the PLC's triggers and recipe requests, and the started task.
type PlcStarted = (
    Option<mpsc::Sender<PlcMsg>>,
    Option<mpsc::Receiver<TriggerEvent>>,
    Option<mpsc::Receiver<u16>>,
    Option<PlcParts>,
);

/// Starts the PLC handshake task (and the simulated PLC or the Modbus server), when a PLC is configured.
async fn start_plc(
    config: &Config,
    counters: &Arc<Counters>,
    clock: Clock,
    records: &mpsc::Sender<RecordMsg>,
) -> Result<PlcStarted, PipelineError> {
    let recipe_numbers: Vec<u16> = config.recipes.iter().map(|r| r.number).collect();
    let plc = plc::start(
        &config.plc,
        &config.trigger,
        &recipe_numbers,
        config.station.queue_depth,
        counters.clone(),
        clock,
        records.clone(),
    )
    .await
    .map_err(PipelineError::SimulatedPlc)?;
    Ok(match plc {
        Some(h) => (
            Some(h.tx),
            h.triggers,
            h.recipes,
            Some(PlcParts {
                task: h.task,
                info: h.info,
            }),
        ),
        None => (None, None, None, None),
    })
}

/// The CPU stages, each on its own thread, joined by bounded channels.
struct Workers {
    depth: usize,
    threads: Vec<JoinHandle<()>>,
    progress: [Arc<AtomicU64>; 3],
    reports: mpsc::Receiver<StageReport>,
    capture_tx: SyncSender<Job>,
    switches: recipe::Switches,
    sounds: mpsc::Receiver<AcousticReport>,
}

/// The vision workers' ends of the channels, handed to them once.
struct VisionEnds {
    reports: mpsc::Sender<StageReport>,
    capture_rx: Receiver<Job>,
    pre_switches: Receiver<(Seq, Preprocessor)>,
    model_switches: Receiver<(Seq, Model)>,
}

impl Workers {
    fn new(depth: usize) -> (Workers, VisionEnds) {
        let (report_tx, reports) = mpsc::channel::<StageReport>(depth * 3 + 8);
        let (capture_tx, capture_rx) = sync_channel::<Job>(depth);
        let (pre_switch_tx, pre_switch_rx) = channel();
        let (model_switch_tx, model_switch_rx) = channel();
        let workers = Workers {
            depth,
            threads: Vec::new(),
            progress: Default::default(),
            reports,
            capture_tx,
            switches: recipe::Switches {
                preprocess: pre_switch_tx,
                inference: model_switch_tx,
            },
            sounds: mpsc::channel(1).1,
        };
        let ends = VisionEnds {
            reports: report_tx,
            capture_rx,
            pre_switches: pre_switch_rx,
            model_switches: model_switch_rx,
        };
        (workers, ends)
    }

    fn spawn(
        &mut self,
        name: &'static str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), PipelineError> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| PipelineError::Thread(name, e))?;
        self.threads.push(handle);
        Ok(())
    }

    /// The acoustic thread, when the station listens; the orchestrator's end of it.
    fn listen(
        &mut self,
        listening: Option<(AudioInput, AcousticModel)>,
        deadline_ms: u64,
    ) -> Result<Option<Listener>, PipelineError> {
        let Some((input, model)) = listening else {
            return Ok(None);
        };
        tracing::info!(
            "acoustic model {} v{} (sha256 {}, threshold {}), audio: {}",
            model.info.name,
            model.info.version,
            &model.info.sha256[..12],
            model.info.threshold,
            input.describe()
        );
        let input = Arc::new(input);
        let (jobs_tx, jobs_rx) = sync_channel::<AcousticJob>(self.depth);
        let (sounds_tx, sounds) = mpsc::channel::<AcousticReport>(self.depth * 2 + 8);
        self.sounds = sounds;
        let info = model.info.clone();
        let (worker_input, give_up) = (input.clone(), Duration::from_millis(deadline_ms));
        self.spawn("acoustic", move || {
            acoustic::run_worker(worker_input, model, jobs_rx, sounds_tx, give_up)
        })?;
        Ok(Some(Listener {
            summary: AcousticSummary {
                model: format!("{} v{}", info.name, info.version),
                source: input.describe(),
                ..Default::default()
            },
            input,
            jobs: Some(jobs_tx),
            info,
            latency: Default::default(),
        }))
    }

    /// The capture, preprocess and inference threads, and the shadow thread beside inference.
    fn vision(
        &mut self,
        ends: VisionEnds,
        source: Box<dyn FrameSource>,
        pre: Preprocessor,
        models: Models,
        records: &Records,
        counters: &Arc<Counters>,
    ) -> Result<(), PipelineError> {
        let shadow_tap = match models.shadow {
            Some(shadow) => {
                let (jobs_tx, jobs_rx) = sync_channel(self.depth);
                let (records, run_id) = (records.tx.clone(), records.run_id);
                let shadow_counters = counters.clone();
                self.spawn("shadow", move || {
                    model::shadow::run_worker(shadow, jobs_rx, records, run_id, shadow_counters)
                })?;
                Some(model::shadow::ShadowTap {
                    jobs: jobs_tx,
                    counters: counters.clone(),
                })
            }
            None => None,
        };
        let VisionEnds {
            reports,
            capture_rx,
            pre_switches,
            model_switches,
        } = ends;
        let (pre_tx, pre_rx) = sync_channel::<Job>(self.depth);
        let (infer_tx, infer_rx) = sync_channel::<Job>(self.depth);
        let (r, done) = (reports.clone(), self.progress[0].clone());
        self.spawn("capture", move || {
            capture::run_worker(source, capture_rx, pre_tx, r, done)
        })?;
        let (r, done) = (reports.clone(), self.progress[1].clone());
        self.spawn("preprocess", move || {
            let switches = Pending::new(pre_switches);
            preprocess::run_worker(pre, pre_rx, infer_tx, r, done, switches)
        })?;
        let (r, done) = (reports, self.progress[2].clone());
        let model = models.model;
        self.spawn("inference", move || {
            let switches = Pending::new(model_switches);
            model::run_worker(model, infer_rx, r, done, switches, shadow_tap)
        })?;
        Ok(())
    }
}
