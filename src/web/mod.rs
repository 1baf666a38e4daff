//! The operator review web page and its JSON API (axum), over the station's records.
//!
//! One router per resource: [`auth`] (login, logout, who am I), [`parts`] (the review queue and part records),
//! [`images`] (image files under the data folder, nothing outside it), [`reviews`] (operators' verdicts),
//! [`stats`] (line figures and the live event stream), [`models`] (the model in force; technicians change its
//! threshold). The pages themselves are static files built in from `src/web/assets/` (plain HTML, CSS and JS).
//! `station run` serves it beside the line, with the line's [`LineTap`] for live events; `station review` serves
//! it alone over an existing data folder. Every API route but login answers 401 without a session; every
//! state-changing one also needs the session's CSRF token. See docs/API.md.

pub mod auth;
pub mod config;
pub mod images;
pub mod models;
pub mod parts;
pub mod reviews;
pub mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::live::LineTap;
use crate::review::{Db, ReviewError};
pub use config::WebConfig;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Db>,
    /// Canonical data folder: image paths must resolve inside it.
    pub data_dir: Arc<PathBuf>,
    pub web: Arc<WebConfig>,
    /// Present when the line runs in this process.
    pub tap: Option<LineTap>,
    /// The last figures from the records and when they were computed: shared by all clients, so the live
    /// streams of many pages cost one count of the records per [`stats::FIGURES_TTL`].
    pub figures: Arc<std::sync::Mutex<Option<(std::time::Instant, crate::review::Figures)>>>,
}

impl AppState {
    /// Opens the database (migrating it when needed) for the web server.
    pub fn open(
        database: &std::path::Path,
        web: &WebConfig,
        tap: Option<LineTap>,
    ) -> Result<AppState, ReviewError> {
        let db = Db::open(database)?;
        let dir = db.data_dir();
        let data_dir = dir.canonicalize().map_err(|source| ReviewError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(AppState {
            db: Arc::new(db),
            data_dir: Arc::new(data_dir),
            web: Arc::new(web.clone()),
            tap,
            figures: Arc::default(),
        })
    }
}

/// An API failure: its status and a one-line message, as `{"error": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "log in first".to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Internal(m) => {
                tracing::error!("review page: {m}");
                (StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::NoPart(_) => ApiError::NotFound(e.to_string()),
            ReviewError::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::users::UserError> for ApiError {
    fn from(e: crate::users::UserError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

fn pages() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/login",
            get(|| async { page("text/html; charset=utf-8", LOGIN_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// The whole site: pages and API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(pages())
        .merge(auth::router())
        .merge(parts::router())
        .merge(images::router())
        .merge(reviews::router())
        .merge(stats::router())
        .merge(models::router())
        .fallback(|| async { ApiError::NotFound("no such page".into()) })
        .with_state(state)
}

/// Binds the review page's address (port 0: any free port).
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Serves until the task is dropped (live event streams never end on their own, so there is no graceful stop).
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// Opens the database, binds `web.listen` and serves in a task; returns the bound address.
pub async fn start(
    database: &std::path::Path,
    web: &WebConfig,
    tap: Option<LineTap>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>), ReviewError> {
    let state = AppState::open(database, web, tap)?;
    let bind_error = |source| ReviewError::Io {
        path: format!("review page address {} (web.bind, web.port)", web.listen),
        source,
    };
    let listener = bind(web.listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    tracing::info!("review page: http://{addr}/");
    Ok((addr, tokio::spawn(serve(listener, state))))
}
