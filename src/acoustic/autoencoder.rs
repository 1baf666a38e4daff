//! A dense autoencoder of standardised stacked log-mel frames, the DCASE 2020/2023 baseline family: trained on
//! the station's CPU (mini-batch Adam on the mean squared reconstruction error), scored by the RMS
//! reconstruction error of a frame, and exported through the project's ONNX writer as one graph (standardisation,
//! the layers and the error) that ONNX Runtime runs to the same scores.

use serde::{Deserialize, Serialize};

use crate::onnx::{Attr, Graph};
use crate::rng::Rng;

/// One fully connected layer, `outputs x inputs` weights row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub relu: bool,
}

impl Dense {
    fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            self.weights
                .chunks_exact(self.inputs)
                .zip(&self.bias)
                .map(|(row, b)| {
                    let v = b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
                    if self.relu { v.max(0.0) } else { v }
                }),
        );
    }
}

/// The autoencoder: standardisation of its input, then the layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Autoencoder {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub layers: Vec<Dense>,
}

/// How the autoencoder is shaped and trained.
#[derive(Debug, Clone)]
pub struct AeOptions {
    pub hidden: usize,
    pub bottleneck: usize,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f32,
    /// Frames trained on (evenly spaced over the training sound).
    pub max_frames: usize,
    pub seed: u64,
}

impl Default for AeOptions {
    fn default() -> Self {
        Self {
            hidden: 64,
            bottleneck: 8,
            epochs: 30,
            batch: 64,
            learning_rate: 2e-3,
            max_frames: 4096,
            seed: 1,
        }
    }
}

/// Smallest per-value scale of the input standardisation (dB).
const MIN_SCALE: f32 = 0.1;

impl Autoencoder {
    /// Trains on frames (all of one length): `dim -> hidden -> bottleneck -> hidden -> dim`, ReLU inside, a
    /// linear output.
    pub fn fit(frames: &[&[f32]], opts: &AeOptions) -> Result<Autoencoder, String> {
        let dim = frames.first().map_or(0, |f| f.len());
        if frames.len() < 2 || dim == 0 || frames.iter().any(|f| f.len() != dim) {
            return Err(format!(
                "need at least 2 frames of one length to train the autoencoder, got {}",
                frames.len()
            ));
        }
        let step = frames.len().div_ceil(opts.max_frames).max(1);
        let used: Vec<&[f32]> = frames.iter().step_by(step).copied().collect();
        let n = used.len() as f32;
        let mean: Vec<f32> = (0..dim)
            .map(|j| used.iter().map(|f| f[j]).sum::<f32>() / n)
            .collect();
        let scale: Vec<f32> = (0..dim)
            .map(|j| {
                (used.iter().map(|f| (f[j] - mean[j]).powi(2)).sum::<f32>() / n)
                    .sqrt()
                    .max(MIN_SCALE)
            })
            .collect();
        let data: Vec<Vec<f32>> = used
            .iter()
            .map(|f| {
                f.iter()
                    .zip(&mean)
                    .zip(&scale)
                    .map(|((x, m), s)| (x - m) / s)
                    .collect()
            })
            .collect();
        let mut rng = Rng::new(opts.seed);
        let sizes = [dim, opts.hidden, opts.bottleneck, opts.hidden, dim];
        let mut layers: Vec<Dense> = sizes
            .windows(2)
            .enumerate()
            .map(|(l, w)| {
                let limit = (6.0 / w[0] as f64).sqrt();
                Dense {
                    inputs: w[0],
                    outputs: w[1],
                    weights: (0..w[0] * w[1])
                        .map(|_| rng.range(-limit, limit) as f32)
                        .collect(),
                    bias: vec![0.0; w[1]],
                    relu: l + 2 < sizes.len(),
                }
            })
            .collect();
        let mut adam = Adam::new(&layers);
        let mut order: Vec<usize> = (0..data.len()).collect();
        for _ in 0..opts.epochs {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.int(0, i as i32) as usize);
            }
            for batch in order.chunks(opts.batch.max(1)) {
                let grads = gradients(&layers, batch.iter().map(|&i| data[i].as_slice()));
                adam.step(&mut layers, &grads, opts.learning_rate);
            }
        }
        let ae = Autoencoder {
            mean,
            scale,
            layers,
        };
        if ae
            .layers
            .iter()
            .flat_map(|l| l.weights.iter().chain(&l.bias))
            .any(|v| !v.is_finite())
        {
            return Err("the autoencoder diverged (non-finite weights)".into());
        }
        Ok(ae)
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// RMS reconstruction error of one frame, in standardised units.
    pub fn score(&self, frame: &[f32]) -> f32 {
        let z: Vec<f32> = frame
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((x, m), s)| (x - m) / s)
            .collect();
        let (mut a, mut b) = (z.clone(), Vec::new());
        for layer in &self.layers {
            layer.forward(&a, &mut b);
            std::mem::swap(&mut a, &mut b);
        }
        (a.iter()
            .zip(&z)
            .map(|(r, x)| (r - x) * (r - x))
            .sum::<f32>()
            / z.len().max(1) as f32)
            .sqrt()
    }

    /// Problems with a loaded autoencoder for frames of `dim` values.
    pub fn check(&self, dim: usize) -> Result<(), String> {
        let chained = self.layers.windows(2).all(|w| w[0].outputs == w[1].inputs);
        let shaped = self
            .layers
            .iter()
            .all(|l| l.weights.len() == l.inputs * l.outputs && l.bias.len() == l.outputs);
        let ends = self.layers.first().is_some_and(|l| l.inputs == dim)
            && self.layers.last().is_some_and(|l| l.outputs == dim);
        if self.mean.len() != dim || self.scale.len() != dim || !chained || !shaped || !ends {
            return Err(format!(
                "autoencoder: expected layers chained from {dim} values back to {dim}"
            ));
        }
        Ok(())
    }

    /// The autoencoder as one ONNX graph: input `frames` `[N, dim]` (raw stacked log-mel frames), output `error`
    /// `[N]`, the RMS reconstruction error of each frame (what [`Autoencoder::score`] computes).
    pub fn to_onnx(&self) -> Vec<u8> {
        let dim = self.dim() as i64;
        let mut g = Graph::new("acoustic-autoencoder");
        let x = g.input("frames", &[-1, dim]);
        let mean = g.f32s("mean", &[dim], &self.mean);
        let scale = g.f32s("scale", &[dim], &self.scale);
        let centred = g.op("Sub", &[&x, &mean], vec![]);
        let z = g.op("Div", &[&centred, &scale], vec![]);
        let mut a = z.clone();
        for (i, l) in self.layers.iter().enumerate() {
            let w = g.f32s(
                &format!("w{i}"),
                &[l.outputs as i64, l.inputs as i64],
                &l.weights,
            );
            let b = g.f32s(&format!("b{i}"), &[l.outputs as i64], &l.bias);
            a = g.op("Gemm", &[&a, &w, &b], vec![("transB", Attr::Int(1))]);
            if l.relu {
                a = g.op("Relu", &[&a], vec![]);
            }
        }
        let diff = g.op("Sub", &[&a, &z], vec![]);
        let sq = g.op("Mul", &[&diff, &diff], vec![]);
        let axes = g.i64s("axes", &[1], &[1]);
        let mse = g.op(
            "ReduceMean",
            &[&sq, &axes],
            vec![("keepdims", Attr::Int(0))],
        );
        g.op_named("Sqrt", &[&mse], vec![], "error");
        g.output("error", &[-1]);
        g.to_bytes(18, "inspection-station")
    }
}

/// Gradients of the mean squared reconstruction error over a batch, per layer (weights, bias).
fn gradients<'a>(
    layers: &[Dense],
    batch: impl Iterator<Item = &'a [f32]>,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    let mut grads: Vec<(Vec<f32>, Vec<f32>)> = layers
        .iter()
        .map(|l| (vec![0.0; l.weights.len()], vec![0.0; l.bias.len()]))
        .collect();
    let mut count = 0usize;
    let mut acts: Vec<Vec<f32>> = vec![Vec::new(); layers.len() + 1];
    for x in batch {
        count += 1;
        acts[0].clear();
        acts[0].extend_from_slice(x);
        for (l, layer) in layers.iter().enumerate() {
            let (done, rest) = acts.split_at_mut(l + 1);
            layer.forward(&done[l], &mut rest[0]);
        }
        // dLoss/d(output), loss = mean over values of the squared error (averaged over the batch below).
        let last = &acts[layers.len()];
        let mut delta: Vec<f32> = last
            .iter()
            .zip(x)
            .map(|(r, t)| 2.0 * (r - t) / x.len() as f32)
            .collect();
        for l in (0..layers.len()).rev() {
            let layer = &layers[l];
            if layer.relu {
                for (d, a) in delta.iter_mut().zip(&acts[l + 1]) {
                    if *a <= 0.0 {
                        *d = 0.0;
                    }
                }
            }
            let (gw, gb) = &mut grads[l];
            let input = &acts[l];
            for (o, d) in delta.iter().enumerate() {
                if *d == 0.0 {
                    continue;
                }
                gb[o] += d;
                for (g, a) in gw[o * layer.inputs..(o + 1) * layer.inputs]
                    .iter_mut()
                    .zip(input)
                {
                    *g += d * a;
                }
            }
            if l > 0 {
                let mut back = vec![0f32; layer.inputs];
                for (o, d) in delta.iter().enumerate() {
                    if *d != 0.0 {
                        for (b, w) in back
                            .iter_mut()
                            .zip(&layer.weights[o * layer.inputs..(o + 1) * layer.inputs])
                        {
                            *b += d * w;
                        }
                    }
                }
                delta = back;
            }
        }
    }
    let scale = 1.0 / count.max(1) as f32;
    for (gw, gb) in &mut grads {
        gw.iter_mut().chain(gb.iter_mut()).for_each(|g| *g *= scale);
    }
    grads
}

/// Adam's moment estimates for every parameter.
struct Adam {
    m: Vec<(Vec<f32>, Vec<f32>)>,
    v: Vec<(Vec<f32>, Vec<f32>)>,
    t: i32,
}

impl Adam {
    fn new(layers: &[Dense]) -> Adam {
        let zeros = || {
            layers
                .iter()
                .map(|l| (vec![0.0; l.weights.len()], vec![0.0; l.bias.len()]))
                .collect()
        };
        Adam {
            m: zeros(),
            v: zeros(),
            t: 0,
        }
    }

    fn step(&mut self, layers: &mut [Dense], grads: &[(Vec<f32>, Vec<f32>)], lr: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for (((layer, (gw, gb)), (mw, mb)), (vw, vb)) in layers
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            let params = [
                (&mut layer.weights, gw, mw, vw),
                (&mut layer.bias, gb, mb, vb),
            ];
            for (p, g, m, v) in params {
                for i in 0..p.len() {
                    m[i] = B1 * m[i] + (1.0 - B1) * g[i];
                    v[i] = B2 * v[i] + (1.0 - B2) * g[i] * g[i];
                    p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames on a 2-dimensional plane inside 12 dimensions: the autoencoder learns to rebuild them, and a frame
    /// off the plane is rebuilt far worse.
    #[test]
    fn the_autoencoder_learns_the_normal_frames_and_rebuilds_an_off_frame_worse() {
        let mut rng = Rng::new(5);
        let basis: Vec<Vec<f32>> = (0..2)
            .map(|_| (0..12).map(|_| rng.normal() as f32).collect())
            .collect();
        let frames: Vec<Vec<f32>> = (0..600)
            .map(|_| {
                let (a, b) = (rng.normal() as f32, rng.normal() as f32);
                (0..12).map(|j| a * basis[0][j] + b * basis[1][j]).collect()
            })
            .collect();
        let refs: Vec<&[f32]> = frames.iter().map(Vec::as_slice).collect();
        let opts = AeOptions {
            hidden: 16,
            bottleneck: 4,
            epochs: 60,
            ..AeOptions::default()
        };
        let untrained = Autoencoder::fit(
            &refs,
            &AeOptions {
                epochs: 0,
                ..opts.clone()
            },
        )
        .unwrap();
        let ae = Autoencoder::fit(&refs, &opts).unwrap();
        ae.check(12).unwrap();
        let mean =
            |m: &Autoencoder| refs.iter().map(|f| m.score(f)).sum::<f32>() / refs.len() as f32;
        assert!(
            mean(&ae) < 0.5 * mean(&untrained),
            "trained {} vs untrained {}",
            mean(&ae),
            mean(&untrained)
        );
        let off: Vec<f32> = (0..12)
            .map(|j| if j % 2 == 0 { 2.0 } else { -2.0 })
            .collect();
        assert!(
            ae.score(&off) > 3.0 * mean(&ae),
            "off {} vs normal {}",
            ae.score(&off),
            mean(&ae)
        );
    }
}
