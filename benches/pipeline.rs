//! Criterion benches of the CPU stages on the demo's frames: preprocess (OpenCV crop, gray, normalise into the
//! tensor) and inference (the demo model's `session.run` through ort). `station bench` measures the whole
//! pipeline against the bare model on the same frames.

use criterion::{Criterion, criterion_group, criterion_main};

use inspection_station::capture::synthetic::{INSPECTED, SyntheticParams, generate};
use inspection_station::config::{ModelConfig, PreprocessConfig, Roi};
use inspection_station::model::Model;
use inspection_station::preprocess::Preprocessor;

fn stages(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/surface-defect");
    let mut model = Model::load(&ModelConfig::at(dir), None).unwrap_or_else(|e| panic!("{e}"));
    let roi = Roi {
        x: INSPECTED.x,
        y: INSPECTED.y,
        width: INSPECTED.width,
        height: INSPECTED.height,
    };
    let pre = Preprocessor::new(
        &PreprocessConfig {
            roi: Some(roi),
            calibration: None,
        },
        &model.manifest.input,
    );
    let params = SyntheticParams {
        seed: 1,
        defect_fraction: 0.2,
    };
    let frame = generate(&params, 0).unwrap().image;
    let mut tensor = Vec::with_capacity(pre.tensor_len());

    c.bench_function("preprocess (crop, gray, normalise 256x256)", |b| {
        b.iter(|| pre.run(&frame, &mut tensor).unwrap())
    });
    pre.run(&frame, &mut tensor).unwrap();
    c.bench_function(
        "inference (demo model, the active surface-defect version, session.run)",
        |b| b.iter(|| model.infer(&tensor).unwrap()),
    );
    c.bench_function("synthetic part generation", |b| {
        b.iter(|| generate(&params, 3).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = stages
}
criterion_main!(benches);
