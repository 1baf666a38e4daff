//! `station generate-sounds`: writes the synthetic machine's part slices as WAV files (normal/ and anomalous/),
//! for training and evaluating acoustic models and for replay (`[audio] kind = "wav"` with a folder).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::audio::synthetic::{SyntheticSoundParams, clip};
use crate::audio::wav;

pub fn generate(
    out: &Path,
    count: u64,
    params: &SyntheticSoundParams,
    pre_ms: u64,
    post_ms: u64,
    sample_rate_hz: u32,
) -> anyhow::Result<()> {
    let (mut normal, mut anomalous) = (0, 0);
    for dir in ["normal", "anomalous"] {
        std::fs::create_dir_all(out.join(dir))
            .with_context(|| format!("cannot create {}", out.join(dir).display()))?;
    }
    for seq in 1..=count {
        let (samples, truth) = clip(
            params,
            seq,
            sample_rate_hz,
            Duration::from_millis(pre_ms),
            Duration::from_millis(post_ms),
        );
        let path = if truth == "normal" {
            normal += 1;
            out.join(format!("normal/part-{seq:06}.wav"))
        } else {
            anomalous += 1;
            out.join(format!("anomalous/part-{seq:06}-{truth}.wav"))
        };
        wav::write(&path, &samples, sample_rate_hz)?;
    }
    println!(
        "wrote {normal} normal and {anomalous} anomalous part sounds ({} ms at {sample_rate_hz} Hz) into {}",
        pre_ms + post_ms,
        out.display()
    );
    Ok(())
}
