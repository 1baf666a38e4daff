//! Records never lost: a database held locked by another process (a real SQLite lock from a Python process),
//! shutdown during the lock, kill -9 with records in the journal, SIGTERM, and image folders that cannot be
//! written. Each test counts rows against the parts the line judged and the results the PLC received.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inspection_station::config::Config;

use crate::common::{python, rows, run, station};

/// Holds the database locked (`BEGIN EXCLUSIVE` from another process) for `seconds`, once the file exists.
struct Locker(Child);

impl Locker {
    /// Once the line has recorded a few parts (its run is open), locks the database.
    fn lock(db: &Path, seconds: f64) -> Locker {
        let until = Instant::now() + Duration::from_secs(60);
        let recorded = || {
            rusqlite::Connection::open(db)
                .and_then(|c| c.query_row("SELECT count(*) FROM parts", [], |r| r.get::<_, i64>(0)))
                .unwrap_or(0)
        };
        while !db.exists() || recorded() < 5 {
            assert!(Instant::now() < until, "{} never got 5 parts", db.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        let script = "import sqlite3, sys, time\n\
                      c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
                      c.execute('BEGIN EXCLUSIVE')\n\
                      print('locked', flush=True)\n\
                      time.sleep(float(sys.argv[2]))\n\
                      c.execute('COMMIT')\n\
                      print('released', flush=True)\n";
        let mut child = Command::new(python())
            .args(["-c", script])
            .arg(db)
            .arg(seconds.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "locked",
            "the locker did not lock {}",
            db.display()
        );
        Locker(child)
    }

    fn wait(mut self) {
        assert!(self.0.wait().unwrap().success(), "the locker failed");
    }
}

fn line(dir: &Path, extra: &str) -> Config {
    station(
        dir,
        &format!(
            "[trigger]\ninterval_ms = 40\n[source]\nkind = \"synthetic\"\nseed = 4\n[record]\nbusy_timeout_ms = 100\n{extra}"
        ),
    )
}

fn count(db: &Path, sql: &str) -> i64 {
    try_count(db, sql).unwrap()
}

fn try_count(db: &Path, sql: &str) -> rusqlite::Result<i64> {
    let conn = rusqlite::Connection::open(db)?;
    conn.query_row(sql, [], |r| r.get(0))
}

/// The outbox holds one message per part and per PLC outcome, however the rows got in (at once, or replayed
/// from the journal), in the order of the rows, its ids without a gap.
fn outbox_matches_the_records(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let keys = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let parts = keys("SELECT part_id FROM parts ORDER BY id");
    assert_eq!(
        keys("SELECT key FROM outbox WHERE kind = 'part' ORDER BY id"),
        parts,
        "one message per part, in the order of the rows"
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM outbox WHERE kind = 'plc_delivered'"
        ),
        count(
            db,
            "SELECT count(*) FROM parts WHERE plc_status = 'delivered'"
        )
    );
    assert_eq!(
        count(db, "SELECT max(id) - min(id) + 1 - count(*) FROM outbox"),
        0,
        "a gap in the outbox ids"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_longer_than_the_retry_window_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = line(dir.path(), "");
    let db = config.record.database.clone();
    let locker = std::thread::spawn(move || Locker::lock(&db, 3.0).wait());
    let summary = run(&config, Some(150)).await;
    locker.join().unwrap();
    assert_eq!(summary.parts, 150);
    assert!(
        summary.record_write_failures > 0,
        "the lock never stopped a write: {summary}"
    );
    assert_eq!(summary.records_waiting, 0, "{summary}");
    assert_eq!(summary.records_lost, 0, "{summary}");
    let rows = rows(&config);
    assert_eq!(rows.len() as u64, summary.parts, "a part without its row");
    assert_eq!(summary.plc_delivered, summary.parts, "{summary}");
    let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=150).collect::<Vec<_>>(), "gaps or duplicates");
    // The PLC updates that waited in the journal came after their rows: every part is marked delivered.
    let pending: Vec<u64> = rows
        .iter()
        .filter(|r| r.plc_status != "delivered")
        .map(|r| r.seq)
        .collect();
    assert!(
        pending.is_empty(),
        "parts not marked delivered: {pending:?}"
    );
    assert_eq!(
        std::fs::metadata(&config.record.journal).map_or(0, |m| m.len()),
        0,
        "the journal was not emptied"
    );
    outbox_matches_the_records(&config.record.database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_during_a_lock_leaves_its_records_in_the_journal_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = line(dir.path(), "");
    let db = config.record.database.clone();
    // Longer than the rest of the run plus the writer's drain retries.
    let locker = std::thread::spawn(move || Locker::lock(&db, 8.0).wait());
    let summary = run(&config, Some(40)).await;
    assert!(summary.records_waiting > 0, "{summary}");
    assert!(
        summary.to_string().contains("waiting in the journal"),
        "{summary}"
    );
    let journal = std::fs::read_to_string(&config.record.journal).unwrap();
    assert_eq!(journal.lines().count() as u64, summary.records_waiting);
    locker.join().unwrap();

    // The next start replays the journal: every part of the first run has its row, and the run is closed.
    let second = run(&config, Some(3)).await;
    let db = &config.record.database;
    let first = summary.run_id;
    assert_eq!(
        count(
            db,
            &format!("SELECT count(*) FROM parts WHERE run_id = {first}")
        ),
        40
    );
    assert_eq!(
        count(
            db,
            &format!(
                "SELECT count(*) FROM parts WHERE run_id = {first} AND plc_status = 'delivered'"
            )
        ),
        40
    );
    assert_eq!(
        count(
            db,
            &format!(
                "SELECT count(*) FROM runs WHERE id = {first} AND finished_us IS NOT NULL AND end_reason = 'completed'"
            )
        ),
        1,
        "the first run was not closed by its journaled end"
    );
    assert_eq!(second.records_waiting, 0);
    assert_eq!(rows(&config).len(), 43);
    outbox_matches_the_records(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_that_cannot_be_written_are_counted_and_their_rows_still_land() {
    let dir = tempfile::tempdir().unwrap();
    // The run's image folder is a plain file: every image write fails (as on a read-only or full disk).
    std::fs::create_dir_all(dir.path().join("data/images")).unwrap();
    std::fs::write(dir.path().join("data/images/run-1"), "not a folder").unwrap();
    let config = line(dir.path(), "");
    let summary = run(&config, Some(40)).await;
    let rows = rows(&config);
    assert_eq!(rows.len(), 40);
    let rejected = rows.iter().filter(|r| r.verdict == "REJECT").count() as u64;
    assert!(rejected > 0, "no reject to keep an image of");
    assert!(rows.iter().all(|r| r.image_path.is_none()));
    assert!(
        summary.images_failed >= rejected,
        "{} images failed for {rejected} rejects: {summary}",
        summary.images_failed
    );
    assert!(
        summary.to_string().contains("images not written"),
        "{summary}"
    );
}

/// Starts `station run` on the config in `dir`, its stderr drained into a string.
fn station_run(dir: &Path, max_parts: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_station"))
        .args(["run", "--quiet", "--max-parts", &max_parts.to_string()])
        .args(["-c", "station.toml"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sigterm_drains_the_line_and_closes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = line(dir.path(), "");
    let child = station_run(dir.path(), 100_000);
    let db = config.record.database.clone();
    let until = Instant::now() + Duration::from_secs(60);
    // (the file exists a moment before its tables do)
    while !db.exists() || try_count(&db, "SELECT count(*) FROM parts").unwrap_or(0) < 20 {
        assert!(Instant::now() < until, "the line never recorded 20 parts");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = std::thread::spawn(move || {
        let out = child.wait_with_output().unwrap();
        (out, sent.elapsed())
    })
    .join()
    .unwrap();
    let (out, drained) = out;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("SIGTERM: stopping the line"), "{stderr}");
    let parts: i64 = stdout
        .split_once(" parts in ")
        .and_then(|(head, _)| head.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    assert_eq!(count(&db, "SELECT count(*) FROM parts"), parts);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM runs WHERE finished_us IS NOT NULL AND end_reason = 'completed'"
        ),
        1
    );
    eprintln!("SIGTERM to exit: {:.0} ms", drained.as_secs_f64() * 1e3);
}

#[test]
fn a_restart_after_kill_9_replays_the_journal_and_closes_the_interrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = line(dir.path(), "");
    let db = config.record.database.clone();
    let journal = config.record.journal.clone();
    let mut child = station_run(dir.path(), 100_000);
    let locker = Locker::lock(&db, 6.0);
    // Wait until records wait in the journal, then kill the station without warning.
    let until = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&journal).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < until, "nothing was journaled");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    locker.wait();
    let text = std::fs::read_to_string(&journal).unwrap();
    let journaled: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["row"] == "part")
        .map(|v| v["part_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!journaled.is_empty(), "no part row in the journal: {text}");

    let restart = station_run(dir.path(), 2).wait_with_output().unwrap();
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    for part_id in &journaled {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM parts WHERE part_id = ?1",
                [part_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "journaled part {part_id} missing after the restart");
    }
    let (reason, finished, last): (String, i64, i64) = conn
        .query_row(
            "SELECT end_reason, finished_us, (SELECT max(decided_us) FROM parts WHERE run_id = runs.id)
             FROM runs WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(reason, "interrupted");
    assert_eq!(finished, last, "an interrupted run ends at its last part");
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_quota_oldest_passed_images_first_and_never_an_unreviewed_reject() {
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        "[trigger]\ninterval_ms = 30\n[source]\nkind = \"synthetic\"\nseed = 8\ndefect_fraction = 0.1\n\
         [record]\nsave_passed_every = 1\nmax_disk_mb = 2\n",
    );
    let summary = run(&config, Some(120)).await;
    let data = config.record.images_dir.parent().unwrap().to_path_buf();
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, verdict, image_path, heatmap_path, images_pruned_us FROM parts ORDER BY seq")
        .unwrap();
    type Part = (i64, String, Option<String>, Option<String>, Option<i64>);
    let parts: Vec<Part> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(parts.len(), 120, "retention never removes a row");
    let size = |p: &Option<String>| {
        p.as_ref()
            .map_or(0, |p| std::fs::metadata(data.join(p)).unwrap().len())
    };
    let (mut reject_bytes, mut passed_bytes) = (0, 0);
    for (seq, verdict, image, heat, pruned) in &parts {
        if verdict == "REJECT" {
            assert!(
                image.is_some() && pruned.is_none(),
                "unreviewed reject {seq} lost its image"
            );
            reject_bytes += size(image) + size(heat);
        } else {
            // A path in a row always points at a file (size() panics otherwise).
            passed_bytes += size(image);
            assert_eq!(image.is_none(), pruned.is_some(), "passed part {seq}");
        }
    }
    let pruned: Vec<i64> = parts
        .iter()
        .filter(|p| p.4.is_some())
        .map(|p| p.0)
        .collect();
    let kept: Vec<i64> = parts
        .iter()
        .filter(|p| p.1 == "PASS" && p.2.is_some())
        .map(|p| p.0)
        .collect();
    assert!(!pruned.is_empty(), "nothing was removed: {summary}");
    assert_eq!(summary.images_pruned, pruned.len() as u64);
    assert_eq!(summary.images_pruned_emergency, 0);
    // Oldest first: every passed image still kept is newer than every one removed.
    if let (Some(newest_pruned), Some(oldest_kept)) = (pruned.iter().max(), kept.iter().min()) {
        assert!(
            oldest_kept > newest_pruned,
            "kept {kept:?}, removed {pruned:?}"
        );
    }
    let quota = 2 * 1024 * 1024;
    assert!(
        reject_bytes + passed_bytes <= quota || passed_bytes == 0,
        "{passed_bytes} B of passed images beside {reject_bytes} B of rejects, over the {quota} B quota"
    );
}

/// A small tmpfs of the test's own (the station runs as root here, as on the inspection PC's service account
/// with CAP_SYS_ADMIN in CI); unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: &Path, mb: u64) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a {mb} MB tmpfs on {} (the full-disk test needs root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(path.to_path_buf())
    }

    fn grow(&self, mb: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "cannot grow {}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn on_disk(dir: &Path, disk: &Path, record: &str) -> Config {
    station(
        dir,
        &format!(
            "[trigger]\ninterval_ms = 40\n[source]\nkind = \"synthetic\"\nseed = 6\n\
             [record]\nbusy_timeout_ms = 100\nsave_passed_every = 1\ndatabase = \"{}/station.sqlite\"\n\
             images_dir = \"{}/images\"\njournal = \"{}/journal/records.jsonl\"\n{record}",
            disk.display(),
            disk.display(),
            dir.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_record_without_retention_and_stays_free_with_it() {
    let dir = tempfile::tempdir().unwrap();

    // Retention off: the disk fills; records wait in the journal (on another disk) and land once there is room.
    let disk = SmallDisk::mount(&dir.path().join("small"), 3);
    let config = on_disk(
        dir.path(),
        &disk.0,
        "min_free_percent = 0\nemergency_free_percent = 0\n",
    );
    let summary = run(&config, Some(120)).await;
    assert_eq!(summary.parts, 120);
    assert!(
        summary.images_failed > 0,
        "the disk never filled: {summary}"
    );
    assert!(summary.record_write_failures > 0, "{summary}");
    assert!(summary.records_waiting > 0, "{summary}");
    assert_eq!(summary.records_lost, 0, "{summary}");
    disk.grow(64);
    run(&config, Some(2)).await;
    let first = summary.run_id;
    let db = &config.record.database;
    assert_eq!(
        count(
            db,
            &format!("SELECT count(*) FROM parts WHERE run_id = {first}")
        ),
        120
    );
    assert_eq!(
        count(
            db,
            &format!(
                "SELECT count(*) FROM parts WHERE run_id = {first} AND plc_status = 'delivered'"
            )
        ),
        120
    );
    outbox_matches_the_records(db);
    drop(disk);

    // Retention on: the station keeps half of the disk free; no write ever fails.
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("small"), 16);
    let config = on_disk(dir.path(), &disk.0, "min_free_percent = 50\n");
    let summary = run(&config, Some(150)).await;
    assert_eq!(summary.record_write_failures, 0, "{summary}");
    assert_eq!(summary.images_failed, 0, "{summary}");
    assert!(summary.images_pruned > 0, "{summary}");
    assert_eq!(rows(&config).len(), 150);
    let free = inspection_station::store::retention::Disk::of(&disk.0).unwrap();
    assert!(
        free.free_bytes * 100 >= free.total_bytes * 50,
        "{} of {} bytes free at the end",
        free.free_bytes,
        free.total_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_neither_database_nor_journal_writable_the_plc_is_told_and_no_record_is_lost() {
    let mut sim = crate::plc::Sim::start(serde_json::json!({
        "role": "server", "parts": 0, "wait_for_go": true, "expect_results": 60, "linger_s": 1.0, "run_s": 40
    }));
    let dir = tempfile::tempdir().unwrap();
    // The journal's folder is a plain file: the journal cannot be written either.
    std::fs::write(dir.path().join("blocked"), "not a folder").unwrap();
    let config = line(
        dir.path(),
        &format!(
            "journal = \"{}/blocked/records.jsonl\"\n[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n",
            dir.path().display(),
            sim.ready
        ),
    );
    sim.go();
    let db = config.record.database.clone();
    let locker = std::thread::spawn(move || Locker::lock(&db, 2.0).wait());
    let summary = run(&config, Some(60)).await;
    locker.join().unwrap();
    let report = tokio::task::block_in_place(|| sim.report());
    assert!(summary.record_write_failures > 0, "{summary}");
    assert_eq!(summary.records_lost, 0, "{summary}");
    assert_eq!(summary.records_waiting, 0, "{summary}");
    // The PLC saw the records fault while the records were held in memory.
    assert!(report.seen.faults.contains(&7), "{:?}", report.seen);
    let rows = rows(&config);
    assert_eq!(rows.len(), 60, "a part without its row");
    assert!(
        rows.iter().all(|r| r.plc_status == "delivered"),
        "a PLC update was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_status_shows_runs_journal_and_disk_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = line(dir.path(), "save_passed_every = 1\nmax_disk_mb = 500\n");
    run(&config, Some(12)).await;
    let out = Command::new(env!("CARGO_BIN_EXE_station"))
        .args(["status", "-c", "station.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        ": 12 parts",
        "run 1",
        "completed",
        "0 record(s) waiting",
        "quota 500 MB",
        "kept free: 10%",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_image_writer_skips_and_counts_images_and_no_part_waits_for_it() {
    let parts = 150;
    let mut sim = crate::plc::Sim::start(serde_json::json!({
        "role": "server", "parts": 0, "wait_for_go": true, "expect_results": parts, "linger_s": 1.0, "run_s": 60
    }));
    let dir = tempfile::tempdir().unwrap();
    // 1280x1024 frames of noise (the slowest thing to compress), every part rejected and kept as slow PNG,
    // while the writer may hold about two parts' images: many parts must skip theirs.
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..8 {
        use opencv::core::{Mat, Scalar, Vector};
        let mut noise =
            Mat::new_rows_cols_with_default(1024, 1280, opencv::core::CV_8UC3, Scalar::all(0.0))
                .unwrap();
        opencv::core::randu(&mut noise, &Scalar::all(0.0), &Scalar::all(255.0)).unwrap();
        let path = frames.join(format!("{i}.png"));
        assert!(
            opencv::imgcodecs::imwrite(path.to_str().unwrap(), &noise, &Vector::new()).unwrap()
        );
    }
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\ninterval_ms = 40\n[source]\nkind = \"folder\"\npath = \"frames\"\nloop = true\n\
             [model]\ndir = \"{}\"\nthreshold = -1000000.0\n\
             [record]\nsave_passed_every = 1\npng_compression = 9\nimage_queue_mb = 8\n\
             [plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\nresult_buffer = 64\n",
            crate::common::demo_model().display(),
            sim.ready
        ),
    );
    sim.go();
    let summary = run(&config, Some(parts)).await;
    let report = tokio::task::block_in_place(|| sim.report());
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let (n, delivered, skipped, kept, skipped_with_image): (i64, i64, i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(plc_status = 'delivered'), sum(images_skipped),
                    sum(image_path IS NOT NULL), sum(images_skipped > 0 AND image_path IS NOT NULL)
             FROM parts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    // Every part judged, told to the PLC and recorded; the skipped images are counted in the rows and the
    // summary alike.
    assert_eq!(n, parts as i64, "{summary}");
    assert_eq!(delivered, parts as i64, "{summary}");
    assert_eq!(report.results.len() as u64, parts, "{:?}", report.seen);
    assert_eq!(
        (summary.overloaded, summary.deadline_misses),
        (0, 0),
        "{summary}"
    );
    assert!(skipped > 0, "the writer never fell behind: {summary}");
    assert_eq!(summary.images_skipped, skipped as u64, "{summary}");
    assert!(
        summary.to_string().contains("skipped (queue full)"),
        "{summary}"
    );
    assert!(kept > 0, "no image was written at all: {summary}");
    assert_eq!(
        skipped_with_image, 0,
        "a part both skipped and kept its image"
    );
    // Every kept frame is on disk with its heat map (at the model's resolution, over the recorded ROI).
    let mut stmt = conn
        .prepare(
            "SELECT image_path, heatmap_path, heatmap_roi FROM parts WHERE image_path IS NOT NULL",
        )
        .unwrap();
    let kept_rows: Vec<(String, Option<String>, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let data = dir.path().join("data");
    for (image, heat, roi) in &kept_rows {
        assert!(data.join(image).is_file(), "{image} missing");
        let heat = heat.as_ref().expect("a kept reject without its heat map");
        let heat = opencv::imgcodecs::imread(
            data.join(heat).to_str().unwrap(),
            opencv::imgcodecs::IMREAD_UNCHANGED,
        )
        .unwrap();
        use opencv::prelude::*;
        assert_eq!(
            (heat.channels(), heat.cols()),
            (4, 256),
            "heat map {heat:?}"
        );
        assert_eq!(roi.as_deref(), Some("32,32,256,256"));
    }
    println!(
        "{parts} parts: {kept} images kept, {skipped} skipped; {}",
        summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncertain_passed_parts_always_keep_their_image() {
    let dir = tempfile::tempdir().unwrap();
    // No passed part is sampled; a wide margin makes many passed parts uncertain (queued for review).
    let config = line(
        dir.path(),
        "save_passed_every = 0\n[web]\nport = 0\nuncertain_margin = 0.7\n",
    );
    run(&config, Some(40)).await;
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let (uncertain, uncertain_kept, certain_kept): (i64, i64, i64) = conn
        .query_row(
            "SELECT sum(score >= threshold * 0.3), sum(score >= threshold * 0.3 AND image_path IS NOT NULL),
                    sum(score < threshold * 0.3 AND image_path IS NOT NULL)
             FROM parts WHERE verdict = 'PASS'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(uncertain > 0, "no uncertain passed part to check");
    assert_eq!(
        uncertain_kept, uncertain,
        "an uncertain part without its image"
    );
    assert_eq!(
        certain_kept, 0,
        "save_passed_every = 0 keeps no other passed image"
    );
}
