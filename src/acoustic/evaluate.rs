//! Evaluation of an acoustic model on labelled sound: ROC, AUC, partial AUC (FPR <= 0.1, normalised by 0.1 as
//! in the DCASE challenge), and the ROC curve drawn as SVG and PNG.

use std::fmt::Write as _;

use opencv::core::{Mat, Point, Scalar};
use opencv::imgproc;

/// ROC points `(fpr, tpr)` from (0,0) to (1,1), sweeping the threshold down through the scores.
pub fn roc(normal: &[f32], anomalous: &[f32]) -> Vec<(f64, f64)> {
    let mut all: Vec<(f32, bool)> = normal
        .iter()
        .map(|s| (*s, false))
        .chain(anomalous.iter().map(|s| (*s, true)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (np, nn) = (anomalous.len().max(1) as f64, normal.len().max(1) as f64);
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut points = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < all.len() {
        // Tied scores move together (a diagonal step).
        let s = all[i].0;
        while i < all.len() && all[i].0 == s {
            if all[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        points.push((fp as f64 / nn, tp as f64 / np));
    }
    points
}

/// Area under the ROC curve for FPR in `[0, max_fpr]`, divided by `max_fpr` (1.0 gives the AUC).
pub fn partial_auc(roc: &[(f64, f64)], max_fpr: f64) -> f64 {
    let mut area = 0.0;
    for w in roc.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x0 >= max_fpr {
            break;
        }
        let (xe, ye) = if x1 > max_fpr {
            (max_fpr, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0))
        } else {
            (x1, y1)
        };
        area += (xe - x0) * (y0 + ye) / 2.0;
    }
    area / max_fpr
}

/// The ROC curve as an SVG document.
pub fn roc_svg(roc: &[(f64, f64)], title: &str) -> String {
    let (size, pad) = (400.0, 50.0);
    let xy = |(x, y): (f64, f64)| (pad + x * size, pad + (1.0 - y) * size);
    let mut path = String::new();
    for (i, p) in roc.iter().enumerate() {
        let (x, y) = xy(*p);
        let _ = write!(path, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
    }
    let title = title.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="500" height="520" font-family="sans-serif" font-size="13">
<rect width="500" height="520" fill="white"/>
<text x="250" y="30" text-anchor="middle">{title}</text>
<rect x="50" y="50" width="400" height="400" fill="none" stroke="#444"/>
<line x1="50" y1="450" x2="450" y2="50" stroke="#bbb" stroke-dasharray="4 4"/>
<line x1="90" y1="50" x2="90" y2="450" stroke="#e99" stroke-dasharray="2 3"/>
<path d="{path}" fill="none" stroke="#1f5fbf" stroke-width="2"/>
<text x="250" y="480" text-anchor="middle">false positive rate (normal scored above the threshold)</text>
<text x="20" y="250" text-anchor="middle" transform="rotate(-90 20 250)">true positive rate</text>
<text x="92" y="64" fill="#c55">FPR 0.1</text>
</svg>
"##
    )
}

/// The ROC curve as an image (white background, blue curve, the diagonal, axis names and a title).
pub fn roc_image(roc: &[(f64, f64)], title: &str) -> opencv::Result<Mat> {
    let (size, pad) = (400, 40);
    let mut img = Mat::new_rows_cols_with_default(
        size + 2 * pad,
        size + 2 * pad,
        opencv::core::CV_8UC3,
        Scalar::all(255.0),
    )?;
    let pt = |(x, y): (f64, f64)| {
        Point::new(
            pad + (x * f64::from(size)) as i32,
            pad + ((1.0 - y) * f64::from(size)) as i32,
        )
    };
    let grey = Scalar::new(160.0, 160.0, 160.0, 0.0);
    imgproc::rectangle_points(
        &mut img,
        pt((0.0, 1.0)),
        pt((1.0, 0.0)),
        grey,
        1,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::line(
        &mut img,
        pt((0.0, 0.0)),
        pt((1.0, 1.0)),
        grey,
        1,
        imgproc::LINE_AA,
        0,
    )?;
    for w in roc.windows(2) {
        let blue = Scalar::new(191.0, 95.0, 31.0, 0.0);
        imgproc::line(&mut img, pt(w[0]), pt(w[1]), blue, 2, imgproc::LINE_AA, 0)?;
    }
    let black = Scalar::all(0.0);
    for (text, at) in [
        (title, Point::new(pad, pad - 14)),
        (
            "false positive rate",
            Point::new(pad + size / 2 - 80, size + pad + 28),
        ),
        ("TPR", Point::new(4, pad + size / 2)),
    ] {
        imgproc::put_text(
            &mut img,
            text,
            at,
            imgproc::FONT_HERSHEY_SIMPLEX,
            0.45,
            black,
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    Ok(img)
}

/// Counts of normal and anomalous scores in `bins` equal bins over their common range, and the bins' edges.
pub fn histogram(
    normal: &[f32],
    anomalous: &[f32],
    bins: usize,
) -> (Vec<f32>, Vec<usize>, Vec<usize>) {
    let finite = || {
        normal
            .iter()
            .chain(anomalous)
            .copied()
            .filter(|s| s.is_finite())
    };
    let lo = finite().fold(f32::INFINITY, f32::min);
    let hi = finite().fold(f32::NEG_INFINITY, f32::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (lo.min(0.0), lo.max(0.0) + 1.0)
    };
    let edges: Vec<f32> = (0..=bins)
        .map(|i| lo + (hi - lo) * i as f32 / bins as f32)
        .collect();
    let count = |v: &[f32]| {
        let mut c = vec![0usize; bins];
        for s in v.iter().filter(|s| s.is_finite()) {
            c[(((s - lo) / (hi - lo) * bins as f32) as usize).min(bins - 1)] += 1;
        }
        c
    };
    (edges, count(normal), count(anomalous))
}

/// The clip-score histogram per class as an SVG document (normal blue, anomalous red, the threshold dashed).
pub fn histogram_svg(normal: &[f32], anomalous: &[f32], threshold: f32, title: &str) -> String {
    let bins = 30;
    let (edges, n, a) = histogram(normal, anomalous, bins);
    let top = n.iter().chain(&a).copied().max().unwrap_or(1).max(1) as f64;
    let (w, h, pad) = (600.0, 300.0, 50.0);
    let bar_w = w / bins as f64;
    let mut bars = String::new();
    for (i, (cn, ca)) in n.iter().zip(&a).enumerate() {
        for (count, colour, shift) in [(cn, "#1f5fbf", 0.0), (ca, "#c0392b", bar_w / 2.0)] {
            let bh = *count as f64 / top * h;
            let _ = write!(
                bars,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{colour}"/>"#,
                pad + i as f64 * bar_w + shift,
                pad + h - bh,
                bar_w / 2.0 - 1.0
            );
        }
    }
    let (lo, hi) = (f64::from(edges[0]), f64::from(edges[bins]));
    let tx = pad + (f64::from(threshold) - lo) / (hi - lo) * w;
    let threshold_line = if (pad..=pad + w).contains(&tx) {
        format!(
            r##"<line x1="{tx:.1}" y1="{pad}" x2="{tx:.1}" y2="{}" stroke="#333" stroke-dasharray="5 4"/><text x="{:.1}" y="{}">threshold {threshold:.3}</text>"##,
            pad + h,
            tx + 4.0,
            pad + 14.0
        )
    } else {
        String::new()
    };
    let title = title.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="700" height="420" font-family="sans-serif" font-size="13">
<rect width="700" height="420" fill="white"/>
<text x="350" y="30" text-anchor="middle">{title}</text>
<rect x="50" y="50" width="600" height="300" fill="none" stroke="#444"/>
{bars}
{threshold_line}
<text x="50" y="372">{lo:.3}</text><text x="650" y="372" text-anchor="end">{hi:.3}</text>
<text x="350" y="395" text-anchor="middle">clip score</text>
<rect x="470" y="60" width="12" height="12" fill="#1f5fbf"/><text x="488" y="71">normal ({})</text>
<rect x="470" y="80" width="12" height="12" fill="#c0392b"/><text x="488" y="91">anomalous ({})</text>
</svg>
"##,
        normal.len(),
        anomalous.len()
    )
}

/// The same histogram as an image.
pub fn histogram_image(
    normal: &[f32],
    anomalous: &[f32],
    threshold: f32,
    title: &str,
) -> opencv::Result<Mat> {
    let (bins, w, h, pad) = (30usize, 600, 300, 40);
    let (edges, n, a) = histogram(normal, anomalous, bins);
    let top = n.iter().chain(&a).copied().max().unwrap_or(1).max(1) as f64;
    let mut img = Mat::new_rows_cols_with_default(
        h + 2 * pad,
        w + 2 * pad,
        opencv::core::CV_8UC3,
        Scalar::all(255.0),
    )?;
    let bar_w = w / bins as i32;
    for (i, (cn, ca)) in n.iter().zip(&a).enumerate() {
        for (count, colour, shift) in [
            (cn, Scalar::new(191.0, 95.0, 31.0, 0.0), 0),
            (ca, Scalar::new(43.0, 57.0, 192.0, 0.0), bar_w / 2),
        ] {
            let bh = (*count as f64 / top * f64::from(h)) as i32;
            if bh > 0 {
                let x = pad + i as i32 * bar_w + shift;
                imgproc::rectangle_points(
                    &mut img,
                    Point::new(x, pad + h - bh),
                    Point::new(x + bar_w / 2 - 1, pad + h),
                    colour,
                    -1,
                    imgproc::LINE_8,
                    0,
                )?;
            }
        }
    }
    let (lo, hi) = (edges[0], edges[bins]);
    let tx = pad + ((threshold - lo) / (hi - lo) * w as f32) as i32;
    if (pad..=pad + w).contains(&tx) {
        imgproc::line(
            &mut img,
            Point::new(tx, pad),
            Point::new(tx, pad + h),
            Scalar::all(60.0),
            1,
            imgproc::LINE_8,
            0,
        )?;
    }
    imgproc::rectangle_points(
        &mut img,
        Point::new(pad, pad),
        Point::new(pad + w, pad + h),
        Scalar::all(160.0),
        1,
        imgproc::LINE_8,
        0,
    )?;
    let black = Scalar::all(0.0);
    let label = format!(
        "{lo:.3} .. {hi:.3}   blue: normal ({}), red: anomalous ({})",
        normal.len(),
        anomalous.len()
    );
    for (text, at) in [
        (title, Point::new(pad, pad - 14)),
        (label.as_str(), Point::new(pad, pad + h + 26)),
    ] {
        imgproc::put_text(
            &mut img,
            text,
            at,
            imgproc::FONT_HERSHEY_SIMPLEX,
            0.45,
            black,
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_partial_auc_match_hand_computed_values() {
        // Perfect separation.
        let r = roc(&[0.1, 0.2, 0.3], &[0.5, 0.6]);
        assert_eq!(partial_auc(&r, 1.0), 1.0);
        assert_eq!(partial_auc(&r, 0.1), 1.0);
        // One anomaly below every normal: AUC = (3 + 0) / 6 = 0.5 ... pairs won: 3 of 6.
        let r = roc(&[0.1, 0.2, 0.3], &[0.5, 0.0]);
        assert!((partial_auc(&r, 1.0) - 0.5).abs() < 1e-12);
        // Ties count half: one tied pair of one.
        let r = roc(&[0.5], &[0.5]);
        assert!((partial_auc(&r, 1.0) - 0.5).abs() < 1e-12);
        // An anomaly above 1 of 4 normals, another above all: AUC = (4 + 1) / 8.
        let r = roc(&[1.0, 2.0, 3.0, 4.0], &[1.5, 9.0]);
        assert!((partial_auc(&r, 1.0) - 5.0 / 8.0).abs() < 1e-12);
        // Up to FPR 0.1 only the top anomaly is found: TPR 0.5 over the whole range.
        assert!((partial_auc(&r, 0.1) - 0.5).abs() < 1e-12);
        assert!(roc_svg(&r, "t").contains("<path d=\"M50.0,450.0 "));
        assert!(roc_image(&r, "t").is_ok());
    }

    #[test]
    fn the_histogram_counts_each_class_in_its_bins() {
        let (edges, n, a) = histogram(&[0.0, 0.1, 0.2], &[0.9, 1.0], 10);
        assert_eq!((edges[0], edges[10]), (0.0, 1.0));
        assert_eq!(n.iter().sum::<usize>(), 3);
        assert_eq!((n[0], n[1], n[2]), (1, 1, 1));
        assert_eq!((a[9], a.iter().sum::<usize>()), (2, 2));
        let svg = histogram_svg(&[0.0, 0.1, 0.2], &[0.9, 1.0], 0.5, "t");
        assert!(svg.contains("threshold 0.500") && svg.contains("anomalous (2)"));
        assert!(histogram_image(&[0.0, 0.1], &[0.9], 0.5, "t").is_ok());
    }
}
