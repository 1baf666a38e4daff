//! The per-model inspection mask (`station train vision --mask FILE`): areas of the part that are not inspected
//! (a label, a hole, the fixture) are left out of the anomaly map before its maximum becomes the part's score.
//!
//! The mask is an image of what the model sees (the ROI, or the whole frame without one) at any scale with the
//! same aspect ratio: white (>= 128) is inspected, black is not. It is resized to the model's feature grid; a cell
//! is inspected when at least half of its pixels are. The grid mask is a constant of the exported graph, so the
//! line, `station evaluate` and the review page's heat map all apply the same mask, and its sha256 is recorded
//! in the manifest.

use std::path::Path;

use opencv::core::{Mat, Size};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

/// A mask on the feature grid: 1 inspected, 0 not (row-major, `h x w`).
#[derive(Debug, Clone, PartialEq)]
pub struct GridMask {
    pub cells: Vec<f32>,
    pub sha256: String,
    /// Share of the grid's cells that are inspected.
    pub inspected: f64,
}

/// Reads `path` and resizes it to an `h x w` grid; `aspect` is the width / height of what the model sees.
pub fn read(path: &Path, h: usize, w: usize, aspect: f64) -> Result<GridMask, String> {
    let at = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("--mask {at}: {e}"))?;
    let raw = Mat::from_slice(&bytes).map_err(|e| format!("--mask {at}: {e}"))?;
    let img = imgcodecs::imdecode(&raw, imgcodecs::IMREAD_GRAYSCALE)
        .ok()
        .filter(|m| !m.empty())
        .ok_or_else(|| format!("--mask {at}: not an image OpenCV can read"))?;
    let (mw, mh) = (img.cols(), img.rows());
    let mask_aspect = f64::from(mw) / f64::from(mh);
    if (mask_aspect / aspect - 1.0).abs() > 0.02 {
        return Err(format!(
            "--mask {at}: {mw} x {mh} px (aspect {mask_aspect:.3}), but the model sees an image of aspect \
             {aspect:.3} (the ROI, or the training images): draw the mask on what the model sees"
        ));
    }
    let mut small = Mat::default();
    imgproc::resize(
        &img,
        &mut small,
        Size::new(w as i32, h as i32),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )
    .map_err(|e| format!("--mask {at}: {e}"))?;
    let mut cells = Vec::with_capacity(h * w);
    for y in 0..h as i32 {
        for x in 0..w as i32 {
            let v = *small
                .at_2d::<u8>(y, x)
                .map_err(|e| format!("--mask {at}: {e}"))?;
            cells.push(if v >= 128 { 1.0 } else { 0.0 });
        }
    }
    let inspected = cells.iter().sum::<f32>() as f64 / cells.len() as f64;
    if inspected == 0.0 {
        return Err(format!(
            "--mask {at}: no cell of the {w} x {h} feature grid is inspected (white = inspected)"
        ));
    }
    Ok(GridMask {
        cells,
        sha256: crate::model::sha256_hex(&bytes),
        inspected,
    })
}
