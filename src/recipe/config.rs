//! `[[recipe]]`: what a PLC's recipe number selects: a model folder, a threshold and an ROI, each falling back
//! to `[model]` and `[preprocess]`. Parsed into [`RawRecipe`]s, validated into [`RecipeConfig`]s.

use std::path::PathBuf;

use serde::Deserialize;

use crate::model::config::ModelConfig;
use crate::preprocess::config::{PreprocessConfig, roi};
use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipe {
    number: Option<u16>,
    model_dir: Option<PathBuf>,
    threshold: Option<f32>,
    roi: Option<Vec<i64>>,
}

/// One recipe: the model, threshold and ROI a recipe number selects.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeConfig {
    pub number: u16,
    pub model: ModelConfig,
    pub preprocess: PreprocessConfig,
}

pub fn validate(
    p: &mut Problems,
    raw: Vec<RawRecipe>,
    model: &ModelConfig,
    preprocess: &PreprocessConfig,
) -> Vec<RecipeConfig> {
    let mut recipes: Vec<RecipeConfig> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("recipe[{i}].{name}");
        let number = match r.number {
            Some(0) | None => {
                p.problem(
                    &field("number"),
                    "required: a recipe number from 1 to 65535",
                );
                continue;
            }
            Some(n) => n,
        };
        if recipes.iter().any(|other| other.number == number) {
            p.problem(
                &field("number"),
                format!("recipe {number} is defined twice"),
            );
        }
        p.finite(&field("threshold"), r.threshold);
        let roi = roi(p, &field("roi"), r.roi);
        recipes.push(RecipeConfig {
            number,
            model: ModelConfig {
                dir: r.model_dir.map_or_else(|| model.dir.clone(), |d| p.path(d)),
                threshold: r.threshold.or(model.threshold),
                threads: model.threads,
                shadow_dir: None,
            },
            preprocess: PreprocessConfig {
                roi: roi.or(preprocess.roi),
                calibration: preprocess.calibration.clone(),
            },
        });
    }
    recipes
}
