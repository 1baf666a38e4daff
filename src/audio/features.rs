//! Acoustic features with `realfft`/`rustfft`: STFT power frames, Welch PSD, log-mel band energies and the
//! envelope spectrum (for bearing-type impact faults), and the feature vector the acoustic model scores.
//!
//! Conventions follow `scipy.signal` so a test peer can check them: a periodic Hann window, Welch with the mean
//! removed per segment, one-sided density scaling (V²/Hz). Band energies are in dB (`10·log10`).
//! An [`Extractor`] holds the FFT plans and scratch buffers for one set of [`FeatureParams`]; it is reused for every
//! slice on the acoustic thread.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

/// How a slice of audio becomes a feature vector (stored in the acoustic model's manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureParams {
    pub sample_rate_hz: u32,
    /// STFT / Welch segment length in samples (Hann window).
    pub fft_size: usize,
    /// STFT / Welch hop in samples.
    pub hop: usize,
    /// Mel bands between `f_min_hz` and `f_max_hz`.
    pub mel_bands: usize,
    pub f_min_hz: f32,
    pub f_max_hz: f32,
    /// The envelope is taken of the signal above this frequency.
    pub envelope_highpass_hz: f32,
    /// Log-spaced bands of the envelope spectrum between `envelope_min_hz` and `envelope_max_hz`.
    pub envelope_bands: usize,
    pub envelope_min_hz: f32,
    pub envelope_max_hz: f32,
}

impl FeatureParams {
    /// Defaults for a sample rate: 1024-sample segments at 48 kHz (21 ms), 40 mel bands up to Nyquist,
    /// 16 envelope bands from 10 to 1000 Hz of the signal above 1 kHz.
    pub fn for_rate(sample_rate_hz: u32) -> Self {
        let fft_size = (sample_rate_hz as usize / 48).next_power_of_two().max(64);
        Self {
            sample_rate_hz,
            fft_size,
            hop: fft_size / 2,
            mel_bands: 40,
            f_min_hz: 20.0,
            f_max_hz: sample_rate_hz as f32 / 2.0,
            envelope_highpass_hz: 1000.0,
            envelope_bands: 16,
            envelope_min_hz: 10.0,
            envelope_max_hz: 1000.0,
        }
    }

    /// Length of the feature vector.
    pub fn len(&self) -> usize {
        self.mel_bands + self.envelope_bands
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Problems with the parameters, as `field: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let nyquist = self.sample_rate_hz as f32 / 2.0;
        if self.sample_rate_hz < 1000 {
            p.push(format!(
                "sample_rate_hz: expected at least 1000, got {}",
                self.sample_rate_hz
            ));
        }
        if self.fft_size < 16 {
            p.push(format!(
                "fft_size: expected at least 16, got {}",
                self.fft_size
            ));
        }
        if self.hop == 0 || self.hop > self.fft_size {
            p.push(format!(
                "hop: expected 1..={} (fft_size), got {}",
                self.fft_size, self.hop
            ));
        }
        if self.mel_bands == 0 {
            p.push("mel_bands: expected at least 1".into());
        }
        if !(0.0 <= self.f_min_hz && self.f_min_hz < self.f_max_hz && self.f_max_hz <= nyquist) {
            p.push(format!(
                "f_min_hz/f_max_hz: expected 0 <= f_min < f_max <= {nyquist} (Nyquist), got {}..{}",
                self.f_min_hz, self.f_max_hz
            ));
        }
        if !(0.0 < self.envelope_min_hz && self.envelope_min_hz < self.envelope_max_hz) {
            p.push(format!(
                "envelope_min_hz/envelope_max_hz: expected 0 < min < max, got {}..{}",
                self.envelope_min_hz, self.envelope_max_hz
            ));
        }
        if !(0.0..nyquist).contains(&self.envelope_highpass_hz) {
            p.push(format!(
                "envelope_highpass_hz: expected 0..{nyquist}, got {}",
                self.envelope_highpass_hz
            ));
        }
        p
    }
}

/// Periodic Hann window (`scipy.signal.get_window("hann", n)`).
pub fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos()) as f32)
        .collect()
}

/// Frequency of FFT bin `k` for an `n`-point transform.
pub fn bin_hz(k: usize, n: usize, sample_rate_hz: u32) -> f32 {
    k as f32 * sample_rate_hz as f32 / n as f32
}

fn hz_to_mel(hz: f32) -> f32 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f32) -> f32 {
    700.0 * (10f32.powf(mel / 2595.0) - 1.0)
}

/// Short-time Fourier transform with a Hann window: power (|X|²) per frame.
pub struct Stft {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    hop: usize,
    input: Vec<f32>,
    output: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
}

impl Stft {
    pub fn new(fft_size: usize, hop: usize) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(fft_size);
        Self {
            input: fft.make_input_vec(),
            output: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window: hann(fft_size),
            hop,
        }
    }

    pub fn fft_size(&self) -> usize {
        self.window.len()
    }

    /// Bins per frame (`fft_size / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.window.len() / 2 + 1
    }

    /// Segments of `signal` (a signal shorter than one segment is zero-padded into one).
    pub fn frames(&self, len: usize) -> usize {
        let n = self.fft_size();
        if len <= n {
            1
        } else {
            (len - n) / self.hop + 1
        }
    }

    /// Calls `each(frame, power)` for every frame; with `detrend` each segment's mean is removed first.
    pub fn for_each_power(
        &mut self,
        signal: &[f32],
        detrend: bool,
        mut each: impl FnMut(usize, &[f32]),
    ) {
        let n = self.fft_size();
        let mut power = vec![0f32; self.bins()];
        for frame in 0..self.frames(signal.len()) {
            let start = frame * self.hop;
            let seg = &signal[start..(start + n).min(signal.len())];
            let mean = if detrend {
                seg.iter().sum::<f32>() / seg.len().max(1) as f32
            } else {
                0.0
            };
            for (i, x) in self.input.iter_mut().enumerate() {
                *x = seg.get(i).map_or(0.0, |s| (s - mean) * self.window[i]);
            }
            // Lengths are the plan's own, so the transform cannot fail.
            let _ =
                self.fft
                    .process_with_scratch(&mut self.input, &mut self.output, &mut self.scratch);
            for (p, c) in power.iter_mut().zip(&self.output) {
                *p = c.norm_sqr();
            }
            each(frame, &power);
        }
    }

    /// Welch PSD in V²/Hz, one-sided, mean-detrended segments (`scipy.signal.welch` with `nperseg = fft_size`,
    /// `noverlap = fft_size - hop`).
    pub fn welch(&mut self, signal: &[f32], sample_rate_hz: u32) -> Vec<f32> {
        let n = self.fft_size();
        let mut sum = vec![0f64; self.bins()];
        let mut frames = 0usize;
        self.for_each_power(signal, true, |_, p| {
            frames += 1;
            for (s, v) in sum.iter_mut().zip(p) {
                *s += f64::from(*v);
            }
        });
        let w2: f64 = self
            .window
            .iter()
            .map(|w| f64::from(*w) * f64::from(*w))
            .sum();
        let scale = 1.0 / (f64::from(sample_rate_hz) * w2 * frames.max(1) as f64);
        let last = if n % 2 == 0 { sum.len() - 1 } else { sum.len() };
        sum.iter()
            .enumerate()
            .map(|(k, s)| {
                let one_sided = if k > 0 && k < last { 2.0 } else { 1.0 };
                (s * scale * one_sided) as f32
            })
            .collect()
    }
}

/// Triangular mel filterbank over the `fft_size / 2 + 1` bins (HTK mel scale), one row per band.
pub fn mel_filterbank(params: &FeatureParams) -> Vec<Vec<f32>> {
    let bins = params.fft_size / 2 + 1;
    let (lo, hi) = (hz_to_mel(params.f_min_hz), hz_to_mel(params.f_max_hz));
    let edges: Vec<f32> = (0..params.mel_bands + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f32 / (params.mel_bands + 1) as f32))
        .collect();
    (0..params.mel_bands)
        .map(|b| {
            let (left, centre, right) = (edges[b], edges[b + 1], edges[b + 2]);
            let mut row: Vec<f32> = (0..bins)
                .map(|k| {
                    let f = bin_hz(k, params.fft_size, params.sample_rate_hz);
                    if f <= left || f >= right {
                        0.0
                    } else if f <= centre {
                        (f - left) / (centre - left)
                    } else {
                        (right - f) / (right - centre)
                    }
                })
                .collect();
            // A band narrower than a bin still gets the nearest bin.
            if row.iter().all(|w| *w == 0.0) {
                let k = (centre * params.fft_size as f32 / params.sample_rate_hz as f32).round();
                row[(k as usize).min(bins - 1)] = 1.0;
            }
            row
        })
        .collect()
}

/// dB of a power, floored at -200 dB.
pub fn db(power: f64) -> f32 {
    (10.0 * power.max(1e-20).log10()) as f32
}

type FftPlan = Arc<dyn Fft<f32>>;

/// Envelope spectrum: the magnitude spectrum of the (mean-removed) Hilbert envelope of the signal above
/// `highpass_hz`. Returns amplitude per bin of an `n`-point transform (bin `k` at `k·fs/n` Hz), `k = 0..n/2`.
pub struct EnvelopeSpectrum {
    planner: FftPlanner<f32>,
    /// Length, forward and inverse plans.
    plans: Option<(usize, FftPlan, FftPlan)>,
    buf: Vec<Complex<f32>>,
}

impl Default for EnvelopeSpectrum {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvelopeSpectrum {
    pub fn new() -> Self {
        Self {
            planner: FftPlanner::new(),
            plans: None,
            buf: Vec::new(),
        }
    }

    pub fn compute(&mut self, signal: &[f32], sample_rate_hz: u32, highpass_hz: f32) -> Vec<f32> {
        let n = signal.len();
        if n < 4 {
            return vec![0.0; n / 2 + 1];
        }
        if self.plans.as_ref().is_none_or(|p| p.0 != n) {
            let fwd = self.planner.plan_fft_forward(n);
            let inv = self.planner.plan_fft_inverse(n);
            self.plans = Some((n, fwd, inv));
        }
        let Some((_, fwd, inv)) = &self.plans else {
            return Vec::new();
        };
        self.buf.clear();
        self.buf
            .extend(signal.iter().map(|&x| Complex::new(x, 0.0)));
        fwd.process(&mut self.buf);
        // Analytic signal of the high-passed part: keep positive frequencies above the cut, doubled.
        let cut = (highpass_hz * n as f32 / sample_rate_hz as f32).ceil() as usize;
        for (k, c) in self.buf.iter_mut().enumerate() {
            let positive = k >= cut.max(1) && 2 * k < n;
            let nyquist = 2 * k == n && k >= cut;
            *c = if positive {
                *c * 2.0
            } else if nyquist {
                *c
            } else {
                Complex::new(0.0, 0.0)
            };
        }
        inv.process(&mut self.buf);
        let scale = 1.0 / n as f32;
        let env: Vec<f32> = self.buf.iter().map(|c| c.norm() * scale).collect();
        let mean = env.iter().sum::<f32>() / n as f32;
        for (c, e) in self.buf.iter_mut().zip(&env) {
            *c = Complex::new(e - mean, 0.0);
        }
        fwd.process(&mut self.buf);
        self.buf[..=n / 2]
            .iter()
            .map(|c| c.norm() * scale)
            .collect()
    }
}

/// Turns slices into feature vectors: Welch PSD → log-mel band energies (dB), and the envelope spectrum →
/// log-spaced band energies (dB).
pub struct Extractor {
    pub params: FeatureParams,
    stft: Stft,
    mel: Vec<Vec<f32>>,
    envelope: EnvelopeSpectrum,
}

impl Extractor {
    pub fn new(params: &FeatureParams) -> Self {
        Self {
            stft: Stft::new(params.fft_size, params.hop),
            mel: mel_filterbank(params),
            envelope: EnvelopeSpectrum::new(),
            params: params.clone(),
        }
    }

    /// Mel band energies of a PSD, in dB.
    pub fn mel_db(&self, psd: &[f32]) -> Vec<f32> {
        self.mel
            .iter()
            .map(|row| {
                db(row
                    .iter()
                    .zip(psd)
                    .map(|(w, p)| f64::from(*w) * f64::from(*p))
                    .sum())
            })
            .collect()
    }

    /// The feature vector of one slice (`params.len()` values).
    pub fn features(&mut self, signal: &[f32]) -> Vec<f32> {
        let p = &self.params;
        let psd = self.stft.welch(signal, p.sample_rate_hz);
        let mut out = self.mel_db(&psd);
        let env = self
            .envelope
            .compute(signal, p.sample_rate_hz, p.envelope_highpass_hz);
        let n = signal.len().max(1);
        let ratio = p.envelope_max_hz / p.envelope_min_hz;
        for b in 0..p.envelope_bands {
            let edge = |i: usize| {
                p.envelope_min_hz * ratio.powf(i as f32 / p.envelope_bands as f32) * n as f32
                    / p.sample_rate_hz as f32
            };
            let lo = (edge(b).floor() as usize).min(env.len() - 1);
            let hi = (edge(b + 1).ceil() as usize).clamp(lo + 1, env.len());
            let power: f64 = env[lo..hi]
                .iter()
                .map(|a| f64::from(*a) * f64::from(*a))
                .sum();
            out.push(db(power));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn tone(freq_hz: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amp * (std::f64::consts::TAU * freq_hz * i as f64 / f64::from(rate)).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn a_tone_lands_in_its_bin_with_its_power() {
        let rate = 48_000;
        let mut stft = Stft::new(1024, 512);
        // 1500 Hz is exactly bin 32 of a 1024-point FFT at 48 kHz.
        let psd = stft.welch(&tone(1500.0, rate, 48_000, 1.0), rate);
        let peak = (0..psd.len())
            .max_by(|&a, &b| psd[a].total_cmp(&psd[b]))
            .unwrap();
        assert_eq!(peak, 32);
        // Total power of a unit sine is 0.5 V²: the PSD integrates to it.
        let df = rate as f64 / 1024.0;
        let total: f64 = psd.iter().map(|p| f64::from(*p) * df).sum();
        assert!((total - 0.5).abs() < 0.01, "integrated power {total}");
    }

    #[test]
    fn white_noise_is_flat_at_its_variance_over_half_the_rate() {
        let rate = 48_000;
        let mut rng = Rng::new(3);
        let noise: Vec<f32> = (0..480_000).map(|_| rng.normal() as f32).collect();
        let psd = Stft::new(1024, 512).welch(&noise, rate);
        let expected = 2.0 / rate as f32; // σ² = 1 spread over 0..fs/2, one-sided
        let inner = &psd[4..psd.len() - 4];
        let mean = inner.iter().sum::<f32>() / inner.len() as f32;
        assert!(
            (mean / expected - 1.0).abs() < 0.03,
            "mean {mean} vs {expected}"
        );
        // 936 averaged segments: each bin within ±25% of the level.
        for (k, p) in inner.iter().enumerate() {
            assert!((p / expected - 1.0).abs() < 0.25, "bin {} at {p}", k + 4);
        }
    }

    #[test]
    fn the_envelope_spectrum_finds_the_impact_rate() {
        // A 4 kHz carrier struck 100 times a second, each strike decaying in ~1 ms: a bearing-type fault. The
        // carrier is far above the envelope band; the strike rate and its harmonics are what the envelope shows.
        let rate = 48_000;
        let n = 24_000;
        let signal: Vec<f32> = (0..n)
            .map(|i| {
                let since = (i % 480) as f64 / f64::from(rate);
                let carrier = (std::f64::consts::TAU * 4000.0 * i as f64 / f64::from(rate)).sin();
                ((-since / 0.001).exp() * carrier) as f32
            })
            .collect();
        let env = EnvelopeSpectrum::new().compute(&signal, rate, 1000.0);
        let bin = |hz: f32| (hz * n as f32 / rate as f32) as usize;
        let band = &env[bin(20.0)..bin(300.0)];
        let mut sorted = band.to_vec();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        let max = sorted[sorted.len() - 1];
        for hz in [100.0, 200.0] {
            assert!(
                env[bin(hz)] > 0.5 * max,
                "{hz} Hz: {} vs max {max}",
                env[bin(hz)]
            );
            assert!(
                env[bin(hz)] > 100.0 * median,
                "{hz} Hz: {} vs median {median}",
                env[bin(hz)]
            );
        }
        // Nothing between the harmonics.
        assert!(env[bin(150.0)] < 0.01 * max);
    }

    #[test]
    fn mel_bands_cover_the_range_and_a_tone_lights_one_band() {
        let params = FeatureParams::for_rate(48_000);
        assert!(params.problems().is_empty(), "{:?}", params.problems());
        let bank = mel_filterbank(&params);
        assert_eq!(bank.len(), 40);
        let mut ex = Extractor::new(&params);
        let f = ex.features(&tone(3000.0, 48_000, 12_000, 1.0));
        assert_eq!(f.len(), params.len());
        let loudest = (0..40).max_by(|&a, &b| f[a].total_cmp(&f[b])).unwrap();
        let centre = |b: usize| {
            let row = &bank[b];
            let k = (0..row.len())
                .max_by(|&x, &y| row[x].total_cmp(&row[y]))
                .unwrap();
            bin_hz(k, params.fft_size, 48_000)
        };
        assert!(
            (centre(loudest) - 3000.0).abs() < 300.0,
            "band {loudest} at {} Hz",
            centre(loudest)
        );
    }
}
