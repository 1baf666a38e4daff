//! The acoustic stage: scores each part's sound against what normal operation sounds like.
//!
//! A model is a folder `models/<name>/<version>/` with `model.json` (its [`scoring::Scoring`]: the detector,
//! the clip aggregation and the per-condition standardisation) and `manifest.toml` (`kind = "acoustic"`, the
//! slice features, the clip length, the threshold and how it was chosen, the detectors compared, and the sha256
//! of `model.json`), like the vision models. [`select`] trains every detector on normal recordings only and
//! keeps the best; [`evaluate`] measures it. The acoustic worker ([`run_worker`]) owns the model on its own
//! thread: for each part it waits for the part's slice, scores the whole slice, and keeps it for the spectrogram.

pub mod autoencoder;
pub mod clip;
pub mod detectors;
pub mod evaluate;
pub mod frames;
pub mod gaussian;
pub mod scoring;
pub mod select;
pub mod spectrogram;
pub mod stress;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::Sender;

use crate::audio::AudioInput;
use crate::audio::features::FeatureParams;
use crate::model::{ModelInfo, sha256_hex};
use crate::part::Seq;
pub use gaussian::Gaussian;
use scoring::{Scorer, Scoring};

#[derive(Debug, thiserror::Error)]
pub enum AcousticError {
    #[error("{path}: {detail}")]
    Model { path: String, detail: String },
    #[error(
        "{path}: sha256 is {actual} but manifest.toml says {expected} (the model file changed; retrain it or fix the manifest)"
    )]
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("training: {0}")]
    Training(String),
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// Scores above this reject the part.
    pub value: f32,
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// Normal windows the model was fitted on.
    pub windows: usize,
    /// The normal recordings (files or folders) they came from.
    pub sources: Vec<String>,
    /// Hop between training windows, in ms.
    pub hop_ms: u64,
}

/// `manifest.toml` of an acoustic model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcousticManifest {
    /// Always `"acoustic"`.
    pub kind: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// sha256 of `model.json`, lowercase hex.
    pub sha256: String,
    /// Length of the slices the model was trained on (the station's `pre_ms + post_ms`).
    pub window_ms: u64,
    pub features: FeatureParams,
    /// The detector and clip aggregation (`knn (q90)`); absent in models from before detectors were compared.
    #[serde(default = "slice_detector")]
    pub detector: String,
    pub threshold: ThresholdSpec,
    pub training: TrainingInfo,
    /// The detectors compared on validation (out-of-fold normal clips against anomalies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<ComparedEntry>,
}

fn slice_detector() -> String {
    "slice-gaussian (max)".into()
}

/// One detector of the training comparison, as the manifest keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComparedEntry {
    pub detector: String,
    pub aggregation: String,
    pub validation_auc: f64,
    pub validation_pauc: f64,
}

/// A loaded, checked acoustic model with its feature extractor.
pub struct AcousticModel {
    pub manifest: AcousticManifest,
    pub info: ModelInfo,
    pub dir: PathBuf,
    pub scorer: Scorer,
}

impl AcousticModel {
    /// Loads `dir/manifest.toml` and `dir/model.json` and checks one against the other.
    pub fn load(dir: &Path, threshold: Option<f32>) -> Result<AcousticModel, AcousticError> {
        let manifest_path = dir.join("manifest.toml");
        let model_path = dir.join("model.json");
        let bad = |path: &Path, detail: String| AcousticError::Model {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| bad(&manifest_path, format!("cannot read: {e}")))?;
        let manifest: AcousticManifest =
            toml::from_str(&text).map_err(|e| bad(&manifest_path, e.message().to_string()))?;
        let mut problems = Vec::new();
        if manifest.kind != "acoustic" {
            problems.push(format!(
                "kind: expected \"acoustic\", got \"{}\"",
                manifest.kind
            ));
        }
        problems.extend(
            manifest
                .features
                .problems()
                .into_iter()
                .map(|p| format!("features.{p}")),
        );
        if !manifest.threshold.value.is_finite() {
            problems.push("threshold.value: expected a finite number".into());
        }
        if manifest.window_ms == 0 {
            problems.push("window_ms: expected a positive number".into());
        }
        if !problems.is_empty() {
            return Err(bad(&manifest_path, problems.join("; ")));
        }
        let bytes = std::fs::read(&model_path)
            .map_err(|e| bad(&model_path, format!("cannot read: {e}")))?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(AcousticError::Checksum {
                path: model_path.display().to_string(),
                expected: manifest.sha256.clone(),
                actual,
            });
        }
        let scoring =
            Scoring::from_json(&bytes, manifest.window_ms).map_err(|d| bad(&model_path, d))?;
        scoring
            .check(manifest.features.len())
            .map_err(|d| bad(&model_path, d))?;
        if let Scoring::Frames { frames, .. }
        | Scoring::Clip { frames, .. }
        | Scoring::Autoencoder { frames, .. } = &scoring
            && frames.sample_rate_hz != manifest.features.sample_rate_hz
        {
            return Err(bad(
                &model_path,
                format!(
                    "frames.sample_rate_hz is {} but manifest.toml's features.sample_rate_hz is {}",
                    frames.sample_rate_hz, manifest.features.sample_rate_hz
                ),
            ));
        }
        let info = ModelInfo {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            sha256: manifest.sha256.clone(),
            threshold: threshold.unwrap_or(manifest.threshold.value),
        };
        Ok(AcousticModel {
            scorer: Scorer::new(scoring, &manifest.features),
            manifest,
            info,
            dir: dir.to_path_buf(),
        })
    }

    pub fn sample_rate_hz(&self) -> u32 {
        self.manifest.features.sample_rate_hz
    }

    /// Anomaly score of one slice as a whole (higher = less like the normal sound), for a part of unknown
    /// condition.
    pub fn score(&mut self, samples: &[f32]) -> f32 {
        if samples.is_empty() {
            return f32::NAN;
        }
        self.scorer.score(samples, None)
    }
}

/// Cuts a recording into windows of `window` samples every `hop`; a recording shorter than one window is one
/// window.
pub fn windows(samples: &[f32], window: usize, hop: usize) -> Vec<&[f32]> {
    if samples.len() <= window {
        return vec![samples];
    }
    (0..=(samples.len() - window) / hop.max(1))
        .map(|k| &samples[k * hop..k * hop + window])
        .collect()
}

/// Window and hop in samples.
pub fn window_samples(window_ms: u64, hop_ms: u64, rate: u32) -> (usize, usize) {
    let n = |ms: u64| (ms * u64::from(rate) / 1000).max(1) as usize;
    (n(window_ms), n(hop_ms))
}

/// A trained model, not yet saved.
pub struct Trained {
    pub gaussian: Gaussian,
    pub threshold: f32,
    pub method: String,
    /// Out-of-fold scores of the normal windows.
    pub oof_scores: Vec<f32>,
}

/// Fits the normal sound on feature vectors (in recording order) and sets the threshold from out-of-fold scores:
/// 5 contiguous folds (neighbouring windows overlap, so folds are not interleaved).
pub fn train(features: &[Vec<f32>], margin: f32) -> Result<Trained, AcousticError> {
    let n = features.len();
    if n < 5 {
        return Err(AcousticError::Training(format!(
            "need at least 5 normal windows, got {n}: give more or longer normal recordings"
        )));
    }
    let gaussian = Gaussian::fit(features).map_err(AcousticError::Training)?;
    let folds = 5;
    let mut oof = Vec::with_capacity(n);
    for f in 0..folds {
        let (lo, hi) = (f * n / folds, (f + 1) * n / folds);
        let rest: Vec<Vec<f32>> = features[..lo]
            .iter()
            .chain(&features[hi..])
            .cloned()
            .collect();
        let g = Gaussian::fit(&rest).map_err(AcousticError::Training)?;
        oof.extend(features[lo..hi].iter().map(|x| g.score(x)));
    }
    let max = oof.iter().copied().fold(f32::MIN, f32::max);
    Ok(Trained {
        threshold: max * margin,
        method: format!(
            "{margin} x the highest out-of-fold score ({max:.3}) of the {n} normal training windows (5 contiguous folds)"
        ),
        gaussian,
        oof_scores: oof,
    })
}

/// Writes `out/<name>/<version>/` (model.json + manifest.toml); returns the folder.
pub fn save(
    out: &Path,
    manifest: &mut AcousticManifest,
    scoring: &Scoring,
) -> Result<PathBuf, AcousticError> {
    let dir = out.join(&manifest.name).join(&manifest.version);
    let io = |path: &Path, e: std::io::Error| AcousticError::Model {
        path: path.display().to_string(),
        detail: format!("cannot write: {e}"),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let json = serde_json::to_vec(scoring).map_err(|e| AcousticError::Training(e.to_string()))?;
    manifest.sha256 = sha256_hex(&json);
    let model_path = dir.join("model.json");
    std::fs::write(&model_path, &json).map_err(|e| io(&model_path, e))?;
    let text = format!(
        "# Acoustic model (station train audio; do not edit by hand: model.json's sha256 is checked).\n{}",
        toml::to_string(manifest).map_err(|e| AcousticError::Training(e.to_string()))?
    );
    let manifest_path = dir.join("manifest.toml");
    std::fs::write(&manifest_path, text).map_err(|e| io(&manifest_path, e))?;
    Ok(dir)
}

/// One part for the acoustic worker.
pub struct AcousticJob {
    pub seq: Seq,
    pub triggered: Instant,
}

/// What the acoustic worker found for one part.
pub struct AcousticScored {
    pub score: f32,
    /// The slice, kept for the spectrogram of a rejected part.
    pub samples: Vec<f32>,
    pub origin: String,
}

pub struct AcousticReport {
    pub seq: Seq,
    pub result: Result<AcousticScored, String>,
    /// The known truth of the part's sound (synthetic sound only).
    pub truth: Option<String>,
    pub scored: Instant,
}

/// The acoustic worker: for each job, waits for the slice (up to `give_up_after` past the trigger) and scores
/// it. Runs until the job channel closes.
pub fn run_worker(
    input: Arc<AudioInput>,
    mut model: AcousticModel,
    jobs: Receiver<AcousticJob>,
    reports: Sender<AcousticReport>,
    give_up_after: Duration,
) {
    for job in jobs {
        let result = input
            .slice(job.seq, job.triggered, job.triggered + give_up_after)
            .map_err(|e| e.to_string())
            .map(|slice| AcousticScored {
                score: model.score(&slice.samples),
                samples: slice.samples,
                origin: slice.origin,
            });
        let report = AcousticReport {
            seq: job.seq,
            result,
            truth: input.truth(job.seq),
            scored: Instant::now(),
        };
        if reports.blocking_send(report).is_err() {
            return;
        }
    }
}

/// Recordings (file, samples) and their common sample rate.
pub type Recordings = (Vec<(PathBuf, Vec<f32>)>, u32);

/// Reads recordings from files and folders (their `.wav` files, sorted); all must share one sample rate.
pub fn load_recordings(paths: &[PathBuf], channel: u16) -> Result<Recordings, AcousticError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(crate::audio::wav::list(p)?);
        } else {
            files.push(p.clone());
        }
    }
    let mut rate = None;
    let mut out = Vec::new();
    for f in files {
        let (samples, r) = crate::audio::wav::read(&f, channel)?;
        match rate {
            Some(first) if first != r => {
                return Err(crate::audio::AudioError::File {
                    path: f.display().to_string(),
                    detail: format!(
                        "sample rate is {r} Hz but the first recording's is {first} Hz"
                    ),
                }
                .into());
            }
            _ => rate = Some(r),
        }
        out.push((f, samples));
    }
    let listed: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    match rate {
        Some(r) => Ok((out, r)),
        None => Err(AcousticError::Training(format!(
            "no .wav recordings in {}",
            listed.join(", ")
        ))),
    }
}
