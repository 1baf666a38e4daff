//! Login, logout and "who am I", and the request guards every other router uses: [`CurrentUser`] (a live
//! session, else 401; on a state-changing method also the session's CSRF token in `X-CSRF-Token`, else 403) and
//! [`Technician`] (the same, and the technician role, else 403).
//!
//! The session cookie `station_session` is HttpOnly and SameSite=Strict; `web.secure_cookies` marks it Secure
//! too, for a page served behind a TLS reverse proxy. Failed logins are throttled per account and per client
//! address ([`super::throttle`]). Logout deletes the session server-side; an open live stream notices within
//! one tick and ends.

use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::users::{self, Role, SessionUser};

const COOKIE: &str = "station_session";
const CSRF_HEADER: &str = "x-csrf-token";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
}

pub(super) fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The logged-in user of a request.
pub struct CurrentUser(pub SessionUser);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = session_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let user = state
            .db
            .call(move |conn| users::session(conn, &token).map_err(ApiError::from))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if sent != Some(user.csrf_token.as_str()) {
                return Err(ApiError::Forbidden(
                    "missing or wrong X-CSRF-Token header (reload the page)".into(),
                ));
            }
        }
        Ok(CurrentUser(user))
    }
}

/// A logged-in technician.
pub struct Technician(pub SessionUser);

impl FromRequestParts<AppState> for Technician {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.role != Role::Technician {
            return Err(ApiError::Forbidden(format!(
                "only a technician may do this; {} is an operator",
                user.name
            )));
        }
        Ok(Technician(user))
    }
}

#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
}

/// The client's address, when the server was started with connection info (`station run`/`review`).
fn client_addr(extensions: &Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    Json(form): Json<Login>,
) -> Result<Response, ApiError> {
    let mut keys = vec![format!("user:{}", form.name)];
    keys.extend(client_addr(&extensions).map(|ip| format!("addr:{ip}")));
    let locked =
        (state.throttle.lock().unwrap_or_else(|p| p.into_inner())).locked(&keys, Instant::now());
    if let Some(left) = locked {
        return Err(ApiError::TooManyRequests(format!(
            "too many failed logins for {} from this address: try again in {} s",
            form.name,
            left.as_secs().max(1)
        )));
    }
    let hours = state.web.session_hours;
    let session = state
        .db
        .call(move |conn| {
            users::login(conn, &form.name, &form.password, hours).map_err(ApiError::from)
        })
        .await?;
    let Some(session) = session else {
        let delay = (state.throttle.lock().unwrap_or_else(|p| p.into_inner()))
            .failed(&keys, Instant::now());
        tokio::time::sleep(delay).await;
        return Err(ApiError::Unauthorized);
    };
    (state.throttle.lock().unwrap_or_else(|p| p.into_inner())).succeeded(&keys);
    let secure = if state.web.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        session.token,
        hours * 3600
    );
    Ok(([(header::SET_COOKIE, cookie)], Json(session.user)).into_response())
}

async fn logout(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        state
            .db
            .call(move |conn| users::logout(conn, &token).map_err(ApiError::from))
            .await?;
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(serde_json::json!({"ok": true})),
    )
        .into_response())
}

/// The user, their CSRF token, and what the page needs to know (defect classes).
async fn me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": user,
        "defect_classes": state.web.defect_classes,
        "uncertain_margin": state.web.uncertain_margin,
        "line_running": state.tap.as_ref().is_some_and(|t| t.model.borrow().is_some()),
    }))
}
