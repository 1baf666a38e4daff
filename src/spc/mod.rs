//! Statistical process control: control charts, run rules, process capability, average run length and
//! two-sample comparisons. Pure functions over numbers already read: no I/O, no clock, no config.
//!
//! A chart is estimated on a baseline (phase I: the first N points or a given set of indices, less the points
//! excluded for an assignable cause), its limits are frozen, and every point (phase I and phase II) is judged
//! against them. Each function returns a [`Chart`]: the statistic, centre and limits per point, the phase of each
//! point, the baseline and excluded indices (for audit), and the run-rule violations ([`rules`]).
//!
//! Conventions follow R's `qcc` package (see docs/SPC.md): d2/d3 from the standard table, R and S chart limits
//! as `centre +/- 3 sigma_statistic` clipped at 0, the EWMA's exact (time-varying) variance, a strict CUSUM
//! signal (`C > h`). Indices are 0-based throughout.

pub mod arl;
pub mod attributes;
pub mod capability;
pub mod compare;
pub mod constants;
pub mod cusum;
pub mod ewma;
pub mod rules;
pub mod variables;

use serde::Serialize;

pub use rules::{Rule, RuleSet, Test, Violation};

/// What can go wrong computing a chart: the input does not allow the estimate asked for.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpcError {
    #[error("no points to chart")]
    Empty,
    #[error("the baseline keeps {kept} point(s) after exclusions; {needed} needed")]
    BaselineTooSmall { kept: usize, needed: usize },
    #[error("index {index} is out of range (the data has {len} points)")]
    IndexOutOfRange { index: usize, len: usize },
    #[error("subgroup at index {index} has {size} values; every subgroup needs {expected}")]
    SubgroupSize {
        index: usize,
        size: usize,
        expected: String,
    },
    #[error("point at index {index}: {what}")]
    BadPoint { index: usize, what: String },
    #[error("{0}")]
    Parameter(String),
    #[error("the baseline has no variation: sigma is 0")]
    NoVariation,
}

/// Which points estimate the limits (phase I); all others are phase II, judged against the frozen limits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Baseline {
    /// `None`: every point is phase I.
    pub points: Option<BaselinePoints>,
    /// Phase I points left out of the estimate for an assignable cause (still charted and judged).
    pub excluded: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BaselinePoints {
    /// The first N points.
    First(usize),
    /// These indices.
    Indices(Vec<usize>),
}

impl Baseline {
    /// The first `n` points, less `excluded`.
    pub fn first(n: usize, excluded: &[usize]) -> Baseline {
        Baseline {
            points: Some(BaselinePoints::First(n)),
            excluded: excluded.to_vec(),
        }
    }

    /// Whether point `i` is in phase I.
    pub fn is_phase_one(&self, i: usize) -> bool {
        match &self.points {
            None => true,
            Some(BaselinePoints::First(n)) => i < *n,
            Some(BaselinePoints::Indices(set)) => set.contains(&i),
        }
    }

    /// The indices that estimate the limits: phase I less the excluded ones, checked against `len` points and
    /// required to keep at least `needed`.
    pub fn estimating(&self, len: usize, needed: usize) -> Result<Vec<usize>, SpcError> {
        if len == 0 {
            return Err(SpcError::Empty);
        }
        let mut listed: Vec<usize> = self.excluded.clone();
        match &self.points {
            Some(BaselinePoints::Indices(set)) => listed.extend(set),
            Some(BaselinePoints::First(n)) if *n > len => {
                return Err(SpcError::Parameter(format!(
                    "the baseline is the first {n} points, but the data has {len}"
                )));
            }
            _ => {}
        }
        if let Some(&index) = listed.iter().find(|&&i| i >= len) {
            return Err(SpcError::IndexOutOfRange { index, len });
        }
        if let Some(&index) = self.excluded.iter().find(|&&i| !self.is_phase_one(i)) {
            return Err(SpcError::Parameter(format!(
                "point {index} is in phase II: only phase I points can be excluded from the estimate"
            )));
        }
        let kept: Vec<usize> = (0..len)
            .filter(|&i| self.is_phase_one(i) && !self.excluded.contains(&i))
            .collect();
        if kept.len() < needed {
            return Err(SpcError::BaselineTooSmall {
                kept: kept.len(),
                needed,
            });
        }
        Ok(kept)
    }

    fn phase(&self, i: usize) -> Phase {
        if self.is_phase_one(i) {
            Phase::One
        } else {
            Phase::Two
        }
    }
}

/// Phase I: the baseline the limits were estimated on. Phase II: monitored against the frozen limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    #[serde(rename = "I")]
    One,
    #[serde(rename = "II")]
    Two,
}

/// One charted point: its statistic, centre and limits, and the standard error the zones are drawn from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// NaN where the point has no statistic (the first moving range).
    pub statistic: f64,
    pub center: f64,
    pub lcl: f64,
    pub ucl: f64,
    /// Standard error of the statistic: the run rules' 1- and 2-sigma zones are `center +/- k * sigma`.
    pub sigma: f64,
    pub phase: Phase,
    /// Left out of the estimate for an assignable cause.
    pub excluded: bool,
}

/// A control chart after estimation and judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    /// "xbar", "R", "S", "I", "MR", "p", "np", "c", "u", "laney-p", "laney-u", "ewma".
    pub kind: &'static str,
    /// The centre line estimated on the baseline (the grand mean, Rbar, pbar, ...).
    pub center: f64,
    /// The process sigma estimate behind the limits (per observation for variables charts; Laney's sigma_z for
    /// Laney charts; NaN where the chart has none).
    pub sigma: f64,
    pub points: Vec<Point>,
    /// Indices that estimated the limits.
    pub baseline: Vec<usize>,
    /// Indices excluded from the estimate (audit trail).
    pub excluded: Vec<usize>,
    pub violations: Vec<Violation>,
}

/// What a chart estimated on its baseline, before its points are built.
struct Estimate {
    kind: &'static str,
    center: f64,
    sigma: f64,
    baseline: Vec<usize>,
}

impl Estimate {
    /// Builds the points from per-point (statistic, center, sigma) with limits `center +/- width * sigma`
    /// clipped to `[floor, ceiling]`, then judges them with `rules`.
    fn chart(
        self,
        per_point: impl IntoIterator<Item = (f64, f64, f64)>,
        bounds: Bounds,
        baseline: &Baseline,
        rules: &RuleSet,
    ) -> Chart {
        let points: Vec<Point> = per_point
            .into_iter()
            .enumerate()
            .map(|(i, (statistic, c, s))| Point {
                statistic,
                center: c,
                lcl: (c - bounds.width * s).max(bounds.floor),
                ucl: (c + bounds.width * s).min(bounds.ceiling),
                sigma: s,
                phase: baseline.phase(i),
                excluded: baseline.excluded.contains(&i),
            })
            .collect();
        let violations = rules.judge(&points);
        let mut excluded = baseline.excluded.clone();
        excluded.sort_unstable();
        excluded.dedup();
        Chart {
            kind: self.kind,
            center: self.center,
            sigma: self.sigma,
            points,
            baseline: self.baseline,
            excluded,
            violations,
        }
    }
}

impl Chart {
    /// Indices where `rule` (by label, e.g. "WE2", "N5") fired.
    pub fn flagged(&self, rule: &str) -> Vec<usize> {
        self.violations
            .iter()
            .filter(|v| v.rule == rule)
            .map(|v| v.index)
            .collect()
    }
}

/// The limits' width in sigmas and the range they are clipped to.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    width: f64,
    floor: f64,
    ceiling: f64,
}

impl Bounds {
    const fn three_sigma() -> Bounds {
        Bounds {
            width: 3.0,
            floor: f64::NEG_INFINITY,
            ceiling: f64::INFINITY,
        }
    }
    const fn non_negative() -> Bounds {
        Bounds {
            width: 3.0,
            floor: 0.0,
            ceiling: f64::INFINITY,
        }
    }
}

/// The mean of `values` at `indices`.
fn mean_at(values: &[f64], indices: &[usize]) -> f64 {
    indices.iter().map(|&i| values[i]).sum::<f64>() / indices.len() as f64
}
