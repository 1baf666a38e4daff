//! Part of the plant: the station's results leave it for the plant's systems, without ever slowing the line.
//!
//! Every record is appended to the outbox in the record's own transaction ([`crate::store::outbox`]); each
//! outbound sink here reads it from its own cursor on tokio with its own connection ([`deliver`]) and retries
//! while its peer is down. Today: MQTT ([`mqtt`]) and webhooks ([`webhook`]); and Prometheus `/metrics` ([`prom`]), which reads the line's
//! counters at scrape time. [`start`] starts what the config asks for beside the line; [`Plant::stop`] lets the
//! sinks drain (at most [`deliver::DRAIN`]) once the line has stopped. See docs/PLANT.md.

pub mod config;
pub mod deliver;
pub mod mqtt;
pub mod prom;
pub mod webhook;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{MetricsConfig, MqttConfig, WebhookConfig};
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
    pub webhooks: &'a [WebhookConfig],
}

/// Starts the sinks the config names (registering their cursors) and the metrics endpoint.
pub async fn start(config: Setup<'_>, tap: &LineTap) -> Result<Plant, PlantError> {
    let database = config.database.to_path_buf();
    let mut names: Vec<String> = config.mqtt.iter().map(|_| "mqtt".to_string()).collect();
    names.extend(
        config
            .webhooks
            .iter()
            .map(|h| webhook::cursor_name(&h.name)),
    );
    let cursors = register(database.clone(), names).await?;
    let (stop, stop_rx) = watch::channel(false);
    let mut started = Started {
        database,
        stop: stop_rx,
        statuses: Vec::new(),
        tasks: Vec::new(),
    };
    let mut cursors = cursors.into_iter();
    // One cursor per name registered: the MQTT sink's first, then the webhooks' in order.
    if let Some(mqtt) = config.mqtt
        && let Some(cursor) = cursors.next()
    {
        let sink = mqtt::MqttSink::new(mqtt.clone(), config.station);
        tracing::info!(
            "mqtt: publishing the outbox to {}:{} under {} from message {}",
            mqtt.host,
            mqtt.port,
            sink.topic("#"),
            cursor + 1
        );
        started.spawn(
            sink,
            cursor,
            pace(mqtt.retry_min_ms, mqtt.retry_max_ms, mqtt.batch),
        );
    }
    for (hook, cursor) in config.webhooks.iter().zip(cursors) {
        tracing::info!(
            "webhook {}: POSTing the outbox to {} from message {}",
            hook.name,
            hook.url,
            cursor + 1
        );
        let sink = webhook::WebhookSink::new(hook.clone(), config.station);
        started.spawn(
            sink,
            cursor,
            pace(hook.retry_min_ms, hook.retry_max_ms, 100),
        );
    }
    let Started {
        statuses, tasks, ..
    } = started;
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
        sinks: tasks,
        metrics,
    })
}

/// Registers the sinks' cursors (dropping those of sinks no longer configured); one cursor per name, in order.
async fn register(
    database: std::path::PathBuf,
    names: Vec<String>,
) -> Result<Vec<i64>, PlantError> {
    tokio::task::spawn_blocking(move || {
        let conn = open_database(&database)?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        outbox::register(&conn, &names).map_err(|source| PlantError::Outbox {
            path: database.display().to_string(),
            source,
        })
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

fn pace(retry_min_ms: u64, retry_max_ms: u64, batch: usize) -> Pace {
    Pace {
        retry_min: Duration::from_millis(retry_min_ms),
        retry_max: Duration::from_millis(retry_max_ms),
        batch,
    }
}

/// The sinks started so far, and what each new one shares.
struct Started {
    database: std::path::PathBuf,
    stop: watch::Receiver<bool>,
    statuses: Vec<(String, Arc<SinkStatus>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Started {
    fn spawn<S: deliver::Sink>(&mut self, sink: S, cursor: i64, pace: Pace) {
        let status = Arc::new(SinkStatus::default());
        self.statuses
            .push((sink.name().to_string(), status.clone()));
        let task = deliver::run(
            sink,
            self.database.clone(),
            cursor,
            pace,
            status,
            self.stop.clone(),
        );
        self.tasks.push(tokio::spawn(task));
    }
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
