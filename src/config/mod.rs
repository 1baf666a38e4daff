//! `station.toml`: the root of the config. It parses the file, hands each section to the stage that owns it
//! (`plc/config.rs`, `model/config.rs`, `capture/config.rs`, ...: each holds its raw serde struct with
//! `deny_unknown_fields`, its validated type and its validation), runs the checks that span sections, and
//! re-exports the validated types. Every problem is collected with its field path (`source.defect_fraction`,
//! `plc.address`, ...) by [`Problems`] and reported at once; each section is deserialized on its own so a type
//! error in one section does not hide the problems of the others. Relative paths are resolved against the config
//! file's folder. `[station]`, which every stage reads a little of, is validated here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::problems::Problem;
use crate::problems::Problems;

pub use crate::audio::{AudioConfig, AudioSourceConfig};
pub use crate::capture::SourceConfig;
pub use crate::decision::DecisionConfig;
pub use crate::identity::{IdentityConfig, IdentitySource};
pub use crate::model::ModelConfig;
pub use crate::plant::{MetricsConfig, MqttConfig, WebhookConfig};
pub use crate::plc::{Parity, PlcConfig, PlcLink, RejectTiming, RtuConfig};
pub use crate::preprocess::{PreprocessConfig, Roi};
pub use crate::recipe::RecipeConfig;
pub use crate::store::RecordConfig;
pub use crate::trigger::{PlcInputKind, TriggerConfig};
pub use crate::web::WebConfig;

/// The repository's `station.toml`, built in: what `station run` uses when no config file is present.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../station.toml");

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

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    onnxruntime_path: Option<PathBuf>,
    queue_depth: Option<usize>,
}

/// The validated config, as the station uses it.
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
    /// `[identity]`: where a part's identity comes from (docs/IDENTITY.md).
    pub identity: IdentityConfig,
    /// `[metrics]`: the Prometheus endpoint (absent: off).
    pub metrics: Option<MetricsConfig>,
    /// `[mqtt]`: the outbox published to an MQTT broker (absent: off).
    pub mqtt: Option<MqttConfig>,
    /// `[[webhook]]`: the outbox POSTed to HTTP endpoints.
    pub webhooks: Vec<WebhookConfig>,
}

/// `[station]`: what every stage reads a little of.
#[derive(Debug, Clone)]
pub struct StationConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub onnxruntime_path: Option<PathBuf>,
    /// Capacity of every bounded channel between stages.
    pub queue_depth: usize,
}

/// The sections a file may have.
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
    "identity",
    "metrics",
    "mqtt",
    "webhook",
];

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
        let mut p = Problems::new(base);
        for key in table.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            p.problem(
                key,
                format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            );
        }
        let config = Config::sections(&mut p, &table, file);
        cross_checks(&mut p, &config);
        if p.list.is_empty() {
            Ok(config)
        } else {
            Err(invalid(p.list))
        }
    }

    /// Each section, deserialized and validated by the stage that owns it.
    fn sections(p: &mut Problems, table: &toml::Table, file: &str) -> Config {
        let raw: RawStation = p.section(table, "station");
        let station = station(p, raw);
        let plc = p.section(table, "plc");
        let plc = crate::plc::config::validate(p, plc, station.queue_depth);
        let trigger = p.section(table, "trigger");
        let source = p.section(table, "source");
        let preprocess = p.section(table, "preprocess");
        let model = p.section(table, "model");
        let decision = p.section(table, "decision");
        let record = p.section(table, "record");
        let audio = table
            .contains_key("audio")
            .then(|| p.section(table, "audio"));
        let recipes = p.section(table, "recipe");
        let web = p.section(table, "web");
        let identity = p.section(table, "identity");
        let trigger = crate::trigger::config::validate(p, trigger);
        let source = crate::capture::config::validate(p, source);
        let preprocess = crate::preprocess::config::validate(p, preprocess);
        let model = crate::model::config::validate(p, model);
        let decision = crate::decision::config::validate(p, decision);
        let record = crate::store::config::validate(p, record, &station.data_dir);
        let audio = audio.map(|raw| crate::audio::config::validate(p, raw));
        let recipes = crate::recipe::config::validate(p, recipes, &model, &preprocess);
        let web = crate::web::config::validate(p, web, table.contains_key("web"));
        let identity = crate::identity::config::validate(p, identity);
        let metrics = table.contains_key("metrics").then(|| {
            let raw = p.section(table, "metrics");
            crate::plant::config::validate_metrics(p, raw)
        });
        let mqtt = table.contains_key("mqtt").then(|| {
            let raw = p.section(table, "mqtt");
            crate::plant::config::validate_mqtt(p, raw)
        });
        let webhooks = p.section(table, "webhook");
        let webhooks = crate::plant::config::validate_webhooks(p, webhooks);
        Config {
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
            identity,
            metrics,
            mqtt,
            webhooks,
        }
    }
}

fn station(p: &mut Problems, raw: RawStation) -> StationConfig {
    let queue_depth = raw.queue_depth.unwrap_or(8);
    if queue_depth == 0 {
        p.problem(
            "station.queue_depth",
            "expected a positive number of parts, got 0",
        );
    }
    StationConfig {
        name: raw.name.unwrap_or_else(|| "station".into()),
        data_dir: p.path(raw.data_dir.unwrap_or_else(|| "data".into())),
        onnxruntime_path: raw.onnxruntime_path.map(|f| p.path(f)),
        queue_depth: queue_depth.max(1),
    }
}

/// The checks that span sections: a PLC trigger needs a real PLC link (and one that can set the input it
/// watches), and a part's sound must be in before its deadline.
fn cross_checks(p: &mut Problems, config: &Config) {
    if let TriggerConfig::Plc { input_kind, .. } = config.trigger {
        if matches!(config.plc.link, PlcLink::Off | PlcLink::Simulated) {
            p.problem(
                "trigger.kind",
                "\"plc\" needs a real PLC: set plc.kind = \"tcp\" (with plc.address or plc.listen) or \"rtu\"",
            );
        }
        if input_kind == PlcInputKind::DiscreteInput && matches!(config.plc.link, PlcLink::Serve(_))
        {
            p.problem(
                "trigger.input_kind",
                "a PLC cannot write the station's discrete inputs: use \"command\" or \"coil\" with plc.role = \"server\"",
            );
        }
    }
    if config.identity.source == IdentitySource::Plc
        && !matches!(config.trigger, TriggerConfig::Plc { .. })
    {
        p.problem(
            "identity.source",
            "\"plc\" takes the part ID the PLC gives with its trigger: it needs trigger.kind = \"plc\"",
        );
    }
    calibration_fits_the_source(p, config);
    if let Some(audio) = &config.audio
        && audio.post_ms >= config.decision.deadline_ms
    {
        p.problem(
            "audio.post_ms",
            format!(
                "the part's verdict waits for its sound: expected less than decision.deadline_ms ({}), got {}",
                config.decision.deadline_ms, audio.post_ms
            ),
        );
    }
}

/// A calibration is for one frame size: the synthetic conveyor's, or the replayed folder's first image's (from
/// its header) must be it. A video's size is known only once it is opened: a frame of another size is a frame
/// fault then.
fn calibration_fits_the_source(p: &mut Problems, config: &Config) {
    let Some(u) = &config.preprocess.calibration else {
        return;
    };
    let (size, of) = match &config.source {
        SourceConfig::Synthetic(_) => {
            let px = crate::capture::synthetic::FRAME_PX as u64;
            (
                Some((px, px)),
                "the synthetic conveyor's frames".to_string(),
            )
        }
        SourceConfig::Folder { path, .. } => (
            crate::capture::folder::first_image_size(path),
            format!("the first image of {}", path.display()),
        ),
        SourceConfig::Video { .. } => (None, String::new()),
    };
    if let Some((width, height)) = size
        && (width, height) != (u64::from(u.size.width), u64::from(u.size.height))
    {
        p.problem(
            "preprocess.calibration",
            format!(
                "{} is for {} frames, but {of} is {width}x{height}",
                u.path.display(),
                u.size
            ),
        );
    }
}

impl Config {
    /// Problems that depend on the line's pace rather than on the file alone: `station validate` refuses them,
    /// `station run` warns (a line may run slower than its interval trigger). Today: a part's sound window that
    /// overlaps the next part's at the interval trigger, so a part would be judged by its neighbour's sound.
    pub fn pace_problems(&self) -> Vec<Problem> {
        let mut p = Problems::new(Path::new("."));
        let config = self;
        if let (Some(audio), TriggerConfig::Interval { interval_us }) =
            (&config.audio, &config.trigger)
            && (audio.pre_ms + audio.post_ms) * 1000 > *interval_us
        {
            let interval_ms = *interval_us as f64 / 1000.0;
            p.problem(
                "audio.post_ms",
                format!(
                    "each part's sound window (pre_ms + post_ms = {} ms) overlaps the next part's at trigger.interval_ms = {interval_ms}: a part would be judged by its neighbour's sound",
                    audio.pre_ms + audio.post_ms
                ),
            );
        }
        p.list
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of a refused config, and the field paths of its problems.
    fn refused(text: &str) -> (ConfigError, Vec<String>) {
        let err = Config::parse(text, "bad.toml", Path::new(".")).unwrap_err();
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        let fields = problems.iter().map(|p| p.field.clone()).collect();
        (err, fields)
    }

    #[test]
    fn embedded_default_is_valid_and_runs_the_demo() {
        let config = Config::embedded_default().unwrap();
        assert!(matches!(config.source, SourceConfig::Synthetic(_)));
        assert_eq!(config.plc.link, PlcLink::Simulated);
        assert!(config.model.dir.ends_with("models/surface-defect"));
    }

    #[test]
    fn the_trigger_interval_takes_fractions_of_a_millisecond() {
        let config = Config::parse(
            "[model]\ndir = \"m\"\n[trigger]\ninterval_ms = 0.25\n",
            "t.toml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(config.trigger, TriggerConfig::Interval { interval_us: 250 });
        let (err, fields) = refused("[model]\ndir = \"m\"\n[trigger]\ninterval_ms = -1.5\n");
        assert_eq!(fields, ["trigger.interval_ms"]);
        assert!(err.to_string().contains("fractions allowed"), "{err}");
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
        let (err, fields) = refused(text);
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
                fields.iter().any(|f| f == expected),
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
        let (_, fields) = refused(&text);
        for expected in [
            "audio.path",
            "audio.seed",
            "audio.post_ms",
            "audio.model_dir",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
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

    #[test]
    fn every_planted_problem_is_reported_even_several_in_one_section() {
        let text = r#"
            [station]
            queue_depth = "many"
            name = 3
            [trigger]
            interval_ms = 20
            [source]
            seed = "x"
            defect_fraction = "y"
            colour = "red"
            [model]
            dir = "m"
            threads = -1
            [decision]
            deadline_ms = 100
            [audio]
            kind = "synthetic"
            model_dir = "a"
            pre_ms = 5
            post_ms = 40
            ring_s = "long"
        "#;
        let (_, fields) = refused(text);
        for expected in [
            "station.queue_depth",
            "station.name",
            "source.seed",
            "source.defect_fraction",
            "source.colour",
            "model.threads",
            "audio.ring_s",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "missing {expected} in {fields:?}"
            );
        }
        let paced = Config::parse(
            "[model]\ndir = \"m\"\n[trigger]\ninterval_ms = 25\n[audio]\nkind = \"synthetic\"\nmodel_dir = \"a\"\npre_ms = 5\npost_ms = 40\n",
            "paced.toml",
            Path::new("."),
        )
        .unwrap();
        let pace = paced.pace_problems();
        assert_eq!(pace.len(), 1, "{pace:?}");
        assert!(
            pace[0].message.contains("overlaps the next part's"),
            "{pace:?}"
        );
        assert!(
            Config::embedded_default()
                .unwrap()
                .pace_problems()
                .is_empty()
        );
    }
}
