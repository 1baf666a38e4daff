//! The model stage (ONNX Runtime through `ort`).
//!
//! A model is a folder `models/<name>/<version>/` with `model.onnx` and `manifest.toml` ([`manifest`]). At load
//! the manifest is checked against the file's sha256 and against the real ONNX inputs and outputs; any mismatch
//! refuses the model with a message naming the file and the field. The inference worker ([`run_worker`]) owns
//! the session on its own thread and turns preprocessed jobs into scores.

pub mod config;
pub mod heatmap;
pub mod manifest;
pub mod registry;
pub mod runtime;
pub mod shadow;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use crate::part::switch::Pending;
pub use crate::part::{AnomalyMap, Inference, ModelInfo};
use crate::part::{Job, Stage, StageReport};
pub use config::ModelConfig;
pub use manifest::Manifest;
use manifest::{ColorOrder, InputSpec, Layout, ManifestFile, ModelKind, OutputSpec, ThresholdSpec};

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
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error("inference failed: {0}")]
    Run(String),
}

/// A loaded, checked model.
pub struct Model {
    session: Session,
    pub manifest: Manifest,
    pub info: ModelInfo,
    /// The version folder the model was loaded from.
    pub dir: PathBuf,
    /// The registry name folder, when `[model] dir` named one (its `active` file is watched for hot swaps).
    pub registry: Option<PathBuf>,
    /// The batch the graph is fixed at (anomalib's PatchCore exports take 2): the part's tensor is repeated and
    /// the first result taken. 1 for every model the station writes.
    batch: usize,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Model {
    /// Loads `dir/model.onnx` with `dir/manifest.toml` and checks one against the other. `dir` may also be a
    /// registry name folder: its active version is loaded.
    pub fn load(
        config: &ModelConfig,
        onnxruntime_path: Option<&Path>,
    ) -> Result<Model, ModelError> {
        let resolved = registry::resolve(&config.dir)?;
        let dir = &resolved.version_dir;
        let manifest_path = dir.join("manifest.toml");
        let onnx_path = dir.join("model.onnx");
        let shown = onnx_path.display().to_string();
        let manifest_err = |detail: String| ModelError::Manifest {
            path: manifest_path.display().to_string(),
            detail,
        };
        let file = ManifestFile::read(&manifest_path).map_err(manifest_err)?;
        let bytes = std::fs::read(&onnx_path).map_err(|source| ModelError::Read {
            path: shown.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&file.sha256) {
            return Err(ModelError::Checksum {
                path: shown,
                expected: file.sha256.clone(),
                actual,
            });
        }
        let load_err = |detail: String| ModelError::Load {
            path: shown.clone(),
            detail,
        };
        let external = check_external_data(dir, &bytes, &file)?;
        let env = runtime::environment(onnxruntime_path)?;
        let mut builder = Session::builder(env)
            .and_then(|b| b.with_intra_threads(config.threads).map_err(Into::into))
            .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
            .map_err(|e| load_err(e.to_string()))?;
        // Weights in other files are found beside the graph only when it is loaded by path (checked above).
        let session = if external {
            builder.commit_from_file(&onnx_path)
        } else {
            builder.commit_from_memory(&bytes)
        }
        .map_err(|e| load_err(e.to_string()))?;
        let manifest = complete_manifest(file, &session).map_err(manifest_err)?;
        manifest.check().map_err(manifest_err)?;
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
        let batch = fixed_batch(&session, &manifest.input.name);
        Ok(Model {
            session,
            manifest,
            info,
            dir: dir.clone(),
            registry: resolved.registry,
            batch,
        })
    }

    /// Runs the model on one preprocessed tensor.
    pub fn infer(&mut self, tensor: &[f32]) -> Result<Inference, ModelError> {
        let run = |e: ort::Error| ModelError::Run(e.to_string());
        let mut shape = self.manifest.input.shape.clone();
        let repeated;
        let tensor = if self.batch > 1 {
            shape[0] = self.batch as i64;
            repeated = tensor.repeat(self.batch);
            repeated.as_slice()
        } else {
            tensor
        };
        let input = TensorRef::from_array_view((shape, tensor)).map_err(run)?;
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
            Some(name) => {
                let (shape, values) = outputs[name.as_str()]
                    .try_extract_tensor::<f32>()
                    .map_err(run)?;
                // [.., H, W]: the last two dimensions, whatever comes before (N, or N and 1); of a batch
                // (a repeated part) the first.
                let dims: Vec<i64> = shape.iter().copied().collect();
                match dims.as_slice() {
                    [.., h, w]
                        if (h * w) as usize * self.batch == values.len() && *h > 0 && *w > 0 =>
                    {
                        Some(AnomalyMap {
                            width: *w as usize,
                            height: *h as usize,
                            values: values[..(h * w) as usize].to_vec(),
                        })
                    }
                    _ => {
                        return Err(ModelError::Run(format!(
                            "output \"{name}\" has shape {dims:?}, expected one [H, W] map (batch 1)"
                        )));
                    }
                }
            }
            None => None,
        };
        Ok(Inference { score, anomaly_map })
    }
}

/// The graph's fixed batch size for `input` (1 when it is symbolic or absent).
fn fixed_batch(session: &Session, input: &str) -> usize {
    session
        .inputs()
        .iter()
        .find(|i| i.name() == input)
        .and_then(|i| {
            i.dtype()
                .tensor_shape()
                .and_then(|s| s.iter().next().copied())
        })
        .filter(|&n| n > 1)
        .map_or(1, |n| n as usize)
}

/// Checks every external-data file the graph names against the manifest's `[external_data]` sha256s; returns
/// whether there are any. A file outside the model's folder, missing, unlisted or changed is refused.
fn check_external_data(dir: &Path, graph: &[u8], file: &ManifestFile) -> Result<bool, ModelError> {
    let at = |f: &str| dir.join(f).display().to_string();
    let files = crate::onnx::read(graph)
        .and_then(|g| crate::onnx::external_data(&g))
        .map_err(|detail| ModelError::Load {
            path: at("model.onnx"),
            detail,
        })?;
    for name in &files {
        let plain = Path::new(name)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(ModelError::Load {
                path: at("model.onnx"),
                detail: format!("external data {name:?} is outside the model's folder"),
            });
        }
        let bytes = std::fs::read(dir.join(name)).map_err(|source| ModelError::Read {
            path: at(name),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        match file.external_data.get(name) {
            Some(expected) if expected.eq_ignore_ascii_case(&actual) => {}
            Some(expected) => {
                return Err(ModelError::Checksum {
                    path: at(name),
                    expected: expected.clone(),
                    actual,
                });
            }
            None => {
                return Err(ModelError::Manifest {
                    path: at("manifest.toml"),
                    detail: format!(
                        "model.onnx keeps weights in {name}, which [external_data] does not list: the model's \
                         identity must cover it; add `[external_data]` `\"{name}\" = \"{actual}\"` if this file is the one \
                         you exported"
                    ),
                });
            }
        }
    }
    Ok(!files.is_empty())
}

/// anomalib's output names (fields of its InferenceBatch).
const ANOMALIB_OUTPUTS: [&str; 4] = ["pred_score", "pred_label", "anomaly_map", "pred_mask"];

/// The full manifest: a station manifest as written; an anomalib export's (by `kind`, or detected by its output
/// names when the file has no `[output]`) completed from the ONNX graph.
fn complete_manifest(file: ManifestFile, session: &Session) -> Result<Manifest, String> {
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let detected = file.output.is_none() && outputs.contains(&"pred_score");
    let kind = file.kind.unwrap_or(if detected {
        ModelKind::Anomalib
    } else {
        ModelKind::Station
    });
    if kind == ModelKind::Station {
        return file.into_station().map_err(|e| {
            format!(
                "{e}; the model's outputs {} are not anomalib's {}",
                names(outputs.iter().copied()),
                names(ANOMALIB_OUTPUTS.iter().copied())
            )
        });
    }
    let inputs = session.inputs();
    let input = inputs
        .iter()
        .find(|i| i.name() == "input")
        .or(inputs.first())
        .ok_or("the model has no input")?;
    let dims: Vec<i64> = input
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    let input_spec = match (file.input.clone(), dims.as_slice()) {
        (Some(spec), _) => spec,
        (None, [_, 3, h, w]) if *h > 0 && *w > 0 => InputSpec {
            name: input.name().to_string(),
            shape: vec![1, 3, *h, *w],
            layout: Layout::Nchw,
            color: ColorOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        },
        (None, _) => {
            return Err(format!(
                "anomalib model: input \"{}\" has shape {dims:?}; expected [N, 3, H, W] with a fixed H and W \
                 (or give [input] in the manifest)",
                input.name()
            ));
        }
    };
    let output = OutputSpec {
        score: "pred_score".into(),
        anomaly_map: outputs
            .contains(&"anomaly_map")
            .then(|| "anomaly_map".to_string()),
    };
    let threshold = ThresholdSpec {
        value: 0.5,
        method: "anomalib's normalised threshold (pred_score > 0.5 is anomalous)".into(),
    };
    Ok(file.complete(kind, input_spec, output, threshold))
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
                // A fixed batch above 1 is fed by repeating the part (Model::infer).
                let fits = dims.len() == want.shape.len()
                    && dims
                        .iter()
                        .zip(&want.shape)
                        .enumerate()
                        .all(|(i, (&m, &w))| m < 0 || m == w || (i == 0 && m > 1));
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
    mut recipe: Pending<Model>,
    shadow: Option<shadow::ShadowTap>,
) {
    while let Ok(mut job) = jobs.recv() {
        if let Some(switched) = recipe.due(job.seq) {
            model = switched;
        }
        let result = model.infer(&job.tensor);
        if let Some(shadow) = &shadow {
            shadow.offer(job.seq, &job.tensor);
        }
        job.times.inferred = Some(Instant::now());
        done.store(job.seq, Ordering::Release);
        let report = match (result, job.frame) {
            (Ok(mut inference), Some(mut frame)) => {
                frame.anomaly_map = inference.anomaly_map.take();
                StageReport::Scored {
                    seq: job.seq,
                    times: job.times,
                    frame,
                    inference,
                }
            }
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
