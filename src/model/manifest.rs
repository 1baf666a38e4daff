//! The model's contract, `manifest.toml` beside `model.onnx`: what the input tensor looks like (name, shape,
//! layout, color order, normalisation), which outputs carry the image score and the anomaly map, the decision
//! threshold and how it was chosen, the version, and the sha256 of the `.onnx` file.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Layout {
    #[serde(rename = "NCHW")]
    Nchw,
    #[serde(rename = "NHWC")]
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Gray,
    Rgb,
    Bgr,
}

impl ColorOrder {
    pub fn channels(self) -> usize {
        match self {
            ColorOrder::Gray => 1,
            ColorOrder::Rgb | ColorOrder::Bgr => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    /// Four dimensions in `layout` order; the batch dimension is 1.
    pub shape: Vec<i64>,
    pub layout: Layout,
    pub color: ColorOrder,
    /// Pixel values (0..255) are multiplied by this before normalisation.
    pub scale: f32,
    /// Per channel: `(pixel * scale - mean) / std`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputSpec {
    fn dims(&self) -> (i64, i64, i64) {
        // (channels, height, width)
        match self.layout {
            Layout::Nchw => (self.shape[1], self.shape[2], self.shape[3]),
            Layout::Nhwc => (self.shape[3], self.shape[1], self.shape[2]),
        }
    }
    pub fn width(&self) -> i64 {
        self.dims().2
    }
    pub fn height(&self) -> i64 {
        self.dims().1
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output holding the image anomaly score, one value per image; higher = more anomalous.
    pub score: String,
    /// Output holding the per-pixel anomaly map, if the model has one.
    pub anomaly_map: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// Scores above this reject the part.
    pub value: f32,
    /// How the value was chosen, for the technician.
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// sha256 of `model.onnx`, lowercase hex.
    pub sha256: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub threshold: ThresholdSpec,
}

impl Manifest {
    /// Reads and checks a manifest on its own (not yet against the ONNX file).
    pub fn load(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| e.message().to_string())?;
        let mut problems = Vec::new();
        let input = &manifest.input;
        if input.shape.len() != 4 {
            problems.push(format!(
                "input.shape: expected 4 dimensions, got {:?}",
                input.shape
            ));
        } else {
            if input.shape[0] != 1 {
                problems.push(format!(
                    "input.shape: the batch dimension must be 1, got {}",
                    input.shape[0]
                ));
            }
            if input.shape.iter().skip(1).any(|&d| d <= 0) {
                problems.push(format!(
                    "input.shape: expected positive sizes, got {:?}",
                    input.shape
                ));
            }
            let channels = input.dims().0;
            if channels != input.color.channels() as i64 {
                problems.push(format!(
                    "input.shape: color \"{:?}\" has {} channel(s) but the {:?} shape {:?} has {channels}",
                    input.color,
                    input.color.channels(),
                    input.layout,
                    input.shape
                ));
            }
        }
        let channels = input.color.channels();
        if input.mean.len() != channels || input.std.len() != channels {
            problems.push(format!(
                "input.mean/std: expected {channels} value(s) each, got {} and {}",
                input.mean.len(),
                input.std.len()
            ));
        }
        if input.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            problems.push("input.std: expected positive values".into());
        }
        if !(manifest.sha256.len() == 64 && manifest.sha256.chars().all(|c| c.is_ascii_hexdigit()))
        {
            problems.push(format!(
                "sha256: expected 64 hex digits, got \"{}\"",
                manifest.sha256
            ));
        }
        if !manifest.threshold.value.is_finite() {
            problems.push("threshold.value: expected a finite number".into());
        }
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(problems.join("; "))
        }
    }
}
