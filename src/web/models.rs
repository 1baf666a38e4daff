//! `/api/models`: the model in force on the running line (name, version, sha256, threshold) and the model
//! versions seen in the records; `PUT /api/models/threshold` lets a technician change the running line's
//! threshold (audited; it lasts until the line stops, the config keeps the standing value).

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::{CurrentUser, Technician};
use super::{ApiError, AppState};
use crate::review;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/models", get(list))
        .route("/api/models/threshold", put(set_threshold))
}

async fn list(
    State(state): State<AppState>,
    _: CurrentUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let active = state.tap.as_ref().and_then(|t| t.model.borrow().clone());
    let recorded = state.db.call(review::recorded_models).await?;
    Ok(Json(
        serde_json::json!({ "active": active, "recorded": recorded }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Threshold {
    threshold: f32,
    /// Apply a threshold outside the recent scores' range (or not above 0) anyway.
    #[serde(default)]
    confirm: bool,
}

/// Parts judged lately by a model, for what a new threshold would do.
const RECENT_PARTS: u32 = 1000;

/// What a threshold would do to the last [`RECENT_PARTS`] parts the model scored.
#[derive(Debug, serde::Serialize)]
struct Effect {
    recent_parts: u32,
    min_score: Option<f64>,
    max_score: Option<f64>,
    reject_pct_now: f64,
    reject_pct_new: f64,
}

fn effect(
    conn: &rusqlite::Connection,
    sha256: &str,
    old: f32,
    new: f32,
) -> rusqlite::Result<Effect> {
    conn.query_row(
        "SELECT count(*), min(score), max(score),
                coalesce(100.0 * avg(score > ?2), 0), coalesce(100.0 * avg(score > ?3), 0)
         FROM (SELECT score FROM parts WHERE model_sha256 = ?1 AND score IS NOT NULL
               ORDER BY id DESC LIMIT ?4)",
        rusqlite::params![sha256, f64::from(old), f64::from(new), RECENT_PARTS],
        |r| {
            Ok(Effect {
                recent_parts: r.get(0)?,
                min_score: r.get(1)?,
                max_score: r.get(2)?,
                reject_pct_now: r.get(3)?,
                reject_pct_new: r.get(4)?,
            })
        },
    )
}

/// Why a threshold needs the technician's confirmation, if it does: not above 0 (every part rejected), or
/// outside the range of the recent scores (every or no recent part rejected).
fn needs_confirmation(threshold: f32, e: &Effect) -> Option<String> {
    let t = f64::from(threshold);
    let outside = match (e.min_score, e.max_score) {
        (Some(lo), Some(hi)) => t < lo || t > hi,
        _ => false,
    };
    (threshold <= 0.0 || outside).then(|| {
        format!(
            "threshold {threshold} is outside the recent scores ({} parts, {} to {}): about {:.1}% of them would be rejected (now {:.1}%); send \"confirm\": true to apply it",
            e.recent_parts,
            e.min_score.map_or("-".into(), |v| format!("{v:.3}")),
            e.max_score.map_or("-".into(), |v| format!("{v:.3}")),
            e.reject_pct_new,
            e.reject_pct_now
        )
    })
}

async fn set_threshold(
    State(state): State<AppState>,
    Technician(user): Technician,
    body: Result<Json<Threshold>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(Threshold { threshold, confirm }) = body.map_err(ApiError::from)?;
    if !threshold.is_finite() {
        return Err(ApiError::BadRequest(format!(
            "threshold: expected a finite number, got {threshold}"
        )));
    }
    let not_running = || ApiError::Conflict("no line is running in this process".into());
    let tap = state.tap.as_ref().ok_or_else(not_running)?;
    let active = tap.model.borrow().clone().ok_or_else(not_running)?;
    let (sha, old_threshold) = (active.sha256.clone(), active.threshold);
    let effect = state
        .db
        .call(move |conn| {
            effect(conn, &sha, old_threshold, threshold)
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
        .await?;
    if let Some(why) = needs_confirmation(threshold, &effect).filter(|_| !confirm) {
        return Err(ApiError::Conflict(why));
    }
    let mut old = None;
    tap.model.send_if_modified(|m| match m {
        Some(m) => {
            old = Some(m.threshold);
            m.threshold = threshold;
            true
        }
        None => false,
    });
    let old = old.ok_or_else(not_running)?;
    let detail = format!(
        "threshold {old} -> {threshold} (recent parts rejected {:.1}% -> {:.1}%{})",
        effect.reject_pct_now,
        effect.reject_pct_new,
        if confirm { ", confirmed" } else { "" }
    );
    tracing::info!("{} changed the {detail}", user.name);
    state
        .db
        .call(move |conn| review::audit(conn, user.user_id, "threshold", &detail))
        .await?;
    Ok(Json(
        serde_json::json!({ "old": old, "threshold": threshold, "effect": effect }),
    ))
}
