//! `station calibrate`: a camera's intrinsics and distortion from a folder of chessboard photos, written to
//! `<out>/<camera>/calibration.toml` (default `calibration/`). Prints each view's RMS reprojection error, the
//! views left out and why, the overall RMS, the camera matrix and the file's id.

use std::path::PathBuf;

use anyhow::Context;

use crate::calibration::{self, Board, file};

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// The camera's name: the folder under --out (letters, digits, '-', '_', '.')
    #[arg(long)]
    camera: String,
    /// Folder of chessboard photos from this camera (PNG, JPEG, BMP, TIFF), all of one size
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// The board's inner corners, COLSxROWS
    #[arg(long, default_value = "9x6")]
    board: String,
    /// Side of one square, in mm
    #[arg(long)]
    square_mm: f64,
    /// A photo of the board lying on the working plane: measures the px -> mm scale there
    #[arg(long, value_name = "FILE")]
    reference: Option<PathBuf>,
    /// Where the camera folders live
    #[arg(long, value_name = "DIR", default_value = "calibration")]
    out: PathBuf,
}

/// A command line `station calibrate` cannot use (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CalibrateUsage(String);

pub fn calibrate(args: &CalibrateArgs) -> anyhow::Result<()> {
    if !file::valid_camera_name(&args.camera) {
        return Err(CalibrateUsage(format!(
            "--camera {:?}: expected letters, digits, '-', '_' or '.' (it names a folder)",
            args.camera
        ))
        .into());
    }
    let board = Board::parse(&args.board, args.square_mm)
        .map_err(|e| CalibrateUsage(format!("--board/--square-mm: {e}")))?;
    let detected = calibration::detect_views(&args.images, &board)?;
    for d in &detected.dropped {
        println!("skipped  {}: {}", d.image, d.reason);
    }
    let mut result = calibration::calibrate(&args.camera, detected, &board)?;
    if let Some(reference) = &args.reference {
        result.scale = Some(calibration::undistort::measure_scale(&result, reference)?);
    }
    let path = calibration::write(&args.out, &mut result)
        .with_context(|| format!("writing the calibration of {}", args.camera))?;
    for v in &result.views {
        println!("view     {}  rms {:.3} px", v.image, v.rms_px);
    }
    for d in result
        .dropped
        .iter()
        .filter(|d| d.reason.starts_with("outlier"))
    {
        println!("dropped  {}: {}", d.image, d.reason);
    }
    let c = &result;
    println!(
        "camera   fx {:.2}  fy {:.2}  cx {:.2}  cy {:.2}  ({} frames)",
        c.fx(),
        c.fy(),
        c.cx(),
        c.cy(),
        c.image
    );
    let d: Vec<String> = c.distortion.iter().map(|v| format!("{v:.5}")).collect();
    println!("distort  {}", d.join(" "));
    if let Some(s) = &c.scale {
        println!(
            "scale    {:.5} mm/px at the working plane ({}: square {:.2} px, spread {:.1}%)",
            s.mm_per_px,
            s.reference,
            s.square_px,
            s.spread * 100.0
        );
    }
    println!(
        "rms      {:.3} px over {} views ({} left out; first fit over every board found: {:.3} px)",
        c.rms_px,
        c.views.len(),
        c.dropped.len(),
        c.first_fit_rms_px
    );
    println!("wrote    {} (id {})", path.display(), c.id);
    Ok(())
}
