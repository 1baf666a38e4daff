//! `/api/parts`: the review queue and part lists (filtered, keyset-paged, newest first) and one part's record
//! with its reviews and per-stage timings.

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
