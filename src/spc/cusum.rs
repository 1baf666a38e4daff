//! Tabular CUSUM of standardised points: `C+_i = max(0, C+_(i-1) + z_i - k)` and
//! `C-_i = max(0, C-_(i-1) - z_i - k)` with `z_i = (x_i - centre) / sigma_i`, started at the head start (FIR; 0
//! for none), signalling when a sum is strictly above `h`. The sums are not reset after a signal (as `qcc`).
//!
//! It standardises the points of a location chart (X-bar or I) whose baseline estimated the centre and sigma.

use serde::Serialize;

use super::{Chart, Phase, SpcError};

/// Reference value k and decision interval h (in sigmas of the charted statistic), and the head start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CusumParams {
    pub k: f64,
    pub h: f64,
    pub head_start: f64,
}

impl Default for CusumParams {
    fn default() -> Self {
        CusumParams {
            k: 0.5,
            h: 5.0,
            head_start: 0.0,
        }
    }
}

/// The upper and lower sums per point (both >= 0) and where each signalled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cusum {
    pub params: CusumParams,
    pub center: f64,
    pub upper: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper_signals: Vec<usize>,
    pub lower_signals: Vec<usize>,
    pub phases: Vec<Phase>,
    pub baseline: Vec<usize>,
    pub excluded: Vec<usize>,
}

/// The CUSUM of `location`'s statistics.
pub fn cusum(location: &Chart, params: CusumParams) -> Result<Cusum, SpcError> {
    let CusumParams { k, h, head_start } = params;
    if !(k >= 0.0 && h > 0.0 && (0.0..h).contains(&head_start)) {
        return Err(SpcError::Parameter(format!(
            "CUSUM needs k >= 0, h > 0 and 0 <= head start < h (got k {k}, h {h}, head start {head_start})"
        )));
    }
    let (mut hi, mut lo) = (head_start, head_start);
    let mut upper = Vec::with_capacity(location.points.len());
    let mut lower = Vec::with_capacity(location.points.len());
    for p in &location.points {
        let z = (p.statistic - location.center) / p.sigma;
        hi = (hi + z - k).max(0.0);
        lo = (lo - z - k).max(0.0);
        upper.push(hi);
        lower.push(lo);
    }
    let beyond = |sums: &[f64]| (0..sums.len()).filter(|&i| sums[i] > h).collect();
    Ok(Cusum {
        params,
        center: location.center,
        upper_signals: beyond(&upper),
        lower_signals: beyond(&lower),
        upper,
        lower,
        phases: location.points.iter().map(|p| p.phase).collect(),
        baseline: location.baseline.clone(),
        excluded: location.excluded.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spc::{Baseline, RuleSet, variables};

    fn location(x: &[f64]) -> Chart {
        variables::imr(x, &Baseline::first(8, &[]), &RuleSet::beyond_limits())
            .unwrap()
            .location
    }

    #[test]
    fn signals_strictly_above_h_and_only_upwards_for_a_rise() {
        // Baseline alternates 1, -1: centre 0, MRbar 2, sigma 2/1.128.
        let mut x = vec![1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0];
        let sigma = 2.0 / 1.128;
        x.extend([2.0 * sigma; 4]); // z = 2: C+ grows by 1.5 per point after the baseline
        let chart = cusum(&location(&x), CusumParams::default()).unwrap();
        assert!((chart.upper[11] - (chart.upper[7] + 6.0)).abs() < 1e-9);
        assert!(chart.upper_signals.iter().all(|&i| i >= 10));
        assert!(chart.lower_signals.is_empty());
        let exactly_h = CusumParams {
            h: chart.upper[10],
            ..CusumParams::default()
        };
        assert_eq!(
            cusum(&location(&x), exactly_h).unwrap().upper_signals,
            vec![11]
        );
    }

    #[test]
    fn head_start_begins_the_sums_there() {
        let x = [1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0];
        let fir = CusumParams {
            head_start: 2.5,
            ..CusumParams::default()
        };
        let chart = cusum(&location(&x), fir).unwrap();
        let z0 = 1.128 / 2.0;
        assert!((chart.upper[0] - (2.5 + z0 - 0.5)).abs() < 1e-12);
        assert!((chart.lower[0] - (2.5 - z0 - 0.5)).abs() < 1e-12);
        assert!(
            cusum(
                &location(&x),
                CusumParams {
                    head_start: 5.0,
                    ..fir
                }
            )
            .is_err()
        );
    }
}
