//! Run rules: which points of a chart signal. Western Electric rules 1-4 and Nelson tests 1-8, each with an
//! editable run length K, chosen per chart. Each violation names its rule and the point where it fired.
//!
//! Zones are drawn from each point's own centre and standard error (`z = (x - center) / sigma`), so they hold for
//! limits that vary with the subgroup size. Rule 1 uses the chart's limits themselves (clipped at 0 where they are;
//! L sigma on an EWMA). A window rule fires at the point that completes the window, and for the zone rules
//! ("K-1 of K beyond 2 sigma", "K-1 of K beyond 1 sigma") only when that point is itself beyond the zone, on the
//! same side as the others (the convention of `qcc` and Minitab). A point on the centre line breaks a run on one
//! side. Points without a statistic (NaN) never count.

use serde::Serialize;

use super::{Point, SpcError};

/// What a rule looks for; `k` is the run or window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Test {
    /// One point beyond the control limits.
    Beyond,
    /// K-1 of K points beyond 2 sigma, same side (WE 2, Nelson 5; K = 3).
    BeyondTwoSigma,
    /// K-1 of K points beyond 1 sigma, same side (WE 3, Nelson 6; K = 5).
    BeyondOneSigma,
    /// K points in a row on one side of the centre line (WE 4: 8; Nelson 2: 9).
    SameSide,
    /// K points in a row steadily increasing or decreasing (Nelson 3: 6).
    Trend,
    /// K points in a row alternating up and down (Nelson 4: 14).
    Alternating,
    /// K points in a row within 1 sigma of the centre line (Nelson 7: 15).
    WithinOneSigma,
    /// K points in a row beyond 1 sigma, either side (Nelson 8: 8).
    OutsideOneSigma,
}

/// One rule of a rule set: its label ("WE2", "N5"), its test and its K.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub label: String,
    pub test: Test,
    pub k: usize,
}

/// Where a rule fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub rule: String,
    pub index: usize,
}

/// The rules a chart is judged by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

const WESTERN_ELECTRIC: [(Test, usize); 4] = [
    (Test::Beyond, 1),
    (Test::BeyondTwoSigma, 3),
    (Test::BeyondOneSigma, 5),
    (Test::SameSide, 8),
];

const NELSON: [(Test, usize); 8] = [
    (Test::Beyond, 1),
    (Test::SameSide, 9),
    (Test::Trend, 6),
    (Test::Alternating, 14),
    (Test::BeyondTwoSigma, 3),
    (Test::BeyondOneSigma, 5),
    (Test::WithinOneSigma, 15),
    (Test::OutsideOneSigma, 8),
];

impl RuleSet {
    /// Rule 1 only: the default for attribute charts and for R, S and MR charts.
    pub fn beyond_limits() -> RuleSet {
        RuleSet::parse("we1").unwrap_or(RuleSet { rules: Vec::new() })
    }

    /// Western Electric rules 1-4.
    pub fn western_electric() -> RuleSet {
        RuleSet::parse("we").unwrap_or(RuleSet { rules: Vec::new() })
    }

    /// Nelson tests 1-8.
    pub fn nelson() -> RuleSet {
        RuleSet::parse("nelson").unwrap_or(RuleSet { rules: Vec::new() })
    }

    /// Parses a comma-separated list: `we` (rules 1-4), `nelson` (tests 1-8), `we2` (one Western Electric rule),
    /// `n5` or `5` (one Nelson test); each may end in `:K` to change its run length (`n2:8`).
    pub fn parse(spec: &str) -> Result<RuleSet, SpcError> {
        let mut rules = Vec::new();
        for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let token = token.to_ascii_lowercase();
            let (name, k) = match token.split_once(':') {
                Some((name, k)) => (name, Some(parse_k(k, &token)?)),
                None => (token.as_str(), None),
            };
            let picked: Vec<(String, Test, usize)> = match name {
                "we" => numbered("WE", &WESTERN_ELECTRIC, 1..=4),
                "nelson" => numbered("N", &NELSON, 1..=8),
                _ => {
                    let (prefix, table, digits): (&str, &[(Test, usize)], &str) =
                        match name.strip_prefix("we") {
                            Some(d) => ("WE", &WESTERN_ELECTRIC, d),
                            None => ("N", &NELSON, name.strip_prefix('n').unwrap_or(name)),
                        };
                    let number: usize = digits
                        .parse()
                        .ok()
                        .filter(|n| (1..=table.len()).contains(n))
                        .ok_or_else(|| unknown(&token))?;
                    numbered(prefix, table, number..=number)
                }
            };
            if k.is_some() && picked.len() > 1 {
                return Err(SpcError::Parameter(format!(
                    "rule `{token}`: K can only be set on one rule (e.g. n2:8)"
                )));
            }
            rules.extend(picked.into_iter().map(|(label, test, default_k)| Rule {
                label,
                test,
                k: k.unwrap_or(default_k),
            }));
        }
        if rules.is_empty() {
            return Err(SpcError::Parameter(format!("no rules in `{spec}`")));
        }
        Ok(RuleSet { rules })
    }

    /// Every violation of every rule, by point then by rule.
    pub fn judge(&self, points: &[Point]) -> Vec<Violation> {
        let z: Vec<f64> = points
            .iter()
            .map(|p| (p.statistic - p.center) / p.sigma)
            .collect();
        let mut found = Vec::new();
        for index in 0..points.len() {
            for rule in &self.rules {
                if fires(rule, points, &z, index) {
                    found.push(Violation {
                        rule: rule.label.clone(),
                        index,
                    });
                }
            }
        }
        found
    }
}

fn numbered(
    prefix: &str,
    table: &[(Test, usize)],
    numbers: std::ops::RangeInclusive<usize>,
) -> Vec<(String, Test, usize)> {
    numbers
        .map(|n| (format!("{prefix}{n}"), table[n - 1].0, table[n - 1].1))
        .collect()
}

fn unknown(token: &str) -> SpcError {
    SpcError::Parameter(format!(
        "unknown rule `{token}`: expected we, nelson, we1..we4, n1..n8 or 1..8, each optionally with :K"
    ))
}

fn parse_k(k: &str, token: &str) -> Result<usize, SpcError> {
    k.parse().ok().filter(|&k| k >= 2).ok_or_else(|| {
        SpcError::Parameter(format!("rule `{token}`: K must be a whole number >= 2"))
    })
}

/// Whether `rule` fires at point `i` (the last point of its window).
fn fires(rule: &Rule, points: &[Point], z: &[f64], i: usize) -> bool {
    let k = rule.k;
    if rule.test == Test::Beyond {
        let p = &points[i];
        return p.statistic > p.ucl || p.statistic < p.lcl;
    }
    if i + 1 < k {
        return false;
    }
    let window = &z[i + 1 - k..=i];
    let sides = [1.0, -1.0];
    match rule.test {
        Test::Beyond => false,
        Test::BeyondTwoSigma | Test::BeyondOneSigma => {
            let zone = if rule.test == Test::BeyondTwoSigma {
                2.0
            } else {
                1.0
            };
            sides.iter().any(|s| {
                s * z[i] > zone && window.iter().filter(|&&v| s * v > zone).count() + 1 >= k
            })
        }
        Test::SameSide => sides.iter().any(|s| window.iter().all(|&v| s * v > 0.0)),
        Test::WithinOneSigma => window.iter().all(|v| v.abs() < 1.0),
        Test::OutsideOneSigma => window.iter().all(|v| v.abs() > 1.0),
        Test::Trend | Test::Alternating => {
            let steps: Vec<f64> = points[i + 1 - k..=i]
                .windows(2)
                .map(|w| w[1].statistic - w[0].statistic)
                .collect();
            if rule.test == Test::Trend {
                steps.iter().all(|&d| d > 0.0) || steps.iter().all(|&d| d < 0.0)
            } else {
                steps.windows(2).all(|d| d[0] * d[1] < 0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spc::Phase;

    /// Points with centre 0, sigma 1 and 3-sigma limits.
    fn points(z: &[f64]) -> Vec<Point> {
        z.iter()
            .map(|&statistic| Point {
                statistic,
                center: 0.0,
                lcl: -3.0,
                ucl: 3.0,
                sigma: 1.0,
                phase: Phase::One,
                excluded: false,
            })
            .collect()
    }

    fn fired(spec: &str, z: &[f64]) -> Vec<(String, usize)> {
        RuleSet::parse(spec)
            .unwrap()
            .judge(&points(z))
            .into_iter()
            .map(|v| (v.rule, v.index))
            .collect()
    }

    fn at(rule: &str, indices: &[usize]) -> Vec<(String, usize)> {
        indices.iter().map(|&i| (rule.to_string(), i)).collect()
    }

    /// An in-control background that no rule fires on: small, alternating in sign, no run of 3 the same way.
    fn quiet(n: usize) -> Vec<f64> {
        [0.3, -0.4, 0.5, 0.2, -0.3, -0.6, 0.4, -0.2]
            .iter()
            .cycle()
            .take(n)
            .copied()
            .collect()
    }

    #[test]
    fn the_background_is_quiet_for_every_rule_but_hugging() {
        let z = quiet(40);
        assert_eq!(fired("we", &z), vec![]);
        assert_eq!(fired("n1,n2,n3,n4,n5,n6,n8", &z), vec![]);
    }

    #[test]
    fn rule_1_fires_only_beyond_the_limits() {
        let mut z = quiet(20);
        z[5] = 3.2;
        z[12] = -3.0; // on the limit: not beyond
        z[15] = -3.01;
        assert_eq!(fired("we1", &z), at("WE1", &[5, 15]));
        assert_eq!(fired("n1", &z), at("N1", &[5, 15]));
    }

    #[test]
    fn rule_2_needs_two_of_three_beyond_two_sigma_on_one_side() {
        let mut z = quiet(20);
        z[4] = 2.5;
        z[6] = 2.1; // 2 of 3 (4, 5, 6): fires at 6
        z[10] = 2.5;
        z[11] = -2.5; // opposite sides: nothing
        z[15] = -2.2;
        z[16] = -2.9; // fires at 16
        assert_eq!(fired("we2", &z), at("WE2", &[6, 16]));
        assert_eq!(fired("n5", &z), at("N5", &[6, 16]));
    }

    #[test]
    fn rule_3_needs_four_of_five_beyond_one_sigma_on_one_side() {
        let mut z = quiet(20);
        for i in [3, 4, 6, 7] {
            z[i] = 1.5; // 3..7 holds four: fires at 7
        }
        for i in [12, 13, 14] {
            z[i] = -1.5; // only three
        }
        assert_eq!(fired("we3", &z), at("WE3", &[7]));
        assert_eq!(fired("n6", &z), at("N6", &[7]));
    }

    #[test]
    fn rule_4_and_nelson_2_need_a_run_on_one_side() {
        let mut z = quiet(30);
        for v in &mut z[5..14] {
            *v = 0.5; // nine in a row above: 5..=13
        }
        z[14] = -0.5;
        assert_eq!(fired("we4", &z), at("WE4", &[12, 13]));
        assert_eq!(fired("n2", &z), at("N2", &[13]));
        assert_eq!(fired("n2:5", &z), at("N2", &[9, 10, 11, 12, 13]));
    }

    #[test]
    fn nelson_3_needs_six_steadily_moving() {
        let mut z = quiet(30);
        for (j, v) in z[10..16].iter_mut().enumerate() {
            *v = -1.0 + 0.4 * j as f64; // six rising: 10..=15
        }
        assert_eq!(fired("n3", &z), at("N3", &[15]));
        z[16] = 1.5; // a seventh
        assert_eq!(fired("n3", &z), at("N3", &[15, 16]));
    }

    #[test]
    fn nelson_4_needs_fourteen_alternating() {
        let mut z = vec![0.1, 0.2, 0.3, 0.4, 0.5];
        z.extend((0..14).map(|j| if j % 2 == 0 { 0.5 } else { -0.5 }));
        z.extend([-0.6, -0.7, -0.8]); // 4 -> 5 is flat and 18 -> 19 falls again: the run is 5..=18
        assert_eq!(fired("n4", &z), at("N4", &[18]));
    }

    #[test]
    fn nelson_7_needs_fifteen_within_one_sigma() {
        let mut z = vec![1.5; 3];
        z.extend(quiet(16));
        z.push(-1.2);
        assert_eq!(fired("n7", &z), at("N7", &[17, 18]));
    }

    #[test]
    fn nelson_8_needs_eight_beyond_one_sigma_either_side() {
        let mut z = quiet(10);
        z.extend([1.5, -1.5, 1.2, -1.1, 1.8, -1.3, 1.4, -2.2]);
        z.extend(quiet(5));
        assert_eq!(fired("n8", &z), at("N8", &[17]));
    }

    #[test]
    fn nan_points_never_count() {
        let mut z = vec![f64::NAN];
        z.extend([0.5; 8]);
        assert_eq!(fired("we4", &z), at("WE4", &[8]));
    }

    #[test]
    fn parses_sets_and_k() {
        let labels = |s: &str| -> Vec<(String, usize)> {
            RuleSet::parse(s)
                .unwrap()
                .rules
                .into_iter()
                .map(|r| (r.label, r.k))
                .collect()
        };
        assert_eq!(labels("we").len(), 4);
        assert_eq!(labels("nelson").len(), 8);
        assert_eq!(
            labels("1,2,5"),
            vec![("N1".into(), 1), ("N2".into(), 9), ("N5".into(), 3)]
        );
        assert_eq!(
            labels("WE4:7, n3"),
            vec![("WE4".into(), 7), ("N3".into(), 6)]
        );
        assert!(RuleSet::parse("n9").is_err());
        assert!(RuleSet::parse("we:3").is_err());
        assert!(RuleSet::parse("n2:x").is_err());
        assert!(RuleSet::parse("").is_err());
    }
}
