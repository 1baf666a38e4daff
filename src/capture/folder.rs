//! Image-folder replay: every image file under a folder (recursively), in a stable order, once or looping.
//!
//! Files are ordered by file name, then by path, so `good/part-0001.png` and `scratch/part-0002.png` replay in
//! part order. A file's truth label is its parent folder's name when it lies in a sub-folder (`good`, `scratch`,
//! ...: the layout anomalib and our trainer use), unknown for files at the top level. A file that cannot be
//! decoded is a frame fault for its part; the replay goes on with the next file.

use std::path::{Path, PathBuf};

use opencv::core::Mat;
use opencv::imgcodecs;
use opencv::prelude::*;

use super::{FrameError, FrameSource, SourceError};
use crate::part::Frame;

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "pgm", "ppm"];

pub struct FolderSource {
    root: PathBuf,
    files: Vec<PathBuf>,
    looping: bool,
    next: usize,
}

impl FolderSource {
    pub fn open(root: &Path, looping: bool) -> Result<Self, SourceError> {
        let mut files = Vec::new();
        collect_images(root, &mut files).map_err(|e| SourceError::Folder {
            path: root.display().to_string(),
            detail: e.to_string(),
        })?;
        if files.is_empty() {
            return Err(SourceError::Folder {
                path: root.display().to_string(),
                detail: format!("no image files ({}) found", IMAGE_EXTENSIONS.join(", ")),
            });
        }
        files.sort_by(|a, b| (a.file_name(), a).cmp(&(b.file_name(), b)));
        Ok(Self {
            root: root.to_path_buf(),
            files,
            looping,
            next: 0,
        })
    }

    fn truth_of(&self, path: &Path) -> Option<String> {
        let parent = path.parent()?;
        if parent == self.root {
            return None;
        }
        parent.file_name().map(|n| n.to_string_lossy().into_owned())
    }
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_images(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

impl FrameSource for FolderSource {
    fn grab(&mut self) -> Result<Frame, FrameError> {
        if self.next >= self.files.len() {
            if !self.looping {
                return Err(FrameError::Exhausted(format!(
                    "all {} files replayed",
                    self.files.len()
                )));
            }
            self.next = 0;
        }
        let path = self.files[self.next].clone();
        self.next += 1;
        let shown = path.display().to_string();
        // Read the bytes ourselves so an I/O error and a decode error are told apart.
        let bytes = std::fs::read(&path).map_err(|source| FrameError::Io {
            path: shown.clone(),
            source,
        })?;
        let buf = Mat::from_slice(&bytes)?;
        let image = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR)?;
        if image.empty() {
            return Err(FrameError::Corrupt { path: shown });
        }
        Ok(Frame {
            image,
            truth: self.truth_of(&path),
            origin: shown,
            roi: None,
            anomaly_map: None,
        })
    }

    fn part_count(&self) -> Option<u64> {
        (!self.looping).then_some(self.files.len() as u64)
    }

    fn describe(&self) -> String {
        format!(
            "image folder {} ({} files{})",
            self.root.display(),
            self.files.len(),
            if self.looping { ", looping" } else { "" }
        )
    }
}
