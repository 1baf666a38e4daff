//! Records: one SQLite row per part (WAL mode), and the images of rejected parts (plus a sample of passed ones)
//! in the data folder, their path in the row.
//!
//! The writer ([`writer`]) is a tokio task fed by a bounded channel; it batches what has arrived and writes each
//! batch in one transaction on tokio's blocking pool. A part's row is inserted when it gets its verdict, whatever
//! the PLC's state; the PLC stage later fills in `actuated_us` and `plc_status`. A result the PLC never received
//! turns the recorded verdict into REJECT with a `plc_undelivered` reason: the part must be treated as suspect.
//! A record is never dropped: what the database cannot take waits in the [`journal`] (fsynced) and is replayed.
//! The schema is versioned (`PRAGMA user_version`) so later capabilities (reviews, acoustic scores, barcodes,
//! lots) add columns by migration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, params};
use serde::Serialize;

pub mod chain;
pub mod config;
pub mod journal;
pub mod outbox;
pub mod retention;
pub mod rows;
pub mod writer;

pub use config::RecordConfig;
pub use writer::run_writer;

use crate::metrics::Counters;
pub use crate::part::record::{PartRecord, PlcOutcome, RecordMsg};
use journal::Journal;
use rows::Row;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

/// The open database, image folder and journal of one run.
pub struct Store {
    conn: Connection,
    db_path: PathBuf,
    data_dir: PathBuf,
    images_dir: PathBuf,
    pub run_id: i64,
    /// Rows committed to the database.
    pub written: u64,
    /// Where records wait while the database cannot take them.
    journal: Journal,
    /// Rows neither the database nor the journal could take (kept in memory, bounded; the alarm is raised).
    held: Vec<Row>,
    /// No database attempt before this instant (backoff after a failure).
    next_attempt: std::time::Instant,
    backoff: std::time::Duration,
    counters: Arc<Counters>,
    /// The images folder's quota, its size now, and when retention last looked.
    quota: retention::Quota,
    images_root: PathBuf,
    images_bytes: u64,
    retention_at: std::time::Instant,
    trimmed_at: std::time::Instant,
    /// How the images are encoded and by how many threads.
    images: config::ImageOptions,
    /// Outbox messages kept behind the newest, at most.
    outbox_max_rows: u64,
    /// Told about every part written (the live review page listens here).
    pub notify: Option<tokio::sync::broadcast::Sender<Recorded>>,
}

const SCHEMA_V1: &str = "
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    station TEXT NOT NULL,
    config TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    finished_us INTEGER
);
CREATE TABLE parts (
    id INTEGER PRIMARY KEY,
    part_id TEXT NOT NULL UNIQUE,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    origin TEXT NOT NULL,
    truth TEXT,
    triggered_us INTEGER NOT NULL,
    captured_us INTEGER,
    preprocessed_us INTEGER,
    inferred_us INTEGER,
    decided_us INTEGER NOT NULL,
    actuated_us INTEGER,
    score REAL,
    threshold REAL NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('PASS', 'REJECT')),
    reasons TEXT NOT NULL,
    result_code INTEGER NOT NULL,
    plc_status TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    image_path TEXT
);
CREATE INDEX parts_by_time ON parts(decided_us);
CREATE INDEX parts_by_verdict ON parts(verdict, decided_us);
";

/// Acoustic scoring: each part's acoustic score, the acoustic model, the known truth of synthetic sound, and the
/// spectrogram image of rejected parts.
const SCHEMA_AUDIO: &str = "
ALTER TABLE parts ADD COLUMN acoustic_score REAL;
ALTER TABLE parts ADD COLUMN acoustic_threshold REAL;
ALTER TABLE parts ADD COLUMN acoustic_model_name TEXT;
ALTER TABLE parts ADD COLUMN acoustic_model_version TEXT;
ALTER TABLE parts ADD COLUMN acoustic_model_sha256 TEXT;
ALTER TABLE parts ADD COLUMN acoustic_truth TEXT;
ALTER TABLE parts ADD COLUMN spectrogram_path TEXT;
";

/// Operator reviews (an audit trail: a part's recorded verdict is never changed by a review), the users who make
/// them and their sessions, technicians' setting changes, and the heat-map overlay a model may provide.
const SCHEMA_REVIEWS: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('operator', 'technician')),
    password_hash TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
);
CREATE TABLE reviews (
    id INTEGER PRIMARY KEY,
    part_id TEXT NOT NULL REFERENCES parts(part_id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    at_us INTEGER NOT NULL,
    old_verdict TEXT NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('good', 'defect')),
    defect_class TEXT,
    comment TEXT NOT NULL DEFAULT ''
);
CREATE INDEX reviews_by_part ON reviews(part_id, id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    at_us INTEGER NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
ALTER TABLE parts ADD COLUMN heatmap_path TEXT;
CREATE INDEX parts_by_model ON parts(model_version, id);
CREATE INDEX parts_by_run ON parts(run_id, verdict);
CREATE INDEX parts_queue ON parts(verdict, score, threshold);
";

/// Schema steps in order: step `i` brings the database to `user_version = i + 1`. Append, never edit.
const MIGRATIONS: &[&str] = &[
    SCHEMA_V1,
    SCHEMA_AUDIO,
    SCHEMA_REVIEWS,
    SCHEMA_SHADOW,
    SCHEMA_RUN_END,
    SCHEMA_RETENTION,
    SCHEMA_PLC_TAG,
    SCHEMA_PLC_TIMES,
    SCHEMA_PLC_PULSE,
    SCHEMA_IMAGE_QUEUE,
    SCHEMA_USERS_DISABLED,
    SCHEMA_IDENTITY,
    SCHEMA_CHAIN,
    SCHEMA_CALIBRATION,
    outbox::SCHEMA,
];

/// The tamper-evident record (`chain.rs`): every part record and PLC event, hash-chained.
const SCHEMA_CHAIN: &str = "
CREATE TABLE record_chain (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    payload TEXT NOT NULL,
    files TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX record_chain_by_ref ON record_chain(ref, kind);
";

/// Part identity (issue 15): the scan as received and as parsed, the serial's attempt (a serial seen again is a
/// re-inspection, linked to its last attempt), and the software that judged each run.
const SCHEMA_IDENTITY: &str = "
ALTER TABLE parts ADD COLUMN identity_source TEXT;
ALTER TABLE parts ADD COLUMN scan_raw BLOB;
ALTER TABLE parts ADD COLUMN scan_symbology TEXT;
ALTER TABLE parts ADD COLUMN serial TEXT;
ALTER TABLE parts ADD COLUMN gtin TEXT;
ALTER TABLE parts ADD COLUMN lot TEXT;
ALTER TABLE parts ADD COLUMN expiry TEXT;
ALTER TABLE parts ADD COLUMN production_date TEXT;
ALTER TABLE parts ADD COLUMN gs1_fields TEXT;
ALTER TABLE parts ADD COLUMN identity_error TEXT;
ALTER TABLE parts ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE parts ADD COLUMN previous_part_id TEXT;
ALTER TABLE runs ADD COLUMN software_version TEXT;
CREATE INDEX parts_by_serial ON parts(serial, id);
CREATE INDEX parts_by_lot ON parts(lot, id);
";

/// Camera calibration: the id (content hash) of the calibration a part's frame was undistorted with, and its
/// px -> mm scale at the working plane (both NULL: the frame as captured).
const SCHEMA_CALIBRATION: &str = "
ALTER TABLE parts ADD COLUMN calibration_id TEXT;
ALTER TABLE parts ADD COLUMN mm_per_px REAL;
";

/// User management: a disabled user keeps their name on the audit trail but cannot log in.
const SCHEMA_USERS_DISABLED: &str = "
ALTER TABLE users ADD COLUMN disabled_us INTEGER;
";

/// Images off the hot path: the region of the frame a heat map (at the model's resolution) covers, and the
/// images a part skipped because the image writer was `record.image_queue_mb` behind.
const SCHEMA_IMAGE_QUEUE: &str = "
ALTER TABLE parts ADD COLUMN heatmap_roi TEXT;
ALTER TABLE parts ADD COLUMN images_skipped INTEGER NOT NULL DEFAULT 0;
";

/// Shadow mode: a candidate model's score of each part, beside the recorded verdict (which it never changes).
const SCHEMA_SHADOW: &str = "
CREATE TABLE shadow_scores (
    part_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    score REAL,
    threshold REAL NOT NULL,
    error TEXT,
    scored_us INTEGER NOT NULL,
    PRIMARY KEY (part_id, model_sha256)
);
";

/// How a run ended: `completed` (its writer closed it), `interrupted` (closed at the next start: the station was
/// killed or lost power; `finished_us` is then its last part's verdict).
const SCHEMA_RUN_END: &str = "
ALTER TABLE runs ADD COLUMN end_reason TEXT;
";

/// Retention: when the quota removed a part's images (its row stays).
const SCHEMA_RETENTION: &str = "
ALTER TABLE parts ADD COLUMN images_pruned_us INTEGER;
";

/// The PLC's 32-bit part ID and encoder count at the trigger: the key a PLC-triggered part is traced by.
const SCHEMA_PLC_TAG: &str = "
ALTER TABLE parts ADD COLUMN plc_part_id INTEGER;
ALTER TABLE parts ADD COLUMN encoder_at_trigger INTEGER;
CREATE INDEX parts_by_plc_part_id ON parts(plc_part_id);
";

/// When the PLC got a part's result and when its reject output was driven: the result block written, the
/// reject output high and low (`actuated_us` stays the acknowledge).
const SCHEMA_PLC_TIMES: &str = "
ALTER TABLE parts ADD COLUMN result_written_us INTEGER;
ALTER TABLE parts ADD COLUMN reject_on_us INTEGER;
ALTER TABLE parts ADD COLUMN reject_off_us INTEGER;
";

/// How sure the trigger's time is, and what became of the reject pulse: `not_needed` (passed the gate),
/// `driven`, `extended` (the output was already high for an earlier part), `missed_link_down`,
/// `missed_write_failed`, `stopped` (the station stopped first); NULL without a PLC.
const SCHEMA_PLC_PULSE: &str = "
ALTER TABLE parts ADD COLUMN trigger_uncertainty_us INTEGER;
ALTER TABLE parts ADD COLUMN reject_pulse TEXT;
";

/// Opens the database, creating its folder and bringing its schema up to date (WAL, a 5 s busy timeout for
/// readers; the record writer sets its own, see [`RecordConfig::busy_timeout_ms`]).
pub fn open_database(db_path: &Path) -> Result<Connection, StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: db_path.display().to_string(),
        source,
    };
    let dir = db_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
        path: dir.display().to_string(),
        source,
    })?;
    let conn = Connection::open(db_path).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        conn.execute_batch(&format!(
            "BEGIN; {step} PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(sql)?;
    }
    Ok(conn)
}

impl Store {
    /// Opens (creating and migrating when needed) the database, replays what a previous run left in the journal,
    /// closes runs left unfinished as interrupted, and starts a run.
    pub fn open(
        config: &RecordConfig,
        station: &str,
        config_file: &str,
        counters: Arc<Counters>,
    ) -> Result<Store, StoreError> {
        let db_path = &config.database;
        let sql = |source| StoreError::Sqlite {
            path: db_path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&config.images_dir).map_err(|source| StoreError::Dir {
            path: config.images_dir.display().to_string(),
            source,
        })?;
        let conn = open_database(db_path)?;
        conn.busy_timeout(std::time::Duration::from_millis(config.busy_timeout_ms))
            .map_err(sql)?;
        let mut journal = Journal::open(&config.journal);
        if !journal.is_empty() {
            let rows = journal.read().map_err(|source| StoreError::Dir {
                path: config.journal.display().to_string(),
                source,
            })?;
            commit(&conn, db_path.parent().unwrap_or(Path::new(".")), &rows).map_err(sql)?;
            journal.clear().map_err(|source| StoreError::Dir {
                path: config.journal.display().to_string(),
                source,
            })?;
            tracing::info!(
                "journal {}: {} records of an earlier run replayed into the database",
                config.journal.display(),
                rows.len()
            );
        }
        let interrupted = conn
            .execute(
                "UPDATE runs SET end_reason = 'interrupted',
                    finished_us = COALESCE((SELECT max(decided_us) FROM parts WHERE run_id = runs.id), started_us)
                 WHERE finished_us IS NULL",
                [],
            )
            .map_err(sql)?;
        if interrupted > 0 {
            tracing::warn!("{interrupted} earlier run(s) had not been closed: marked interrupted");
        }
        let run_id = start_run(&conn, station, config_file).map_err(sql)?;
        let data_dir = db_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Store {
            conn,
            db_path: db_path.to_path_buf(),
            data_dir,
            images_dir: config.images_dir.join(format!("run-{run_id}")),
            run_id,
            written: 0,
            journal,
            held: Vec::new(),
            next_attempt: std::time::Instant::now(),
            backoff: writer::RETRY_MIN,
            counters,
            quota: config.quota.clone(),
            images_root: config.images_dir.clone(),
            images_bytes: retention::folder_bytes(&config.images_dir),
            retention_at: std::time::Instant::now(),
            trimmed_at: std::time::Instant::now(),
            images: config.images.clone(),
            outbox_max_rows: config.outbox_max_rows,
            notify: None,
        })
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Rows waiting for the database (in the journal and in memory).
    pub fn backlog(&self) -> u64 {
        self.journal.rows + self.held.len() as u64
    }
}

/// Starts a run (its row and its outbox message, in one transaction); returns its id.
fn start_run(conn: &Connection, station: &str, config_file: &str) -> rusqlite::Result<i64> {
    let tx = conn.unchecked_transaction()?;
    let now = crate::clock::Clock::new().now_us();
    tx.execute(
        "INSERT INTO runs (station, config, started_us, software_version) VALUES (?1, ?2, ?3, ?4)",
        params![station, config_file, now, crate::SOFTWARE_VERSION],
    )?;
    let run_id = tx.last_insert_rowid();
    let payload = serde_json::json!({
        "run_id": run_id, "station": station, "started_us": now,
        "software_version": crate::SOFTWARE_VERSION,
    });
    outbox::append(&tx, "run_start", &run_id.to_string(), &payload)?;
    tx.commit()?;
    Ok(run_id)
}

/// Writes rows in one transaction.
fn commit(conn: &Connection, data_dir: &Path, rows: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    rows::insert(&tx, rows, data_dir)?;
    tx.commit()
}

/// One part as the writer recorded it, for whoever listens (the live review page).
#[derive(Debug, Clone, Serialize)]
pub struct PartSummary {
    pub part_id: String,
    pub seq: u64,
    pub decided_us: i64,
    pub verdict: &'static str,
    pub score: Option<f32>,
    pub threshold: f32,
    /// The recorded reasons (JSON array of `{"code": ...}`).
    pub reasons: serde_json::Value,
    /// Relative to the data folder, when the image was kept.
    pub image_path: Option<String>,
    pub latency_ms: f64,
}

/// What the writer tells its listeners once a batch is written.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Recorded {
    /// A part was recorded.
    Part(PartSummary),
    /// The PLC received (or did not receive) a part's result.
    Plc { part_id: String, delivered: bool },
}
