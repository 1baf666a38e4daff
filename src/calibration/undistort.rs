//! Undistortion for the line: [`Undistortion`] holds the remap tables of one calibration, computed once
//! (`initUndistortRectifyMap`) when the config is loaded, and applies them to each frame (`remap`) on the
//! preprocess thread. The undistorted frame keeps the calibrated camera matrix, so a pixel at the image centre
//! keeps its size and the ROI, the heat map and the recorded image all live in undistorted pixels.
//!
//! [`measure_scale`] gives the px -> mm scale: the board photographed lying on the working plane (the
//! reference view), its corners undistorted, the mean spacing of neighbouring corners in pixels against the
//! square's side in mm.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use opencv::core::{self, Mat, Point2f, Scalar, Size, Vector};
use opencv::prelude::*;
use opencv::{calib3d, imgproc};

use super::{Calibration, CalibrationError, ImageSize, Scale, detect};
use crate::part::CalibrationStamp;

/// A calibration's camera matrix as an OpenCV matrix.
pub fn camera_matrix(c: &Calibration) -> Result<Mat, opencv::Error> {
    Mat::from_slice_2d(&c.camera_matrix)
}

/// A calibration's distortion coefficients as an OpenCV row.
pub fn distortion(c: &Calibration) -> Result<Mat, opencv::Error> {
    Mat::from_slice(&c.distortion)?.try_clone()
}

/// Image points moved to where an ideal (distortion-free) camera with the same camera matrix sees them.
pub fn undistort_points(
    c: &Calibration,
    points: &Vector<Point2f>,
) -> Result<Vector<Point2f>, opencv::Error> {
    let k = camera_matrix(c)?;
    let mut out = Vector::<Point2f>::new();
    calib3d::undistort_points(points, &mut out, &k, &distortion(c)?, &core::no_array(), &k)?;
    Ok(out)
}

/// The remap tables of one calibration, and what a frame undistorted with them is stamped with.
pub struct Undistortion {
    /// The calibration's id and scale, handed to each frame.
    pub stamp: Arc<CalibrationStamp>,
    /// The frame size the tables are for.
    pub size: ImageSize,
    /// The calibration file.
    pub path: PathBuf,
    map1: Mat,
    map2: Mat,
}

impl std::fmt::Debug for Undistortion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Undistortion")
            .field("id", &self.stamp.id)
            .field("size", &self.size)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Undistortion {
    fn eq(&self, other: &Self) -> bool {
        self.stamp == other.stamp && self.path == other.path
    }
}

impl Undistortion {
    /// Computes the remap tables of `calibration` (read from `path`).
    pub fn new(calibration: &Calibration, path: &Path) -> Result<Undistortion, opencv::Error> {
        let k = camera_matrix(calibration)?;
        let size = calibration.image;
        let (mut map1, mut map2) = (Mat::default(), Mat::default());
        calib3d::init_undistort_rectify_map(
            &k,
            &distortion(calibration)?,
            &core::no_array(),
            &k,
            Size::new(size.width as i32, size.height as i32),
            core::CV_16SC2,
            &mut map1,
            &mut map2,
        )?;
        Ok(Undistortion {
            stamp: Arc::new(CalibrationStamp {
                id: calibration.id.clone(),
                mm_per_px: calibration.scale.as_ref().map(|s| s.mm_per_px),
            }),
            size,
            path: path.to_path_buf(),
            map1,
            map2,
        })
    }

    /// The undistorted frame; a frame of another size than the calibration's is refused.
    pub fn apply(&self, frame: &Mat) -> Result<Mat, UndistortError> {
        let got = ImageSize {
            width: frame.cols().max(0) as u32,
            height: frame.rows().max(0) as u32,
        };
        if got != self.size {
            return Err(UndistortError::Size {
                got,
                expected: self.size,
                path: self.path.display().to_string(),
            });
        }
        let mut out = Mat::default();
        imgproc::remap(
            frame,
            &mut out,
            &self.map1,
            &self.map2,
            imgproc::INTER_LINEAR,
            core::BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        Ok(out)
    }
}

/// A frame that could not be undistorted.
#[derive(Debug, thiserror::Error)]
pub enum UndistortError {
    #[error("the frame is {got}, but calibration {path} is for {expected} frames")]
    Size {
        got: ImageSize,
        expected: ImageSize,
        path: String,
    },
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// The px -> mm scale from a reference view of the calibration's board lying on the working plane.
pub fn measure_scale(c: &Calibration, reference: &Path) -> Result<Scale, CalibrationError> {
    let failed = |detail: String| CalibrationError::Reference {
        path: reference.display().to_string(),
        detail,
    };
    let (gray, _) = detect::read_gray(reference)?;
    if (gray.cols() as u32, gray.rows() as u32) != (c.image.width, c.image.height) {
        return Err(failed(format!(
            "is {}x{}, but the calibration is for {} frames",
            gray.cols(),
            gray.rows(),
            c.image
        )));
    }
    let corners = detect::find_corners(&gray, &c.board)?.ok_or_else(|| {
        failed(format!(
            "chessboard {}x{} not found",
            c.board.cols, c.board.rows
        ))
    })?;
    let points: Vec<Point2f> = undistort_points(c, &corners)?.to_vec();
    let (cols, rows) = (c.board.cols as usize, c.board.rows as usize);
    let at = |r: usize, col: usize| points[r * cols + col];
    let distance =
        |a: Point2f, b: Point2f| f64::from(((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt());
    let mut spacings = Vec::with_capacity(2 * cols * rows);
    for r in 0..rows {
        for col in 0..cols {
            if col + 1 < cols {
                spacings.push(distance(at(r, col), at(r, col + 1)));
            }
            if r + 1 < rows {
                spacings.push(distance(at(r, col), at(r + 1, col)));
            }
        }
    }
    let n = spacings.len() as f64;
    let square_px = spacings.iter().sum::<f64>() / n;
    let sd = (spacings
        .iter()
        .map(|s| (s - square_px).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    Ok(Scale {
        mm_per_px: c.board.square_mm / square_px,
        reference: reference.file_name().map_or_else(
            || reference.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        ),
        square_px,
        spread: sd / square_px,
    })
}
