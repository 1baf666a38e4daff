//! `/api/reviews`: record an operator's verdict on a part (confirm defect with a class, override to good, flag a
//! passed part as an escape) and list the audit trail. A review never changes the part's recorded verdict.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::CurrentUser;
use super::{ApiError, AppState};
use crate::review::{self, NewReview, ReviewRow};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/reviews", get(list).post(add))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    part_id: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

async fn list(
    State(state): State<AppState>,
    _: CurrentUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<ReviewRow>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let rows = state
        .db
        .call(move |conn| {
            review::list_reviews(conn, q.part_id.as_deref(), q.before, q.limit.unwrap_or(100))
        })
        .await?;
    Ok(Json(rows))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddReview {
    part_id: String,
    label: String,
    defect_class: Option<String>,
    #[serde(default)]
    comment: String,
}

async fn add(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Result<Json<AddReview>, JsonRejection>,
) -> Result<(StatusCode, Json<ReviewRow>), ApiError> {
    let Json(body) = body.map_err(ApiError::from)?;
    let classes = state.web.defect_classes.clone();
    let review = NewReview {
        label: body.label,
        defect_class: body.defect_class,
        comment: body.comment,
    };
    let row = state
        .db
        .call(move |conn| review::add_review(conn, &body.part_id, user.user_id, &review, &classes))
        .await?;
    Ok((StatusCode::CREATED, Json(row)))
}
