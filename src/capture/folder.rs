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
    max_pixels: u64,
}

impl FolderSource {
    pub fn open(root: &Path, looping: bool, max_pixels: u64) -> Result<Self, SourceError> {
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
            max_pixels,
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

/// Width and height from an image file's header (PNG, JPEG, BMP, PGM/PPM), read before decoding; `None` for
/// other formats (TIFF) or a header that cannot be read, which the decoder then judges.
pub fn header_size(bytes: &[u8]) -> Option<(u64, u64)> {
    let be32 = |b: &[u8]| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let be16 = |b: &[u8]| u64::from(u16::from_be_bytes([b[0], b[1]]));
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() >= 24 && &bytes[12..16] == b"IHDR" {
        return Some((be32(&bytes[16..20]), be32(&bytes[20..24])));
    }
    let dib = |b: &[u8]| u32::from_le_bytes([b[14], b[15], b[16], b[17]]);
    if bytes.starts_with(b"BM")
        && bytes.len() >= 26
        && matches!(dib(bytes), 40 | 52 | 56 | 108 | 124)
    {
        let le = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]).unsigned_abs();
        return Some((u64::from(le(&bytes[18..22])), u64::from(le(&bytes[22..26]))));
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // Walk the JPEG segments to the first start-of-frame marker.
        let mut i = 2;
        while i + 9 < bytes.len() {
            if bytes[i] != 0xFF {
                return None;
            }
            let marker = bytes[i + 1];
            let len = be16(&bytes[i + 2..i + 4]) as usize;
            let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
            if sof {
                return Some((be16(&bytes[i + 7..i + 9]), be16(&bytes[i + 5..i + 7])));
            }
            i += 2 + len;
        }
        return None;
    }
    if bytes.len() > 3 && bytes[0] == b'P' && matches!(bytes[1], b'2' | b'3' | b'5' | b'6') {
        // Netpbm: magic, then width and height as text (comments start with '#').
        let text = String::from_utf8_lossy(&bytes[2..bytes.len().min(256)]);
        let mut numbers = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(str::split_whitespace)
            .map(str::parse::<u64>);
        return Some((numbers.next()?.ok()?, numbers.next()?.ok()?));
    }
    None
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
        if bytes.is_empty() {
            return Err(FrameError::Decode {
                path: shown,
                detail: "the file is empty (0 bytes)".into(),
            });
        }
        if let Some((width, height)) = header_size(&bytes)
            && width * height > self.max_pixels
        {
            return Err(FrameError::TooLarge {
                path: shown,
                width,
                height,
                pixels: width * height,
                max_pixels: self.max_pixels,
            });
        }
        let decode_err = |e: opencv::Error| FrameError::Decode {
            path: shown.clone(),
            detail: e.message,
        };
        let buf = Mat::from_slice(&bytes).map_err(decode_err)?;
        let image = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR).map_err(decode_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, Vector};

    #[test]
    fn header_sizes_match_what_opencv_writes() {
        let image =
            Mat::new_rows_cols_with_default(30, 70, opencv::core::CV_8UC3, Scalar::all(9.0))
                .unwrap();
        for ext in [".png", ".jpg", ".bmp", ".ppm"] {
            let mut buf = Vector::<u8>::new();
            imgcodecs::imencode(ext, &image, &mut buf, &Vector::new()).unwrap();
            assert_eq!(header_size(buf.as_slice()), Some((70, 30)), "{ext}");
        }
        assert_eq!(header_size(b"not an image"), None);
        // A PNG signature without its IHDR chunk is left to the decoder.
        assert_eq!(
            header_size(b"\x89PNG\r\n\x1a\n this is not a picture"),
            None
        );
    }
}
