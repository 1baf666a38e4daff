//! Process capability: Cp, Cpl, Cpu, Cpk, Cpm from sigma within subgroups, Pp, Ppl, Ppu, Ppk from the overall
//! standard deviation, each with a confidence interval, and the expected (normal, sigma within) against the
//! observed fraction out of spec. One-sided specs give only the one-sided indices (and Cpk = that one).
//!
//! Intervals follow `qcc` (see docs/SPC.md): chi-square (Chou) for Cp and Pp with n - 1 degrees of freedom;
//! Bissell's normal approximation `v (1 +/- z sqrt(1 / (9 n v^2) + 1 / (2 (n - 1))))` for Cpk/Ppk with
//! `z = z(1 - alpha/2)` and for the one-sided Cpl/Cpu/Ppl/Ppu with `z = z(confidence)`; for Cpm chi-square with
//! Boyles' degrees of freedom as qcc writes them, `n (1 + a^2) / (1 + 2 a^2)`, `a = (mean - target) / sigma`.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

use super::SpcError;

/// Specification limits (either may be absent, not both) and the target (default: the middle of two limits).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Spec {
    pub lsl: Option<f64>,
    pub usl: Option<f64>,
    pub target: Option<f64>,
}

/// An index with its two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The indices that the spec allows (None where a limit or the target is missing).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Indices {
    pub cp: Option<Interval>,
    pub cpl: Option<Interval>,
    pub cpu: Option<Interval>,
    pub cpk: Option<Interval>,
    pub cpm: Option<Interval>,
}

/// Fractions (0..1) below the lower and above the upper limit.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct OutOfSpec {
    pub below_lsl: Option<f64>,
    pub above_usl: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capability {
    pub n: usize,
    pub mean: f64,
    pub sigma_within: f64,
    pub sigma_overall: f64,
    pub spec: Spec,
    pub confidence: f64,
    /// From sigma within: cp, cpl, cpu, cpk, cpm.
    pub within: Indices,
    /// From the overall standard deviation: pp, ppl, ppu, ppk (in the same fields; cpm unused).
    pub overall: Indices,
    /// Normal model with sigma within.
    pub expected: OutOfSpec,
    pub observed: OutOfSpec,
}

/// Capability of `observations` (phase I, excluded points removed) against `spec`.
pub fn capability(
    observations: &[f64],
    sigma_within: f64,
    spec: Spec,
    confidence: f64,
) -> Result<Capability, SpcError> {
    check(observations, sigma_within, spec, confidence)?;
    let n = observations.len();
    let mean = observations.iter().sum::<f64>() / n as f64;
    let sigma_overall = super::variables::std_dev(observations);
    let target = spec.target.or(match (spec.lsl, spec.usl) {
        (Some(l), Some(u)) => Some((l + u) / 2.0),
        _ => None,
    });
    let z_model = |x: f64| Normal::standard().cdf(x);
    let observed = |inside: fn(f64, f64) -> bool, limit: Option<f64>| {
        limit.map(|l| observations.iter().filter(|&&x| inside(x, l)).count() as f64 / n as f64)
    };
    Ok(Capability {
        n,
        mean,
        sigma_within,
        sigma_overall,
        spec: Spec { target, ..spec },
        confidence,
        within: indices(n, mean, sigma_within, Spec { target, ..spec }, confidence),
        overall: Indices {
            cpm: None,
            ..indices(n, mean, sigma_overall, spec, confidence)
        },
        expected: OutOfSpec {
            below_lsl: spec.lsl.map(|l| z_model((l - mean) / sigma_within)),
            above_usl: spec.usl.map(|u| 1.0 - z_model((u - mean) / sigma_within)),
        },
        observed: OutOfSpec {
            below_lsl: observed(|x, l| x < l, spec.lsl),
            above_usl: observed(|x, u| x > u, spec.usl),
        },
    })
}

fn check(
    observations: &[f64],
    sigma_within: f64,
    spec: Spec,
    confidence: f64,
) -> Result<(), SpcError> {
    let problem = if observations.len() < 2 {
        "capability needs at least 2 observations"
    } else if observations.iter().any(|x| !x.is_finite()) {
        "an observation is not a finite number"
    } else if !(sigma_within > 0.0 && sigma_within.is_finite()) {
        "sigma within must be > 0"
    } else if spec.lsl.is_none() && spec.usl.is_none() {
        "capability needs a lower or an upper spec limit"
    } else if matches!((spec.lsl, spec.usl), (Some(l), Some(u)) if l >= u) {
        "the lower spec limit must be below the upper"
    } else if !(confidence > 0.0 && confidence < 1.0) {
        "the confidence level must be between 0 and 1"
    } else {
        return Ok(());
    };
    Err(SpcError::Parameter(problem.into()))
}

fn indices(n: usize, mean: f64, sigma: f64, spec: Spec, confidence: f64) -> Indices {
    let alpha = 1.0 - confidence;
    let normal = Normal::standard();
    let (z_one, z_two) = (
        normal.inverse_cdf(confidence),
        normal.inverse_cdf(1.0 - alpha / 2.0),
    );
    let nf = n as f64;
    let df = nf - 1.0;
    let cpl = spec.lsl.map(|l| (mean - l) / (3.0 * sigma));
    let cpu = spec.usl.map(|u| (u - mean) / (3.0 * sigma));
    let cpk = match (cpl, cpu) {
        (Some(l), Some(u)) => Some(l.min(u)),
        (l, u) => l.or(u),
    };
    let both = spec.lsl.zip(spec.usl);
    let cp = both.map(|(l, u)| (u - l) / (6.0 * sigma));
    let cpm = both.zip(spec.target).map(|((l, u), t)| {
        let a = (mean - t) / sigma;
        let value = (u - l) / (6.0 * (sigma * sigma + (mean - t).powi(2)).sqrt());
        chi_square(value, nf * (1.0 + a * a) / (1.0 + 2.0 * a * a), alpha)
    });
    Indices {
        cp: cp.map(|v| chi_square(v, df, alpha)),
        cpl: cpl.map(|v| bissell(v, z_one, nf)),
        cpu: cpu.map(|v| bissell(v, z_one, nf)),
        cpk: cpk.map(|v| bissell(v, z_two, nf)),
        cpm,
    }
}

/// `value * sqrt(chi2(alpha/2, df) / df)` .. `value * sqrt(chi2(1 - alpha/2, df) / df)`.
fn chi_square(value: f64, df: f64, alpha: f64) -> Interval {
    let bound = |p: f64| {
        ChiSquared::new(df).map_or(f64::NAN, |chi| value * (chi.inverse_cdf(p) / df).sqrt())
    };
    Interval {
        value,
        lower: bound(alpha / 2.0),
        upper: bound(1.0 - alpha / 2.0),
    }
}

/// Bissell: `value (1 -/+ z sqrt(1 / (9 n value^2) + 1 / (2 (n - 1))))`.
fn bissell(value: f64, z: f64, n: f64) -> Interval {
    let half = z * (1.0 / (9.0 * n * value * value) + 1.0 / (2.0 * (n - 1.0))).sqrt();
    Interval {
        value,
        lower: value * (1.0 - half),
        upper: value * (1.0 + half),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<f64> {
        (0..100)
            .map(|i| 10.0 + ((i * 37) % 100) as f64 / 100.0 - 0.5)
            .collect()
    }

    #[test]
    fn a_one_sided_spec_gives_only_its_side() {
        let x = sample();
        let upper_only = Spec {
            usl: Some(12.0),
            ..Spec::default()
        };
        let cap = capability(&x, 0.3, upper_only, 0.95).unwrap();
        let cpu = cap.within.cpu.unwrap();
        assert!((cpu.value - (12.0 - cap.mean) / 0.9).abs() < 1e-12);
        assert_eq!(cap.within.cpk.unwrap().value, cpu.value);
        assert!(
            cap.within.cpk.unwrap().lower < cpu.lower,
            "Cpk's interval is the two-sided one"
        );
        assert!(cap.within.cp.is_none() && cap.within.cpl.is_none() && cap.within.cpm.is_none());
        assert!(cap.overall.cpu.is_some() && cap.overall.cp.is_none());
        assert!(cap.expected.below_lsl.is_none() && cap.observed.below_lsl.is_none());
        assert_eq!(cap.observed.above_usl, Some(0.0));
    }

    #[test]
    fn observed_out_of_spec_counts_points_beyond() {
        let x = sample();
        let cap = capability(
            &x,
            0.3,
            Spec {
                lsl: Some(9.6),
                usl: Some(10.45),
                target: None,
            },
            0.95,
        )
        .unwrap();
        assert_eq!(cap.observed.below_lsl, Some(0.1));
        assert_eq!(cap.observed.above_usl, Some(0.04));
        assert!((cap.spec.target.unwrap() - 10.025).abs() < 1e-12);
        let e = cap.expected.below_lsl.unwrap();
        assert!((e - Normal::standard().cdf((9.6 - cap.mean) / 0.3)).abs() < 1e-15);
    }

    #[test]
    fn bad_specs_are_refused() {
        let x = sample();
        assert!(capability(&x, 0.3, Spec::default(), 0.95).is_err());
        assert!(
            capability(
                &x,
                0.3,
                Spec {
                    lsl: Some(2.0),
                    usl: Some(1.0),
                    target: None
                },
                0.95
            )
            .is_err()
        );
        assert!(
            capability(
                &x,
                0.0,
                Spec {
                    lsl: Some(1.0),
                    ..Spec::default()
                },
                0.95
            )
            .is_err()
        );
    }
}
