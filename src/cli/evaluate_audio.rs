//! `station evaluate audio`: scores normal and anomalous recordings with an acoustic model and reports AUC and
//! pAUC (FPR <= 0.1); writes the ROC (SVG and PNG), example spectrograms and `report.json` into `--out`.

use std::path::{Path, PathBuf};

use anyhow::Context;

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
    /// Where to write roc.svg, roc.png, the example spectrograms and report.json
    #[arg(long, value_name = "DIR", default_value = "evaluation")]
    out: PathBuf,
    /// Hop between windows of long recordings [default: the model's window, no overlap]
    #[arg(long)]
    hop_ms: Option<u64>,
    /// Channel of multi-channel recordings
    #[arg(long, default_value_t = 0)]
    channel: u16,
}

struct Scored {
    origin: String,
    score: f32,
    samples: Vec<f32>,
}

fn score_all(
    model: &mut AcousticModel,
    paths: &[PathBuf],
    channel: u16,
    hop_ms: u64,
) -> anyhow::Result<Vec<Scored>> {
    let (recordings, rate) = acoustic::load_recordings(paths, channel)?;
    anyhow::ensure!(
        rate == model.sample_rate_hz(),
        "{}: recorded at {rate} Hz but the model was trained at {} Hz",
        recordings[0].0.display(),
        model.sample_rate_hz()
    );
    let (window, hop) = window_samples(model.manifest.window_ms, hop_ms, rate);
    let mut out = Vec::new();
    for (path, samples) in &recordings {
        for (k, w) in windows(samples, window, hop).into_iter().enumerate() {
            out.push(Scored {
                origin: format!("{}#{k}", path.display()),
                score: model.score(w),
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

pub fn evaluate(args: &EvaluateAudioArgs) -> anyhow::Result<()> {
    let mut model = AcousticModel::load(&args.model, None)?;
    let hop_ms = args.hop_ms.unwrap_or(model.manifest.window_ms);
    let normal = score_all(&mut model, &args.normal, args.channel, hop_ms)?;
    let anomalous = score_all(&mut model, &args.anomalous, args.channel, hop_ms)?;
    let ns: Vec<f32> = normal.iter().map(|s| s.score).collect();
    let an: Vec<f32> = anomalous.iter().map(|s| s.score).collect();
    let roc = evaluate::roc(&ns, &an);
    let auc = evaluate::partial_auc(&roc, 1.0);
    let pauc = evaluate::partial_auc(&roc, 0.1);
    let t = model.info.threshold;
    let rate_over = |v: &[f32]| v.iter().filter(|s| **s > t).count() as f64 / v.len().max(1) as f64;
    let (tpr, fpr) = (rate_over(&an), rate_over(&ns));

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let title = format!(
        "{} v{}: AUC {auc:.4}, pAUC(FPR<=0.1) {pauc:.4}",
        model.info.name, model.info.version
    );
    let svg = args.out.join("roc.svg");
    std::fs::write(&svg, evaluate::roc_svg(&roc, &title))
        .with_context(|| format!("cannot write {}", svg.display()))?;
    spectrogram::save_png(
        &args.out.join("roc.png"),
        &evaluate::roc_image(&roc, &title)?,
    )
    .map_err(anyhow::Error::msg)?;
    let by_score = |v: &[Scored], max: bool| {
        v.iter()
            .max_by(|a, b| {
                let o = a.score.total_cmp(&b.score);
                if max { o } else { o.reverse() }
            })
            .map(|s| (s.origin.clone(), s.score))
    };
    let rate = model.sample_rate_hz();
    for (name, set, max) in [
        ("normal-highest", &normal, true),
        ("anomalous-lowest", &anomalous, false),
        ("anomalous-highest", &anomalous, true),
    ] {
        if let Some(s) = set
            .iter()
            .find(|s| Some((s.origin.clone(), s.score)) == by_score(set, max))
        {
            example(&args.out, &format!("spectrogram-{name}"), s, rate)?;
        }
    }
    let report = serde_json::json!({
        "model": { "name": model.info.name, "version": model.info.version, "sha256": model.info.sha256 },
        "threshold": t,
        "normal_windows": ns.len(),
        "anomalous_windows": an.len(),
        "auc": auc,
        "pauc_fpr_0_1": pauc,
        "at_threshold": { "true_positive_rate": tpr, "false_positive_rate": fpr },
        "normal_highest": by_score(&normal, true),
        "anomalous_lowest": by_score(&anomalous, false),
    });
    let json = args.out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    println!(
        "{} v{}: {} normal and {} anomalous windows: AUC {auc:.4}  pAUC(FPR<=0.1) {pauc:.4}  at threshold {t:.3}: TPR {tpr:.3} FPR {fpr:.3}",
        model.info.name,
        model.info.version,
        ns.len(),
        an.len()
    );
    println!(
        "wrote {}/{{roc.svg,roc.png,spectrogram-*.png,report.json}}",
        args.out.display()
    );
    Ok(())
}
