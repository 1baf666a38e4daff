//! What is recorded about a part, and the one message type every stage sends to the record writer
//! ([`RecordMsg`]): the orchestrator's verdicts, the PLC task's "delivered / undelivered / rejected at the gate",
//! the shadow worker's scores. Stages send these over a channel they are given; none of them names the writer.
//!
//! Images beside the frame (a heat map, a spectrogram) travel as a [`Drawing`]: the stage that made the data
//! knows how to draw it; the writer only calls it, off the line, and saves what it returns.

use opencv::core::Mat;
use serde::{Deserialize, Serialize};

use super::inference::ModelInfo;

/// The verdict on a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Reject => "REJECT",
        }
    }
}

/// An image drawn from a part's data, saved beside its frame.
pub trait Drawing: Send {
    /// Draws the image; `frame` is the part's kept frame, when there is one.
    fn draw(&self, frame: Option<&Mat>) -> Result<Mat, String>;
}

/// Everything recorded about one part at its verdict: its row (plain data, written to the database or the
/// journal as it is), and the images the writer saves first, whose paths it then fills into the row.
pub struct PartRecord {
    pub row: PartRow,
    /// The frame to keep, for rejected and sampled passed parts (`<part>.png`, `row.image_path`).
    pub image: Option<Mat>,
    /// A rejected part's heat map, drawn over the kept frame (`<part>.heat.png`, `row.heatmap_path`).
    pub heatmap: Option<Box<dyn Drawing>>,
    /// A rejected part's sound as a spectrogram (`<part>.spectrogram.png`, `row.acoustic.spectrogram_path`).
    pub spectrogram: Option<Box<dyn Drawing>>,
}

/// The `parts` row of one part (image paths filled in by the record writer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRow {
    pub part_id: String,
    pub run_id: i64,
    pub seq: u64,
    pub origin: String,
    pub truth: Option<String>,
    pub triggered_us: i64,
    pub captured_us: Option<i64>,
    pub preprocessed_us: Option<i64>,
    pub inferred_us: Option<i64>,
    pub decided_us: i64,
    pub score: Option<f32>,
    pub threshold: f32,
    pub verdict: String,
    pub reasons: String,
    pub result_code: u16,
    pub plc_status: String,
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    pub image_path: Option<String>,
    pub heatmap_path: Option<String>,
    pub acoustic: Option<AcousticRow>,
    /// The PLC's part ID and encoder count at the trigger.
    #[serde(default)]
    pub plc_part_id: Option<u32>,
    #[serde(default)]
    pub encoder: Option<u32>,
    /// The error bound of `triggered_us` for a PLC trigger (see [`crate::part::PlcTag::uncertainty_us`]).
    #[serde(default)]
    pub trigger_uncertainty_us: Option<u32>,
}

/// The acoustic columns of a part's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcousticRow {
    pub score: Option<f32>,
    pub threshold: f32,
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    pub truth: Option<String>,
    pub spectrogram_path: Option<String>,
}

/// What the PLC stage reports back for a part.
#[derive(Debug, Clone, PartialEq)]
pub enum PlcOutcome {
    /// The PLC has the result: `actuated_us` is when it acknowledged it (or, without acknowledge, when it was
    /// written); `result_written_us` when the result block holding it was written; `reject_on_us` when the reject
    /// output was driven high for the part (rejected parts).
    Delivered {
        actuated_us: i64,
        result_written_us: Option<i64>,
        reject_on_us: Option<i64>,
        /// What became of the reject pulse (the `reject_pulse` column's values).
        reject_pulse: Option<&'static str>,
    },
    /// The reject output of a rejected part went low again (the pulse ended).
    PulseEnded { reject_off_us: i64 },
    Undelivered {
        detail: String,
        reject_pulse: Option<&'static str>,
    },
    /// The part reached the reject gate before its verdict and was rejected fail-safe there.
    RejectedAtGate { detail: String },
}

/// A shadow model's judgement of one part, as recorded (never part of the verdict).
#[derive(Debug, Clone)]
pub struct ShadowScore {
    pub part_id: String,
    pub model: ModelInfo,
    /// The score, or why the shadow model could not score the part.
    pub score: Result<f32, String>,
    pub scored_us: i64,
}

/// What a stage tells the record writer.
pub enum RecordMsg {
    /// A part got its verdict.
    Insert(Box<PartRecord>),
    /// A shadow model's score of a part.
    Shadow(ShadowScore),
    /// What became of a part's result at the PLC.
    Actuated {
        part_id: String,
        outcome: PlcOutcome,
    },
}
