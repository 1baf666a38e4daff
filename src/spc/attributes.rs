//! Attributes charts: p (fraction nonconforming), np (number nonconforming), c (nonconformities per sample), u
//! (nonconformities per unit), and Laney's p' and u' for large samples whose plain limits are falsely tight.
//!
//! Centres are estimated on the baseline as totals (`pbar = sum d / sum n`, `ubar = sum c / sum n`,
//! `cbar = mean c`); limits are `centre +/- 3 sigma_i` per point, clipped at 0 (and at 1 for proportions). Laney:
//! `z_i = (x_i - centre) / sigma_i`, `sigma_z = mean |z_i - z_(i-1)| / 1.128` over the baseline (in order, excluded
//! points removed), limits `centre +/- 3 sigma_i sigma_z`. Attributes charts default to rule 1 only (the caller
//! passes the rule set).

use super::{Baseline, Bounds, Chart, Estimate, RuleSet, SpcError, constants::d2};

/// Counts per sample with the sample sizes (parts inspected, or units of area for u charts).
#[derive(Debug, Clone, Copy)]
pub struct Counts<'a> {
    pub counts: &'a [f64],
    pub sizes: &'a [f64],
}

const PROPORTION: Bounds = Bounds {
    width: 3.0,
    floor: 0.0,
    ceiling: 1.0,
};

impl Counts<'_> {
    /// Checks lengths, signs, and (for proportions) that no count exceeds its sample.
    fn checked(&self, proportion: bool) -> Result<(), SpcError> {
        if self.counts.len() != self.sizes.len() {
            return Err(SpcError::Parameter(format!(
                "{} counts but {} sample sizes",
                self.counts.len(),
                self.sizes.len()
            )));
        }
        for (index, (&c, &n)) in self.counts.iter().zip(self.sizes).enumerate() {
            let what = if !(c.is_finite() && c >= 0.0) {
                "the count must be a number >= 0"
            } else if !(n.is_finite() && n > 0.0) {
                "the sample size must be a number > 0"
            } else if proportion && c > n {
                "the count exceeds the sample size"
            } else {
                continue;
            };
            return Err(SpcError::BadPoint {
                index,
                what: what.into(),
            });
        }
        Ok(())
    }

    fn totals(&self, at: &[usize]) -> (f64, f64) {
        at.iter().fold((0.0, 0.0), |(c, n), &i| {
            (c + self.counts[i], n + self.sizes[i])
        })
    }
}

/// p chart: the fraction nonconforming per sample.
pub fn p(data: Counts, baseline: &Baseline, rules: &RuleSet) -> Result<Chart, SpcError> {
    let (pbar, per_point, estimating) = proportions(data, baseline)?;
    Ok(Estimate {
        kind: "p",
        center: pbar,
        sigma: (pbar * (1.0 - pbar)).sqrt(),
        baseline: estimating,
    }
    .chart(per_point, PROPORTION, baseline, rules))
}

/// np chart: the number nonconforming per sample (centre `n_i pbar`).
pub fn np(data: Counts, baseline: &Baseline, rules: &RuleSet) -> Result<Chart, SpcError> {
    let (pbar, per_point, estimating) = proportions(data, baseline)?;
    let per_point = per_point
        .into_iter()
        .zip(data.sizes)
        .map(|((p, c, s), &n)| (p * n, c * n, s * n));
    let center = pbar * data.sizes[estimating[0]];
    Ok(Estimate {
        kind: "np",
        center,
        sigma: (pbar * (1.0 - pbar)).sqrt(),
        baseline: estimating,
    }
    .chart(per_point, Bounds::non_negative(), baseline, rules))
}

/// c chart: nonconformities per sample (samples of equal size).
pub fn c(counts: &[f64], baseline: &Baseline, rules: &RuleSet) -> Result<Chart, SpcError> {
    let sizes = vec![1.0; counts.len()];
    let data = Counts {
        counts,
        sizes: &sizes,
    };
    let (cbar, per_point, estimating) = rates(data, baseline)?;
    Ok(Estimate {
        kind: "c",
        center: cbar,
        sigma: cbar.sqrt(),
        baseline: estimating,
    }
    .chart(per_point, Bounds::non_negative(), baseline, rules))
}

/// u chart: nonconformities per unit.
pub fn u(data: Counts, baseline: &Baseline, rules: &RuleSet) -> Result<Chart, SpcError> {
    let (ubar, per_point, estimating) = rates(data, baseline)?;
    Ok(Estimate {
        kind: "u",
        center: ubar,
        sigma: ubar.sqrt(),
        baseline: estimating,
    }
    .chart(per_point, Bounds::non_negative(), baseline, rules))
}

/// Laney p' chart: the p chart's limits widened by the between-sample variation `sigma_z`.
pub fn laney_p(data: Counts, baseline: &Baseline, rules: &RuleSet) -> Result<Chart, SpcError> {
    let (pbar, per_point, estimating) = proportions(data, baseline)?;
    laney(
        "laney-p", pbar, per_point, estimating, PROPORTION, baseline, rules,
    )
}

/// Laney u' chart: the u chart's limits widened by the between-sample variation `sigma_z`.
pub fn laney_u(data: Counts, baseline: &Baseline, rules: &RuleSet) -> Result<Chart, SpcError> {
    let (ubar, per_point, estimating) = rates(data, baseline)?;
    laney(
        "laney-u",
        ubar,
        per_point,
        estimating,
        Bounds::non_negative(),
        baseline,
        rules,
    )
}

type PerPoint = Vec<(f64, f64, f64)>;

/// pbar on the baseline and (p_i, pbar, sqrt(pbar (1 - pbar) / n_i)) per sample.
fn proportions(data: Counts, baseline: &Baseline) -> Result<(f64, PerPoint, Vec<usize>), SpcError> {
    data.checked(true)?;
    let estimating = baseline.estimating(data.counts.len(), 1)?;
    let (d, n) = data.totals(&estimating);
    let pbar = d / n;
    if pbar <= 0.0 || pbar >= 1.0 {
        return Err(SpcError::NoVariation);
    }
    let per_point = data
        .counts
        .iter()
        .zip(data.sizes)
        .map(|(&d, &n)| (d / n, pbar, (pbar * (1.0 - pbar) / n).sqrt()))
        .collect();
    Ok((pbar, per_point, estimating))
}

/// ubar on the baseline and (u_i, ubar, sqrt(ubar / n_i)) per sample.
fn rates(data: Counts, baseline: &Baseline) -> Result<(f64, PerPoint, Vec<usize>), SpcError> {
    data.checked(false)?;
    let estimating = baseline.estimating(data.counts.len(), 1)?;
    let (c, n) = data.totals(&estimating);
    let ubar = c / n;
    if ubar <= 0.0 {
        return Err(SpcError::NoVariation);
    }
    let per_point = data
        .counts
        .iter()
        .zip(data.sizes)
        .map(|(&c, &n)| (c / n, ubar, (ubar / n).sqrt()))
        .collect();
    Ok((ubar, per_point, estimating))
}

fn laney(
    kind: &'static str,
    center: f64,
    per_point: PerPoint,
    estimating: Vec<usize>,
    bounds: Bounds,
    baseline: &Baseline,
    rules: &RuleSet,
) -> Result<Chart, SpcError> {
    if estimating.len() < 2 {
        return Err(SpcError::BaselineTooSmall {
            kept: estimating.len(),
            needed: 2,
        });
    }
    let z: Vec<f64> = per_point.iter().map(|(x, c, s)| (x - c) / s).collect();
    let steps = estimating.windows(2).map(|w| (z[w[1]] - z[w[0]]).abs());
    let sigma_z = steps.sum::<f64>() / (estimating.len() - 1) as f64 / d2(2)?;
    let per_point = per_point.into_iter().map(|(x, c, s)| (x, c, s * sigma_z));
    Ok(Estimate {
        kind,
        center,
        sigma: sigma_z,
        baseline: estimating,
    }
    .chart(per_point, bounds, baseline, rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laney_widens_the_limits_of_overdispersed_samples() {
        // 20 samples of 5000 parts whose true rate wanders between 1% and 3%: far more spread than binomial.
        let rates = [
            1.0, 2.5, 1.8, 3.0, 1.2, 2.2, 2.9, 1.5, 2.0, 1.1, 2.7, 1.9, 2.4, 1.3, 2.8, 1.6, 2.1,
            2.6, 1.4, 2.3,
        ];
        let counts: Vec<f64> = rates.iter().map(|r| r * 50.0).collect();
        let sizes = vec![5000.0; counts.len()];
        let data = Counts {
            counts: &counts,
            sizes: &sizes,
        };
        let all = Baseline::default();
        let rules = RuleSet::beyond_limits();
        let plain = p(data, &all, &rules).unwrap();
        let wide = laney_p(data, &all, &rules).unwrap();
        assert!(wide.sigma > 3.0, "sigma_z {}", wide.sigma);
        assert_eq!(plain.center, wide.center);
        for (a, b) in plain.points.iter().zip(&wide.points) {
            assert!(b.ucl - b.lcl > 2.0 * (a.ucl - a.lcl));
        }
        assert!(
            plain.violations.len() >= 8,
            "plain p flags most samples: {:?}",
            plain.violations
        );
        assert!(
            wide.violations.is_empty(),
            "Laney flags none: {:?}",
            wide.violations
        );
    }

    #[test]
    fn laney_on_binomial_data_stays_close_to_p() {
        // Counts near the binomial expectation with binomial-sized scatter: sigma_z near 1.
        let counts = [
            50.0, 46.0, 53.0, 49.0, 55.0, 47.0, 51.0, 44.0, 52.0, 50.0, 48.0, 54.0,
        ];
        let sizes = vec![2500.0; counts.len()];
        let data = Counts {
            counts: &counts,
            sizes: &sizes,
        };
        let wide = laney_u(data, &Baseline::default(), &RuleSet::beyond_limits()).unwrap();
        assert!((0.5..1.5).contains(&wide.sigma), "sigma_z {}", wide.sigma);
    }

    #[test]
    fn bad_counts_name_the_sample() {
        let data = Counts {
            counts: &[3.0, 60.0],
            sizes: &[50.0, 50.0],
        };
        let err = p(data, &Baseline::default(), &RuleSet::beyond_limits()).unwrap_err();
        assert!(matches!(err, SpcError::BadPoint { index: 1, .. }));
    }
}
