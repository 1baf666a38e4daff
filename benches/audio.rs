//! Criterion benches of the acoustic path: the demo model at 48 kHz (Welch PSD → log-mel, envelope spectrum, the
//! Mahalanobis score) on one second of the demo machine's sound and on one demo part slice (45 ms); then every
//! detector `station train audio` compares, trained on the machine's normal sound, scoring 10 s clips at 16 and
//! 48 kHz. The real-time factor is seconds of audio per CPU second on one core (criterion's throughput in
//! samples per second divided by the rate), printed at the end of a `cargo bench` run.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use inspection_station::acoustic::AcousticModel;
use inspection_station::acoustic::scoring::Scorer;
use inspection_station::acoustic::select::{self, Candidate, Clip, SelectOptions};
use inspection_station::audio::synthetic::{Machine, SyntheticSoundParams, clip};

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

/// One detector trained on 20 clips of 2 s of the machine's normal sound at `rate`.
fn trained(candidate: Candidate, rate: u32) -> Scorer {
    let mut machine = Machine::new(4, rate);
    let sounds: Vec<Vec<f32>> = (0..20)
        .map(|k| {
            let mut out = vec![0f32; 2 * rate as usize];
            machine.render(k * 2 * u64::from(rate), &mut out);
            out
        })
        .collect();
    let clips: Vec<Clip> = sounds
        .iter()
        .enumerate()
        .map(|(k, s)| Clip {
            recording: k,
            condition: None,
            samples: s,
        })
        .collect();
    let opts = SelectOptions {
        candidates: vec![candidate],
        seed: 1,
        ..SelectOptions::for_rate(rate)
    };
    let selected = select::select(&clips, &[], &opts).unwrap_or_else(|e| panic!("{e}"));
    Scorer::new(selected.scoring, &opts.features)
}

fn detectors(c: &mut Criterion) {
    let bench_run = std::env::args().any(|a| a == "--bench");
    let mut rtf = Vec::new();
    for rate in [16_000u32, 48_000] {
        let mut machine = Machine::new(9, rate);
        let mut clip_10s = vec![0f32; 10 * rate as usize];
        machine.render(0, &mut clip_10s);
        let mut group = c.benchmark_group(format!("detectors, 10 s clips at {} kHz", rate / 1000));
        group.throughput(Throughput::Elements(clip_10s.len() as u64));
        for candidate in Candidate::ALL {
            let mut scorer = trained(candidate, rate);
            group.bench_function(candidate.name(), |b| {
                b.iter(|| scorer.score(&clip_10s, None))
            });
            if bench_run {
                let (start, mut audio_s) = (Instant::now(), 0.0);
                while start.elapsed() < Duration::from_millis(500) {
                    std::hint::black_box(scorer.score(&clip_10s, None));
                    audio_s += 10.0;
                }
                rtf.push(format!(
                    "{:>16} at {} kHz: {:.0}x real time (one core)",
                    candidate.name(),
                    rate / 1000,
                    audio_s / start.elapsed().as_secs_f64()
                ));
            }
        }
        group.finish();
    }
    for line in rtf {
        println!("{line}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = acoustic, detectors
}
criterion_main!(benches);
