//! Camera calibration (OpenCV `calib3d`): a camera's intrinsics and lens distortion from photos of a chessboard,
//! and what the line does with them.
//!
//! - [`detect`]: the image folder read, each photo's chessboard corners found to sub-pixel precision;
//! - [`solve`]: intrinsics and distortion fitted, the reprojection error per view and overall, outlier views
//!   dropped and the camera fitted again;
//! - [`file`]: `calibration/<camera>/calibration.toml`, whose id is the sha256 of its canonical content;
//! - [`undistort`]: the remap tables computed once from a calibration, applied per frame by preprocess, and the
//!   px -> mm scale measured on a reference view of the board.
//!
//! `station calibrate` (src/cli/calibrate.rs) runs them in that order; `[preprocess] calibration` loads a file
//! for the line. Everything here is a plain function of its inputs: no thread, no state.

pub mod detect;
pub mod file;
pub mod solve;
pub mod undistort;

use serde::{Deserialize, Serialize};

pub use detect::{BoardView, detect_views};
pub use file::{load, write};
pub use solve::{MIN_VIEWS, calibrate};
pub use undistort::Undistortion;

/// Why a calibration could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("image folder {dir}: {detail}")]
    Folder { dir: String, detail: String },
    #[error("cannot read image {path}: not a readable image (corrupt or unsupported)")]
    Unreadable { path: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "mixed image sizes: {first} is {first_size}, but {other} is {other_size}; one camera, one size"
    )]
    MixedSizes {
        first: String,
        first_size: String,
        other: String,
        other_size: String,
    },
    #[error(
        "too few usable views: {usable} of {images} images ({needed} needed); {}",
        .dropped.iter().map(|d| format!("{}: {}", d.image, d.reason)).collect::<Vec<_>>().join("; ")
    )]
    TooFewViews {
        usable: usize,
        images: usize,
        needed: usize,
        dropped: Vec<Dropped>,
    },
    #[error("reference view {path}: {detail}")]
    Reference { path: String, detail: String },
    #[error("calibration file {path}: {detail}")]
    File { path: String, detail: String },
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// The chessboard: inner corners per row and per column, and the side of one square.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Inner corners along a row (the `9` of `9x6`).
    pub cols: u32,
    /// Inner corners along a column (the `6` of `9x6`).
    pub rows: u32,
    pub square_mm: f64,
}

impl Board {
    /// Parses `COLSxROWS` (inner corners, e.g. `9x6`).
    pub fn parse(text: &str, square_mm: f64) -> Result<Board, String> {
        let parsed = text.split_once(['x', 'X']).and_then(|(c, r)| {
            Some((c.trim().parse::<u32>().ok()?, r.trim().parse::<u32>().ok()?))
        });
        match parsed {
            Some((cols, rows)) if cols >= 2 && rows >= 2 && cols != rows => {}
            Some((cols, rows)) if cols >= 2 && rows >= 2 => {
                return Err(format!(
                    "board {cols}x{rows}: a square board's orientation is ambiguous; use one with a different \
                     number of inner corners per row and per column"
                ));
            }
            _ => {
                return Err(format!(
                    "expected the board's inner corners as COLSxROWS (e.g. 9x6, each at least 2), got {text:?}"
                ));
            }
        }
        if !(square_mm.is_finite() && square_mm > 0.0) {
            return Err(format!(
                "expected a positive square size in mm, got {square_mm}"
            ));
        }
        let (cols, rows) = parsed.unwrap_or_default();
        Ok(Board {
            cols,
            rows,
            square_mm,
        })
    }

    pub fn corners(&self) -> usize {
        (self.cols * self.rows) as usize
    }
}

/// A view left out of the fit, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropped {
    pub image: String,
    pub reason: String,
}

/// A view the fit used: its file, the file's sha256 and its RMS reprojection error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewError {
    pub image: String,
    pub sha256: String,
    pub rms_px: f64,
}

/// Frame size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for ImageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The px -> mm scale at the working plane, measured on a reference view of the board lying there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub mm_per_px: f64,
    /// The reference view it was measured on.
    pub reference: String,
    /// The board's square side in the undistorted reference view: mean and relative spread of the corner
    /// spacings (a spread of more than a few % says the board was not flat on the plane or not square to it).
    pub square_px: f64,
    pub spread: f64,
}

/// One camera's calibration, as written to and read from `calibration.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// sha256 of the canonical content (everything else, serialised); set by [`file::write`] and [`file::load`].
    #[serde(skip)]
    pub id: String,
    pub camera: String,
    /// Overall RMS reprojection error of the final fit, in pixels.
    pub rms_px: f64,
    /// The first fit's, over every view the board was found in, before outliers were dropped.
    pub first_fit_rms_px: f64,
    /// The camera matrix, rows `[fx, 0, cx]`, `[0, fy, cy]`, `[0, 0, 1]`.
    pub camera_matrix: [[f64; 3]; 3],
    /// OpenCV's distortion coefficients `k1, k2, p1, p2, k3`.
    pub distortion: Vec<f64>,
    pub image: ImageSize,
    pub board: Board,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// The views the final fit used.
    pub views: Vec<ViewError>,
    /// Images left out: no board found, or an outlier.
    #[serde(default)]
    pub dropped: Vec<Dropped>,
}

impl Calibration {
    pub fn fx(&self) -> f64 {
        self.camera_matrix[0][0]
    }
    pub fn fy(&self) -> f64 {
        self.camera_matrix[1][1]
    }
    pub fn cx(&self) -> f64 {
        self.camera_matrix[0][2]
    }
    pub fn cy(&self) -> f64 {
        self.camera_matrix[1][2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_is_parsed_and_bad_ones_are_explained() {
        assert_eq!(
            Board::parse("9x6", 25.0),
            Ok(Board {
                cols: 9,
                rows: 6,
                square_mm: 25.0
            })
        );
        for (bad, says) in [
            ("9*6", "COLSxROWS"),
            ("1x6", "COLSxROWS"),
            ("7x7", "ambiguous"),
            ("x6", "COLSxROWS"),
        ] {
            let err = Board::parse(bad, 25.0).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(
            Board::parse("9x6", 0.0)
                .unwrap_err()
                .contains("square size")
        );
    }
}
