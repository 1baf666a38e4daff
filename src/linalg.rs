//! The small dense linear algebra the trainers need (the vision heads and the acoustic embedding), in f64: covariance with shrinkage, Cholesky
//! factorisation, the inverse of a lower-triangular factor (the whitening matrix of a Gaussian), and the
//! symmetric eigen-decomposition (cyclic Jacobi) for the PCA filters. Matrices are row-major `Vec<f64>`, n x n.

/// Mean and covariance (divided by n - 1) of `rows` vectors of length `dim`, laid out one after the other.
pub fn mean_cov(data: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = data.len() / dim;
    let mut mean = vec![0.0; dim];
    for row in data.chunks_exact(dim) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += f64::from(x);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut cov = vec![0.0; dim * dim];
    let mut centred = vec![0.0; dim];
    for row in data.chunks_exact(dim) {
        for ((c, &x), m) in centred.iter_mut().zip(row).zip(&mean) {
            *c = f64::from(x) - m;
        }
        for i in 0..dim {
            let ci = centred[i];
            for j in 0..=i {
                cov[i * dim + j] += ci * centred[j];
            }
        }
    }
    let denom = (n.max(2) - 1) as f64;
    for i in 0..dim {
        for j in 0..=i {
            let v = cov[i * dim + j] / denom;
            cov[i * dim + j] = v;
            cov[j * dim + i] = v;
        }
    }
    (mean, cov)
}

/// Shrinks a covariance towards its mean variance: `(1 - alpha) * cov + alpha * tr(cov)/n * I`, plus `eps * I`,
/// so that it is well conditioned even from few samples.
pub fn shrink(cov: &mut [f64], dim: usize, alpha: f64, eps: f64) {
    let mean_var = (0..dim).map(|i| cov[i * dim + i]).sum::<f64>() / dim as f64;
    for i in 0..dim {
        for j in 0..dim {
            let v = &mut cov[i * dim + j];
            *v *= 1.0 - alpha;
            if i == j {
                *v += alpha * mean_var + eps;
            }
        }
    }
}

/// Cholesky factor `L` (lower triangular, `L * L^T = a`) of a symmetric positive-definite matrix.
pub fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>, String> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return Err(format!(
                        "covariance is not positive definite (pivot {i} is {sum})"
                    ));
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// Inverse of a lower-triangular matrix (itself lower triangular).
pub fn invert_lower(l: &[f64], n: usize) -> Vec<f64> {
    let mut inv = vec![0.0; n * n];
    for col in 0..n {
        // Forward substitution of L x = e_col.
        for i in col..n {
            let mut sum = if i == col { 1.0 } else { 0.0 };
            for k in col..i {
                sum -= l[i * n + k] * inv[k * n + col];
            }
            inv[i * n + col] = sum / l[i * n + i];
        }
    }
    inv
}

/// The whitening matrix `W = L^-1` of a covariance: `|W (x - mean)|^2` is the squared Mahalanobis distance.
pub fn whitening(cov: &[f64], n: usize) -> Result<Vec<f64>, String> {
    Ok(invert_lower(&cholesky(cov, n)?, n))
}

/// Eigenvalues (descending) and eigenvectors (the rows of the returned matrix, in the same order) of a
/// symmetric matrix, by cyclic Jacobi rotations.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| m[i * n + i] * m[i * n + i]).sum();
        if off <= 1e-22 * scale.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| m[b * n + b].total_cmp(&m[a * n + a]));
    let values = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vectors = vec![0.0; n * n];
    for (row, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[row * n + k] = v[k * n + i];
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitening_turns_the_covariance_into_the_identity() {
        let a = [4.0, 2.0, 0.6, 2.0, 3.0, 0.4, 0.6, 0.4, 1.0];
        let w = whitening(&a, 3).unwrap();
        // W A W^T = I
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3)
                    .flat_map(|k| (0..3).map(move |l| (k, l)))
                    .map(|(k, l)| w[i * 3 + k] * a[k * 3 + l] * w[j * 3 + l])
                    .sum();
                assert!(
                    (v - f64::from(u8::from(i == j))).abs() < 1e-12,
                    "{i},{j}: {v}"
                );
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_err());
    }

    #[test]
    fn eigenvectors_diagonalise_a_symmetric_matrix() {
        let a = [2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 5.0];
        let (values, vectors) = symmetric_eigen(&a, 3);
        for (got, want) in values.iter().zip([5.0, 3.0, 1.0]) {
            assert!((got - want).abs() < 1e-10, "{values:?}");
        }
        // A v = lambda v for each row vector.
        for r in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|k| a[i * 3 + k] * vectors[r * 3 + k]).sum();
                assert!((av - values[r] * vectors[r * 3 + i]).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn covariance_of_known_points_and_shrinkage() {
        let data = [1.0f32, 0.0, -1.0, 0.0, 0.0, 2.0, 0.0, -2.0];
        let (mean, mut cov) = mean_cov(&data, 2);
        assert_eq!(mean, vec![0.0, 0.0]);
        assert!((cov[0] - 2.0 / 3.0).abs() < 1e-12 && (cov[3] - 8.0 / 3.0).abs() < 1e-12);
        assert_eq!(cov[1], 0.0);
        shrink(&mut cov, 2, 0.5, 0.0);
        // Halfway to the mean variance 5/3.
        assert!((cov[0] - (1.0 / 3.0 + 5.0 / 6.0)).abs() < 1e-12);
    }
}
