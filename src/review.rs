//! Reviews as data: the review queue and part records as the review page reads them, operators' reviews (an audit
//! trail that never touches the recorded verdict), line figures from the records, and the dataset export.
//!
//! Parts are read with `SELECT p.*`, so columns other capabilities add (`heatmap_path`, an acoustic score, a
//! spectrogram) reach the page without changes here. Lists page by keyset (`id < before`, newest first) so a page
//! costs the same at record 100,000 as at record 100. A part's review state is its latest review.
//! The export writes the latest review of each reviewed part in the folder layout anomalib and the trainer read:
//! `good/<part>.png`, `<defect_class>/<part>.png`, plus `labels.csv` (who, when, the original verdict).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::store::{StoreError, open_database, outbox};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Open(#[from] StoreError),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Users(#[from] crate::users::UserError),
    #[error("no part \"{0}\"")]
    NoPart(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A defect class name: it becomes a folder name in the export, so only safe characters, and never `good`.
pub fn valid_class(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "good"
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// A few connections to the database, shared by the web handlers; the work runs on tokio's blocking pool.
pub struct Db {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Db {
    /// Opens (creating and migrating when needed) the database.
    pub fn open(path: &Path) -> Result<Db, ReviewError> {
        let first = open_database(path)?;
        Ok(Db {
            path: path.to_path_buf(),
            idle: Mutex::new(vec![first]),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder that image paths in the records are relative to.
    pub fn data_dir(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).to_path_buf()
    }

    /// Runs `f` with a connection on the blocking pool.
    pub async fn call<T: Send + 'static, E: From<ReviewError> + Send + 'static>(
        self: &std::sync::Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let db = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let idle = db.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(c) => c,
                None => open_database(&db.path).map_err(ReviewError::from)?,
            };
            let result = f(&conn);
            let mut idle = db.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < 4 {
                idle.push(conn);
            }
            result
        })
        .await;
        joined.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }
}

/// What the queue and part lists can be filtered by. All optional; `queue` means "rejected or uncertain".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartFilter {
    /// Only rejected parts and uncertain passed ones.
    #[serde(default)]
    pub queue: bool,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    /// `PASS` or `REJECT`.
    pub verdict: Option<String>,
    /// A reason code (`score_over_threshold`, `frame_fault`, ...).
    pub reason: Option<String>,
    pub model_version: Option<String>,
    pub reviewed: Option<bool>,
    /// Keyset cursor: only parts with a row id below this (the `next_before` of the previous page).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// One page of parts, newest first.
#[derive(Debug, Serialize)]
pub struct Page {
    pub parts: Vec<Value>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// One review, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewRow {
    pub id: i64,
    pub part_id: String,
    pub user: String,
    pub at_us: i64,
    pub old_verdict: String,
    pub label: String,
    pub defect_class: Option<String>,
    pub comment: String,
}

/// A review to record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    /// `good` or `defect`.
    pub label: String,
    /// Required for `defect`: one of `web.defect_classes`.
    pub defect_class: Option<String>,
    #[serde(default)]
    pub comment: String,
}

const LATEST_REVIEW: &str =
    "(SELECT r.id FROM reviews r WHERE r.part_id = p.part_id ORDER BY r.id DESC LIMIT 1)";

/// A part row as JSON: every column, `reasons` parsed, `uncertain` computed, its latest review.
fn part_json(row: &Row, margin: f32) -> rusqlite::Result<Map<String, Value>> {
    let mut obj = Map::new();
    for (i, name) in row.as_ref().column_names().iter().enumerate() {
        let value = match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::from(v),
            ValueRef::Real(v) => Value::from(v),
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t).into_owned();
                if *name == "reasons" {
                    serde_json::from_str(&text).unwrap_or(Value::String(text))
                } else {
                    Value::String(text)
                }
            }
            ValueRef::Blob(_) => continue,
        };
        obj.insert(name.to_string(), value);
    }
    let score = obj.get("score").and_then(Value::as_f64);
    let threshold = obj
        .get("threshold")
        .and_then(Value::as_f64)
        .unwrap_or(f64::MAX);
    let passed = obj.get("verdict").and_then(Value::as_str) == Some("PASS");
    let uncertain = passed && score.is_some_and(|s| s >= threshold * (1.0 - f64::from(margin)));
    obj.insert("uncertain".into(), Value::Bool(uncertain));
    Ok(obj)
}

fn review_row(r: &Row) -> rusqlite::Result<ReviewRow> {
    Ok(ReviewRow {
        id: r.get("id")?,
        part_id: r.get("part_id")?,
        user: r.get("user")?,
        at_us: r.get("at_us")?,
        old_verdict: r.get("old_verdict")?,
        label: r.get("label")?,
        defect_class: r.get("defect_class")?,
        comment: r.get("comment")?,
    })
}

const REVIEW_COLUMNS: &str = "SELECT r.id, r.part_id, u.name AS user, r.at_us, r.old_verdict, r.label, r.defect_class, r.comment
     FROM reviews r JOIN users u ON u.id = r.user_id";

fn review_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<ReviewRow>> {
    conn.query_row(
        &format!("{REVIEW_COLUMNS} WHERE r.id = ?1"),
        [id],
        review_row,
    )
    .optional()
}

/// A page of parts, newest first, filtered. `margin` is `web.uncertain_margin`.
pub fn list_parts(
    conn: &Connection,
    filter: &PartFilter,
    margin: f32,
) -> Result<Page, ReviewError> {
    let limit = filter.limit.unwrap_or(50).clamp(1, 500);
    let mut clauses = vec!["1".to_string()];
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |clause: &str, value: rusqlite::types::Value| {
        args.push(value);
        clauses.push(clause.replace('?', &format!("?{}", args.len())));
    };
    if filter.queue {
        arg(
            "(p.verdict = 'REJECT' OR p.score >= p.threshold * ?)",
            f64::from(1.0 - margin).into(),
        );
    }
    if let Some(v) = &filter.verdict {
        if v != "PASS" && v != "REJECT" {
            return Err(ReviewError::Invalid(format!(
                "verdict: expected PASS or REJECT, got \"{v}\""
            )));
        }
        arg("p.verdict = ?", v.clone().into());
    }
    if let Some(from) = filter.from_us {
        arg("p.decided_us >= ?", from.into());
    }
    if let Some(to) = filter.to_us {
        arg("p.decided_us < ?", to.into());
    }
    if let Some(reason) = &filter.reason {
        arg(
            "EXISTS (SELECT 1 FROM json_each(p.reasons) j WHERE json_extract(j.value, '$.code') = ?)",
            reason.clone().into(),
        );
    }
    if let Some(version) = &filter.model_version {
        arg("p.model_version = ?", version.clone().into());
    }
    if let Some(before) = filter.before {
        arg("p.id < ?", before.into());
    }
    match filter.reviewed {
        Some(true) => {
            clauses.push("EXISTS (SELECT 1 FROM reviews r WHERE r.part_id = p.part_id)".into())
        }
        Some(false) => {
            clauses.push("NOT EXISTS (SELECT 1 FROM reviews r WHERE r.part_id = p.part_id)".into())
        }
        None => {}
    }
    let sql = format!(
        "SELECT p.*, {LATEST_REVIEW} AS review_id FROM parts p WHERE {} ORDER BY p.id DESC LIMIT {}",
        clauses.join(" AND "),
        limit + 1
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt
        .query_map(params_from_iter(args), |r| part_json(r, margin))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_before = more
        .then(|| {
            rows.last()
                .and_then(|r| r.get("id"))
                .and_then(Value::as_i64)
        })
        .flatten();
    let parts = rows
        .into_iter()
        .map(|mut obj| {
            let review = obj
                .remove("review_id")
                .and_then(|v| v.as_i64())
                .map(|id| review_by_id(conn, id))
                .transpose()?
                .flatten();
            obj.insert(
                "review".into(),
                serde_json::to_value(review).unwrap_or_default(),
            );
            Ok(Value::Object(obj))
        })
        .collect::<Result<_, ReviewError>>()?;
    Ok(Page { parts, next_before })
}

/// One part with all its reviews (oldest first) and per-stage timings in ms.
pub fn part(conn: &Connection, part_id: &str, margin: f32) -> Result<Value, ReviewError> {
    let mut obj = conn
        .query_row(
            "SELECT p.* FROM parts p WHERE p.part_id = ?1",
            [part_id],
            |r| part_json(r, margin),
        )
        .optional()?
        .ok_or_else(|| ReviewError::NoPart(part_id.to_string()))?;
    let reviews = list_reviews(conn, Some(part_id), None, 500)?;
    let us = |k: &str| obj.get(k).and_then(Value::as_i64);
    let ms = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => Value::from((b - a) as f64 / 1e3),
        _ => Value::Null,
    };
    let stages = serde_json::json!({
        "capture_ms": ms(us("triggered_us"), us("captured_us")),
        "preprocess_ms": ms(us("captured_us"), us("preprocessed_us")),
        "inference_ms": ms(us("preprocessed_us"), us("inferred_us")),
        "decision_ms": ms(us("inferred_us").or(us("triggered_us")), us("decided_us")),
        "end_to_end_ms": ms(us("triggered_us"), us("decided_us")),
        "plc_ms": ms(us("decided_us"), us("actuated_us")),
    });
    obj.insert("stages".into(), stages);
    obj.insert(
        "review".into(),
        serde_json::to_value(reviews.last()).unwrap_or_default(),
    );
    obj.insert(
        "reviews".into(),
        serde_json::to_value(reviews).unwrap_or_default(),
    );
    Ok(Value::Object(obj))
}

/// Records a review of a part by `user_id`. `classes` is `web.defect_classes`.
/// How long the same review of the same part by the same user counts as a repeat of it (one review stored).
pub const REPEAT_WINDOW_US: i64 = 10_000_000;

pub fn add_review(
    conn: &Connection,
    part_id: &str,
    user_id: i64,
    review: &NewReview,
    classes: &[String],
) -> Result<ReviewRow, ReviewError> {
    let class = review.defect_class.as_deref().filter(|c| !c.is_empty());
    match (review.label.as_str(), class) {
        ("good", None) => {}
        ("good", Some(c)) => {
            return Err(ReviewError::Invalid(format!(
                "defect_class: a part labelled good has no defect class, got \"{c}\""
            )));
        }
        ("defect", Some(c)) if classes.iter().any(|k| k == c) => {}
        ("defect", c) => {
            return Err(ReviewError::Invalid(format!(
                "defect_class: expected one of {}, got {}",
                classes.join(", "),
                c.map_or("none".into(), |c| format!("\"{c}\""))
            )));
        }
        (other, _) => {
            return Err(ReviewError::Invalid(format!(
                "label: expected \"good\" or \"defect\", got \"{other}\""
            )));
        }
    }
    if review.comment.len() > 2000 {
        return Err(ReviewError::Invalid(
            "comment: expected at most 2000 bytes".into(),
        ));
    }
    let old_verdict: String = conn
        .query_row(
            "SELECT verdict FROM parts WHERE part_id = ?1",
            [part_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| ReviewError::NoPart(part_id.to_string()))?;
    let now_us = Clock::new().now_us();
    // A repeat (a double tap, a resent request) is the same review, not a second one.
    let repeat: Option<i64> = conn
        .query_row(
            "SELECT id FROM reviews WHERE part_id = ?1 AND user_id = ?2 AND label = ?3
                 AND defect_class IS ?4 AND comment = ?5 AND at_us >= ?6
             ORDER BY id DESC LIMIT 1",
            params![
                part_id,
                user_id,
                review.label,
                class,
                review.comment,
                now_us - REPEAT_WINDOW_US
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = repeat {
        return review_by_id(conn, id)?.ok_or_else(|| ReviewError::NoPart(part_id.to_string()));
    }
    let tx = conn.unchecked_transaction()?; // the review and its outbox message, in one transaction
    tx.execute(
        "INSERT INTO reviews (part_id, user_id, at_us, old_verdict, label, defect_class, comment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            part_id,
            user_id,
            now_us,
            old_verdict,
            review.label,
            class,
            review.comment
        ],
    )?;
    let row = review_by_id(&tx, tx.last_insert_rowid())?
        .ok_or_else(|| ReviewError::NoPart(part_id.to_string()))?;
    let payload = serde_json::to_value(&row).unwrap_or_default();
    outbox::append(&tx, "review", &row.id.to_string(), &payload)?;
    tx.commit()?;
    Ok(row)
}

/// Reviews, newest first (or of one part, oldest first), paged by `before`.
pub fn list_reviews(
    conn: &Connection,
    part_id: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<ReviewRow>, ReviewError> {
    let rows = match part_id {
        Some(p) => conn
            .prepare_cached(&format!(
                "{REVIEW_COLUMNS} WHERE r.part_id = ?1 ORDER BY r.id"
            ))?
            .query_map([p], review_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => conn
            .prepare_cached(&format!(
                "{REVIEW_COLUMNS} WHERE r.id < ?1 ORDER BY r.id DESC LIMIT ?2"
            ))?
            .query_map(
                params![before.unwrap_or(i64::MAX), limit.clamp(1, 500)],
                review_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(rows)
}

/// Records a technician's setting change.
pub fn audit(
    conn: &Connection,
    user_id: i64,
    action: &str,
    detail: &str,
) -> Result<(), ReviewError> {
    let tx = conn.unchecked_transaction()?;
    let at_us = Clock::new().now_us();
    tx.execute(
        "INSERT INTO audit (user_id, at_us, action, detail) VALUES (?1, ?2, ?3, ?4)",
        params![user_id, at_us, action, detail],
    )?;
    let id = tx.last_insert_rowid();
    let payload = serde_json::json!({ "user_id": user_id, "at_us": at_us, "action": action, "detail": detail });
    outbox::append(&tx, "audit", &id.to_string(), &payload)?;
    tx.commit()?;
    Ok(())
}

/// The line's figures, from the records: the latest run's counts, the last minute's rate, latency over the last
/// 1,000 parts, the PLC's last known state, and what waits for review.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub run_id: Option<i64>,
    pub parts: u64,
    pub passed: u64,
    pub rejected: u64,
    pub yield_pct: Option<f64>,
    pub parts_per_min: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// `up` (the last result reached the PLC), `down`, `off` (no PLC), or `unknown`.
    pub plc: String,
    /// Fail-safe rejects (frame, model, deadline, overload, PLC) in the last minute.
    pub fail_safe_last_min: u64,
    pub awaiting_review: u64,
    /// The last recorded model, as `name vversion`.
    pub last_model: Option<String>,
    /// What each outbound sink has not delivered yet (the outbox backlog and its oldest message).
    pub outbox: Vec<outbox::SinkBacklog>,
}

pub fn figures(conn: &Connection, margin: f32) -> Result<Figures, ReviewError> {
    let now = Clock::new().now_us();
    let minute_ago = now - 60_000_000;
    let mut f = Figures {
        plc: "unknown".into(),
        ..Figures::default()
    };
    f.run_id = conn.query_row("SELECT max(id) FROM runs", [], |r| r.get(0))?;
    if let Some(run) = f.run_id {
        let (passed, rejected): (i64, i64) = conn.query_row(
            "SELECT count(*) FILTER (WHERE verdict = 'PASS'), count(*) FILTER (WHERE verdict = 'REJECT')
             FROM parts WHERE run_id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        f.passed = passed as u64;
        f.rejected = rejected as u64;
        f.parts = f.passed + f.rejected;
    }
    f.yield_pct = (f.parts > 0).then(|| 100.0 * f.passed as f64 / f.parts as f64);
    let (rate, fail_safe): (i64, i64) = conn.query_row(
        "SELECT count(*), count(*) FILTER (WHERE result_code = 4) FROM parts WHERE decided_us >= ?1",
        [minute_ago],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    f.parts_per_min = rate as u64;
    f.fail_safe_last_min = fail_safe as u64;
    let mut latencies = conn
        .prepare_cached("SELECT decided_us - triggered_us FROM parts ORDER BY id DESC LIMIT 1000")?
        .query_map([], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    latencies.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies
            .get(rank.clamp(1, latencies.len().max(1)) - 1)
            .map(|&us| us as f64 / 1e3)
    };
    f.latency_p50_ms = pct(50.0);
    f.latency_p99_ms = pct(99.0);
    let last_plc: Option<String> = conn
        .query_row(
            "SELECT plc_status FROM parts WHERE plc_status != 'pending' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    f.plc = match last_plc.as_deref() {
        Some("delivered") => "up",
        Some("undelivered") => "down",
        Some("off") => "off",
        _ => "unknown",
    }
    .into();
    // Queue candidates minus the reviewed ones: two index scans instead of a review lookup per part.
    f.awaiting_review = conn.query_row(
        "SELECT (SELECT count(*) FROM parts p WHERE p.verdict = 'REJECT' OR p.score >= p.threshold * ?1)
              - (SELECT count(DISTINCT r.part_id) FROM reviews r JOIN parts p ON p.part_id = r.part_id
                 WHERE p.verdict = 'REJECT' OR p.score >= p.threshold * ?1)",
        [f64::from(1.0 - margin)],
        |r| r.get::<_, i64>(0),
    )?
    .max(0) as u64;
    f.outbox = outbox::backlogs(conn)?;
    f.last_model = conn
        .query_row(
            "SELECT model_name || ' v' || model_version FROM parts ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(f)
}

/// Model versions seen in the records, with their part counts, newest first.
pub fn recorded_models(conn: &Connection) -> Result<Vec<Value>, ReviewError> {
    // Grouped on the (model_version, id) index; name and hash from each version's latest part.
    let rows = conn
        .prepare_cached(
            "SELECT p.model_name, v.model_version, p.model_sha256, v.parts FROM
               (SELECT model_version, count(*) AS parts, max(id) AS last FROM parts GROUP BY model_version) v
             JOIN parts p ON p.id = v.last ORDER BY v.last DESC",
        )?
        .query_map([], |r| {
            Ok(serde_json::json!({
                "name": r.get::<_, String>(0)?,
                "version": r.get::<_, String>(1)?,
                "sha256": r.get::<_, String>(2)?,
                "parts": r.get::<_, i64>(3)?,
            }))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// What an export wrote.
#[derive(Debug, Default, PartialEq)]
pub struct ExportSummary {
    /// Images per folder (`good`, then the defect classes), sorted by folder.
    pub per_label: Vec<(String, u64)>,
    /// Of the `good` ones: parts the station rejected (false rejects).
    pub false_rejects: u64,
    /// Parts the station passed that an operator labelled defective.
    pub escapes: u64,
    /// Reviewed parts without a kept image (nothing to export).
    pub without_image: u64,
}

/// Writes every reviewed part's image (by its latest review) under `out` (`good/`, `<class>/`) with `labels.csv`.
/// `out` must be absent or empty, so one dataset never mixes with another.
pub fn export(
    conn: &Connection,
    data_dir: &Path,
    out: &Path,
) -> Result<ExportSummary, ReviewError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReviewError::Io { path, source }
    };
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(ReviewError::Invalid(format!(
            "{}: the export folder must be empty or absent",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut stmt = conn.prepare(&format!(
        "SELECT p.part_id, p.verdict, p.image_path, r.label, r.defect_class, u.name, r.at_us
         FROM parts p JOIN reviews r ON r.id = {LATEST_REVIEW} JOIN users u ON u.id = r.user_id
         ORDER BY p.id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut summary = ExportSummary::default();
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut csv =
        String::from("file,part_id,label,defect_class,station_verdict,reviewer,reviewed_us\n");
    while let Some(r) = rows.next()? {
        let (part_id, verdict, image): (String, String, Option<String>) =
            (r.get(0)?, r.get(1)?, r.get(2)?);
        let (label, class): (String, Option<String>) = (r.get(3)?, r.get(4)?);
        let Some(image) = image else {
            summary.without_image += 1;
            continue;
        };
        let folder = match (label.as_str(), class) {
            ("good", _) => "good".to_string(),
            (_, Some(c)) if valid_class(&c) => c,
            (_, c) => {
                return Err(ReviewError::Invalid(format!(
                    "part {part_id}: review has no usable defect class ({c:?})"
                )));
            }
        };
        summary.false_rejects += u64::from(folder == "good" && verdict == "REJECT");
        summary.escapes += u64::from(folder != "good" && verdict == "PASS");
        let src = data_dir.join(&image);
        let ext = Path::new(&image)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("png");
        let file = format!("{folder}/{part_id}.{ext}");
        std::fs::create_dir_all(out.join(&folder)).map_err(io(&out.join(&folder)))?;
        std::fs::copy(&src, out.join(&file)).map_err(io(&src))?;
        *counts.entry(folder.clone()).or_default() += 1;
        let (reviewer, at_us): (String, i64) = (r.get(5)?, r.get(6)?);
        let class = if folder == "good" {
            ""
        } else {
            folder.as_str()
        };
        csv += &format!("{file},{part_id},{label},{class},{verdict},{reviewer},{at_us}\n");
    }
    std::fs::write(out.join("labels.csv"), csv).map_err(io(&out.join("labels.csv")))?;
    summary.per_label = counts.into_iter().collect();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defect_classes_are_safe_folder_names() {
        for ok in ["scratch", "spot-2", "deep_crack"] {
            assert!(valid_class(ok), "{ok}");
        }
        for bad in [
            "",
            "good",
            "../x",
            "a/b",
            "Crack",
            "spot ",
            ".",
            "..",
            &"x".repeat(65),
        ] {
            assert!(!valid_class(bad), "{bad:?}");
        }
    }
}
