//! Frame capture: the *frame source* stage.
//!
//! A [`FrameSource`] turns a trigger into a [`Frame`]: image-folder replay ([`folder`]), a video file through
//! OpenCV `VideoCapture` ([`video`]), or the demo's synthetic conveyor ([`synthetic`]). The capture worker owns
//! the source on its own thread, receives jobs from the orchestrator over a bounded channel and hands frames to
//! the preprocess worker. A grab that fails (corrupt file, unreadable video frame) becomes a
//! [`StageReport::Fault`] for that part, which the orchestrator rejects fail-safe; a grab that stalls is caught
//! by the part's deadline. Neither crashes the worker nor skips a part.

pub mod config;
pub mod folder;
pub mod synthetic;
pub mod video;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use tokio::sync::mpsc::Sender;

use crate::part::{Frame, Job, Stage, StageReport};
pub use config::SourceConfig;

/// Why a source could not deliver a frame for a part.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("cannot decode image {path}: not a readable image (corrupt or unsupported)")]
    Corrupt { path: String },
    #[error("cannot decode image {path}: {detail}")]
    Decode { path: String, detail: String },
    #[error(
        "image {path} is {width}x{height} ({pixels} pixels): over source.max_pixels ({max_pixels}); not decoded"
    )]
    TooLarge {
        path: String,
        width: u64,
        height: u64,
        pixels: u64,
        max_pixels: u64,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    OpenCv(#[from] opencv::Error),
    #[error("video {path}: no frame could be read ({detail})")]
    Video { path: String, detail: String },
    #[error("the source has no more frames ({0})")]
    Exhausted(String),
}

/// Why a source could not be opened at all (reported before the line starts).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("image folder {path}: {detail}")]
    Folder { path: String, detail: String },
    #[error("video {path}: {detail}")]
    Video { path: String, detail: String },
    #[error("synthetic conveyor: {0}")]
    Synthetic(#[from] opencv::Error),
}

/// Something that produces one frame per trigger.
pub trait FrameSource: Send {
    /// Capture the frame for the next part.
    fn grab(&mut self) -> Result<Frame, FrameError>;
    /// How many parts this source can deliver, when it is finite (a non-looping folder).
    fn part_count(&self) -> Option<u64>;
    /// One line describing the source, for logs.
    fn describe(&self) -> String;
}

/// Whether frames may be decoded straight to gray for this config: its model takes gray, and no `[[recipe]]`
/// can switch to a model that takes colour (a hot-swapped colour version then still gets the gray frames,
/// replicated: set `source.decode = "color"` before promoting one).
pub fn decode_gray(model: &crate::model::manifest::InputSpec, recipes: usize) -> bool {
    model.color == crate::model::manifest::ColorOrder::Gray && recipes == 0
}

/// Opens the source the config names; `model_gray`: the model takes one channel (an image folder then decodes
/// straight to gray unless `source.decode` says otherwise).
pub fn open(config: &SourceConfig, model_gray: bool) -> Result<Box<dyn FrameSource>, SourceError> {
    Ok(match config {
        SourceConfig::Synthetic(params) => {
            Box::new(synthetic::SyntheticConveyor::new(params.clone()))
        }
        SourceConfig::Folder {
            path,
            looping,
            max_pixels,
            gray,
            decode_threads,
        } => {
            let decode = folder::Decode {
                gray: gray.unwrap_or(model_gray),
                threads: *decode_threads,
                max_pixels: *max_pixels,
            };
            Box::new(folder::FolderSource::open(path, *looping, decode)?)
        }
        SourceConfig::Video { path, looping } => {
            Box::new(video::VideoSource::open(path, *looping)?)
        }
    })
}

/// Body of the capture thread: one grab per job until the job channel closes.
///
/// `done` is the sequence number of the last part this stage finished, which lets the orchestrator tell a stalled
/// capture from a slow model when a deadline passes.
pub fn run_worker(
    mut source: Box<dyn FrameSource>,
    jobs: Receiver<Job>,
    next: SyncSender<Job>,
    reports: Sender<StageReport>,
    done: Arc<AtomicU64>,
) {
    while let Ok(mut job) = jobs.recv() {
        let grabbed = source.grab();
        job.times.captured = Some(Instant::now());
        done.store(job.seq, Ordering::Release);
        match grabbed {
            Ok(frame) => {
                job.frame = Some(frame);
                if let Err(failed) = next.send(job) {
                    let job = failed.0;
                    let _ = reports.blocking_send(fault(
                        job,
                        "preprocess worker stopped".into(),
                        false,
                    ));
                    return;
                }
            }
            Err(err) => {
                let exhausted = matches!(err, FrameError::Exhausted(_));
                if reports
                    .blocking_send(fault(job, err.to_string(), exhausted))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn fault(job: Job, detail: String, source_exhausted: bool) -> StageReport {
    StageReport::Fault {
        seq: job.seq,
        times: job.times,
        stage: Stage::Capture,
        detail,
        frame: job.frame,
        source_exhausted,
    }
}
