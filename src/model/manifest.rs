//! The model's contract, `manifest.toml` beside `model.onnx`: what the input tensor looks like (name, shape,
//! layout, color order, normalisation), which outputs carry the image score and the anomaly map, the decision
//! threshold and how it was chosen, the version, and the sha256 of the `.onnx` file. Trained models add how they
//! were made (`[training]`: the command, the data's fingerprint, the parameters) and what `station evaluate`
//! measured (`[metrics]`).
//!
//! `kind = "anomalib"` (or a manifest without `[output]` whose ONNX file has anomalib's `pred_score` output) is an
//! anomalib 2.x export: one input `input` [N,3,H,W] of RGB in [0,1], its resize and normalisation inside the
//! graph, `pred_score` normalised so that 0.5 is its threshold, and `anomaly_map` when present. For such a model
//! `[input]`, `[output]` and `[threshold]` may be left out; they are taken from the ONNX file (`super::Model`).

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Layout {
    #[serde(rename = "NCHW")]
    Nchw,
    #[serde(rename = "NHWC")]
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output holding the image anomaly score, one value per image; higher = more anomalous.
    pub score: String,
    /// Output holding the per-pixel anomaly map, if the model has one.
    pub anomaly_map: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// Scores above this reject the part.
    pub value: f32,
    /// How the value was chosen, for the technician.
    pub method: String,
}

/// What kind of export the model is: the station's own contract, or anomalib's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Station,
    Anomalib,
}

/// How a trained model was made (written by `station train vision`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// The command line that made it.
    pub command: String,
    /// The model design (`gaussian`, `padim`, `patchcore`).
    pub design: String,
    pub trained_unix_s: u64,
    pub seconds: f64,
    /// Good images the model learned from, and the sha256 of their sorted relative paths and sizes.
    pub good_files: usize,
    pub good_list_sha256: String,
    /// Held-out good images the threshold was calibrated on.
    pub calibration_files: usize,
    /// Defect images used for validation and threshold calibration only (0 when none were given).
    pub defect_files: usize,
    pub defect_list_sha256: String,
    /// The ROI the training images were cropped to, `[x, y, width, height]`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roi: Option<[i32; 4]>,
    /// The design's parameters.
    pub params: toml::Table,
}

/// The manifest as written in the file: for anomalib exports `[input]`, `[output]` and `[threshold]` may be left
/// out (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// `station` (default) or `anomalib`; absent: auto-detected from the ONNX outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKind>,
    /// sha256 of `model.onnx`, lowercase hex.
    pub sha256: String,
    /// sha256 of each file `model.onnx` keeps weights in (ONNX external data, e.g. anomalib's
    /// `model.onnx.data`), by file name: the model's identity covers every file it loads.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub external_data: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
    /// What `station evaluate` measured, with the data set's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<toml::Table>,
}

/// The complete contract of a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub kind: ModelKind,
    /// sha256 of `model.onnx`, lowercase hex.
    pub sha256: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub threshold: ThresholdSpec,
    pub training: Option<Training>,
    pub metrics: Option<toml::Table>,
}

impl ManifestFile {
    /// Reads and parses a manifest file.
    pub fn read(path: &Path) -> Result<ManifestFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        toml::from_str(&text).map_err(|e| e.message().to_string())
    }

    /// Writes the manifest as TOML, with a header comment.
    pub fn write(&self, path: &Path, header: &str) -> Result<(), String> {
        let body = toml::to_string(self).map_err(|e| e.to_string())?;
        std::fs::write(path, format!("{header}{body}"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The manifest of a station-kind model: `[input]`, `[output]` and `[threshold]` as written, all required.
    pub fn into_station(self) -> Result<Manifest, String> {
        match (
            self.input.clone(),
            self.output.clone(),
            self.threshold.clone(),
        ) {
            (Some(i), Some(o), Some(t)) => Ok(self.complete(ModelKind::Station, i, o, t)),
            (i, o, t) => {
                let missing: Vec<&str> = [("[input]", i.is_none()), ("[output]", o.is_none())]
                    .into_iter()
                    .chain([("[threshold]", t.is_none())])
                    .filter_map(|(name, absent)| absent.then_some(name))
                    .collect();
                Err(format!(
                    "missing {} (required unless kind = \"anomalib\")",
                    missing.join(", ")
                ))
            }
        }
    }

    /// The complete manifest, with the given input/output/threshold filling in what the file leaves out.
    pub fn complete(
        self,
        kind: ModelKind,
        input: InputSpec,
        output: OutputSpec,
        threshold: ThresholdSpec,
    ) -> Manifest {
        Manifest {
            name: self.name,
            version: self.version,
            description: self.description,
            kind,
            sha256: self.sha256,
            input: self.input.unwrap_or(input),
            output: self.output.unwrap_or(output),
            threshold: self.threshold.unwrap_or(threshold),
            training: self.training,
            metrics: self.metrics,
        }
    }
}

impl Manifest {
    /// Reads a station-kind manifest and checks it on its own (not yet against the ONNX file).
    pub fn load_file(path: &Path) -> Result<Manifest, String> {
        let manifest = ManifestFile::read(path)?.into_station()?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Checks the manifest's fields on their own; returns every problem.
    pub fn check(&self) -> Result<(), String> {
        let manifest = self;
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
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
