//! Image-folder replay: every image file under a folder (recursively), in a stable order, once or looping.
//!
//! Files are ordered by file name, then by path, so `good/part-0001.png` and `scratch/part-0002.png` replay in
//! part order. A file's truth label is its parent folder's name when it lies in a sub-folder (`good`, `scratch`,
//! ...: the layout anomalib and our trainer use), unknown for files at the top level. A file that cannot be
//! decoded is a frame fault for its part; the replay goes on with the next file.
//!
//! Decoding is the costly part of a replay (a 1280x1024 PNG takes milliseconds), so it runs on `decode_threads`
//! threads of its own, each decoding a few files ahead: file `k` goes to thread `k % n` and comes back from it, so
//! the part order never changes. Frames are decoded straight to gray when the model takes gray (the codec then
//! skips the colour expansion, and preprocessing has no conversion to do).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use opencv::core::Mat;
use opencv::imgcodecs;
use opencv::prelude::*;

use super::{FrameError, FrameSource, SourceError};
use crate::part::Frame;

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "pgm", "ppm"];

/// How files are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decode {
    /// Straight to one channel (the model takes gray).
    pub gray: bool,
    /// Decoding threads (1: on the capture thread, no read-ahead).
    pub threads: usize,
    pub max_pixels: u64,
}

/// Files each decoding thread decodes ahead of the part that needs them.
const AHEAD_PER_THREAD: usize = 2;

pub struct FolderSource {
    root: PathBuf,
    files: Vec<PathBuf>,
    looping: bool,
    /// The next part's position in the replay (file `next % files.len()`).
    next: usize,
    decode: Decode,
    /// Read-ahead: the decoding threads, and how many positions were handed out.
    pool: Vec<Decoder>,
    submitted: usize,
}

/// One decoding thread: files in, frames out, in the same order.
struct Decoder {
    files: SyncSender<PathBuf>,
    frames: Receiver<Result<Frame, FrameError>>,
}

impl FolderSource {
    pub fn open(root: &Path, looping: bool, decode: Decode) -> Result<Self, SourceError> {
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
        let mut pool = Vec::new();
        if decode.threads > 1 {
            for i in 0..decode.threads {
                let (job_tx, job_rx) = sync_channel::<PathBuf>(AHEAD_PER_THREAD + 1);
                let (frame_tx, frame_rx) = sync_channel(AHEAD_PER_THREAD + 1);
                let thread_root = root.to_path_buf();
                std::thread::Builder::new()
                    .name(format!("decode-{i}"))
                    .spawn(move || {
                        while let Ok(path) = job_rx.recv() {
                            if frame_tx
                                .send(read_frame(&thread_root, &path, decode))
                                .is_err()
                            {
                                break;
                            }
                        }
                    })
                    .map_err(|e| SourceError::Folder {
                        path: root.display().to_string(),
                        detail: format!("cannot start a decoding thread: {e}"),
                    })?;
                pool.push(Decoder {
                    files: job_tx,
                    frames: frame_rx,
                });
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            files,
            looping,
            next: 0,
            decode,
            pool,
            submitted: 0,
        })
    }

    /// The file at replay position `k`, or None past the end of a replay that does not loop.
    fn file_at(&self, k: usize) -> Option<&PathBuf> {
        if !self.looping && k >= self.files.len() {
            return None;
        }
        self.files.get(k % self.files.len())
    }

    /// Hands the decoding threads the files up to a few parts ahead of `next`.
    fn read_ahead(&mut self) {
        let until = self.next + self.pool.len() * AHEAD_PER_THREAD;
        while self.submitted < until {
            let Some(path) = self.file_at(self.submitted).cloned() else {
                break;
            };
            let worker = self.submitted % self.pool.len();
            if self.pool[worker].files.send(path).is_err() {
                break;
            }
            self.submitted += 1;
        }
    }
}

fn truth_of(root: &Path, path: &Path) -> Option<String> {
    let parent = path.parent()?;
    if parent == root {
        return None;
    }
    parent.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The size its header gives of the folder's first image in replay order (`None`: unknown until decoded).
pub fn first_image_size(root: &Path) -> Option<(u64, u64)> {
    let mut files = Vec::new();
    collect_images(root, &mut files).ok()?;
    let first = files
        .iter()
        .min_by(|a, b| (a.file_name(), a).cmp(&(b.file_name(), b)))?;
    header_size(&std::fs::read(first).ok()?)
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

/// Reads and decodes one file into a frame (on the capture thread or a decoding thread).
fn read_frame(root: &Path, path: &Path, decode: Decode) -> Result<Frame, FrameError> {
    let shown = path.display().to_string();
    // Read the bytes ourselves so an I/O error and a decode error are told apart.
    let bytes = std::fs::read(path).map_err(|source| FrameError::Io {
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
        && width * height > decode.max_pixels
    {
        return Err(FrameError::TooLarge {
            path: shown,
            width,
            height,
            pixels: width * height,
            max_pixels: decode.max_pixels,
        });
    }
    let decode_err = |e: opencv::Error| FrameError::Decode {
        path: shown.clone(),
        detail: e.message,
    };
    let buf = Mat::from_slice(&bytes).map_err(decode_err)?;
    let image = if decode.gray {
        gray(&buf).map_err(decode_err)?
    } else {
        imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR).map_err(decode_err)?
    };
    if image.empty() {
        return Err(FrameError::Corrupt { path: shown });
    }
    Ok(Frame {
        image,
        truth: truth_of(root, path),
        origin: shown,
        roi: None,
        anomaly_map: None,
        calibration: None,
    })
}

impl FrameSource for FolderSource {
    fn grab(&mut self) -> Result<Frame, FrameError> {
        if self.file_at(self.next).is_none() {
            return Err(FrameError::Exhausted(format!(
                "all {} files replayed",
                self.files.len()
            )));
        }
        if self.pool.is_empty() {
            let path = self.files[self.next % self.files.len()].clone();
            self.next += 1;
            return read_frame(&self.root, &path, self.decode);
        }
        self.read_ahead();
        let worker = self.next % self.pool.len();
        self.next += 1;
        let frame = self.pool[worker]
            .frames
            .recv()
            .unwrap_or_else(|_| Err(FrameError::Exhausted("a decoding thread stopped".into())));
        self.read_ahead();
        frame
    }

    fn part_count(&self) -> Option<u64> {
        (!self.looping).then_some(self.files.len() as u64)
    }

    fn describe(&self) -> String {
        format!(
            "image folder {} ({} files{}; decoded {} on {} thread{})",
            self.root.display(),
            self.files.len(),
            if self.looping { ", looping" } else { "" },
            if self.decode.gray {
                "to gray"
            } else {
                "in colour"
            },
            self.decode.threads,
            if self.decode.threads == 1 { "" } else { "s" }
        )
    }
}

/// A gray frame equal to what the colour path gives after the preprocessor's `cvtColor(BGR2GRAY)`: a file that
/// is gray already is taken as it is (the fast case: a mono camera's frames); a colour file is converted with the
/// same `cvtColor` (libpng's and libjpeg's own gray conversions round differently and moved scores by up to 2.6%
/// of the threshold); anything else (16-bit, palette) goes through the colour decode first.
fn gray(buf: &impl opencv::core::ToInputArray) -> opencv::Result<Mat> {
    use opencv::core::CV_8U;
    let raw = imgcodecs::imdecode(buf, imgcodecs::IMREAD_UNCHANGED)?;
    let code = match (raw.depth(), raw.channels()) {
        (CV_8U, 1) => return Ok(raw),
        (CV_8U, 3) => opencv::imgproc::COLOR_BGR2GRAY,
        (CV_8U, 4) => opencv::imgproc::COLOR_BGRA2GRAY,
        _ => {
            let color = imgcodecs::imdecode(buf, imgcodecs::IMREAD_COLOR)?;
            let mut out = Mat::default();
            if !color.empty() {
                opencv::imgproc::cvt_color(&color, &mut out, opencv::imgproc::COLOR_BGR2GRAY, 0)?;
            }
            return Ok(out);
        }
    };
    let mut out = Mat::default();
    if !raw.empty() {
        opencv::imgproc::cvt_color(&raw, &mut out, code, 0)?;
    }
    Ok(out)
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

    /// What a replay delivers: (file name, first pixel, channels) or the error, for `parts` grabs.
    fn replay(dir: &Path, decode: Decode, parts: usize) -> Vec<Result<(String, u8, i32), String>> {
        let mut source = FolderSource::open(dir, true, decode).unwrap();
        (0..parts)
            .map(|_| {
                source
                    .grab()
                    .map(|f| {
                        let name = Path::new(&f.origin).file_name().unwrap();
                        let first = f.image.data_bytes().unwrap()[0];
                        (
                            name.to_string_lossy().into_owned(),
                            first,
                            f.image.channels(),
                        )
                    })
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn decoding_threads_keep_the_part_order_and_gray_models_get_one_channel() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..7u8 {
            let path = dir.path().join(format!("f{i}.png"));
            if i == 3 {
                std::fs::write(&path, b"\x89PNG\r\n\x1a\n not a picture").unwrap();
                continue;
            }
            let value = Scalar::new(f64::from(i) * 10.0, 0.0, 0.0, 0.0);
            let image =
                Mat::new_rows_cols_with_default(40, 60, opencv::core::CV_8UC3, value).unwrap();
            assert!(imgcodecs::imwrite(path.to_str().unwrap(), &image, &Vector::new()).unwrap());
        }
        let decode = |gray, threads| Decode {
            gray,
            threads,
            max_pixels: 1_000_000,
        };
        let inline = replay(dir.path(), decode(true, 1), 15);
        let pooled = replay(dir.path(), decode(true, 3), 15);
        assert_eq!(
            pooled, inline,
            "three decoding threads deliver what one does, in order"
        );
        for (k, frame) in pooled.iter().enumerate() {
            let i = k % 7;
            match frame {
                Ok((name, first, channels)) => {
                    assert_eq!(name, &format!("f{i}.png"));
                    // Blue 10*i in BGR is gray 0.114 * 10 * i (the codec's fixed-point weights: +-1).
                    let expected = 0.114 * 10.0 * i as f64;
                    assert!(
                        (f64::from(*first) - expected).abs() <= 1.0,
                        "{name}: {first}"
                    );
                    assert_eq!(*channels, 1);
                }
                Err(e) => {
                    assert_eq!(i, 3, "only the corrupt file fails: {e}");
                    assert!(e.contains("f3.png"), "{e}");
                }
            }
        }
        let colour = replay(dir.path(), decode(false, 2), 2);
        assert_eq!(colour[1], Ok(("f1.png".to_string(), 10, 3)));
    }

    #[test]
    fn a_colour_file_decoded_to_gray_equals_the_colour_path_converted_and_a_gray_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut colour =
            Mat::new_rows_cols_with_default(32, 48, opencv::core::CV_8UC3, Scalar::all(0.0))
                .unwrap();
        let mut rng = crate::rng::Rng::new(7);
        for b in colour.data_bytes_mut().unwrap() {
            *b = (rng.next_u64() % 256) as u8;
        }
        for ext in ["png", "jpg"] {
            let path = dir.path().join(format!("c.{ext}"));
            assert!(imgcodecs::imwrite(path.to_str().unwrap(), &colour, &Vector::new()).unwrap());
            let bytes = Mat::from_slice(&std::fs::read(&path).unwrap())
                .unwrap()
                .try_clone()
                .unwrap();
            let got = gray(&bytes).unwrap();
            let decoded = imgcodecs::imdecode(&bytes, imgcodecs::IMREAD_COLOR).unwrap();
            let mut want = Mat::default();
            opencv::imgproc::cvt_color(&decoded, &mut want, opencv::imgproc::COLOR_BGR2GRAY, 0)
                .unwrap();
            assert_eq!(got.channels(), 1, "{ext}");
            assert_eq!(
                got.data_bytes().unwrap(),
                want.data_bytes().unwrap(),
                "{ext}"
            );
        }
        let mut mono = Mat::default();
        opencv::imgproc::cvt_color(&colour, &mut mono, opencv::imgproc::COLOR_BGR2GRAY, 0).unwrap();
        let path = dir.path().join("m.png");
        assert!(imgcodecs::imwrite(path.to_str().unwrap(), &mono, &Vector::new()).unwrap());
        let bytes = Mat::from_slice(&std::fs::read(&path).unwrap())
            .unwrap()
            .try_clone()
            .unwrap();
        assert_eq!(
            gray(&bytes).unwrap().data_bytes().unwrap(),
            mono.data_bytes().unwrap()
        );
    }
}
