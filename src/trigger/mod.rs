//! Triggers: the event that says "a part is here, inspect it".
//!
//! - `interval`: free-running, one part every `interval_ms` (the demo's conveyor);
//! - `plc`: the PLC's trigger bit, watched by the PLC handshake task (`plc/handshake.rs`): the command
//!   word's trigger bit (with the part ID and encoder count read in the same request), or a legacy coil /
//!   discrete input; only a rising edge fires, so a trigger held high never re-fires, not even across a link
//!   outage. A trigger the handshake refused (busy) still reaches the line, marked, to be recorded and rejected;
//! - `http`: `POST /trigger` on `listen` (a software trigger for tests, manual inspection or a line controller).
//!
//! The trigger task sends [`TriggerEvent`]s to the orchestrator and ends after `limit` parts, when told to stop,
//! or (for replay) when the source is exhausted. Its end closes the channel, which starts the pipeline's drain.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use tokio::sync::{mpsc, watch};

pub mod config;

pub use crate::part::TriggerEvent;
pub use config::{PlcInputKind, TriggerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("HTTP trigger cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("PLC trigger needs a PLC link: plc.kind = \"tcp\" or \"rtu\"")]
    NoPlc,
}

/// A bound, not yet running trigger (binding early lets `station run` fail before the line starts, and lets
/// tests learn the HTTP port).
pub enum Trigger {
    Interval(Duration),
    /// Triggers seen by the PLC handshake task.
    Plc(mpsc::Receiver<TriggerEvent>),
    Http(tokio::net::TcpListener),
}

impl Trigger {
    /// `plc_triggers`: the PLC handshake's trigger channel (the PLC handle's `triggers`).
    pub async fn bind(
        config: &TriggerConfig,
        plc_triggers: Option<mpsc::Receiver<TriggerEvent>>,
    ) -> Result<Trigger, TriggerError> {
        Ok(match config {
            TriggerConfig::Interval { interval_us } => {
                Trigger::Interval(Duration::from_micros(*interval_us))
            }
            TriggerConfig::Plc { .. } => Trigger::Plc(plc_triggers.ok_or(TriggerError::NoPlc)?),
            TriggerConfig::Http { listen } => Trigger::Http(
                tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|source| TriggerError::Listen {
                        addr: *listen,
                        source,
                    })?,
            ),
        })
    }

    /// The HTTP trigger's bound address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        match self {
            Trigger::Http(l) => l.local_addr().ok(),
            _ => None,
        }
    }

    /// Fires until `limit` events were sent, `stop` turns true, or the receiver is gone.
    pub async fn run(
        self,
        tx: mpsc::Sender<TriggerEvent>,
        limit: Option<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut sent = 0u64;
        let reached = |sent: u64| limit.is_some_and(|l| sent >= l);
        if reached(0) || *stop.borrow() {
            return;
        }
        match self {
            Trigger::Interval(period) => {
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = stop.changed() => return,
                    }
                    if tx.send(TriggerEvent::now()).await.is_err() {
                        return;
                    }
                    sent += 1;
                    if reached(sent) {
                        return;
                    }
                }
            }
            Trigger::Plc(mut events) => loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = stop.changed() => None,
                };
                let Some(event) = event else { return };
                if tx.send(event).await.is_err() {
                    return;
                }
                sent += 1;
                if reached(sent) {
                    return;
                }
            },
            Trigger::Http(listener) => {
                let (inner_tx, mut inner_rx) = mpsc::channel::<TriggerEvent>(64);
                let app = Router::new()
                    .route("/trigger", post(http_trigger))
                    .with_state(inner_tx);
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(async move {
                    let shutdown = async {
                        let _ = done_rx.await;
                    };
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        tracing::error!("HTTP trigger stopped: {e}");
                    }
                });
                loop {
                    let event = tokio::select! {
                        e = inner_rx.recv() => e,
                        _ = stop.changed() => None,
                    };
                    let Some(event) = event else { break };
                    if tx.send(event).await.is_err() {
                        break;
                    }
                    sent += 1;
                    if reached(sent) {
                        break;
                    }
                }
                drop(inner_rx);
                let _ = done_tx.send(());
                let _ = server.await;
            }
        }
    }
}

async fn http_trigger(
    State(tx): State<mpsc::Sender<TriggerEvent>>,
) -> (StatusCode, Json<serde_json::Value>) {
    match tx.send(TriggerEvent::now()).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "accepted": true })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "accepted": false, "error": "the line is stopping" })),
        ),
    }
}
