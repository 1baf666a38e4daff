//! Defect models on ImageNet features (`station train vision --backbone efficientnet-lite0`): the texture set's
//! quality bars, real solar-cell defects (ELPV) against the PCA design, one self-contained ONNX graph, and clear
//! errors for a missing, damaged or misused backbone.

use std::path::{Path, PathBuf};

use inspection_station::config::ModelConfig;
use inspection_station::model::Model;

use crate::cli::{station as cli, succeeded};
use crate::common::{python, root, shared_data};
use crate::vision::train_and_evaluate;

fn backbones() -> String {
    let dir = root().join("models/backbones");
    assert!(
        dir.join("efficientnet-lite0/features.onnx").is_file(),
        "{} is missing: the ImageNet backbone is installed and converted by `bash scripts/setup.sh`",
        dir.display()
    );
    dir.to_string_lossy().into_owned()
}

/// `train vision` arguments for the ImageNet backbone at 256 px.
fn lite0_256(backbones: &str) -> [&str; 6] {
    [
        "--backbone",
        "efficientnet-lite0",
        "--backbones",
        backbones,
        "--size",
        "256",
    ]
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn imagenet_features_meet_the_texture_bars_in_one_graph() {
    let work = tempfile::tempdir().unwrap();
    let bb = backbones();
    let mut figures = Vec::new();
    for (texture, bar) in [("brick", 0.99), ("grass", 0.95), ("gravel", 0.92)] {
        let (r, model) = train_and_evaluate(work.path(), texture, texture, &lite0_256(&bb));
        let r = &r["report"];
        let auroc = r["image_auroc"].as_f64().unwrap();
        let pixel = r["pixel_auroc"].as_f64().unwrap();
        let detected = r["detection_at_1pct_frr"].as_f64().unwrap();
        figures.push(format!(
            "{texture}: image AUROC {auroc:.4}, pixel AUROC {pixel:.4}, {:.0}% detected at 1% false rejects",
            detected * 100.0
        ));
        assert!(
            auroc >= bar,
            "{texture} below {bar}: {}",
            figures.join("; ")
        );
        assert!(pixel > 0.75, "{}", figures.join("; "));
        let loaded = Model::load(&ModelConfig::at(&model), None).unwrap();
        let training = loaded.manifest.training.unwrap();
        assert_eq!(training.design, "patchcore");
        assert_eq!(
            training.params["backbone"].as_str(),
            Some("efficientnet-lite0")
        );
        assert_eq!(training.params["layers"].as_array().unwrap().len(), 1);
        let input = &loaded.manifest.input;
        assert_eq!(
            (input.scale, input.mean[0], input.std[0]),
            (1.0, 127.0, 128.0)
        );
        // One graph holding the backbone: the model folder has nothing else to load, and the reference checker
        // accepts it.
        let files: Vec<String> = std::fs::read_dir(&model)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        let checked = std::process::Command::new(python())
            .args([
                "-c",
                "import onnx,sys; m=onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); \
                 assert any(n.name.startswith('backbone.') for n in m.graph.node)",
            ])
            .arg(model.join("model.onnx"))
            .status()
            .unwrap();
        assert!(checked.success());
    }
    eprintln!("ImageNet features: {}", figures.join("; "));
}

/// ELPV's mono cells: good = probability 0, defective = 1 (and the experts' uncertain 1/3 and 2/3 apart). 300
/// of the 588 good cells, spread evenly over the file order, train; the other 288 test. (The first 300 in file
/// order against the rest is a harder split, a shift between batches of cells: docs/MODELS.md has both.)
fn elpv_split(work: &Path) -> PathBuf {
    let data = shared_data("elpv");
    let labels = std::fs::read_to_string(data.join("labels.csv")).unwrap();
    let mut goods = 0;
    for line in labels.lines().skip(1) {
        let mut f = line.split(',');
        let (file, p) = (f.next().unwrap(), f.next().unwrap());
        let folder = match p {
            "0.0000" => {
                goods += 1;
                if goods * 300 / 588 > (goods - 1) * 300 / 588 {
                    "train/good"
                } else {
                    "test/good"
                }
            }
            "1.0000" => "test/defect-1/defect",
            "0.6667" => "test/defect-2of3/defect",
            "0.3333" => "test/defect-1of3/defect",
            other => panic!("labels.csv: unexpected probability {other}"),
        };
        let dir = work.join("elpv").join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        let name = Path::new(file).file_name().unwrap();
        std::os::unix::fs::symlink(data.join(file), dir.join(name)).unwrap();
    }
    assert_eq!(goods, 588);
    work.join("elpv")
}

/// `station evaluate` of `model` on `set`'s test/good against test/`defect`: report.json.
fn evaluate_all(work: &Path, model: &Path, set: &Path, defect: &str) -> serde_json::Value {
    let out = work.join(format!(
        "ev-{}-{defect}",
        model.file_name().unwrap().to_string_lossy()
    ));
    succeeded(&cli(
        &[
            "evaluate",
            "--model",
            &s(model),
            "--good",
            &s(&set.join("test/good")),
            "--defect",
            &s(&set.join(format!("test/{defect}"))),
            "--out",
            &s(&out),
            "--no-record",
        ],
        work,
    ));
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()
}

fn evaluate(work: &Path, model: &Path, set: &Path, defect: &str) -> serde_json::Value {
    evaluate_all(work, model, set, defect)["report"].clone()
}

/// Scores by path (relative to the good or defect folder) from an evaluation's `scores.<kind>`.
fn scores(all: &serde_json::Value, kind: &str) -> std::collections::BTreeMap<String, f64> {
    all["scores"][kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn on_real_solar_cell_defects_imagenet_features_beat_the_pca_design() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let set = elpv_split(w);
    let bb = backbones();
    let models = w.join("models");
    let mut table = vec!["design                  defects  AUROC   detected at 1% FRR".to_string()];
    let mut auroc_of = std::collections::BTreeMap::new();
    for (name, args) in [
        ("pca", vec!["--design", "patchcore"]),
        (
            "lite0-5-6-padim",
            vec![
                "--backbone",
                "efficientnet-lite0",
                "--backbones",
                &bb,
                "--layers",
                "5,6",
                "--design",
                "padim",
            ],
        ),
    ] {
        let mut argv = vec![
            "train".to_string(),
            "vision".into(),
            "--good".into(),
            s(&set.join("train/good")),
            "--name".into(),
            name.into(),
            "--out".into(),
            s(&models),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        succeeded(&cli(&argv, w));
        for defect in ["defect-1", "defect-2of3", "defect-1of3"] {
            let r = evaluate(w, &models.join(name).join("1"), &set, defect);
            assert_eq!(r["good_images"], 288);
            let auroc = r["image_auroc"].as_f64().unwrap();
            let detected = r["detection_at_1pct_frr"].as_f64().unwrap();
            table.push(format!(
                "{name:<23} {defect:<8} {auroc:.4}  {:.1}%",
                detected * 100.0
            ));
            auroc_of.insert((name, defect), auroc);
        }
    }
    let table = table.join("\n");
    eprintln!("ELPV mono cells, 300 good to train, 288 good to test:\n{table}");
    let (pca, deep) = (
        auroc_of[&("pca", "defect-1")],
        auroc_of[&("lite0-5-6-padim", "defect-1")],
    );
    // Measured when written: PCA 0.880, EfficientNet-Lite0 stages 5,6 PaDiM 0.947.
    assert!(deep >= 0.92, "{table}");
    assert!(deep >= pca + 0.04, "{table}");
}

#[test]
fn a_missing_damaged_or_misused_backbone_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let good = w.join("good");
    std::fs::create_dir_all(&good).unwrap();
    let photo = shared_data("textures").join("brick.png");
    for i in 0..8 {
        std::fs::copy(&photo, good.join(format!("{i}.png"))).unwrap();
    }
    let train = |extra: &[&str]| {
        let g = s(&good);
        let mut args = vec![
            "train", "vision", "--good", &g, "--name", "m", "--out", "models",
        ];
        args.extend_from_slice(extra);
        let out = cli(&args, w);
        assert!(!out.status.success(), "{extra:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let lite0 = |dir: &str, extra: &[&str]| {
        train(
            &[
                &["--backbone", "efficientnet-lite0", "--backbones", dir],
                extra,
            ]
            .concat(),
        )
    };
    let err = lite0(&s(&w.join("none")), &[]);
    assert!(
        err.contains("manifest.toml") && err.contains("scripts/setup.sh"),
        "{err}"
    );
    let err = train(&["--backbone", "resnet"]);
    assert!(
        err.contains("--backbone") && err.contains("efficientnet-lite0"),
        "{err}"
    );
    let err = train(&["--layers", "2"]);
    assert!(err.contains("--layers") && err.contains("pca"), "{err}");
    let bb = backbones();
    let err = lite0(&bb, &["--layers", "4"]);
    assert!(
        err.contains("no stage 4") && err.contains("2, 3, 5, 6, 7"),
        "{err}"
    );
    // A damaged graph is refused by its sha256 before anything reads it.
    let copy = w.join("copy/efficientnet-lite0");
    std::fs::create_dir_all(&copy).unwrap();
    let source = Path::new(&bb).join("efficientnet-lite0");
    std::fs::copy(source.join("manifest.toml"), copy.join("manifest.toml")).unwrap();
    let mut bytes = std::fs::read(source.join("features.onnx")).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(copy.join("features.onnx"), bytes).unwrap();
    let err = lite0(&s(&w.join("copy")), &[]);
    assert!(
        err.contains("features.onnx") && err.contains("sha256"),
        "{err}"
    );
    assert!(!w.join("models/m").exists(), "nothing written");
}

/// `n` good test crops of the brick set with a dark disc drawn at (`x`, `y`), into `dir`.
fn with_disc(set: &Path, dir: &Path, x: i32, y: i32, n: usize) -> Vec<String> {
    use opencv::core::{Point, Scalar, Vector};
    use opencv::{imgcodecs, imgproc};
    std::fs::create_dir_all(dir).unwrap();
    let mut goods: Vec<PathBuf> = std::fs::read_dir(set.join("test/good"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    goods.sort();
    let mut names = Vec::new();
    for (i, good) in goods.iter().take(n).enumerate() {
        names.push(good.file_name().unwrap().to_string_lossy().into_owned());
        let mut img = imgcodecs::imread(s(good), imgcodecs::IMREAD_COLOR).unwrap();
        imgproc::circle(
            &mut img,
            Point::new(x, y),
            10,
            Scalar::all(0.0),
            -1,
            imgproc::LINE_AA,
            0,
        )
        .unwrap();
        let out = dir.join(format!("{i}.png"));
        assert!(imgcodecs::imwrite(s(&out), &img, &Vector::new()).unwrap());
    }
    names
}

#[test]
fn a_mask_leaves_its_area_out_of_the_score_and_the_map() {
    use opencv::core::{Mat, Rect, Scalar, Vector};
    use opencv::{imgcodecs, imgproc};
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let bb = backbones();
    let set = w.join("brick");
    succeeded(&cli(
        &[
            "generate-texture-set",
            "--texture",
            &s(&shared_data("textures").join("brick.png")),
            "--out",
            &s(&set),
        ],
        w,
    ));
    // The crops are 128 px: a disc in the left half, one in the right.
    let originals = with_disc(&set, &w.join("probe/test/defect/left"), 32, 64, 6);
    with_disc(&set, &w.join("probe/test/defect/right"), 96, 64, 6);
    std::os::unix::fs::symlink(set.join("test/good"), w.join("probe/test/good")).unwrap();
    // A mask at half the crop's size: the left half is not inspected.
    let mut mask =
        Mat::new_rows_cols_with_default(64, 64, opencv::core::CV_8UC1, Scalar::all(255.0)).unwrap();
    imgproc::rectangle(
        &mut mask,
        Rect::new(0, 0, 32, 64),
        Scalar::all(0.0),
        -1,
        imgproc::LINE_8,
        0,
    )
    .unwrap();
    let mask_path = w.join("mask.png");
    assert!(imgcodecs::imwrite(s(&mask_path), &mask, &Vector::new()).unwrap());
    let mut detection = std::collections::BTreeMap::new();
    for (name, masked) in [("plain", false), ("masked", true)] {
        let (good, models, m) = (
            s(&set.join("train/good")),
            s(&w.join("models")),
            s(&mask_path),
        );
        let mut args = vec![
            "train", "vision", "--good", &good, "--name", name, "--out", &models,
        ];
        args.extend(lite0_256(&bb));
        if masked {
            args.extend(["--mask", &m]);
        }
        succeeded(&cli(&args, w));
        let model = Model::load(
            &ModelConfig::at(w.join("models").join(name).join("1")),
            None,
        )
        .unwrap();
        let params = model.manifest.training.unwrap().params;
        assert_eq!(params.contains_key("mask_sha256"), masked);
        if masked {
            let share = params["mask_inspected_cells"].as_float().unwrap();
            assert!((share - 0.5).abs() < 0.05, "{share}");
        }
        let all = evaluate_all(
            w,
            &w.join("models").join(name).join("1"),
            &w.join("probe"),
            "defect",
        );
        let r = &all["report"];
        let (good, defect) = (scores(&all, "good"), scores(&all, "defect"));
        for (i, original) in originals.iter().enumerate() {
            let (before, left) = (good[original], defect[&format!("left/{i}.png")]);
            // Masked, the disc on the left changes nothing; unmasked, it is the highest point of the map.
            let unchanged = (left - before).abs() <= 1e-3 * before;
            assert_eq!(
                unchanged, masked,
                "{name} {original}: {before} without the disc, {left} with it"
            );
        }
        for side in ["left", "right"] {
            detection.insert(
                (name, side),
                r["per_class"][side]["detection_rate"].as_f64().unwrap(),
            );
        }
    }
    let seen = format!("{detection:?}");
    assert_eq!(detection[&("plain", "left")], 1.0, "{seen}");
    assert_eq!(detection[&("plain", "right")], 1.0, "{seen}");
    assert_eq!(detection[&("masked", "right")], 1.0, "{seen}");
    // A mask of the wrong shape, or one that hides everything, is refused with the file named.
    let wide = Mat::new_rows_cols_with_default(64, 128, opencv::core::CV_8UC1, Scalar::all(255.0))
        .unwrap();
    let black =
        Mat::new_rows_cols_with_default(64, 64, opencv::core::CV_8UC1, Scalar::all(0.0)).unwrap();
    for (file, img, expected) in [
        ("wide.png", wide, "aspect"),
        ("black.png", black, "no cell"),
    ] {
        let path = w.join(file);
        assert!(imgcodecs::imwrite(s(&path), &img, &Vector::new()).unwrap());
        let (good, p) = (s(&set.join("train/good")), s(&path));
        let out = cli(
            &[
                "train", "vision", "--good", &good, "--name", "bad", "--mask", &p, "--out",
                "models",
            ],
            w,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(file) && err.contains(expected),
            "{err}"
        );
    }
}

#[test]
fn tiles_keep_the_small_defects_that_shrinking_the_frame_loses() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let bb = backbones();
    // 256 px crops scored by a 128 px model: shrunk whole, or at their own resolution in 3 x 3 tiles.
    let set = w.join("gravel-256");
    succeeded(&cli(
        &[
            "generate-texture-set",
            "--texture",
            &s(&shared_data("textures").join("gravel.png")),
            "--out",
            &s(&set),
            "--crop",
            "256",
        ],
        w,
    ));
    let mut auroc = std::collections::BTreeMap::new();
    for (name, mode) in [("shrunk", ["--size", "128"]), ("tiled", ["--tile", "128"])] {
        let (good, models) = (s(&set.join("train/good")), s(&w.join("models")));
        let mut args = vec![
            "train",
            "vision",
            "--good",
            &good,
            "--name",
            name,
            "--out",
            &models,
            "--backbone",
            "efficientnet-lite0",
            "--backbones",
            &bb,
        ];
        args.extend(mode);
        succeeded(&cli(&args, w));
        let model = w.join("models").join(name).join("1");
        let r = evaluate(w, &model, &set, "defect");
        auroc.insert(name, r["image_auroc"].as_f64().unwrap());
        let loaded = Model::load(&ModelConfig::at(&model), None).unwrap();
        let params = loaded.manifest.training.unwrap().params;
        if name == "tiled" {
            // The model takes the whole crop; the map comes back at its size.
            assert_eq!(loaded.manifest.input.shape, [1, 1, 256, 256]);
            assert_eq!(params["tiles"].as_integer(), Some(9));
            assert_eq!(params["overlap_px"].as_integer(), Some(32));
        }
    }
    // Measured when written: shrunk 0.739, tiled 0.896 (and 0.886 for the whole crop at 256 px).
    assert!(auroc["tiled"] >= auroc["shrunk"] + 0.08, "{auroc:?}");
    // A tiling that does not fit is refused with every reason at once.
    let good = s(&set.join("train/good"));
    let out = cli(
        &[
            "train",
            "vision",
            "--good",
            &good,
            "--name",
            "bad",
            "--backbone",
            "efficientnet-lite0",
            "--backbones",
            &bb,
            "--tile",
            "300",
            "--overlap",
            "4",
        ],
        w,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--overlap") && err.contains("at least one tile"),
        "{err}"
    );
    let out = cli(
        &[
            "train", "vision", "--good", &good, "--name", "bad", "--tile", "128",
        ],
        w,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tile need"));
}
