//! Acoustic anomaly detection on real data and real parts: CWRU bearing recordings (AUC), features against a
//! numpy/scipy peer, the pipeline with synthetic and replayed sound (verdicts, records, spectrograms), the CLI's
//! train/evaluate, and capture through `cpal` from a PulseAudio null sink.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use inspection_station::acoustic::{self, evaluate, windows};
use inspection_station::audio::features::{EnvelopeSpectrum, Extractor, FeatureParams, Stft};
use inspection_station::audio::synthetic::{SyntheticSoundParams, clip};
use inspection_station::audio::{Capture, cpal::Microphone, wav};

use crate::common::{python, root, run, shared_data, station};

fn cwru(name: &str) -> Vec<f32> {
    wav::read_at(&shared_data("cwru").join(name), 0, 48_000).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn cwru_bearing_faults_are_told_from_the_healthy_bearing_with_auc_at_least_0_99() {
    const WINDOW: usize = 12_000; // 0.25 s at 48 kHz
    let healthy = cwru("48k_normal_0_97.wav");
    // Train on the first 60% of the healthy recording (overlapping windows), evaluate on the rest.
    let split = healthy.len() * 6 / 10;
    let params = FeatureParams::for_rate(48_000);
    let mut ex = Extractor::new(&params);
    let train: Vec<Vec<f32>> = windows(&healthy[..split], WINDOW, 2_400)
        .into_iter()
        .map(|w| ex.features(w))
        .collect();
    let model = acoustic::train(&train, 1.25).unwrap();
    let score = |ex: &mut Extractor, w: &[f32]| model.gaussian.score(&ex.features(w));
    let normal: Vec<f32> = windows(&healthy[split..], WINDOW, WINDOW / 2)
        .into_iter()
        .map(|w| score(&mut ex, w))
        .collect();
    let mut faults = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(shared_data("cwru")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.contains("Drive_End") {
            files += 1;
            for w in windows(&cwru(&name), WINDOW, WINDOW) {
                faults.push(score(&mut ex, w));
            }
        }
    }
    assert_eq!(files, 13, "the 13 CWRU fault recordings");
    let roc = evaluate::roc(&normal, &faults);
    let auc = evaluate::partial_auc(&roc, 1.0);
    let pauc = evaluate::partial_auc(&roc, 0.1);
    let caught = faults.iter().filter(|s| **s > model.threshold).count();
    let false_alarms = normal.iter().filter(|s| **s > model.threshold).count();
    println!(
        "CWRU: {} training, {} held-out healthy and {} fault windows of 0.25 s: AUC {auc:.4}, pAUC(FPR<=0.1) {pauc:.4}; \
         at the trained threshold {:.3}: {caught}/{} faults, {false_alarms}/{} false alarms",
        train.len(),
        normal.len(),
        faults.len(),
        model.threshold,
        faults.len(),
        normal.len()
    );
    assert!(normal.len() >= 10 && faults.len() >= 100);
    assert!(auc >= 0.99, "AUC {auc}");
}

#[test]
fn welch_psd_and_envelope_spectrum_match_scipy_on_a_real_recording() {
    let dir = tempfile::tempdir().unwrap();
    let samples = &cwru("48k_Drive_End_IR007_0_109.wav")[..24_000];
    let path = dir.path().join("ir007.wav");
    wav::write(&path, samples, 48_000).unwrap();
    let out = Command::new(python())
        .arg(root().join("tests/peers/audio_reference.py"))
        .args([path.to_str().unwrap(), "1024", "512", "1000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audio_reference.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vec = |k: &str| -> Vec<f64> {
        reference[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let close = |name: &str, ours: &[f32], theirs: &[f64]| {
        assert_eq!(ours.len(), theirs.len(), "{name}: length");
        let peak = theirs.iter().copied().fold(0.0, f64::max);
        for (k, (a, b)) in ours.iter().zip(theirs).enumerate() {
            // f32 against f64: relative 1e-3 where there is power, absolute 1e-5 of the peak elsewhere.
            let err = (f64::from(*a) - b).abs();
            assert!(
                err <= 1e-3 * b.abs() + 1e-5 * peak,
                "{name} bin {k}: ours {a}, scipy {b}"
            );
        }
    };
    close(
        "welch",
        &Stft::new(1024, 512).welch(samples, 48_000),
        &vec("welch"),
    );
    close(
        "envelope",
        &EnvelopeSpectrum::new().compute(samples, 48_000, 1000.0),
        &vec("envelope"),
    );
}

/// Part sounds as files: `dir/normal/*.wav`, `dir/anomalous/*-<kind>.wav` via the CLI's generator.
fn station_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_station"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn train_audio_and_evaluate_audio_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    ok(&station_cmd(&[
        "generate-sounds",
        "--out",
        &d("train"),
        "--count",
        "60",
        "--seed",
        "3",
        "--anomaly-fraction",
        "0",
    ]));
    ok(&station_cmd(&[
        "generate-sounds",
        "--out",
        &d("test"),
        "--count",
        "60",
        "--seed",
        "4",
        "--anomaly-fraction",
        "0.4",
    ]));
    let trained = ok(&station_cmd(&[
        "train",
        "audio",
        "--normal",
        &d("train/normal"),
        "--name",
        "fan",
        "--out",
        &d("models"),
        "--window-ms",
        "45",
    ]));
    assert!(
        trained.contains("trained fan v1: ") && trained.contains(" on 60 normal clips of 45 ms"),
        "{trained}"
    );
    let manifest = std::fs::read_to_string(dir.path().join("models/fan/1/manifest.toml")).unwrap();
    assert!(
        manifest.contains("kind = \"acoustic\"") && manifest.contains("[threshold]"),
        "{manifest}"
    );
    let evaluated = ok(&station_cmd(&[
        "evaluate",
        "audio",
        "--model",
        &d("models/fan/1"),
        "--normal",
        &d("test/normal"),
        "--anomalous",
        &d("test/anomalous"),
        "--out",
        &d("eval"),
    ]));
    assert!(evaluated.contains("clip AUC 1.0000"), "{evaluated}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("eval/report.json")).unwrap(),
    )
    .unwrap();
    assert!(report["pauc_fpr_0_1"].as_f64().unwrap() > 0.99, "{report}");
    for f in [
        "roc.svg",
        "roc.png",
        "histogram.svg",
        "histogram.png",
        "clips.csv",
        "spectrogram-anomalous-lowest.png",
        "spectrogram-normal-highest.png",
    ] {
        assert!(
            dir.path().join("eval").join(f).metadata().unwrap().len() > 500,
            "{f}"
        );
    }
    // A second training gets the next version; a changed model file is refused.
    ok(&station_cmd(&[
        "train",
        "audio",
        "--normal",
        &d("train/normal"),
        "--name",
        "fan",
        "--out",
        &d("models"),
        "--window-ms",
        "45",
    ]));
    std::fs::write(dir.path().join("models/fan/2/model.json"), "{}").unwrap();
    let out = station_cmd(&[
        "evaluate",
        "audio",
        "--model",
        &d("models/fan/2"),
        "--normal",
        &d("test/normal"),
        "--anomalous",
        &d("test/anomalous"),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("model.json: sha256 is"));
}

/// A part's acoustic columns.
struct Heard {
    truth: Option<String>,
    score: Option<f64>,
    model: Option<String>,
    spectrogram: Option<String>,
    reasons: Vec<String>,
    verdict: String,
    result_code: u16,
}

fn heard(config: &inspection_station::config::Config) -> Vec<Heard> {
    let rows = crate::common::rows(config);
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT acoustic_truth, acoustic_score, acoustic_model_name || ' v' || acoustic_model_version,
                    spectrogram_path FROM parts ORDER BY seq",
        )
        .unwrap();
    type Extra = (Option<String>, Option<f64>, Option<String>, Option<String>);
    let extra: Vec<Extra> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.into_iter()
        .zip(extra)
        .map(|(row, (truth, score, model, spectrogram))| Heard {
            truth,
            score,
            model,
            spectrogram,
            reasons: row.reason_codes(),
            verdict: row.verdict,
            result_code: row.result_code,
        })
        .collect()
}

fn demo_sound_model() -> String {
    root().join("models/machine-sound/1").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_rejects_the_parts_that_sound_wrong_and_keeps_their_spectrogram() {
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            r#"
            [trigger]
            kind = "interval"
            interval_ms = 100
            [source]
            kind = "synthetic"
            seed = 3
            defect_fraction = 0.0
            [plc]
            kind = "simulated"
            [audio]
            kind = "synthetic"
            seed = 8
            anomaly_fraction = 0.3
            pre_ms = 5
            post_ms = 40
            model_dir = "{}"
            "#,
            demo_sound_model()
        ),
    );
    let summary = run(&config, Some(40)).await;
    let acoustic = summary.acoustic.clone().expect("acoustic figures");
    let heard = heard(&config);
    assert_eq!(heard.len(), 40);
    let fail_safe = |h: &Heard| {
        h.reasons
            .iter()
            .any(|r| r == "deadline_missed" || r == "pipeline_overloaded")
    };
    let anomalous = heard
        .iter()
        .filter(|h| !fail_safe(h) && h.truth.as_deref() != Some("normal"))
        .count();
    assert!(
        anomalous >= 5,
        "the run needs anomalous sounds, got {anomalous}"
    );
    for (i, h) in heard.iter().enumerate() {
        if fail_safe(h) {
            continue; // a loaded machine may miss a deadline: fail-safe, not the point here
        }
        assert_eq!(h.model.as_deref(), Some("machine-sound v1"));
        let score = h.score.expect("acoustic score recorded");
        match h.truth.as_deref() {
            Some("normal") => assert_eq!(h.verdict, "PASS", "part {} scored {score}", i + 1),
            Some(kind) => {
                assert_eq!(
                    h.verdict,
                    "REJECT",
                    "part {} ({kind}) scored {score}",
                    i + 1
                );
                assert_eq!(h.reasons, ["acoustic_score_over_threshold"]);
                assert_eq!(h.result_code, 3);
                let png = config
                    .station
                    .data_dir
                    .join(h.spectrogram.as_deref().expect("spectrogram"));
                assert!(png.to_string_lossy().ends_with(".spectrogram.png"));
                assert!(png.metadata().unwrap().len() > 1000);
            }
            None => panic!("part {} has no acoustic truth", i + 1),
        }
    }
    assert!(
        acoustic.detection.defective >= anomalous as u64,
        "{summary}"
    );
    assert_eq!(
        acoustic.detection.defective, acoustic.detection.defective_rejected,
        "{summary}"
    );
    assert_eq!(acoustic.detection.good_rejected, 0, "{summary}");
    assert!(
        summary.to_string().contains("anomalous sounds rejected"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sounds_replayed_one_file_per_part_get_their_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let sounds = dir.path().join("sounds");
    std::fs::create_dir_all(&sounds).unwrap();
    let params = SyntheticSoundParams {
        seed: 12,
        anomaly_fraction: 0.4,
    };
    let mut truths = Vec::new();
    for seq in 1..=20 {
        let (samples, truth) = clip(
            &params,
            seq,
            48_000,
            Duration::from_millis(5),
            Duration::from_millis(40),
        );
        wav::write(&sounds.join(format!("{seq:03}.wav")), &samples, 48_000).unwrap();
        truths.push(truth);
    }
    let config = station(
        dir.path(),
        &format!(
            r#"
            [trigger]
            kind = "interval"
            interval_ms = 100
            [source]
            kind = "synthetic"
            defect_fraction = 0.0
            [plc]
            kind = "off"
            [audio]
            kind = "wav"
            path = "sounds"
            pre_ms = 5
            post_ms = 40
            model_dir = "{}"
            "#,
            demo_sound_model()
        ),
    );
    let summary = run(&config, Some(20)).await;
    assert_eq!(summary.parts, 20);
    for (h, truth) in heard(&config).iter().zip(&truths) {
        let expected = if *truth == "normal" { "PASS" } else { "REJECT" };
        if h.reasons.iter().any(|r| r == "pipeline_overloaded") {
            continue; // a loaded machine: fail-safe, not the point here
        }
        assert_eq!(
            h.verdict, expected,
            "{truth} scored {:?}: {:?}",
            h.score, h.reasons
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_audio_device_the_station_refuses_to_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let sections = |required: bool| {
        format!(
            r#"
            [plc]
            kind = "off"
            [audio]
            kind = "microphone"
            device = "no-such-capture-device"
            post_ms = 40
            model_dir = "{}"
            required = {required}
            "#,
            demo_sound_model()
        )
    };
    let config = station(dir.path(), &sections(true));
    let err =
        inspection_station::pipeline::run(&config, Default::default(), std::future::pending())
            .await
            .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("no audio input device: no-such-capture-device not found")
            && text.contains("required = false"),
        "{text}"
    );
    let config = station(dir.path(), &sections(false));
    let summary = run(&config, Some(5)).await;
    assert_eq!(summary.parts, 5);
    assert!(summary.acoustic.is_none());
}

/// Starts PulseAudio if needed and makes a null sink the default sink and source (its monitor).
fn null_sink(name: &str) {
    let pactl = |args: &[&str]| Command::new("pactl").args(args).output();
    let running = Command::new("pulseaudio").arg("--check").status();
    assert!(
        running.is_ok(),
        "pulseaudio is not installed: run `bash scripts/setup.sh` (pulseaudio pulseaudio-utils libasound2-plugins)"
    );
    if !running.unwrap().success() {
        // Daemonised, with no handle on the test's output (a CI log reader must not wait for it).
        let started = Command::new("pulseaudio")
            .args(["-D", "--exit-idle-time=-1"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(started.success(), "cannot start pulseaudio");
    }
    let until = Instant::now() + Duration::from_secs(10);
    while !pactl(&["info"]).unwrap().status.success() {
        assert!(Instant::now() < until, "pulseaudio does not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sinks = String::from_utf8(pactl(&["list", "short", "sinks"]).unwrap().stdout).unwrap();
    if !sinks.contains(name) {
        let out = pactl(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={name}"),
        ])
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for args in [
        ["set-default-sink", name],
        ["set-default-source", &format!("{name}.monitor")],
    ] {
        assert!(pactl(&args).unwrap().status.success(), "pactl {args:?}");
    }
}

fn play(sink: &str, path: &Path) {
    let status = Command::new("paplay")
        .args(["--device", sink, path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "paplay {}", path.display());
}

/// The loudest stretch of `n` samples in `captured` (what was played, found in what was heard).
fn loudest(captured: &[f32], n: usize) -> &[f32] {
    let hop = 480;
    let energy = |s: &[f32]| s.iter().map(|x| x * x).sum::<f32>();
    let start = (0..captured.len().saturating_sub(n) / hop)
        .max_by(|a, b| {
            energy(&captured[a * hop..a * hop + n])
                .total_cmp(&energy(&captured[b * hop..b * hop + n]))
        })
        .unwrap_or(0);
    &captured[start * hop..start * hop + n]
}

#[test]
fn sound_played_into_a_pulseaudio_null_sink_is_captured_through_cpal_and_scored() {
    const RATE: u32 = 48_000;
    let sink = "station_audio_test";
    null_sink(sink);
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start(Box::new(Microphone::new(None, RATE, 0)), 20)
        .unwrap_or_else(|e| panic!("cpal capture from the PulseAudio default source: {e}"));
    let until = Instant::now() + Duration::from_secs(10);
    while capture.ring.written() == 0 {
        assert!(Instant::now() < until, "no audio arrived within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A 1 kHz tone comes back at 1 kHz.
    let tone: Vec<f32> = (0..RATE as usize)
        .map(|i| 0.5 * (std::f64::consts::TAU * 1000.0 * i as f64 / f64::from(RATE)).sin() as f32)
        .collect();
    wav::write(&dir.path().join("tone.wav"), &tone, RATE).unwrap();
    play(sink, &dir.path().join("tone.wav"));
    std::thread::sleep(Duration::from_millis(500));
    let heard = capture.ring.latest(3 * RATE as usize);
    let psd = Stft::new(4096, 2048).welch(loudest(&heard, RATE as usize / 2), RATE);
    let peak = (0..psd.len())
        .max_by(|&a, &b| psd[a].total_cmp(&psd[b]))
        .unwrap();
    let peak_hz = peak as f32 * RATE as f32 / 4096.0;
    assert!(
        (peak_hz - 1000.0).abs() < 12.0,
        "tone heard at {peak_hz} Hz"
    );

    // The machine's normal sound, and the same with impacts: the model trained on the normal file scores the
    // captured anomaly above its threshold and the captured normal sound below the anomaly.
    let normal = SyntheticSoundParams {
        seed: 2,
        anomaly_fraction: 0.0,
    };
    let faulty = SyntheticSoundParams {
        seed: 2,
        anomaly_fraction: 1.0,
    };
    let long = |p: &SyntheticSoundParams, seq| {
        clip(p, seq, RATE, Duration::ZERO, Duration::from_millis(1500)).0
    };
    let train_sound: Vec<f32> = (1..=4).flat_map(|s| long(&normal, s)).collect();
    let params = FeatureParams::for_rate(RATE);
    let mut ex = Extractor::new(&params);
    let features: Vec<Vec<f32>> = windows(&train_sound, 9_600, 2_400)
        .into_iter()
        .map(|w| ex.features(w))
        .collect();
    let model = acoustic::train(&features, 1.25).unwrap();
    let mut anomalous_seq = 1;
    while inspection_station::audio::synthetic::part_anomaly(&faulty, anomalous_seq)
        != Some(inspection_station::audio::synthetic::SoundAnomaly::Impacts)
    {
        anomalous_seq += 1;
    }
    let mut score_played = |samples: Vec<f32>, name: &str| {
        let path = dir.path().join(name);
        wav::write(&path, &samples, RATE).unwrap();
        // Only what arrived since this sound began playing (the tone before it may still be in the last seconds).
        let before = capture.ring.written();
        play(sink, &path);
        std::thread::sleep(Duration::from_millis(500));
        let heard = capture
            .ring
            .latest((capture.ring.written() - before) as usize);
        let played = loudest(&heard, 9_600 * 4);
        windows(played, 9_600, 9_600)
            .into_iter()
            .map(|w| model.gaussian.score(&ex.features(w)))
            .fold(f32::MIN, f32::max)
    };
    let normal_score = score_played(long(&normal, 9), "normal.wav");
    let anomaly_score = score_played(long(&faulty, anomalous_seq), "impacts.wav");
    println!(
        "captured through cpal: tone at {peak_hz} Hz; normal sound scored {normal_score:.2}, impacts {anomaly_score:.2}, threshold {:.2}",
        model.threshold
    );
    assert!(
        anomaly_score > model.threshold,
        "impacts scored {anomaly_score}, threshold {}",
        model.threshold
    );
    assert!(
        anomaly_score > 2.0 * normal_score,
        "impacts {anomaly_score} vs normal {normal_score}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_recording_replays_in_real_time_and_each_part_gets_its_slice() {
    let dir = tempfile::tempdir().unwrap();
    // 2 s of the normal machine, looped: every part's slice is normal sound.
    let normal = SyntheticSoundParams {
        seed: 30,
        anomaly_fraction: 0.0,
    };
    let sound = clip(&normal, 1, 48_000, Duration::ZERO, Duration::from_secs(2)).0;
    wav::write(&dir.path().join("line.wav"), &sound, 48_000).unwrap();
    let config = station(
        dir.path(),
        &format!(
            r#"
            [trigger]
            kind = "interval"
            interval_ms = 100
            [source]
            kind = "synthetic"
            defect_fraction = 0.0
            [plc]
            kind = "off"
            [audio]
            kind = "wav"
            path = "line.wav"
            loop = true
            pre_ms = 5
            post_ms = 40
            model_dir = "{}"
            "#,
            demo_sound_model()
        ),
    );
    let summary = run(&config, Some(12)).await;
    let acoustic = summary.acoustic.clone().expect("acoustic figures");
    assert_eq!(acoustic.faults, 0, "{summary}");
    for h in heard(&config) {
        if h.reasons.iter().any(|r| r == "pipeline_overloaded") {
            continue;
        }
        assert_eq!(h.verdict, "PASS", "scored {:?}: {:?}", h.score, h.reasons);
        assert!(h.score.is_some() && h.truth.is_none());
    }
}
