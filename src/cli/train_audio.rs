//! `station train audio`: learns an acoustic model from normal recordings only and writes
//! `<out>/<name>/<version>/` (model.json + manifest.toml with sha256, feature parameters and threshold).

use std::path::PathBuf;

use anyhow::Context;

use crate::acoustic::{
    self, AcousticManifest, ThresholdSpec, TrainingInfo, window_samples, windows,
};
use crate::audio::features::{Extractor, FeatureParams};

#[derive(clap::Args)]
pub struct TrainAudioArgs {
    /// Normal recordings: WAV files or folders of them (repeat or list several)
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1.., required = true)]
    normal: Vec<PathBuf>,
    /// Model name (the folder under --out)
    #[arg(long)]
    name: String,
    /// Models folder
    #[arg(long, default_value = "models")]
    out: PathBuf,
    /// Version [default: the next free number]
    #[arg(long)]
    version: Option<String>,
    /// Slice length: the station's [audio] pre_ms + post_ms
    #[arg(long, default_value_t = 300)]
    window_ms: u64,
    /// Hop between training windows [default: half the window]
    #[arg(long)]
    hop_ms: Option<u64>,
    /// Channel of multi-channel recordings
    #[arg(long, default_value_t = 0)]
    channel: u16,
    /// FFT segment length in samples [default: ~21 ms as a power of two]
    #[arg(long)]
    fft_size: Option<usize>,
    /// STFT / Welch hop in samples [default: half the FFT segment]
    #[arg(long)]
    fft_hop: Option<usize>,
    /// Threshold = this factor x the highest out-of-fold score of the normal windows
    #[arg(long, default_value_t = 1.25)]
    threshold_margin: f32,
    /// Description stored in the manifest
    #[arg(long, default_value = "")]
    description: String,
}

pub fn train(args: &TrainAudioArgs) -> anyhow::Result<()> {
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
    let mut extractor = Extractor::new(&params);
    let features: Vec<Vec<f32>> = recordings
        .iter()
        .flat_map(|(_, s)| windows(s, window, hop))
        .map(|w| extractor.features(w))
        .collect();
    let trained = acoustic::train(&features, args.threshold_margin)?;
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| crate::model::registry::next_version(&args.out, &args.name));
    let mut manifest = AcousticManifest {
        kind: "acoustic".into(),
        name: args.name.clone(),
        version,
        description: if args.description.is_empty() {
            format!(
                "Mahalanobis distance (Ledoit-Wolf shrinkage {:.3}) of {} log-mel and {} envelope-spectrum band energies from the normal sound",
                trained.gaussian.shrinkage, params.mel_bands, params.envelope_bands
            )
        } else {
            args.description.clone()
        },
        sha256: String::new(),
        window_ms: args.window_ms,
        features: params,
        threshold: ThresholdSpec {
            value: trained.threshold,
            method: trained.method,
        },
        training: TrainingInfo {
            windows: features.len(),
            sources: args
                .normal
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            hop_ms,
        },
    };
    let dir = acoustic::save(&args.out, &mut manifest, &trained.gaussian)
        .context("cannot save the model")?;
    println!(
        "trained {} v{} on {} normal windows from {} recordings at {rate} Hz: threshold {:.3} ({})",
        manifest.name,
        manifest.version,
        features.len(),
        recordings.len(),
        manifest.threshold.value,
        manifest.threshold.method
    );
    println!("model: {}", dir.display());
    Ok(())
}
