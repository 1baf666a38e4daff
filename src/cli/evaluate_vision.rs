//! `station evaluate --model DIR --good DIR --defect DIR [--masks DIR]`: scores labelled images with a vision
//! model through the station's own preprocess and `ort` path; prints and writes (`report.json`) image AUROC, F1,
//! false-reject and escape rates at the threshold, the confusion matrix, per-class detection rates and, with
//! masks, pixel AUROC; draws the ROC (SVG, PNG) and the score histogram (SVG); records the figures in the
//! manifest's `[metrics]`.
//!
//! `station evaluate --shadow [--config FILE] [--run ID]`: compares the shadow model's recorded scores with the
//! active model's verdicts on live parts: agreement, the disagreements, and who was right where an operator
//! reviewed the part.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use opencv::core::{Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::{ConfigArg, load_config};
use crate::acoustic::evaluate::{roc, roc_image, roc_svg};
use crate::config::{ModelConfig, PreprocessConfig, Roi};
use crate::model::manifest::ManifestFile;
use crate::model::{AnomalyMap, Model};
use crate::preprocess::Preprocessor;
use crate::vision::dataset::{self, Item};
use crate::vision::evaluate::{self, Report};

#[derive(clap::Args)]
pub struct EvaluateVisionArgs {
    /// The model: a version folder, or a registry name folder (its active version)
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Folder of good images
    #[arg(long, value_name = "DIR")]
    good: Option<PathBuf>,
    /// Folder of defect images, a sub-folder per defect class
    #[arg(long, value_name = "DIR")]
    defect: Option<PathBuf>,
    /// Ground-truth masks of the defect images, at the same relative paths (white = defect): pixel AUROC
    #[arg(long, value_name = "DIR")]
    masks: Option<PathBuf>,
    /// Where to write report.json, roc.svg, roc.png and histogram.svg
    #[arg(long, value_name = "DIR", default_value = "evaluation")]
    out: PathBuf,
    /// Crop of the images, x,y,width,height [default: the ROI the model was trained on]
    #[arg(long, value_parser = super::train_vision::parse_roi)]
    roi: Option<[i32; 4]>,
    /// Judge at this threshold instead of the manifest's
    #[arg(long)]
    threshold: Option<f32>,
    /// Do not write the figures into the manifest's [metrics]
    #[arg(long)]
    no_record: bool,
    /// Compare the shadow model with the active one on the recorded live parts (uses --config)
    #[arg(long)]
    shadow: bool,
    #[command(flatten)]
    config: ConfigArg,
    /// Shadow comparison: only this run [default: all runs]
    #[arg(long)]
    run: Option<i64>,
}

pub fn evaluate(args: &EvaluateVisionArgs) -> anyhow::Result<()> {
    if args.shadow {
        return shadow(&args.config, args.run);
    }
    let missing: Vec<&str> = [
        ("--model", args.model.is_none()),
        ("--good", args.good.is_none()),
        ("--defect", args.defect.is_none()),
    ]
    .into_iter()
    .filter_map(|(n, m)| m.then_some(n))
    .collect();
    let (Some(model_dir), Some(good_dir), Some(defect_dir)) =
        (&args.model, &args.good, &args.defect)
    else {
        let e = clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            format!(
                "station evaluate needs {} (or --shadow, or the `audio` subcommand)\n",
                missing.join(", ")
            ),
        );
        return Err(e.into());
    };
    let config = ModelConfig {
        threshold: args.threshold,
        ..ModelConfig::at(model_dir)
    };
    let mut model = Model::load(&config, None)?;
    let roi = args
        .roi
        .or(model.manifest.training.as_ref().and_then(|t| t.roi))
        .map(|[x, y, width, height]| Roi {
            x,
            y,
            width,
            height,
        });
    let pre = Preprocessor::new(
        &PreprocessConfig {
            roi,
            calibration: None,
        },
        &model.manifest.input,
    );
    let goods = dataset::list(good_dir, Some("good"))?;
    let defects = dataset::list(defect_dir, None)?;
    let threshold = model.info.threshold;
    let bar = indicatif::ProgressBar::new((goods.len() + defects.len()) as u64);
    let timing = std::time::Instant::now();
    let good = score_all(&mut model, &pre, &goods, &bar)?;
    let defect = score_all(&mut model, &pre, &defects, &bar)?;
    // Reading, preprocessing and inference of one image, as the line does it.
    let per_image_ms =
        timing.elapsed().as_secs_f64() * 1e3 / (goods.len() + defects.len()).max(1) as f64;
    bar.finish_and_clear();

    let good_scores: Vec<f32> = good.iter().map(|s| s.0).collect();
    let defect_scores: Vec<f32> = defect.iter().map(|s| s.0).collect();
    let classes: Vec<(f32, String)> = defect
        .iter()
        .zip(&defects)
        .map(|(s, d)| (s.0, d.class.clone()))
        .collect();
    let mut report = evaluate::summarize(&good_scores, &classes, threshold);
    if let Some(masks) = &args.masks {
        report.pixel_auroc = Some(pixel_auroc(&good, &defect, &defects, masks, roi)?);
    }
    let m = &model.manifest;
    println!(
        "model {} v{} (sha256 {}, {}), threshold {threshold}",
        m.name,
        m.version,
        &model.info.sha256[..12],
        model.dir.display()
    );
    print!("{report}");
    println!("time per image  {per_image_ms:.2} ms (read, preprocess, infer)");

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let title = format!("{} v{}", m.name, m.version);
    let curve = roc(&good_scores, &defect_scores);
    write("roc.svg", roc_svg(&curve, &format!("ROC of {title}")))?;
    let png = args.out.join("roc.png");
    crate::acoustic::spectrogram::save_png(&png, &roc_image(&curve, &format!("ROC of {title}"))?)
        .map_err(anyhow::Error::msg)?;
    write(
        "histogram.svg",
        evaluate::histogram_svg(
            &good_scores,
            &defect_scores,
            threshold,
            &format!("scores of {title}"),
        ),
    )?;
    let json = serde_json::json!({
        "model": { "name": m.name, "version": m.version, "sha256": model.info.sha256, "dir": model.dir },
        "data": {
            "good": good_dir, "good_list_sha256": dataset::fingerprint(&goods),
            "defect": defect_dir, "defect_list_sha256": dataset::fingerprint(&defects),
            "masks": args.masks,
        },
        "report": report,
        "ms_per_image": per_image_ms,
        "scores": {
            "good": goods.iter().zip(&good_scores).map(|(i, s)| (i.relative.display().to_string(), s)).collect::<Vec<_>>(),
            "defect": defects.iter().zip(&defect_scores).map(|(i, s)| (i.relative.display().to_string(), s)).collect::<Vec<_>>(),
        },
    });
    write("report.json", serde_json::to_string_pretty(&json)?)?;
    println!(
        "wrote {}/{{report.json, roc.svg, roc.png, histogram.svg}}",
        args.out.display()
    );
    if !args.no_record {
        record_metrics(&model.dir, &report, &goods, &defects)?;
        println!(
            "recorded the figures in {}",
            model.dir.join("manifest.toml").display()
        );
    }
    Ok(())
}

/// Each item's score and anomaly map; every unreadable image is reported at once.
fn score_all(
    model: &mut Model,
    pre: &Preprocessor,
    items: &[Item],
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<(f32, Option<AnomalyMap>)>> {
    dataset::tensors(items, pre, bar)?
        .iter()
        .map(|t| Ok(model.infer(t).map(|i| (i.score, i.anomaly_map))?))
        .collect()
}

/// Pixel AUROC over every pixel of the good (all normal) and defect images, against the masks cropped to the
/// ROI and resized to the anomaly map (maps larger than 128 px are sampled every other pixel or more).
fn pixel_auroc(
    good: &[(f32, Option<AnomalyMap>)],
    defect: &[(f32, Option<AnomalyMap>)],
    defects: &[Item],
    masks: &Path,
    roi: Option<Roi>,
) -> anyhow::Result<f64> {
    let (mut normal, mut anomalous) = (Vec::new(), Vec::new());
    let no_map = || anyhow::anyhow!("--masks: the model has no anomaly map output");
    for (_, map) in good {
        let map = map.as_ref().ok_or_else(no_map)?;
        let step = (map.width / 128).max(1);
        for y in (0..map.height).step_by(step) {
            for x in (0..map.width).step_by(step) {
                normal.push(map.values[y * map.width + x]);
            }
        }
    }
    let mut missing = Vec::new();
    for ((_, map), item) in defect.iter().zip(defects) {
        let map = map.as_ref().ok_or_else(no_map)?;
        let path = masks.join(&item.relative);
        let mask = match dataset::read_image(&path) {
            Ok(m) => m,
            Err(e) => {
                missing.push(e);
                continue;
            }
        };
        let mask = match roi {
            Some(r) => Mat::roi(&mask, Rect::new(r.x, r.y, r.width, r.height))
                .and_then(|m| m.try_clone())
                .with_context(|| format!("{}: the ROI lies outside the mask", path.display()))?,
            None => mask,
        };
        let mut gray = Mat::default();
        imgproc::cvt_color(&mask, &mut gray, imgproc::COLOR_BGR2GRAY, 0)?;
        let mut sized = Mat::default();
        let size = Size::new(map.width as i32, map.height as i32);
        imgproc::resize(&gray, &mut sized, size, 0.0, 0.0, imgproc::INTER_NEAREST)?;
        let step = (map.width / 128).max(1);
        for y in (0..map.height).step_by(step) {
            for x in (0..map.width).step_by(step) {
                let v = map.values[y * map.width + x];
                if *sized.at_2d::<u8>(y as i32, x as i32)? > 127 {
                    anomalous.push(v);
                } else {
                    normal.push(v);
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!("--masks: {}", missing.join("; "));
    }
    Ok(evaluate::auroc(&normal, &anomalous))
}

/// Writes the report's figures into the manifest's `[metrics]` (the model file and its sha256 are untouched).
fn record_metrics(dir: &Path, r: &Report, goods: &[Item], defects: &[Item]) -> anyhow::Result<()> {
    let path = dir.join("manifest.toml");
    let mut file =
        ManifestFile::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut t = toml::Table::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    t.insert("evaluated_unix_s".into(), (now as i64).into());
    t.insert("good_images".into(), (r.good_images as i64).into());
    t.insert(
        "good_list_sha256".into(),
        dataset::fingerprint(goods).into(),
    );
    t.insert("defect_images".into(), (r.defect_images as i64).into());
    t.insert(
        "defect_list_sha256".into(),
        dataset::fingerprint(defects).into(),
    );
    t.insert("threshold".into(), f64::from(r.threshold).into());
    if let Some(a) = r.image_auroc {
        t.insert("image_auroc".into(), a.into());
    }
    if let Some(a) = r.pixel_auroc {
        t.insert("pixel_auroc".into(), a.into());
    }
    t.insert("f1".into(), r.f1.into());
    t.insert("false_reject_rate".into(), r.false_reject_rate.into());
    t.insert("escape_rate".into(), r.escape_rate.into());
    let mut classes = toml::Table::new();
    for (class, c) in &r.per_class {
        classes.insert(class.clone(), c.detection_rate.into());
    }
    t.insert("detection_rate".into(), toml::Value::Table(classes));
    file.metrics = Some(t);
    let text = std::fs::read_to_string(&path)?;
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    file.write(&path, &header).map_err(anyhow::Error::msg)
}

/// One part as both models judged it.
struct Compared {
    part_id: String,
    active_reject: bool,
    active_score: Option<f64>,
    shadow_reject: bool,
    shadow_score: f64,
    review: Option<String>,
}

fn shadow(arg: &ConfigArg, run: Option<i64>) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let db = &config.record.database;
    let conn = crate::store::open_database(db)?;
    let mut stmt = conn.prepare(
        "SELECT p.part_id, p.score, p.threshold, s.score, s.threshold, s.model_name, s.model_version,
            (SELECT r.label FROM reviews r WHERE r.part_id = p.part_id ORDER BY r.id DESC LIMIT 1)
         FROM shadow_scores s JOIN parts p ON p.part_id = s.part_id
         WHERE s.score IS NOT NULL AND (?1 IS NULL OR p.run_id = ?1)
         ORDER BY p.id",
    )?;
    let mut models = std::collections::BTreeSet::new();
    let rows: Vec<Compared> = stmt
        .query_map([run], |r| {
            let (active_score, active_t): (Option<f64>, f64) = (r.get(1)?, r.get(2)?);
            let (shadow_score, shadow_t): (f64, f64) = (r.get(3)?, r.get(4)?);
            let model: (String, String) = (r.get(5)?, r.get(6)?);
            Ok((
                Compared {
                    part_id: r.get(0)?,
                    // The model's own verdict: a part without a score (a fault) counts as rejected by it.
                    active_reject: active_score.is_none_or(|s| s > active_t),
                    active_score,
                    shadow_reject: shadow_score > shadow_t,
                    shadow_score,
                    review: r.get(7)?,
                },
                model,
            ))
        })?
        .map(|r| {
            r.map(|(c, m)| {
                models.insert(format!("{} v{}", m.0, m.1));
                c
            })
        })
        .collect::<Result<_, _>>()?;
    let errors: i64 = conn.query_row(
        "SELECT count(*) FROM shadow_scores s JOIN parts p ON p.part_id = s.part_id
         WHERE s.score IS NULL AND (?1 IS NULL OR p.run_id = ?1)",
        [run],
        |r| r.get(0),
    )?;
    if rows.is_empty() {
        bail!(
            "{}: no shadow scores recorded{} (set [model] shadow_dir and run the line)",
            db.display(),
            run.map_or(String::new(), |r| format!(" in run {r}"))
        );
    }
    let count = |f: &dyn Fn(&Compared) -> bool| rows.iter().filter(|c| f(c)).count();
    let both_pass = count(&|c| !c.active_reject && !c.shadow_reject);
    let both_reject = count(&|c| c.active_reject && c.shadow_reject);
    let only_active = count(&|c| c.active_reject && !c.shadow_reject);
    let only_shadow = count(&|c| !c.active_reject && c.shadow_reject);
    let n = rows.len();
    println!(
        "shadow model {} on {n} parts of {}{}",
        models.into_iter().collect::<Vec<_>>().join(", "),
        db.display(),
        run.map_or(String::new(), |r| format!(" (run {r})"))
    );
    println!(
        "agreement       {:.1}% ({} of {n})",
        100.0 * (both_pass + both_reject) as f64 / n as f64,
        both_pass + both_reject
    );
    println!(
        "                {:>14} {:>14}",
        "shadow passes", "shadow rejects"
    );
    println!("active passes   {both_pass:>14} {only_shadow:>14}");
    println!("active rejects  {only_active:>14} {both_reject:>14}");
    if errors > 0 {
        println!("shadow errors   {errors} part(s) the shadow model could not score");
    }
    let reviewed: Vec<&Compared> = rows
        .iter()
        .filter(|c| c.review.is_some() && c.active_reject != c.shadow_reject)
        .collect();
    if !reviewed.is_empty() {
        let right = |c: &&&Compared, shadow: bool| {
            let reject = if shadow {
                c.shadow_reject
            } else {
                c.active_reject
            };
            reject == (c.review.as_deref() == Some("defect"))
        };
        println!(
            "reviewed disagreements {}: shadow right {}, active right {}",
            reviewed.len(),
            reviewed.iter().filter(|c| right(c, true)).count(),
            reviewed.iter().filter(|c| right(c, false)).count()
        );
    }
    let disagreements: Vec<&Compared> = rows
        .iter()
        .filter(|c| c.active_reject != c.shadow_reject)
        .collect();
    if !disagreements.is_empty() {
        println!("disagreements (first 20):");
        println!("  {:<16} {:>12} {:>12}  review", "part", "active", "shadow");
        for c in disagreements.iter().take(20) {
            let verdict = |r: bool| if r { "REJECT" } else { "PASS" };
            println!(
                "  {:<16} {:>6} {:>5} {:>6} {:>5}  {}",
                c.part_id,
                verdict(c.active_reject),
                c.active_score.map_or("-".into(), |s| format!("{s:.2}")),
                verdict(c.shadow_reject),
                format!("{:.2}", c.shadow_score),
                c.review.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}
