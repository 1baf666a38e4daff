//! Heat maps: a model's anomaly map as a colored, half-transparent image at the model's resolution, written next
//! to the frame of every rejected part (`<part>.heat.png`). The review page scales it over the region of the
//! frame the model saw (`heatmap_roi`), so the line never resizes or blends a full-resolution overlay.
//!
//! Colors are relative to the threshold: a pixel at the threshold is mid-scale (green in the JET map), twice the
//! threshold and above is red, zero is blue.

use opencv::core::{self, Mat, Rect, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::AnomalyMap;
use crate::part::record::Drawing;

/// A rejected part's anomaly map, drawn by the record writer (off the line).
pub struct HeatMap {
    pub map: AnomalyMap,
    /// The region of the frame the map covers (`None`: the whole frame).
    pub roi: Option<Rect>,
    pub threshold: f32,
}

impl HeatMap {
    /// The region the page lays the map over, `x,y,w,h` in frame pixels (`None`: the whole frame).
    pub fn roi_text(&self) -> Option<String> {
        self.roi
            .map(|r| format!("{},{},{},{}", r.x, r.y, r.width, r.height))
    }
}

impl Drawing for HeatMap {
    fn draw(&self) -> Result<Mat, String> {
        colored(&self.map, self.threshold).map_err(|e| e.to_string())
    }

    fn bytes(&self) -> u64 {
        (self.map.width * self.map.height * 4) as u64
    }
}

/// How opaque the colors are (alpha of every pixel), so the frame shows through on the page.
const OVERLAY_ALPHA: f64 = 128.0;

/// `map` (in score units, judged against `threshold`) as a BGRA image of the map's size.
pub fn colored(map: &AnomalyMap, threshold: f32) -> opencv::Result<Mat> {
    let raw = Mat::new_rows_cols_with_data(map.height as i32, map.width as i32, &map.values)?;
    // Threshold at mid-scale: 0..2*threshold -> 0..255.
    let scale = if threshold.is_finite() && threshold > 0.0 {
        127.5 / f64::from(threshold)
    } else {
        255.0
    };
    let mut levels = Mat::default();
    raw.convert_to(&mut levels, core::CV_8U, scale, 0.0)?;
    let mut bgr = Mat::default();
    imgproc::apply_color_map(&levels, &mut bgr, imgproc::COLORMAP_JET)?;
    let mut channels = Vector::<Mat>::new();
    core::split(&bgr, &mut channels)?;
    channels.push(Mat::new_rows_cols_with_default(
        bgr.rows(),
        bgr.cols(),
        core::CV_8U,
        core::Scalar::all(OVERLAY_ALPHA),
    )?);
    let mut bgra = Mat::default();
    core::merge(&channels, &mut bgra)?;
    Ok(bgra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::Vec4b;

    #[test]
    fn the_hot_spot_is_red_and_the_map_keeps_the_model_resolution() {
        // A 10x8 map, zero but for a hot 2x2 corner (bottom right) at 4x the threshold.
        let mut values = vec![0.0f32; 80];
        for (y, x) in [(6, 8), (6, 9), (7, 8), (7, 9)] {
            values[y * 10 + x] = 4.0;
        }
        let map = AnomalyMap {
            width: 10,
            height: 8,
            values,
        };
        let out = colored(&map, 1.0).unwrap();
        assert_eq!((out.cols(), out.rows(), out.channels()), (10, 8, 4));
        let at = |x, y| *out.at_2d::<Vec4b>(y, x).unwrap();
        let hot = at(9, 7);
        assert!(hot[2] > hot[0] + 40 && hot[2] > hot[1] + 40, "hot {hot:?}");
        let cold = at(1, 1);
        assert!(cold[0] > cold[2] + 40, "cold {cold:?}");
        assert_eq!((hot[3], cold[3]), (128, 128));
        let heat = HeatMap {
            map,
            roi: Some(Rect::new(20, 10, 80, 64)),
            threshold: 1.0,
        };
        assert_eq!(heat.roi_text().as_deref(), Some("20,10,80,64"));
        assert_eq!(heat.bytes(), 320);
    }
}
