//! The pipeline: wires the stages together and runs the line, in named steps: [`build`] opens and starts every
//! piece (a plain value, [`build::Line`]), the orchestrator drives it ([`orchestrator`], the thin async loop around
//! the part-in-flight rules of [`inflight`]), and [`drain`] takes it down and sums up the run.
//!
//! ```text
//! trigger task ──TriggerEvent──▶ orchestrator ──Job──▶ capture thread ──▶ preprocess thread ──▶ inference thread
//!                                    ▲   │                  │ fault              │ fault             │ scored/fault
//!                                    │   │                  └────────────────────┴───── StageReport ─┘
//!                                    └───┼───────────────────────────────────────────────────────────┘
//!                                        ├──PlcMsg──▶ PLC handshake task (Modbus) ──Actuated──┐
//!                                        └──RecordMsg (Insert)──────────────────────────────┴─▶ record writer (SQLite)
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

pub mod build;
pub mod drain;
pub mod identities;
pub mod inflight;
pub mod listener;
pub mod orchestrator;

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::oneshot;

use crate::acoustic::AcousticError;
use crate::audio::AudioError;
use crate::capture::SourceError;
use crate::config::Config;
use crate::metrics::RunSummary;
use crate::model::ModelError;
use crate::store::StoreError;
use crate::trigger::TriggerError;
pub use listener::open_acoustic;

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
    #[error("{0}")]
    Scanner(String),
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
    let (mut line, inputs) = build::build(config, &opts).await?;
    if let Some(ready) = opts.ready.take() {
        let _ = ready.send(Ready {
            http_trigger: line.http_trigger,
            plc: line.plc.as_ref().map(|p| p.info.addr),
            run_id: line.run_id,
        });
    }
    line.orchestrator.run(inputs, shutdown).await;
    Ok(drain::drain(line).await)
}
