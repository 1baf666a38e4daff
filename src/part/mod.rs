//! The ground floor: the types that travel with a part, shared by every stage. This module imports nothing from
//! the crate; every stage may import it.
//!
//! - here: the part's number ([`Seq`]) and its id ([`part_id`], the one place its format is written), the job
//!   handed from stage to stage, the per-stage timestamps, and what the CPU stages report to the orchestrator;
//! - [`inference`]: what a model says about a part and which model said it;
//! - [`trigger`]: the event that says a part is here, with what the PLC gave with it;
//! - [`record`]: what is recorded about a part, and the messages every stage sends to the record writer;
//! - [`switch`]: a value (a recipe's model or preprocessor) that takes effect from part N on.
//!
//! Only a part's sequence number and its owned frame move between threads; nothing is shared.

pub mod inference;
pub mod record;
pub mod switch;
pub mod trigger;

use std::sync::Arc;
use std::time::Instant;

use opencv::core::Mat;

pub use inference::{AnomalyMap, Inference, ModelInfo};
pub use trigger::{PlcTag, TriggerEvent};

/// Position of a part in this run's trigger order (1, 2, 3, ...).
pub type Seq = u64;

/// The station's id of part `seq` of run `run_id`: `<run>-<seq, 6 digits>` (`12-000042`).
pub fn part_id(run_id: i64, seq: Seq) -> String {
    format!("{run_id}-{seq:06}")
}

/// The stages a part passes on the CPU side, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Capture,
    Preprocess,
    Inference,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Preprocess => "preprocess",
            Stage::Inference => "inference",
        }
    }
}

/// A captured image with where it came from and, for replayed or synthetic parts, the known truth
/// (`"good"` or a defect class), used for the run's detection figures.
pub struct Frame {
    pub image: Mat,
    pub origin: String,
    pub truth: Option<String>,
    /// The region of the image the model saw (set by preprocess; `None`: the whole image).
    pub roi: Option<opencv::core::Rect>,
    /// The model's anomaly map of the ROI (set by inference when the model provides one).
    pub anomaly_map: Option<AnomalyMap>,
    /// The calibration the image was undistorted with (set by preprocess; `None`: as captured).
    pub calibration: Option<Arc<CalibrationStamp>>,
}

/// Which camera calibration a frame was undistorted with: its id (the calibration file's content hash) and its
/// px -> mm scale at the working plane, when measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationStamp {
    pub id: String,
    pub mm_per_px: Option<f64>,
}

/// When the part reached each stage (monotonic).
#[derive(Debug, Clone, Copy)]
pub struct StageTimes {
    pub triggered: Instant,
    pub captured: Option<Instant>,
    pub preprocessed: Option<Instant>,
    pub inferred: Option<Instant>,
}

impl StageTimes {
    pub fn new(triggered: Instant) -> Self {
        Self {
            triggered,
            captured: None,
            preprocessed: None,
            inferred: None,
        }
    }
}

/// A part in flight between the CPU stages.
pub struct Job {
    pub seq: Seq,
    pub times: StageTimes,
    pub frame: Option<Frame>,
    pub tensor: Vec<f32>,
}

/// What the CPU stages report to the orchestrator for one part.
pub enum StageReport {
    /// The model scored the part.
    Scored {
        seq: Seq,
        times: StageTimes,
        frame: Frame,
        inference: Inference,
    },
    /// A stage failed for this part; the part is rejected fail-safe.
    Fault {
        seq: Seq,
        times: StageTimes,
        stage: Stage,
        detail: String,
        frame: Option<Frame>,
        /// The frame source has no more frames (end of a non-looping video).
        source_exhausted: bool,
    },
}

impl StageReport {
    pub fn seq(&self) -> Seq {
        match self {
            StageReport::Scored { seq, .. } | StageReport::Fault { seq, .. } => *seq,
        }
    }
}
