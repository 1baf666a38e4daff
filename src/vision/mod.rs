//! Vision-model training (`station train vision`): anomaly models learned on the station's own good images, on
//! a CPU, in minutes, with nothing downloaded at run time.
//!
//! ```text
//!                                          PCA filter bank (learned here, `--backbone pca`)
//!                                          or EfficientNet-Lite0 stages (ImageNet, `backbone.rs`)
//! good images ──split──▶ training set ──▶ feature graph, whole or in tiles (ONNX Runtime) ──▶ features
//!                 │                                                                  │
//!                 └──▶ held-out good ──┐                  fit each design's head ◀──┘
//! defect images (optional) ────────────┴──▶ score through the exported model ──▶ compare designs (AUROC),
//!                                           calibrate the threshold ──▶ models/<name>/<version>/{model.onnx, manifest.toml}
//! ```
//!
//! The exported model is one ONNX graph (features with the backbone inside, head, smoothing, the optional
//! inspection mask, tile stitching, `score` and `anomaly_map` outputs) that the
//! station runs through exactly the same `ort` path as any other model; the trainer checks it by loading it back
//! with [`crate::model::Model::load`]. Defect images never train the model: they only validate it, choose the
//! design (when several are compared) and calibrate the threshold.

pub mod backbone;
pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod heads;
pub mod mask;
pub mod texture_set;
pub mod tiles;

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
use backbone::Backbone;
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
    /// `pca` (the filter bank learned here) or an ImageNet backbone under `backbones` (`efficientnet-lite0`).
    pub backbone: String,
    /// The folder of converted backbones.
    pub backbones: PathBuf,
    /// The backbone's stages whose maps are the features; `None`: [`LAYER_SETS`].
    pub layers: Option<Vec<usize>>,
    /// Channels the backbone's features are projected to (when they have more).
    pub dims: usize,
    /// The inspection mask ([`mask`]): white inspected, black left out of the score.
    pub mask: Option<PathBuf>,
    /// Tile size ([`tiles`]): the ROI is scored at its own resolution in tiles of this many pixels.
    pub tile: Option<usize>,
    /// Overlap of neighbouring tiles in pixels.
    pub overlap: usize,
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
            backbone: "pca".into(),
            backbones: PathBuf::from("models/backbones"),
            layers: None,
            dims: 100,
            mask: None,
            tile: None,
            overlap: 32,
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
    /// The features: `pca`, or the backbone and its stages (`efficientnet-lite0 2,3`).
    pub features: String,
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

/// The model's input: the PCA features standardise the image themselves; a backbone wants what its weights were
/// trained on ((pixel - mean) / std on 0..255, from its manifest).
fn input_spec(o: &TrainOptions, backbone: Option<&Backbone>, h: usize, w: usize) -> InputSpec {
    let c = o.color.channels();
    let (scale, mean, std) = match backbone {
        Some(b) => (1.0, b.mean, b.std),
        None => (1.0 / 255.0, 0.5, 0.25),
    };
    InputSpec {
        name: "image".into(),
        shape: vec![1, c as i64, h as i64, w as i64],
        layout: Layout::Nchw,
        color: o.color,
        scale,
        mean: vec![mean; c],
        std: vec![std; c],
    }
}

/// The feature extractors a training compares.
enum Extractor {
    Pca(features::FilterBank),
    Backbone(backbone::Features),
}

impl Extractor {
    fn label(&self) -> String {
        match self {
            Extractor::Pca(_) => "pca".into(),
            Extractor::Backbone(f) => {
                let stages: Vec<String> =
                    f.backbone.stages().iter().map(|s| s.to_string()).collect();
                format!("{} {}", f.backbone.name, stages.join(","))
            }
        }
    }
    fn channels(&self) -> usize {
        match self {
            Extractor::Pca(bank) => bank.params.feature_channels(),
            Extractor::Backbone(f) => f.channels(),
        }
    }
    fn grid(&self) -> (usize, usize) {
        match self {
            Extractor::Pca(bank) => bank.params.grid(),
            Extractor::Backbone(f) => f.grid(),
        }
    }
    fn stride(&self) -> usize {
        match self {
            Extractor::Pca(_) => features::STRIDE,
            Extractor::Backbone(f) => f.stride(),
        }
    }
    fn add_to_graph(
        &self,
        g: &mut onnx::Graph,
        x: &str,
        channels: usize,
    ) -> Result<String, TrainError> {
        match self {
            Extractor::Pca(bank) => Ok(features::add_to_graph(g, x, bank)),
            Extractor::Backbone(f) => f.add_to_graph(g, x, channels).map_err(TrainError::Invalid),
        }
    }
}

/// The layer sets compared when `--layers` is not given: a shallow stage for fine textures and small defects,
/// deep ones for real surface defects (docs/MODELS.md); both only when defect images can decide.
const LAYER_SETS: [&[usize]; 2] = [&[2], &[5, 6]];

fn extractors(
    o: &TrainOptions,
    backbone: Vec<Backbone>,
    train_t: &[Vec<f32>],
) -> Result<Vec<Extractor>, TrainError> {
    if backbone.is_empty() {
        let params = FeatureParams {
            channels: o.color.channels(),
            height: o.size_px,
            width: o.size_px,
            filters: o.filters,
            kernel: o.kernel_px,
        };
        let bank = features::learn(train_t, params, o.seed).map_err(TrainError::Fit)?;
        return Ok(vec![Extractor::Pca(bank)]);
    }
    Ok(backbone
        .into_iter()
        .map(|b| {
            let unit = o.tile.unwrap_or(o.size_px);
            Extractor::Backbone(backbone::Features::new(b, o.dims, unit, o.seed))
        })
        .collect())
}

/// The backbones (one per layer set) that `o` asks for, read and checked; none for `--backbone pca`.
fn backbones(o: &TrainOptions, with_defects: bool) -> Result<Vec<Backbone>, TrainError> {
    if o.backbone == "pca" {
        if o.layers.is_some() || o.tile.is_some() {
            return Err(TrainError::Invalid(
                "--layers and --tile need an ImageNet --backbone, not pca".into(),
            ));
        }
        return Ok(Vec::new());
    }
    if o.backbone != backbone::EFFICIENTNET_LITE0 {
        return Err(TrainError::Invalid(format!(
            "--backbone: expected pca or {}, got {:?}",
            backbone::EFFICIENTNET_LITE0,
            o.backbone
        )));
    }
    let sets: Vec<Vec<usize>> = match &o.layers {
        Some(l) => vec![l.clone()],
        None if with_defects => LAYER_SETS.iter().map(|s| s.to_vec()).collect(),
        None => vec![LAYER_SETS[0].to_vec()],
    };
    let dir = o.backbones.join(&o.backbone);
    sets.iter()
        .map(|s| Backbone::load(&dir, s).map_err(TrainError::Invalid))
        .collect()
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
    /// Index into the extractors compared.
    extractor: usize,
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
    let backbones = backbones(o, !defects.is_empty())?;
    // What the model sees: the ROI (or the image) resized to --size, or with --tile at its own resolution.
    let roi_h_w = match o.roi {
        Some([_, _, w, h]) => (h as usize, w as usize),
        None => dataset::size(&train_items[0].path)?,
    };
    let (in_h, in_w) = match o.tile {
        Some(_) => roi_h_w,
        None => (o.size_px, o.size_px),
    };
    let spec = input_spec(o, backbones.first(), in_h, in_w);
    let roi = o.roi.map(|[x, y, width, height]| Roi {
        x,
        y,
        width,
        height,
    });
    let pre = Preprocessor::new(
        &PreprocessConfig {
            roi,
            calibration: None,
        },
        &spec,
    );
    let all = train_items.len() + held_items.len() + defects.len();
    let reading = bar(o.show_progress, all, "reading images");
    let train_t = dataset::tensors(&train_items, &pre, &reading)?;
    let held_t = dataset::tensors(&held_items, &pre, &reading)?;
    let defect_t = dataset::tensors(&defects, &pre, &reading)?;
    reading.finish();

    let extractors = extractors(o, backbones, &train_t)?;
    let designs: Vec<Design> = match (o.design, defects.is_empty()) {
        (Some(d), _) => vec![d],
        (None, false) => Design::ALL.to_vec(),
        (None, true) => vec![DEFAULT_DESIGN],
    };
    let head_params = heads::HeadParams {
        shrinkage: o.shrinkage,
        coreset: o.coreset,
        seed: o.seed,
    };
    let aspect = roi_h_w.1 as f64 / roi_h_w.0 as f64;
    let tilings: Vec<Option<tiles::Tiling>> = extractors
        .iter()
        .map(|e| {
            o.tile
                .map(|t| tiles::Tiling::plan(in_h, in_w, t, o.overlap, e.stride()))
                .transpose()
                .map_err(TrainError::Invalid)
        })
        .collect::<Result<_, _>>()?;
    let masks: Vec<Option<mask::GridMask>> = extractors
        .iter()
        .zip(&tilings)
        .map(|(e, tiling)| {
            let (gh, gw) = match tiling {
                Some(t) => t.grid(e.stride()),
                None => e.grid(),
            };
            o.mask
                .as_deref()
                .map(|m| mask::read(m, gh, gw, aspect))
                .transpose()
                .map_err(TrainError::Invalid)
        })
        .collect::<Result<_, _>>()?;
    let mut candidates = Vec::new();
    for (ei, extractor) in extractors.iter().enumerate() {
        let (gh, gw) = extractor.grid();
        let fc = extractor.channels();
        let tiling = tilings[ei].as_ref();
        let n = tiling.map_or(1, |t| t.count());
        // The image, or its tiles as a batch.
        let input = |g: &mut onnx::Graph| -> String {
            let x = g.input("image", &spec.shape);
            match tiling {
                Some(t) => t.split(g, &x),
                None => x,
            }
        };
        let mut g = onnx::Graph::new("features");
        let x = input(&mut g);
        let f = extractor.add_to_graph(&mut g, &x, o.color.channels())?;
        g.op_named("Identity", &[&f], vec![], "features");
        g.output("features", &[n as i64, fc as i64, gh as i64, gw as i64]);
        let mut runner = Runner::new(
            &g.to_bytes(17, "station train vision"),
            spec.shape.clone(),
            ort,
        )?;
        let extracting = bar(
            o.show_progress,
            train_t.len(),
            &format!("features {}", extractor.label()),
        );
        let mut maps = Vec::with_capacity(train_t.len());
        for t in &train_t {
            let all = runner.run(t, "features")?;
            maps.extend(all.chunks_exact(fc * gh * gw).map(<[f32]>::to_vec));
            extracting.inc(1);
        }
        extracting.finish();
        let feature_set = heads::FeatureSet {
            maps: &maps,
            c: fc,
            h: gh,
            w: gw,
        };
        for &design in &designs {
            let fitting = Instant::now();
            let head = heads::fit(design, &feature_set, &head_params).map_err(TrainError::Fit)?;
            let fit_s = fitting.elapsed().as_secs_f64();
            let mut g = onnx::Graph::new(&format!("{}-{}", o.name, design.name()));
            let x = input(&mut g);
            let f = extractor.add_to_graph(&mut g, &x, o.color.channels())?;
            let map = heads::add_to_graph(&mut g, &f, &head, n, (fc, gh, gw));
            let mask = masks[ei].as_ref().map(|m| m.cells.as_slice());
            match tiling {
                Some(t) => {
                    let smooth = heads::smooth(&mut g, &map);
                    t.add_outputs(&mut g, &smooth, extractor.stride(), mask);
                }
                None => heads::add_outputs(&mut g, &map, in_h, in_w, mask.map(|m| (m, gh, gw))),
            }
            let bytes = g.to_bytes(17, "station train vision");
            let mut runner = Runner::new(&bytes, spec.shape.clone(), ort)?;
            let label = format!("{} {}", extractor.label(), design.name());
            let scoring = bar(
                o.show_progress,
                held_t.len() + defect_t.len(),
                &format!("validating {label}"),
            );
            let timing = Instant::now();
            let mut score = |t: &Vec<f32>| -> Result<f32, TrainError> {
                scoring.inc(1);
                Ok(runner.run(t, "score")?[0])
            };
            let good: Vec<f32> = held_t.iter().map(&mut score).collect::<Result<_, _>>()?;
            let defect: Vec<f32> = defect_t.iter().map(&mut score).collect::<Result<_, _>>()?;
            let infer_ms =
                timing.elapsed().as_secs_f64() * 1e3 / (good.len() + defect.len()) as f64;
            scoring.finish();
            let auroc = (!defect.is_empty()).then(|| evaluate::auroc(&good, &defect));
            candidates.push(Candidate {
                design,
                extractor: ei,
                bytes,
                good,
                defect,
                result: DesignResult {
                    design: design.name(),
                    features: extractor.label(),
                    auroc,
                    fit_s,
                    infer_ms_per_image: infer_ms,
                },
            });
        }
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
    let chosen = &extractors[best.extractor];
    match chosen {
        Extractor::Pca(_) => {
            put("backbone", "pca".into());
            put("filters_per_scale", (o.filters as i64).into());
            put("kernel_px", (o.kernel_px as i64).into());
            put(
                "scales",
                toml::Value::Array(vec![1.into(), (features::COARSE as i64).into()]),
            );
            put("feature_stride_px", (features::STRIDE as i64).into());
        }
        Extractor::Backbone(f) => {
            let b = &f.backbone;
            put("backbone", b.name.clone().into());
            put(
                "layers",
                toml::Value::Array(b.stages().iter().map(|&s| (s as i64).into()).collect()),
            );
            put("feature_stride_px", (b.layers[0].stride as i64).into());
            put("backbone_channels", (b.channels() as i64).into());
            put("backbone_graph_sha256", b.graph_sha256.clone().into());
            put("backbone_weights_sha256", b.source_sha256.clone().into());
        }
    }
    put("feature_channels", (chosen.channels() as i64).into());
    if let Some(t) = &tilings[best.extractor] {
        put("tile_px", (t.tile as i64).into());
        put("overlap_px", (o.overlap as i64).into());
        put("tiles", (t.count() as i64).into());
    }
    if let (Some(path), Some(m)) = (&o.mask, &masks[best.extractor]) {
        put("mask", path.display().to_string().into());
        put("mask_sha256", m.sha256.clone().into());
        put("mask_inspected_cells", m.inspected.into());
    }
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
            "{} anomaly model trained on {} good images by `station train vision` ({} px {:?}, {})",
            best.design.name(),
            train_items.len(),
            o.size_px,
            o.color,
            match chosen {
                Extractor::Pca(_) => "PCA filter-bank features".to_string(),
                Extractor::Backbone(f) => format!(
                    "{} ImageNet features of stages {}",
                    f.backbone.name,
                    chosen.label().rsplit(' ').next().unwrap_or("")
                ),
            }
        ),
        kind: None,
        sha256: sha256_hex(&best.bytes),
        external_data: Default::default(),
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
