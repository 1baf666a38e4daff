//! A record as it goes into SQLite: [`Row`], plain serialisable data (images already saved, their paths in the
//! row), so that the same value can be written to the database or, when the database cannot take it, to the
//! journal and replayed later. Writing is idempotent: a row replayed twice (a crash between the database commit
//! and the journal's truncation) changes nothing the second time. Each row that records something new also
//! appends its [`outbox`] message in the same transaction (a part, a PLC outcome, a run's end; shadow scores are
//! not sent), once: a replayed row appends nothing.

use std::path::Path;

use rusqlite::{Transaction, params};

use super::chain;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::outbox;

pub use crate::part::record::{AcousticRow, PartRow};

/// One write to the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "row", rename_all = "snake_case")]
pub enum Row {
    Part(Box<PartRow>),
    Shadow(ShadowRow),
    /// What became of a part's result at the PLC.
    Delivered {
        part_id: String,
        actuated_us: i64,
        #[serde(default)]
        result_written_us: Option<i64>,
        #[serde(default)]
        reject_on_us: Option<i64>,
        #[serde(default)]
        reject_pulse: Option<String>,
    },
    PulseEnded {
        part_id: String,
        reject_off_us: i64,
    },
    Undelivered {
        part_id: String,
        detail: String,
        #[serde(default)]
        reject_pulse: Option<String>,
    },
    RejectedAtGate {
        part_id: String,
        detail: String,
    },
    /// A run ended (normally, or by a signal).
    RunEnd {
        run_id: i64,
        finished_us: i64,
    },
}

/// A shadow model's score of a part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRow {
    pub part_id: String,
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    pub score: Option<f32>,
    pub threshold: f32,
    pub error: Option<String>,
    pub scored_us: i64,
}

/// Writes `rows` in the transaction, in order.
/// Each part row and each event is appended to the record chain once (a replayed row that changes nothing adds
/// no entry); `data_dir` is where the rows' image paths are relative to.
pub fn insert(tx: &Transaction, rows: &[Row], data_dir: &Path) -> rusqlite::Result<()> {
    let mut part = tx.prepare_cached(
        "INSERT OR IGNORE INTO parts (part_id, run_id, seq, origin, truth, triggered_us, captured_us,
            preprocessed_us, inferred_us, decided_us, score, threshold, verdict, reasons, result_code, plc_status,
            model_name, model_version, model_sha256, image_path, heatmap_path, plc_part_id, encoder_at_trigger,
            trigger_uncertainty_us, heatmap_roi, images_skipped, calibration_id, mm_per_px)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
            ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
    )?;
    let mut acoustic = tx.prepare_cached(
        "UPDATE parts SET acoustic_score = ?2, acoustic_threshold = ?3, acoustic_model_name = ?4,
            acoustic_model_version = ?5, acoustic_model_sha256 = ?6, acoustic_truth = ?7, spectrogram_path = ?8
         WHERE part_id = ?1",
    )?;
    // Once per part (a replayed row changes nothing); the attempt counts the serial's earlier rows.
    let mut identity = tx.prepare_cached(
        "UPDATE parts SET identity_source = ?2, scan_raw = ?3, scan_symbology = ?4, serial = ?5, gtin = ?6,
            lot = ?7, expiry = ?8, production_date = ?9, gs1_fields = ?10, identity_error = ?11,
            attempt = 1 + (SELECT count(*) FROM parts p WHERE p.serial = ?5 AND p.id < parts.id),
            previous_part_id =
                (SELECT p.part_id FROM parts p WHERE p.serial = ?5 AND p.id < parts.id ORDER BY p.id DESC LIMIT 1)
         WHERE part_id = ?1 AND identity_source IS NULL",
    )?;
    let mut delivered = tx.prepare_cached(
        "UPDATE parts SET actuated_us = ?2, result_written_us = ?3, reject_on_us = ?4, reject_pulse = ?5,
            plc_status = 'delivered'
         WHERE part_id = ?1",
    )?;
    let mut pulse_ended =
        tx.prepare_cached("UPDATE parts SET reject_off_us = ?2 WHERE part_id = ?1")?;
    let mut undelivered = tx.prepare_cached(
        "UPDATE parts SET plc_status = 'undelivered', verdict = 'REJECT',
            result_code = CASE WHEN result_code = 1 THEN 4 ELSE result_code END,
            reasons = json_insert(reasons, '$[#]', json_object('code', 'plc_undelivered', 'detail', ?2)),
            reject_pulse = COALESCE(?3, reject_pulse)
         WHERE part_id = ?1 AND plc_status != 'undelivered'",
    )?;
    let mut at_gate = tx.prepare_cached(
        "UPDATE parts SET verdict = 'REJECT', result_code = 4,
            reasons = json_insert(reasons, '$[#]', json_object('code', 'verdict_late_at_gate', 'detail', ?2))
         WHERE part_id = ?1
           AND NOT EXISTS (SELECT 1 FROM json_each(reasons) WHERE json_extract(value, '$.code') = 'verdict_late_at_gate')",
    )?;
    let mut shadow = tx.prepare_cached(
        "INSERT OR REPLACE INTO shadow_scores (part_id, model_name, model_version, model_sha256, score,
            threshold, error, scored_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut run_end = tx.prepare_cached(
        "UPDATE runs SET finished_us = ?2, end_reason = COALESCE(end_reason, 'completed') WHERE id = ?1",
    )?;
    for row in rows {
        // Rows changed: a row that changed nothing (replayed, or already applied) appends no message.
        let changed = match row {
            Row::Part(r) => {
                let added = part.execute(params![
                    r.part_id,
                    r.run_id,
                    r.seq as i64,
                    r.origin,
                    r.truth,
                    r.triggered_us,
                    r.captured_us,
                    r.preprocessed_us,
                    r.inferred_us,
                    r.decided_us,
                    r.score.map(f64::from),
                    f64::from(r.threshold),
                    r.verdict,
                    r.reasons,
                    r.result_code,
                    r.plc_status,
                    r.model_name,
                    r.model_version,
                    r.model_sha256,
                    r.image_path,
                    r.heatmap_path,
                    r.plc_part_id,
                    r.encoder,
                    r.trigger_uncertainty_us,
                    r.heatmap_roi,
                    r.images_skipped,
                    r.calibration_id,
                    r.mm_per_px,
                ])?;
                if let Some(a) = &r.acoustic {
                    acoustic.execute(params![
                        r.part_id,
                        a.score.map(f64::from),
                        f64::from(a.threshold),
                        a.model_name,
                        a.model_version,
                        a.model_sha256,
                        a.truth,
                        a.spectrogram_path,
                    ])?;
                }
                if let Some(i) = &r.identity {
                    identity.execute(params![
                        r.part_id,
                        i.source,
                        i.raw,
                        i.symbology,
                        i.serial,
                        i.gtin,
                        i.lot,
                        i.expiry,
                        i.production_date,
                        i.gs1_fields,
                        i.error,
                    ])?;
                }
                added
            }
            Row::Shadow(s) => shadow.execute(params![
                s.part_id,
                s.model_name,
                s.model_version,
                s.model_sha256,
                s.score.map(f64::from),
                f64::from(s.threshold),
                s.error,
                s.scored_us,
            ])?,
            Row::Delivered {
                part_id,
                actuated_us,
                result_written_us,
                reject_on_us,
                reject_pulse,
            } => delivered.execute(params![
                part_id,
                actuated_us,
                result_written_us,
                reject_on_us,
                reject_pulse
            ])?,
            Row::PulseEnded {
                part_id,
                reject_off_us,
            } => pulse_ended.execute(params![part_id, reject_off_us])?,
            Row::Undelivered {
                part_id,
                detail,
                reject_pulse,
            } => undelivered.execute(params![part_id, detail, reject_pulse])?,
            Row::RejectedAtGate { part_id, detail } => at_gate.execute(params![part_id, detail])?,
            Row::RunEnd {
                run_id,
                finished_us,
            } => run_end.execute(params![run_id, finished_us])?,
        };
        if let (true, Some((kind, key, payload))) = (changed > 0, message(row)) {
            outbox::append(tx, kind, &key, &payload)?;
            chain_row(tx, row, kind, &key, data_dir)?;
        }
    }
    Ok(())
}

/// Chains a row that changed the records (see `chain.rs`): a part with its files' hashes, an event as written.
fn chain_row(
    tx: &Transaction,
    row: &Row,
    kind: &str,
    key: &str,
    data_dir: &Path,
) -> rusqlite::Result<()> {
    let payload = match row {
        Row::Part(r) => serde_json::to_string(&**r),
        other => serde_json::to_string(other),
    }
    .unwrap_or_default();
    let files = match row {
        Row::Part(r) => chain::files_json(data_dir, r),
        _ => "[]".into(),
    };
    chain::append(tx, kind, key, &payload, &files)
}

/// A row's outbox message: its kind, the record's stable id, and the payload (none for shadow scores).
fn message(row: &Row) -> Option<(&'static str, String, serde_json::Value)> {
    Some(match row {
        Row::Part(r) => ("part", r.part_id.clone(), part_payload(r)),
        Row::Shadow(_) => return None,
        Row::Delivered {
            part_id,
            actuated_us,
            result_written_us,
            reject_on_us,
            reject_pulse,
        } => (
            "plc_delivered",
            part_id.clone(),
            json!({
                "part_id": part_id, "outcome": "delivered", "actuated_us": actuated_us,
                "result_written_us": result_written_us, "reject_on_us": reject_on_us,
                "reject_pulse": reject_pulse,
            }),
        ),
        Row::PulseEnded {
            part_id,
            reject_off_us,
        } => (
            "pulse_ended",
            part_id.clone(),
            json!({ "part_id": part_id, "reject_off_us": reject_off_us }),
        ),
        Row::Undelivered {
            part_id,
            detail,
            reject_pulse,
        } => (
            "plc_undelivered",
            part_id.clone(),
            json!({
                "part_id": part_id, "outcome": "undelivered", "detail": detail,
                "reject_pulse": reject_pulse, "verdict": "REJECT", "reason": "plc_undelivered",
            }),
        ),
        Row::RejectedAtGate { part_id, detail } => (
            "rejected_at_gate",
            part_id.clone(),
            json!({
                "part_id": part_id, "detail": detail, "verdict": "REJECT",
                "reason": "verdict_late_at_gate",
            }),
        ),
        Row::RunEnd {
            run_id,
            finished_us,
        } => (
            "run_end",
            run_id.to_string(),
            json!({ "run_id": run_id, "finished_us": finished_us }),
        ),
    })
}

/// A part's outbox message: its verdict and why, its score and the models that judged it, its times.
fn part_payload(r: &PartRow) -> serde_json::Value {
    let reasons: serde_json::Value = serde_json::from_str(&r.reasons).unwrap_or_default();
    json!({
        "part_id": r.part_id,
        "run_id": r.run_id,
        "seq": r.seq,
        "origin": r.origin,
        "verdict": r.verdict,
        "reasons": reasons,
        "result_code": r.result_code,
        "score": r.score,
        "threshold": r.threshold,
        "model": { "name": r.model_name, "version": r.model_version, "sha256": r.model_sha256 },
        "acoustic": r.acoustic.as_ref().map(|a| json!({
            "score": a.score, "threshold": a.threshold,
            "model": { "name": a.model_name, "version": a.model_version, "sha256": a.model_sha256 },
        })),
        "triggered_us": r.triggered_us,
        "decided_us": r.decided_us,
        "plc_part_id": r.plc_part_id,
        "identity": r.identity.as_ref().map(|i| json!({
            "source": i.source, "serial": i.serial, "gtin": i.gtin, "lot": i.lot, "error": i.error,
        })),
        "calibration_id": r.calibration_id,
        "image_path": r.image_path,
        "images_skipped": r.images_skipped,
    })
}
