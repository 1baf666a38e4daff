//! `[preprocess]`: the region of the frame the model sees, and the camera calibration its frames are undistorted
//! with. Parsed into [`RawPreprocess`], validated into [`PreprocessConfig`]; [`roi`] also checks the ROI of each
//! `[[recipe]]` (which undistorts with the same calibration: it belongs to the camera, not the recipe).
//!
//! `calibration` names a file written by `station calibrate`; it is loaded and its remap tables computed here,
//! once. A missing or malformed file, or one whose id does not match its content, is a problem on
//! `preprocess.calibration` naming the file.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::calibration::{self, Undistortion};
use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocess {
    roi: Option<Vec<i64>>,
    calibration: Option<PathBuf>,
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
    /// The camera calibration frames are undistorted with (its remap tables), when set.
    pub calibration: Option<Arc<Undistortion>>,
}

pub fn validate(p: &mut Problems, raw: RawPreprocess) -> PreprocessConfig {
    PreprocessConfig {
        roi: roi(p, "preprocess.roi", raw.roi),
        calibration: raw.calibration.and_then(|path| {
            let path = p.path(path);
            let loaded = calibration::load(&path).and_then(|c| {
                Undistortion::new(&c, &path).map_err(calibration::CalibrationError::from)
            });
            loaded
                .map_err(|e| p.problem("preprocess.calibration", e.to_string()))
                .ok()
                .map(Arc::new)
        }),
    }
}

pub fn roi(p: &mut Problems, field: &str, raw: Option<Vec<i64>>) -> Option<Roi> {
    raw.and_then(|r| {
        let fits = |v: i64| i32::try_from(v).ok();
        match r.as_slice() {
            [x, y, w, h] if *x >= 0 && *y >= 0 && *w > 0 && *h > 0 => Some(Roi {
                x: fits(*x)?,
                y: fits(*y)?,
                width: fits(*w)?,
                height: fits(*h)?,
            }),
            _ => {
                p.problem(
                    field,
                    format!("expected [x, y, width, height] with x, y >= 0 and width, height > 0, got {r:?}"),
                );
                None
            }
        }
    })
}
