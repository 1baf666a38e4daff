//! Two-sample comparisons: is this lot, shift or machine different from that one? Mann-Whitney U (normal
//! approximation with tie and continuity correction), two-sample Kolmogorov-Smirnov (asymptotic p-value), the
//! two-proportion z test and Fisher's exact test for reject counts, with effect sizes; and drift of a monitored
//! distribution from its baseline: KS plus the population stability index (PSI) with the usual bands (below 0.1
//! stable, 0.1 to 0.25 a moderate shift, above 0.25 a significant one).

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::factorial::ln_factorial;

use super::SpcError;

/// Mann-Whitney U of sample `a` against `b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of `a`: the number of pairs (a_i, b_j) with a_i > b_j, ties counting one half.
    pub u: f64,
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
    /// `U / (n_a n_b)`: the probability that a value of `a` exceeds one of `b` (ties half).
    pub probability_of_superiority: f64,
    /// `2 U / (n_a n_b) - 1`, in -1..1, positive when `a` tends larger.
    pub rank_biserial: f64,
    /// Cohen's d with the pooled standard deviation, positive when `a`'s mean is larger.
    pub cohens_d: f64,
}

/// Two-sample Kolmogorov-Smirnov.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KolmogorovSmirnov {
    /// The largest distance between the two empirical distribution functions.
    pub d: f64,
    /// Asymptotic (Kolmogorov's distribution with Stephens' small-sample factor).
    pub p_value: f64,
}

/// Two proportions `x1 / n1` against `x2 / n2`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportions {
    pub difference: f64,
    /// Pooled two-proportion z statistic and its two-sided p-value.
    pub z: f64,
    pub z_p_value: f64,
    /// Fisher's exact test, two-sided (tables no more likely than the observed one, as R's `fisher.test`).
    pub fisher_p_value: f64,
    /// Cohen's h: `2 asin sqrt p1 - 2 asin sqrt p2`.
    pub cohens_h: f64,
    /// Sample odds ratio `x1 (n2 - x2) / ((n1 - x1) x2)` (infinite when a cell is 0).
    pub odds_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DriftBand {
    /// PSI below 0.1.
    Stable,
    /// PSI 0.1 to 0.25.
    Moderate,
    /// PSI above 0.25.
    Significant,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drift {
    pub ks: KolmogorovSmirnov,
    pub psi: f64,
    pub band: DriftBand,
}

fn check_sample(name: &str, x: &[f64], needed: usize) -> Result<(), SpcError> {
    if x.len() < needed || x.iter().any(|v| !v.is_finite()) {
        return Err(SpcError::Parameter(format!(
            "sample {name} needs at least {needed} finite values (has {})",
            x.len()
        )));
    }
    Ok(())
}

fn two_sided(z: f64) -> f64 {
    2.0 * Normal::standard().cdf(-z.abs())
}

/// Mann-Whitney U test of `a` against `b`.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Result<MannWhitney, SpcError> {
    check_sample("a", a, 2)?;
    check_sample("b", b, 2)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_sum_a, mut ties) = (0.0, 0.0);
    let mut start = 0;
    while start < pooled.len() {
        let end = start
            + pooled[start..]
                .iter()
                .take_while(|p| p.0 == pooled[start].0)
                .count();
        let rank = (start + 1 + end) as f64 / 2.0;
        rank_sum_a += rank * pooled[start..end].iter().filter(|p| p.1).count() as f64;
        let t = (end - start) as f64;
        ties += t * t * t - t;
        start = end;
    }
    let u = rank_sum_a - na * (na + 1.0) / 2.0;
    let n = na + nb;
    let mean = na * nb / 2.0;
    let sd = (na * nb / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))).sqrt();
    let centred = u - mean;
    let z = if sd > 0.0 {
        (centred - 0.5 * centred.signum()) / sd
    } else {
        0.0
    };
    let mean_of = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (sa, sb) = (super::variables::std_dev(a), super::variables::std_dev(b));
    let pooled_sd = (((na - 1.0) * sa * sa + (nb - 1.0) * sb * sb) / (n - 2.0)).sqrt();
    Ok(MannWhitney {
        u,
        z,
        p_value: if sd > 0.0 { two_sided(z) } else { 1.0 },
        probability_of_superiority: u / (na * nb),
        rank_biserial: 2.0 * u / (na * nb) - 1.0,
        cohens_d: (mean_of(a) - mean_of(b)) / pooled_sd,
    })
}

/// Kolmogorov's survival function `Q(lambda) = 2 sum (-1)^(k-1) exp(-2 k^2 lambda^2)`.
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let sum: f64 = (1..=100)
        .map(|k| {
            let k = k as f64;
            let sign = if k as u64 % 2 == 1 { 1.0 } else { -1.0 };
            sign * (-2.0 * k * k * lambda * lambda).exp()
        })
        .sum();
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Two-sample Kolmogorov-Smirnov test.
pub fn kolmogorov_smirnov(a: &[f64], b: &[f64]) -> Result<KolmogorovSmirnov, SpcError> {
    check_sample("a", a, 1)?;
    check_sample("b", b, 1)?;
    let sorted = |x: &[f64]| {
        let mut s = x.to_vec();
        s.sort_by(f64::total_cmp);
        s
    };
    let (sa, sb) = (sorted(a), sorted(b));
    let ecdf = |s: &[f64], x: f64| s.partition_point(|&v| v <= x) as f64 / s.len() as f64;
    let d = sa
        .iter()
        .chain(&sb)
        .map(|&x| (ecdf(&sa, x) - ecdf(&sb, x)).abs())
        .fold(0.0, f64::max);
    let ne = (sa.len() * sb.len()) as f64 / (sa.len() + sb.len()) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    Ok(KolmogorovSmirnov {
        d,
        p_value: kolmogorov_q(lambda),
    })
}

/// `x1` of `n1` against `x2` of `n2`: z test, Fisher's exact test and effect sizes.
pub fn proportions(x1: u64, n1: u64, x2: u64, n2: u64) -> Result<Proportions, SpcError> {
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return Err(SpcError::Parameter(format!(
            "proportions need 0 <= x <= n and n > 0 (got {x1}/{n1} and {x2}/{n2})"
        )));
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    let z = if se > 0.0 { (p1 - p2) / se } else { 0.0 };
    let odds = |x: u64, n: u64| x as f64 / (n - x) as f64;
    Ok(Proportions {
        difference: p1 - p2,
        z,
        z_p_value: if se > 0.0 { two_sided(z) } else { 1.0 },
        fisher_p_value: fisher_exact(x1, n1 - x1, x2, n2 - x2),
        cohens_h: 2.0 * p1.sqrt().asin() - 2.0 * p2.sqrt().asin(),
        odds_ratio: odds(x1, n1) / odds(x2, n2),
    })
}

/// Two-sided Fisher exact test of the 2x2 table `[[a, b], [c, d]]`.
pub fn fisher_exact(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let (row1, col1, n) = (a + b, a + c, a + b + c + d);
    let ln_choose = |n: u64, k: u64| ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    // P(top-left = x) with the margins fixed (hypergeometric).
    let ln_p = |x: u64| ln_choose(col1, x) + ln_choose(n - col1, row1 - x) - ln_choose(n, row1);
    let observed = ln_p(a);
    let low = row1.saturating_sub(n - col1);
    let high = row1.min(col1);
    let p: f64 = (low..=high)
        .map(ln_p)
        .filter(|&l| l <= observed + 1e-7)
        .map(f64::exp)
        .sum();
    p.min(1.0)
}

/// Population stability index of `current` against `baseline`, over `bins` bins cut at the baseline's
/// quantiles; an empty bin counts as a fraction of 1e-4 so the index stays finite.
pub fn psi(baseline: &[f64], current: &[f64], bins: usize) -> Result<f64, SpcError> {
    check_sample("baseline", baseline, bins.max(2))?;
    check_sample("current", current, 1)?;
    let mut sorted = baseline.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = (1..bins).map(|i| sorted[i * sorted.len() / bins]).collect();
    edges.dedup();
    let fractions = |x: &[f64]| -> Vec<f64> {
        let mut counts = vec![0usize; edges.len() + 1];
        for &v in x {
            counts[edges.partition_point(|&e| e <= v)] += 1;
        }
        counts
            .iter()
            .map(|&c| (c as f64 / x.len() as f64).max(1e-4))
            .collect()
    };
    let (expected, actual) = (fractions(baseline), fractions(current));
    Ok(expected
        .iter()
        .zip(&actual)
        .map(|(e, a)| (a - e) * (a / e).ln())
        .sum())
}

/// Drift of `current` from `baseline`: KS and PSI over 10 quantile bins, with the PSI band.
pub fn drift(baseline: &[f64], current: &[f64]) -> Result<Drift, SpcError> {
    let psi = psi(baseline, current, 10)?;
    let band = if psi < 0.1 {
        DriftBand::Stable
    } else if psi <= 0.25 {
        DriftBand::Moderate
    } else {
        DriftBand::Significant
    };
    Ok(Drift {
        ks: kolmogorov_smirnov(baseline, current)?,
        psi,
        band,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) {
        assert!((a - b).abs() <= tolerance, "{a} vs {b}");
    }

    #[test]
    fn mann_whitney_of_separated_samples() {
        // R: wilcox.test(1:5, 6:10, exact = FALSE): W = 0, p-value = 0.01219.
        let a: Vec<f64> = (1..=5).map(f64::from).collect();
        let b: Vec<f64> = (6..=10).map(f64::from).collect();
        let t = mann_whitney(&a, &b).unwrap();
        assert_eq!(t.u, 0.0);
        close(t.p_value, 0.01219, 5e-6);
        assert_eq!(t.rank_biserial, -1.0);
        assert!(t.cohens_d < -3.0);
    }

    #[test]
    fn mann_whitney_corrects_for_ties() {
        // Ranks 1, 3, 3, 6 for a: U = 3; ties of 3 and 3 values: var = 16/12 (9 - 48/56).
        let t = mann_whitney(&[1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 3.0, 4.0]).unwrap();
        assert_eq!(t.u, 3.0);
        let sd = (16.0f64 / 12.0 * (9.0 - 48.0 / 56.0)).sqrt();
        close(t.z, (3.0 - 8.0 + 0.5) / sd, 1e-12);
        close(t.probability_of_superiority, 3.0 / 16.0, 1e-12);
    }

    #[test]
    fn kolmogorov_smirnov_distance_and_tail() {
        close(kolmogorov_q(1.3581), 0.05, 1e-4); // the classic 5% critical value
        let a: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let same = kolmogorov_smirnov(&a, &a).unwrap();
        assert_eq!(same.d, 0.0);
        assert_eq!(same.p_value, 1.0);
        let shifted: Vec<f64> = a.iter().map(|v| v + 25.0).collect();
        let t = kolmogorov_smirnov(&a, &shifted).unwrap();
        close(t.d, 0.5, 1e-12);
        assert!(t.p_value < 1e-4);
    }

    #[test]
    fn fisher_and_z_on_textbook_tables() {
        close(fisher_exact(3, 1, 1, 3), 0.4857143, 5e-8); // the lady tasting tea
        close(fisher_exact(1, 9, 11, 3), 0.002759, 5e-7);
        let t = proportions(15, 50, 5, 50).unwrap();
        close(t.z, 2.5, 1e-12);
        close(t.z_p_value, 0.01241933, 5e-8);
        close(t.difference, 0.2, 1e-12);
        close(t.odds_ratio, (15.0 / 35.0) / (5.0 / 45.0), 1e-12);
        assert!(proportions(6, 5, 1, 5).is_err());
    }

    #[test]
    fn psi_bands() {
        let base: Vec<f64> = (0..1000).map(|i| (i % 100) as f64).collect();
        let stable = drift(&base, &base).unwrap();
        assert!(stable.psi < 1e-12 && stable.band == DriftBand::Stable);
        assert_eq!(stable.ks.d, 0.0);
        let moved: Vec<f64> = base.iter().map(|v| v + 30.0).collect();
        let far = drift(&base, &moved).unwrap();
        assert_eq!(far.band, DriftBand::Significant, "psi {}", far.psi);
        let nudged: Vec<f64> = base.iter().map(|v| v + 5.0).collect();
        let near = drift(&base, &nudged).unwrap();
        assert!(near.psi < far.psi && near.psi > 0.0);
    }
}
