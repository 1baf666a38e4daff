//! The model stage (ONNX Runtime through `ort`).
//!
//! A model is a folder `models/<name>/<version>/` with `model.onnx` and `manifest.toml` ([`manifest`]). At load
//! the manifest is checked against the file's sha256 and against the real ONNX inputs and outputs; any mismatch
//! refuses the model with a message naming the file and the field. The inference worker ([`run_worker`]) owns
//! the session on its own thread and turns preprocessed jobs into scores.

pub mod manifest;
pub mod runtime;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use crate::config::ModelConfig;
use crate::part::{Job, Stage, StageReport};
pub use manifest::Manifest;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {detail}")]
    Manifest { path: String, detail: String },
    #[error("cannot read model {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: sha256 is {actual} but manifest.toml says {expected} (the model file changed; re-export it or fix the manifest)"
    )]
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: ONNX Runtime cannot load it: {detail}")]
    Load { path: String, detail: String },
    #[error("{path}: manifest.toml contradicts the ONNX model: {detail}")]
    Contract { path: String, detail: String },
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("inference failed: {0}")]
    Run(String),
}

/// What the model says about one image.
#[derive(Debug, Clone)]
pub struct Inference {
    pub score: f32,
    /// Anomaly map, row-major, when the model provides one.
    pub anomaly_map: Option<Vec<f32>>,
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

/// A loaded, checked model.
pub struct Model {
    session: Session,
    pub manifest: Manifest,
    pub info: ModelInfo,
    pub dir: PathBuf,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Model {
    /// Loads `dir/model.onnx` with `dir/manifest.toml` and checks one against the other.
    pub fn load(
        config: &ModelConfig,
        onnxruntime_path: Option<&Path>,
    ) -> Result<Model, ModelError> {
        let dir = &config.dir;
        let manifest_path = dir.join("manifest.toml");
        let onnx_path = dir.join("model.onnx");
        let shown = onnx_path.display().to_string();
        let manifest = Manifest::load(&manifest_path).map_err(|detail| ModelError::Manifest {
            path: manifest_path.display().to_string(),
            detail,
        })?;
        let bytes = std::fs::read(&onnx_path).map_err(|source| ModelError::Read {
            path: shown.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(ModelError::Checksum {
                path: shown,
                expected: manifest.sha256.clone(),
                actual,
            });
        }
        let env = runtime::environment(onnxruntime_path)?;
        let load_err = |detail: String| ModelError::Load {
            path: shown.clone(),
            detail,
        };
        let session = Session::builder(env)
            .and_then(|b| b.with_intra_threads(config.threads).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .map_err(|e| load_err(e.to_string()))?
            .commit_from_memory(&bytes)
            .map_err(|e| load_err(e.to_string()))?;
        check_contract(&session, &manifest).map_err(|detail| ModelError::Contract {
            path: shown.clone(),
            detail,
        })?;
        let info = ModelInfo {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            sha256: actual,
            threshold: config.threshold.unwrap_or(manifest.threshold.value),
        };
        Ok(Model {
            session,
            manifest,
            info,
            dir: dir.clone(),
        })
    }

    /// Runs the model on one preprocessed tensor.
    pub fn infer(&mut self, tensor: &[f32]) -> Result<Inference, ModelError> {
        let run = |e: ort::Error| ModelError::Run(e.to_string());
        let input =
            TensorRef::from_array_view((self.manifest.input.shape.clone(), tensor)).map_err(run)?;
        let outputs = self
            .session
            .run(ort::inputs![self.manifest.input.name.as_str() => input])
            .map_err(run)?;
        let score_name = &self.manifest.output.score;
        let (_, scores) = outputs[score_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(run)?;
        let score = *scores
            .first()
            .ok_or_else(|| ModelError::Run(format!("output \"{score_name}\" is empty")))?;
        let anomaly_map = match &self.manifest.output.anomaly_map {
            Some(name) => Some(
                outputs[name.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(run)?
                    .1
                    .to_vec(),
            ),
            None => None,
        };
        Ok(Inference { score, anomaly_map })
    }
}

/// Compares the manifest with the session's real inputs and outputs; returns every mismatch.
fn check_contract(session: &Session, manifest: &Manifest) -> Result<(), String> {
    let mut problems = Vec::new();
    let inputs = session.inputs();
    let want = &manifest.input;
    match inputs.iter().find(|i| i.name() == want.name) {
        None => problems.push(format!(
            "input \"{}\" not in the model (its inputs: {})",
            want.name,
            names(inputs.iter().map(|i| i.name()))
        )),
        Some(input) => {
            if input.dtype().tensor_type() != Some(TensorElementType::Float32) {
                problems.push(format!(
                    "input \"{}\" is {:?}, expected float32",
                    want.name,
                    input.dtype()
                ));
            }
            if let Some(shape) = input.dtype().tensor_shape() {
                let dims: Vec<i64> = shape.iter().copied().collect();
                let fits = dims.len() == want.shape.len()
                    && dims.iter().zip(&want.shape).all(|(&m, &w)| m < 0 || m == w);
                if !fits {
                    problems.push(format!(
                        "input \"{}\" has shape {dims:?} in the model, manifest says {:?}",
                        want.name, want.shape
                    ));
                }
            }
        }
    }
    if inputs.len() > 1 {
        problems.push(format!(
            "the model has {} inputs ({}); the station feeds exactly one",
            inputs.len(),
            names(inputs.iter().map(|i| i.name()))
        ));
    }
    let outputs = session.outputs();
    let declared =
        std::iter::once(&manifest.output.score).chain(manifest.output.anomaly_map.as_ref());
    for name in declared {
        match outputs.iter().find(|o| o.name() == name) {
            None => problems.push(format!(
                "output \"{name}\" not in the model (its outputs: {})",
                names(outputs.iter().map(|o| o.name()))
            )),
            Some(o) if o.dtype().tensor_type() != Some(TensorElementType::Float32) => problems
                .push(format!(
                    "output \"{name}\" is {:?}, expected float32",
                    o.dtype()
                )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Body of the inference thread.
pub fn run_worker(
    mut model: Model,
    jobs: Receiver<Job>,
    reports: Sender<StageReport>,
    done: Arc<AtomicU64>,
    mut recipe: crate::recipe::Pending<Model>,
) {
    while let Ok(mut job) = jobs.recv() {
        if let Some(switched) = recipe.due(job.seq) {
            model = switched;
        }
        let result = model.infer(&job.tensor);
        job.times.inferred = Some(Instant::now());
        done.store(job.seq, Ordering::Release);
        let report = match (result, job.frame) {
            (Ok(inference), Some(frame)) => StageReport::Scored {
                seq: job.seq,
                times: job.times,
                frame,
                inference,
            },
            (result, frame) => StageReport::Fault {
                seq: job.seq,
                times: job.times,
                stage: Stage::Inference,
                detail: match result {
                    Err(e) => format!("model error: {e}"),
                    Ok(_) => "model error: job without a frame".into(),
                },
                frame,
                source_exhausted: false,
            },
        };
        if reports.blocking_send(report).is_err() {
            return;
        }
    }
}
