//! Evaluation of a vision model on labelled images: image AUROC, the confusion matrix at the threshold, F1,
//! false-reject rate (good parts rejected) and escape rate (defective parts passed), detection rate per defect
//! class, pixel AUROC against ground-truth masks; threshold calibration (a target false-reject rate, or
//! F1-optimal); the score histogram as SVG (the ROC is drawn by [`crate::acoustic::evaluate::roc_svg`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Area under the ROC curve by ranks (Mann-Whitney U): the probability that a defect scores above a good image,
/// ties counting half.
pub fn auroc(good: &[f32], defect: &[f32]) -> f64 {
    if good.is_empty() || defect.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = good
        .iter()
        .map(|&s| (s, false))
        .chain(defect.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * all[i..j].iter().filter(|a| a.1).count() as f64;
        i = j;
    }
    let (np, nn) = (defect.len() as f64, good.len() as f64);
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

/// The threshold for a target false-reject rate on held-out good scores: the smallest value that at most
/// `target` of them exceed. Returns the value and how it was chosen.
pub fn frr_threshold(good: &[f32], target: f64) -> (f32, String) {
    let mut sorted = good.to_vec();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    let allowed = (target * n as f64).floor() as usize;
    let value = sorted[n - 1 - allowed.min(n - 1)];
    let note = if allowed == 0 {
        format!(
            " (with {n} images a rate of {target} allows no reject: the highest held-out score; more held-out \
             images resolve the target finer)"
        )
    } else {
        String::new()
    };
    (
        value,
        format!(
            "target false-reject rate {:.2}% on {n} held-out good images: {allowed} of them score above{note}",
            target * 100.0
        ),
    )
}

/// The F1-optimal threshold (rejecting defects, keeping good): the midpoint of the best cut between two
/// consecutive scores.
pub fn f1_threshold(good: &[f32], defect: &[f32]) -> (f32, String) {
    let mut cuts: Vec<f32> = good.iter().chain(defect).copied().collect();
    cuts.sort_by(f32::total_cmp);
    cuts.dedup();
    let mut best = (f64::MIN, cuts[0]);
    for w in cuts.windows(2) {
        let t = (w[0] + w[1]) / 2.0;
        let f1 = confusion(good, defect, t).f1();
        if f1 > best.0 + 1e-12 {
            best = (f1, t);
        }
    }
    (
        best.1,
        format!(
            "F1-optimal (F1 {:.3}) on {} held-out good and {} defect images",
            best.0.max(0.0),
            good.len(),
            defect.len()
        ),
    )
}

/// Counts at a threshold: a score above it rejects.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Confusion {
    /// Defects rejected.
    pub true_reject: usize,
    /// Defects passed (escapes).
    pub escape: usize,
    /// Good parts rejected.
    pub false_reject: usize,
    /// Good parts passed.
    pub true_pass: usize,
}

impl Confusion {
    pub fn f1(&self) -> f64 {
        let tp = self.true_reject as f64;
        let denom = 2.0 * tp + (self.false_reject + self.escape) as f64;
        if denom == 0.0 { 0.0 } else { 2.0 * tp / denom }
    }
}

pub fn confusion(good: &[f32], defect: &[f32], threshold: f32) -> Confusion {
    let rejected = |s: &&f32| **s > threshold;
    let false_reject = good.iter().filter(rejected).count();
    let true_reject = defect.iter().filter(rejected).count();
    Confusion {
        true_reject,
        escape: defect.len() - true_reject,
        false_reject,
        true_pass: good.len() - false_reject,
    }
}

/// Detection figures of one defect class.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassRate {
    pub images: usize,
    pub rejected: usize,
    pub detection_rate: f64,
}

/// Everything `station evaluate` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub good_images: usize,
    pub defect_images: usize,
    pub image_auroc: Option<f64>,
    pub threshold: f32,
    pub f1: f64,
    pub false_reject_rate: f64,
    pub escape_rate: f64,
    pub confusion: Confusion,
    pub per_class: BTreeMap<String, ClassRate>,
    pub pixel_auroc: Option<f64>,
    /// The share of defects rejected at the threshold that rejects 1% of the good images (at most): how many
    /// defects a line tuned for a 1% false-reject rate catches, whatever the model's own threshold.
    pub detection_at_1pct_frr: Option<f64>,
}

fn rate(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// The report of good scores and (score, class) defect scores at `threshold`.
pub fn summarize(good: &[f32], defect: &[(f32, String)], threshold: f32) -> Report {
    let scores: Vec<f32> = defect.iter().map(|d| d.0).collect();
    let c = confusion(good, &scores, threshold);
    let mut per_class: BTreeMap<String, ClassRate> = BTreeMap::new();
    for (s, class) in defect {
        let e = per_class.entry(class.clone()).or_insert(ClassRate {
            images: 0,
            rejected: 0,
            detection_rate: 0.0,
        });
        e.images += 1;
        e.rejected += usize::from(*s > threshold);
    }
    for e in per_class.values_mut() {
        e.detection_rate = rate(e.rejected, e.images);
    }
    Report {
        good_images: good.len(),
        defect_images: defect.len(),
        image_auroc: (!good.is_empty() && !defect.is_empty()).then(|| auroc(good, &scores)),
        threshold,
        f1: c.f1(),
        false_reject_rate: rate(c.false_reject, good.len()),
        escape_rate: rate(c.escape, defect.len()),
        confusion: c,
        per_class,
        pixel_auroc: None,
        detection_at_1pct_frr: detection_at_frr(good, &scores, 0.01),
    }
}

/// The share of `defect` scores above the lowest threshold that rejects at most `frr` of `good`.
pub fn detection_at_frr(good: &[f32], defect: &[f32], frr: f64) -> Option<f64> {
    if good.is_empty() || defect.is_empty() {
        return None;
    }
    let (threshold, _) = frr_threshold(good, frr);
    Some(rate(
        defect.iter().filter(|&&s| s > threshold).count(),
        defect.len(),
    ))
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        writeln!(
            f,
            "images          {} good, {} defective",
            self.good_images, self.defect_images
        )?;
        writeln!(f, "image AUROC     {}", opt(self.image_auroc))?;
        if self.pixel_auroc.is_some() {
            writeln!(f, "pixel AUROC     {}", opt(self.pixel_auroc))?;
        }
        if let Some(d) = self.detection_at_1pct_frr {
            writeln!(
                f,
                "at 1% false rejects {:.1}% of the defects detected",
                d * 100.0
            )?;
        }
        writeln!(
            f,
            "at threshold    {}: F1 {:.3}, false-reject rate {:.2}%, escape rate {:.2}%",
            self.threshold,
            self.f1,
            self.false_reject_rate * 100.0,
            self.escape_rate * 100.0
        )?;
        let c = &self.confusion;
        writeln!(f, "confusion       {:>12} {:>12}", "rejected", "passed")?;
        writeln!(f, "  defective     {:>12} {:>12}", c.true_reject, c.escape)?;
        writeln!(
            f,
            "  good          {:>12} {:>12}",
            c.false_reject, c.true_pass
        )?;
        for (class, r) in &self.per_class {
            writeln!(
                f,
                "  {class:<14}detected {}/{} ({:.1}%)",
                r.rejected,
                r.images,
                r.detection_rate * 100.0
            )?;
        }
        Ok(())
    }
}

/// The score histogram (good in green, defective in red, the threshold as a line) as an SVG document.
pub fn histogram_svg(good: &[f32], defect: &[f32], threshold: f32, title: &str) -> String {
    const BINS: usize = 40;
    let (w, h, pad) = (600.0, 300.0, 50.0);
    let all = || good.iter().chain(defect).chain(std::iter::once(&threshold));
    let lo = all().copied().fold(f32::INFINITY, f32::min);
    let hi = all().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = (hi - lo).max(1e-6);
    let count = |scores: &[f32]| {
        let mut bins = [0usize; BINS];
        for s in scores {
            let b = (((s - lo) / span) * BINS as f32) as usize;
            bins[b.min(BINS - 1)] += 1;
        }
        bins
    };
    let (gb, db) = (count(good), count(defect));
    let top = gb.iter().chain(&db).copied().max().unwrap_or(1).max(1) as f64;
    let bw = w / BINS as f64;
    let mut bars = String::new();
    for (bins, color) in [(gb, "#2a9d4b"), (db, "#d0342c")] {
        for (i, &n) in bins.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let bh = n as f64 / top * h;
            let _ = writeln!(
                bars,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{color}" fill-opacity="0.55"/>"#,
                pad + i as f64 * bw,
                pad + h - bh,
                bw
            );
        }
    }
    let tx = pad + f64::from((threshold - lo) / span) * w;
    let title = title.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="13">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{cx}" y="28" text-anchor="middle">{title}</text>
<rect x="{pad}" y="{pad}" width="{w}" height="{h}" fill="none" stroke="#444"/>
{bars}<line x1="{tx:.1}" y1="{pad}" x2="{tx:.1}" y2="{yb}" stroke="#000" stroke-dasharray="5 3"/>
<text x="{tx:.1}" y="{yt}" text-anchor="middle">threshold {threshold}</text>
<text x="{pad}" y="{yl}">{lo:.3}</text><text x="{xr}" y="{yl}" text-anchor="end">{hi:.3}</text>
<text x="{cx}" y="{yl}" text-anchor="middle">image score (green: good, red: defective)</text>
<text x="18" y="{cy}" text-anchor="middle" transform="rotate(-90 18 {cy})">images</text>
</svg>
"##,
        W = w + 2.0 * pad,
        H = h + 2.0 * pad + 20.0,
        cx = pad + w / 2.0,
        cy = pad + h / 2.0,
        yb = pad + h,
        yt = pad - 6.0,
        yl = pad + h + 22.0,
        xr = pad + w,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_pairs_and_ties_half() {
        assert_eq!(auroc(&[0.1, 0.2], &[0.3, 0.4]), 1.0);
        assert_eq!(auroc(&[0.3, 0.4], &[0.1, 0.2]), 0.0);
        // Pairs: (1 vs 0.5: win), (1 vs 1: tie), (0 vs 0.5: loss), (0 vs 1: loss) -> 1.5 / 4.
        assert_eq!(auroc(&[0.5, 1.0], &[1.0, 0.0]), 0.375);
    }

    #[test]
    fn thresholds_for_a_false_reject_target_and_for_f1() {
        let good: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        // 2% of 100: two good scores may lie above.
        assert_eq!(frr_threshold(&good, 0.02).0, 98.0);
        assert_eq!(frr_threshold(&good, 0.001).0, 100.0);
        let (t, _) = f1_threshold(&[1.0, 2.0, 3.0], &[5.0, 6.0, 2.5]);
        // Rejecting 2.5 and up costs one false reject but catches every defect: F1 6/7 beats 4/5 at 4.0.
        assert_eq!(t, 2.25);
        let c = confusion(&[1.0, 2.0, 3.0], &[5.0, 6.0, 2.5], t);
        assert_eq!(
            (c.true_reject, c.escape, c.false_reject, c.true_pass),
            (3, 0, 1, 2)
        );
        assert!((c.f1() - 6.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn report_rates_per_class() {
        let defects = vec![
            (5.0, "scratch".to_string()),
            (0.5, "scratch".to_string()),
            (9.0, "spot".to_string()),
        ];
        let r = summarize(&[0.1, 2.0], &defects, 1.0);
        assert_eq!(r.per_class["scratch"].rejected, 1);
        assert_eq!(r.per_class["spot"].detection_rate, 1.0);
        assert_eq!(r.false_reject_rate, 0.5);
        assert!((r.escape_rate - 1.0 / 3.0).abs() < 1e-12);
        let svg = histogram_svg(&[0.1, 2.0], &[5.0, 0.5, 9.0], 1.0, "t");
        assert!(svg.contains("threshold 1") && svg.matches("<rect").count() >= 4);
    }
}
