//! `/api/stats`: the line's figures (counts, yield, parts/min, latency p50/p99, PLC link, model, alerts);
//! `/api/live`: the same every 2 s plus every part as it is recorded, as server-sent events (`part`, `plc`,
//! `stats`, and `lagged` when this client fell behind and missed parts).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::auth::CurrentUser;
use super::{ApiError, AppState};
use crate::live::LiveEvent;
use crate::metrics::read;
use crate::review;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/live", get(live))
}

/// How long figures from the records are reused (counting a large table is the costly part).
pub const FIGURES_TTL: Duration = Duration::from_secs(3);

/// Figures from the records (cached for [`FIGURES_TTL`]): the page counts what was recorded, never what the
/// line merely judged; records still on their way (the journal) are shown as an alert.
async fn figures(state: &AppState) -> Result<review::Figures, ApiError> {
    let cached = state
        .figures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|(at, _)| at.elapsed() < FIGURES_TTL)
        .map(|(_, f)| f.clone());
    let figures = match cached {
        Some(f) => f,
        None => {
            let margin = state.web.uncertain_margin;
            let f = state
                .db
                .call(move |conn| review::figures(conn, margin))
                .await?;
            *state.figures.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((std::time::Instant::now(), f.clone()));
            f
        }
    };
    Ok(figures)
}

/// Figures, the running line's state, and the alerts to show at the top of the page.
async fn snapshot(state: &AppState) -> Result<Value, ApiError> {
    let figures = figures(state).await?;
    let model = state.tap.as_ref().and_then(|t| t.model.borrow().clone());
    let running = model.is_some();
    let counters = state.tap.as_ref().map(|t| {
        let c = &t.counters;
        json!({
            "frame_faults": read(&c.frame_faults),
            "model_errors": read(&c.model_errors),
            "deadline_misses": read(&c.deadline_misses),
            "overloaded": read(&c.overloaded),
            "plc_outages": read(&c.plc_outages),
            "plc_undelivered": read(&c.plc_undelivered),
            "parts_judged": read(&c.parts),
            "records_waiting": read(&c.records_waiting),
            "records_alarm": read(&c.records_alarm) > 0,
            "records_lost": read(&c.records_lost),
            "record_write_failures": read(&c.record_write_failures),
            "images_failed": read(&c.images_failed),
            "images_skipped": read(&c.images_skipped),
            "images_pruned": read(&c.images_pruned),
            "images_mb": read(&c.images_bytes) as f64 / (1024.0 * 1024.0),
        })
    });
    let mut alerts = Vec::new();
    if !running {
        alerts.push("line not running: showing the records".to_string());
    }
    if running && figures.plc == "down" {
        alerts.push("PLC link down: results are not reaching the PLC".into());
    }
    if let Some(tap) = state.tap.as_ref().filter(|_| running) {
        let c = &tap.counters;
        if read(&c.records_alarm) > 0 {
            alerts.push(
                "RECORDS ALARM: neither the database nor the journal takes records; the PLC sees READY low".into(),
            );
        }
        let waiting = read(&c.records_waiting);
        if waiting > 0 {
            alerts.push(format!(
                "{waiting} record(s) wait in the journal: the database refuses writes (see the log)"
            ));
        }
        if read(&c.records_lost) > 0 {
            alerts.push(format!("{} record(s) LOST", read(&c.records_lost)));
        }
        if read(&c.images_skipped) > 0 {
            alerts.push(format!(
                "{} image(s) skipped: the image writer was behind (record.image_queue_mb); every part was still judged and recorded",
                read(&c.images_skipped)
            ));
        }
        if read(&c.images_failed) > 0 {
            alerts.push(format!(
                "{} image(s) could not be written (disk full or read-only?)",
                read(&c.images_failed)
            ));
        }
    }
    for (key, left_s) in state
        .throttle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .lockouts(std::time::Instant::now())
    {
        alerts.push(format!(
            "login locked for {key} after repeated failed passwords ({left_s} s left)"
        ));
    }
    if figures.fail_safe_last_min > 0 {
        alerts.push(format!(
            "{} fail-safe reject(s) in the last minute (frame, model, deadline, overload or PLC faults)",
            figures.fail_safe_last_min
        ));
    }
    let mut value = serde_json::to_value(&figures).unwrap_or_default();
    if let Value::Object(obj) = &mut value {
        obj.insert(
            "line".into(),
            json!({ "running": running, "model": model, "counters": counters }),
        );
        obj.insert("alerts".into(), json!(alerts));
    }
    Ok(value)
}

async fn stats(State(state): State<AppState>, _: CurrentUser) -> Result<Json<Value>, ApiError> {
    Ok(Json(snapshot(&state).await?))
}

async fn next_event(rx: &mut Option<broadcast::Receiver<LiveEvent>>) -> Option<Event> {
    let Some(receiver) = rx else {
        return std::future::pending().await;
    };
    match receiver.recv().await {
        Ok(ev) => {
            let name = match ev {
                LiveEvent::Part(_) => "part",
                LiveEvent::Plc { .. } => "plc",
            };
            Some(
                Event::default()
                    .event(name)
                    .json_data(&ev)
                    .unwrap_or_default(),
            )
        }
        Err(broadcast::error::RecvError::Lagged(n)) => {
            Some(Event::default().event("lagged").data(n.to_string()))
        }
        Err(broadcast::error::RecvError::Closed) => {
            *rx = None;
            None
        }
    }
}

/// Whether the session behind a stream still holds (not logged out, not expired).
async fn session_holds(state: &AppState, token: &str) -> bool {
    let token = token.to_string();
    state
        .db
        .call(move |conn| crate::users::session(conn, &token).map_err(ApiError::from))
        .await
        .is_ok_and(|user| user.is_some())
}

/// One stream's state: the site, the line's events, the stats tick, the session's token; `None` once ended.
type LiveState = (
    AppState,
    Option<broadcast::Receiver<LiveEvent>>,
    tokio::time::Interval,
    String,
);

async fn live(
    State(state): State<AppState>,
    _: CurrentUser,
    headers: axum::http::HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.tap.as_ref().map(|t| t.events.subscribe());
    let tick = tokio::time::interval(LIVE_TICK);
    let token = super::auth::session_token(&headers).unwrap_or_default();
    let stream = futures_util::stream::unfold(
        Some((state, rx, tick, token)),
        |live: Option<LiveState>| async move {
            let (state, mut rx, mut tick, token) = live?;
            let event = loop {
                tokio::select! {
                    ev = next_event(&mut rx) => if let Some(ev) = ev { break ev },
                    _ = tick.tick() => {
                        // Logout or expiry ends the stream: one last event says so.
                        if !session_holds(&state, &token).await {
                            let ended = Event::default().event("session_ended").data("log in again");
                            return Some((Ok(ended), None));
                        }
                        match snapshot(&state).await {
                            Ok(v) => break Event::default().event("stats").json_data(&v).unwrap_or_default(),
                            Err(e) => tracing::warn!("live stats: {e:?}"),
                        }
                    },
                }
            };
            Some((Ok(event), Some((state, rx, tick, token))))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// How often a live stream sends the figures (and checks its session).
pub const LIVE_TICK: Duration = Duration::from_secs(2);
