//! From frame scores to one score for the whole sound of a part (a clip), and from raw scores to scores that
//! mean the same in every operating condition.
//!
//! - [`Aggregation`]: the clip score is the mean of its frame scores, their 90th percentile, or the maximum of the
//!   score curve smoothed over ~0.5 s (a short event); training picks one by validation.
//! - [`Standardiser`]: a clip score is expressed relative to the typical normal clip of its condition,
//!   `s / median` (1.0 = typical; every detector's score is a non-negative distance), with the median of the
//!   out-of-fold scores of the normal training clips of that condition. Conditions come from the file name (DCASE style: `id_00`,
//!   `section_00_source`, attribute pairs such as `_pat_01`) or a CSV; a clip of no known condition (and every
//!   part on the line) uses the statistics of all normal clips.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    Mean,
    Q90,
    SmoothedMax,
    /// The highest frame score (what the slice detector of one window gives).
    Max,
}

impl Aggregation {
    pub const CHOICES: [Aggregation; 3] = [
        Aggregation::Mean,
        Aggregation::Q90,
        Aggregation::SmoothedMax,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Mean => "mean",
            Aggregation::Q90 => "q90",
            Aggregation::SmoothedMax => "smoothed-max",
            Aggregation::Max => "max",
        }
    }

    /// The clip score of a frame-score curve; `smooth` is the moving-average length of `SmoothedMax`.
    pub fn apply(self, curve: &[f32], smooth: usize) -> f32 {
        if curve.is_empty() {
            return f32::NAN;
        }
        match self {
            Aggregation::Mean => curve.iter().sum::<f32>() / curve.len() as f32,
            Aggregation::Max => curve.iter().copied().fold(f32::MIN, f32::max),
            Aggregation::Q90 => {
                let mut v = curve.to_vec();
                v.sort_by(f32::total_cmp);
                v[((v.len() - 1) as f32 * 0.9).round() as usize]
            }
            Aggregation::SmoothedMax => {
                let w = smooth.clamp(1, curve.len());
                let mut sum: f32 = curve[..w].iter().sum();
                let mut best = sum;
                for i in w..curve.len() {
                    sum += curve[i] - curve[i - w];
                    best = best.max(sum);
                }
                best / w as f32
            }
        }
    }
}

/// The typical normal clip score of one condition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Typical {
    pub median: f32,
    pub clips: usize,
}

/// Smallest typical score: scores are distances, a median of zero would make every score infinite.
const MIN_MEDIAN: f32 = 1e-6;

impl Typical {
    pub fn of(scores: &[f32]) -> Option<Typical> {
        let finite: Vec<f32> = scores.iter().copied().filter(|s| s.is_finite()).collect();
        if finite.is_empty() {
            return None;
        }
        Some(Typical {
            median: median(&finite).max(MIN_MEDIAN),
            clips: finite.len(),
        })
    }
}

fn median(v: &[f32]) -> f32 {
    let mut v = v.to_vec();
    v.sort_by(f32::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Per-condition standardisation of clip scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardiser {
    pub all: Typical,
    #[serde(default)]
    pub conditions: BTreeMap<String, Typical>,
}

impl Standardiser {
    /// From the normal clips' scores and their conditions (`None` = none known).
    pub fn fit(scores: &[f32], conditions: &[Option<String>]) -> Option<Standardiser> {
        let all = Typical::of(scores)?;
        let mut by: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for (s, c) in scores.iter().zip(conditions) {
            if let Some(c) = c {
                by.entry(c.clone()).or_default().push(*s);
            }
        }
        let conditions = by
            .into_iter()
            .filter(|(_, v)| v.len() >= 2)
            .filter_map(|(c, v)| Some((c, Typical::of(&v)?)))
            .collect();
        Some(Standardiser { all, conditions })
    }

    pub fn apply(&self, score: f32, condition: Option<&str>) -> f32 {
        let t = condition
            .and_then(|c| self.conditions.get(c))
            .unwrap_or(&self.all);
        score / t.median.max(MIN_MEDIAN)
    }
}

/// The condition a DCASE-style file name carries: its machine (`id_NN` or `section_NN`), its domain (`source` /
/// `target`) and any attribute pairs after the clip number; `None` for names without a machine id.
pub fn condition_of(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let tokens: Vec<&str> = stem.split('_').collect();
    let machine = tokens.windows(2).find(|w| {
        (w[0] == "id" || w[0] == "section") && w[1].chars().all(|c| c.is_ascii_digit())
    })?;
    let mut parts = vec![format!("{}_{}", machine[0], machine[1])];
    if let Some(domain) = tokens.iter().find(|t| **t == "source" || **t == "target") {
        parts.push((*domain).to_string());
    }
    // Attributes follow the clip number (the first all-digit token of 4 or more digits).
    if let Some(k) = tokens
        .iter()
        .position(|t| t.len() >= 4 && t.chars().all(|c| c.is_ascii_digit()))
    {
        parts.extend(tokens[k + 1..].iter().map(|t| (*t).to_string()));
    }
    Some(parts.join("_"))
}

/// Conditions from a CSV of `file,condition` lines (file names as in the recordings, without folders; a header
/// line `file,condition` is allowed).
pub fn read_conditions(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("file,condition")) {
            continue;
        }
        let Some((file, condition)) = line.split_once(',') else {
            return Err(format!(
                "{}:{}: expected `file,condition`, got {line:?}",
                path.display(),
                i + 1
            ));
        };
        out.insert(file.trim().to_string(), condition.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregations_of_a_curve_with_one_short_event() {
        let mut curve = vec![1.0f32; 100];
        curve[50..55].iter_mut().for_each(|v| *v = 11.0);
        assert!((Aggregation::Mean.apply(&curve, 5) - 1.5).abs() < 1e-5);
        assert_eq!(Aggregation::Q90.apply(&curve, 5), 1.0);
        assert_eq!(Aggregation::SmoothedMax.apply(&curve, 5), 11.0);
        assert_eq!(Aggregation::SmoothedMax.apply(&curve, 10), 6.0);
        assert_eq!(Aggregation::Max.apply(&[2.0, 7.0, 3.0], 1), 7.0);
    }

    #[test]
    fn scores_are_standardised_per_condition_and_unknown_conditions_use_all_clips() {
        let scores = [1.0, 1.2, 0.8, 10.0, 12.0, 8.0];
        let c = |s: &str| Some(s.to_string());
        let conds = [c("a"), c("a"), c("a"), c("b"), c("b"), c("b")];
        let st = Standardiser::fit(&scores, &conds).unwrap();
        assert!((st.apply(1.2, Some("a")) - 1.2).abs() < 1e-6);
        assert!((st.apply(12.0, Some("b")) - 1.2).abs() < 1e-6);
        assert!((st.apply(4.6, None) - 1.0).abs() < 1e-6);
        assert_eq!(st.apply(5.0, Some("zzz")), st.apply(5.0, None));
    }

    #[test]
    fn conditions_from_dcase_file_names() {
        let c = |s: &str| condition_of(Path::new(s));
        assert_eq!(c("normal_id_00_00000012.wav").as_deref(), Some("id_00"));
        assert_eq!(
            c("section_00_target_train_normal_0003_pat_01_vel_4.wav").as_deref(),
            Some("section_00_target_pat_01_vel_4")
        );
        assert_eq!(c("48k_Drive_End_IR007_0_109.wav"), None);
    }
}
