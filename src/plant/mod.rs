//! Part of the plant: the station's results leave it for the plant's systems, without ever slowing the line.
//!
//! Every record is appended to the outbox in the record's own transaction ([`crate::store::outbox`]); each
//! outbound sink here reads it from its own cursor on tokio with its own connection ([`deliver`]) and retries
//! while its peer is down. Today: MQTT ([`mqtt`]); and Prometheus `/metrics` ([`prom`]), which reads the line's
//! counters at scrape time. [`start`] starts what the config asks for beside the line; [`Plant::stop`] lets the
//! sinks drain (at most [`deliver::DRAIN`]) once the line has stopped. See docs/PLANT.md.

pub mod config;
pub mod deliver;
pub mod mqtt;
pub mod prom;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{MetricsConfig, MqttConfig};
use deliver::{Pace, SinkStatus};

use crate::live::LineTap;
use crate::store::{StoreError, open_database, outbox};

#[derive(Debug, thiserror::Error)]
pub enum PlantError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("outbox of {path}: {source}")]
    Outbox {
        path: String,
        source: rusqlite::Error,
    },
    #[error("metrics.listen {addr}: cannot listen: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The started sinks and endpoint.
pub struct Plant {
    stop: watch::Sender<bool>,
    sinks: Vec<JoinHandle<()>>,
    /// Where `/metrics` is served, when `[metrics]` is configured.
    pub metrics: Option<SocketAddr>,
}

/// What the plant's side of a station is started from: the station's name, its database, and the sections.
pub struct Setup<'a> {
    pub station: &'a str,
    pub database: &'a Path,
    pub metrics: Option<&'a MetricsConfig>,
    pub mqtt: Option<&'a MqttConfig>,
}

/// Starts the sinks the config names (registering their cursors) and the metrics endpoint.
pub async fn start(config: Setup<'_>, tap: &LineTap) -> Result<Plant, PlantError> {
    let database = config.database.to_path_buf();
    let names: Vec<&'static str> = config.mqtt.iter().map(|_| "mqtt").collect();
    let path = database.clone();
    let cursors = tokio::task::spawn_blocking(move || -> Result<Vec<i64>, PlantError> {
        let conn = open_database(&path)?;
        outbox::register(&conn, &names).map_err(|source| PlantError::Outbox {
            path: path.display().to_string(),
            source,
        })
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?;
    let (stop, stop_rx) = watch::channel(false);
    let mut statuses = Vec::new();
    let mut sinks = Vec::new();
    if let (Some(mqtt), Some(&cursor)) = (config.mqtt, cursors.first()) {
        let status = Arc::new(SinkStatus::default());
        statuses.push(("mqtt", status.clone()));
        let pace = Pace {
            retry_min: Duration::from_millis(mqtt.retry_min_ms),
            retry_max: Duration::from_millis(mqtt.retry_max_ms),
            batch: mqtt.batch,
        };
        let sink = mqtt::MqttSink::new(mqtt.clone(), config.station);
        tracing::info!(
            "mqtt: publishing the outbox to {}:{} under {} from message {}",
            mqtt.host,
            mqtt.port,
            sink.topic("#"),
            cursor + 1
        );
        let task = deliver::run(
            sink,
            database.clone(),
            cursor,
            pace,
            status,
            stop_rx.clone(),
        );
        sinks.push(tokio::spawn(task));
    }
    let metrics = match config.metrics {
        Some(m) => {
            let addr = prom::serve(m.listen, config.station, tap, statuses)
                .await
                .map_err(|source| PlantError::Metrics {
                    addr: m.listen,
                    source,
                })?;
            tracing::info!("metrics: http://{addr}/metrics (no login: see docs/PLANT.md)");
            Some(addr)
        }
        None => None,
    };
    Ok(Plant {
        stop,
        sinks,
        metrics,
    })
}

impl Plant {
    /// After the line: lets the sinks deliver what is left (while their peers take it, at most
    /// [`deliver::DRAIN`]), then stops them; the rest waits in the outbox for the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.sinks {
            let _ = task.await;
        }
    }
}
