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
}

async fn set_threshold(
    State(state): State<AppState>,
    Technician(user): Technician,
    body: Result<Json<Threshold>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(Threshold { threshold }) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if !threshold.is_finite() {
        return Err(ApiError::BadRequest(format!(
            "threshold: expected a finite number, got {threshold}"
        )));
    }
    let not_running = || ApiError::Conflict("no line is running in this process".into());
    let tap = state.tap.as_ref().ok_or_else(not_running)?;
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
    let detail = format!("threshold {old} -> {threshold}");
    tracing::info!("{} changed the {detail}", user.name);
    state
        .db
        .call(move |conn| review::audit(conn, user.user_id, "threshold", &detail))
        .await?;
    Ok(Json(
        serde_json::json!({ "old": old, "threshold": threshold }),
    ))
}
