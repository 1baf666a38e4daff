//! Synthetic anomalies made from normal sound: what training validates its choice of detector on when no
//! anomalous recordings are given, and the stress set that checks detection in factory noise.
//!
//! The changes are the subtle ones of real machines: a faint tone that should not be there (a whine, -20 dB
//! against the sound), a changed rhythm (the sound's loudness pulsing ±30% three times a second), and a short
//! rub (high-frequency noise, -15 dB, for a fifth of the clip). [`mix`] adds factory noise at a given SNR.

use std::f32::consts::TAU;

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Tone,
    Rhythm,
    Rub,
}

impl Change {
    pub const ALL: [Change; 3] = [Change::Tone, Change::Rhythm, Change::Rub];

    pub fn name(self) -> &'static str {
        match self {
            Change::Tone => "tone",
            Change::Rhythm => "rhythm",
            Change::Rub => "rub",
        }
    }
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// `sound` with one change; `seed` picks the tone's frequency and the rub's place.
pub fn apply(sound: &[f32], rate_hz: u32, change: Change, seed: u64) -> Vec<f32> {
    apply_scaled(sound, rate_hz, change, seed, 1.0)
}

/// [`apply`] with the change's amplitude scaled by `scale` (0.5: 6 dB fainter, the rhythm half as deep).
pub fn apply_scaled(
    sound: &[f32],
    rate_hz: u32,
    change: Change,
    seed: u64,
    scale: f32,
) -> Vec<f32> {
    let mut rng = Rng::new(seed ^ 0x5EED_0F57_E5E5);
    let level = rms(sound).max(1e-6);
    let rate = rate_hz as f32;
    match change {
        Change::Tone => {
            let f = rng.range(0.05, 0.35) as f32 * rate;
            let amp = scale * level * 0.1 * std::f32::consts::SQRT_2;
            sound
                .iter()
                .enumerate()
                .map(|(i, x)| x + amp * (TAU * f * i as f32 / rate).sin())
                .collect()
        }
        Change::Rhythm => sound
            .iter()
            .enumerate()
            .map(|(i, x)| x * (1.0 + scale * 0.3 * (TAU * 3.0 * i as f32 / rate).sin()))
            .collect(),
        Change::Rub => {
            let len = sound.len() / 5;
            let start = rng.int(0, (sound.len() - len) as i32) as usize;
            let amp = scale * level * 10f32.powf(-15.0 / 20.0);
            let mut prev = 0.0f32;
            let mut out = sound.to_vec();
            for y in &mut out[start..start + len] {
                let n = rng.normal() as f32;
                *y += amp * (n - prev) / std::f32::consts::SQRT_2;
                prev = n;
            }
            out
        }
    }
}

/// `sound + noise` with the noise scaled to `snr_db` below the sound (the noise repeats if shorter).
pub fn mix(sound: &[f32], noise: &[f32], snr_db: f32) -> Vec<f32> {
    let gain = rms(sound) / rms(noise).max(1e-9) * 10f32.powf(-snr_db / 20.0);
    sound
        .iter()
        .enumerate()
        .map(|(i, x)| x + gain * noise[i % noise.len().max(1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_subtle_and_noise_lands_at_its_snr() {
        let sound: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.05).sin()).collect();
        let level = rms(&sound);
        for change in Change::ALL {
            let changed = apply(&sound, 16_000, change, 1);
            let diff: Vec<f32> = changed.iter().zip(&sound).map(|(a, b)| a - b).collect();
            let rel_db = 20.0 * (rms(&diff) / level).log10();
            assert!(
                (-30.0..-9.0).contains(&rel_db),
                "{}: {rel_db} dB",
                change.name()
            );
        }
        let noise: Vec<f32> = (0..4000)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mixed = mix(&sound, &noise, -6.0);
        let added: Vec<f32> = mixed.iter().zip(&sound).map(|(a, b)| a - b).collect();
        let snr = 20.0 * (level / rms(&added)).log10();
        assert!((snr + 6.0).abs() < 0.1, "{snr}");
    }
}
