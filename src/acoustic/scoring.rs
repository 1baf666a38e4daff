//! How a model turns a part's sound into one score: the detector it was trained with, a score curve over the
//! sound, the clip aggregation and the per-condition standardisation ([`super::clip`]).
//!
//! `model.json` holds a [`Scoring`]: either the slice Gaussian (Welch log-mel and envelope-spectrum band energies
//! of sub-windows, the detector for loud impact faults such as bearings) or a frame detector over stacked log-mel
//! frames ([`super::detectors`]). Models written before detectors were compared hold a bare Gaussian: they load
//! as the slice detector of one window with no standardisation, so they score exactly as before.

use serde::{Deserialize, Serialize};

use super::autoencoder::Autoencoder;
use super::clip::{Aggregation, Standardiser};
use super::detectors::FrameScorer;
use super::frames::{BandNorm, Embedding, FrameExtractor, FrameParams};
use super::gaussian::Gaussian;
use crate::audio::features::{Extractor, FeatureParams};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "detector", rename_all = "kebab-case")]
pub enum Scoring {
    /// The Mahalanobis distance of sub-windows' band energies.
    Slice {
        gaussian: Gaussian,
        sub_window_ms: u64,
        aggregation: Aggregation,
        smooth: usize,
        standardiser: Option<Standardiser>,
    },
    /// A frame detector over frame embeddings.
    Frames {
        frames: FrameParams,
        embedding: Embedding,
        scorer: FrameScorer,
        aggregation: Aggregation,
        smooth: usize,
        standardiser: Option<Standardiser>,
    },
    /// A dense autoencoder of stacked log-mel frames: a frame's score is its RMS reconstruction error.
    Autoencoder {
        frames: FrameParams,
        model: Autoencoder,
        aggregation: Aggregation,
        smooth: usize,
        standardiser: Option<Standardiser>,
    },
    /// Several detectors; a clip's score is the largest of their standardised scores, standardised again.
    Ensemble {
        members: Vec<Scoring>,
        standardiser: Standardiser,
    },
    /// A detector over the clip's embedding (each band's mean and deviation over the whole sound).
    Clip {
        frames: FrameParams,
        /// Bands are the FFT bins (the log-power spectrum) instead of the mel bands.
        #[serde(default)]
        spectrum: bool,
        /// Only the rhythm part of the embedding (its modulation spectrum).
        #[serde(default)]
        rhythm: bool,
        /// The rhythm is each modulation band's strongest line (every model trained since 2026-12-02); models
        /// from before summed the band and are refused (their scores would not mean what they were trained on).
        #[serde(default)]
        rhythm_lines: bool,
        band_norm: BandNorm,
        scorer: FrameScorer,
        standardiser: Option<Standardiser>,
    },
}

impl Scoring {
    /// Parses `model.json`; a bare Gaussian (the format before detectors were compared) is the slice detector
    /// of one `window_ms` window.
    pub fn from_json(bytes: &[u8], window_ms: u64) -> Result<Scoring, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("detector").is_some() {
            return serde_json::from_value(value).map_err(|e| format!("not a model: {e}"));
        }
        let gaussian: Gaussian =
            serde_json::from_value(value).map_err(|e| format!("not a model: {e}"))?;
        Ok(Scoring::Slice {
            gaussian,
            sub_window_ms: window_ms,
            aggregation: Aggregation::Max,
            smooth: 1,
            standardiser: None,
        })
    }

    /// `knn (q90)`, `slice-gaussian (max)`, ...
    pub fn describe(&self) -> String {
        match self {
            Scoring::Slice { aggregation, .. } => {
                format!("slice-gaussian ({})", aggregation.name())
            }
            Scoring::Frames {
                scorer,
                aggregation,
                ..
            } => format!("{} ({})", scorer.name(), aggregation.name()),
            Scoring::Autoencoder { aggregation, .. } => {
                format!("autoencoder ({})", aggregation.name())
            }
            Scoring::Ensemble { members, .. } => format!(
                "max of {}",
                members
                    .iter()
                    .map(Scoring::describe)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            Scoring::Clip {
                scorer,
                spectrum,
                rhythm,
                ..
            } => format!(
                "{}-{} (whole clip)",
                if *rhythm {
                    "rhythm"
                } else if *spectrum {
                    "spectrum"
                } else {
                    "clip"
                },
                scorer.name().trim_start_matches("frame-")
            ),
        }
    }

    /// Problems with a loaded model whose slice features have `slice_dim` values.
    pub fn check(&self, slice_dim: usize) -> Result<(), String> {
        match self {
            Scoring::Ensemble { members, .. } => {
                if members.is_empty() {
                    return Err("ensemble: expected members".into());
                }
                members.iter().try_for_each(|m| match m {
                    Scoring::Ensemble { .. } => Err("ensemble: members cannot be ensembles".into()),
                    m => m.check(slice_dim),
                })
            }
            Scoring::Slice {
                gaussian,
                sub_window_ms,
                ..
            } => {
                if *sub_window_ms == 0 {
                    return Err("sub_window_ms: expected a positive number".into());
                }
                gaussian.check(slice_dim)
            }
            Scoring::Frames {
                frames,
                embedding,
                scorer,
                ..
            } => {
                frames_ok(frames)?;
                embedding.check(frames.dim())?;
                scorer.check(embedding.dims())
            }
            Scoring::Autoencoder { frames, model, .. } => {
                frames_ok(frames)?;
                model.check(frames.dim())
            }
            Scoring::Clip {
                frames,
                spectrum,
                rhythm,
                rhythm_lines,
                band_norm,
                scorer,
                ..
            } => {
                frames_ok(frames)?;
                if !rhythm_lines {
                    return Err(
                        "a whole-clip model from before the rhythm features changed (2026-12-02: each \
                         modulation band's strongest line, not its sum): retrain it with `station train audio`"
                            .into(),
                    );
                }
                let bands = if *spectrum {
                    frames.fft_size / 2 + 1
                } else {
                    frames.mel_bands
                };
                band_norm.check(bands)?;
                scorer.check(if *rhythm {
                    super::frames::MOD_DIMS
                } else {
                    2 * bands + super::frames::MOD_DIMS
                })
            }
        }
    }
}

fn frames_ok(frames: &FrameParams) -> Result<(), String> {
    let p = frames.problems();
    if p.is_empty() {
        Ok(())
    } else {
        Err(format!("frames.{}", p.join("; frames.")))
    }
}

/// A [`Scoring`] with its feature extractors, ready to score sounds (one per thread).
pub struct Scorer {
    pub scoring: Scoring,
    slice: Extractor,
    frames: Option<FrameExtractor>,
    members: Vec<Scorer>,
    rate_hz: u32,
}

impl Scorer {
    pub fn new(scoring: Scoring, features: &FeatureParams) -> Scorer {
        let frames = match &scoring {
            Scoring::Frames { frames, .. }
            | Scoring::Clip { frames, .. }
            | Scoring::Autoencoder { frames, .. } => Some(FrameExtractor::new(frames)),
            Scoring::Slice { .. } | Scoring::Ensemble { .. } => None,
        };
        let members = match &scoring {
            Scoring::Ensemble { members, .. } => members
                .iter()
                .map(|m| Scorer::new(m.clone(), features))
                .collect(),
            _ => Vec::new(),
        };
        Scorer {
            scoring,
            slice: Extractor::new(features),
            frames,
            members,
            rate_hz: features.sample_rate_hz,
        }
    }

    /// The raw score curve of a single detector: one score per frame (or per sub-window for the slice
    /// detector, one for a clip detector).
    fn curve(&mut self, samples: &[f32]) -> Vec<f32> {
        match (&self.scoring, &mut self.frames) {
            (
                Scoring::Frames {
                    embedding, scorer, ..
                },
                Some(ex),
            ) => ex
                .stacked(samples)
                .iter()
                .map(|f| scorer.score(&embedding.project(f)))
                .collect(),
            (Scoring::Autoencoder { model, .. }, Some(ex)) => {
                ex.stacked(samples).iter().map(|f| model.score(f)).collect()
            }
            (
                Scoring::Slice {
                    gaussian,
                    sub_window_ms,
                    ..
                },
                _,
            ) => sub_windows(samples, *sub_window_ms, self.rate_hz)
                .into_iter()
                .map(|w| gaussian.score(&self.slice.features(w)))
                .collect(),
            (
                Scoring::Clip {
                    band_norm,
                    scorer,
                    spectrum,
                    rhythm,
                    ..
                },
                Some(ex),
            ) => {
                let frames = if *spectrum {
                    ex.log_power(samples)
                } else {
                    ex.log_mel(samples)
                };
                let rate = ex.params().frame_rate_hz();
                let e = band_norm.clip_embedding(&frames, *spectrum, rate);
                let e = if *rhythm {
                    &e[e.len() - super::frames::MOD_DIMS..]
                } else {
                    &e[..]
                };
                vec![scorer.score(e)]
            }
            _ => Vec::new(),
        }
    }

    /// The clip score of a whole sound: its curve aggregated, then standardised for its condition.
    pub fn score(&mut self, samples: &[f32], condition: Option<&str>) -> f32 {
        self.score_with_curve(samples, condition).0
    }

    /// The clip score and the raw score curve it came from (an ensemble's first member's curve).
    pub fn score_with_curve(
        &mut self,
        samples: &[f32],
        condition: Option<&str>,
    ) -> (f32, Vec<f32>) {
        if samples.is_empty() {
            return (f32::NAN, Vec::new());
        }
        if let Scoring::Ensemble { standardiser, .. } = &self.scoring {
            let mut best = f32::NEG_INFINITY;
            let mut first_curve = None;
            for m in &mut self.members {
                let (z, curve) = m.score_with_curve(samples, condition);
                best = best.max(z);
                first_curve.get_or_insert(curve);
            }
            return (
                standardiser.apply(best, condition),
                first_curve.unwrap_or_default(),
            );
        }
        let curve = self.curve(samples);
        let (aggregation, smooth, standardiser) = match &self.scoring {
            Scoring::Slice {
                aggregation,
                smooth,
                standardiser,
                ..
            }
            | Scoring::Frames {
                aggregation,
                smooth,
                standardiser,
                ..
            }
            | Scoring::Autoencoder {
                aggregation,
                smooth,
                standardiser,
                ..
            } => (*aggregation, *smooth, standardiser),
            Scoring::Clip { standardiser, .. } => (Aggregation::Max, 1, standardiser),
            Scoring::Ensemble { .. } => (Aggregation::Max, 1, &None),
        };
        let raw = aggregation.apply(&curve, smooth);
        let score = standardiser
            .as_ref()
            .map_or(raw, |s| s.apply(raw, condition));
        (score, curve)
    }
}

/// The sub-windows the slice detector scores: the whole sound if it is shorter than two sub-windows, else
/// sub-windows every half sub-window.
pub fn sub_windows(samples: &[f32], sub_window_ms: u64, rate_hz: u32) -> Vec<&[f32]> {
    let n = (sub_window_ms * u64::from(rate_hz) / 1000).max(1) as usize;
    if samples.len() < 2 * n {
        return vec![samples];
    }
    super::windows(samples, n, (n / 2).max(1))
}
