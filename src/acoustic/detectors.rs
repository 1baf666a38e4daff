//! Frame detectors: each learns the normal sound from frame embeddings ([`super::frames::Embedding`]) and gives
//! every frame a score (higher = less like normal).
//!
//! - [`Knn`]: distance to the nearest normal frames in a memory bank (the strongest simple family of the DCASE
//!   baselines); the bank takes an equal share of frames from every condition, so a few target-domain clips are
//!   not drowned by the source domain;
//! - [`Gmm`]: a diagonal Gaussian mixture fitted by EM, score = negative log-likelihood per dimension above
//!   its smallest possible value (so that, like every other score here, it is a non-negative distance);
//! - the Mahalanobis [`Gaussian`] of the embeddings (Ledoit-Wolf shrinkage), as the slice detector uses;
//! - [`ZMax`]: each value's z-score against the normal sound, score = the mean of the 3 largest |z| (a change in
//!   one band, such as a faint tone, is not diluted by the many bands that did not change).

use serde::{Deserialize, Serialize};

use super::gaussian::Gaussian;
use crate::rng::Rng;

/// A frame detector, as stored in `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FrameScorer {
    Knn(Knn),
    Gmm(Gmm),
    Gaussian(Gaussian),
    Zmax(ZMax),
}

impl FrameScorer {
    pub fn name(&self) -> &'static str {
        match self {
            FrameScorer::Knn(_) => "knn",
            FrameScorer::Gmm(_) => "gmm",
            FrameScorer::Gaussian(_) => "frame-gaussian",
            FrameScorer::Zmax(_) => "zmax",
        }
    }

    pub fn score(&self, e: &[f32]) -> f32 {
        match self {
            FrameScorer::Knn(k) => k.score(e),
            FrameScorer::Gmm(g) => g.score(e),
            FrameScorer::Gaussian(g) => g.score(e),
            FrameScorer::Zmax(z) => z.score(e),
        }
    }

    /// Problems with a loaded detector for embeddings of `dims` values.
    pub fn check(&self, dims: usize) -> Result<(), String> {
        match self {
            FrameScorer::Knn(k) => {
                if k.dims != dims || k.bank.is_empty() || k.bank.len() % dims != 0 || k.k == 0 {
                    return Err(format!(
                        "knn: expected a non-empty bank of {dims}-value frames and k >= 1"
                    ));
                }
            }
            FrameScorer::Gmm(g) => {
                let ok = !g.weights.is_empty()
                    && g.means.len() == g.weights.len()
                    && g.vars.len() == g.weights.len()
                    && g.means.iter().chain(&g.vars).all(|v| v.len() == dims)
                    && g.vars.iter().flatten().all(|v| *v > 0.0);
                if !ok {
                    return Err(format!(
                        "gmm: expected components of {dims} means and positive variances"
                    ));
                }
            }
            FrameScorer::Gaussian(g) => g.check(dims)?,
            FrameScorer::Zmax(z) => {
                if z.mean.len() != dims
                    || z.scale.len() != dims
                    || z.scale.iter().any(|s| *s <= 0.0)
                {
                    return Err(format!("zmax: expected {dims} means and positive scales"));
                }
            }
        }
        Ok(())
    }
}

/// Which detector to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Knn,
    Gmm,
    Gaussian,
    Zmax,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Knn, Kind::Gmm, Kind::Gaussian, Kind::Zmax];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Knn => "knn",
            Kind::Gmm => "gmm",
            Kind::Gaussian => "frame-gaussian",
            Kind::Zmax => "zmax",
        }
    }

    /// Fits on embeddings grouped by condition (each group a list of frames).
    pub fn fit(self, groups: &[Vec<&[f32]>], seed: u64) -> Result<FrameScorer, String> {
        let all: Vec<&[f32]> = groups.iter().flatten().copied().collect();
        if all.len() < 2 {
            return Err(format!(
                "need at least 2 normal frames to fit a detector, got {}",
                all.len()
            ));
        }
        Ok(match self {
            Kind::Knn => FrameScorer::Knn(Knn::fit(groups, KNN_BANK, 1)),
            Kind::Gmm => FrameScorer::Gmm(Gmm::fit(
                &evenly(&all, FIT_FRAMES / 2),
                GMM_COMPONENTS,
                seed,
            )?),
            Kind::Gaussian => {
                let rows: Vec<Vec<f32>> = evenly(&all, FIT_FRAMES)
                    .iter()
                    .map(|f| f.to_vec())
                    .collect();
                FrameScorer::Gaussian(Gaussian::fit(&rows)?)
            }
            Kind::Zmax => FrameScorer::Zmax(ZMax::fit(&all)),
        })
    }
}

/// Frames in the k-NN bank (split equally between conditions).
pub const KNN_BANK: usize = 2048;
/// Frames the GMM and the Gaussian are fitted on (evenly spaced over the training sound).
const FIT_FRAMES: usize = 8192;
const GMM_COMPONENTS: usize = 8;

/// Up to `n` items, evenly spaced, in order.
fn evenly<'a>(items: &[&'a [f32]], n: usize) -> Vec<&'a [f32]> {
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n]).collect()
}

/// k-nearest-neighbour distance to a bank of normal frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knn {
    pub dims: usize,
    pub k: usize,
    /// Frames one after the other.
    pub bank: Vec<f32>,
}

impl Knn {
    /// A bank of up to `size` frames, an equal share per group, evenly spaced within each group.
    pub fn fit(groups: &[Vec<&[f32]>], size: usize, k: usize) -> Knn {
        let groups: Vec<&Vec<&[f32]>> = groups.iter().filter(|g| !g.is_empty()).collect();
        let share = size / groups.len().max(1);
        let dims = groups
            .first()
            .and_then(|g| g.first())
            .map_or(0, |f| f.len());
        let bank: Vec<f32> = groups
            .iter()
            .flat_map(|g| evenly(g, share.max(1)))
            .flat_map(|f| f.iter().copied())
            .collect();
        Knn { dims, k, bank }
    }

    /// RMS distance per dimension to the `k` nearest bank frames.
    pub fn score(&self, e: &[f32]) -> f32 {
        let mut best = [f32::INFINITY; 4];
        let k = self.k.clamp(1, best.len());
        for row in self.bank.chunks_exact(self.dims) {
            let d: f32 = row.iter().zip(e).map(|(a, b)| (a - b) * (a - b)).sum();
            if d < best[k - 1] {
                let mut i = k - 1;
                while i > 0 && best[i - 1] > d {
                    best[i] = best[i - 1];
                    i -= 1;
                }
                best[i] = d;
            }
        }
        (best[..k].iter().sum::<f32>() / (k * self.dims.max(1)) as f32).sqrt()
    }
}

/// Per-value z-scores against the normal sound; the score is the mean of the largest three |z|.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZMax {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
}

/// Smallest scale of a value (in its own units), so a value that never moved does not make any change huge.
const ZMAX_MIN_SCALE: f32 = 0.02;

impl ZMax {
    pub fn fit(x: &[&[f32]]) -> ZMax {
        let n = x.len().max(1) as f64;
        let p = x.first().map_or(0, |f| f.len());
        let mean: Vec<f64> = (0..p)
            .map(|j| x.iter().map(|f| f64::from(f[j])).sum::<f64>() / n)
            .collect();
        let scale = (0..p)
            .map(|j| {
                let var = x
                    .iter()
                    .map(|f| (f64::from(f[j]) - mean[j]).powi(2))
                    .sum::<f64>()
                    / n;
                (var.sqrt() as f32).max(ZMAX_MIN_SCALE)
            })
            .collect();
        ZMax {
            mean: mean.iter().map(|m| *m as f32).collect(),
            scale,
        }
    }

    pub fn score(&self, e: &[f32]) -> f32 {
        let mut top = [0f32; 3];
        for ((x, m), s) in e.iter().zip(&self.mean).zip(&self.scale) {
            let z = ((x - m) / s).abs();
            if z > top[2] {
                top[2] = z;
                if top[2] > top[1] {
                    top.swap(1, 2);
                    if top[1] > top[0] {
                        top.swap(0, 1);
                    }
                }
            }
        }
        let k = e.len().clamp(1, 3);
        top[..k].iter().sum::<f32>() / k as f32
    }
}

/// A Gaussian mixture with diagonal covariances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gmm {
    pub weights: Vec<f32>,
    pub means: Vec<Vec<f32>>,
    pub vars: Vec<Vec<f32>>,
}

/// Smallest variance of a component, in the embedding's (standardised) units.
const GMM_MIN_VAR: f64 = 1e-2;

impl Gmm {
    /// EM from a k-means++ start (seeded), 30 iterations.
    pub fn fit(x: &[&[f32]], components: usize, seed: u64) -> Result<Gmm, String> {
        let n = x.len();
        let p = x.first().map_or(0, |f| f.len());
        let m = components.min(n / 4).clamp(1, 64);
        let mut rng = Rng::new(seed);
        let mut means: Vec<Vec<f64>> = vec![
            x[rng.int(0, n as i32 - 1) as usize]
                .iter()
                .map(|v| f64::from(*v))
                .collect(),
        ];
        let sq = |a: &[f32], b: &[f64]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(a, b)| (f64::from(*a) - b).powi(2))
                .sum()
        };
        while means.len() < m {
            let d: Vec<f64> = x
                .iter()
                .map(|f| means.iter().map(|c| sq(f, c)).fold(f64::INFINITY, f64::min))
                .collect();
            let total: f64 = d.iter().sum();
            let mut pick = rng.unit() * total;
            let mut chosen = n - 1;
            for (i, di) in d.iter().enumerate() {
                pick -= di;
                if pick <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            means.push(x[chosen].iter().map(|v| f64::from(*v)).collect());
        }
        let global_var: Vec<f64> = (0..p)
            .map(|j| {
                let mu = x.iter().map(|f| f64::from(f[j])).sum::<f64>() / n as f64;
                (x.iter()
                    .map(|f| (f64::from(f[j]) - mu).powi(2))
                    .sum::<f64>()
                    / n as f64)
                    .max(GMM_MIN_VAR)
            })
            .collect();
        let mut vars = vec![global_var; m];
        let mut weights = vec![1.0 / m as f64; m];
        let mut resp = vec![0f64; n * m];
        for _ in 0..30 {
            // E step.
            for (i, f) in x.iter().enumerate() {
                let logs: Vec<f64> = (0..m)
                    .map(|c| weights[c].ln() + log_density(f, &means[c], &vars[c]))
                    .collect();
                let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logs.iter().map(|l| (l - top).exp()).sum();
                for c in 0..m {
                    resp[i * m + c] = (logs[c] - top).exp() / sum;
                }
            }
            // M step.
            for c in 0..m {
                let nc: f64 = (0..n).map(|i| resp[i * m + c]).sum::<f64>().max(1e-9);
                weights[c] = nc / n as f64;
                for j in 0..p {
                    let mu = (0..n)
                        .map(|i| resp[i * m + c] * f64::from(x[i][j]))
                        .sum::<f64>()
                        / nc;
                    let var = (0..n)
                        .map(|i| resp[i * m + c] * (f64::from(x[i][j]) - mu).powi(2))
                        .sum::<f64>()
                        / nc;
                    means[c][j] = mu;
                    vars[c][j] = var.max(GMM_MIN_VAR);
                }
            }
        }
        if weights
            .iter()
            .chain(means.iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err("the mixture did not converge (non-finite parameters)".into());
        }
        let f32s = |v: &Vec<f64>| v.iter().map(|x| *x as f32).collect();
        Ok(Gmm {
            weights: weights.iter().map(|w| *w as f32).collect(),
            means: means.iter().map(f32s).collect(),
            vars: vars.iter().map(f32s).collect(),
        })
    }

    /// Negative log-likelihood per dimension, less its lower bound (the peak of the narrowest component:
    /// the mixture's density never exceeds it), so the score is never negative.
    pub fn score(&self, e: &[f32]) -> f32 {
        const LN_2PI: f64 = 1.837_877_066_409_345_3;
        let floor = self
            .vars
            .iter()
            .map(|v| v.iter().map(|v| f64::from(*v).ln() + LN_2PI).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        let mut logs = [0f64; 64];
        let m = self.weights.len().min(logs.len());
        for (c, log) in logs.iter_mut().enumerate().take(m) {
            let (mu, var) = (&self.means[c], &self.vars[c]);
            let mut sum = 0f64;
            for ((x, mu), var) in e.iter().zip(mu).zip(var) {
                let (d, v) = (f64::from(x - mu), f64::from(*var));
                sum += d * d / v + v.ln() + LN_2PI;
            }
            *log = f64::from(self.weights[c]).max(1e-12).ln() - 0.5 * sum;
        }
        let top = logs[..m].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ll = top + logs[..m].iter().map(|l| (l - top).exp()).sum::<f64>().ln();
        ((-ll - 0.5 * floor).max(0.0) / e.len().max(1) as f64) as f32
    }
}

fn log_density(x: &[f32], mean: &[f64], var: &[f64]) -> f64 {
    const LN_2PI: f64 = 1.837_877_066_409_345_3;
    x.iter()
        .zip(mean)
        .zip(var)
        .map(|((x, m), v)| -0.5 * ((f64::from(*x) - m).powi(2) / v + v.ln() + LN_2PI))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clusters of normal frames along the diagonal; a frame off the diagonal is anomalous for every detector.
    #[test]
    fn every_detector_scores_a_frame_off_the_normal_clusters_higher_than_normal_frames() {
        let mut rng = Rng::new(1);
        let frames: Vec<Vec<f32>> = (0..400)
            .map(|i| {
                let centre = if i % 2 == 0 { 3.0 } else { -3.0 };
                (0..4).map(|_| centre + 0.3 * rng.normal() as f32).collect()
            })
            .collect();
        let refs: Vec<&[f32]> = frames.iter().map(Vec::as_slice).collect();
        for kind in Kind::ALL {
            let d = kind.fit(std::slice::from_ref(&refs), 7).unwrap();
            d.check(4).unwrap();
            let normal = d.score(&[3.1, 2.9, 3.0, 3.2]);
            let off = d.score(&[3.0, -3.0, 3.0, -9.0]);
            assert!(
                off > normal + 0.5,
                "{}: normal {normal}, off {off}",
                kind.name()
            );
        }
        let knn = Knn::fit(std::slice::from_ref(&refs), 100, 1);
        assert_eq!(knn.bank.len(), 100 * 4);
    }

    #[test]
    fn the_knn_bank_gives_each_condition_its_share() {
        let source: Vec<Vec<f32>> = (0..1000).map(|i| vec![i as f32]).collect();
        let target: Vec<Vec<f32>> = (0..10).map(|i| vec![10_000.0 + i as f32]).collect();
        fn g(v: &[Vec<f32>]) -> Vec<&[f32]> {
            v.iter().map(Vec::as_slice).collect()
        }
        let knn = Knn::fit(&[g(&source), g(&target)], 40, 1);
        assert_eq!(knn.bank.iter().filter(|v| **v >= 10_000.0).count(), 10);
        assert_eq!(knn.bank.len(), 30);
        // A target-domain frame is near its own clips, not scored as an anomaly of the source domain.
        assert!(knn.score(&[10_004.5]) < 1.0);
    }
}
