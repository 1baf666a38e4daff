//! Video-file replay through OpenCV `VideoCapture`: one decoded frame per trigger, once or looping.
//! A frame that cannot be decoded mid-file is a frame fault for its part; the end of a non-looping file ends the
//! run (the part that found no frame is rejected fail-safe and recorded).

use std::path::{Path, PathBuf};

use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

use super::{FrameError, FrameSource, SourceError};
use crate::part::Frame;

pub struct VideoSource {
    path: PathBuf,
    capture: VideoCapture,
    looping: bool,
    index: u64,
}

impl VideoSource {
    pub fn open(path: &Path, looping: bool) -> Result<Self, SourceError> {
        let err = |detail: String| SourceError::Video {
            path: path.display().to_string(),
            detail,
        };
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let capture =
            VideoCapture::from_file(path, videoio::CAP_ANY).map_err(|e| err(e.to_string()))?;
        if !capture.is_opened().map_err(|e| err(e.to_string()))? {
            return Err(err(
                "OpenCV cannot open it as a video (unsupported codec or corrupt file)".into(),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            capture,
            looping,
            index: 0,
        })
    }

    fn read(&mut self) -> Result<Option<Mat>, opencv::Error> {
        let mut frame = Mat::default();
        let ok = self.capture.read(&mut frame)?;
        Ok((ok && !frame.empty()).then_some(frame))
    }
}

impl FrameSource for VideoSource {
    fn grab(&mut self) -> Result<Frame, FrameError> {
        let shown = self.path.display().to_string();
        let frame = match self.read() {
            Ok(Some(frame)) => frame,
            Ok(None) if self.looping && self.index > 0 => {
                self.capture.set(videoio::CAP_PROP_POS_FRAMES, 0.0)?;
                self.index = 0;
                self.read()?.ok_or_else(|| FrameError::Video {
                    path: shown.clone(),
                    detail: "no frame after rewinding".into(),
                })?
            }
            Ok(None) => return Err(FrameError::Exhausted(format!("end of video {shown}"))),
            Err(e) => {
                return Err(FrameError::Video {
                    path: shown,
                    detail: e.to_string(),
                });
            }
        };
        self.index += 1;
        Ok(Frame {
            image: frame,
            origin: format!("{shown}#{}", self.index),
            truth: None,
            roi: None,
            anomaly_map: None,
            calibration: None,
        })
    }

    fn part_count(&self) -> Option<u64> {
        None
    }

    fn describe(&self) -> String {
        format!(
            "video {}{}",
            self.path.display(),
            if self.looping { " (looping)" } else { "" }
        )
    }
}
