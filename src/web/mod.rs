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
pub mod throttle;

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
    /// Failed logins per account and client address.
    pub throttle: Arc<std::sync::Mutex<throttle::Throttle>>,
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
            throttle: Arc::default(),
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
    TooManyRequests(String),
    /// A request the extractors refused, with the status they chose (e.g. 413 for a body over the limit).
    Rejected(StatusCode, String),
    Internal(String),
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::Rejected(e.status(), e.body_text()),
            _ => ApiError::BadRequest(e.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "log in first".to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::TooManyRequests(m) => (StatusCode::TOO_MANY_REQUESTS, m),
            ApiError::Rejected(status, m) => (status, m),
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
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Every request: the Host must be an IP address, `localhost` or one of `web.allowed_hosts` (a DNS-rebinding
/// page names its own host), and a state-changing request's Origin, when sent, must be that host. API answers
/// and images are marked `Cache-Control: no-store` (a shared PC keeps nothing after logout).
async fn guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    if let Some(host) = &host {
        if !host_allowed(host, &state.web.allowed_hosts) {
            return ApiError::Forbidden(format!(
                "host \"{host}\" is not allowed: use the station's address, or add the name to web.allowed_hosts"
            ))
            .into_response();
        }
        let safe = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if let Some(origin) = origin.filter(|_| !safe) {
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            if !origin_host.eq_ignore_ascii_case(host) {
                return ApiError::Forbidden(format!(
                    "origin \"{origin}\" is not this page (\"{host}\")"
                ))
                .into_response();
            }
        }
    }
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    if api {
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    res
}

/// `host` (with or without its port) is an IP address, `localhost`, or an allowed name.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if let Some(v6) = host.strip_prefix('[') {
        return v6
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name == "localhost"
        || name.parse::<std::net::Ipv4Addr>().is_ok()
        || allowed.iter().any(|a| a == name)
}

/// Binds the review page's address (port 0: any free port).
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Serves until the task is dropped (live event streams never end on their own, so there is no graceful stop).
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
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
