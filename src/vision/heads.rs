//! The anomaly heads compared on the same features ([`super::features`]), each fitted on good images only and
//! exported as ONNX nodes that turn the feature grid into a map of anomaly distances:
//!
//! - `gaussian`: one Gaussian over every location's feature vector (shrinkage covariance); the distance is the
//!   Mahalanobis distance, computed as a 1x1 convolution by the whitening matrix.
//! - `padim`: PaDiM's per-location Gaussian (each location's statistics pooled over its 3x3 neighbourhood).
//! - `patchcore`: PatchCore's memory bank of standardised feature vectors, thinned by greedy k-center coreset
//!   selection; the distance is the one to the nearest vector in the bank.
//!
//! The heads take a batch (the tiles of one part, [`super::tiles`]). All three maps are smoothed (Gaussian, sigma
//! 1 cell) and masked ([`super::mask`]) before the image score, the map's maximum, is taken.

use crate::rng::Rng;

use crate::linalg;
use crate::onnx::{Attr, Graph};

/// A model design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Design {
    Gaussian,
    Padim,
    Patchcore,
}

impl Design {
    pub const ALL: [Design; 3] = [Design::Gaussian, Design::Padim, Design::Patchcore];
    pub fn name(self) -> &'static str {
        match self {
            Design::Gaussian => "gaussian",
            Design::Padim => "padim",
            Design::Patchcore => "patchcore",
        }
    }
}

/// Features of the training images: `n` maps of `c x h x w` values (CHW).
pub struct FeatureSet<'a> {
    pub maps: &'a [Vec<f32>],
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl FeatureSet<'_> {
    fn vector(&self, image: usize, y: usize, x: usize, out: &mut [f32]) {
        let plane = self.h * self.w;
        for (ch, o) in out.iter_mut().enumerate() {
            *o = self.maps[image][ch * plane + y * self.w + x];
        }
    }

    /// Every location's vector of every image, one after the other.
    fn all_vectors(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.maps.len() * self.h * self.w * self.c];
        let mut i = 0;
        for n in 0..self.maps.len() {
            for y in 0..self.h {
                for x in 0..self.w {
                    self.vector(n, y, x, &mut out[i..i + self.c]);
                    i += self.c;
                }
            }
        }
        out
    }
}

/// Fit parameters.
#[derive(Debug, Clone, Copy)]
pub struct HeadParams {
    /// Covariance shrinkage towards the mean variance (gaussian, padim).
    pub shrinkage: f64,
    /// Memory bank size (patchcore).
    pub coreset: usize,
    pub seed: u64,
}

/// A fitted head.
pub enum Head {
    /// Whitening matrix `w` (c x c) and mean.
    Gaussian { mean: Vec<f32>, w: Vec<f32> },
    /// Per location (h*w of them): means (c each) and whitening matrices (c x c each).
    Padim { means: Vec<f32>, ws: Vec<f32> },
    /// Per-channel standardisation and the bank (m x c) of standardised vectors.
    PatchCore {
        mean: Vec<f32>,
        inv_std: Vec<f32>,
        bank: Vec<f32>,
    },
}

/// PatchCore's coreset is chosen from this many vectors drawn at random (greedy selection over every vector of
/// 200 images at a 64 x 64 grid would take minutes). 20,000 left the texture AUROCs 0.01-0.03 lower and more
/// dependent on the seed (docs/MODELS.md).
const POOL: usize = 100_000;

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Fits `design` on the training features.
pub fn fit(design: Design, f: &FeatureSet, p: &HeadParams) -> Result<Head, String> {
    let c = f.c;
    match design {
        Design::Gaussian => {
            let (mean, mut cov) = linalg::mean_cov(&f.all_vectors(), c);
            linalg::shrink(&mut cov, c, p.shrinkage, 1e-6);
            Ok(Head::Gaussian {
                mean: to_f32(&mean),
                w: to_f32(&linalg::whitening(&cov, c)?),
            })
        }
        Design::Padim => {
            let (h, w) = (f.h, f.w);
            let mut means = Vec::with_capacity(h * w * c);
            let mut ws = Vec::with_capacity(h * w * c * c);
            let mut samples = Vec::new();
            let mut v = vec![0.0; c];
            for y in 0..h {
                for x in 0..w {
                    samples.clear();
                    for n in 0..f.maps.len() {
                        for yy in y.saturating_sub(1)..(y + 2).min(h) {
                            for xx in x.saturating_sub(1)..(x + 2).min(w) {
                                f.vector(n, yy, xx, &mut v);
                                samples.extend_from_slice(&v);
                            }
                        }
                    }
                    let (mean, mut cov) = linalg::mean_cov(&samples, c);
                    linalg::shrink(&mut cov, c, p.shrinkage, 1e-6);
                    let white = linalg::whitening(&cov, c)
                        .map_err(|e| format!("location ({x}, {y}): {e}"))?;
                    means.extend(to_f32(&mean));
                    ws.extend(to_f32(&white));
                }
            }
            Ok(Head::Padim { means, ws })
        }
        Design::Patchcore => {
            let all = f.all_vectors();
            let (mean, cov) = linalg::mean_cov(&all, c);
            let inv_std: Vec<f32> = (0..c)
                .map(|i| 1.0 / (cov[i * c + i].sqrt().max(1e-6)) as f32)
                .collect();
            let mean = to_f32(&mean);
            let n = all.len() / c;
            // Candidates: a random subset, then greedy k-center (farthest point) selection.
            let mut rng = Rng::new(p.seed);
            let pool = POOL.min(n);
            let mut picks: Vec<usize> = (0..n).collect();
            for i in 0..pool {
                let j = i + (rng.unit() * (n - i) as f64) as usize;
                picks.swap(i, j.min(n - 1));
            }
            let cand: Vec<f32> = picks[..pool]
                .iter()
                .flat_map(|&i| (0..c).map(move |ch| (i, ch)))
                .map(|(i, ch)| (all[i * c + ch] - mean[ch]) * inv_std[ch])
                .collect();
            let m = p.coreset.clamp(1, pool);
            let dist2 = |a: &[f32], b: &[f32]| -> f32 {
                a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
            };
            let mut nearest = vec![f32::INFINITY; pool];
            let mut bank = Vec::with_capacity(m * c);
            let mut next = 0;
            for _ in 0..m {
                let chosen = &cand[next * c..(next + 1) * c];
                bank.extend_from_slice(chosen);
                let mut far = (0, -1.0f32);
                for (i, d) in nearest.iter_mut().enumerate() {
                    *d = d.min(dist2(&cand[i * c..(i + 1) * c], chosen));
                    if *d > far.1 {
                        far = (i, *d);
                    }
                }
                next = far.0;
            }
            Ok(Head::PatchCore {
                mean,
                inv_std,
                bank,
            })
        }
    }
}

fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

/// Adds the head to `g`: features [n, c, h, w] in (n images or tiles), the distance maps [n, 1, h, w] out.
pub fn add_to_graph(
    g: &mut Graph,
    features: &str,
    head: &Head,
    n: usize,
    (c, h, w): (usize, usize, usize),
) -> String {
    let (n, c, h, w) = (n as i64, c as i64, h as i64, w as i64);
    // [n, c, h, w] -> [n, h * w, c]: one row per cell.
    let rows_of = |g: &mut Graph, x: &str| -> String {
        let shape = g.i64s("shape", &[3], &[n, c, h * w]);
        let flat = g.op("Reshape", &[x, &shape], vec![]);
        g.op("Transpose", &[&flat], vec![("perm", ints(&[0, 2, 1]))])
    };
    match head {
        Head::Gaussian { mean, w: white } => {
            // W (x - mean) = W x - W mean, as a 1x1 convolution with bias.
            let cu = c as usize;
            let bias: Vec<f32> = (0..cu)
                .map(|i| -(0..cu).map(|j| white[i * cu + j] * mean[j]).sum::<f32>())
                .collect();
            let kernel = g.f32s("whitening", &[c, c, 1, 1], white);
            let bias = g.f32s("whitening_bias", &[c], &bias);
            let z = g.op("Conv", &[features, &kernel, &bias], vec![]);
            let z2 = g.op("Mul", &[&z, &z], vec![]);
            let axes = g.i64s("axes", &[1], &[1]);
            let d2 = g.op("ReduceSum", &[&z2, &axes], vec![("keepdims", Attr::Int(1))]);
            g.op("Sqrt", &[&d2], vec![])
        }
        Head::Padim { means, ws } => {
            let rows = rows_of(g, features);
            let mean = g.f32s("loc_mean", &[h * w, c], means);
            let centred = g.op("Sub", &[&rows, &mean], vec![]);
            let shape = g.i64s("shape", &[4], &[n, h * w, c, 1]);
            let cols = g.op("Reshape", &[&centred, &shape], vec![]);
            let white = g.f32s("loc_whitening", &[h * w, c, c], ws);
            let z = g.op("MatMul", &[&white, &cols], vec![]);
            let z2 = g.op("Mul", &[&z, &z], vec![]);
            let axes = g.i64s("axes", &[2], &[2, 3]);
            let d2 = g.op("ReduceSum", &[&z2, &axes], vec![("keepdims", Attr::Int(0))]);
            let d = g.op("Sqrt", &[&d2], vec![]);
            let shape = g.i64s("shape", &[4], &[n, 1, h, w]);
            g.op("Reshape", &[&d, &shape], vec![])
        }
        Head::PatchCore {
            mean,
            inv_std,
            bank,
        } => {
            let m = (bank.len() / c as usize) as i64;
            let mean = g.f32s("std_mean", &[1, c, 1, 1], mean);
            let inv_std = g.f32s("std_scale", &[1, c, 1, 1], inv_std);
            let centred = g.op("Sub", &[features, &mean], vec![]);
            let z = g.op("Mul", &[&centred, &inv_std], vec![]);
            let rows = rows_of(g, &z);
            let shape = g.i64s("shape", &[2], &[n * h * w, c]);
            let rows = g.op("Reshape", &[&rows, &shape], vec![]);
            // |f - b|^2 = |f|^2 - 2 f.b + |b|^2
            let cu = c as usize;
            let bank_t: Vec<f32> = (0..cu)
                .flat_map(|ch| (0..m as usize).map(move |i| (i, ch)))
                .map(|(i, ch)| bank[i * cu + ch])
                .collect();
            let norms: Vec<f32> = bank
                .chunks_exact(cu)
                .map(|b| b.iter().map(|v| v * v).sum())
                .collect();
            let bank_t = g.f32s("bank_t", &[c, m], &bank_t);
            let norms = g.f32s("bank_norms", &[1, m], &norms);
            let dots = g.op("MatMul", &[&rows, &bank_t], vec![]);
            let minus_two = g.f32s("minus_two", &[1], &[-2.0]);
            let dots = g.op("Mul", &[&dots, &minus_two], vec![]);
            let sq = g.op("Mul", &[&rows, &rows], vec![]);
            let axes = g.i64s("axes", &[1], &[1]);
            let f2 = g.op("ReduceSum", &[&sq, &axes], vec![("keepdims", Attr::Int(1))]);
            let d2 = g.op("Add", &[&dots, &norms], vec![]);
            let d2 = g.op("Add", &[&d2, &f2], vec![]);
            let nearest = g.op(
                "ReduceMin",
                &[&d2],
                vec![("axes", ints(&[1])), ("keepdims", Attr::Int(0))],
            );
            let nearest = g.op("Relu", &[&nearest], vec![]);
            let d = g.op("Sqrt", &[&nearest], vec![]);
            let shape = g.i64s("shape", &[4], &[n, 1, h, w]);
            g.op("Reshape", &[&d, &shape], vec![])
        }
    }
}

/// Smooths distance maps ([n, 1, h, w]) by a Gaussian of sigma 1 cell (reflecting at the edges).
pub fn smooth(g: &mut Graph, map: &str) -> String {
    let taps: Vec<f32> = (-2i32..=2).map(|i| (-(i * i) as f32 / 2.0).exp()).collect();
    let sum: f32 = taps.iter().sum();
    let kernel: Vec<f32> = taps
        .iter()
        .flat_map(|a| taps.iter().map(move |b| a * b / (sum * sum)))
        .collect();
    let pads = g.i64s("pads", &[8], &[0, 0, 2, 2, 0, 0, 2, 2]);
    let padded = g.op(
        "Pad",
        &[map, &pads],
        vec![("mode", Attr::Str("reflect".into()))],
    );
    let kernel = g.f32s("smooth", &[1, 1, 5, 5], &kernel);
    g.op("Conv", &[&padded, &kernel], vec![])
}

/// Smooths the distance map (Gaussian, sigma 1 cell) and adds the outputs: `score` [1], the smoothed map's
/// maximum, and `anomaly_map` [1, 1, H, W], the smoothed map resized to the input. With a `mask` (the map's grid,
/// 1 inspected, 0 not) the cells not inspected are zero in both.
pub fn add_outputs(
    g: &mut Graph,
    map: &str,
    height: usize,
    width: usize,
    mask: Option<(&[f32], usize, usize)>,
) {
    let smoothed = smooth(g, map);
    let smooth = masked(g, &smoothed, mask);
    // The score ignores the outermost ring of cells, whose features see the padding more than the part.
    let starts = g.i64s("starts", &[2], &[1, 1]);
    let ends = g.i64s("ends", &[2], &[-1, -1]);
    let axes = g.i64s("axes", &[2], &[2, 3]);
    let inner = g.op("Slice", &[&smooth, &starts, &ends, &axes], vec![]);
    named_outputs(g, &inner, &smooth, height, width);
}

/// `map` ([1, 1, h, w]) with the cells a mask leaves out set to zero (none: `map` itself).
pub fn masked(g: &mut Graph, map: &str, mask: Option<(&[f32], usize, usize)>) -> String {
    match mask {
        Some((cells, h, w)) => {
            let mask = g.f32s("mask", &[1, 1, h as i64, w as i64], cells);
            g.op("Mul", &[map, &mask], vec![])
        }
        None => map.to_string(),
    }
}

/// The model's outputs: `score` [1], the maximum of `scored`, and `anomaly_map` [1, 1, H, W], `map` resized.
pub fn named_outputs(g: &mut Graph, scored: &str, map: &str, height: usize, width: usize) {
    let max = g.op("ReduceMax", &[scored], vec![("keepdims", Attr::Int(0))]);
    let shape = g.i64s("shape", &[1], &[1]);
    g.op_named("Reshape", &[&max, &shape], vec![], "score");
    let sizes = g.i64s("sizes", &[4], &[1, 1, height as i64, width as i64]);
    g.op_named(
        "Resize",
        &[map, "", "", &sizes],
        vec![("mode", Attr::Str("linear".into()))],
        "anomaly_map",
    );
    g.output("score", &[1]);
    g.output("anomaly_map", &[1, 1, height as i64, width as i64]);
}
