//! `[record]`: where the database and the images go, and how many passed parts keep their image. Parsed into
//! [`RawRecord`], validated into [`RecordConfig`] (relative paths are under the station's data folder), and where
//! records wait when the database cannot take them (the journal).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    database: Option<PathBuf>,
    images_dir: Option<PathBuf>,
    save_passed_every: Option<u64>,
    journal: Option<PathBuf>,
    busy_timeout_ms: Option<u64>,
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
}

pub fn validate(p: &mut Problems, raw: RawRecord, data_dir: &Path) -> RecordConfig {
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
    }
}
