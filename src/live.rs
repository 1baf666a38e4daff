//! The live tap of a running line, for the review web page: part summaries as they are recorded (a tokio
//! broadcast channel fed by the record writer, so a summary carries the saved image's path), the pipeline's
//! counters, and the model in force (set by the pipeline once the model is loaded; a technician's threshold change
//! goes back to the orchestrator through the same watch channel).
//! A slow web client never slows the line: a lagging broadcast receiver loses the oldest events (counted by tokio).

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::metrics::Counters;
use crate::part::ModelInfo;
/// What the live page shows of each record: the record writer's own event ([`crate::store::Recorded`]).
pub use crate::store::{PartSummary, Recorded as LiveEvent};

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
