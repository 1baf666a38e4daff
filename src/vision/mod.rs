//! Vision-model training (`station train vision`): anomaly models learned on the station's own good images, on
//! a CPU, in minutes, with nothing downloaded.
//!
//! ```text
//! good images ──split──▶ training set ──▶ PCA filter bank ──▶ feature graph (ONNX Runtime) ──▶ features
//!                 │                                                                  │
//!                 └──▶ held-out good ──┐                  fit each design's head ◀──┘
//! defect images (optional) ────────────┴──▶ score through the exported model ──▶ compare designs (AUROC),
//!                                           calibrate the threshold ──▶ models/<name>/<version>/{model.onnx, manifest.toml}
//! ```
//!
//! The exported model is one ONNX graph (features, head, smoothing, `score` and `anomaly_map` outputs) that the
//! station runs through exactly the same `ort` path as any other model; the trainer checks it by loading it back
//! with [`crate::model::Model::load`]. Defect images never train the model: they only validate it, choose the
//! design (when several are compared) and calibrate the threshold.

pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod heads;
pub mod texture_set;

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ort::session::Session;
use ort::value::TensorRef;

use crate::model::ModelConfig;
use crate::model::manifest::{
    ColorOrder, InputSpec, Layout, ManifestFile, OutputSpec, ThresholdSpec, Training,
};
use crate::model::{Model, registry, runtime, sha256_hex};
use crate::onnx;
use crate::preprocess::Preprocessor;
use crate::preprocess::{PreprocessConfig, Roi};
use dataset::Item;
use features::FeatureParams;
pub use heads::Design;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error("{0}")]
    Invalid(String),
    #[error("training failed: {0}")]
    Fit(String),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
}

/// How the threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThresholdBy {
    /// The highest score that keeps the false-reject rate on held-out good images at the target.
    Frr,
    /// The F1-optimal threshold on held-out good and defect images.
    F1,
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub good: PathBuf,
    pub defect: Option<PathBuf>,
    pub name: String,
    pub out: PathBuf,
    pub version: Option<String>,
    /// `None`: compare every design when defect images are given (keep the best), else the default design.
    pub design: Option<Design>,
    pub size_px: usize,
    pub color: ColorOrder,
    pub roi: Option<[i32; 4]>,
    pub filters: usize,
    pub kernel_px: usize,
    pub coreset: usize,
    pub shrinkage: f64,
    /// Fraction of the good images held out for calibration.
    pub holdout: f64,
    pub target_frr: f64,
    pub threshold_by: Option<ThresholdBy>,
    pub seed: u64,
    /// The command line, recorded in the manifest.
    pub command: String,
    pub onnxruntime_path: Option<PathBuf>,
    pub show_progress: bool,
}

impl TrainOptions {
    /// The defaults of `station train vision`.
    pub fn new(good: PathBuf, name: &str) -> TrainOptions {
        TrainOptions {
            good,
            defect: None,
            name: name.into(),
            out: PathBuf::from("models"),
            version: None,
            design: None,
            size_px: 256,
            color: ColorOrder::Gray,
            roi: None,
            filters: 8,
            kernel_px: 3,
            coreset: 1024,
            shrinkage: 0.05,
            holdout: 0.2,
            target_frr: 0.005,
            threshold_by: None,
            seed: 1,
            command: String::new(),
            onnxruntime_path: None,
            show_progress: true,
        }
    }
}

/// The design used when nothing is compared: the best on the texture set (docs/MODELS.md).
pub const DEFAULT_DESIGN: Design = Design::Patchcore;

/// One design's figures in a comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DesignResult {
    pub design: &'static str,
    /// Image AUROC on the held-out good and the defect images (when defects were given).
    pub auroc: Option<f64>,
    pub fit_s: f64,
    pub infer_ms_per_image: f64,
}

/// The result of a training.
pub struct Trained {
    pub dir: PathBuf,
    pub manifest: crate::model::Manifest,
    pub compared: Vec<DesignResult>,
    /// Whether the new version was made active (the first version of a name is).
    pub promoted: bool,
}

/// An ONNX graph run from memory (training's feature extractor and the candidates).
pub struct Runner {
    session: Session,
    input: Vec<i64>,
}

impl Runner {
    pub fn new(bytes: &[u8], input: Vec<i64>, ort: Option<&Path>) -> Result<Runner, TrainError> {
        let env = runtime::environment(ort).map_err(|e| TrainError::Runtime(e.to_string()))?;
        let session = Session::builder(env)
            .and_then(|b| b.with_intra_threads(2).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(bytes))
            .map_err(|e| TrainError::Runtime(e.to_string()))?;
        Ok(Runner { session, input })
    }

    /// Runs the graph on one tensor; returns the named output's values.
    pub fn run(&mut self, tensor: &[f32], output: &str) -> Result<Vec<f32>, TrainError> {
        let err = |e: ort::Error| TrainError::Runtime(e.to_string());
        let input = TensorRef::from_array_view((self.input.clone(), tensor)).map_err(err)?;
        let outputs = self
            .session
            .run(ort::inputs!["image" => input])
            .map_err(err)?;
        let (_, values) = outputs[output].try_extract_tensor::<f32>().map_err(err)?;
        Ok(values.to_vec())
    }
}

fn bar(show: bool, len: usize, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>22} [{bar:30}] {pos}/{len} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Splits the good images: every `1/holdout`-th one (spread evenly) is held out for calibration.
fn split(items: Vec<Item>, holdout: f64) -> (Vec<Item>, Vec<Item>) {
    let mut train = Vec::new();
    let mut held = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let crosses = ((i + 1) as f64 * holdout).floor() > (i as f64 * holdout).floor();
        if crosses {
            held.push(item);
        } else {
            train.push(item);
        }
    }
    (train, held)
}

fn input_spec(o: &TrainOptions) -> InputSpec {
    let c = o.color.channels();
    InputSpec {
        name: "image".into(),
        shape: vec![1, c as i64, o.size_px as i64, o.size_px as i64],
        layout: Layout::Nchw,
        color: o.color,
        scale: 1.0 / 255.0,
        mean: vec![0.5; c],
        std: vec![0.25; c],
    }
}

fn check_options(o: &TrainOptions) -> Result<(), TrainError> {
    let mut problems = Vec::new();
    if o.size_px < 32 || o.size_px % 16 != 0 {
        problems.push(format!(
            "--size: expected a multiple of 16 from 32 on, got {}",
            o.size_px
        ));
    }
    if o.kernel_px % 2 == 0 || !(3..=15).contains(&o.kernel_px) {
        problems.push(format!(
            "--kernel: expected an odd size from 3 to 15, got {}",
            o.kernel_px
        ));
    }
    if o.filters == 0 || o.filters > o.kernel_px * o.kernel_px {
        problems.push(format!(
            "--filters: expected 1 to kernel², got {}",
            o.filters
        ));
    }
    if !(0.05..=0.5).contains(&o.holdout) {
        problems.push(format!(
            "--holdout: expected 0.05 to 0.5, got {}",
            o.holdout
        ));
    }
    if !(0.0..0.5).contains(&o.target_frr) {
        problems.push(format!(
            "--target-frr: expected 0 to 0.5, got {}",
            o.target_frr
        ));
    }
    if !(0.0..1.0).contains(&o.shrinkage) {
        problems.push(format!("--shrinkage: expected 0 to 1, got {}", o.shrinkage));
    }
    if o.name.is_empty()
        || !o
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        problems.push(format!(
            "--name: expected letters, digits, '-', '_' or '.', got {:?}",
            o.name
        ));
    }
    if o.threshold_by == Some(ThresholdBy::F1) && o.defect.is_none() {
        problems.push("--threshold-by f1 needs --defect images".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(TrainError::Invalid(problems.join("; ")))
    }
}

/// A candidate model: its ONNX bytes and the scores of the held-out images.
struct Candidate {
    design: Design,
    bytes: Vec<u8>,
    good: Vec<f32>,
    defect: Vec<f32>,
    result: DesignResult,
}

/// Trains a model and writes it as a new version under `out/name/`.
pub fn train(o: &TrainOptions) -> Result<Trained, TrainError> {
    check_options(o)?;
    let started = Instant::now();
    let ort = o.onnxruntime_path.as_deref();
    let goods = dataset::list(&o.good, Some("good"))?;
    let defects = match &o.defect {
        Some(dir) => dataset::list(dir, None)?,
        None => Vec::new(),
    };
    let good_fingerprint = dataset::fingerprint(&goods);
    let (train_items, held_items) = split(goods, o.holdout);
    if train_items.len() < 5 || held_items.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: {} good images; at least 7 are needed (5 to learn from, and {:.0}% held out to calibrate)",
            o.good.display(),
            train_items.len() + held_items.len(),
            o.holdout * 100.0
        )));
    }
    let spec = input_spec(o);
    let roi = o.roi.map(|[x, y, width, height]| Roi {
        x,
        y,
        width,
        height,
    });
    let pre = Preprocessor::new(&PreprocessConfig { roi }, &spec);
    let all = train_items.len() + held_items.len() + defects.len();
    let reading = bar(o.show_progress, all, "reading images");
    let train_t = dataset::tensors(&train_items, &pre, &reading)?;
    let held_t = dataset::tensors(&held_items, &pre, &reading)?;
    let defect_t = dataset::tensors(&defects, &pre, &reading)?;
    reading.finish();

    let params = FeatureParams {
        channels: o.color.channels(),
        height: o.size_px,
        width: o.size_px,
        filters: o.filters,
        kernel: o.kernel_px,
    };
    let bank = features::learn(&train_t, params, o.seed).map_err(TrainError::Fit)?;
    let mut g = onnx::Graph::new("features");
    let x = g.input("image", &spec.shape);
    let f = features::add_to_graph(&mut g, &x, &bank);
    g.op_named("Identity", &[&f], vec![], "features");
    let (gh, gw) = params.grid();
    let fc = params.feature_channels();
    g.output("features", &[1, fc as i64, gh as i64, gw as i64]);
    let mut extractor = Runner::new(
        &g.to_bytes(17, "station train vision"),
        spec.shape.clone(),
        ort,
    )?;
    let extracting = bar(o.show_progress, train_t.len(), "extracting features");
    let mut maps = Vec::with_capacity(train_t.len());
    for t in &train_t {
        maps.push(extractor.run(t, "features")?);
        extracting.inc(1);
    }
    extracting.finish();
    let feature_set = heads::FeatureSet {
        maps: &maps,
        c: fc,
        h: gh,
        w: gw,
    };
    let head_params = heads::HeadParams {
        shrinkage: o.shrinkage,
        coreset: o.coreset,
        seed: o.seed,
    };
    let designs: Vec<Design> = match (o.design, defects.is_empty()) {
        (Some(d), _) => vec![d],
        (None, false) => Design::ALL.to_vec(),
        (None, true) => vec![DEFAULT_DESIGN],
    };
    let mut candidates = Vec::new();
    for design in designs {
        let fitting = Instant::now();
        let head = heads::fit(design, &feature_set, &head_params).map_err(TrainError::Fit)?;
        let fit_s = fitting.elapsed().as_secs_f64();
        let mut g = onnx::Graph::new(&format!("{}-{}", o.name, design.name()));
        let x = g.input("image", &spec.shape);
        let f = features::add_to_graph(&mut g, &x, &bank);
        let map = heads::add_to_graph(&mut g, &f, &head, fc, gh, gw);
        heads::add_outputs(&mut g, &map, o.size_px, o.size_px);
        let bytes = g.to_bytes(17, "station train vision");
        let mut runner = Runner::new(&bytes, spec.shape.clone(), ort)?;
        let scoring = bar(
            o.show_progress,
            held_t.len() + defect_t.len(),
            &format!("validating {}", design.name()),
        );
        let timing = Instant::now();
        let mut score = |t: &Vec<f32>| -> Result<f32, TrainError> {
            scoring.inc(1);
            Ok(runner.run(t, "score")?[0])
        };
        let good: Vec<f32> = held_t.iter().map(&mut score).collect::<Result<_, _>>()?;
        let defect: Vec<f32> = defect_t.iter().map(&mut score).collect::<Result<_, _>>()?;
        let infer_ms = timing.elapsed().as_secs_f64() * 1e3 / (good.len() + defect.len()) as f64;
        scoring.finish();
        let auroc = (!defect.is_empty()).then(|| evaluate::auroc(&good, &defect));
        candidates.push(Candidate {
            design,
            bytes,
            good,
            defect,
            result: DesignResult {
                design: design.name(),
                auroc,
                fit_s,
                infer_ms_per_image: infer_ms,
            },
        });
    }
    let compared: Vec<DesignResult> = candidates.iter().map(|c| c.result.clone()).collect();
    // The best AUROC wins; on a tie the earlier (simpler) design.
    let best = candidates
        .into_iter()
        .reduce(|a, b| {
            if b.result.auroc.unwrap_or(0.0) > a.result.auroc.unwrap_or(0.0) + 1e-9 {
                b
            } else {
                a
            }
        })
        .ok_or_else(|| TrainError::Fit("no design to train".into()))?;

    let by = o.threshold_by.unwrap_or(if defects.is_empty() {
        ThresholdBy::Frr
    } else {
        ThresholdBy::F1
    });
    let threshold = match by {
        ThresholdBy::Frr => evaluate::frr_threshold(&best.good, o.target_frr),
        ThresholdBy::F1 => evaluate::f1_threshold(&best.good, &best.defect),
    };

    let version = o
        .version
        .clone()
        .unwrap_or_else(|| registry::next_version(&o.out, &o.name));
    let dir = o.out.join(&o.name).join(&version);
    if dir.join("manifest.toml").exists() {
        return Err(TrainError::Invalid(format!(
            "{} already holds a model; versions are never overwritten (leave out --version for the next free one)",
            dir.display()
        )));
    }
    let write_err = |path: &Path, e: std::io::Error| TrainError::Write {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| write_err(&dir, e))?;
    let onnx_path = dir.join("model.onnx");
    std::fs::write(&onnx_path, &best.bytes).map_err(|e| write_err(&onnx_path, e))?;

    let mut params_table = toml::Table::new();
    let mut put = |k: &str, v: toml::Value| {
        params_table.insert(k.into(), v);
    };
    put("size_px", (o.size_px as i64).into());
    put("filters_per_scale", (o.filters as i64).into());
    put("kernel_px", (o.kernel_px as i64).into());
    put(
        "scales",
        toml::Value::Array(vec![1.into(), (features::COARSE as i64).into()]),
    );
    put("feature_stride_px", (features::STRIDE as i64).into());
    put("feature_channels", (fc as i64).into());
    match best.design {
        Design::Patchcore => put("coreset", (o.coreset.min(20_000) as i64).into()),
        _ => put("shrinkage", o.shrinkage.into()),
    }
    put("holdout", o.holdout.into());
    put("seed", (o.seed as i64).into());
    let mut metrics = None;
    if !best.defect.is_empty() {
        let defect_classes: Vec<(f32, String)> = best
            .defect
            .iter()
            .zip(&defects)
            .map(|(s, d)| (*s, d.class.clone()))
            .collect();
        let r = evaluate::summarize(&best.good, &defect_classes, threshold.0);
        let mut t = toml::Table::new();
        t.insert(
            "on".into(),
            "validation: the held-out good images and the --defect images".into(),
        );
        t.insert(
            "image_auroc".into(),
            r.image_auroc.unwrap_or(f64::NAN).into(),
        );
        t.insert("f1".into(), r.f1.into());
        t.insert("false_reject_rate".into(), r.false_reject_rate.into());
        t.insert("escape_rate".into(), r.escape_rate.into());
        metrics = Some(t);
    }
    let manifest = ManifestFile {
        name: o.name.clone(),
        version: version.clone(),
        description: format!(
            "{} anomaly model trained on {} good images by `station train vision` ({} px {:?}, PCA filter-bank features)",
            best.design.name(),
            train_items.len(),
            o.size_px,
            o.color
        ),
        kind: None,
        sha256: sha256_hex(&best.bytes),
        input: Some(spec),
        output: Some(OutputSpec {
            score: "score".into(),
            anomaly_map: Some("anomaly_map".into()),
        }),
        threshold: Some(ThresholdSpec {
            value: threshold.0,
            method: threshold.1,
        }),
        training: Some(Training {
            command: o.command.clone(),
            design: best.design.name().into(),
            trained_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            seconds: started.elapsed().as_secs_f64(),
            good_files: train_items.len() + held_items.len(),
            good_list_sha256: good_fingerprint,
            calibration_files: held_items.len(),
            defect_files: defects.len(),
            defect_list_sha256: dataset::fingerprint(&defects),
            roi: o.roi,
            params: params_table,
        }),
        metrics,
    };
    let manifest_path = dir.join("manifest.toml");
    manifest
        .write(
            &manifest_path,
            "# Written by `station train vision` (see [training]); `station evaluate` adds [metrics].\n",
        )
        .map_err(|detail| TrainError::Write {
            path: manifest_path.display().to_string(),
            detail,
        })?;
    // The exported model must load and score through the station's own path.
    let model = Model::load(&ModelConfig::at(&dir), ort)?;
    let promoted = registry::active_version(&o.out.join(&o.name))
        .map_err(|e| TrainError::Invalid(e.to_string()))?
        .is_none();
    if promoted {
        registry::promote(
            &o.out,
            &o.name,
            &version,
            "station train vision (first version)",
        )
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    }
    Ok(Trained {
        dir,
        manifest: model.manifest,
        compared,
        promoted,
    })
}
