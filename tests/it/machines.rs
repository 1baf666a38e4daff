//! Hearing real machines: clip-level detection on MIMII factory recordings (`dcase2020_lite`, `mimii_normal`),
//! false alarms on held-out normal clips at the trained threshold, the synthetic stress set (a steady machine
//! with a faint tone or a changed rhythm, in real factory noise at 0 and -6 dB SNR), and the CWRU bearings
//! through the same detector comparison `station train audio` runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use inspection_station::acoustic::evaluate;
use inspection_station::acoustic::frames::FrameParams;
use inspection_station::acoustic::scoring::Scorer;
use inspection_station::acoustic::select::{self, Clip, SelectOptions};
use inspection_station::acoustic::stress::{self, Change};
use inspection_station::acoustic::windows;
use inspection_station::audio::synthetic::Machine;
use inspection_station::audio::wav;

use crate::common::shared_data;

fn station_ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_station"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "station {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wavs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".wav"))
        })
        .collect();
    v.sort();
    v
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Per machine, three rotations: train on two normal clips, evaluate the third against the three anomalous
/// clips, whole 10 s clips.
#[test]
fn mimii_machines_are_judged_clip_by_clip_with_a_report_per_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pooled = (0usize, 0usize);
    let mut lines = Vec::new();
    for machine in ["fan", "pump", "slider", "valve"] {
        let dir = shared_data("dcase2020_lite").join(machine);
        let (normal, anomalous) = (wavs(&dir, "normal_"), wavs(&dir, "anomaly_"));
        assert_eq!((normal.len(), anomalous.len()), (3, 3), "{machine}");
        let mut aucs = Vec::new();
        for held in 0..3 {
            let name = format!("{machine}-{held}");
            let models = tmp.path().join("models");
            let train: Vec<&str> = (0..3)
                .filter(|i| *i != held)
                .map(|i| s(&normal[i]))
                .collect();
            let mut args = vec![
                "train",
                "audio",
                "--name",
                &name,
                "--out",
                s(&models),
                "--window-ms",
                "10000",
                "--normal",
            ];
            args.extend(train);
            let trained = station_ok(&args);
            assert!(
                trained.contains("on 2 normal clips of 10000 ms"),
                "{trained}"
            );
            let out = tmp.path().join(&name);
            let model = models.join(&name).join("1");
            let mut args = vec![
                "evaluate",
                "audio",
                "--model",
                s(&model),
                "--out",
                s(&out),
                "--normal",
                s(&normal[held]),
                "--anomalous",
            ];
            args.extend(anomalous.iter().map(|p| s(p)));
            station_ok(&args);
            let r = report(&out);
            assert_eq!(
                (r["normal_clips"].as_u64(), r["anomalous_clips"].as_u64()),
                (Some(1), Some(3))
            );
            let csv = std::fs::read_to_string(out.join("clips.csv")).unwrap();
            assert_eq!(csv.lines().count(), 5, "{csv}");
            for f in ["histogram.svg", "histogram.png", "roc.svg"] {
                assert!(out.join(f).metadata().unwrap().len() > 500, "{f}");
            }
            // The clip scores themselves: how many anomalous clips score above the normal one.
            let scores: Vec<(String, f64)> = csv
                .lines()
                .skip(1)
                .map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    (f[1].to_string(), f[3].parse().unwrap())
                })
                .collect();
            let normal_score = scores.iter().find(|(c, _)| c == "normal").unwrap().1;
            let above = scores
                .iter()
                .filter(|(c, v)| c == "anomalous" && *v > normal_score)
                .count();
            pooled = (pooled.0 + above, pooled.1 + 3);
            aucs.push(r["auc"].as_f64().unwrap());
            assert!(
                (r["auc"].as_f64().unwrap() - above as f64 / 3.0).abs() < 1e-9,
                "{r}"
            );
        }
        lines.push(format!(
            "{machine}: clip AUC {:.3} (rotations {:?}), detector {}",
            aucs.iter().sum::<f64>() / 3.0,
            aucs.iter().map(|a| format!("{a:.2}")).collect::<Vec<_>>(),
            report(&tmp.path().join(format!("{machine}-2")))["model"]["detector"]
        ));
    }
    let overall = pooled.0 as f64 / pooled.1 as f64;
    println!(
        "dcase2020_lite, trained on 2 normal clips, 1 normal vs 3 anomalous per rotation:\n  {}\n  overall: {}/{} anomalous clips above their normal clip (AUC {overall:.3})",
        lines.join("\n  "),
        pooled.0,
        pooled.1
    );
    // Better than chance over the 36 pairs (a guard against regressions; the figures are reported in AUDIO.md).
    assert!(overall > 0.5, "overall AUC {overall}");
}

/// Several conditions in one model, on real recordings: the four MIMII machines (ids 00, 02, 04, 06 in the file
/// names) trained together, two normal clips each. Each clip's score is standardised by its own machine's typical
/// normal clip, and the report gives AUC per machine. Against the same clips pooled into one condition (a
/// `--conditions` CSV), the standardisation must not raise false alarms at the trained threshold.
#[test]
fn machines_of_several_conditions_in_one_model_are_reported_and_standardised_per_condition() {
    let tmp = tempfile::tempdir().unwrap();
    let root = shared_data("dcase2020_lite");
    let (mut train, mut held, mut anomalous) = (Vec::new(), Vec::new(), Vec::new());
    for machine in ["fan", "pump", "slider", "valve"] {
        let normal = wavs(&root.join(machine), "normal_");
        train.extend(normal[..2].iter().cloned());
        held.push(normal[2].clone());
        anomalous.extend(wavs(&root.join(machine), "anomaly_"));
    }
    let pooled_csv = tmp.path().join("pooled.csv");
    let lines: Vec<String> = train
        .iter()
        .chain(&held)
        .chain(&anomalous)
        .map(|p| format!("{},all", p.file_name().unwrap().to_str().unwrap()))
        .collect();
    std::fs::write(
        &pooled_csv,
        format!("file,condition\n{}\n", lines.join("\n")),
    )
    .unwrap();
    let models = tmp.path().join("models");
    let run = |name: &str, conditions: Option<&Path>| -> serde_json::Value {
        let mut args = vec![
            "train",
            "audio",
            "--name",
            name,
            "--out",
            s(&models),
            "--window-ms",
            "10000",
        ];
        if let Some(c) = conditions {
            args.extend(["--conditions", s(c)]);
        }
        args.push("--normal");
        args.extend(train.iter().map(|p| s(p)));
        station_ok(&args);
        let out = tmp.path().join(format!("eval-{name}"));
        let model = models.join(name).join("1");
        let mut args = vec!["evaluate", "audio", "--model", s(&model), "--out", s(&out)];
        if let Some(c) = conditions {
            args.extend(["--conditions", s(c)]);
        }
        args.push("--normal");
        args.extend(held.iter().map(|p| s(p)));
        args.push("--anomalous");
        args.extend(anomalous.iter().map(|p| s(p)));
        println!("{}", station_ok(&args));
        report(&out)
    };
    let by_machine = run("machines", None);
    let per = by_machine["per_condition"].as_object().unwrap();
    assert_eq!(
        per.keys().map(String::as_str).collect::<Vec<_>>(),
        ["id_00", "id_02", "id_04", "id_06"],
        "{by_machine}"
    );
    for (c, v) in per {
        assert_eq!(
            (v["normal_clips"].as_u64(), v["anomalous_clips"].as_u64()),
            (Some(1), Some(3)),
            "{c}"
        );
        let auc = v["auc"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&auc) && (auc * 3.0 - (auc * 3.0).round()).abs() < 1e-9,
            "{c}: {auc}"
        );
    }
    let csv = std::fs::read_to_string(tmp.path().join("eval-machines/clips.csv")).unwrap();
    let conditions: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap())
        .collect();
    assert_eq!(conditions.len(), 16);
    assert!(conditions.iter().all(|c| c.starts_with("id_0")), "{csv}");
    let pooled = run("pooled", Some(&pooled_csv));
    assert_eq!(
        pooled["per_condition"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["all"]
    );
    let alarms = |r: &serde_json::Value| r["at_threshold"]["false_alarms"].as_u64().unwrap();
    println!(
        "4 machines in one model: per machine AUC {:?}, pooled AUC {:.3} / {:.3} (per machine / one condition), false alarms {} / {} of 4",
        per.iter()
            .map(|(c, v)| format!("{c} {:.2}", v["auc"].as_f64().unwrap()))
            .collect::<Vec<_>>(),
        by_machine["auc"].as_f64().unwrap(),
        pooled["auc"].as_f64().unwrap(),
        alarms(&by_machine),
        alarms(&pooled)
    );
    assert!(
        alarms(&by_machine) <= alarms(&pooled),
        "{by_machine}\n{pooled}"
    );
}

/// Train on 50 normal clips of one machine, then score the 25 held-out normal clips at the trained threshold.
#[test]
fn at_most_one_false_alarm_on_25_held_out_normal_clips() {
    let tmp = tempfile::tempdir().unwrap();
    let clips = wavs(&shared_data("mimii_normal"), "normal_id_00_");
    assert_eq!(clips.len(), 75);
    let models = tmp.path().join("models");
    let mut args = vec![
        "train",
        "audio",
        "--name",
        "id00",
        "--out",
        s(&models),
        "--window-ms",
        "10000",
        "--normal",
    ];
    args.extend(clips[..50].iter().map(|p| s(p)));
    let trained = station_ok(&args);
    println!("{trained}");
    let manifest = std::fs::read_to_string(models.join("id00/1/manifest.toml")).unwrap();
    assert!(
        manifest.contains("[[compared]]") && manifest.contains("detector = "),
        "{manifest}"
    );
    let out = tmp.path().join("eval");
    let anomalous = wavs(&shared_data("dcase2020_lite").join("fan"), "anomaly_");
    let model = models.join("id00/1");
    let mut args = vec![
        "evaluate",
        "audio",
        "--model",
        s(&model),
        "--out",
        s(&out),
        "--normal",
    ];
    args.extend(clips[50..].iter().map(|p| s(p)));
    args.push("--anomalous");
    args.extend(anomalous.iter().map(|p| s(p)));
    println!("{}", station_ok(&args));
    let r = report(&out);
    let false_alarms = r["at_threshold"]["false_alarms"].as_u64().unwrap();
    assert_eq!(r["normal_clips"].as_u64(), Some(25));
    assert!(false_alarms <= 1, "{false_alarms} false alarms of 25: {r}");
    // The per-condition figures: all clips are machine id_00 (from their names).
    assert!(
        r["per_condition"]["id_00"].is_object()
            || r["per_condition"].as_object().unwrap().is_empty(),
        "{r}"
    );
    // A whole-clip model from before the rhythm features changed is refused, not scored with other features.
    let json = std::fs::read_to_string(model.join("model.json")).unwrap();
    assert!(
        json.contains("\"rhythm_lines\":true"),
        "the winner is a whole-clip model"
    );
    let old = json.replace("\"rhythm_lines\":true,", "");
    std::fs::write(model.join("model.json"), &old).unwrap();
    let manifest = model.join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let sha = |b: &[u8]| inspection_station::model::sha256_hex(b);
    std::fs::write(
        &manifest,
        text.replace(&sha(json.as_bytes()), &sha(old.as_bytes())),
    )
    .unwrap();
    let err = match inspection_station::acoustic::AcousticModel::load(&model, None) {
        Ok(_) => panic!("an old whole-clip model loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("retrain") && err.contains("rhythm"), "{err}");
}

/// Real factory noise: the MIMII clips, end to end.
fn factory_noise() -> Vec<f32> {
    wavs(&shared_data("mimii_normal"), "normal_id_00_")
        .iter()
        .take(8)
        .flat_map(|p| wav::read_at(p, 0, 16_000).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The synthetic stress set at one SNR: 2 s clips of a steady machine (the demo's motor hum and gear mesh) in
/// factory noise; returns the AUC of the anomalous (faint tone, changed rhythm) against held-out normal clips.
fn stress_auc(snr_db: f32, noise: &[f32]) -> (f64, String) {
    const RATE: u32 = 16_000;
    const CLIP: usize = 2 * RATE as usize;
    let mut machine = Machine::new(5, RATE);
    let mut render = |k: usize| {
        let mut out = vec![0f32; CLIP];
        machine.render((k * CLIP) as u64, &mut out);
        out
    };
    let noisy = |sound: &[f32], k: usize| {
        let at = (k * 7919 * 16) % (noise.len() - CLIP);
        stress::mix(sound, &noise[at..at + CLIP], snr_db)
    };
    let train: Vec<Vec<f32>> = (0..40).map(|k| noisy(&render(k), k)).collect();
    let clips: Vec<Clip> = train
        .iter()
        .enumerate()
        .map(|(k, s)| Clip {
            recording: k,
            condition: None,
            samples: s,
        })
        .collect();
    let opts = SelectOptions {
        seed: 11,
        ..SelectOptions::for_rate(RATE)
    };
    let selected = select::select(&clips, &[], &opts).unwrap();
    let mut scorer = Scorer::new(selected.scoring, &opts.features);
    let normal: Vec<f32> = (100..120)
        .map(|k| scorer.score(&noisy(&render(k), k), None))
        .collect();
    let anomalous: Vec<f32> = (120..160)
        .map(|k| {
            let change = if k % 2 == 0 {
                Change::Tone
            } else {
                Change::Rhythm
            };
            scorer.score(
                &noisy(&stress::apply(&render(k), RATE, change, 1000 + k as u64), k),
                None,
            )
        })
        .collect();
    let roc = evaluate::roc(&normal, &anomalous);
    let auc_of = |v: Vec<f32>| evaluate::partial_auc(&evaluate::roc(&normal, &v), 1.0);
    let tone = auc_of(anomalous.iter().step_by(2).copied().collect());
    let rhythm = auc_of(anomalous.iter().skip(1).step_by(2).copied().collect());
    (
        evaluate::partial_auc(&roc, 1.0),
        format!(
            "{}; tone AUC {tone:.3}, rhythm AUC {rhythm:.3}",
            scorer.scoring.describe()
        ),
    )
}

#[test]
fn a_faint_tone_or_a_changed_rhythm_is_heard_through_factory_noise() {
    let noise = factory_noise();

    let (at_0, detector_0) = stress_auc(0.0, &noise);
    let (at_6, detector_6) = stress_auc(-6.0, &noise);
    println!(
        "stress set: AUC {at_0:.4} at 0 dB SNR ({detector_0}), {at_6:.4} at -6 dB ({detector_6})"
    );
    // The issue's bar; measured 0.9575 at 0 dB and 0.799 at -6 dB when written.
    assert!(at_0 >= 0.95, "AUC {at_0} at 0 dB SNR");
}

/// The bearings through the comparison: whatever detector wins, the faults stay perfectly separated.
#[test]
fn cwru_bearing_faults_stay_separated_through_the_detector_comparison() {
    const WINDOW: usize = 12_000; // 0.25 s at 48 kHz
    let cwru = |name: &str| {
        wav::read_at(&shared_data("cwru").join(name), 0, 48_000).unwrap_or_else(|e| panic!("{e}"))
    };
    let healthy = cwru("48k_normal_0_97.wav");
    let split = healthy.len() * 6 / 10;
    let train = windows(&healthy[..split], WINDOW, 2_400);
    let clips: Vec<Clip> = train
        .iter()
        .map(|w| Clip {
            recording: 0,
            condition: None,
            samples: w,
        })
        .collect();
    let opts = SelectOptions {
        slice_sub_window_ms: 250,
        seed: 3,
        ..SelectOptions::for_rate(48_000)
    };
    let selected = select::select(&clips, &[], &opts).unwrap();
    let mut scorer = Scorer::new(selected.scoring, &opts.features);
    let normal: Vec<f32> = windows(&healthy[split..], WINDOW, WINDOW / 2)
        .into_iter()
        .map(|w| scorer.score(w, None))
        .collect();
    let mut faults = Vec::new();
    for entry in std::fs::read_dir(shared_data("cwru")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.contains("Drive_End") {
            faults.extend(
                windows(&cwru(&name), WINDOW, WINDOW)
                    .into_iter()
                    .map(|w| scorer.score(w, None)),
            );
        }
    }
    let auc = evaluate::partial_auc(&evaluate::roc(&normal, &faults), 1.0);
    println!(
        "CWRU through the comparison: {} wins, AUC {auc:.4} ({} healthy, {} fault windows)",
        scorer.scoring.describe(),
        normal.len(),
        faults.len()
    );
    assert!(faults.len() >= 100 && normal.len() >= 10);
    assert!(auc >= 0.999, "AUC {auc}");
}

/// A model trained by `station train audio` (detectors compared, scores standardised) judges parts on the line
/// from their own sound, and a line whose slice length differs from the model's clips is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compared_and_standardised_model_judges_the_line_and_its_clip_length_is_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |p: &str| tmp.path().join(p).to_string_lossy().into_owned();
    // The line's own machine (the [audio] seed below), recorded normal.
    station_ok(&[
        "generate-sounds",
        "--out",
        &d("train"),
        "--count",
        "200",
        "--seed",
        "8",
        "--anomaly-fraction",
        "0",
    ]);
    let trained = station_ok(&[
        "train",
        "audio",
        "--normal",
        &d("train/normal"),
        "--name",
        "line",
        "--out",
        &d("models"),
        "--window-ms",
        "45",
    ]);
    println!("{trained}");
    let sections = |post_ms: u64| {
        format!(
            r#"
            [trigger]
            kind = "interval"
            interval_ms = 100
            [source]
            kind = "synthetic"
            seed = 3
            defect_fraction = 0.0
            [plc]
            kind = "off"
            [audio]
            kind = "synthetic"
            seed = 8
            anomaly_fraction = 0.3
            pre_ms = 5
            post_ms = {post_ms}
            model_dir = "{}"
            "#,
            d("models/line/1")
        )
    };
    let config = crate::common::station(tmp.path(), &sections(40));
    let summary = crate::common::run(&config, Some(40)).await;
    let acoustic = summary.acoustic.clone().expect("acoustic figures");
    println!("{summary}");
    assert!(acoustic.detection.defective >= 5, "{summary}");
    assert_eq!(
        acoustic.detection.defective, acoustic.detection.defective_rejected,
        "{summary}"
    );
    assert_eq!(acoustic.detection.good_rejected, 0, "{summary}");

    let config = crate::common::station(tmp.path(), &sections(95));
    let err =
        inspection_station::pipeline::run(&config, Default::default(), std::future::pending())
            .await
            .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("trained on clips of 45 ms but [audio] pre_ms + post_ms = 100 ms"),
        "{text}"
    );
}

/// The autoencoder trained on real frames, exported through the station's ONNX writer, gives the same scores in
/// ONNX Runtime as in the station, and scores anomalous frames of the same machine higher on average.
#[test]
fn the_autoencoder_runs_in_onnx_runtime_to_the_stations_own_scores() {
    use inspection_station::acoustic::autoencoder::{AeOptions, Autoencoder};
    use inspection_station::acoustic::frames::FrameExtractor;
    use ort::session::Session;
    use ort::value::TensorRef;

    let dir = shared_data("dcase2020_lite").join("slider");
    let read = |p: &Path| wav::read_at(p, 0, 16_000).unwrap_or_else(|e| panic!("{e}"));
    let mut ex = FrameExtractor::new(&FrameParams::for_rate(16_000));
    let normal: Vec<Vec<f32>> = wavs(&dir, "normal_")
        .iter()
        .take(2)
        .flat_map(|p| ex.stacked(&read(p)))
        .collect();
    let refs: Vec<&[f32]> = normal.iter().map(Vec::as_slice).collect();
    let ae = Autoencoder::fit(
        &refs,
        &AeOptions {
            epochs: 10,
            ..AeOptions::default()
        },
    )
    .unwrap();
    let test: Vec<Vec<f32>> = ex.stacked(&read(&wavs(&dir, "normal_")[2]));
    let anomalous: Vec<Vec<f32>> = wavs(&dir, "anomaly_")
        .iter()
        .flat_map(|p| ex.stacked(&read(p)))
        .collect();

    let env =
        inspection_station::model::runtime::environment(None).unwrap_or_else(|e| panic!("{e}"));
    let mut session = Session::builder(env)
        .and_then(|mut b| b.commit_from_memory(&ae.to_onnx()))
        .unwrap_or_else(|e| panic!("{e}"));
    let flat: Vec<f32> = test.iter().flatten().copied().collect();
    let input =
        TensorRef::from_array_view((vec![test.len() as i64, 320], flat.as_slice())).unwrap();
    let outputs = session.run(ort::inputs!["frames" => input]).unwrap();
    let (shape, ort_scores) = outputs["error"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(
        shape.iter().copied().collect::<Vec<_>>(),
        vec![test.len() as i64]
    );
    let worst = test
        .iter()
        .zip(ort_scores)
        .map(|(f, o)| (ae.score(f) - o).abs() / o.abs().max(1e-3))
        .fold(0f32, f32::max);
    let mean = |v: &[Vec<f32>]| v.iter().map(|f| ae.score(f)).sum::<f32>() / v.len() as f32;
    let (held_out, anomalies) = (mean(&test), mean(&anomalous));
    println!(
        "autoencoder on slider frames: ONNX Runtime vs station, largest relative difference {worst:.2e} over {} frames; mean error held-out normal {held_out:.3}, anomalous {anomalies:.3}",
        test.len()
    );
    assert!(worst < 1e-4, "{worst}");
    assert!(
        anomalies > held_out,
        "anomalous {anomalies} vs normal {held_out}"
    );
}
