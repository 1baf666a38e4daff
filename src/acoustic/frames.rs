//! Frame features for scoring a sound as a whole: log-mel frames (64 bands, 1024-sample frames, hop 512 at
//! 16 kHz), stacked with their neighbours (5 frames of context, so a frame sees ~100 ms of the sound's rhythm),
//! standardised per dimension with the training statistics and projected on the training sound's principal
//! components (a compact embedding that the k-NN, GMM and Gaussian detectors score at line rate).

use serde::{Deserialize, Serialize};

use crate::audio::features::{FeatureParams, Stft, db, mel_filterbank};
use crate::linalg;

/// How a sound becomes frame embeddings (stored in the model file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameParams {
    pub sample_rate_hz: u32,
    /// STFT frame in samples (Hann window).
    pub fft_size: usize,
    pub hop: usize,
    pub mel_bands: usize,
    pub f_min_hz: f32,
    pub f_max_hz: f32,
    /// Frames stacked into one vector.
    pub context: usize,
}

impl FrameParams {
    /// 64 mel bands, 5 frames of context, a frame of 64 ms (1024 samples at 16 kHz, 4096 at 48 kHz) with half
    /// of it as hop.
    pub fn for_rate(sample_rate_hz: u32) -> Self {
        let fft_size = (sample_rate_hz as usize * 64 / 1000)
            .next_power_of_two()
            .max(256);
        Self {
            sample_rate_hz,
            fft_size,
            hop: fft_size / 2,
            mel_bands: 64,
            f_min_hz: 20.0,
            f_max_hz: sample_rate_hz as f32 / 2.0,
            context: 5,
        }
    }

    /// Length of a stacked frame.
    pub fn dim(&self) -> usize {
        self.mel_bands * self.context
    }

    /// Frames per second.
    pub fn frame_rate_hz(&self) -> f32 {
        self.sample_rate_hz as f32 / self.hop as f32
    }

    /// Samples one stacked frame spans.
    pub fn span_samples(&self) -> usize {
        self.fft_size + (self.context - 1) * self.hop
    }

    /// Problems with the parameters, as `field: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = self.as_features().problems();
        if self.context == 0 || self.context > 32 {
            p.push(format!(
                "context: expected 1 to 32 frames, got {}",
                self.context
            ));
        }
        p
    }

    fn as_features(&self) -> FeatureParams {
        FeatureParams {
            sample_rate_hz: self.sample_rate_hz,
            fft_size: self.fft_size,
            hop: self.hop,
            mel_bands: self.mel_bands,
            f_min_hz: self.f_min_hz,
            f_max_hz: self.f_max_hz,
            ..FeatureParams::for_rate(self.sample_rate_hz)
        }
    }
}

/// Turns a sound into stacked log-mel frames; owns the FFT plan and filterbank for one [`FrameParams`].
pub struct FrameExtractor {
    params: FrameParams,
    stft: Stft,
    /// Each band's first bin and its non-zero weights.
    bank: Vec<(usize, Vec<f32>)>,
}

impl FrameExtractor {
    pub fn new(params: &FrameParams) -> Self {
        Self {
            stft: Stft::new(params.fft_size, params.hop),
            bank: mel_filterbank(&params.as_features())
                .into_iter()
                .map(|row| {
                    let first = row.iter().position(|w| *w > 0.0).unwrap_or(0);
                    let last = row.iter().rposition(|w| *w > 0.0).unwrap_or(0);
                    (first, row[first..=last].to_vec())
                })
                .collect(),
            params: params.clone(),
        }
    }

    pub fn params(&self) -> &FrameParams {
        &self.params
    }

    /// Log-mel frames (dB), one row per STFT frame.
    pub fn log_mel(&mut self, signal: &[f32]) -> Vec<Vec<f32>> {
        let bank = &self.bank;
        let mut rows = Vec::with_capacity(self.stft.frames(signal.len()));
        self.stft.for_each_power(signal, false, |_, power| {
            rows.push(
                bank.iter()
                    .map(|(first, w)| {
                        let e: f32 = w.iter().zip(&power[*first..]).map(|(w, p)| w * p).sum();
                        db(f64::from(e).max(1e-12))
                    })
                    .collect(),
            );
        });
        rows
    }

    /// Log-power spectrum frames (dB per FFT bin): the fine frequency resolution a faint tone needs.
    pub fn log_power(&mut self, signal: &[f32]) -> Vec<Vec<f32>> {
        let mut rows = Vec::with_capacity(self.stft.frames(signal.len()));
        self.stft.for_each_power(signal, false, |_, power| {
            rows.push(power.iter().map(|p| db(f64::from(*p).max(1e-12))).collect());
        });
        rows
    }

    /// Stacked frames: row `t` is log-mel frames `t..t + context` end to end (a sound shorter than the context
    /// repeats its last frame).
    pub fn stacked(&mut self, signal: &[f32]) -> Vec<Vec<f32>> {
        let mel = self.log_mel(signal);
        let c = self.params.context;
        let n = mel.len().saturating_sub(c - 1).max(1);
        (0..n)
            .map(|t| {
                (0..c)
                    .flat_map(|k| mel[(t + k).min(mel.len() - 1)].iter().copied())
                    .collect()
            })
            .collect()
    }
}

/// Groups of bands whose loudness trajectories make the clip's modulation spectrum.
pub const MOD_GROUPS: usize = 8;
/// Modulation bands (Hz) of the clip's rhythm features.
pub const MOD_BANDS_HZ: [(f32, f32); 4] = [(0.5, 1.5), (1.5, 3.5), (3.5, 7.0), (7.0, 15.0)];
/// Values of the rhythm part of a clip embedding.
pub const MOD_DIMS: usize = MOD_GROUPS * MOD_BANDS_HZ.len();

/// The modulation spectrum: for each group of bands, the mean-removed trajectory of its mean standardised level
/// over the clip, and in each modulation band the DFT power (per frame) of its strongest bin, as log10. A periodic
/// pulse or knock is one line of the modulation spectrum; summing a band's bins added the noise's broadband
/// modulation to it (rhythm AUC 0.895 instead of 0.915 on the stress set at 0 dB, docs/AUDIO.md).
fn modulation(
    frames: &[Vec<f32>],
    z: &dyn Fn(&Vec<f32>, usize) -> f32,
    bands: usize,
    frame_rate_hz: f32,
) -> Vec<f32> {
    let t = frames.len();
    let mut out = Vec::with_capacity(MOD_DIMS);
    for g in 0..MOD_GROUPS {
        let (lo, hi) = (
            g * bands / MOD_GROUPS,
            ((g + 1) * bands / MOD_GROUPS).max(g * bands / MOD_GROUPS + 1),
        );
        let mut traj: Vec<f32> = frames
            .iter()
            .map(|f| (lo..hi.min(bands)).map(|j| z(f, j)).sum::<f32>() / (hi - lo) as f32)
            .collect();
        let mean = traj.iter().sum::<f32>() / t.max(1) as f32;
        traj.iter_mut().for_each(|v| *v -= mean);
        for (f_lo, f_hi) in MOD_BANDS_HZ {
            let mut power = 0f32;
            let k_lo = (f_lo * t as f32 / frame_rate_hz).ceil().max(1.0) as usize;
            let k_hi = (f_hi * t as f32 / frame_rate_hz).floor() as usize;
            for k in k_lo..=k_hi.min(t / 2) {
                let w = std::f32::consts::TAU * k as f32 / t as f32;
                let (re, im) = traj
                    .iter()
                    .enumerate()
                    .fold((0f32, 0f32), |(re, im), (i, v)| {
                        (re + v * (w * i as f32).cos(), im - v * (w * i as f32).sin())
                    });
                power = power.max((re * re + im * im) / t as f32);
            }
            out.push((power + 1e-6).log10());
        }
    }
    out
}

/// Per-band statistics of log-mel frames, learnt on the normal training sound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandNorm {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
}

impl BandNorm {
    pub fn fit(frames: &[&[f32]]) -> Result<BandNorm, String> {
        let n = frames.len();
        let p = frames.first().map_or(0, |f| f.len());
        if n < 2 || p == 0 || frames.iter().any(|f| f.len() != p) {
            return Err(format!(
                "need at least 2 log-mel frames of one length, got {n}"
            ));
        }
        let mean: Vec<f32> = (0..p)
            .map(|j| (frames.iter().map(|f| f64::from(f[j])).sum::<f64>() / n as f64) as f32)
            .collect();
        let scale = (0..p)
            .map(|j| {
                let var = frames
                    .iter()
                    .map(|f| (f64::from(f[j] - mean[j])).powi(2))
                    .sum::<f64>()
                    / n as f64;
                (var.sqrt() as f32).max(MIN_SCALE_DB)
            })
            .collect();
        Ok(BandNorm { mean, scale })
    }

    /// A clip's embedding, in the bands' normal units:
    /// - each band's mean over the clip (a steady change of the sound); with `contrast`, the mean less the median
    ///   of its 17 neighbours, so that a narrow peak (a faint tone among the FFT bins) stands out of a noise
    ///   floor whose level moves from clip to clip;
    /// - each band's standard deviation over the clip;
    /// - the clip's rhythm: the modulation spectrum of [`MOD_GROUPS`] groups of bands, the log10 power of their
    ///   loudness trajectory in [`MOD_BANDS_HZ`] (a machine that starts to pulse or knock at a new rate).
    pub fn clip_embedding(
        &self,
        frames: &[Vec<f32>],
        contrast: bool,
        frame_rate_hz: f32,
    ) -> Vec<f32> {
        let p = self.mean.len();
        let n = frames.len().max(1) as f32;
        let z = |f: &Vec<f32>, j: usize| (f[j] - self.mean[j]) / self.scale[j];
        let means: Vec<f32> = (0..p)
            .map(|j| frames.iter().map(|f| z(f, j)).sum::<f32>() / n)
            .collect();
        let devs = (0..p).map(|j| {
            (frames
                .iter()
                .map(|f| (z(f, j) - means[j]).powi(2))
                .sum::<f32>()
                / n)
                .sqrt()
        });
        let levels: Vec<f32> = if contrast {
            (0..p)
                .map(|j| {
                    let mut around: Vec<f32> = means[j.saturating_sub(8)..(j + 9).min(p)].to_vec();
                    around.sort_by(f32::total_cmp);
                    means[j] - around[around.len() / 2]
                })
                .collect()
        } else {
            means.clone()
        };
        let mut out: Vec<f32> = levels.into_iter().chain(devs).collect();
        out.extend(modulation(frames, &|f, j| z(f, j), p, frame_rate_hz));
        out
    }

    pub fn check(&self, bands: usize) -> Result<(), String> {
        if self.mean.len() != bands || self.scale.len() != bands {
            return Err(format!("band_norm: expected {bands} means and scales"));
        }
        if self.mean.iter().chain(&self.scale).any(|v| !v.is_finite())
            || self.scale.iter().any(|s| *s <= 0.0)
        {
            return Err("band_norm: expected finite means and positive scales".into());
        }
        Ok(())
    }
}

/// Per-dimension standardisation and a PCA projection, both learnt on the normal training frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// `dims` rows of length `mean.len()`: the leading principal axes of the standardised frames.
    pub axes: Vec<Vec<f32>>,
    /// Share of the standardised variance the axes keep.
    pub explained: f32,
}

/// Smallest per-dimension scale (dB), so a band that never moved in training does not make every change huge.
const MIN_SCALE_DB: f32 = 0.1;

impl Embedding {
    /// Fits on stacked frames (at least 2, all of one length); keeps `dims` axes (fewer if the frames have fewer
    /// dimensions).
    pub fn fit(frames: &[&[f32]], dims: usize) -> Result<Embedding, String> {
        let n = frames.len();
        let p = frames.first().map_or(0, |f| f.len());
        if n < 2 || p == 0 || frames.iter().any(|f| f.len() != p) {
            return Err(format!(
                "need at least 2 frames of one length to fit the embedding, got {n}"
            ));
        }
        let mut mean = vec![0f64; p];
        for f in frames {
            for (m, x) in mean.iter_mut().zip(*f) {
                *m += f64::from(*x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0f64; p];
        for f in frames {
            for ((v, x), m) in var.iter_mut().zip(*f).zip(&mean) {
                *v += (f64::from(*x) - m).powi(2);
            }
        }
        let scale: Vec<f32> = var
            .iter()
            .map(|v| ((v / n as f64).sqrt() as f32).max(MIN_SCALE_DB))
            .collect();
        let mean: Vec<f32> = mean.iter().map(|m| *m as f32).collect();
        let z: Vec<f32> = frames
            .iter()
            .flat_map(|f| standardise(f, &mean, &scale))
            .collect();
        let (_, cov) = linalg::mean_cov(&z, p);
        let dims = dims.min(p).max(1);
        let (values, axes) = top_axes(&cov, p, dims);
        let total: f64 = (0..p).map(|i| cov[i * p + i]).sum();
        Ok(Embedding {
            mean,
            scale,
            axes,
            explained: (values.iter().sum::<f64>() / total.max(1e-12)) as f32,
        })
    }

    /// Values of an embedding: the axes and the residual.
    pub fn dims(&self) -> usize {
        self.axes.len() + 1
    }

    /// The embedding of one stacked frame: its coordinates on the axes, then the size of what the axes miss
    /// (the norm of the residual), so that a change in a direction the normal sound never moved in (a faint
    /// tone in one band) is not projected away.
    pub fn project(&self, frame: &[f32]) -> Vec<f32> {
        let z: Vec<f32> = standardise(frame, &self.mean, &self.scale).collect();
        let mut out: Vec<f32> = self
            .axes
            .iter()
            .map(|a| a.iter().zip(&z).map(|(a, z)| a * z).sum())
            .collect();
        let kept: f32 = out.iter().map(|c| c * c).sum();
        let total: f32 = z.iter().map(|v| v * v).sum();
        out.push((total - kept).max(0.0).sqrt());
        out
    }

    /// Problems with a loaded embedding for frames of `dim` values.
    pub fn check(&self, dim: usize) -> Result<(), String> {
        if self.mean.len() != dim || self.scale.len() != dim {
            return Err(format!(
                "embedding: mean/scale have {}/{} values, the frame features {dim}",
                self.mean.len(),
                self.scale.len()
            ));
        }
        if self.axes.is_empty() || self.axes.iter().any(|a| a.len() != dim) {
            return Err(format!("embedding: expected axes of length {dim}"));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&self.mean) || !finite(&self.scale) || !self.axes.iter().all(|a| finite(a)) {
            return Err("embedding: holds non-finite values".into());
        }
        Ok(())
    }
}

fn standardise<'a>(
    frame: &'a [f32],
    mean: &'a [f32],
    scale: &'a [f32],
) -> impl Iterator<Item = f32> + 'a {
    frame
        .iter()
        .zip(mean)
        .zip(scale)
        .map(|((x, m), s)| (x - m) / s)
}

/// The `k` leading eigenpairs of a symmetric positive semi-definite `p x p` matrix, by orthogonal (subspace)
/// iteration with a Rayleigh-Ritz step: eigenvalues descending and the axes as rows.
fn top_axes(cov: &[f64], p: usize, k: usize) -> (Vec<f64>, Vec<Vec<f32>>) {
    // Start from the coordinate axes of the largest variances: deterministic and close for log-mel data.
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|a, b| cov[b * p + b].total_cmp(&cov[a * p + a]));
    let mut q: Vec<Vec<f64>> = order[..k]
        .iter()
        .enumerate()
        .map(|(r, &i)| {
            (0..p)
                .map(|j| {
                    if j == i {
                        1.0
                    } else {
                        1e-3 * ((r + j) % 7) as f64
                    }
                })
                .collect()
        })
        .collect();
    orthonormalise(&mut q);
    for _ in 0..40 {
        let mut next: Vec<Vec<f64>> = q.iter().map(|v| mat_vec(cov, p, v)).collect();
        orthonormalise(&mut next);
        let moved: f64 = next
            .iter()
            .zip(&q)
            .map(|(a, b)| 1.0 - dot(a, b).abs())
            .fold(0.0, f64::max);
        q = next;
        if moved < 1e-9 {
            break;
        }
    }
    // Rayleigh-Ritz: rotate within the subspace so the axes are the eigenvectors, in order.
    let aq: Vec<Vec<f64>> = q.iter().map(|v| mat_vec(cov, p, v)).collect();
    let small: Vec<f64> = (0..k)
        .flat_map(|i| (0..k).map(move |j| (i, j)))
        .map(|(i, j)| dot(&q[i], &aq[j]))
        .collect();
    let (values, vectors) = linalg::symmetric_eigen(&small, k);
    let axes = (0..k)
        .map(|r| {
            (0..p)
                .map(|j| (0..k).map(|i| vectors[r * k + i] * q[i][j]).sum::<f64>() as f32)
                .collect()
        })
        .collect();
    (values, axes)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn mat_vec(m: &[f64], p: usize, v: &[f64]) -> Vec<f64> {
    m.chunks_exact(p).map(|row| dot(row, v)).collect()
}

/// Modified Gram-Schmidt on the rows.
fn orthonormalise(rows: &mut [Vec<f64>]) {
    for i in 0..rows.len() {
        for j in 0..i {
            let d = dot(&rows[i], &rows[j]);
            let (done, rest) = rows.split_at_mut(i);
            for (x, y) in rest[0].iter_mut().zip(&done[j]) {
                *x -= d * y;
            }
        }
        let norm = dot(&rows[i], &rows[i]).sqrt().max(1e-300);
        rows[i].iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_lights_its_band_in_every_frame_and_frames_stack_with_their_neighbours() {
        let params = FrameParams::for_rate(16_000);
        assert_eq!(
            (params.fft_size, params.hop, params.dim()),
            (1024, 512, 320)
        );
        let signal: Vec<f32> = (0..16_000)
            .map(|i| (std::f32::consts::TAU * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let mut ex = FrameExtractor::new(&params);
        let mel = ex.log_mel(&signal);
        assert_eq!(mel.len(), (16_000 - 1024) / 512 + 1);
        let loudest = |row: &Vec<f32>| {
            (0..row.len())
                .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                .unwrap()
        };
        let band = loudest(&mel[0]);
        assert!(mel.iter().all(|r| loudest(r) == band));
        let stacked = ex.stacked(&signal);
        assert_eq!(stacked.len(), mel.len() - 4);
        assert_eq!(&stacked[3][64..128], &mel[4][..]);
    }

    #[test]
    fn the_embedding_finds_the_axis_the_frames_vary_along() {
        // The first two values move together, the third on its own: after standardising, the leading axis is
        // the pair's direction and the second the third value.
        let mut rng = crate::rng::Rng::new(3);
        let frames: Vec<Vec<f32>> = (0..2000)
            .map(|_| {
                let (a, n, c) = (
                    rng.normal() as f32 * 5.0,
                    rng.normal() as f32 * 0.5,
                    rng.normal() as f32,
                );
                vec![a, a + n, 40.0 + c]
            })
            .collect();
        let refs: Vec<&[f32]> = frames.iter().map(Vec::as_slice).collect();
        let e = Embedding::fit(&refs, 2).unwrap();
        e.check(3).unwrap();
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let along = |axis: &[f32], dir: [f32; 3]| {
            axis.iter().zip(dir).map(|(a, d)| a * d).sum::<f32>().abs()
        };
        assert!(along(&e.axes[0], [s, s, 0.0]) > 0.999, "{:?}", e.axes);
        assert!(along(&e.axes[1], [0.0, 0.0, 1.0]) > 0.999, "{:?}", e.axes);
        assert!(
            e.explained > 0.99 && e.explained <= 1.0 + 1e-6,
            "{}",
            e.explained
        );
        // A frame's embedding is its standardised values on the axes.
        let p = e.project(&[5.0, 5.0, 40.0]);
        assert!(
            (p[0].abs() - 2.0 * s * 5.0 / e.scale[0]).abs() < 0.05,
            "{p:?}"
        );
    }
}
