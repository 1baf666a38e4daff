//! Records: one SQLite row per part (WAL mode), and the images of rejected parts (plus a sample of passed ones)
//! in the data folder, their path in the row.
//!
//! The writer is a tokio task fed by a bounded channel; it batches what has arrived and writes each batch in one
//! transaction on tokio's blocking pool. A part's row is inserted when it gets its verdict, whatever the PLC's
//! state; the PLC stage later fills in `actuated_us` and `plc_status`. A result the PLC never received turns the
//! recorded verdict into REJECT with a `plc_undelivered` reason: the part must be treated as suspect.
//! The schema is versioned (`PRAGMA user_version`) so later capabilities (reviews, acoustic scores, barcodes,
//! lots) add columns by migration.

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::mpsc::Receiver;

pub mod config;

use crate::part::record::Drawing;
pub use config::RecordConfig;

pub use crate::part::record::{AcousticRecord, PartRecord, PlcOutcome, RecordMsg};

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

/// The open database and image folder of one run.
pub struct Store {
    conn: Connection,
    db_path: PathBuf,
    data_dir: PathBuf,
    images_dir: PathBuf,
    pub run_id: i64,
    pub written: u64,
    pub write_errors: u64,
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
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_AUDIO, SCHEMA_REVIEWS, SCHEMA_SHADOW];

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

/// Opens the database, creating its folder and bringing its schema up to date (WAL, a 5 s busy timeout).
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
    /// Opens (creating and migrating when needed) the database and starts a run.
    pub fn open(
        db_path: &Path,
        images_dir: &Path,
        station: &str,
        config_file: &str,
    ) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: db_path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(images_dir).map_err(|source| StoreError::Dir {
            path: images_dir.display().to_string(),
            source,
        })?;
        let conn = open_database(db_path)?;
        let now = crate::clock::Clock::new().now_us();
        conn.execute(
            "INSERT INTO runs (station, config, started_us) VALUES (?1, ?2, ?3)",
            params![station, config_file, now],
        )
        .map_err(sql)?;
        let run_id = conn.last_insert_rowid();
        let data_dir = db_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Store {
            conn,
            db_path: db_path.to_path_buf(),
            data_dir,
            images_dir: images_dir.join(format!("run-{run_id}")),
            run_id,
            written: 0,
            write_errors: 0,
            notify: None,
        })
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Writes a batch in one transaction. Images are written first so a row never points at a missing file.
    fn write_batch(&mut self, batch: Vec<RecordMsg>) {
        let mut rows = Vec::with_capacity(batch.len());
        for msg in batch {
            match msg {
                RecordMsg::Insert(mut record) => {
                    let image = record.image.take();
                    let image_path = image
                        .as_ref()
                        .and_then(|img| self.save_image(&record.part_id, img));
                    let name = format!("{}.heat", record.part_id);
                    record.heatmap_path = match (&image_path, record.heatmap.take()) {
                        (Some(_), Some(drawing)) => {
                            self.save_drawing(&name, &*drawing, image.as_ref())
                        }
                        _ => None,
                    };
                    if let Some(a) = record.acoustic.as_mut() {
                        let name = format!("{}.spectrogram", record.part_id);
                        a.spectrogram_path = a.spectrogram.take().and_then(|drawing| {
                            self.save_drawing(&name, &*drawing, image.as_ref())
                        });
                    }
                    rows.push((RecordMsg::Insert(record), image_path));
                }
                other => rows.push((other, None)),
            }
        }
        if let Err(err) = self.insert_rows(&rows) {
            self.write_errors += rows.len() as u64;
            tracing::error!(
                "database {}: cannot write {} records: {err}",
                self.db_path.display(),
                rows.len()
            );
        } else if let Some(notify) = &self.notify {
            for (msg, image_path) in rows {
                // An error only means that no page is listening.
                if let Some(event) = recorded(msg, image_path) {
                    let _ = notify.send(event);
                }
            }
        }
    }

    /// Draws an image of the part (heat map, spectrogram) and saves it as `<name>.png`; a failed drawing is
    /// logged and leaves no file.
    fn save_drawing(
        &mut self,
        name: &str,
        drawing: &dyn Drawing,
        frame: Option<&Mat>,
    ) -> Option<String> {
        match drawing.draw(frame) {
            Ok(image) => self.save_image(name, &image),
            Err(e) => {
                tracing::error!("{name}: cannot draw it: {e}");
                None
            }
        }
    }

    /// Saves `<name>.png` in the run's image folder; returns its path relative to the data folder.
    fn save_image(&mut self, name: &str, image: &Mat) -> Option<String> {
        if let Err(e) = std::fs::create_dir_all(&self.images_dir) {
            tracing::error!("cannot create {}: {e}", self.images_dir.display());
            return None;
        }
        let path = self.images_dir.join(format!("{name}.png"));
        match imgcodecs::imwrite(&path, image, &Vector::new()) {
            Ok(true) => Some(
                path.strip_prefix(&self.data_dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned(),
            ),
            other => {
                tracing::error!("cannot write image {}: {other:?}", path.display());
                None
            }
        }
    }

    fn insert_rows(&mut self, rows: &[(RecordMsg, Option<String>)]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO parts (part_id, run_id, seq, origin, truth, triggered_us, captured_us, preprocessed_us,
                    inferred_us, decided_us, score, threshold, verdict, reasons, result_code, plc_status,
                    model_name, model_version, model_sha256, image_path, heatmap_path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
            )?;
            let mut delivered = tx.prepare_cached(
                "UPDATE parts SET actuated_us = ?2, plc_status = 'delivered' WHERE part_id = ?1",
            )?;
            let mut acoustic = tx.prepare_cached(
                "UPDATE parts SET acoustic_score = ?2, acoustic_threshold = ?3, acoustic_model_name = ?4,
                    acoustic_model_version = ?5, acoustic_model_sha256 = ?6, acoustic_truth = ?7, spectrogram_path = ?8
                 WHERE part_id = ?1",
            )?;
            let mut undelivered = tx.prepare_cached(
                "UPDATE parts SET plc_status = 'undelivered', verdict = 'REJECT',
                    reasons = json_insert(reasons, '$[#]', json_object('code', 'plc_undelivered', 'detail', ?2))
                 WHERE part_id = ?1",
            )?;
            let mut at_gate = tx.prepare_cached(
                "UPDATE parts SET verdict = 'REJECT', result_code = 4,
                    reasons = json_insert(reasons, '$[#]', json_object('code', 'verdict_late_at_gate', 'detail', ?2))
                 WHERE part_id = ?1",
            )?;
            let mut shadow = tx.prepare_cached(
                "INSERT OR REPLACE INTO shadow_scores (part_id, model_name, model_version, model_sha256, score,
                    threshold, error, scored_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (msg, image_path) in rows {
                match msg {
                    RecordMsg::Shadow(s) => {
                        shadow.execute(params![
                            s.part_id,
                            s.model.name,
                            s.model.version,
                            s.model.sha256,
                            s.score.as_ref().ok().map(|v| f64::from(*v)),
                            f64::from(s.model.threshold),
                            s.score.as_ref().err(),
                            s.scored_us,
                        ])?;
                    }
                    RecordMsg::Insert(r) => {
                        insert.execute(params![
                            r.part_id,
                            self.run_id,
                            r.seq as i64,
                            r.origin,
                            r.truth,
                            r.triggered_us,
                            r.captured_us,
                            r.preprocessed_us,
                            r.inferred_us,
                            r.decided_us,
                            r.score.map(f64::from),
                            f64::from(r.model.threshold),
                            r.verdict.as_str(),
                            r.reasons_json,
                            r.result_code,
                            r.plc_status,
                            r.model.name,
                            r.model.version,
                            r.model.sha256,
                            image_path,
                            r.heatmap_path,
                        ])?;
                        if let Some(a) = &r.acoustic {
                            acoustic.execute(params![
                                r.part_id,
                                a.score.map(f64::from),
                                f64::from(a.model.threshold),
                                a.model.name,
                                a.model.version,
                                a.model.sha256,
                                a.truth,
                                a.spectrogram_path,
                            ])?;
                        }
                    }
                    RecordMsg::Actuated { part_id, outcome } => match outcome {
                        PlcOutcome::Delivered { actuated_us } => {
                            delivered.execute(params![part_id, actuated_us])?;
                        }
                        PlcOutcome::Undelivered { detail } => {
                            undelivered.execute(params![part_id, detail])?;
                        }
                        PlcOutcome::RejectedAtGate { detail } => {
                            at_gate.execute(params![part_id, detail])?;
                        }
                    },
                }
            }
        }
        tx.commit()?;
        self.written += rows.len() as u64;
        Ok(())
    }

    fn finish(&mut self) {
        let now = crate::clock::Clock::new().now_us();
        if let Err(e) = self.conn.execute(
            "UPDATE runs SET finished_us = ?1 WHERE id = ?2",
            params![now, self.run_id],
        ) {
            tracing::error!(
                "database {}: cannot close run {}: {e}",
                self.db_path.display(),
                self.run_id
            );
        }
    }
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

fn recorded(msg: RecordMsg, image_path: Option<String>) -> Option<Recorded> {
    Some(match msg {
        RecordMsg::Insert(r) => Recorded::Part(PartSummary {
            seq: r.seq,
            decided_us: r.decided_us,
            verdict: r.verdict.as_str(),
            score: r.score,
            threshold: r.model.threshold,
            reasons: serde_json::from_str(&r.reasons_json).unwrap_or_default(),
            image_path,
            latency_ms: (r.decided_us - r.triggered_us) as f64 / 1e3,
            part_id: r.part_id,
        }),
        RecordMsg::Actuated { part_id, outcome } => Recorded::Plc {
            part_id,
            delivered: matches!(outcome, PlcOutcome::Delivered { .. }),
        },
        RecordMsg::Shadow(_) => return None,
    })
}

/// The writer task: batches messages until the channel closes, then closes the run. Returns the store.
pub async fn run_writer(mut store: Store, mut rx: Receiver<RecordMsg>) -> Store {
    const BATCH: usize = 256;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        store = match tokio::task::spawn_blocking(move || {
            store.write_batch(batch);
            store
        })
        .await
        {
            Ok(store) => store,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
    }
    tokio::task::spawn_blocking(move || {
        store.finish();
        store
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}
