//! Control-chart constants for subgroup size n = 2..=25: d2 and d3 (the mean and standard deviation of the
//! relative range R/sigma of n normal values) from the standard tables, d2 to 3 decimals as printed in every
//! textbook (Montgomery, Appendix VI) and d3 to 7 digits (the 4-digit table rounds these), which are the values
//! R's `qcc` uses; and c4 (the mean of s/sigma) computed exactly from the gamma function.

use statrs::function::gamma::ln_gamma;

use super::SpcError;

/// The smallest and largest subgroup sizes the tables cover.
pub const MIN_N: usize = 2;
pub const MAX_N: usize = 25;

const D2: [f64; 24] = [
    1.128, 1.693, 2.059, 2.326, 2.534, 2.704, 2.847, 2.970, 3.078, 3.173, 3.258, 3.336, 3.407,
    3.472, 3.532, 3.588, 3.640, 3.689, 3.735, 3.778, 3.819, 3.858, 3.895, 3.931,
];

const D3: [f64; 24] = [
    0.8525033, 0.8883697, 0.8798108, 0.8640855, 0.8480442, 0.8332108, 0.8198378, 0.8078413,
    0.7970584, 0.7873230, 0.7784873, 0.7704257, 0.7630330, 0.7562217, 0.7499188, 0.7440627,
    0.7386021, 0.7334929, 0.7286980, 0.7241851, 0.7199267, 0.7158987, 0.7120802, 0.7084528,
];

fn checked(n: usize) -> Result<usize, SpcError> {
    if (MIN_N..=MAX_N).contains(&n) {
        Ok(n - MIN_N)
    } else {
        Err(SpcError::Parameter(format!(
            "subgroup size {n} is outside the constants' table ({MIN_N}..={MAX_N})"
        )))
    }
}

/// Mean of the relative range R/sigma for subgroups of `n`.
pub fn d2(n: usize) -> Result<f64, SpcError> {
    Ok(D2[checked(n)?])
}

/// Standard deviation of the relative range R/sigma for subgroups of `n`.
pub fn d3(n: usize) -> Result<f64, SpcError> {
    Ok(D3[checked(n)?])
}

/// Mean of s/sigma for samples of `n`: `sqrt(2/(n-1)) * Gamma(n/2) / Gamma((n-1)/2)`.
pub fn c4(n: usize) -> Result<f64, SpcError> {
    checked(n)?;
    let n = n as f64;
    Ok((2.0 / (n - 1.0)).sqrt() * (ln_gamma(n / 2.0) - ln_gamma((n - 1.0) / 2.0)).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared data README's table (4 digits for c4).
    #[test]
    fn match_the_published_table() {
        for (n, d2_, d3_, c4_) in [
            (2, 1.128, 0.8525, 0.7979),
            (3, 1.693, 0.8884, 0.8862),
            (4, 2.059, 0.8798, 0.9213),
            (5, 2.326, 0.8641, 0.9400),
            (6, 2.534, 0.8480, 0.9515),
            (10, 3.078, 0.7971, 0.9727),
        ] {
            assert_eq!(d2(n).unwrap(), d2_);
            assert!((d3(n).unwrap() - d3_).abs() < 5e-5, "d3({n})");
            assert!((c4(n).unwrap() - c4_).abs() < 5e-5, "c4({n})");
        }
        assert!((c4(25).unwrap() - 0.9896).abs() < 5e-5);
    }

    /// A2 = 3/(d2 sqrt n) and D4 = 1 + 3 d3/d2 reproduce the rounded table (to its last digit: the table was
    /// rounded from unrounded d2).
    #[test]
    fn derived_factors_match_the_table() {
        for (n, a2, d4) in [(2, 1.880, 3.267), (5, 0.577, 2.115), (10, 0.308, 1.777)] {
            let (d2n, d3n) = (d2(n).unwrap(), d3(n).unwrap());
            assert!((3.0 / (d2n * (n as f64).sqrt()) - a2).abs() < 1e-3);
            assert!((1.0 + 3.0 * d3n / d2n - d4).abs() < 1e-3);
        }
    }

    #[test]
    fn outside_the_table_is_an_error() {
        assert!(d2(1).is_err());
        assert!(c4(26).is_err());
    }
}
