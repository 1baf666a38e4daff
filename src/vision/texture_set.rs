//! An evaluation set cut from a real texture photo (the shared data's brick, grass and gravel): square crops from
//! alternate horizontal bands of the photo, one crop high, to train on, crops from the other bands (no pixel is
//! shared) to test on, and defects drawn on part of the test crops with their ground-truth masks.
//!
//! Defects, each of several sizes, at a contrast relative to the crop's own gray-level spread (sigma), dark or
//! bright at random:
//! - `scratch`: a straight anti-aliased line, 2-4 px wide, 25-90 px long, 2-3.5 sigma;
//! - `spot`: a filled disc of radius 4-12 px, softened, 2-3.5 sigma;
//! - `crack`: a dark random walk of 6-12 segments, 2-3 px wide, 2-3.5 sigma;
//! - `stain`: a large soft ellipse (radii 12-30 px, blurred), 1.2-2 sigma.
//!
//! All are visible to the eye, the faintest only just; on busy textures (grass, gravel) they hide among the
//! texture's own strokes and pebbles.
//!
//! Layout: `train/good/`, `test/good/`, `test/defect/<class>/`, `test/masks/<class>/` (a mask has its defect
//! image's file name; white = defect). A set is a pure function of the photo and the seed.

use std::path::Path;

use opencv::core::{self, Mat, Point, Rect, Scalar, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;

use crate::rng::Rng;

pub const CLASSES: [&str; 4] = ["scratch", "spot", "crack", "stain"];

/// How many crops of which size.
#[derive(Debug, Clone, Copy)]
pub struct TextureSetParams {
    pub crop_px: i32,
    pub train: usize,
    pub test_good: usize,
    pub test_defect: usize,
    pub seed: u64,
}

impl Default for TextureSetParams {
    fn default() -> Self {
        TextureSetParams {
            crop_px: 128,
            train: 200,
            test_good: 50,
            test_defect: 60,
            seed: 1,
        }
    }
}

/// Draws one defect of `class` into a float stamp (1 = full contrast) of the crop's size.
fn stamp(class: &str, size: i32, rng: &mut Rng) -> opencv::Result<Mat> {
    let mut s = Mat::new_rows_cols_with_default(size, size, core::CV_32F, Scalar::all(0.0))?;
    let one = Scalar::all(1.0);
    let margin = size / 8;
    let at = |rng: &mut Rng| {
        Point::new(
            rng.int(margin, size - margin),
            rng.int(margin, size - margin),
        )
    };
    match class {
        "scratch" => {
            let a = at(rng);
            let len = rng.range(25.0, 90.0);
            let angle = rng.range(0.0, std::f64::consts::PI);
            let b = Point::new(
                (f64::from(a.x) + len * angle.cos()) as i32,
                (f64::from(a.y) + len * angle.sin()) as i32,
            );
            imgproc::line(&mut s, a, b, one, rng.int(2, 4), imgproc::LINE_AA, 0)?;
        }
        "spot" => {
            imgproc::circle(
                &mut s,
                at(rng),
                rng.int(4, 12),
                one,
                -1,
                imgproc::LINE_AA,
                0,
            )?;
            let mut soft = Mat::default();
            imgproc::gaussian_blur(
                &s,
                &mut soft,
                Size::new(0, 0),
                0.8,
                0.8,
                core::BORDER_REFLECT,
            )?;
            s = soft;
        }
        "crack" => {
            let mut p = at(rng);
            let mut angle = rng.range(0.0, std::f64::consts::TAU);
            let thickness = rng.int(2, 3);
            for _ in 0..rng.int(6, 12) {
                angle += rng.range(-0.7, 0.7);
                let step = rng.range(4.0, 10.0);
                let q = Point::new(
                    (f64::from(p.x) + step * angle.cos()).clamp(0.0, f64::from(size - 1)) as i32,
                    (f64::from(p.y) + step * angle.sin()).clamp(0.0, f64::from(size - 1)) as i32,
                );
                imgproc::line(&mut s, p, q, one, thickness, imgproc::LINE_AA, 0)?;
                p = q;
            }
        }
        _ => {
            let axes = Size::new(rng.int(12, 30), rng.int(12, 30));
            let angle = rng.range(0.0, 180.0);
            imgproc::ellipse(
                &mut s,
                at(rng),
                axes,
                angle,
                0.0,
                360.0,
                one,
                -1,
                imgproc::LINE_AA,
                0,
            )?;
            let sigma = rng.range(4.0, 6.0);
            let mut soft = Mat::default();
            imgproc::gaussian_blur(
                &s,
                &mut soft,
                Size::new(0, 0),
                sigma,
                sigma,
                core::BORDER_REFLECT,
            )?;
            let mut peak = 0.0;
            core::min_max_loc(&soft, None, Some(&mut peak), None, None, &core::no_array())?;
            let mut norm = Mat::default();
            soft.convert_to(&mut norm, core::CV_32F, 1.0 / peak.max(1e-6), 0.0)?;
            s = norm;
        }
    }
    Ok(s)
}

fn contrast(class: &str, rng: &mut Rng) -> f64 {
    let (lo, hi) = match class {
        "scratch" => (2.0, 3.5),
        "spot" => (2.0, 3.5),
        "crack" => (2.0, 3.5),
        _ => (1.2, 2.0),
    };
    rng.range(lo, hi)
}

fn write(path: &Path, image: &Mat) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    match imgcodecs::imwrite(path, image, &Vector::new()) {
        Ok(true) => Ok(()),
        other => Err(format!("cannot write {}: {other:?}", path.display())),
    }
}

/// Writes the set for the photo `texture` into `out`; returns the number of files written.
pub fn generate(texture: &Path, out: &Path, p: &TextureSetParams) -> Result<usize, String> {
    let photo = imgcodecs::imread(texture, imgcodecs::IMREAD_GRAYSCALE)
        .map_err(|e| format!("{}: {e}", texture.display()))?;
    if photo.empty() {
        return Err(format!(
            "{}: missing or not a readable image",
            texture.display()
        ));
    }
    let (w, h, c) = (photo.cols(), photo.rows(), p.crop_px);
    // Horizontal bands one crop high, alternately for training and testing: both sets see the whole photo's
    // light and structure, and no pixel is in both.
    let bands: Vec<i32> = (0..h / c).map(|b| b * c).collect();
    if w < c || bands.len() < 2 {
        return Err(format!(
            "{}: a {w}x{h} photo is too small for {c} px crops in separate train and test bands",
            texture.display()
        ));
    }
    let train_bands: Vec<i32> = bands.iter().copied().step_by(2).collect();
    let test_bands: Vec<i32> = bands.iter().copied().skip(1).step_by(2).collect();
    let mut rng = Rng::new(p.seed);
    let cv = |e: opencv::Error| e.to_string();
    let crop = |rng: &mut Rng, bands: &[i32]| -> Result<Mat, String> {
        let y = bands[rng.int(0, bands.len() as i32 - 1) as usize];
        let r = Rect::new(rng.int(0, w - c), y, c, c);
        Mat::roi(&photo, r).and_then(|m| m.try_clone()).map_err(cv)
    };
    let mut written = 0;
    for i in 0..p.train {
        let img = crop(&mut rng, &train_bands)?;
        write(&out.join(format!("train/good/{i:04}.png")), &img)?;
        written += 1;
    }
    for i in 0..p.test_good {
        let img = crop(&mut rng, &test_bands)?;
        write(&out.join(format!("test/good/{i:04}.png")), &img)?;
        written += 1;
    }
    for i in 0..p.test_defect {
        let class = CLASSES[i % CLASSES.len()];
        let img = crop(&mut rng, &test_bands)?;
        let s = stamp(class, c, &mut rng).map_err(cv)?;
        let mut mean = Mat::default();
        let mut sd = Mat::default();
        core::mean_std_dev(&img, &mut mean, &mut sd, &core::no_array()).map_err(cv)?;
        let sigma = *sd.at::<f64>(0).map_err(cv)?;
        let sign = if class == "crack" || rng.unit() < 0.5 {
            -1.0
        } else {
            1.0
        };
        let amplitude = sign * contrast(class, &mut rng) * sigma.max(4.0);
        let mut float = Mat::default();
        img.convert_to(&mut float, core::CV_32F, 1.0, 0.0)
            .map_err(cv)?;
        let mut delta = Mat::default();
        s.convert_to(&mut delta, core::CV_32F, amplitude, 0.0)
            .map_err(cv)?;
        let mut sum = Mat::default();
        core::add(&float, &delta, &mut sum, &core::no_array(), -1).map_err(cv)?;
        let mut defective = Mat::default();
        sum.convert_to(&mut defective, core::CV_8U, 1.0, 0.0)
            .map_err(cv)?;
        let mut mask = Mat::default();
        imgproc::threshold(&s, &mut mask, 0.3, 255.0, imgproc::THRESH_BINARY).map_err(cv)?;
        let mut mask8 = Mat::default();
        mask.convert_to(&mut mask8, core::CV_8U, 1.0, 0.0)
            .map_err(cv)?;
        let name = format!("{class}/{i:04}.png");
        write(&out.join("test/defect").join(&name), &defective)?;
        write(&out.join("test/masks").join(&name), &mask8)?;
        written += 2;
    }
    Ok(written)
}
