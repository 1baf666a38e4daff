//! `station train vision`: learns an anomaly model from good images only (defect images, when given, only
//! validate it, pick the best design and calibrate the threshold) and writes `<out>/<name>/<version>/`.

use std::path::PathBuf;

use crate::model::manifest::ColorOrder;
use crate::vision::{self, Design, ThresholdBy, TrainOptions};

#[derive(clap::Args)]
pub struct TrainVisionArgs {
    /// Folder of good images (sub-folders included)
    #[arg(long, value_name = "DIR")]
    good: PathBuf,
    /// Folder of defect images, a sub-folder per defect class: validation and threshold calibration only
    #[arg(long, value_name = "DIR")]
    defect: Option<PathBuf>,
    /// Model name (the folder under --out)
    #[arg(long)]
    name: String,
    /// Models folder
    #[arg(long, value_name = "DIR", default_value = "models")]
    out: PathBuf,
    /// Version [default: the next free number]
    #[arg(long)]
    version: Option<String>,
    /// Model design [default: compare all three when --defect is given and keep the best, else patchcore]
    #[arg(long, value_enum)]
    design: Option<Design>,
    /// Model input size in pixels (square; a multiple of 16)
    #[arg(long = "size", value_name = "PX", default_value_t = 256)]
    size_px: usize,
    /// Color of the model input: gray or rgb
    #[arg(long, default_value = "gray", value_parser = parse_color)]
    color: ColorOrder,
    /// Crop of the images the model sees, as the station's [preprocess] roi: x,y,width,height
    #[arg(long, value_parser = parse_roi)]
    roi: Option<[i32; 4]>,
    /// Features: pca (a filter bank learned from the good images) or efficientnet-lite0 (ImageNet weights,
    /// installed by scripts/setup.sh; docs/BACKBONE.md)
    #[arg(long, default_value = "pca")]
    backbone: String,
    /// Folder of converted backbones
    #[arg(long, value_name = "DIR", default_value = "models/backbones")]
    backbones: PathBuf,
    /// The backbone's stages whose maps are the features, e.g. 2 (fine textures) or 5,6 (real surface
    /// defects) [default: compare 2 and 5,6 when --defect is given, else 2]
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<usize>>,
    /// Channels the backbone's features are randomly projected to, when they have more
    #[arg(long, default_value_t = 100)]
    dims: usize,
    /// Inspection mask: an image of what the model sees (the ROI), white inspected, black left out of the
    /// score (a label, a hole)
    #[arg(long, value_name = "FILE")]
    mask: Option<PathBuf>,
    /// Score the ROI at its own resolution in tiles of this many pixels (small defects on large frames;
    /// --size is then unused)
    #[arg(long = "tile", value_name = "PX")]
    tile: Option<usize>,
    /// Overlap of neighbouring tiles in pixels
    #[arg(long = "overlap", value_name = "PX", default_value_t = 32)]
    overlap: usize,
    /// PCA filters learned per scale
    #[arg(long, default_value_t = 8)]
    filters: usize,
    /// Filter size in pixels (odd)
    #[arg(long = "kernel", value_name = "PX", default_value_t = 3)]
    kernel_px: usize,
    /// Memory bank size (patchcore)
    #[arg(long, default_value_t = 1024)]
    coreset: usize,
    /// Covariance shrinkage (gaussian, padim)
    #[arg(long, default_value_t = 0.05)]
    shrinkage: f64,
    /// Fraction of the good images held out to calibrate the threshold
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// False-reject rate the threshold aims at on the held-out good images (--threshold-by frr)
    #[arg(long, default_value_t = 0.005)]
    target_frr: f64,
    /// How to choose the threshold [default: f1 with --defect, else frr]
    #[arg(long, value_enum)]
    threshold_by: Option<ThresholdBy>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_color(s: &str) -> Result<ColorOrder, String> {
    match s {
        "gray" => Ok(ColorOrder::Gray),
        "rgb" => Ok(ColorOrder::Rgb),
        _ => Err(format!("expected gray or rgb, got {s:?}")),
    }
}

pub fn parse_roi(s: &str) -> Result<[i32; 4], String> {
    let v: Vec<i32> = s
        .split(',')
        .map(|p| p.trim().parse::<i32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("expected x,y,width,height: {e}"))?;
    match v.as_slice() {
        [x, y, w, h] if *x >= 0 && *y >= 0 && *w > 0 && *h > 0 => Ok([*x, *y, *w, *h]),
        _ => Err(format!(
            "expected x,y,width,height with x, y >= 0 and width, height > 0, got {s:?}"
        )),
    }
}

pub fn train(args: &TrainVisionArgs) -> anyhow::Result<()> {
    let command = std::iter::once("station".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let options = TrainOptions {
        defect: args.defect.clone(),
        out: args.out.clone(),
        version: args.version.clone(),
        design: args.design,
        size_px: args.size_px,
        color: args.color,
        roi: args.roi,
        backbone: args.backbone.clone(),
        backbones: args.backbones.clone(),
        layers: args.layers.clone(),
        dims: args.dims,
        mask: args.mask.clone(),
        tile: args.tile,
        overlap: args.overlap,
        filters: args.filters,
        kernel_px: args.kernel_px,
        coreset: args.coreset,
        shrinkage: args.shrinkage,
        holdout: args.holdout,
        target_frr: args.target_frr,
        threshold_by: args.threshold_by,
        seed: args.seed,
        command,
        ..TrainOptions::new(args.good.clone(), &args.name)
    };
    let trained = vision::train(&options)?;
    if trained.compared.len() > 1 {
        println!("features                design      AUROC   fit s   inference ms/image");
        for r in &trained.compared {
            println!(
                "{:<23} {:<10} {:>6}  {:>6.2}  {:>8.2}",
                r.features,
                r.design,
                r.auroc.map_or("-".into(), |a| format!("{a:.4}")),
                r.fit_s,
                r.infer_ms_per_image
            );
        }
    }
    let m = &trained.manifest;
    let training = m.training.as_ref();
    println!(
        "trained {} v{} ({}) in {:.1} s: {} good images ({} held out), {} defect images",
        m.name,
        m.version,
        training.map_or("", |t| t.design.as_str()),
        training.map_or(0.0, |t| t.seconds),
        training.map_or(0, |t| t.good_files),
        training.map_or(0, |t| t.calibration_files),
        training.map_or(0, |t| t.defect_files),
    );
    println!("threshold {} ({})", m.threshold.value, m.threshold.method);
    println!("wrote {}", trained.dir.display());
    if trained.promoted {
        println!(
            "{} v{} is the active version (no version of {} was active)",
            m.name, m.version, m.name
        );
    } else {
        println!(
            "not active yet: `station model promote {} {}` puts it in force",
            m.name, m.version
        );
    }
    Ok(())
}
