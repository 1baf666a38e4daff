//! EWMA chart: the exponentially weighted moving average `z_i = lambda x_i + (1 - lambda) z_(i-1)`, started at the
//! centre, against limits from its exact variance
//! `sigma_x^2 (lambda / (2 - lambda)) (1 - (1 - lambda)^(2i))` (narrow at first, widening to the asymptote).
//!
//! It charts the points of a location chart (X-bar or I) whose baseline estimated the centre and sigma, so phases
//! and exclusions carry over. Judged by rule 1 only (beyond `centre +/- L sigma_z`): the smoothing makes the zone
//! rules meaningless.

use serde::Serialize;

use super::{Chart, Point, RuleSet, SpcError};

/// The smoothing weight and the limits' width in sigmas.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EwmaParams {
    pub lambda: f64,
    pub l: f64,
}

impl Default for EwmaParams {
    fn default() -> Self {
        EwmaParams {
            lambda: 0.2,
            l: 3.0,
        }
    }
}

/// The EWMA chart of `location`'s statistics, with its centre and per-point sigma.
pub fn ewma(location: &Chart, params: EwmaParams) -> Result<Chart, SpcError> {
    let EwmaParams { lambda, l } = params;
    let valid = lambda > 0.0 && lambda <= 1.0 && l > 0.0;
    if !valid {
        return Err(SpcError::Parameter(format!(
            "EWMA needs 0 < lambda <= 1 and L > 0 (got lambda {lambda}, L {l})"
        )));
    }
    let center = location.center;
    let mut z = center;
    let points: Vec<Point> = location
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            z = lambda * p.statistic + (1.0 - lambda) * z;
            let weight = lambda / (2.0 - lambda) * (1.0 - (1.0 - lambda).powi(2 * (i as i32 + 1)));
            let sigma = p.sigma * weight.sqrt();
            Point {
                statistic: z,
                center,
                lcl: center - l * sigma,
                ucl: center + l * sigma,
                sigma,
                ..p.clone()
            }
        })
        .collect();
    let violations = RuleSet::beyond_limits().judge(&points);
    Ok(Chart {
        kind: "ewma",
        points,
        violations,
        ..location.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spc::{Baseline, variables};

    #[test]
    fn limits_widen_to_the_asymptote_and_a_shift_signals() {
        let mut x: Vec<f64> = (0..30).map(|i| [0.5, -0.5, 0.3, -0.3][i % 4]).collect();
        x.extend([1.5; 10]);
        let base = Baseline::first(30, &[]);
        let location = variables::imr(&x, &base, &RuleSet::beyond_limits())
            .unwrap()
            .location;
        let chart = ewma(&location, EwmaParams::default()).unwrap();
        let first = chart.points[0].ucl - chart.center;
        let last = chart.points[39].ucl - chart.center;
        assert!((first - 3.0 * location.sigma * 0.2).abs() < 1e-12);
        assert!((last - 3.0 * location.sigma * (0.2f64 / 1.8).sqrt()).abs() < 1e-6);
        assert!(chart.violations.iter().all(|v| v.index >= 30));
        assert!(!chart.violations.is_empty());
        assert!(
            ewma(
                &location,
                EwmaParams {
                    lambda: 0.0,
                    l: 3.0
                }
            )
            .is_err()
        );
    }
}
