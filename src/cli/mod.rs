//! The `station` command line: argument parsing, logging, the tokio runtime, and error-to-exit-code mapping.
//! Each subcommand is a small file calling the library.
//!
//! Exit codes: 0 ok; 1 runtime failure; 2 bad config or command line; 3 model refused; 4 PLC unreachable.
//! Failures print one line on stderr: `error: <what> : <why>`.

mod bench;
mod calibrate;
mod dataset;
mod evaluate_audio;
mod evaluate_vision;
mod export;
mod generate;
mod generate_sounds;
mod generate_textures;
mod model;
mod peer;
mod plc;
mod review;
mod run;
mod spc;
mod spc_data;
mod status;
mod trace;
mod train_audio;
mod train_vision;
mod user;
mod validate;
mod verify;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::model::ModelError;

#[derive(Parser)]
#[command(
    name = "station",
    version,
    about = "Inspection station: trigger, capture, model, verdict, PLC, records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Config file [default: ./station.toml, else the built-in demo config]
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the line: judge parts until --max-parts, the end of a replay, or Ctrl-C
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Stop after this many parts
        #[arg(long, value_name = "N")]
        max_parts: Option<u64>,
        /// No live status line
        #[arg(long)]
        quiet: bool,
    },
    /// Check the config, the model against its manifest, the frame source and the PLC, without running
    Validate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The records at a glance: last runs and how they ended, the journal's backlog, the images' disk use
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// A part's whole history from its serial, part id or PLC part ID (every attempt, verdict, reasons, scores,
    /// images, reviews), or a lot's figures and parts with --lot
    Trace {
        #[command(flatten)]
        config: ConfigArg,
        /// A serial, a part id (12-000042) or a PLC part ID
        #[arg(required_unless_present = "lot", conflicts_with = "lot")]
        key: Option<String>,
        /// A lot: counts, yield, reject reasons, confirmed defects by class, every part
        #[arg(long, value_name = "LOT")]
        lot: Option<String>,
        /// Print the history as JSON
        #[arg(long)]
        json: bool,
    },
    /// Export the records of a lot or a time window as CSV, JSON or AQDEF (Q-DAS) for the plant's systems
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this lot
        #[arg(long, value_name = "LOT")]
        lot: Option<String>,
        /// From this UTC time on (YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS])
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Before this UTC time
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// csv, json or aqdef
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write to this file (default: standard output)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Recompute the tamper-evident record chain and check it against the records and their image files
    Verify {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Measure per-stage and end-to-end latency against the bare model's session.run on the same frames
    Bench {
        #[command(flatten)]
        config: ConfigArg,
        /// Parts to run through the pipeline (and frames to time the bare model on)
        #[arg(long, default_value_t = 300)]
        parts: u64,
        /// Compare with the plain Python pipeline of the same job (benches/peers/python_pipeline.py) on generated
        /// 320x320 colour and 1280x1024 mono frames
        #[arg(long)]
        peer: bool,
    },
    /// Calibrate a camera from chessboard photos: intrinsics, distortion, reprojection errors, outliers dropped;
    /// writes calibration/<camera>/calibration.toml
    Calibrate(Box<calibrate::CalibrateArgs>),
    /// The PLC link: `station plc status`
    Plc {
        #[command(subcommand)]
        command: PlcCommand,
    },
    /// Write synthetic conveyor parts as PNG files (good/, scratch/, spot/, crack/) for replay and tests
    GenerateParts {
        /// Output folder
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also write each defect's ground-truth mask into this folder
        #[arg(long, value_name = "DIR")]
        masks: Option<PathBuf>,
        /// Number of parts
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Generator seed
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fraction of parts with a defect
        #[arg(long, default_value_t = 0.2)]
        defect_fraction: f64,
    },
    /// Train a model from normal data
    Train {
        #[command(subcommand)]
        kind: TrainKind,
    },
    /// Evaluate a vision model on labelled images (or `--shadow`, or `evaluate audio`)
    #[command(args_conflicts_with_subcommands = true)]
    Evaluate {
        #[command(subcommand)]
        kind: Option<EvaluateKind>,
        #[command(flatten)]
        vision: Box<evaluate_vision::EvaluateVisionArgs>,
    },
    /// The model registry: list versions, promote one, roll back
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Write an evaluation set cut from a real texture photo: good crops, crops with drawn defects, their masks
    GenerateTextureSet(generate_textures::GenerateTexturesArgs),
    /// Write the synthetic machine's part sounds as WAV files (normal/, anomalous/)
    GenerateSounds {
        /// Output folder
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Number of parts
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Generator seed
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fraction of parts with an acoustic anomaly
        #[arg(long, default_value_t = 0.2)]
        anomaly_fraction: f64,
        /// Sound before the trigger in each file
        #[arg(long, default_value_t = 5)]
        pre_ms: u64,
        /// Sound after the trigger in each file
        #[arg(long, default_value_t = 40)]
        post_ms: u64,
        #[arg(long, default_value_t = 48_000)]
        sample_rate_hz: u32,
    },
    /// Serve the operator review page over the records, without running the line
    Review {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Manage the review page's users
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Statistical process control from a CSV: control charts with run rules, EWMA, CUSUM, capability, ARL
    Spc(Box<spc::SpcArgs>),
    /// Training data from operators' reviews
    Dataset {
        #[command(subcommand)]
        action: DatasetAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user (the password is asked for, or read from stdin)
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// Login name (letters, digits, '.', '_', '-')
        name: String,
        /// operator (reviews parts) or technician (also changes the threshold)
        #[arg(long)]
        role: String,
        /// Read the password from the first line of stdin
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users: role, created, disabled, last login
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Disable a user (their sessions end at once; the audit trail keeps their name)
    Disable {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
    },
    /// Enable a disabled user again
    Enable {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
    },
    /// Delete a user who never reviewed anything (otherwise: disable)
    Delete {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
    },
    /// Set a user's password (asked for, or read from stdin); their sessions end
    Passwd {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
        /// Read the password from the first line of stdin
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum DatasetAction {
    /// Write reviewed images as good/ and <defect_class>/ folders with labels.csv
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Output folder (absent or empty)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum TrainKind {
    /// Learn the normal sound from normal recordings only (acoustic anomaly model)
    Audio(Box<train_audio::TrainAudioArgs>),
    /// Learn an anomaly model from good images only (vision model, exported as ONNX)
    Vision(Box<train_vision::TrainVisionArgs>),
}

#[derive(Subcommand)]
enum ModelAction {
    /// List each model's versions (* = active), thresholds, designs, AUROC and recent history
    List {
        /// Models folder
        #[arg(long, value_name = "DIR", default_value = "models")]
        models: PathBuf,
    },
    /// Make a version the active one (refused unless it loads and checks against its manifest)
    Promote {
        name: String,
        version: String,
        #[arg(long, value_name = "DIR", default_value = "models")]
        models: PathBuf,
    },
    /// Go back to the version that was active before the current one
    Rollback {
        name: String,
        #[arg(long, value_name = "DIR", default_value = "models")]
        models: PathBuf,
    },
}

#[derive(Subcommand)]
enum EvaluateKind {
    /// AUC and pAUC of an acoustic model on normal and anomalous recordings; ROC and spectrograms as images
    Audio(evaluate_audio::EvaluateAudioArgs),
}

#[derive(Subcommand)]
enum PlcCommand {
    /// Connect to the PLC link and show link state, round trip p50/p99, heartbeats, buffer depth and faults
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// How long to watch the registers
        #[arg(long, default_value_t = 2.0, value_name = "S")]
        seconds: f64,
    },
}

/// The station's database, which must exist: a mistyped data_dir must not open an empty database it just created.
fn existing_database(config: &crate::config::Config) -> Result<&std::path::Path, ConfigError> {
    let db = &config.record.database;
    if db.is_file() {
        return Ok(db);
    }
    Err(ConfigError::Read {
        path: db.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no station database here: check station.data_dir and record.database (station run creates it)",
        ),
    })
}

/// Exit code for an error, by what failed.
#[derive(Debug, thiserror::Error)]
#[error("PLC unreachable: {0}")]
pub struct PlcUnreachable(pub String);

/// `station spc`'s data file, command line or data that the chart cannot use.
fn bad_spc_input(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<spc_data::DataError>() || e.is::<spc::SpcUsage>() || e.is::<crate::spc::SpcError>()
}

fn exit_code(err: &anyhow::Error) -> i32 {
    let bad_training_options = |e: &(dyn std::error::Error + 'static)| {
        e.downcast_ref::<crate::vision::TrainError>()
            .is_some_and(|t| matches!(t, crate::vision::TrainError::Invalid(_)))
    };
    if err.chain().any(|e| {
        e.is::<ConfigError>()
            || e.is::<clap::Error>()
            || bad_training_options(e)
            || bad_spc_input(e)
            || e.is::<export::ExportUsage>()
            || e.is::<calibrate::CalibrateUsage>()
            || e.downcast_ref::<crate::users::UserError>()
                .is_some_and(crate::users::UserError::is_usage)
    }) {
        2
    } else if err.chain().any(|e| {
        // `PipelineError` wraps these transparently: the chain shows the pipeline error, not the model's.
        let refused_by_the_line = e
            .downcast_ref::<crate::pipeline::PipelineError>()
            .is_some_and(|p| {
                matches!(
                    p,
                    crate::pipeline::PipelineError::Model(_)
                        | crate::pipeline::PipelineError::Acoustic(_)
                        | crate::pipeline::PipelineError::AcousticMismatch { .. }
                )
            });
        refused_by_the_line
            || e.is::<ModelError>()
            || e.is::<crate::acoustic::AcousticError>()
            || e.is::<crate::model::registry::RegistryError>()
    }) {
        3
    } else if err.chain().any(|e| e.is::<PlcUnreachable>()) {
        4
    } else {
        1
    }
}

/// Loads `--config`, or `./station.toml`, or the built-in default.
fn load_config(arg: &ConfigArg) -> Result<Config, ConfigError> {
    match &arg.config {
        Some(path) => Config::load(path),
        None if Path::new("station.toml").exists() => Config::load(Path::new("station.toml")),
        None => Config::embedded_default(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ort=warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run {
            config,
            max_parts,
            quiet,
        } => run::run(&config, max_parts, quiet),
        Command::Validate { config } => validate::validate(&config),
        Command::Status { config } => status::status(&config),
        Command::Verify { config } => verify::verify(&config),
        Command::Export {
            config,
            lot,
            from,
            to,
            format,
            out,
        } => export::export(
            &config,
            &export::ExportArgs {
                lot: lot.as_deref(),
                from: from.as_deref(),
                to: to.as_deref(),
                format: &format,
                out: out.as_deref(),
            },
        ),
        Command::Trace {
            config,
            key,
            lot,
            json,
        } => trace::trace(&config, key.as_deref(), lot.as_deref(), json),
        Command::Bench {
            config,
            parts,
            peer: false,
        } => bench::bench(&config, parts),
        Command::Bench { config, parts, .. } => peer::peer(&config, parts),
        Command::Plc {
            command: PlcCommand::Status { config, seconds },
        } => plc::status(&config, seconds),
        Command::GenerateParts {
            out,
            masks,
            count,
            seed,
            defect_fraction,
        } => generate::generate(&out, masks.as_deref(), count, seed, defect_fraction),
        Command::Train {
            kind: TrainKind::Audio(args),
        } => train_audio::train(&args),
        Command::Train {
            kind: TrainKind::Vision(args),
        } => train_vision::train(&args),
        Command::Evaluate {
            kind: Some(EvaluateKind::Audio(args)),
            ..
        } => evaluate_audio::evaluate(&args),
        Command::Evaluate { kind: None, vision } => evaluate_vision::evaluate(&vision),
        Command::Model { action } => match action {
            ModelAction::List { models } => model::list(&models),
            ModelAction::Promote {
                name,
                version,
                models,
            } => model::promote(&models, &name, &version),
            ModelAction::Rollback { name, models } => model::rollback(&models, &name),
        },
        Command::GenerateTextureSet(args) => generate_textures::generate(&args),
        Command::GenerateSounds {
            out,
            count,
            seed,
            anomaly_fraction,
            pre_ms,
            post_ms,
            sample_rate_hz,
        } => generate_sounds::generate(
            &out,
            count,
            &crate::audio::synthetic::SyntheticSoundParams {
                seed,
                anomaly_fraction,
            },
            pre_ms,
            post_ms,
            sample_rate_hz,
        ),
        Command::Review { config } => review::review(&config),
        Command::User { action } => user::run(action),
        Command::Dataset {
            action: DatasetAction::Export { config, out },
        } => dataset::export(&config, &out),
        Command::Spc(args) => spc::spc(&args),
        Command::Calibrate(args) => calibrate::calibrate(&args),
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {}", format!("{err:#}").replace('\n', " "));
            exit_code(&err)
        }
    }
}
