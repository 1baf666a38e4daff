//! What is recorded about a part, and the one message type every stage sends to the record writer
//! ([`RecordMsg`]): the orchestrator's verdicts, the PLC task's "delivered / undelivered / rejected at the gate",
//! the shadow worker's scores. Stages send these over a channel they are given; none of them names the writer.
//!
//! Images beside the frame (a heat map, a spectrogram) travel as a [`Drawing`]: the stage that made the data
//! knows how to draw it; the writer only calls it, off the line, and saves what it returns.
//!
//! Images never hold up a verdict: before a part's images go to the writer they reserve their bytes in the
//! [`ImageBudget`] (`record.image_queue_mb`); when the writer is that far behind, the part's images are skipped,
//! counted (`row.images_skipped`, the run's `images_skipped`), and its row goes on without them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opencv::core::Mat;
use opencv::prelude::*;
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
    /// Draws the image.
    fn draw(&self) -> Result<Mat, String>;
    /// About how many bytes the drawn image takes in memory (what it reserves in the [`ImageBudget`]).
    fn bytes(&self) -> u64;
}

/// The bytes of images on their way to the disk, bounded: a part's images either reserve their room here at the
/// verdict or are skipped. Shared by the orchestrator (reserves) and the record writer (releases, by dropping the
/// [`Reserved`] once the images are written).
#[derive(Debug, Clone)]
pub struct ImageBudget {
    in_flight: Arc<AtomicU64>,
    max_bytes: u64,
}

impl ImageBudget {
    pub fn new(max_bytes: u64) -> ImageBudget {
        ImageBudget {
            in_flight: Arc::new(AtomicU64::new(0)),
            max_bytes,
        }
    }

    /// Reserves `bytes`, or `None` when they do not fit under the bound now.
    pub fn reserve(&self, bytes: u64) -> Option<Reserved> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now + bytes <= self.max_bytes).then_some(now + bytes)
            })
            .ok()?;
        Some(Reserved {
            in_flight: self.in_flight.clone(),
            bytes,
        })
    }
}

/// Room reserved in the [`ImageBudget`]; released when dropped.
#[derive(Debug)]
pub struct Reserved {
    in_flight: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The bytes of a frame in memory.
pub fn mat_bytes(image: &Mat) -> u64 {
    (image.total() * image.elem_size().unwrap_or(1)) as u64
}

/// Everything recorded about one part at its verdict: its row (plain data, written to the database or the
/// journal as it is), and the images the writer saves first, whose paths it then fills into the row.
pub struct PartRecord {
    pub row: PartRow,
    /// The frame to keep, for rejected and sampled passed parts (`<part>.png`, `row.image_path`).
    pub image: Option<Mat>,
    /// A rejected part's heat map at the model's resolution (`<part>.heat.png`, `row.heatmap_path`; the page
    /// lays it over `row.heatmap_roi` of the frame).
    pub heatmap: Option<Box<dyn Drawing>>,
    /// A rejected part's sound as a spectrogram (`<part>.spectrogram.png`, `row.acoustic.spectrogram_path`).
    pub spectrogram: Option<Box<dyn Drawing>>,
    /// The room the images hold in the [`ImageBudget`] until they are written.
    pub reserved: Option<Reserved>,
}

impl PartRecord {
    /// Reserves room for the record's images, or drops them and counts them in `row.images_skipped`.
    /// Returns how many were skipped.
    pub fn reserve_images(&mut self, budget: &ImageBudget) -> u32 {
        let bytes = self.image.as_ref().map_or(0, mat_bytes)
            + self.heatmap.as_ref().map_or(0, |d| d.bytes())
            + self.spectrogram.as_ref().map_or(0, |d| d.bytes());
        let count = u32::from(self.image.is_some())
            + u32::from(self.heatmap.is_some())
            + u32::from(self.spectrogram.is_some());
        if count == 0 {
            return 0;
        }
        match budget.reserve(bytes) {
            Some(reserved) => {
                self.reserved = Some(reserved);
                0
            }
            None => {
                (self.image, self.heatmap, self.spectrogram) = (None, None, None);
                self.row.images_skipped = count;
                count
            }
        }
    }
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
    /// The region of the frame the heat map covers, `x,y,w,h` in frame pixels.
    #[serde(default)]
    pub heatmap_roi: Option<String>,
    /// Images of the part not written because the image writer was `record.image_queue_mb` behind.
    #[serde(default)]
    pub images_skipped: u32,
    pub acoustic: Option<AcousticRow>,
    /// The PLC's part ID and encoder count at the trigger.
    #[serde(default)]
    pub plc_part_id: Option<u32>,
    #[serde(default)]
    pub encoder: Option<u32>,
    /// The error bound of `triggered_us` for a PLC trigger (see [`crate::part::PlcTag::uncertainty_us`]).
    #[serde(default)]
    pub trigger_uncertainty_us: Option<u32>,
    /// The calibration the frame was undistorted with (its id) and its px -> mm scale.
    #[serde(default)]
    pub calibration_id: Option<String>,
    #[serde(default)]
    pub mm_per_px: Option<f64>,
    /// Who the part is (a scan, or the PLC's part ID); `None` with `identity.source = "sequence"`.
    #[serde(default)]
    pub identity: Option<IdentityRow>,
}

/// The identity columns of a part's row (its `attempt` and `previous_part_id` are found by the writer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityRow {
    /// `scanner` or `plc`.
    pub source: String,
    /// The scan's bytes as received (terminator excluded); `None` for a NOREAD or a PLC identity.
    pub raw: Option<Vec<u8>>,
    /// The AIM symbology identifier, e.g. `]d2`.
    pub symbology: Option<String>,
    pub serial: Option<String>,
    pub gtin: Option<String>,
    pub lot: Option<String>,
    /// GS1 dates as `YYYY-MM-DD` (`YYYY-MM` when the day was 00).
    pub expiry: Option<String>,
    pub production_date: Option<String>,
    /// Every GS1 element in order, as JSON: `[{"ai":"01","value":"..."}, ...]`.
    pub gs1_fields: Option<String>,
    /// Why the scan could not be read as an identity.
    pub error: Option<String>,
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
