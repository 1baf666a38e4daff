//! `station status`: the station's records at a glance, from its files (the line may be running or not): the
//! last runs and how they ended, the records in the database, what waits in the journal, the images' disk use
//! against the quota and the disk's free space.

use anyhow::Context;

use super::{ConfigArg, load_config};
use crate::store::journal::Journal;
use crate::store::retention::{Disk, folder_bytes};

pub fn status(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let record = &config.record;
    let conn = crate::store::open_database(&record.database)?;
    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let db_bytes = std::fs::metadata(&record.database).map_or(0, |m| m.len());
    let parts: i64 = conn.query_row("SELECT count(*) FROM parts", [], |r| r.get(0))?;
    println!(
        "records   {} ({:.1} MB): {parts} parts",
        record.database.display(),
        mb(db_bytes)
    );
    let mut runs = conn.prepare(
        "SELECT id, started_us, finished_us, end_reason, (SELECT count(*) FROM parts WHERE run_id = runs.id)
         FROM runs ORDER BY id DESC LIMIT 5",
    )?;
    let rows = runs.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Option<i64>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    for row in rows {
        let (id, finished, reason, parts) = row?;
        let state = match (finished, reason.as_deref()) {
            (None, _) => "running, or killed (closed as interrupted at the next start)".to_string(),
            (Some(_), Some(reason)) => reason.to_string(),
            (Some(_), None) => "completed".to_string(),
        };
        println!("  run {id:<6} {parts:>8} parts  {state}");
    }
    let journal = Journal::open(&record.journal);
    println!(
        "journal   {}: {} record(s) waiting for the database",
        record.journal.display(),
        journal.rows
    );
    let images = folder_bytes(&record.images_dir);
    let quota = record
        .quota
        .max_bytes
        .map_or("no size quota".to_string(), |b| {
            format!("quota {:.0} MB", mb(b))
        });
    let pruned: i64 = conn.query_row(
        "SELECT count(*) FROM parts WHERE images_pruned_us IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    println!(
        "images    {}: {:.1} MB ({quota}); {pruned} part(s) had their images removed by retention",
        record.images_dir.display(),
        mb(images)
    );
    let disk = Disk::of(&record.images_dir)
        .with_context(|| format!("cannot read the disk of {}", record.images_dir.display()))?;
    let free_pct = 100.0 * disk.free_bytes as f64 / disk.total_bytes.max(1) as f64;
    println!(
        "disk      {:.0} of {:.0} MB free ({free_pct:.1}%; kept free: {}%, emergency floor {}%)",
        mb(disk.free_bytes),
        mb(disk.total_bytes),
        record.quota.min_free_percent,
        record.quota.emergency_free_percent
    );
    Ok(())
}
