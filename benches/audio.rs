//! Criterion benches of the acoustic path at 48 kHz: features (Welch PSD → log-mel, envelope spectrum) plus the
//! Mahalanobis score, on one second of the demo machine's sound and on one demo part slice (45 ms). The
//! real-time factor is seconds of audio per CPU second on one core: criterion's throughput in elements (samples)
//! per second divided by 48 000, also printed at the end.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use inspection_station::acoustic::AcousticModel;
use inspection_station::audio::synthetic::{SyntheticSoundParams, clip};

const RATE: u32 = 48_000;

fn sound(ms: u64) -> Vec<f32> {
    let params = SyntheticSoundParams {
        seed: 1,
        anomaly_fraction: 0.0,
    };
    clip(&params, 1, RATE, Duration::ZERO, Duration::from_millis(ms)).0
}

fn acoustic(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/machine-sound/1");
    let mut model = AcousticModel::load(&dir, None).unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("acoustic features + score at 48 kHz");
    for ms in [1000u64, 45] {
        let samples = sound(ms);
        group.throughput(Throughput::Elements(samples.len() as u64));
        group.bench_function(format!("{ms} ms of audio"), |b| {
            b.iter(|| model.score(&samples))
        });
    }
    group.finish();

    // The real-time factor, measured directly over ~2 s of scoring (benchmark runs only, not `cargo test`).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for ms in [1000u64, 45] {
        let samples = sound(ms);
        let (start, mut audio_s) = (Instant::now(), 0.0);
        while start.elapsed() < Duration::from_secs(2) {
            std::hint::black_box(model.score(&samples));
            audio_s += ms as f64 / 1000.0;
        }
        println!(
            "real-time factor, {ms} ms slices: {:.0} s of audio per CPU second (one core)",
            audio_s / start.elapsed().as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = acoustic
}
criterion_main!(benches);
