//! What a model says about a part (its score and anomaly map) and which model said it (recorded with every
//! verdict). The vision model, the shadow model and the acoustic model all speak in these types.

/// What the model says about one image.
#[derive(Debug, Clone)]
pub struct Inference {
    pub score: f32,
    /// Anomaly map, row-major, when the model provides one.
    pub anomaly_map: Option<AnomalyMap>,
}

/// A per-pixel anomaly map over the model's input (the preprocessed ROI), in score units.
#[derive(Debug, Clone)]
pub struct AnomalyMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// Identity of the model that judged a part, recorded with every verdict.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// The threshold in force (the manifest's, or the config's override).
    pub threshold: f32,
}
