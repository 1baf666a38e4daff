//! `station.toml`: parsed into plain serde structs (`deny_unknown_fields`), then validated into the types the
//! station uses. Every problem is collected with its field path (`source.defect_fraction`, `plc.address`, ...) and
//! reported at once; each section is deserialized on its own so a type error in one section does not hide the
//! problems of the others. Relative paths are resolved against the config file's folder.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::audio::synthetic::SyntheticSoundParams;
use crate::audio::{AudioConfig, AudioSourceConfig};
use crate::capture::synthetic::SyntheticParams;

/// The repository's `station.toml`, built in: what `station run` uses when no config file is present.
pub const EMBEDDED_DEFAULT: &str = include_str!("../station.toml");

/// A config that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: {} problem{}: {}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, join(.problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

/// One problem in a config file: the field path and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------------------------
// Raw, as written in the file.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    onnxruntime_path: Option<PathBuf>,
    queue_depth: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    kind: Option<String>,
    interval_ms: Option<u64>,
    input_address: Option<u16>,
    input_kind: Option<String>,
    poll_ms: Option<u64>,
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: Option<String>,
    seed: Option<u64>,
    defect_fraction: Option<f64>,
    path: Option<PathBuf>,
    #[serde(rename = "loop")]
    looping: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreprocess {
    roi: Option<Vec<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    dir: Option<PathBuf>,
    threshold: Option<f32>,
    threads: Option<usize>,
    shadow_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    deadline_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlc {
    kind: Option<String>,
    address: Option<String>,
    unit_id: Option<u8>,
    timeout_ms: Option<u64>,
    reject_coil: Option<u16>,
    reject_pulse_ms: Option<u64>,
    result_register: Option<u16>,
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    role: Option<String>,
    listen: Option<String>,
    device: Option<PathBuf>,
    baud_rate: Option<u32>,
    parity: Option<String>,
    stop_bits: Option<u8>,
    poll_ms: Option<u64>,
    command_register: Option<u16>,
    result_ack: Option<bool>,
    result_buffer: Option<usize>,
    max_parts_in_flight: Option<usize>,
    reject_delay_ms: Option<u64>,
    reject_distance_counts: Option<u32>,
    heartbeat_ms: Option<u64>,
    heartbeat_missed: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    number: Option<u16>,
    model_dir: Option<PathBuf>,
    threshold: Option<f32>,
    roi: Option<Vec<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudio {
    kind: Option<String>,
    device: Option<String>,
    sample_rate_hz: Option<u32>,
    channel: Option<u16>,
    path: Option<PathBuf>,
    #[serde(rename = "loop")]
    looping: Option<bool>,
    seed: Option<u64>,
    anomaly_fraction: Option<f64>,
    pre_ms: Option<u64>,
    post_ms: Option<u64>,
    model_dir: Option<PathBuf>,
    threshold: Option<f32>,
    required: Option<bool>,
    ring_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    database: Option<PathBuf>,
    images_dir: Option<PathBuf>,
    save_passed_every: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    enabled: Option<bool>,
    bind: Option<String>,
    port: Option<u16>,
    defect_classes: Option<Vec<String>>,
    uncertain_margin: Option<f32>,
    session_hours: Option<u64>,
}

// ---------------------------------------------------------------------------------------------------------------
// Validated, as the station uses it.

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (or `<embedded default>`).
    pub file: String,
    pub station: StationConfig,
    pub trigger: TriggerConfig,
    pub source: SourceConfig,
    pub preprocess: PreprocessConfig,
    pub model: ModelConfig,
    pub decision: DecisionConfig,
    pub plc: PlcConfig,
    pub record: RecordConfig,
    pub web: WebConfig,
    /// The optional `[audio]` section: acoustic scoring of every part.
    pub audio: Option<AudioConfig>,
    /// `[[recipe]]`: what the PLC's recipe number selects (see docs/PLC.md).
    pub recipes: Vec<RecipeConfig>,
}

/// One recipe: the model, threshold and ROI a recipe number selects.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeConfig {
    pub number: u16,
    pub model: ModelConfig,
    pub preprocess: PreprocessConfig,
}

#[derive(Debug, Clone)]
pub struct StationConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub onnxruntime_path: Option<PathBuf>,
    /// Capacity of every bounded channel between stages.
    pub queue_depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlcInputKind {
    /// The trigger bit of the PLC's command word (the handshake's own trigger; see docs/PLC.md).
    Command,
    Coil,
    DiscreteInput,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerConfig {
    /// Free-running: one part every `interval_ms`.
    Interval { interval_ms: u64 },
    /// A PLC input bit, polled; each rising edge is one part.
    Plc {
        input_kind: PlcInputKind,
        input_address: u16,
        poll_ms: u64,
    },
    /// `POST /trigger` on this address.
    Http { listen: SocketAddr },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Synthetic(SyntheticParams),
    Folder { path: PathBuf, looping: bool },
    Video { path: PathBuf, looping: bool },
}

/// A rectangle in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    pub roi: Option<Roi>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// A version folder, or a registry name folder (its active version; promotions are taken up while running).
    pub dir: PathBuf,
    /// A candidate model scored beside the active one, recorded, never driving the reject (shadow mode).
    pub shadow_dir: Option<PathBuf>,
    /// Overrides the manifest's threshold when set.
    pub threshold: Option<f32>,
    pub threads: usize,
}

impl ModelConfig {
    /// The model in `dir` with the manifest's threshold, one thread, no shadow model.
    pub fn at(dir: impl Into<PathBuf>) -> ModelConfig {
        ModelConfig {
            dir: dir.into(),
            shadow_dir: None,
            threshold: None,
            threads: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlcLink {
    /// An in-process Modbus TCP server plays the PLC (the demo).
    Simulated,
    /// A real PLC (a Modbus TCP server) at this address; the station is the client.
    Tcp(SocketAddr),
    /// The station is a Modbus TCP server on this address, polled by the PLC (smart-camera style).
    Serve(SocketAddr),
    /// A PLC on a serial line (Modbus RTU); the station is the master.
    Rtu(RtuConfig),
    /// No PLC: verdicts are recorded only.
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlcConfig {
    pub link: PlcLink,
    pub unit_id: u8,
    pub timeout_ms: u64,
    pub reject_coil: u16,
    pub reject_pulse_ms: u64,
    /// First of the result block's holding registers: result code, inspection counter, part seq (high, low).
    pub result_register: u16,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Handshake scan period: the PLC's command block is read (client) or looked at (server) this often.
    pub poll_ms: u64,
    /// First of the PLC's command block's holding registers (see docs/PLC.md).
    pub command_register: u16,
    /// Results wait for the PLC's acknowledge (true) or each one overwrites the last (false).
    pub result_ack: bool,
    /// Results waiting for an acknowledge, at most (the one shown included).
    pub result_buffer: usize,
    /// PLC triggers beyond this many parts in flight are refused (busy).
    pub max_parts_in_flight: usize,
    /// When the reject output fires.
    pub reject_timing: RejectTiming,
    /// Station heartbeat period, and the PLC heartbeat watchdog's period.
    pub heartbeat_ms: u64,
    /// Periods without a change of the PLC's heartbeat before the alarm (0: no watchdog).
    pub heartbeat_missed: u32,
}

/// When the reject output fires for a rejected part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectTiming {
    /// As soon as the verdict is known.
    OnVerdict,
    /// This long after the part's trigger.
    DelayMs(u64),
    /// When the PLC's encoder count has moved this far since the part's trigger.
    DistanceCounts(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// A Modbus RTU serial line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtuConfig {
    pub device: PathBuf,
    pub baud_rate: u32,
    pub parity: Parity,
    pub stop_bits: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordConfig {
    pub database: PathBuf,
    pub images_dir: PathBuf,
    /// Also save the image of every Nth passed part (0: none).
    pub save_passed_every: u64,
}

/// The operator review web page (`[web]`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    /// Whether `station run` serves it (`station review` always does). Off when the section is absent.
    pub enabled: bool,
    /// Where to listen; port 0 takes any free port (the address is logged).
    pub listen: SocketAddr,
    /// Defect classes an operator may confirm; also the dataset export's folder names.
    pub defect_classes: Vec<String>,
    /// A passed part whose score is at least `threshold * (1 - uncertain_margin)` is queued for review.
    pub uncertain_margin: f32,
    pub session_hours: u64,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::parse(&text, &path.display().to_string(), base)
    }

    /// The built-in default config, with paths relative to the current folder.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::parse(
            EMBEDDED_DEFAULT,
            "<embedded default station.toml>",
            Path::new("."),
        )
    }

    /// Parses and validates config text; `file` names it in errors and `base` resolves relative paths.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            file: file.to_string(),
            problems,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            invalid(vec![Problem {
                field: format!("line {line}, column {col}"),
                message: e.message().to_string(),
            }])
        })?;
        let mut v = Validator {
            problems: Vec::new(),
            base: base.to_path_buf(),
        };
        const SECTIONS: &[&str] = &[
            "station",
            "trigger",
            "source",
            "preprocess",
            "model",
            "decision",
            "plc",
            "record",
            "audio",
            "recipe",
            "web",
        ];
        for key in table.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            v.problem(
                key,
                format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            );
        }
        let station: RawStation = v.section(&table, "station");
        let trigger: RawTrigger = v.section(&table, "trigger");
        let source: RawSource = v.section(&table, "source");
        let preprocess: RawPreprocess = v.section(&table, "preprocess");
        let model: RawModel = v.section(&table, "model");
        let decision: RawDecision = v.section(&table, "decision");
        let plc: RawPlc = v.section(&table, "plc");
        let record: RawRecord = v.section(&table, "record");
        let audio: Option<RawAudio> = table
            .contains_key("audio")
            .then(|| v.section(&table, "audio"));
        let recipes: Vec<RawRecipe> = v.section(&table, "recipe");
        let web_present = table.contains_key("web");
        let web: RawWeb = v.section(&table, "web");

        let station = v.station(station);
        let plc = v.plc(plc, station.queue_depth);
        let trigger = v.trigger(trigger, &plc);
        let source = v.source(source);
        let preprocess = v.preprocess(preprocess);
        let model = v.model(model);
        let decision = v.decision(decision);
        let record = v.record(record, &station.data_dir);
        let audio = audio.map(|raw| v.audio(raw, &decision));
        let recipes = v.recipes(recipes, &model, &preprocess);
        let web = v.web(web, web_present);
        if !v.problems.is_empty() {
            return Err(invalid(v.problems));
        }
        Ok(Config {
            file: file.to_string(),
            station,
            trigger,
            source,
            preprocess,
            model,
            decision,
            plc,
            record,
            audio,
            recipes,
            web,
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

struct Validator {
    problems: Vec<Problem>,
    base: PathBuf,
}

impl Validator {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Deserializes one section; on error records it (with its path) and carries on with the defaults.
    fn section<T: DeserializeOwned + Default>(&mut self, table: &toml::Table, name: &str) -> T {
        let Some(value) = table.get(name) else {
            return T::default();
        };
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(raw) => raw,
            Err(err) => {
                let inner = err.path().to_string();
                let field = if inner == "." || inner.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}.{inner}")
                };
                let message = err.into_inner().message().to_string();
                self.problem(&field, message);
                T::default()
            }
        }
    }

    fn path(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn positive(&mut self, field: &str, value: Option<u64>, default: u64) -> u64 {
        match value {
            Some(0) => {
                self.problem(field, "expected a positive number, got 0");
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    /// Reports fields set in a section that the chosen `kind` does not use.
    fn unused(&mut self, section: &str, kind: &str, fields: &[(&str, bool)]) {
        for (name, set) in fields {
            if *set {
                self.problem(
                    &format!("{section}.{name}"),
                    format!("not used with kind = \"{kind}\"; remove it"),
                );
            }
        }
    }

    fn station(&mut self, raw: RawStation) -> StationConfig {
        let queue_depth = raw.queue_depth.unwrap_or(8);
        if queue_depth == 0 {
            self.problem(
                "station.queue_depth",
                "expected a positive number of parts, got 0",
            );
        }
        StationConfig {
            name: raw.name.unwrap_or_else(|| "station".into()),
            data_dir: self.path(raw.data_dir.unwrap_or_else(|| "data".into())),
            onnxruntime_path: raw.onnxruntime_path.map(|p| self.path(p)),
            queue_depth: queue_depth.max(1),
        }
    }

    fn trigger(&mut self, raw: RawTrigger, plc: &PlcConfig) -> TriggerConfig {
        let kind = raw.kind.as_deref().unwrap_or("interval");
        match kind {
            "interval" => {
                self.unused(
                    "trigger",
                    kind,
                    &[
                        ("input_address", raw.input_address.is_some()),
                        ("input_kind", raw.input_kind.is_some()),
                        ("poll_ms", raw.poll_ms.is_some()),
                        ("listen", raw.listen.is_some()),
                    ],
                );
                TriggerConfig::Interval {
                    interval_ms: self.positive("trigger.interval_ms", raw.interval_ms, 100),
                }
            }
            "plc" => {
                self.unused(
                    "trigger",
                    kind,
                    &[
                        ("interval_ms", raw.interval_ms.is_some()),
                        ("listen", raw.listen.is_some()),
                    ],
                );
                if matches!(plc.link, PlcLink::Off | PlcLink::Simulated) {
                    self.problem(
                        "trigger.kind",
                        "\"plc\" needs a real PLC: set plc.kind = \"tcp\" (with plc.address or plc.listen) or \"rtu\"",
                    );
                }
                let input_kind = match raw.input_kind.as_deref().unwrap_or("command") {
                    "command" => PlcInputKind::Command,
                    "discrete_input" => PlcInputKind::DiscreteInput,
                    "coil" => PlcInputKind::Coil,
                    other => {
                        self.problem(
                            "trigger.input_kind",
                            format!("expected \"command\", \"discrete_input\" or \"coil\", got \"{other}\""),
                        );
                        PlcInputKind::Command
                    }
                };
                if input_kind == PlcInputKind::DiscreteInput
                    && matches!(plc.link, PlcLink::Serve(_))
                {
                    self.problem(
                        "trigger.input_kind",
                        "a PLC cannot write the station's discrete inputs: use \"command\" or \"coil\" with plc.role = \"server\"",
                    );
                }
                TriggerConfig::Plc {
                    input_kind,
                    input_address: raw.input_address.unwrap_or(0),
                    poll_ms: self.positive("trigger.poll_ms", raw.poll_ms, 5),
                }
            }
            "http" => {
                self.unused(
                    "trigger",
                    kind,
                    &[
                        ("interval_ms", raw.interval_ms.is_some()),
                        ("input_address", raw.input_address.is_some()),
                        ("input_kind", raw.input_kind.is_some()),
                        ("poll_ms", raw.poll_ms.is_some()),
                    ],
                );
                let text = raw.listen.unwrap_or_else(|| "127.0.0.1:8090".into());
                let listen = text.parse().unwrap_or_else(|_| {
                    self.problem(
                        "trigger.listen",
                        format!("expected an address like \"127.0.0.1:8090\", got \"{text}\""),
                    );
                    SocketAddr::from(([127, 0, 0, 1], 8090))
                });
                TriggerConfig::Http { listen }
            }
            other => {
                self.problem(
                    "trigger.kind",
                    format!("expected \"interval\", \"plc\" or \"http\", got \"{other}\""),
                );
                TriggerConfig::Interval { interval_ms: 100 }
            }
        }
    }

    fn source(&mut self, raw: RawSource) -> SourceConfig {
        let kind = raw.kind.as_deref().unwrap_or("synthetic");
        match kind {
            "synthetic" => {
                self.unused(
                    "source",
                    kind,
                    &[
                        ("path", raw.path.is_some()),
                        ("loop", raw.looping.is_some()),
                    ],
                );
                let defect_fraction = raw.defect_fraction.unwrap_or(0.2);
                if !(0.0..=1.0).contains(&defect_fraction) {
                    self.problem(
                        "source.defect_fraction",
                        format!("expected a fraction between 0 and 1, got {defect_fraction}"),
                    );
                }
                SourceConfig::Synthetic(SyntheticParams {
                    seed: raw.seed.unwrap_or(1),
                    defect_fraction,
                })
            }
            "folder" | "video" => {
                self.unused(
                    "source",
                    kind,
                    &[
                        ("seed", raw.seed.is_some()),
                        ("defect_fraction", raw.defect_fraction.is_some()),
                    ],
                );
                let path = match raw.path {
                    Some(p) => self.path(p),
                    None => {
                        self.problem("source.path", format!("required with kind = \"{kind}\""));
                        PathBuf::new()
                    }
                };
                let looping = raw.looping.unwrap_or(false);
                if kind == "folder" {
                    SourceConfig::Folder { path, looping }
                } else {
                    SourceConfig::Video { path, looping }
                }
            }
            other => {
                self.problem(
                    "source.kind",
                    format!("expected \"synthetic\", \"folder\" or \"video\", got \"{other}\""),
                );
                SourceConfig::Synthetic(SyntheticParams {
                    seed: 1,
                    defect_fraction: 0.0,
                })
            }
        }
    }

    fn preprocess(&mut self, raw: RawPreprocess) -> PreprocessConfig {
        PreprocessConfig {
            roi: self.roi("preprocess.roi", raw.roi),
        }
    }

    fn recipes(
        &mut self,
        raw: Vec<RawRecipe>,
        model: &ModelConfig,
        preprocess: &PreprocessConfig,
    ) -> Vec<RecipeConfig> {
        let mut recipes: Vec<RecipeConfig> = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let field = |name: &str| format!("recipe[{i}].{name}");
            let number = match r.number {
                Some(0) | None => {
                    self.problem(
                        &field("number"),
                        "required: a recipe number from 1 to 65535",
                    );
                    continue;
                }
                Some(n) => n,
            };
            if recipes.iter().any(|other| other.number == number) {
                self.problem(
                    &field("number"),
                    format!("recipe {number} is defined twice"),
                );
            }
            if let Some(t) = r.threshold.filter(|t| !t.is_finite()) {
                self.problem(
                    &field("threshold"),
                    format!("expected a finite number, got {t}"),
                );
            }
            let roi = self.roi(&field("roi"), r.roi);
            recipes.push(RecipeConfig {
                number,
                model: ModelConfig {
                    dir: r
                        .model_dir
                        .map_or_else(|| model.dir.clone(), |d| self.path(d)),
                    threshold: r.threshold.or(model.threshold),
                    threads: model.threads,
                    shadow_dir: None,
                },
                preprocess: PreprocessConfig {
                    roi: roi.or(preprocess.roi),
                },
            });
        }
        recipes
    }

    fn roi(&mut self, field: &str, raw: Option<Vec<i64>>) -> Option<Roi> {
        raw.and_then(|r| {
            let fits = |v: i64| i32::try_from(v).ok();
            match r.as_slice() {
                [x, y, w, h] if *x >= 0 && *y >= 0 && *w > 0 && *h > 0 => Some(Roi {
                    x: fits(*x)?,
                    y: fits(*y)?,
                    width: fits(*w)?,
                    height: fits(*h)?,
                }),
                _ => {
                    self.problem(
                        field,
                        format!("expected [x, y, width, height] with x, y >= 0 and width, height > 0, got {r:?}"),
                    );
                    None
                }
            }
        })
    }

    fn model(&mut self, raw: RawModel) -> ModelConfig {
        let dir = match raw.dir {
            Some(d) => self.path(d),
            None => {
                self.problem(
                    "model.dir",
                    "required: the model folder holding model.onnx and manifest.toml",
                );
                PathBuf::new()
            }
        };
        if let Some(t) = raw.threshold.filter(|t| !t.is_finite()) {
            self.problem(
                "model.threshold",
                format!("expected a finite number, got {t}"),
            );
        }
        let threads = raw.threads.unwrap_or(1);
        if threads == 0 {
            self.problem("model.threads", "expected at least 1 thread, got 0");
        }
        ModelConfig {
            dir,
            shadow_dir: raw.shadow_dir.map(|d| self.path(d)),
            threshold: raw.threshold,
            threads: threads.max(1),
        }
    }

    fn decision(&mut self, raw: RawDecision) -> DecisionConfig {
        DecisionConfig {
            deadline_ms: self.positive("decision.deadline_ms", raw.deadline_ms, 500),
        }
    }

    fn plc(&mut self, raw: RawPlc, queue_depth: usize) -> PlcConfig {
        let kind = raw.kind.as_deref().unwrap_or("simulated");
        let role = raw.role.as_deref().unwrap_or("client");
        let serial = [
            ("device", raw.device.is_some()),
            ("baud_rate", raw.baud_rate.is_some()),
            ("parity", raw.parity.is_some()),
            ("stop_bits", raw.stop_bits.is_some()),
        ];
        if !matches!(role, "client" | "server") {
            self.problem(
                "plc.role",
                format!("expected \"client\" or \"server\", got \"{role}\""),
            );
        } else if role == "server" && kind != "tcp" {
            self.problem("plc.role", "\"server\" needs kind = \"tcp\"");
        }
        let address = |v: &mut Self, field: &str, text: Option<&str>, example: &str| match text {
            Some(text) => text.parse().map_err(|_| {
                v.problem(
                    field,
                    format!("expected an address like \"{example}\", got \"{text}\""),
                )
            }),
            None => {
                v.problem(
                    field,
                    format!("required with kind = \"tcp\", role = \"{role}\""),
                );
                Err(())
            }
        };
        let link = match kind {
            "simulated" | "off" => {
                let mut unused = vec![
                    ("address", raw.address.is_some()),
                    ("listen", raw.listen.is_some()),
                ];
                unused.extend(serial);
                self.unused("plc", kind, &unused);
                if kind == "off" {
                    PlcLink::Off
                } else {
                    PlcLink::Simulated
                }
            }
            "tcp" if role == "server" => {
                let mut unused = vec![("address", raw.address.is_some())];
                unused.extend(serial);
                self.unused("plc", "tcp\", role = \"server", &unused);
                address(self, "plc.listen", raw.listen.as_deref(), "0.0.0.0:502")
                    .map_or(PlcLink::Off, PlcLink::Serve)
            }
            "tcp" => {
                let mut unused = vec![("listen", raw.listen.is_some())];
                unused.extend(serial);
                self.unused("plc", kind, &unused);
                address(
                    self,
                    "plc.address",
                    raw.address.as_deref(),
                    "192.168.0.10:502",
                )
                .map_or(PlcLink::Off, PlcLink::Tcp)
            }
            "rtu" => {
                self.unused(
                    "plc",
                    kind,
                    &[
                        ("address", raw.address.is_some()),
                        ("listen", raw.listen.is_some()),
                    ],
                );
                let parity = match raw.parity.as_deref().unwrap_or("even") {
                    "none" => Parity::None,
                    "even" => Parity::Even,
                    "odd" => Parity::Odd,
                    other => {
                        self.problem(
                            "plc.parity",
                            format!("expected \"none\", \"even\" or \"odd\", got \"{other}\""),
                        );
                        Parity::Even
                    }
                };
                let stop_bits = raw.stop_bits.unwrap_or(1);
                if !matches!(stop_bits, 1 | 2) {
                    self.problem("plc.stop_bits", format!("expected 1 or 2, got {stop_bits}"));
                }
                let baud_rate = raw.baud_rate.unwrap_or(19200);
                if baud_rate == 0 {
                    self.problem("plc.baud_rate", "expected a positive number, got 0");
                }
                match raw.device {
                    Some(device) => PlcLink::Rtu(RtuConfig {
                        device,
                        baud_rate,
                        parity,
                        stop_bits,
                    }),
                    None => {
                        self.problem(
                            "plc.device",
                            "required with kind = \"rtu\": the serial port, like \"/dev/ttyUSB0\"",
                        );
                        PlcLink::Off
                    }
                }
            }
            other => {
                self.problem(
                    "plc.kind",
                    format!("expected \"simulated\", \"tcp\", \"rtu\" or \"off\", got \"{other}\""),
                );
                PlcLink::Off
            }
        };
        let reconnect_min_ms = self.positive("plc.reconnect_min_ms", raw.reconnect_min_ms, 100);
        let reconnect_max_ms = self.positive("plc.reconnect_max_ms", raw.reconnect_max_ms, 5000);
        if reconnect_max_ms < reconnect_min_ms {
            self.problem(
                "plc.reconnect_max_ms",
                format!("expected at least plc.reconnect_min_ms ({reconnect_min_ms}), got {reconnect_max_ms}"),
            );
        }
        let reject_timing = match (raw.reject_delay_ms, raw.reject_distance_counts) {
            (Some(_), Some(_)) => {
                self.problem(
                    "plc.reject_distance_counts",
                    "set either plc.reject_delay_ms or plc.reject_distance_counts, not both",
                );
                RejectTiming::OnVerdict
            }
            (Some(ms), None) => RejectTiming::DelayMs(ms),
            (None, Some(0)) => {
                self.problem(
                    "plc.reject_distance_counts",
                    "expected a positive number, got 0",
                );
                RejectTiming::OnVerdict
            }
            (None, Some(counts)) => RejectTiming::DistanceCounts(counts),
            (None, None) => RejectTiming::OnVerdict,
        };
        let result_buffer = raw.result_buffer.unwrap_or(8);
        if result_buffer == 0 {
            self.problem("plc.result_buffer", "expected at least 1 result, got 0");
        }
        let max_parts_in_flight = raw.max_parts_in_flight.unwrap_or(queue_depth);
        if max_parts_in_flight == 0 {
            self.problem("plc.max_parts_in_flight", "expected at least 1 part, got 0");
        }
        let result_register = raw.result_register.unwrap_or(0);
        let command_register = raw.command_register.unwrap_or(32);
        let overlap = |a: u16, alen: u16, b: u16, blen: u16| {
            u32::from(a) < u32::from(b) + u32::from(blen)
                && u32::from(b) < u32::from(a) + u32::from(alen)
        };
        if overlap(
            result_register,
            crate::plc::map::STATUS_LEN,
            command_register,
            crate::plc::map::COMMAND_LEN,
        ) {
            self.problem(
                "plc.command_register",
                format!(
                    "the command block ({command_register}..{}) overlaps the result block ({result_register}..{})",
                    u32::from(command_register) + u32::from(crate::plc::map::COMMAND_LEN) - 1,
                    u32::from(result_register) + u32::from(crate::plc::map::STATUS_LEN) - 1,
                ),
            );
        }
        for (field, base, len) in [
            (
                "plc.result_register",
                result_register,
                crate::plc::map::STATUS_LEN,
            ),
            (
                "plc.command_register",
                command_register,
                crate::plc::map::COMMAND_LEN,
            ),
        ] {
            if u32::from(base) + u32::from(len) > 65536 {
                self.problem(
                    field,
                    format!("the block of {len} registers must end below 65536, got {base}"),
                );
            }
        }
        PlcConfig {
            link,
            unit_id: raw.unit_id.unwrap_or(1),
            timeout_ms: self.positive("plc.timeout_ms", raw.timeout_ms, 250),
            reject_coil: raw.reject_coil.unwrap_or(0),
            reject_pulse_ms: self.positive("plc.reject_pulse_ms", raw.reject_pulse_ms, 30),
            result_register,
            reconnect_min_ms,
            reconnect_max_ms,
            poll_ms: self.positive("plc.poll_ms", raw.poll_ms, 5),
            command_register,
            result_ack: raw.result_ack.unwrap_or(true),
            result_buffer: result_buffer.max(1),
            max_parts_in_flight: max_parts_in_flight.max(1),
            reject_timing,
            heartbeat_ms: self.positive("plc.heartbeat_ms", raw.heartbeat_ms, 100),
            heartbeat_missed: raw.heartbeat_missed.unwrap_or(10),
        }
    }

    fn audio(&mut self, raw: RawAudio, decision: &DecisionConfig) -> AudioConfig {
        let kind = raw.kind.as_deref().unwrap_or("microphone");
        let source = match kind {
            "microphone" => {
                self.unused(
                    "audio",
                    kind,
                    &[
                        ("path", raw.path.is_some()),
                        ("loop", raw.looping.is_some()),
                        ("seed", raw.seed.is_some()),
                        ("anomaly_fraction", raw.anomaly_fraction.is_some()),
                    ],
                );
                AudioSourceConfig::Microphone {
                    device: raw.device.filter(|d| d != "default input"),
                }
            }
            "wav" => {
                self.unused(
                    "audio",
                    kind,
                    &[
                        ("device", raw.device.is_some()),
                        ("seed", raw.seed.is_some()),
                        ("anomaly_fraction", raw.anomaly_fraction.is_some()),
                    ],
                );
                let path = match raw.path {
                    Some(p) => self.path(p),
                    None => {
                        self.problem(
                            "audio.path",
                            "required with kind = \"wav\": a WAV file (one long recording) or a folder (a file per part)",
                        );
                        PathBuf::new()
                    }
                };
                AudioSourceConfig::Wav {
                    path,
                    looping: raw.looping.unwrap_or(false),
                }
            }
            "synthetic" => {
                self.unused(
                    "audio",
                    kind,
                    &[
                        ("device", raw.device.is_some()),
                        ("path", raw.path.is_some()),
                        ("loop", raw.looping.is_some()),
                    ],
                );
                let anomaly_fraction = raw.anomaly_fraction.unwrap_or(0.2);
                if !(0.0..=1.0).contains(&anomaly_fraction) {
                    self.problem(
                        "audio.anomaly_fraction",
                        format!("expected a fraction between 0 and 1, got {anomaly_fraction}"),
                    );
                }
                AudioSourceConfig::Synthetic(SyntheticSoundParams {
                    seed: raw.seed.unwrap_or(1),
                    anomaly_fraction,
                })
            }
            other => {
                self.problem(
                    "audio.kind",
                    format!("expected \"microphone\", \"wav\" or \"synthetic\", got \"{other}\""),
                );
                AudioSourceConfig::Microphone { device: None }
            }
        };
        let sample_rate_hz = raw.sample_rate_hz.unwrap_or(48_000);
        if !(8_000..=384_000).contains(&sample_rate_hz) {
            self.problem(
                "audio.sample_rate_hz",
                format!("expected 8000..=384000, got {sample_rate_hz}"),
            );
        }
        let pre_ms = raw.pre_ms.unwrap_or(100);
        let post_ms = self.positive("audio.post_ms", raw.post_ms, 200);
        if post_ms >= decision.deadline_ms {
            self.problem(
                "audio.post_ms",
                format!(
                    "the part's verdict waits for its sound: expected less than decision.deadline_ms ({}), got {post_ms}",
                    decision.deadline_ms
                ),
            );
        }
        let ring_s = self.positive("audio.ring_s", raw.ring_s, 10);
        if (pre_ms + post_ms) / 1000 >= ring_s {
            self.problem(
                "audio.ring_s",
                format!(
                    "expected more than pre_ms + post_ms ({} ms), got {ring_s} s",
                    pre_ms + post_ms
                ),
            );
        }
        let model_dir = match raw.model_dir {
            Some(d) => self.path(d),
            None => {
                self.problem(
                    "audio.model_dir",
                    "required: the acoustic model folder holding manifest.toml and model.json",
                );
                PathBuf::new()
            }
        };
        if let Some(t) = raw.threshold.filter(|t| !t.is_finite()) {
            self.problem(
                "audio.threshold",
                format!("expected a finite number, got {t}"),
            );
        }
        AudioConfig {
            source,
            sample_rate_hz,
            channel: raw.channel.unwrap_or(0),
            pre_ms,
            post_ms,
            model_dir,
            threshold: raw.threshold,
            required: raw.required.unwrap_or(true),
            ring_s,
        }
    }

    fn web(&mut self, raw: RawWeb, present: bool) -> WebConfig {
        let bind = raw.bind.unwrap_or_else(|| "127.0.0.1".into());
        let ip = bind.parse().unwrap_or_else(|_| {
            self.problem(
                "web.bind",
                format!("expected an IP address like \"127.0.0.1\", got \"{bind}\""),
            );
            std::net::Ipv4Addr::LOCALHOST.into()
        });
        let defect_classes = raw
            .defect_classes
            .unwrap_or_else(|| vec!["scratch".into(), "spot".into(), "crack".into()]);
        if defect_classes.is_empty() {
            self.problem("web.defect_classes", "expected at least one defect class");
        }
        for class in &defect_classes {
            if !crate::review::valid_class(class) {
                self.problem(
                    "web.defect_classes",
                    format!("expected names of lower-case letters, digits, '_' or '-' other than \"good\" (they become folder names), got \"{class}\""),
                );
            }
        }
        let uncertain_margin = raw.uncertain_margin.unwrap_or(0.1);
        if !(0.0..1.0).contains(&uncertain_margin) {
            self.problem(
                "web.uncertain_margin",
                format!(
                    "expected a fraction from 0 up to (not including) 1, got {uncertain_margin}"
                ),
            );
        }
        WebConfig {
            enabled: raw.enabled.unwrap_or(present),
            listen: SocketAddr::new(ip, raw.port.unwrap_or(8080)),
            defect_classes,
            uncertain_margin,
            session_hours: self.positive("web.session_hours", raw.session_hours, 12),
        }
    }

    fn record(&mut self, raw: RawRecord, data_dir: &Path) -> RecordConfig {
        let under = |p: PathBuf| if p.is_absolute() { p } else { data_dir.join(p) };
        RecordConfig {
            database: under(raw.database.unwrap_or_else(|| "station.sqlite".into())),
            images_dir: under(raw.images_dir.unwrap_or_else(|| "images".into())),
            save_passed_every: raw.save_passed_every.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_runs_the_demo() {
        let config = Config::embedded_default().unwrap();
        assert!(matches!(config.source, SourceConfig::Synthetic(_)));
        assert_eq!(config.plc.link, PlcLink::Simulated);
        assert!(config.model.dir.ends_with("models/surface-defect"));
    }

    #[test]
    fn every_problem_is_reported_with_its_field_path() {
        let text = r#"
            [station]
            queue_depth = "many"
            [trigger]
            kind = "interval"
            interval_ms = 0
            listen = "x"
            [source]
            kind = "synthetic"
            defect_fraction = 1.5
            colour = "red"
            [model]
            [plc]
            kind = "tcp"
            address = "not an address"
            [bogus]
        "#;
        let err = Config::parse(text, "bad.toml", Path::new(".")).unwrap_err();
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for expected in [
            "bogus",
            "station.queue_depth",
            "source.colour",
            "trigger.interval_ms",
            "trigger.listen",
            "model.dir",
            "plc.address",
        ] {
            assert!(
                fields.contains(&expected),
                "missing {expected} in {fields:?}"
            );
        }
        let line = err.to_string();
        assert!(line.starts_with("bad.toml: "), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn the_audio_section_is_optional_and_checked() {
        let base = "[model]\ndir = \"m\"\n";
        let config = Config::parse(base, "a.toml", Path::new(".")).unwrap();
        assert!(config.audio.is_none());
        let text = format!(
            "{base}[decision]\ndeadline_ms = 100\n[audio]\nkind = \"wav\"\nseed = 3\npost_ms = 150\nanomaly_fraction = 2.0\n"
        );
        let err = Config::parse(&text, "a.toml", Path::new(".")).unwrap_err();
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for expected in [
            "audio.path",
            "audio.seed",
            "audio.post_ms",
            "audio.model_dir",
        ] {
            assert!(
                fields.contains(&expected),
                "missing {expected} in {fields:?}"
            );
        }
        let demo = Config::embedded_default().unwrap();
        let audio = demo.audio.expect("the demo listens");
        assert!(matches!(audio.source, AudioSourceConfig::Synthetic(_)));
        assert!(audio.post_ms < demo.decision.deadline_ms);
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = Config::parse("[station]\nname = \n", "x.toml", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
