//! Shadow mode: a candidate model (`[model] shadow_dir`) runs beside the active one on the same preprocessed
//! tensors, on its own thread fed by a bounded channel. Its scores are recorded per part (table `shadow_scores`)
//! and never drive the reject; `station evaluate --shadow` compares the two on live data. A tensor the shadow
//! thread cannot take in time is dropped and counted (`shadow_dropped`), never waited for: the line comes first.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use tokio::sync::mpsc::Sender;

use super::Model;
use crate::metrics::{Counters, bump};
use crate::part::record::{RecordMsg, ShadowScore};
use crate::part::{Seq, part_id};

/// One part's tensor for the shadow model.
pub struct ShadowJob {
    pub seq: Seq,
    pub tensor: Vec<f32>,
}

/// The inference worker's end: hands each tensor over without waiting.
pub struct ShadowTap {
    pub jobs: SyncSender<ShadowJob>,
    pub counters: Arc<Counters>,
}

impl ShadowTap {
    pub fn offer(&self, seq: Seq, tensor: &[f32]) {
        let job = ShadowJob {
            seq,
            tensor: tensor.to_vec(),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.jobs.try_send(job)
        {
            bump(&self.counters.shadow_dropped);
        }
    }
}

/// Loads the shadow model of `[model] shadow_dir` and checks that it takes the active model's input.
pub fn load(
    dir: &std::path::Path,
    active: &Model,
    onnxruntime_path: Option<&std::path::Path>,
) -> Result<Model, super::ModelError> {
    let shadow = Model::load(&super::ModelConfig::at(dir), onnxruntime_path)?;
    check_compatible(active, &shadow).map_err(|detail| super::ModelError::Contract {
        path: shadow.dir.join("model.onnx").display().to_string(),
        detail,
    })?;
    Ok(shadow)
}

/// Checks that the shadow model takes the same input as the active one (it scores the same tensors).
fn check_compatible(active: &Model, shadow: &Model) -> Result<(), String> {
    let (a, s) = (&active.manifest.input, &shadow.manifest.input);
    let same = a.shape == s.shape
        && a.layout == s.layout
        && a.color == s.color
        && a.scale == s.scale
        && a.mean == s.mean
        && a.std == s.std;
    if same {
        Ok(())
    } else {
        Err(format!(
            "the shadow model {} takes input {:?} {:?} {:?} (scale {}, mean {:?}, std {:?}) but the active model \
             takes {:?} {:?} {:?} (scale {}, mean {:?}, std {:?}); a shadow model must score the same tensors",
            shadow.dir.display(),
            s.shape,
            s.layout,
            s.color,
            s.scale,
            s.mean,
            s.std,
            a.shape,
            a.layout,
            a.color,
            a.scale,
            a.mean,
            a.std
        ))
    }
}

/// Body of the shadow thread: scores each tensor and sends the score to the records channel it is given.
pub fn run_worker(
    mut model: Model,
    jobs: Receiver<ShadowJob>,
    records: Sender<RecordMsg>,
    run_id: i64,
    counters: Arc<Counters>,
) {
    let clock = crate::clock::Clock::new();
    let expected = model.manifest.input.shape.iter().product::<i64>() as usize;
    while let Ok(job) = jobs.recv() {
        let score = if job.tensor.len() == expected {
            model
                .infer(&job.tensor)
                .map(|i| i.score)
                .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "the active model's tensor has {} values, the shadow model takes {expected}",
                job.tensor.len()
            ))
        };
        bump(&counters.shadow_scored);
        let record = ShadowScore {
            part_id: part_id(run_id, job.seq),
            model: model.info.clone(),
            score,
            scored_us: clock.now_us(),
        };
        if records.blocking_send(RecordMsg::Shadow(record)).is_err() {
            return;
        }
    }
}
