//! `[model]`: the vision model folder (a version, or a registry name), its threshold override, threads and an
//! optional shadow model. Parsed into [`RawModel`], validated into [`ModelConfig`].

use std::path::PathBuf;

use serde::Deserialize;

use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    dir: Option<PathBuf>,
    threshold: Option<f32>,
    threads: Option<usize>,
    shadow_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// A version folder, or a registry name folder (its active version; promotions are taken up while running).
    pub dir: PathBuf,
    /// A candidate model scored beside the active one, recorded, never driving the reject (shadow mode).
    pub shadow_dir: Option<PathBuf>,
    /// Overrides the manifest's threshold when set.
    pub threshold: Option<f32>,
    pub threads: usize,
}

impl ModelConfig {
    /// The model in `dir` with the manifest's threshold, one thread, no shadow model.
    pub fn at(dir: impl Into<PathBuf>) -> ModelConfig {
        ModelConfig {
            dir: dir.into(),
            shadow_dir: None,
            threshold: None,
            threads: 1,
        }
    }
}

pub fn validate(p: &mut Problems, raw: RawModel) -> ModelConfig {
    let dir = p.required_path(
        "model.dir",
        raw.dir,
        "required: the model folder holding model.onnx and manifest.toml",
    );
    p.finite("model.threshold", raw.threshold);
    let threads = raw.threads.unwrap_or(1);
    if threads == 0 {
        p.problem("model.threads", "expected at least 1 thread, got 0");
    }
    ModelConfig {
        dir,
        shadow_dir: raw.shadow_dir.map(|d| p.path(d)),
        threshold: raw.threshold,
        threads: threads.max(1),
    }
}
