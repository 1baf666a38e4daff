//! Retention: the images folder is kept under its quota (`[record] max_disk_mb`) and the disk keeps
//! `min_free_percent` free, by removing images oldest first, in this order:
//!
//! 1. images of passed parts;
//! 2. images of rejected parts an operator has reviewed;
//! 3. only when the disk's free space is below the emergency floor (`emergency_free_percent`): images of
//!    unreviewed rejects, oldest first, each logged and counted (`images_pruned_emergency`).
//!
//! A part's row is never removed: its image paths are cleared and `images_pruned_us` says when, so the review
//! page can tell "no image kept" from "image removed by retention". Runs in the record writer, between batches.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rusqlite::{Connection, params};

use crate::metrics::Counters;

/// The quota, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// Most bytes the images folder may hold (`None`: no size quota, only the free-space rule).
    pub max_bytes: Option<u64>,
    pub min_free_percent: f64,
    pub emergency_free_percent: f64,
}

/// The disk the images are on.
#[derive(Debug, Clone, Copy)]
pub struct Disk {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl Disk {
    /// The file system holding `path` (`statvfs`).
    pub fn of(path: &Path) -> std::io::Result<Disk> {
        use std::os::unix::ffi::OsStrExt;
        let c_path =
            std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a plain struct statvfs fills in.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let block = stat.f_frsize as u64;
        Ok(Disk {
            free_bytes: stat.f_bavail as u64 * block,
            total_bytes: stat.f_blocks as u64 * block,
        })
    }

    fn free_percent(&self, freed: u64) -> f64 {
        100.0 * (self.free_bytes + freed) as f64 / self.total_bytes.max(1) as f64
    }
}

/// Bytes that must go to meet the quota.
pub fn excess(quota: &Quota, images_bytes: u64, disk: Disk) -> u64 {
    let over_size = quota
        .max_bytes
        .map_or(0, |max| images_bytes.saturating_sub(max));
    let want_free = (quota.min_free_percent / 100.0 * disk.total_bytes as f64) as u64;
    let over_free = want_free.saturating_sub(disk.free_bytes).min(images_bytes);
    over_size.max(over_free)
}

/// Sizes of the files under `dir` (the images folder), recursively.
pub fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The candidates of each stage, oldest first.
const STAGES: [(&str, bool); 3] = [
    ("verdict = 'PASS'", false),
    (
        "verdict = 'REJECT' AND EXISTS (SELECT 1 FROM reviews WHERE reviews.part_id = parts.part_id)",
        false,
    ),
    (
        "verdict = 'REJECT' AND NOT EXISTS (SELECT 1 FROM reviews WHERE reviews.part_id = parts.part_id)",
        true,
    ),
];

/// Removes images until the quota holds (or nothing more may go); returns the bytes freed.
pub fn enforce(
    conn: &Connection,
    data_dir: &Path,
    quota: &Quota,
    images_bytes: u64,
    disk: Disk,
    counters: &Counters,
) -> rusqlite::Result<u64> {
    let mut need = excess(quota, images_bytes, disk);
    let mut freed = 0u64;
    for (filter, emergency) in STAGES {
        while need > 0 {
            if emergency && disk.free_percent(freed) >= quota.emergency_free_percent {
                break;
            }
            let batch = candidates(conn, filter)?;
            if batch.is_empty() {
                break;
            }
            let now = crate::clock::Clock::new().now_us();
            let tx = conn.unchecked_transaction()?;
            for (id, part_id, paths) in batch {
                let bytes: u64 = paths.iter().map(|p| remove(&data_dir.join(p))).sum();
                tx.execute(
                    "UPDATE parts SET image_path = NULL, heatmap_path = NULL, spectrogram_path = NULL,
                        images_pruned_us = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                counters.images_pruned.fetch_add(1, Ordering::Relaxed);
                if emergency {
                    counters
                        .images_pruned_emergency
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "disk below its emergency floor: removed the images of unreviewed reject {part_id}"
                    );
                }
                freed += bytes;
                need = need.saturating_sub(bytes.max(1));
                if need == 0 {
                    break;
                }
            }
            tx.commit()?;
        }
    }
    Ok(freed)
}

/// Up to 100 parts of a stage that still have images, oldest first, with their image paths.
#[allow(clippy::type_complexity)]
fn candidates(
    conn: &Connection,
    filter: &str,
) -> rusqlite::Result<Vec<(i64, String, Vec<PathBuf>)>> {
    let sql = format!(
        "SELECT id, part_id, image_path, heatmap_path, spectrogram_path FROM parts
         WHERE (image_path IS NOT NULL OR spectrogram_path IS NOT NULL) AND {filter} ORDER BY id LIMIT 100"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |r| {
        let paths: [Option<String>; 3] = [r.get(2)?, r.get(3)?, r.get(4)?];
        let paths = paths.into_iter().flatten().map(PathBuf::from).collect();
        Ok((r.get(0)?, r.get(1)?, paths))
    })?;
    rows.collect()
}

/// Removes a file; returns its size (0 when it was already gone).
fn remove(path: &Path) -> u64 {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    match std::fs::remove_file(path) {
        Ok(()) => size,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::error!("retention: cannot remove {}: {e}", path.display());
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excess_is_the_larger_of_the_size_quota_and_the_free_space_rule() {
        let quota = Quota {
            max_bytes: Some(1000),
            min_free_percent: 10.0,
            emergency_free_percent: 2.0,
        };
        let roomy = Disk {
            free_bytes: 900_000,
            total_bytes: 1_000_000,
        };
        assert_eq!(excess(&quota, 800, roomy), 0);
        assert_eq!(excess(&quota, 1500, roomy), 500);
        let full = Disk {
            free_bytes: 50_000,
            total_bytes: 1_000_000,
        };
        // 100,000 should be free: 50,000 must go, but never more than the images hold.
        assert_eq!(excess(&quota, 1500, full), 1500);
        let no_size = Quota {
            max_bytes: None,
            ..quota
        };
        assert_eq!(excess(&no_size, 80_000, full), 50_000);
        assert!(Disk::of(Path::new("/")).unwrap().total_bytes > 0);
    }
}
