//! `[record]`: where the database and the images go, and how many passed parts keep their image. Parsed into
//! [`RawRecord`], validated into [`RecordConfig`] (relative paths are under the station's data folder), and where
//! records wait when the database cannot take them (the journal), and how many outbox messages are kept.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::retention::Quota;
use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    database: Option<PathBuf>,
    images_dir: Option<PathBuf>,
    save_passed_every: Option<u64>,
    journal: Option<PathBuf>,
    busy_timeout_ms: Option<u64>,
    max_disk_mb: Option<u64>,
    min_free_percent: Option<f64>,
    emergency_free_percent: Option<f64>,
    image_format: Option<String>,
    png_compression: Option<u8>,
    jpeg_quality: Option<u8>,
    image_queue_mb: Option<f64>,
    image_threads: Option<u64>,
    outbox_max_rows: Option<u64>,
}

/// How the record writer encodes images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageFormat {
    /// Lossless; `compression` 0 (fastest, biggest) to 9.
    Png { compression: u8 },
    /// Lossy, several times cheaper to encode at full resolution; `quality` 1 to 100.
    Jpeg { quality: u8 },
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png { .. } => "png",
            ImageFormat::Jpeg { .. } => "jpg",
        }
    }
}

/// How images get to the disk: their encoding, how many bytes may wait for the writer, and its threads.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOptions {
    /// The frames' encoding (heat maps are always PNG: they carry transparency).
    pub format: ImageFormat,
    /// Images waiting to be written, in bytes at most; a part whose images do not fit skips them (counted).
    pub queue_bytes: u64,
    /// Threads encoding a batch's images.
    pub threads: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordConfig {
    pub database: PathBuf,
    pub images_dir: PathBuf,
    /// Also save the image of every Nth passed part (0: none).
    pub save_passed_every: u64,
    /// Where records wait, fsynced, while the database cannot take them (best on another disk).
    pub journal: PathBuf,
    /// How long the record writer waits on a locked database before the batch goes to the journal.
    pub busy_timeout_ms: u64,
    /// How much disk the images may take, and how much of the disk stays free (see `store::retention`).
    pub quota: Quota,
    pub images: ImageOptions,
    /// Outbox messages kept behind the newest, at most: older ones are pruned even if a sink has not sent them
    /// (counted as dropped; see docs/PLANT.md, "Full disk").
    pub outbox_max_rows: u64,
}

pub fn validate(p: &mut Problems, raw: RawRecord, data_dir: &Path) -> RecordConfig {
    let min_free_percent = raw.min_free_percent.unwrap_or(10.0);
    let emergency_free_percent = raw.emergency_free_percent.unwrap_or(2.0);
    if !(0.0..100.0).contains(&min_free_percent) {
        p.problem(
            "record.min_free_percent",
            format!("expected a percentage from 0 up to 100, got {min_free_percent}"),
        );
    }
    if !(0.0..=min_free_percent).contains(&emergency_free_percent) {
        p.problem(
            "record.emergency_free_percent",
            format!(
                "expected a percentage from 0 up to record.min_free_percent ({min_free_percent}), got {emergency_free_percent}"
            ),
        );
    }
    let max_mb = raw
        .max_disk_mb
        .map(|mb| p.positive("record.max_disk_mb", Some(mb), 1));
    let images = images(p, &raw);
    let under = |p: PathBuf| if p.is_absolute() { p } else { data_dir.join(p) };
    RecordConfig {
        database: under(raw.database.unwrap_or_else(|| "station.sqlite".into())),
        images_dir: under(raw.images_dir.unwrap_or_else(|| "images".into())),
        save_passed_every: raw.save_passed_every.unwrap_or(0),
        journal: under(
            raw.journal
                .unwrap_or_else(|| "journal/records.jsonl".into()),
        ),
        busy_timeout_ms: p.positive("record.busy_timeout_ms", raw.busy_timeout_ms, 1000),
        quota: Quota {
            max_bytes: max_mb.map(|mb| mb * 1024 * 1024),
            min_free_percent,
            emergency_free_percent,
        },
        images,
        outbox_max_rows: p.positive("record.outbox_max_rows", raw.outbox_max_rows, 200_000),
    }
}

fn images(p: &mut Problems, raw: &RawRecord) -> ImageOptions {
    let png_compression = raw.png_compression.unwrap_or(1);
    if png_compression > 9 {
        p.problem(
            "record.png_compression",
            format!("expected 0 (fastest) to 9 (smallest), got {png_compression}"),
        );
    }
    let jpeg_quality = raw.jpeg_quality.unwrap_or(90);
    if !(1..=100).contains(&jpeg_quality) {
        p.problem(
            "record.jpeg_quality",
            format!("expected 1 to 100, got {jpeg_quality}"),
        );
    }
    let format = match raw.image_format.as_deref().unwrap_or("png") {
        "png" => ImageFormat::Png {
            compression: png_compression,
        },
        "jpeg" | "jpg" => ImageFormat::Jpeg {
            quality: jpeg_quality,
        },
        other => {
            p.problem(
                "record.image_format",
                format!("expected \"png\" or \"jpeg\", got \"{other}\""),
            );
            ImageFormat::Png { compression: 1 }
        }
    };
    let queue_mb = raw.image_queue_mb.unwrap_or(64.0);
    if !(queue_mb.is_finite() && queue_mb > 0.0) {
        p.problem(
            "record.image_queue_mb",
            format!("expected a size in MB above 0, got {queue_mb}"),
        );
    }
    ImageOptions {
        format,
        queue_bytes: (queue_mb.max(0.0) * 1024.0 * 1024.0) as u64,
        threads: p.positive("record.image_threads", raw.image_threads, 1) as usize,
    }
}
