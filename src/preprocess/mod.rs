//! Preprocess (OpenCV): ROI crop, color conversion, resize, and normalisation into the model's input tensor,
//! laid out as the model's manifest declares (NCHW or NHWC, gray/RGB/BGR, scale, per-channel mean and std).
//!
//! Runs on its own thread ([`run_worker`]): receives captured jobs, emits jobs carrying the tensor to the
//! inference worker. A frame it cannot use (empty, ROI outside the frame, unsupported channel count) is a frame
//! fault for that part.
//!
//! With `[preprocess] calibration`, each frame is first undistorted (`remap` with the tables computed once at
//! config load, [`crate::calibration::Undistortion`]); the ROI, the model and the recorded image then all see
//! the undistorted frame, and the frame carries the calibration's id to its record. A frame of another size
//! than the calibration's is a frame fault naming both sizes and the file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use opencv::core::{self, Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;
use tokio::sync::mpsc::Sender;

pub mod config;

use crate::calibration::Undistortion;
use crate::calibration::undistort::UndistortError;
use crate::model::manifest::{ColorOrder, InputSpec, Layout};
use crate::part::switch::Pending;
use crate::part::{Job, Stage, StageReport};
pub use config::{PreprocessConfig, Roi};

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("empty frame")]
    EmptyFrame,
    #[error("ROI {roi:?} lies outside the {width}x{height} frame")]
    RoiOutside { roi: Rect, width: i32, height: i32 },
    #[error("frames with {0} channels are not supported (expected 1, 3 or 4)")]
    Channels(i32),
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("{0}")]
    Undistort(#[from] UndistortError),
}

/// Turns frames into model input tensors.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    roi: Option<Rect>,
    undistortion: Option<Arc<Undistortion>>,
    color: ColorOrder,
    layout: Layout,
    width: i32,
    height: i32,
    scale: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Preprocessor {
    pub fn new(config: &PreprocessConfig, input: &InputSpec) -> Self {
        Self {
            roi: config.roi.map(|r| Rect::new(r.x, r.y, r.width, r.height)),
            undistortion: config.calibration.clone(),
            color: input.color,
            layout: input.layout,
            width: input.width() as i32,
            height: input.height() as i32,
            scale: input.scale,
            mean: input.mean.clone(),
            std: input.std.clone(),
        }
    }

    /// Number of f32 values in one tensor.
    pub fn tensor_len(&self) -> usize {
        (self.width * self.height) as usize * self.color.channels()
    }

    /// Fills `out` with the tensor for `frame` (undistorted first, with a calibration).
    pub fn run(&self, frame: &Mat, out: &mut Vec<f32>) -> Result<(), PreprocessError> {
        match &self.undistortion {
            Some(u) if !frame.empty() => self.crop(&u.apply(frame)?, out),
            _ => self.crop(frame, out),
        }
    }

    /// As [`Preprocessor::run`], and the frame becomes its undistorted self (what the record keeps and the ROI and
    /// heat map refer to); returns the calibration it was undistorted with.
    pub fn run_in_place(
        &self,
        frame: &mut Mat,
        out: &mut Vec<f32>,
    ) -> Result<Option<Arc<crate::part::CalibrationStamp>>, PreprocessError> {
        match &self.undistortion {
            Some(u) if !frame.empty() => {
                *frame = u.apply(frame)?;
                self.crop(frame, out)?;
                Ok(Some(u.stamp.clone()))
            }
            _ => self.crop(frame, out).map(|()| None),
        }
    }

    /// The ROI, then color, size and normalisation.
    fn crop(&self, frame: &Mat, out: &mut Vec<f32>) -> Result<(), PreprocessError> {
        if frame.empty() {
            return Err(PreprocessError::EmptyFrame);
        }
        match self.roi {
            Some(roi) => {
                let (width, height) = (frame.cols(), frame.rows());
                if roi.x + roi.width > width || roi.y + roi.height > height {
                    return Err(PreprocessError::RoiOutside { roi, width, height });
                }
                self.convert(&Mat::roi(frame, roi)?, out)
            }
            None => self.convert(frame, out),
        }
    }

    /// Color, size and normalisation of the (cropped) view.
    fn convert(
        &self,
        view: &(impl core::ToInputArray + MatTraitConst),
        out: &mut Vec<f32>,
    ) -> Result<(), PreprocessError> {
        let code = match (view.channels(), self.color) {
            (1, ColorOrder::Gray) => None,
            (1, ColorOrder::Rgb) => Some(imgproc::COLOR_GRAY2RGB),
            (1, ColorOrder::Bgr) => Some(imgproc::COLOR_GRAY2BGR),
            (3, ColorOrder::Gray) => Some(imgproc::COLOR_BGR2GRAY),
            (3, ColorOrder::Rgb) => Some(imgproc::COLOR_BGR2RGB),
            (3, ColorOrder::Bgr) => None,
            (4, ColorOrder::Gray) => Some(imgproc::COLOR_BGRA2GRAY),
            (4, ColorOrder::Rgb) => Some(imgproc::COLOR_BGRA2RGB),
            (4, ColorOrder::Bgr) => Some(imgproc::COLOR_BGRA2BGR),
            (n, _) => return Err(PreprocessError::Channels(n)),
        };
        match code {
            Some(code) => {
                let mut converted = Mat::default();
                imgproc::cvt_color(view, &mut converted, code, 0)?;
                self.normalise(&converted, out)
            }
            None => self.normalise(view, out),
        }
    }

    /// Size and normalisation of the color-converted view, into the tensor layout.
    fn normalise(
        &self,
        colored: &(impl core::ToInputArray + MatTraitConst),
        out: &mut Vec<f32>,
    ) -> Result<(), PreprocessError> {
        let mut float = Mat::default();
        if colored.cols() != self.width || colored.rows() != self.height {
            let mut resized = Mat::default();
            let size = Size::new(self.width, self.height);
            imgproc::resize(colored, &mut resized, size, 0.0, 0.0, imgproc::INTER_AREA)?;
            resized.convert_to(&mut float, core::CV_32F, f64::from(self.scale), 0.0)?;
        } else {
            colored.convert_to(&mut float, core::CV_32F, f64::from(self.scale), 0.0)?;
        }
        // One f32 per channel value, channels interleaved (HWC).
        let flat = float.reshape(1, 0)?;
        let pixels = flat.data_typed::<f32>()?;
        let channels = self.color.channels();
        let plane = pixels.len() / channels;
        out.clear();
        out.resize(pixels.len(), 0.0);
        for c in 0..channels {
            let (mean, inv_std) = (self.mean[c], 1.0 / self.std[c]);
            for i in 0..plane {
                let value = (pixels[i * channels + c] - mean) * inv_std;
                match self.layout {
                    Layout::Nchw => out[c * plane + i] = value,
                    Layout::Nhwc => out[i * channels + c] = value,
                }
            }
        }
        Ok(())
    }
}

/// Body of the preprocess thread.
pub fn run_worker(
    mut pre: Preprocessor,
    jobs: Receiver<Job>,
    next: SyncSender<Job>,
    reports: Sender<StageReport>,
    done: Arc<AtomicU64>,
    mut recipe: Pending<Preprocessor>,
) {
    while let Ok(mut job) = jobs.recv() {
        if let Some(switched) = recipe.due(job.seq) {
            pre = switched;
        }
        let mut tensor = std::mem::take(&mut job.tensor);
        let result = match job.frame.as_mut() {
            Some(frame) => pre
                .run_in_place(&mut frame.image, &mut tensor)
                .map(|stamp| frame.calibration = stamp),
            None => Err(PreprocessError::EmptyFrame),
        };
        job.tensor = tensor;
        if let Some(frame) = job.frame.as_mut() {
            frame.roi = pre.roi;
        }
        job.times.preprocessed = Some(Instant::now());
        done.store(job.seq, Ordering::Release);
        let sent = match result {
            Ok(()) => next
                .send(job)
                .map_err(|e| (e.0, "inference worker stopped".to_string())),
            Err(err) => Err((job, format!("frame fault in preprocess: {err}"))),
        };
        if let Err((job, detail)) = sent {
            let report = StageReport::Fault {
                seq: job.seq,
                times: job.times,
                stage: Stage::Preprocess,
                detail,
                frame: job.frame,
                source_exhausted: false,
            };
            if reports.blocking_send(report).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Roi;
    use super::*;
    use opencv::core::{Scalar, Vec3b};

    fn spec(color: ColorOrder, layout: Layout, w: i64, h: i64) -> InputSpec {
        let c = color.channels() as i64;
        InputSpec {
            name: "x".into(),
            shape: match layout {
                Layout::Nchw => vec![1, c, h, w],
                Layout::Nhwc => vec![1, h, w, c],
            },
            layout,
            color,
            scale: 1.0 / 255.0,
            mean: vec![0.5; c as usize],
            std: vec![0.25; c as usize],
        }
    }

    #[test]
    fn crops_converts_and_lays_out_nchw_rgb() {
        // 4x4 BGR frame; pixel (x=2,y=1) is pure blue in BGR = (255,0,0).
        let mut frame =
            Mat::new_rows_cols_with_default(4, 4, core::CV_8UC3, Scalar::all(0.0)).unwrap();
        *frame.at_2d_mut::<Vec3b>(1, 2).unwrap() = Vec3b::from([255, 0, 0]);
        let config = PreprocessConfig {
            roi: Some(Roi {
                x: 2,
                y: 1,
                width: 2,
                height: 2,
            }),
            calibration: None,
        };
        let pre = Preprocessor::new(&config, &spec(ColorOrder::Rgb, Layout::Nchw, 2, 2));
        let mut out = Vec::new();
        pre.run(&frame, &mut out).unwrap();
        assert_eq!(out.len(), 12);
        // Channel planes R, G, B; the blue pixel is the ROI's first pixel.
        assert_eq!(&out[0..4], &[-2.0, -2.0, -2.0, -2.0]); // R
        assert_eq!(out[8], 2.0); // B at (0,0) = (1 - 0.5) / 0.25
        assert_eq!(&out[9..12], &[-2.0, -2.0, -2.0]);
    }

    #[test]
    fn nhwc_interleaves_and_resize_applies() {
        let frame =
            Mat::new_rows_cols_with_default(8, 8, core::CV_8UC3, Scalar::new(255.0, 0.0, 0.0, 0.0))
                .unwrap();
        let pre = Preprocessor::new(
            &PreprocessConfig {
                roi: None,
                calibration: None,
            },
            &spec(ColorOrder::Bgr, Layout::Nhwc, 4, 4),
        );
        let mut out = Vec::new();
        pre.run(&frame, &mut out).unwrap();
        assert_eq!(out.len(), 48);
        assert_eq!(&out[0..3], &[2.0, -2.0, -2.0]);
    }

    #[test]
    fn bad_frames_are_clear_errors() {
        let pre = Preprocessor::new(
            &PreprocessConfig {
                roi: Some(Roi {
                    x: 0,
                    y: 0,
                    width: 10,
                    height: 10,
                }),
                calibration: None,
            },
            &spec(ColorOrder::Gray, Layout::Nchw, 4, 4),
        );
        let mut out = Vec::new();
        assert!(matches!(
            pre.run(&Mat::default(), &mut out),
            Err(PreprocessError::EmptyFrame)
        ));
        let small = Mat::new_rows_cols_with_default(5, 5, core::CV_8UC1, Scalar::all(0.0)).unwrap();
        let err = pre.run(&small, &mut out).unwrap_err();
        assert!(err.to_string().contains("outside the 5x5 frame"), "{err}");
    }
}
