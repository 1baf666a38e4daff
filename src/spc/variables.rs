//! Variables charts: X-bar with R, X-bar with S, and individuals with moving range (I-MR).
//!
//! Sigma within subgroups is estimated on the baseline as `Rbar / d2` (X-bar/R), `Sbar / c4` (X-bar/S, equal to
//! the mean of `s / c4` for equal subgroups) or `MRbar / d2(2)` with `d2(2) = 1.128` (I-MR; the moving ranges of
//! the baseline taken in order with the excluded points removed, so a point left out does not leave two large
//! ranges behind). The location chart is judged by the rules given; the spread chart (R, S, MR) by rule 1 only.
//! Spread limits are `centre +/- 3 sigma_statistic` clipped at 0: R `Rbar +/- 3 d3 sigma`, S
//! `Sbar +/- 3 sigma sqrt(1 - c4^2)`, MR `MRbar +/- 3 d3(2) sigma` (qcc's form; the rounded D3/D4 table differs in
//! the fourth digit).

use serde::Serialize;

use super::constants::{c4, d2, d3};
use super::{Baseline, Bounds, Chart, Estimate, RuleSet, SpcError, mean_at};

/// A location chart and its spread chart. The process sigma (per observation) is `location.sigma`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariablesCharts {
    pub location: Chart,
    pub spread: Chart,
}

/// How the spread of each subgroup is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    Range,
    StdDev,
}

/// X-bar and R charts of equal-size subgroups (2..=25 values each).
pub fn xbar_r(
    subgroups: &[Vec<f64>],
    baseline: &Baseline,
    rules: &RuleSet,
) -> Result<VariablesCharts, SpcError> {
    subgroup_charts(subgroups, baseline, rules, Spread::Range)
}

/// X-bar and S charts of equal-size subgroups (2..=25 values each).
pub fn xbar_s(
    subgroups: &[Vec<f64>],
    baseline: &Baseline,
    rules: &RuleSet,
) -> Result<VariablesCharts, SpcError> {
    subgroup_charts(subgroups, baseline, rules, Spread::StdDev)
}

/// The sample standard deviation (n - 1 in the denominator).
pub fn std_dev(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

fn subgroup_charts(
    subgroups: &[Vec<f64>],
    baseline: &Baseline,
    rules: &RuleSet,
    spread: Spread,
) -> Result<VariablesCharts, SpcError> {
    let n = check_subgroups(subgroups)?;
    let estimating = baseline.estimating(subgroups.len(), 1)?;
    let means: Vec<f64> = subgroups
        .iter()
        .map(|g| g.iter().sum::<f64>() / n as f64)
        .collect();
    let spreads: Vec<f64> = subgroups
        .iter()
        .map(|g| match spread {
            Spread::Range => {
                g.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    - g.iter().copied().fold(f64::INFINITY, f64::min)
            }
            Spread::StdDev => std_dev(g),
        })
        .collect();
    let center = mean_at(&means, &estimating);
    let spread_center = mean_at(&spreads, &estimating);
    let (sigma, spread_sigma, kind) = match spread {
        Spread::Range => {
            let sigma = spread_center / d2(n)?;
            (sigma, d3(n)? * sigma, "R")
        }
        Spread::StdDev => {
            let c4n = c4(n)?;
            let sigma = spread_center / c4n;
            (sigma, sigma * (1.0 - c4n * c4n).sqrt(), "S")
        }
    };
    if sigma <= 0.0 {
        return Err(SpcError::NoVariation);
    }
    let se_mean = sigma / (n as f64).sqrt();
    let location = Series {
        kind: "xbar",
        values: &means,
        center,
        se: se_mean,
    };
    let spread = Series {
        kind,
        values: &spreads,
        center: spread_center,
        se: spread_sigma,
    };
    Ok(pair(location, spread, sigma, estimating, baseline, rules))
}

/// One chart's statistics with their centre and (constant) standard error.
struct Series<'a> {
    kind: &'static str,
    values: &'a [f64],
    center: f64,
    se: f64,
}

/// The location chart (3-sigma limits, judged by `rules`) and its spread chart (clipped at 0, rule 1 only).
fn pair(
    location: Series,
    spread: Series,
    sigma: f64,
    estimating: Vec<usize>,
    baseline: &Baseline,
    rules: &RuleSet,
) -> VariablesCharts {
    let chart = |s: Series, bounds: Bounds, rules: &RuleSet| {
        Estimate {
            kind: s.kind,
            center: s.center,
            sigma,
            baseline: estimating.clone(),
        }
        .chart(
            s.values.iter().map(|&x| (x, s.center, s.se)),
            bounds,
            baseline,
            rules,
        )
    };
    VariablesCharts {
        location: chart(location, Bounds::three_sigma(), rules),
        spread: chart(spread, Bounds::non_negative(), &RuleSet::beyond_limits()),
    }
}

/// The common subgroup size; every subgroup must have it and only finite values.
fn check_subgroups(subgroups: &[Vec<f64>]) -> Result<usize, SpcError> {
    let n = subgroups.first().ok_or(SpcError::Empty)?.len();
    d2(n).map_err(|_| SpcError::SubgroupSize {
        index: 0,
        size: n,
        expected: "2..=25".into(),
    })?;
    for (index, g) in subgroups.iter().enumerate() {
        if g.len() != n {
            return Err(SpcError::SubgroupSize {
                index,
                size: g.len(),
                expected: n.to_string(),
            });
        }
        if g.iter().any(|v| !v.is_finite()) {
            return Err(SpcError::BadPoint {
                index,
                what: "a value is not a finite number".into(),
            });
        }
    }
    Ok(n)
}

/// Individuals and moving-range charts of single observations.
pub fn imr(
    values: &[f64],
    baseline: &Baseline,
    rules: &RuleSet,
) -> Result<VariablesCharts, SpcError> {
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(SpcError::BadPoint {
            index,
            what: "not a finite number".into(),
        });
    }
    let estimating = baseline.estimating(values.len(), 2)?;
    let center = mean_at(values, &estimating);
    let kept_ranges: Vec<f64> = estimating
        .windows(2)
        .map(|w| (values[w[1]] - values[w[0]]).abs())
        .collect();
    let mr_center = kept_ranges.iter().sum::<f64>() / kept_ranges.len() as f64;
    let sigma = mr_center / d2(2)?;
    if sigma <= 0.0 {
        return Err(SpcError::NoVariation);
    }
    let ranges: Vec<f64> = (0..values.len())
        .map(|i| {
            if i == 0 {
                f64::NAN
            } else {
                (values[i] - values[i - 1]).abs()
            }
        })
        .collect();
    let location = Series {
        kind: "I",
        values,
        center,
        se: sigma,
    };
    let spread = Series {
        kind: "MR",
        values: &ranges,
        center: mr_center,
        se: d3(2)? * sigma,
    };
    Ok(pair(location, spread, sigma, estimating, baseline, rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xbar_r_of_a_small_constructed_set() {
        // Ranges 2, 4; means 1, 3 -> Rbar 3, sigma 3/1.128.
        let groups = vec![vec![0.0, 2.0], vec![1.0, 5.0]];
        let charts = xbar_r(&groups, &Baseline::default(), &RuleSet::beyond_limits()).unwrap();
        assert_eq!(charts.location.center, 2.0);
        assert!((charts.location.sigma - 3.0 / 1.128).abs() < 1e-12);
        assert_eq!(charts.spread.points[0].lcl, 0.0);
    }

    #[test]
    fn unequal_subgroups_are_refused_with_the_index() {
        let groups = vec![vec![0.0, 2.0], vec![1.0, 5.0, 3.0]];
        let err = xbar_s(&groups, &Baseline::default(), &RuleSet::beyond_limits()).unwrap_err();
        assert!(matches!(
            err,
            SpcError::SubgroupSize {
                index: 1,
                size: 3,
                ..
            }
        ));
    }

    #[test]
    fn an_excluded_point_leaves_no_moving_range_behind() {
        let x = [10.0, 11.0, 30.0, 10.0, 11.0];
        let charts = imr(
            &x,
            &Baseline {
                points: None,
                excluded: vec![2],
            },
            &RuleSet::beyond_limits(),
        )
        .unwrap();
        // kept: 10, 11, 10, 11 -> ranges 1, 1, 1
        assert_eq!(charts.spread.center, 1.0);
        assert_eq!(charts.location.center, 10.5);
        assert_eq!(charts.location.excluded, vec![2]);
        assert!(charts.spread.points[0].statistic.is_nan());
    }
}
