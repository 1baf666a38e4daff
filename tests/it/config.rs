//! Bad input: a malformed station.toml reports every problem with its field path; a manifest that contradicts
//! its ONNX model (or its checksum) is refused with a clear message.

use std::path::Path;

use inspection_station::config::ModelConfig;
use inspection_station::model::{Model, ModelError, sha256_hex};

use crate::common::demo_model;

fn copy_model(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["model.onnx", "manifest.toml"] {
        std::fs::copy(demo_model().join(file), to.join(file)).unwrap();
    }
}

fn load(dir: &Path) -> Result<Model, ModelError> {
    Model::load(&ModelConfig::at(dir), None)
}

fn edit_manifest(dir: &Path, from: &str, to: &str) {
    let path = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "manifest has no {from}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn the_demo_model_loads_and_scores() {
    let mut model = load(&demo_model()).unwrap();
    assert_eq!(model.info.name, "surface-defect");
    assert_eq!(
        model.info.sha256,
        sha256_hex(&std::fs::read(demo_model().join("model.onnx")).unwrap())
    );
    // A flat image has no local contrast: score 0, an all-zero map of the input's size.
    let out = model.infer(&vec![0.0; 256 * 256]).unwrap();
    assert!(out.score.abs() < 1e-4, "{}", out.score);
    assert_eq!(
        out.anomaly_map.as_ref().map(|m| (m.width, m.height)),
        Some((256, 256))
    );
    // One bright pixel gives local contrast.
    let mut spot = vec![0.0; 256 * 256];
    spot[128 * 256 + 128] = 2.0;
    assert!(model.infer(&spot).unwrap().score > 0.5);
}

#[test]
fn a_manifest_that_contradicts_the_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_model(dir.path());
    edit_manifest(dir.path(), "name = \"image\"", "name = \"pixels\"");
    edit_manifest(
        dir.path(),
        "shape = [1, 1, 256, 256]",
        "shape = [1, 1, 128, 128]",
    );
    edit_manifest(
        dir.path(),
        "anomaly_map = \"anomaly_map\"",
        "anomaly_map = \"heatmap\"",
    );
    let err = load(dir.path()).err().expect("must be refused");
    assert!(matches!(err, ModelError::Contract { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.onnx: manifest.toml contradicts the ONNX model"),
        "{msg}"
    );
    assert!(
        msg.contains("input \"pixels\" not in the model (its inputs: \"image\")"),
        "{msg}"
    );
    assert!(msg.contains("output \"heatmap\" not in the model"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    copy_model(dir.path());
    edit_manifest(
        dir.path(),
        "shape = [1, 1, 256, 256]",
        "shape = [1, 1, 128, 128]",
    );
    let msg = load(dir.path()).err().expect("must be refused").to_string();
    assert!(
        msg.contains("input \"image\" has shape [1, 1, 256, 256] in the model, manifest says [1, 1, 128, 128]"),
        "{msg}"
    );
}

#[test]
fn a_changed_model_file_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    copy_model(dir.path());
    let mut bytes = std::fs::read(dir.path().join("model.onnx")).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(dir.path().join("model.onnx"), bytes).unwrap();
    let err = load(dir.path()).err().expect("must be refused");
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("sha256 is"), "{err}");
}

#[test]
fn a_malformed_manifest_names_its_file_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    copy_model(dir.path());
    edit_manifest(dir.path(), "mean = [0.5]", "mean = [0.5, 0.5]");
    edit_manifest(dir.path(), "color = \"gray\"", "color = \"rgb\"");
    let msg = load(dir.path()).err().expect("must be refused").to_string();
    assert!(msg.contains("manifest.toml"), "{msg}");
    assert!(
        msg.contains("input.shape: color \"Rgb\" has 3 channel(s)"),
        "{msg}"
    );
    assert!(
        msg.contains("input.mean/std: expected 3 value(s) each, got 2 and 1"),
        "{msg}"
    );
}
