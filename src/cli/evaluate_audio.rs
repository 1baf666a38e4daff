//! `station evaluate audio`: scores normal and anomalous recordings with an acoustic model, clip by clip (a clip
//! is the model's `window_ms` of sound, scored as a whole as a part is on the line), and reports clip-level AUC
//! and pAUC (FPR <= 0.1, as DCASE does) per condition and overall, next to the frame-level figures (every score
//! of a clip's curve labelled with its clip's class). Writes into `--out` the ROC and the clip-score histogram
//! per class (SVG and PNG), example spectrograms, `clips.csv` (one line per clip) and `report.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::acoustic::clip::{condition_of, read_conditions};
use crate::acoustic::{self, AcousticModel, evaluate, spectrogram, window_samples, windows};

#[derive(clap::Args)]
pub struct EvaluateAudioArgs {
    /// The acoustic model folder (manifest.toml + model.json)
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Normal recordings: WAV files or folders of them
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1.., required = true)]
    normal: Vec<PathBuf>,
    /// Anomalous recordings: WAV files or folders of them
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1.., required = true)]
    anomalous: Vec<PathBuf>,
    /// Where to write the figures, clips.csv and report.json
    #[arg(long, value_name = "DIR", default_value = "evaluation")]
    out: PathBuf,
    /// Hop between clips of long recordings [default: the model's window, no overlap]
    #[arg(long)]
    hop_ms: Option<u64>,
    /// Channel of multi-channel recordings
    #[arg(long, default_value_t = 0)]
    channel: u16,
    /// Conditions of the recordings as a CSV of `file,condition` [default: from DCASE-style file names]
    #[arg(long, value_name = "CSV")]
    conditions: Option<PathBuf>,
}

struct Scored {
    origin: String,
    condition: Option<String>,
    anomalous: bool,
    score: f32,
    curve: Vec<f32>,
    samples: Vec<f32>,
}

fn score_all(
    model: &mut AcousticModel,
    paths: &[PathBuf],
    anomalous: bool,
    args: &EvaluateAudioArgs,
    csv: &Option<BTreeMap<String, String>>,
) -> anyhow::Result<Vec<Scored>> {
    let (recordings, rate) = acoustic::load_recordings(paths, args.channel)?;
    anyhow::ensure!(
        rate == model.sample_rate_hz(),
        "{}: recorded at {rate} Hz but the model was trained at {} Hz",
        recordings[0].0.display(),
        model.sample_rate_hz()
    );
    let hop_ms = args.hop_ms.unwrap_or(model.manifest.window_ms);
    let (window, hop) = window_samples(model.manifest.window_ms, hop_ms, rate);
    let mut out = Vec::new();
    for (path, samples) in &recordings {
        let condition = match csv {
            Some(map) => path.file_name().and_then(|n| map.get(n.to_str()?)).cloned(),
            None => condition_of(path),
        };
        for (k, w) in windows(samples, window, hop).into_iter().enumerate() {
            let (score, curve) = model.scorer.score_with_curve(w, condition.as_deref());
            out.push(Scored {
                origin: format!("{}#{k}", path.display()),
                score,
                condition: condition.clone(),
                anomalous,
                curve,
                samples: w.to_vec(),
            });
        }
    }
    Ok(out)
}

fn example(out: &Path, name: &str, s: &Scored, rate: u32) -> anyhow::Result<()> {
    let img = spectrogram::image(&s.samples, rate)?;
    spectrogram::save_png(&out.join(format!("{name}.png")), &img).map_err(anyhow::Error::msg)
}

/// AUC and pAUC of two score sets.
fn aucs(normal: &[f32], anomalous: &[f32]) -> (f64, f64) {
    let roc = evaluate::roc(normal, anomalous);
    (
        evaluate::partial_auc(&roc, 1.0),
        evaluate::partial_auc(&roc, 0.1),
    )
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

pub fn evaluate(args: &EvaluateAudioArgs) -> anyhow::Result<()> {
    let csv = match &args.conditions {
        Some(p) => Some(read_conditions(p).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let mut model = AcousticModel::load(&args.model, None)?;
    let normal = score_all(&mut model, &args.normal, false, args, &csv)?;
    let anomalous = score_all(&mut model, &args.anomalous, true, args, &csv)?;
    let ns: Vec<f32> = normal.iter().map(|s| s.score).collect();
    let an: Vec<f32> = anomalous.iter().map(|s| s.score).collect();
    let roc = evaluate::roc(&ns, &an);
    let (auc, pauc) = aucs(&ns, &an);
    let frames =
        |v: &[Scored]| -> Vec<f32> { v.iter().flat_map(|s| s.curve.iter().copied()).collect() };
    let (frame_auc, frame_pauc) = aucs(&frames(&normal), &frames(&anomalous));
    let t = model.info.threshold;
    let rate_over = |v: &[f32]| v.iter().filter(|s| **s > t).count() as f64 / v.len().max(1) as f64;
    let (tpr, fpr) = (rate_over(&an), rate_over(&ns));
    let mut per_condition = BTreeMap::new();
    let conditions: std::collections::BTreeSet<&str> = normal
        .iter()
        .chain(&anomalous)
        .filter_map(|s| s.condition.as_deref())
        .collect();
    for c in &conditions {
        let of = |v: &[Scored]| -> Vec<f32> {
            v.iter()
                .filter(|s| s.condition.as_deref() == Some(*c))
                .map(|s| s.score)
                .collect()
        };
        let (n, a) = (of(&normal), of(&anomalous));
        if !n.is_empty() && !a.is_empty() {
            let (auc, pauc) = aucs(&n, &a);
            per_condition.insert(
                c.to_string(),
                serde_json::json!({ "normal_clips": n.len(), "anomalous_clips": a.len(), "auc": auc, "pauc_fpr_0_1": pauc }),
            );
        }
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let title = format!(
        "{} v{} {}: clip AUC {auc:.4}, pAUC(FPR<=0.1) {pauc:.4}",
        model.info.name, model.info.version, model.manifest.detector
    );
    write(&args.out.join("roc.svg"), evaluate::roc_svg(&roc, &title))?;
    spectrogram::save_png(
        &args.out.join("roc.png"),
        &evaluate::roc_image(&roc, &title)?,
    )
    .map_err(anyhow::Error::msg)?;
    let hist_title = format!("{} v{}: clip scores", model.info.name, model.info.version);
    write(
        &args.out.join("histogram.svg"),
        evaluate::histogram_svg(&ns, &an, t, &hist_title),
    )?;
    spectrogram::save_png(
        &args.out.join("histogram.png"),
        &evaluate::histogram_image(&ns, &an, t, &hist_title)?,
    )
    .map_err(anyhow::Error::msg)?;
    let mut lines = String::from("clip,class,condition,score,threshold,verdict\n");
    for s in normal.iter().chain(&anomalous) {
        let _ = writeln!(
            lines,
            "{},{},{},{},{t},{}",
            s.origin.replace(',', "_"),
            if s.anomalous { "anomalous" } else { "normal" },
            s.condition.as_deref().unwrap_or(""),
            s.score,
            if s.score > t { "REJECT" } else { "PASS" }
        );
    }
    write(&args.out.join("clips.csv"), lines)?;
    let extreme = |v: &[Scored], max: bool| -> Option<usize> {
        (0..v.len()).max_by(|a, b| {
            let o = v[*a].score.total_cmp(&v[*b].score);
            if max { o } else { o.reverse() }
        })
    };
    let rate = model.sample_rate_hz();
    for (name, set, max) in [
        ("normal-highest", &normal, true),
        ("anomalous-lowest", &anomalous, false),
        ("anomalous-highest", &anomalous, true),
    ] {
        if let Some(i) = extreme(set, max) {
            example(&args.out, &format!("spectrogram-{name}"), &set[i], rate)?;
        }
    }
    let named =
        |v: &[Scored], max: bool| extreme(v, max).map(|i| (v[i].origin.clone(), v[i].score));
    let report = serde_json::json!({
        "model": { "name": model.info.name, "version": model.info.version, "sha256": model.info.sha256,
                   "detector": model.manifest.detector },
        "threshold": t,
        "clip_ms": model.manifest.window_ms,
        "normal_clips": ns.len(),
        "anomalous_clips": an.len(),
        "auc": auc,
        "pauc_fpr_0_1": pauc,
        "frame_level": { "auc": frame_auc, "pauc_fpr_0_1": frame_pauc },
        "per_condition": per_condition,
        "at_threshold": { "true_positive_rate": tpr, "false_positive_rate": fpr,
                          "false_alarms": ns.iter().filter(|s| **s > t).count() },
        "normal_highest": named(&normal, true),
        "anomalous_lowest": named(&anomalous, false),
    });
    write(
        &args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!(
        "{} v{} ({}): {} normal and {} anomalous clips: clip AUC {auc:.4}  pAUC(FPR<=0.1) {pauc:.4}  frame AUC {frame_auc:.4}  at threshold {t:.3}: TPR {tpr:.3} FPR {fpr:.3}",
        model.info.name,
        model.info.version,
        model.manifest.detector,
        ns.len(),
        an.len()
    );
    for (c, v) in &per_condition {
        println!(
            "  {c}: AUC {:.4}  pAUC {:.4}",
            v["auc"].as_f64().unwrap_or(f64::NAN),
            v["pauc_fpr_0_1"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "wrote {}/{{roc.svg,roc.png,histogram.svg,histogram.png,spectrogram-*.png,clips.csv,report.json}}",
        args.out.display()
    );
    Ok(())
}
