//! Heat maps: a model's anomaly map drawn as a colored overlay on the part's image (OpenCV), written next to the
//! original for every rejected part (`<part>.heat.png`, the review page's heat-map toggle).
//!
//! The map covers the region the model saw (the ROI), at the model's input size; it is resized onto that region
//! of the full image. Colors are relative to the threshold: a pixel at the threshold is mid-scale (green in the
//! JET map), twice the threshold and above is red, zero is blue; outside the ROI the image is left as it was.

use opencv::core::{self, Mat, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::AnomalyMap;
use crate::part::record::Drawing;

/// A rejected part's anomaly map, to be drawn over its kept frame by the record writer (off the line).
pub struct HeatMap {
    pub map: AnomalyMap,
    /// The region of the frame the map covers (`None`: the whole frame).
    pub roi: Option<Rect>,
    pub threshold: f32,
}

impl Drawing for HeatMap {
    fn draw(&self, frame: Option<&Mat>) -> Result<Mat, String> {
        let frame = frame.ok_or("no frame to draw the heat map on")?;
        overlay(frame, &self.map, self.roi, self.threshold).map_err(|e| e.to_string())
    }
}

/// How strongly the colors cover the image inside the ROI.
const OVERLAY_ALPHA: f64 = 0.5;

/// The overlay of `map` (in score units, judged against `threshold`) on `image` (BGR or gray), over `roi`.
pub fn overlay(
    image: &Mat,
    map: &AnomalyMap,
    roi: Option<Rect>,
    threshold: f32,
) -> opencv::Result<Mat> {
    let mut bgr = Mat::default();
    match image.channels() {
        1 => imgproc::cvt_color(image, &mut bgr, imgproc::COLOR_GRAY2BGR, 0)?,
        4 => imgproc::cvt_color(image, &mut bgr, imgproc::COLOR_BGRA2BGR, 0)?,
        _ => bgr = image.try_clone()?,
    }
    let region = roi.unwrap_or(Rect::new(0, 0, bgr.cols(), bgr.rows()));
    let raw = Mat::new_rows_cols_with_data(map.height as i32, map.width as i32, &map.values)?;
    // Threshold at mid-scale: 0..2*threshold -> 0..255.
    let scale = if threshold.is_finite() && threshold > 0.0 {
        127.5 / f64::from(threshold)
    } else {
        255.0
    };
    let mut levels = Mat::default();
    raw.convert_to(&mut levels, core::CV_8U, scale, 0.0)?;
    let mut sized = Mat::default();
    imgproc::resize(
        &levels,
        &mut sized,
        Size::new(region.width, region.height),
        0.0,
        0.0,
        imgproc::INTER_LINEAR,
    )?;
    let mut colored = Mat::default();
    imgproc::apply_color_map(&sized, &mut colored, imgproc::COLORMAP_JET)?;
    let mut out = bgr.try_clone()?;
    {
        let original = Mat::roi(&bgr, region)?;
        let mut target = Mat::roi_mut(&mut out, region)?;
        core::add_weighted(
            &original,
            1.0 - OVERLAY_ALPHA,
            &colored,
            OVERLAY_ALPHA,
            0.0,
            &mut target,
            -1,
        )?;
    }
    if roi.is_some() {
        imgproc::rectangle(
            &mut out,
            region,
            Scalar::new(255.0, 255.0, 255.0, 0.0),
            1,
            imgproc::LINE_8,
            0,
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::Vec3b;

    #[test]
    fn the_hot_spot_is_red_inside_the_roi_and_the_rest_untouched() {
        let image =
            Mat::new_rows_cols_with_default(100, 120, core::CV_8UC3, Scalar::all(100.0)).unwrap();
        // A 10x10 map, zero but for a hot 2x2 corner (bottom right) at 4x the threshold.
        let mut values = vec![0.0f32; 100];
        for (y, x) in [(8, 8), (8, 9), (9, 8), (9, 9)] {
            values[y * 10 + x] = 4.0;
        }
        let map = AnomalyMap {
            width: 10,
            height: 10,
            values,
        };
        let roi = Rect::new(20, 10, 80, 80);
        let out = overlay(&image, &map, Some(roi), 1.0).unwrap();
        assert_eq!((out.cols(), out.rows()), (120, 100));
        let at = |x, y| *out.at_2d::<Vec3b>(y, x).unwrap();
        // Outside the ROI: the original gray.
        assert_eq!(at(5, 5), Vec3b::from([100, 100, 100]));
        // Hot corner of the ROI: red dominates (JET: red at the top of the scale); cold part: blue dominates.
        let hot = at(20 + 76, 10 + 76);
        assert!(
            hot[2] > hot[0] + 40 && hot[2] > hot[1] + 40,
            "hot pixel {hot:?}"
        );
        let cold = at(20 + 10, 10 + 10);
        assert!(cold[0] > cold[2] + 40, "cold pixel {cold:?}");
    }
}
