//! `station.toml`: parsed into plain serde structs (`deny_unknown_fields`), then validated into the types the
//! station uses. Every problem is collected with its field path (`source.defect_fraction`, `plc.address`, ...) and
//! reported at once; each section is deserialized on its own so a type error in one section does not hide the
//! problems of the others. Relative paths are resolved against the config file's folder.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

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
    pub dir: PathBuf,
    /// Overrides the manifest's threshold when set.
    pub threshold: Option<f32>,
    pub threads: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlcLink {
    /// An in-process Modbus TCP server plays the PLC (the demo).
    Simulated,
    /// A real PLC (a Modbus TCP server) at this address.
    Tcp(SocketAddr),
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
        let web_present = table.contains_key("web");
        let web: RawWeb = v.section(&table, "web");

        let station = v.station(station);
        let plc = v.plc(plc);
        let trigger = v.trigger(trigger, &plc);
        let source = v.source(source);
        let preprocess = v.preprocess(preprocess);
        let model = v.model(model);
        let decision = v.decision(decision);
        let record = v.record(record, &station.data_dir);
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
                if !matches!(plc.link, PlcLink::Tcp(_)) {
                    self.problem(
                        "trigger.kind",
                        "\"plc\" needs a real PLC: set plc.kind = \"tcp\" and plc.address",
                    );
                }
                let input_kind = match raw.input_kind.as_deref().unwrap_or("discrete_input") {
                    "discrete_input" => PlcInputKind::DiscreteInput,
                    "coil" => PlcInputKind::Coil,
                    other => {
                        self.problem(
                            "trigger.input_kind",
                            format!("expected \"discrete_input\" or \"coil\", got \"{other}\""),
                        );
                        PlcInputKind::DiscreteInput
                    }
                };
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
        let roi = raw.roi.and_then(|r| {
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
                        "preprocess.roi",
                        format!("expected [x, y, width, height] with x, y >= 0 and width, height > 0, got {r:?}"),
                    );
                    None
                }
            }
        });
        PreprocessConfig { roi }
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
            threshold: raw.threshold,
            threads: threads.max(1),
        }
    }

    fn decision(&mut self, raw: RawDecision) -> DecisionConfig {
        DecisionConfig {
            deadline_ms: self.positive("decision.deadline_ms", raw.deadline_ms, 500),
        }
    }

    fn plc(&mut self, raw: RawPlc) -> PlcConfig {
        let kind = raw.kind.as_deref().unwrap_or("simulated");
        let link = match kind {
            "simulated" | "off" => {
                self.unused("plc", kind, &[("address", raw.address.is_some())]);
                if kind == "off" {
                    PlcLink::Off
                } else {
                    PlcLink::Simulated
                }
            }
            "tcp" => match raw.address.as_deref() {
                Some(text) => match text.parse() {
                    Ok(addr) => PlcLink::Tcp(addr),
                    Err(_) => {
                        self.problem(
                            "plc.address",
                            format!(
                                "expected an address like \"192.168.0.10:502\", got \"{text}\""
                            ),
                        );
                        PlcLink::Off
                    }
                },
                None => {
                    self.problem("plc.address", "required with kind = \"tcp\"");
                    PlcLink::Off
                }
            },
            other => {
                self.problem(
                    "plc.kind",
                    format!("expected \"simulated\", \"tcp\" or \"off\", got \"{other}\""),
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
        PlcConfig {
            link,
            unit_id: raw.unit_id.unwrap_or(1),
            timeout_ms: self.positive("plc.timeout_ms", raw.timeout_ms, 250),
            reject_coil: raw.reject_coil.unwrap_or(0),
            reject_pulse_ms: self.positive("plc.reject_pulse_ms", raw.reject_pulse_ms, 30),
            result_register: raw.result_register.unwrap_or(0),
            reconnect_min_ms,
            reconnect_max_ms,
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
        assert!(config.model.dir.ends_with("models/surface-defect/1"));
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
    fn syntax_errors_give_line_and_column() {
        let err = Config::parse("[station]\nname = \n", "x.toml", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
