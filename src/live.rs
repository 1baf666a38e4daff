//! The live tap of a running line, for the review web page: part summaries as they are recorded (a tokio
//! broadcast channel fed by the record writer, so a summary carries the saved image's path), the pipeline's
//! counters, and the model in force (set by the pipeline once the model is loaded; a technician's threshold change
//! goes back to the orchestrator through the same watch channel).
//! A slow web client never slows the line: a lagging broadcast receiver loses the oldest events (counted by tokio).

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::metrics::Counters;
use crate::model::ModelInfo;

/// One part as the live page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PartSummary {
    pub part_id: String,
    pub seq: u64,
    pub decided_us: i64,
    pub verdict: &'static str,
    pub score: Option<f32>,
    pub threshold: f32,
    /// The recorded reasons (JSON array of `{"code": ...}`).
    pub reasons: serde_json::Value,
    /// Relative to the data folder, when the image was kept.
    pub image_path: Option<String>,
    pub latency_ms: f64,
}

/// What the line tells the live page.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A part was recorded.
    Part(PartSummary),
    /// The PLC received (or did not receive) a part's result.
    Plc { part_id: String, delivered: bool },
}

/// Handles shared by the pipeline and the web server of one `station run`.
#[derive(Clone)]
pub struct LineTap {
    pub events: broadcast::Sender<LiveEvent>,
    pub counters: Arc<Counters>,
    /// `None` until the model is loaded, and again once the line has stopped.
    pub model: watch::Sender<Option<ModelInfo>>,
}

impl Default for LineTap {
    fn default() -> Self {
        LineTap {
            events: broadcast::channel(256).0,
            counters: Arc::default(),
            model: watch::channel(None).0,
        }
    }
}
