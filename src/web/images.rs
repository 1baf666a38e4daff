//! `/api/images/{path}`: image files of the records (part images, heat maps, later spectrograms), by their path
//! relative to the data folder as the records store it. A path that is absolute, holds `..` (also when
//! percent-encoded: the router decodes before this check), or resolves outside the data folder through a
//! symbolic link is refused; only image file types are served.

use std::path::{Component, Path as FsPath};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::auth::CurrentUser;
use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/images/{*path}", get(image))
}

fn content_type(path: &FsPath) -> Option<&'static str> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "bmp" => Some("image/bmp"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

async fn image(
    State(state): State<AppState>,
    _: CurrentUser,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let outside = || ApiError::BadRequest(format!("image path \"{path}\" leaves the data folder"));
    let relative = FsPath::new(&path);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        || path.contains('\\')
    {
        return Err(outside());
    }
    let kind = content_type(relative)
        .ok_or_else(|| ApiError::BadRequest(format!("\"{path}\" is not an image file")))?;
    let missing = || ApiError::NotFound(format!("no image \"{path}\""));
    let full = state
        .data_dir
        .join(relative)
        .canonicalize()
        .map_err(|_| missing())?;
    if !full.starts_with(state.data_dir.as_path()) {
        return Err(outside());
    }
    let bytes = tokio::fs::read(&full).await.map_err(|_| missing())?;
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "private, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}
