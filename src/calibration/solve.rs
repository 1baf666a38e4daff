//! The fit: intrinsics and distortion from the views' corners (OpenCV `calibrateCamera`, 5 coefficients
//! `k1, k2, p1, p2, k3`), each view's RMS reprojection error, and outlier views dropped.
//!
//! Outlier rule ([`outlier`]): after a fit, the worst view is an outlier when its RMS is over
//! [`OUTLIER_FACTOR`] x the median view's RMS and over [`OUTLIER_FLOOR_PX`] (a view at 0.3 px is never an
//! outlier, however good the others are). It is dropped, with its figures as the reason, and the camera fitted
//! again without it, one view at a time (one bad view inflates every view's error, so the next worst is judged
//! afresh), until no view is an outlier. Fewer than [`MIN_VIEWS`] views left is an error.

use opencv::calib3d;
use opencv::core::{Mat, Point2f, Point3f, Size, Vector};
use opencv::prelude::*;

use super::detect::{BoardView, Detected};
use super::{Board, Calibration, CalibrationError, Dropped, ImageSize, ViewError};

/// The fewest views a calibration is made from (9 unknowns; each view adds 6 of its own).
pub const MIN_VIEWS: usize = 5;
/// A view whose RMS is over this many times the median view's is an outlier...
pub const OUTLIER_FACTOR: f64 = 3.0;
/// ...when it is also over this many pixels.
pub const OUTLIER_FLOOR_PX: f64 = 0.5;

/// One fit of the camera to a set of views.
pub struct Fit {
    pub camera_matrix: Mat,
    pub distortion: Mat,
    /// Overall RMS reprojection error (OpenCV's figure: over all corners of all views).
    pub rms_px: f64,
    /// Each view's RMS reprojection error, in the views' order.
    pub per_view_px: Vec<f64>,
}

/// The board's corners on its own plane (z = 0), row by row, in mm.
pub fn board_points(board: &Board) -> Vector<Point3f> {
    (0..board.rows)
        .flat_map(|r| (0..board.cols).map(move |c| (r, c)))
        .map(|(r, c)| {
            Point3f::new(
                (f64::from(c) * board.square_mm) as f32,
                (f64::from(r) * board.square_mm) as f32,
                0.0,
            )
        })
        .collect()
}

/// Fits the camera to `views` of `board` in frames of `size`.
pub fn fit(views: &[BoardView], board: &Board, size: ImageSize) -> Result<Fit, opencv::Error> {
    let object = board_points(board);
    let objects: Vector<Vector<Point3f>> = views.iter().map(|_| object.clone()).collect();
    let images: Vector<Vector<Point2f>> = views.iter().map(|v| v.corners.clone()).collect();
    let (mut camera_matrix, mut distortion) = (Mat::default(), Mat::default());
    let (mut rvecs, mut tvecs) = (Vector::<Mat>::new(), Vector::<Mat>::new());
    let rms_px = calib3d::calibrate_camera_def(
        &objects,
        &images,
        Size::new(size.width as i32, size.height as i32),
        &mut camera_matrix,
        &mut distortion,
        &mut rvecs,
        &mut tvecs,
    )?;
    let mut per_view_px = Vec::with_capacity(views.len());
    for (i, view) in views.iter().enumerate() {
        let mut projected = Vector::<Point2f>::new();
        calib3d::project_points_def(
            &object,
            &rvecs.get(i)?,
            &tvecs.get(i)?,
            &camera_matrix,
            &distortion,
            &mut projected,
        )?;
        per_view_px.push(rms_between(&view.corners, &projected));
    }
    Ok(Fit {
        camera_matrix,
        distortion,
        rms_px,
        per_view_px,
    })
}

/// RMS distance between two equally long point lists, in pixels.
pub fn rms_between(a: &Vector<Point2f>, b: &Vector<Point2f>) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b.iter())
        .map(|(p, q)| f64::from((p.x - q.x).powi(2) + (p.y - q.y).powi(2)))
        .sum();
    (sum / a.len().max(1) as f64).sqrt()
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The worst view, with why it is an outlier, when it is one (see the module doc).
pub fn outlier(per_view_px: &[f64]) -> Option<(usize, String)> {
    let median = median(per_view_px);
    let (worst, rms) = per_view_px
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (rms > OUTLIER_FACTOR * median && rms > OUTLIER_FLOOR_PX).then(|| {
        (
            worst,
            format!(
                "outlier: reprojection RMS {rms:.3} px, over {OUTLIER_FACTOR} x the median view's {median:.3} px"
            ),
        )
    })
}

/// Calibrates `camera` from the detected views: fit, drop outliers one by one, fit again.
pub fn calibrate(
    camera: &str,
    detected: Detected,
    board: &Board,
) -> Result<Calibration, CalibrationError> {
    let Detected {
        mut views,
        mut dropped,
        size,
        images,
    } = detected;
    let mut first_fit_rms_px = None;
    let fit = loop {
        if views.len() < MIN_VIEWS {
            return Err(CalibrationError::TooFewViews {
                usable: views.len(),
                images,
                needed: MIN_VIEWS,
                dropped,
            });
        }
        let fit = fit(&views, board, size)?;
        first_fit_rms_px.get_or_insert(fit.rms_px);
        match outlier(&fit.per_view_px) {
            Some((i, reason)) => dropped.push(Dropped {
                image: views.remove(i).image,
                reason,
            }),
            None => break fit,
        }
    };
    let mut camera_matrix = [[0.0; 3]; 3];
    for (r, row) in camera_matrix.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = *fit.camera_matrix.at_2d::<f64>(r as i32, c as i32)?;
        }
    }
    let distortion = fit.distortion.reshape(1, 1)?.data_typed::<f64>()?.to_vec();
    Ok(Calibration {
        id: String::new(),
        camera: camera.to_string(),
        rms_px: fit.rms_px,
        first_fit_rms_px: first_fit_rms_px.unwrap_or(fit.rms_px),
        camera_matrix,
        distortion,
        image: size,
        board: *board,
        scale: None,
        views: views
            .into_iter()
            .zip(fit.per_view_px)
            .map(|(v, rms_px)| ViewError {
                image: v.image,
                sha256: v.sha256,
                rms_px,
            })
            .collect(),
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_view_is_an_outlier_only_well_over_the_median_and_the_floor() {
        // 1.5 px against a median of 0.4: dropped, the reason gives both figures.
        let (i, reason) = outlier(&[0.4, 0.35, 1.5, 0.42, 0.38]).unwrap();
        assert_eq!(i, 2);
        assert!(
            reason.contains("1.500 px") && reason.contains("0.400 px"),
            "{reason}"
        );
        // 1.1 px is under 3 x 0.4: kept.
        assert!(outlier(&[0.4, 0.35, 1.1, 0.42, 0.38]).is_none());
        // 0.45 px is 4.5 x the median but under the floor: kept.
        assert!(outlier(&[0.1, 0.1, 0.45, 0.1, 0.1]).is_none());
        assert!(outlier(&[]).is_none());
    }

    #[test]
    fn board_points_run_row_by_row_in_mm() {
        let board = Board::parse("3x2", 25.0).unwrap();
        let points: Vec<_> = board_points(&board).iter().map(|p| (p.x, p.y)).collect();
        assert_eq!(
            points,
            [
                (0.0, 0.0),
                (25.0, 0.0),
                (50.0, 0.0),
                (0.0, 25.0),
                (25.0, 25.0),
                (50.0, 25.0)
            ]
        );
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
