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
}
