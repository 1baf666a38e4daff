//! The demo's synthetic machine sound: a motor hum (100 Hz with harmonics and a slow speed wobble), a gear-mesh
//! tone and broadband noise; on some parts an anomaly while the part is being worked (from its trigger to
//! `post_ms` after it): periodic impacts (a cracked tooth or a bearing defect), a rub (high-frequency noise), or a
//! whine (a tone that should not be there).
//!
//! Which parts are anomalous, and how, is a pure function of `(seed, part seq)` ([`part_anomaly`]), so the demo's
//! truth is known and a run's acoustic detection can be reported. [`clip`] renders one part's window as a file
//! would hold it, for training and evaluating models on the same sound.

use std::f64::consts::TAU;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{AudioError, AudioSource, PartHook, Ring, TruthHook, run_paced};
use crate::part::Seq;
use crate::rng::Rng;

/// `[audio] kind = "synthetic"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSoundParams {
    pub seed: u64,
    /// Fraction of parts with an acoustic anomaly.
    pub anomaly_fraction: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundAnomaly {
    Impacts,
    Rub,
    Whine,
}

impl SoundAnomaly {
    pub fn name(self) -> &'static str {
        match self {
            SoundAnomaly::Impacts => "impacts",
            SoundAnomaly::Rub => "rub",
            SoundAnomaly::Whine => "whine",
        }
    }
}

fn part_seed(seed: u64, seq: Seq) -> u64 {
    seed ^ seq.wrapping_mul(0x9FB2_1C65_1E98_DF25) ^ 0x5EED_A0D1
}

/// The anomaly part `seq` makes, if any.
pub fn part_anomaly(params: &SyntheticSoundParams, seq: Seq) -> Option<SoundAnomaly> {
    let mut rng = Rng::new(part_seed(params.seed, seq));
    (rng.unit() < params.anomaly_fraction).then(|| match rng.int(0, 2) {
        0 => SoundAnomaly::Impacts,
        1 => SoundAnomaly::Rub,
        _ => SoundAnomaly::Whine,
    })
}

/// `"normal"` or the anomaly's name.
pub fn truth(params: &SyntheticSoundParams, seq: Seq) -> &'static str {
    part_anomaly(params, seq).map_or("normal", SoundAnomaly::name)
}

/// The machine's normal sound, rendered sample by sample from an absolute index.
pub struct Machine {
    rate: f64,
    noise: Rng,
    f0_hz: f64,
}

impl Machine {
    pub fn new(seed: u64, sample_rate_hz: u32) -> Self {
        let mut noise = Rng::new(seed ^ 0xA5A5_0F0F);
        let f0_hz = 100.0 + noise.range(-0.5, 0.5);
        Self {
            rate: f64::from(sample_rate_hz),
            noise,
            f0_hz,
        }
    }

    /// Fills `out` with samples `first..first + out.len()`.
    pub fn render(&mut self, first: u64, out: &mut [f32]) {
        const WOBBLE_HZ: f64 = 0.3;
        const WOBBLE: f64 = 0.004;
        for (j, y) in out.iter_mut().enumerate() {
            let t = (first + j as u64) as f64 / self.rate;
            // Phase of a hum whose frequency wobbles by ±0.4% around f0.
            let phase =
                TAU * self.f0_hz * (t - WOBBLE / (TAU * WOBBLE_HZ) * (TAU * WOBBLE_HZ * t).cos());
            let hum: f64 = (1..=6)
                .map(|k| 0.25 / k as f64 * (k as f64 * phase).sin())
                .sum();
            let gear = 0.04 * (14.0 * phase).sin() * (1.0 + 0.3 * (phase / 7.0).sin());
            *y = (hum + gear + 0.02 * self.noise.normal()) as f32;
        }
    }
}

/// Sample `j` (counted from the anomaly's start) of an anomaly.
fn anomaly_sample(kind: SoundAnomaly, seed: u64, j: u64, rate: f64) -> f64 {
    let t = j as f64 / rate;
    match kind {
        SoundAnomaly::Impacts => {
            // 37 strikes a second, each a 3.2 kHz ring decaying in 0.8 ms.
            let since = t % (1.0 / 37.0);
            0.3 * (-since / 0.0008).exp() * (TAU * 3200.0 * since).sin()
        }
        SoundAnomaly::Rub => {
            // Differenced white noise (rises with frequency), swelling 25 times a second.
            let n = |i: u64| Rng::new(seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93)).normal();
            0.05 * (n(j + 1) - n(j)) * (0.6 + 0.4 * (TAU * 25.0 * t).sin())
        }
        SoundAnomaly::Whine => 0.04 * (TAU * 2300.0 * t).sin(),
    }
}

/// Adds an anomaly that starts at absolute sample `anomaly_start` and lasts `anomaly_len` samples to `out`, which
/// holds samples from `first`.
fn add_anomaly(
    kind: SoundAnomaly,
    seed: u64,
    rate: f64,
    anomaly_start: u64,
    anomaly_len: u64,
    first: u64,
    out: &mut [f32],
) {
    let from = anomaly_start.max(first);
    let to = (anomaly_start + anomaly_len).min(first + out.len() as u64);
    for i in from..to {
        out[(i - first) as usize] += anomaly_sample(kind, seed, i - anomaly_start, rate) as f32;
    }
}

/// One part's window as a recording would hold it: `pre` of normal sound, then `post` during which the part's
/// anomaly (if any) sounds. Returns the samples and the truth.
pub fn clip(
    params: &SyntheticSoundParams,
    seq: Seq,
    sample_rate_hz: u32,
    pre: Duration,
    post: Duration,
) -> (Vec<f32>, &'static str) {
    let rate = f64::from(sample_rate_hz);
    let (pre_n, post_n) = (
        (pre.as_secs_f64() * rate) as u64,
        (post.as_secs_f64() * rate) as u64,
    );
    // Each clip starts at its own point of the machine's cycle.
    let first = part_seed(params.seed, seq) % (sample_rate_hz as u64 * 600);
    let mut out = vec![0f32; (pre_n + post_n) as usize];
    Machine::new(part_seed(params.seed, seq), sample_rate_hz).render(first, &mut out);
    if let Some(kind) = part_anomaly(params, seq) {
        let lead = (rate / 1000.0) as u64; // the anomaly starts 1 ms after the trigger, as live
        add_anomaly(
            kind,
            part_seed(params.seed, seq),
            rate,
            first + pre_n + lead,
            post_n.saturating_sub(lead),
            first,
            &mut out,
        );
    }
    (out, truth(params, seq))
}

/// A part the live source was told about: its trigger's sample index.
#[derive(Clone, Copy)]
struct Mark {
    seq: Seq,
    at_index: u64,
}

/// The live synthetic source: the machine runs continuously; each marked part's anomaly sounds from 1 ms after
/// its trigger to `post` after it. Rendered 30 ms behind real time, like a sound card's buffer, so a trigger
/// reported a little late still gets its whole anomaly.
pub struct SyntheticSound {
    params: SyntheticSoundParams,
    sample_rate_hz: u32,
    post: Duration,
    epoch: Instant,
    marks: Arc<Mutex<Vec<Mark>>>,
}

impl SyntheticSound {
    pub const LATENCY: Duration = Duration::from_millis(30);

    pub fn new(params: SyntheticSoundParams, sample_rate_hz: u32, post: Duration) -> Self {
        Self {
            params,
            sample_rate_hz,
            post,
            epoch: Instant::now(),
            marks: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl AudioSource for SyntheticSound {
    fn describe(&self) -> String {
        format!(
            "synthetic machine sound (seed {}, {:.0}% anomalous parts) at {} Hz",
            self.params.seed,
            self.params.anomaly_fraction * 100.0,
            self.sample_rate_hz
        )
    }

    fn sample_rate_hz(&self) -> u32 {
        self.sample_rate_hz
    }

    fn part_hook(&self) -> Option<PartHook> {
        let (marks, epoch, rate) = (self.marks.clone(), self.epoch, self.sample_rate_hz);
        Some(Arc::new(move |seq, at| {
            let at_index =
                (at.saturating_duration_since(epoch).as_secs_f64() * f64::from(rate)) as u64;
            marks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Mark { seq, at_index });
        }))
    }

    fn truth_hook(&self) -> Option<TruthHook> {
        let params = self.params.clone();
        Some(Arc::new(move |seq| truth(&params, seq).to_string()))
    }

    fn run(
        self: Box<Self>,
        ring: Arc<Ring>,
        stop: Arc<AtomicBool>,
        ready: SyncSender<Result<(), AudioError>>,
    ) {
        let _ = ready.send(Ok(()));
        let rate = f64::from(self.sample_rate_hz);
        let lead = (rate / 1000.0) as u64;
        let post_n = (self.post.as_secs_f64() * rate) as u64;
        let mut machine = Machine::new(self.params.seed, self.sample_rate_hz);
        run_paced(&ring, &stop, self.epoch, Self::LATENCY, |first, out| {
            machine.render(first, out);
            let end = first + out.len() as u64;
            let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
            for m in marks.iter() {
                if let Some(kind) = part_anomaly(&self.params, m.seq) {
                    let seed = part_seed(self.params.seed, m.seq);
                    let len = post_n.saturating_sub(lead);
                    add_anomaly(kind, seed, rate, m.at_index + lead, len, first, out);
                }
            }
            marks.retain(|m| m.at_index + post_n > end);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomalies_are_a_function_of_seed_and_part() {
        let params = SyntheticSoundParams {
            seed: 5,
            anomaly_fraction: 0.25,
        };
        let truths: Vec<&str> = (1..=400).map(|s| truth(&params, s)).collect();
        let anomalous = truths.iter().filter(|t| **t != "normal").count();
        assert!((70..=130).contains(&anomalous), "{anomalous} of 400");
        for kind in ["impacts", "rub", "whine"] {
            assert!(truths.contains(&kind), "no {kind}");
        }
        assert_eq!(
            truths,
            (1..=400).map(|s| truth(&params, s)).collect::<Vec<_>>()
        );
        let (a, ta) = clip(
            &params,
            7,
            48_000,
            Duration::from_millis(5),
            Duration::from_millis(40),
        );
        let (b, tb) = clip(
            &params,
            7,
            48_000,
            Duration::from_millis(5),
            Duration::from_millis(40),
        );
        assert_eq!((a.len(), ta), (2160, tb));
        assert_eq!(a, b);
    }
}
