//! The calibration photos: the folder's image files read (one camera, one size), and in each the chessboard's
//! inner corners found ([`find_corners`]: OpenCV's `findChessboardCorners`, refined by `cornerSubPix`). A photo
//! in which the board is not found is reported and left out; an unreadable file or a second size is an error.

use std::path::{Path, PathBuf};

use opencv::core::{self, Mat, Point2f, Size, TermCriteria, Vector};
use opencv::prelude::*;
use opencv::{calib3d, imgcodecs, imgproc};

use super::{Board, CalibrationError, Dropped, ImageSize};

/// The file extensions read as images (any case).
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// One photo in which the board was found.
#[derive(Debug, Clone)]
pub struct BoardView {
    /// The file name, as reported and written to the calibration file.
    pub image: String,
    pub sha256: String,
    /// The inner corners, row by row, to sub-pixel precision.
    pub corners: Vector<Point2f>,
}

/// The photos of `dir` with their corners, the photos without a board, and the common image size.
pub struct Detected {
    pub views: Vec<BoardView>,
    pub dropped: Vec<Dropped>,
    pub size: ImageSize,
    pub images: usize,
}

/// The image files of `dir`, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, CalibrationError> {
    let folder = |detail: String| CalibrationError::Folder {
        dir: dir.display().to_string(),
        detail,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| folder(format!("cannot be read: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| folder(format!("cannot be read: {e}")))?
            .path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(folder(format!(
            "no image files in it (expected {})",
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    files.sort();
    Ok(files)
}

/// Reads an image file as gray, with the sha256 of its bytes.
pub fn read_gray(path: &Path) -> Result<(Mat, String), CalibrationError> {
    let bytes = std::fs::read(path).map_err(|source| CalibrationError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let image = imgcodecs::imdecode(
        &Vector::<u8>::from_slice(&bytes),
        imgcodecs::IMREAD_GRAYSCALE,
    )
    .ok()
    .filter(|m| !m.empty())
    .ok_or_else(|| CalibrationError::Unreadable {
        path: path.display().to_string(),
    })?;
    Ok((image, crate::model::sha256_hex(&bytes)))
}

/// The board's inner corners in a gray image, refined to sub-pixel precision; `None` when the whole board is
/// not found.
pub fn find_corners(gray: &Mat, board: &Board) -> Result<Option<Vector<Point2f>>, opencv::Error> {
    let mut corners = Vector::<Point2f>::new();
    let pattern = Size::new(board.cols as i32, board.rows as i32);
    let flags = calib3d::CALIB_CB_ADAPTIVE_THRESH | calib3d::CALIB_CB_NORMALIZE_IMAGE;
    if !calib3d::find_chessboard_corners(gray, pattern, &mut corners, flags)? {
        return Ok(None);
    }
    let criteria = TermCriteria::new(
        core::TermCriteria_Type::COUNT as i32 + core::TermCriteria_Type::EPS as i32,
        30,
        0.001,
    )?;
    imgproc::corner_sub_pix(
        gray,
        &mut corners,
        Size::new(11, 11),
        Size::new(-1, -1),
        criteria,
    )?;
    Ok(Some(corners))
}

fn size_of(image: &Mat) -> ImageSize {
    ImageSize {
        width: image.cols() as u32,
        height: image.rows() as u32,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Reads every image of `dir` and finds the board in each.
pub fn detect_views(dir: &Path, board: &Board) -> Result<Detected, CalibrationError> {
    let files = image_files(dir)?;
    let mut first: Option<(String, ImageSize)> = None;
    let (mut views, mut dropped) = (Vec::new(), Vec::new());
    for path in &files {
        let (gray, sha256) = read_gray(path)?;
        let size = size_of(&gray);
        match &first {
            None => first = Some((path.display().to_string(), size)),
            Some((first_path, first_size)) if *first_size != size => {
                return Err(CalibrationError::MixedSizes {
                    first: first_path.clone(),
                    first_size: first_size.to_string(),
                    other: path.display().to_string(),
                    other_size: size.to_string(),
                });
            }
            Some(_) => {}
        }
        let image = file_name(path);
        match find_corners(&gray, board)? {
            Some(corners) => views.push(BoardView {
                image,
                sha256,
                corners,
            }),
            None => dropped.push(Dropped {
                image,
                reason: format!("chessboard {}x{} not found", board.cols, board.rows),
            }),
        }
    }
    let size = first.map(|(_, s)| s).unwrap_or(ImageSize {
        width: 0,
        height: 0,
    });
    Ok(Detected {
        views,
        dropped,
        size,
        images: files.len(),
    })
}
