//! `[audio]`: the sound source, the part's slice around its trigger, and the acoustic model. Parsed into
//! [`RawAudio`], validated into [`AudioConfig`]. That the slice ends before the part's deadline is checked by the
//! root config, which sees `[decision]` too.

use std::path::PathBuf;

use serde::Deserialize;

use super::synthetic::SyntheticSoundParams;
use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudio {
    kind: Option<String>,
    device: Option<String>,
    sample_rate_hz: Option<u32>,
    channel: Option<u16>,
    path: Option<PathBuf>,
    #[serde(rename = "loop")]
    looping: Option<bool>,
    seed: Option<u64>,
    anomaly_fraction: Option<f64>,
    pre_ms: Option<u64>,
    post_ms: Option<u64>,
    model_dir: Option<PathBuf>,
    threshold: Option<f32>,
    required: Option<bool>,
    ring_s: Option<u64>,
}

/// Where the sound comes from (`[audio] kind`).
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSourceConfig {
    /// A capture device through `cpal` (ALSA): by name, or the default input when `device` is `None`.
    Microphone { device: Option<String> },
    /// A WAV file replayed in real time (one long recording), or a folder of WAV files, one per part.
    Wav { path: PathBuf, looping: bool },
    /// The demo's synthetic machine sound; anomalous parts are a function of `(seed, part seq)`.
    Synthetic(SyntheticSoundParams),
}

/// The validated `[audio]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioConfig {
    pub source: AudioSourceConfig,
    pub sample_rate_hz: u32,
    /// Channel taken from multi-channel input (0 = first).
    pub channel: u16,
    pub pre_ms: u64,
    pub post_ms: u64,
    /// The acoustic model folder (`manifest.toml` + `model.json`).
    pub model_dir: PathBuf,
    /// Overrides the model's threshold when set.
    pub threshold: Option<f32>,
    /// Without audio (no device, no model) the station refuses to start when true; otherwise it runs without the
    /// acoustic score.
    pub required: bool,
    /// Seconds of audio the ring keeps.
    pub ring_s: u64,
}

/// Validates `[audio]`; every problem goes to `p` with its field path.
pub fn validate(p: &mut Problems, raw: RawAudio) -> AudioConfig {
    let source = source(p, &raw);
    let sample_rate_hz = raw.sample_rate_hz.unwrap_or(48_000);
    if !(8_000..=384_000).contains(&sample_rate_hz) {
        p.problem(
            "audio.sample_rate_hz",
            format!("expected 8000..=384000, got {sample_rate_hz}"),
        );
    }
    let pre_ms = raw.pre_ms.unwrap_or(100);
    let post_ms = p.positive("audio.post_ms", raw.post_ms, 200);
    let ring_s = p.positive("audio.ring_s", raw.ring_s, 10);
    if (pre_ms + post_ms) / 1000 >= ring_s {
        p.problem(
            "audio.ring_s",
            format!(
                "expected more than pre_ms + post_ms ({} ms), got {ring_s} s",
                pre_ms + post_ms
            ),
        );
    }
    let model_dir = p.required_path(
        "audio.model_dir",
        raw.model_dir,
        "required: the acoustic model folder holding manifest.toml and model.json",
    );
    AudioConfig {
        source,
        sample_rate_hz,
        channel: raw.channel.unwrap_or(0),
        pre_ms,
        post_ms,
        model_dir,
        threshold: p.finite("audio.threshold", raw.threshold),
        required: raw.required.unwrap_or(true),
        ring_s,
    }
}

/// `kind`: where the sound comes from, with the fields each kind needs, refusing those it does not use.
fn source(p: &mut Problems, raw: &RawAudio) -> AudioSourceConfig {
    let kind = raw.kind.as_deref().unwrap_or("microphone");
    match kind {
        "microphone" => {
            p.unused(
                "audio",
                kind,
                &[
                    ("path", raw.path.is_some()),
                    ("loop", raw.looping.is_some()),
                    ("seed", raw.seed.is_some()),
                    ("anomaly_fraction", raw.anomaly_fraction.is_some()),
                ],
            );
            AudioSourceConfig::Microphone {
                device: raw.device.clone().filter(|d| d != "default input"),
            }
        }
        "wav" => {
            p.unused(
                "audio",
                kind,
                &[
                    ("device", raw.device.is_some()),
                    ("seed", raw.seed.is_some()),
                    ("anomaly_fraction", raw.anomaly_fraction.is_some()),
                ],
            );
            let path = p.required_path(
                "audio.path",
                raw.path.clone(),
                "required with kind = \"wav\": a WAV file (one long recording) or a folder (a file per part)",
            );
            AudioSourceConfig::Wav {
                path,
                looping: raw.looping.unwrap_or(false),
            }
        }
        "synthetic" => {
            p.unused(
                "audio",
                kind,
                &[
                    ("device", raw.device.is_some()),
                    ("path", raw.path.is_some()),
                    ("loop", raw.looping.is_some()),
                ],
            );
            let anomaly_fraction = raw.anomaly_fraction.unwrap_or(0.2);
            if !(0.0..=1.0).contains(&anomaly_fraction) {
                p.problem(
                    "audio.anomaly_fraction",
                    format!("expected a fraction between 0 and 1, got {anomaly_fraction}"),
                );
            }
            AudioSourceConfig::Synthetic(SyntheticSoundParams {
                seed: raw.seed.unwrap_or(1),
                anomaly_fraction,
            })
        }
        other => {
            p.problem(
                "audio.kind",
                format!("expected \"microphone\", \"wav\" or \"synthetic\", got \"{other}\""),
            );
            AudioSourceConfig::Microphone { device: None }
        }
    }
}
