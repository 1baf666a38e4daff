//! Recipes: a PLC's recipe number selects the model, threshold and ROI (`[[recipe]]` in the config).
//!
//! The switch never leaves a part half-judged: a recipe is loaded off the line (tokio's blocking pool), then the
//! orchestrator gives it a first sequence number and hands the new preprocessor and model to their workers over
//! the switch channels ([`Switches`]); each worker applies it just before the first part with that number, and
//! the orchestrator judges and records each part with the model info (threshold) of the recipe its number
//! falls under. Parts triggered before the switch finish with the old recipe.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

pub mod config;

use crate::model::{Model, ModelConfig, ModelError};
use crate::part::Seq;
use crate::preprocess::Preprocessor;
pub use config::RecipeConfig;

/// A loaded recipe, ready to switch to.
pub struct Loaded {
    pub number: u16,
    pub preprocessor: Preprocessor,
    pub model: Model,
}

/// Loads a recipe's model (checked against its manifest) and builds its preprocessor.
pub fn load(recipe: &RecipeConfig, onnxruntime_path: Option<&Path>) -> Result<Loaded, ModelError> {
    let model = Model::load(&recipe.model, onnxruntime_path)?;
    let preprocessor = Preprocessor::new(&recipe.preprocess, &model.manifest.input);
    Ok(Loaded {
        number: recipe.number,
        preprocessor,
        model,
    })
}

/// A loaded recipe, or its number and why it could not be loaded.
pub type LoadResult = Result<Loaded, (u16, String)>;

/// Starts the loader task: loads each recipe number the PLC asks for (`requests`, from the PLC handshake) on the
/// blocking pool and hands it to the orchestrator. Without requests the channel simply stays empty.
pub fn start_loader(
    recipes: Vec<RecipeConfig>,
    ort: Option<PathBuf>,
    requests: Option<tokio::sync::mpsc::Receiver<u16>>,
) -> tokio::sync::mpsc::Receiver<LoadResult> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let Some(mut requests) = requests else {
        return rx;
    };
    tokio::spawn(async move {
        while let Some(number) = requests.recv().await {
            let Some(recipe) = recipes.iter().find(|r| r.number == number).cloned() else {
                continue;
            };
            let ort = ort.clone();
            tracing::info!("loading recipe {number} ({})", recipe.model.dir.display());
            let result = tokio::task::spawn_blocking(move || load(&recipe, ort.as_deref()))
                .await
                .map_err(|e| (number, format!("loader stopped: {e}")))
                .and_then(|r| r.map_err(|e| (number, e.to_string())));
            if tx.send(result).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// How often a running line looks at its registry's `active` file.
pub const REGISTRY_POLL_MS: u64 = 250;

/// Starts the registry watcher when `[model] dir` is a registry name folder (`base`: the configured model and
/// preprocessing as recipe 0): each time its `active` file names
/// another version, that version is loaded off the line (checked against its manifest like any model) and handed
/// to the orchestrator, which swaps it in between two parts. A version that cannot be loaded is refused with
/// the reason, and the line keeps its model; it is tried again only when `active` changes again.
pub fn watch_registry(
    base: RecipeConfig,
    ort: Option<PathBuf>,
    registry: Option<PathBuf>,
    running: String,
) -> tokio::sync::mpsc::Receiver<Loaded> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let Some(registry) = registry else {
        return rx;
    };
    tokio::spawn(async move {
        let mut seen = running;
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(REGISTRY_POLL_MS));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            poll.tick().await;
            if tx.is_closed() {
                return;
            }
            let active = match crate::model::registry::active_version(&registry) {
                Ok(Some(v)) if v != seen => v,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("model registry: {e}");
                    continue;
                }
            };
            seen = active.clone();
            let recipe = RecipeConfig {
                model: ModelConfig {
                    dir: registry.join(&active),
                    ..base.model.clone()
                },
                ..base.clone()
            };
            let ort = ort.clone();
            tracing::info!("model registry: version {active} promoted; loading it");
            match tokio::task::spawn_blocking(move || load(&recipe, ort.as_deref())).await {
                Ok(Ok(loaded)) => {
                    if tx.send(loaded).await.is_err() {
                        return;
                    }
                }
                Ok(Err(e)) => tracing::error!(
                    "model registry: version {active} refused, the line keeps its model: {e}"
                ),
                Err(e) => tracing::error!("model registry: loader stopped: {e}"),
            }
        }
    });
    rx
}

/// The orchestrator's ends of the workers' switch channels.
pub struct Switches {
    pub preprocess: Sender<(Seq, Preprocessor)>,
    pub inference: Sender<(Seq, Model)>,
}
