//! The trained models' feature extractor: a filter bank learned on the station's own good images (PCA of image
//! patches, PCANet-style, so nothing pretrained is needed), at two scales, turned into local texture energies.
//!
//! The image is first standardised (mean 0, spread 1: lighting drifts do not count). Then for each scale (the input
//! as it is, and averaged down 4x): reflect padding, one local-mean filter and `K` PCA filters (`kernel` x
//! `kernel`), the absolute responses averaged over each 4x4 cell (at the coarse scale, over 3x3 of its cells), and
//! their logarithm (energies are skewed; their logs are close to Gaussian). Both scales land on one grid of stride
//! 4, so a feature vector of `2 (K + 1)` values describes each 4x4 cell of the input at two sizes (with the default
//! 3 px filters, about 4 and 16 pixels). The whole extractor is an ONNX graph ([`add_to_graph`]); training runs the
//! same graph through ONNX Runtime, so the features a model learns from are exactly those it scores.

use crate::rng::Rng;

use crate::onnx::{Attr, Graph};

/// Feature grid stride in input pixels.
pub const STRIDE: usize = 4;
/// The coarse scale's downsampling factor.
pub const COARSE: usize = 4;
/// Added to the pooled energies before their logarithm.
const LOG_EPS: f32 = 0.01;

/// The filter bank's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureParams {
    /// Input channels (1 gray, 3 color).
    pub channels: usize,
    /// Input height and width in pixels (multiples of 16).
    pub height: usize,
    pub width: usize,
    /// PCA filters per scale.
    pub filters: usize,
    /// Filter size in pixels (odd).
    pub kernel: usize,
}

impl FeatureParams {
    /// Feature channels: (mean + K energies) per scale.
    pub fn feature_channels(&self) -> usize {
        2 * (self.filters + 1)
    }
    /// Feature grid (height, width).
    pub fn grid(&self) -> (usize, usize) {
        (self.height / STRIDE, self.width / STRIDE)
    }
}

/// The learned filters of both scales: each `(K + 1) x C x k x k`, the local mean first.
#[derive(Debug, Clone)]
pub struct FilterBank {
    pub params: FeatureParams,
    pub fine: Vec<f32>,
    pub coarse: Vec<f32>,
}

/// Averages a CHW image down by `factor` (dimensions divisible by it).
fn downsample(image: &[f32], c: usize, h: usize, w: usize, factor: usize) -> Vec<f32> {
    let (oh, ow) = (h / factor, w / factor);
    let mut out = vec![0.0; c * oh * ow];
    let norm = 1.0 / (factor * factor) as f32;
    for ch in 0..c {
        for y in 0..oh * factor {
            for x in 0..ow * factor {
                out[ch * oh * ow + (y / factor) * ow + x / factor] +=
                    image[ch * h * w + y * w + x] * norm;
            }
        }
    }
    out
}

/// PCA filters of `patches` random `k x k` patches (patch mean removed) of the images: the `filters` strongest
/// components, each a unit vector over `C x k x k`, after the local mean filter.
fn pca_filters(
    images: &[Vec<f32>],
    c: usize,
    h: usize,
    w: usize,
    p: &FeatureParams,
    patches: usize,
    rng: &mut Rng,
) -> Result<Vec<f32>, String> {
    let k = p.kernel;
    let dim = c * k * k;
    if h < k || w < k || images.is_empty() {
        return Err(format!(
            "images of {w}x{h} are too small for {k}x{k} filters"
        ));
    }
    let mut samples = Vec::with_capacity(patches * dim);
    let mut patch = vec![0.0f32; dim];
    for _ in 0..patches {
        let img = &images[rng.int(0, images.len() as i32 - 1) as usize];
        let (y0, x0) = (
            rng.int(0, (h - k) as i32) as usize,
            rng.int(0, (w - k) as i32) as usize,
        );
        for ch in 0..c {
            for dy in 0..k {
                for dx in 0..k {
                    patch[(ch * k + dy) * k + dx] = img[ch * h * w + (y0 + dy) * w + x0 + dx];
                }
            }
        }
        let mean = patch.iter().sum::<f32>() / dim as f32;
        samples.extend(patch.iter().map(|v| v - mean));
    }
    let (_, cov) = crate::linalg::mean_cov(&samples, dim);
    let (_, vectors) = crate::linalg::symmetric_eigen(&cov, dim);
    let mut bank = vec![1.0 / dim as f32; dim];
    for f in 0..p.filters.min(dim) {
        bank.extend(vectors[f * dim..(f + 1) * dim].iter().map(|&v| v as f32));
    }
    Ok(bank)
}

/// Each image standardised to zero mean and unit spread, as the graph's first step does ([`standardise`]).
fn standardised(image: &[f32]) -> Vec<f32> {
    let n = image.len() as f32;
    let mean = image.iter().sum::<f32>() / n;
    let var = image.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + STD_EPS).sqrt();
    image.iter().map(|v| (v - mean) * inv).collect()
}

/// Added to the image variance before its square root.
const STD_EPS: f32 = 1e-4;

/// Standardises the whole image (mean 0, spread 1, over all channels and pixels): the features then describe
/// structure, not the lighting of the moment (a brighter or dimmer part, a drifting lamp).
fn standardise(g: &mut Graph, x: &str) -> String {
    let mean = g.op(
        "ReduceMean",
        &[x],
        vec![("axes", ints(&[1, 2, 3])), ("keepdims", Attr::Int(1))],
    );
    let centred = g.op("Sub", &[x, &mean], vec![]);
    let sq = g.op("Mul", &[&centred, &centred], vec![]);
    let var = g.op(
        "ReduceMean",
        &[&sq],
        vec![("axes", ints(&[1, 2, 3])), ("keepdims", Attr::Int(1))],
    );
    let eps = g.f32s("std_eps", &[1], &[STD_EPS]);
    let var = g.op("Add", &[&var, &eps], vec![]);
    let sd = g.op("Sqrt", &[&var], vec![]);
    g.op("Div", &[&centred, &sd], vec![])
}

/// Learns the filter bank from preprocessed training tensors (CHW, as the model's input).
pub fn learn(images: &[Vec<f32>], params: FeatureParams, seed: u64) -> Result<FilterBank, String> {
    let mut rng = Rng::new(seed);
    let (c, h, w) = (params.channels, params.height, params.width);
    let images: Vec<Vec<f32>> = images.iter().map(|i| standardised(i)).collect();
    let images = images.as_slice();
    let fine = pca_filters(images, c, h, w, &params, 20_000, &mut rng)?;
    let small: Vec<Vec<f32>> = images
        .iter()
        .map(|i| downsample(i, c, h, w, COARSE))
        .collect();
    let coarse = pca_filters(&small, c, h / COARSE, w / COARSE, &params, 20_000, &mut rng)?;
    Ok(FilterBank {
        params,
        fine,
        coarse,
    })
}

fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

/// One scale's branch: pad, mean filter and PCA filters, |response| pooled onto the stride-4 grid, log energies.
fn branch(g: &mut Graph, x: &str, bank: &[f32], p: &FeatureParams, fine: bool) -> String {
    let (k, c, kf) = (p.kernel as i64, p.channels as i64, p.filters as i64);
    let half = k / 2;
    let pads = g.i64s("pads", &[8], &[0, 0, half, half, 0, 0, half, half]);
    let padded = g.op(
        "Pad",
        &[x, &pads],
        vec![("mode", Attr::Str("reflect".into()))],
    );
    let plane = (c * k * k) as usize;
    let w_mean = g.f32s("w_mean", &[1, c, k, k], &bank[..plane]);
    let w_tex = g.f32s("w_tex", &[kf, c, k, k], &bank[plane..]);
    let mean = g.op("Conv", &[&padded, &w_mean], vec![]);
    let tex = g.op("Conv", &[&padded, &w_tex], vec![]);
    let tex = g.op("Abs", &[&tex], vec![]);
    let pool = |g: &mut Graph, v: &str| {
        let attrs = if fine {
            vec![
                ("kernel_shape", ints(&[4, 4])),
                ("strides", ints(&[4, 4])),
                ("pads", ints(&[0, 0, 0, 0])),
                ("count_include_pad", Attr::Int(0)),
            ]
        } else {
            vec![
                ("kernel_shape", ints(&[3, 3])),
                ("strides", ints(&[1, 1])),
                ("pads", ints(&[1, 1, 1, 1])),
                ("count_include_pad", Attr::Int(0)),
            ]
        };
        g.op("AveragePool", &[v], attrs)
    };
    let mean = pool(g, &mean);
    let energy = pool(g, &tex);
    let eps = g.f32s("log_eps", &[1], &[LOG_EPS]);
    let energy = g.op("Add", &[&energy, &eps], vec![]);
    let energy = g.op("Log", &[&energy], vec![]);
    g.op("Concat", &[&mean, &energy], vec![("axis", Attr::Int(1))])
}

/// Adds the extractor to `g` on input `x` ([1, C, H, W]); returns the features' name ([1, 2(K+1), H/4, W/4]).
pub fn add_to_graph(g: &mut Graph, x: &str, bank: &FilterBank) -> String {
    let p = &bank.params;
    let x = &standardise(g, x);
    let fine = branch(g, x, &bank.fine, p, true);
    let f = COARSE as i64;
    let small = g.op(
        "AveragePool",
        &[x],
        vec![("kernel_shape", ints(&[f, f])), ("strides", ints(&[f, f]))],
    );
    let coarse = branch(g, &small, &bank.coarse, p, false);
    g.op("Concat", &[&fine, &coarse], vec![("axis", Attr::Int(1))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_filters_of_stripes_find_the_stripe_direction() {
        // Vertical stripes (period 4): the strongest component varies along x only.
        let (h, w) = (32, 32);
        let img: Vec<f32> = (0..h * w)
            .map(|i| if (i % w) % 4 < 2 { 1.0 } else { -1.0 })
            .collect();
        let p = FeatureParams {
            channels: 1,
            height: h,
            width: w,
            filters: 2,
            kernel: 5,
        };
        let bank = pca_filters(&[img], 1, h, w, &p, 2000, &mut Rng::new(3)).unwrap();
        assert_eq!(bank.len(), 3 * 25);
        let first = &bank[25..50];
        for y in 1..5 {
            for x in 0..5 {
                assert!(
                    (first[y * 5 + x] - first[x]).abs() < 1e-3,
                    "not constant along y"
                );
            }
        }
        let norm: f32 = first.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_eq!(downsample(&[1.0, 3.0, 5.0, 7.0], 1, 2, 2, 2), vec![4.0]);
    }
}
