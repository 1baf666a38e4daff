//! `/api/parts`: the review queue and part lists (filtered, keyset-paged, newest first) and one part's record
//! with its reviews and per-stage timings; `/api/trace/{key}` a part's history from its serial, part id or PLC part
//! ID, and `/api/lots/{lot}` a lot's figures and parts (see `crate::trace`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};

use super::auth::CurrentUser;
use super::{ApiError, AppState};
use crate::review::{self, Page, PartFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/parts", get(list))
        .route("/api/parts/{part_id}", get(one))
        .route("/api/trace/{key}", get(history))
        .route("/api/lots/{lot}", get(lot))
}

async fn history(
    State(state): State<AppState>,
    _: CurrentUser,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let margin = state.web.uncertain_margin;
    let found = state
        .db
        .call(move |conn| crate::trace::part_history(conn, &key, margin))
        .await?;
    Ok(Json(found))
}

async fn lot(
    State(state): State<AppState>,
    _: CurrentUser,
    Path(lot): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let found = state
        .db
        .call(move |conn| crate::trace::lot(conn, &lot))
        .await?;
    Ok(Json(found))
}

async fn list(
    State(state): State<AppState>,
    _: CurrentUser,
    filter: Result<Query<PartFilter>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(filter) = filter.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let margin = state.web.uncertain_margin;
    let page = state
        .db
        .call(move |conn| review::list_parts(conn, &filter, margin))
        .await?;
    Ok(Json(page))
}

async fn one(
    State(state): State<AppState>,
    _: CurrentUser,
    Path(part_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let margin = state.web.uncertain_margin;
    let part = state
        .db
        .call(move |conn| review::part(conn, &part_id, margin))
        .await?;
    Ok(Json(part))
}
