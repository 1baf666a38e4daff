//! `[record]`: where the database and the images go, and how many passed parts keep their image. Parsed into
//! [`RawRecord`], validated into [`RecordConfig`] (relative paths are under the station's data folder), and where
//! records wait when the database cannot take them (the journal).

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
    }
}
