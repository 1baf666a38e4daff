//! Image sets for training and evaluation: a folder of good images, a folder of defect images (a sub-folder per
//! defect class, or the images themselves: class `defect`), optional masks with the defect images' relative
//! paths. Files are listed sorted, so a set always comes in the same order; its fingerprint is the sha256 of the
//! sorted list of relative paths and sizes. Images are read with OpenCV and turned into the model's input by the
//! station's own [`Preprocessor`], exactly as on the line.

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;
use sha2::{Digest, Sha256};

use crate::preprocess::Preprocessor;

const EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "pgm"];

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {detail}")]
    Folder { path: String, detail: String },
    #[error("{0}: no images (expected .png, .jpg, .bmp or .tif files)")]
    Empty(String),
    #[error("unreadable images (nothing was used): {0}")]
    Unreadable(String),
}

/// One image of a set, with its class (`good`, or the defect's sub-folder name).
#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    /// Path relative to the set's folder (for masks and reports).
    pub relative: PathBuf,
    pub class: String,
    pub bytes: u64,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(PathBuf, PathBuf, u64)>,
) -> Result<(), DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::Folder {
        path: dir.display().to_string(),
        detail: e.to_string(),
    })?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if is_image(&path) {
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((path, relative, bytes));
        }
    }
    Ok(())
}

/// The images under `dir` (recursively), sorted by relative path. `class` names them all; `None` takes each
/// image's first sub-folder as its class (`defect` for images directly in `dir`) and leaves `good/` out.
pub fn list(dir: &Path, class: Option<&str>) -> Result<Vec<Item>, DatasetError> {
    let mut found = Vec::new();
    walk(dir, dir, &mut found)?;
    if class.is_none() {
        // A defect folder laid out like a full data set (anomalib's, `station generate-parts`, the dataset
        // export) keeps its good images in `good/`: they are not defects.
        found.retain(|(_, relative, _)| !relative.starts_with("good"));
    }
    if found.is_empty() {
        return Err(DatasetError::Empty(dir.display().to_string()));
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(found
        .into_iter()
        .map(|(path, relative, bytes)| {
            let class = match class {
                Some(c) => c.to_string(),
                None if relative.components().count() > 1 => relative
                    .components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_else(|| "defect".into()),
                None => "defect".into(),
            };
            Item {
                path,
                relative,
                class,
                bytes,
            }
        })
        .collect())
}

/// sha256 of the sorted list of relative paths and sizes.
pub fn fingerprint(items: &[Item]) -> String {
    let mut hash = Sha256::new();
    for item in items {
        hash.update(format!("{}\t{}\n", item.relative.display(), item.bytes));
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an image as the folder source does (8-bit BGR); a missing, corrupt or empty file is an error naming it.
pub fn read_image(path: &Path) -> Result<Mat, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let image = imgcodecs::imdecode(&Vector::from_slice(&bytes), imgcodecs::IMREAD_COLOR)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if image.empty() {
        return Err(format!(
            "{}: not a readable image (corrupt or unsupported format)",
            path.display()
        ));
    }
    Ok(image)
}

/// (height, width) of an image in pixels.
pub fn size(path: &Path) -> Result<(usize, usize), DatasetError> {
    let image = read_image(path).map_err(DatasetError::Unreadable)?;
    Ok((image.rows() as usize, image.cols() as usize))
}

/// The model input tensor of every item; every unreadable file is reported at once.
pub fn tensors(
    items: &[Item],
    pre: &Preprocessor,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Vec<f32>>, DatasetError> {
    let mut out = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for item in items {
        let mut tensor = Vec::new();
        match read_image(&item.path).and_then(|img| {
            pre.run(&img, &mut tensor)
                .map_err(|e| format!("{}: {e}", item.path.display()))
        }) {
            Ok(()) => out.push(tensor),
            Err(e) => bad.push(e),
        }
        progress.inc(1);
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(DatasetError::Unreadable(bad.join("; ")))
    }
}
