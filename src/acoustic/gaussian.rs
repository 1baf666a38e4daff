//! The normal sound as a Gaussian: per-feature mean and scale, and a Ledoit-Wolf shrinkage covariance (few
//! training windows, many correlated bands). A slice's score is its Mahalanobis distance from the normal sound,
//! per dimension: `sqrt(zᵀ Σ⁻¹ z / p)` with `z` the standardized features (about 1 for normal sound).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Row-major inverse of the shrunk covariance of the standardized features.
    pub precision: Vec<f64>,
    /// Ledoit-Wolf shrinkage intensity towards the scaled identity, 0..=1.
    pub shrinkage: f64,
}

/// Smallest per-feature scale (dB): a band that never moved in training must not make every change infinite.
const MIN_SCALE: f64 = 0.05;

impl Gaussian {
    /// Fits on feature vectors (all of one length, at least 2).
    pub fn fit(x: &[Vec<f32>]) -> Result<Gaussian, String> {
        let n = x.len();
        let p = x.first().map_or(0, Vec::len);
        if n < 2 || p == 0 {
            return Err(format!(
                "need at least 2 feature vectors to fit, got {n} of dimension {p}"
            ));
        }
        if x.iter()
            .any(|v| v.len() != p || v.iter().any(|f| !f.is_finite()))
        {
            return Err("feature vectors differ in length or hold non-finite values".into());
        }
        let nf = n as f64;
        let mean: Vec<f64> = (0..p)
            .map(|j| x.iter().map(|v| f64::from(v[j])).sum::<f64>() / nf)
            .collect();
        let scale: Vec<f64> = (0..p)
            .map(|j| {
                let var = x
                    .iter()
                    .map(|v| (f64::from(v[j]) - mean[j]).powi(2))
                    .sum::<f64>()
                    / nf;
                var.sqrt().max(MIN_SCALE)
            })
            .collect();
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|v| {
                (0..p)
                    .map(|j| (f64::from(v[j]) - mean[j]) / scale[j])
                    .collect()
            })
            .collect();
        let mut s = vec![0f64; p * p];
        for row in &z {
            for a in 0..p {
                for b in a..p {
                    s[a * p + b] += row[a] * row[b] / nf;
                }
            }
        }
        for a in 0..p {
            for b in 0..a {
                s[a * p + b] = s[b * p + a];
            }
        }
        // Ledoit-Wolf (2004): shrink towards mu·I.
        let mu = (0..p).map(|a| s[a * p + a]).sum::<f64>() / p as f64;
        let s_norm2: f64 = s.iter().map(|v| v * v).sum();
        let d2 =
            s_norm2 - 2.0 * mu * (0..p).map(|a| s[a * p + a]).sum::<f64>() + mu * mu * p as f64;
        let fourth: f64 = z
            .iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f64>().powi(2))
            .sum();
        let b2 = ((fourth - nf * s_norm2) / (nf * nf)).clamp(0.0, d2);
        let shrinkage = if d2 > 0.0 { b2 / d2 } else { 1.0 };
        let mut sigma = s;
        for a in 0..p {
            for b in 0..p {
                sigma[a * p + b] *= 1.0 - shrinkage;
            }
            sigma[a * p + a] += shrinkage * mu.max(1e-6);
        }
        let precision =
            invert_spd(&sigma, p).ok_or("the shrunk covariance is not positive definite")?;
        Ok(Gaussian {
            mean,
            scale,
            precision,
            shrinkage,
        })
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Mahalanobis distance per dimension of one feature vector.
    pub fn score(&self, f: &[f32]) -> f32 {
        let p = self.dim();
        if f.len() != p {
            return f32::NAN;
        }
        let z: Vec<f64> = (0..p)
            .map(|j| (f64::from(f[j]) - self.mean[j]) / self.scale[j])
            .collect();
        let mut d2 = 0.0;
        for a in 0..p {
            let row = &self.precision[a * p..(a + 1) * p];
            d2 += z[a] * row.iter().zip(&z).map(|(q, v)| q * v).sum::<f64>();
        }
        (d2.max(0.0) / p as f64).sqrt() as f32
    }

    /// Checks a loaded model's shapes.
    pub fn check(&self, dim: usize) -> Result<(), String> {
        if self.mean.len() != dim || self.scale.len() != dim || self.precision.len() != dim * dim {
            return Err(format!(
                "expected mean and scale of {dim} values and a {dim}x{dim} precision, got {}, {} and {} values",
                self.mean.len(),
                self.scale.len(),
                self.precision.len()
            ));
        }
        if self.scale.iter().any(|s| s.is_nan() || *s <= 0.0)
            || self.precision.iter().any(|v| !v.is_finite())
        {
            return Err("scale must be positive and precision finite".into());
        }
        Ok(())
    }
}

/// Inverse of a symmetric positive definite matrix (Cholesky), or None.
fn invert_spd(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - sum;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - sum) / l[j * n + j];
            }
        }
    }
    // inv(A) = inv(L)ᵀ inv(L)
    let mut li = vec![0f64; n * n];
    for i in 0..n {
        li[i * n + i] = 1.0 / l[i * n + i];
        for j in 0..i {
            let sum: f64 = (j..i).map(|k| l[i * n + k] * li[k * n + j]).sum();
            li[i * n + j] = -sum / l[i * n + i];
        }
    }
    let mut inv = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v: f64 = (i..n).map(|k| li[k * n + i] * li[k * n + j]).sum();
            inv[i * n + j] = v;
            inv[j * n + i] = v;
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inv = invert_spd(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!(
                    (v - f64::from(u8::from(i == j))).abs() < 1e-12,
                    "({i},{j}) = {v}"
                );
            }
        }
        assert!(invert_spd(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    #[test]
    fn normal_points_score_near_one_and_outliers_far_away() {
        // Two strongly correlated features: a point breaking the correlation is anomalous even though each of
        // its values alone is ordinary.
        let mut rng = Rng::new(9);
        let x: Vec<Vec<f32>> = (0..400)
            .map(|_| {
                let a = rng.normal();
                vec![a as f32, (a + 0.1 * rng.normal()) as f32]
            })
            .collect();
        let g = Gaussian::fit(&x).unwrap();
        assert!(g.shrinkage < 0.2, "shrinkage {}", g.shrinkage);
        let typical: f32 = x.iter().map(|v| g.score(v)).sum::<f32>() / x.len() as f32;
        assert!((0.7..1.1).contains(&typical), "mean score {typical}");
        assert!(g.score(&[1.0, -1.0]) > 5.0 * typical);
        assert!(g.score(&[1.0]).is_nan());
    }
}
