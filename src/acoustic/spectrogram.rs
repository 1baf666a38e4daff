//! Spectrogram images of a slice (STFT power in dB, 80 dB range, inferno colours, low frequencies at the bottom),
//! saved next to a rejected part's frame and by `station evaluate audio` as examples.

use std::path::Path;

use opencv::core::{self, Mat, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;

use crate::audio::features::{Stft, db};
use crate::part::record::Drawing;

/// A rejected part's sound, to be drawn as a spectrogram by the record writer (off the line).
pub struct Spectrogram {
    pub samples: Vec<f32>,
    pub sample_rate_hz: u32,
}

impl Drawing for Spectrogram {
    fn draw(&self) -> Result<Mat, String> {
        image(&self.samples, self.sample_rate_hz).map_err(|e| e.to_string())
    }

    fn bytes(&self) -> u64 {
        let stft = transform(self.sample_rate_hz);
        let (frames, bins) = (stft.frames(self.samples.len()), stft.bins());
        let scale = (256.0 / bins as f64).max(1.0);
        let (width, height) = ((frames as f64 * scale).max(256.0), bins as f64 * scale);
        (self.samples.len() * 4) as u64 + (width * height * 3.0) as u64
    }
}

/// The transform of the drawing: about 5 ms segments, 75% overlap.
fn transform(sample_rate_hz: u32) -> Stft {
    let n = (sample_rate_hz as usize / 200).next_power_of_two().max(32);
    Stft::new(n, n / 4)
}

/// Draws the spectrogram of `samples` (about 5 ms segments, 75% overlap) as a BGR image at least 256 px tall.
pub fn image(samples: &[f32], sample_rate_hz: u32) -> opencv::Result<Mat> {
    let mut stft = transform(sample_rate_hz);
    let (frames, bins) = (stft.frames(samples.len()), stft.bins());
    let mut values = vec![0f32; frames * bins];
    stft.for_each_power(samples, false, |f, p| {
        for (k, v) in p.iter().enumerate() {
            // Row 0 is the top of the image: the highest frequency.
            values[(bins - 1 - k) * frames + f] = db(f64::from(*v));
        }
    });
    let top = values.iter().copied().fold(f32::MIN, f32::max);
    let gray: Vec<u8> = values
        .iter()
        .map(|v| (((v - top + 80.0) / 80.0).clamp(0.0, 1.0) * 255.0) as u8)
        .collect();
    let small = Mat::from_slice(&gray)?
        .reshape(1, bins as i32)?
        .try_clone()?;
    let scale = (256.0 / bins as f64).max(1.0);
    let width = ((frames as f64 * scale).max(256.0)) as i32;
    let mut big = Mat::default();
    imgproc::resize(
        &small,
        &mut big,
        core::Size::new(width, (bins as f64 * scale) as i32),
        0.0,
        0.0,
        imgproc::INTER_NEAREST,
    )?;
    let mut colour = Mat::default();
    imgproc::apply_color_map(&big, &mut colour, imgproc::COLORMAP_INFERNO)?;
    Ok(colour)
}

/// Writes an image as PNG.
pub fn save_png(path: &Path, image: &Mat) -> Result<(), String> {
    match imgcodecs::imwrite(path, image, &Vector::new()) {
        Ok(true) => Ok(()),
        other => Err(format!("cannot write {}: {other:?}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_draws_a_bright_horizontal_line_at_its_height() {
        let rate = 48_000;
        let samples: Vec<f32> = (0..4800)
            .map(|i| (std::f64::consts::TAU * 12_000.0 * i as f64 / 48_000.0).sin() as f32)
            .collect();
        let img = image(&samples, rate).unwrap();
        assert!(img.rows() >= 256 && img.cols() >= 64);
        let mut gray = Mat::default();
        imgproc::cvt_color_def(&img, &mut gray, imgproc::COLOR_BGR2GRAY).unwrap();
        let col = gray.cols() / 2;
        let brightest = (0..gray.rows())
            .max_by_key(|&r| *gray.at_2d::<u8>(r, col).unwrap())
            .unwrap();
        // 12 kHz is half of Nyquist: the middle of the image.
        let middle = gray.rows() / 2;
        assert!(
            (brightest - middle).abs() <= gray.rows() / 32,
            "row {brightest} of {}",
            gray.rows()
        );
    }
}
