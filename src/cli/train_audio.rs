//! `station train audio`: learns an acoustic model from normal recordings only. Every detector (k-NN, GMM,
//! frame Gaussian, slice Gaussian) with every clip aggregation is validated out of fold ([`acoustic::select`]);
//! the best is kept and written to `<out>/<name>/<version>/` (model.json + manifest.toml with sha256, the
//! comparison and the threshold).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::acoustic::clip::{condition_of, read_conditions};
use crate::acoustic::select::{self, Candidate, Clip, SelectOptions};
use crate::acoustic::{
    self, AcousticManifest, ComparedEntry, ThresholdSpec, TrainingInfo, window_samples, windows,
};
use crate::audio::features::FeatureParams;

#[derive(clap::Args)]
pub struct TrainAudioArgs {
    /// Normal recordings: WAV files or folders of them (repeat or list several)
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1.., required = true)]
    normal: Vec<PathBuf>,
    /// Anomalous recordings to validate the choice of detector on (besides anomalies made from the normal sound)
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1..)]
    validation_anomalous: Vec<PathBuf>,
    /// Model name (the folder under --out)
    #[arg(long)]
    name: String,
    /// Models folder
    #[arg(long, default_value = "models")]
    out: PathBuf,
    /// Version [default: the next free number]
    #[arg(long)]
    version: Option<String>,
    /// Clip length: a part's sound, the station's [audio] pre_ms + post_ms (a test clip's length to score
    /// whole clips)
    #[arg(long, default_value_t = 300)]
    window_ms: u64,
    /// Hop between training clips cut from long recordings [default: half the clip]
    #[arg(long)]
    hop_ms: Option<u64>,
    /// Channel of multi-channel recordings
    #[arg(long, default_value_t = 0)]
    channel: u16,
    /// Slice detector: FFT segment length in samples [default: ~21 ms as a power of two]
    #[arg(long)]
    fft_size: Option<usize>,
    /// Slice detector: STFT / Welch hop in samples [default: half the FFT segment]
    #[arg(long)]
    fft_hop: Option<usize>,
    /// Detectors to compare [default: all]: knn, gmm, frame-gaussian, slice-gaussian
    #[arg(long, value_name = "NAME", num_args = 1..)]
    detector: Vec<String>,
    /// Conditions of the recordings as a CSV of `file,condition` [default: from DCASE-style file names]
    #[arg(long, value_name = "CSV")]
    conditions: Option<PathBuf>,
    /// Threshold = this factor x the highest out-of-fold score of the normal clips (relative to the typical one)
    #[arg(long, default_value_t = 1.25)]
    threshold_margin: f32,
    /// Description stored in the manifest
    #[arg(long, default_value = "")]
    description: String,
}

type Conditions = Option<BTreeMap<String, String>>;

fn condition(path: &Path, csv: &Conditions) -> Option<String> {
    match csv {
        Some(map) => {
            let name = path.file_name()?.to_str()?;
            map.get(name).cloned()
        }
        None => condition_of(path),
    }
}

fn candidates(names: &[String]) -> anyhow::Result<Vec<Candidate>> {
    if names.is_empty() {
        return Ok(Candidate::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            Candidate::parse(n).with_context(|| {
                let all: Vec<&str> = Candidate::ALL.iter().map(|c| c.name()).collect();
                format!("--detector {n}: expected one of {}", all.join(", "))
            })
        })
        .collect()
}

pub fn train(args: &TrainAudioArgs) -> anyhow::Result<()> {
    let candidates = candidates(&args.detector)?;
    let csv = match &args.conditions {
        Some(p) => Some(read_conditions(p).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let (recordings, rate) = acoustic::load_recordings(&args.normal, args.channel)?;
    let mut params = FeatureParams::for_rate(rate);
    if let Some(n) = args.fft_size {
        params.fft_size = n;
        params.hop = n / 2;
    }
    if let Some(h) = args.fft_hop {
        params.hop = h;
    }
    let problems = params.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "feature parameters: {}",
        problems.join("; ")
    );
    let hop_ms = args.hop_ms.unwrap_or(args.window_ms / 2).max(1);
    let (window, hop) = window_samples(args.window_ms, hop_ms, rate);
    let clips: Vec<Clip> = recordings
        .iter()
        .enumerate()
        .flat_map(|(r, (path, s))| {
            let cond = condition(path, &csv);
            windows(s, window, hop).into_iter().map(move |w| Clip {
                recording: r,
                condition: cond.clone(),
                samples: w,
            })
        })
        .collect();
    let mut validation = Vec::new();
    if !args.validation_anomalous.is_empty() {
        let (anomalous, r) = acoustic::load_recordings(&args.validation_anomalous, args.channel)?;
        anyhow::ensure!(
            r == rate,
            "--validation-anomalous: recorded at {r} Hz but the normal recordings at {rate} Hz"
        );
        for (path, s) in &anomalous {
            for w in windows(s, window, hop) {
                validation.push((condition(path, &csv), w.to_vec()));
            }
        }
    }
    let opts = SelectOptions {
        features: params.clone(),
        slice_sub_window_ms: args.window_ms.min(500),
        candidates,
        threshold_margin: args.threshold_margin,
        ..SelectOptions::for_rate(rate)
    };
    let selected = select::select(&clips, &validation, &opts)?;
    for c in &selected.table {
        println!(
            "  {:<15} {:<13} validation AUC {:.4}  pAUC {:.4}",
            c.detector, c.aggregation, c.auc, c.pauc
        );
    }
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| crate::model::registry::next_version(&args.out, &args.name));
    let detector = selected.scoring.describe();
    let mut manifest = AcousticManifest {
        kind: "acoustic".into(),
        name: args.name.clone(),
        version,
        description: if args.description.is_empty() {
            format!(
                "{detector}, chosen on validation from {} candidates",
                selected.table.len()
            )
        } else {
            args.description.clone()
        },
        sha256: String::new(),
        window_ms: args.window_ms,
        features: params,
        detector: detector.clone(),
        threshold: ThresholdSpec {
            value: selected.threshold,
            method: selected.method.clone(),
        },
        training: TrainingInfo {
            windows: clips.len(),
            sources: args
                .normal
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            hop_ms,
        },
        compared: selected
            .table
            .iter()
            .map(|c| ComparedEntry {
                detector: c.detector.clone(),
                aggregation: c.aggregation.clone(),
                validation_auc: c.auc,
                validation_pauc: c.pauc,
            })
            .collect(),
    };
    let dir = acoustic::save(&args.out, &mut manifest, &selected.scoring)
        .context("cannot save the model")?;
    println!(
        "trained {} v{}: {detector} on {} normal clips of {} ms from {} recordings at {rate} Hz: threshold {:.3} ({})",
        manifest.name,
        manifest.version,
        clips.len(),
        args.window_ms,
        recordings.len(),
        manifest.threshold.value,
        manifest.threshold.method
    );
    println!("model: {}", dir.display());
    Ok(())
}
