//! Criterion benches of the vision models at the default input size (256 px gray, the demo's ROI): training time
//! of each design on 60 good synthetic parts (48 learned from, 12 held out), and inference time per image of the
//! trained model through the station's own `Model` (ONNX Runtime, one thread), beside the spine's band-pass model.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use inspection_station::capture::synthetic::{INSPECTED, SyntheticParams, generate, write_parts};
use inspection_station::config::{ModelConfig, PreprocessConfig, Roi};
use inspection_station::model::Model;
use inspection_station::preprocess::Preprocessor;
use inspection_station::vision::{self, Design, TrainOptions};

fn vision_models(c: &mut Criterion) {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = work.path().join("parts");
    let params = SyntheticParams {
        seed: 3,
        defect_fraction: 0.0,
    };
    write_parts(&good, None, &params, 60).unwrap_or_else(|e| panic!("{e}"));
    let roi = [INSPECTED.x, INSPECTED.y, INSPECTED.width, INSPECTED.height];
    let frame = generate(&params, 100)
        .unwrap_or_else(|e| panic!("{e}"))
        .image;
    let mut group = c.benchmark_group("vision");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let baseline = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/surface-defect/1");
    let mut models = vec![("band-pass (spine demo v1)".to_string(), baseline)];
    for design in Design::ALL {
        let options = TrainOptions {
            design: Some(design),
            roi: Some(roi),
            out: work.path().join("models"),
            show_progress: false,
            ..TrainOptions::new(good.join("good"), design.name())
        };
        group.bench_function(
            format!("train {} (60 images, 256 px)", design.name()),
            |b| b.iter(|| vision::train(&options).unwrap_or_else(|e| panic!("{e}"))),
        );
        models.push((
            design.name().to_string(),
            work.path().join("models").join(design.name()).join("1"),
        ));
    }
    for (name, dir) in models {
        let mut model = Model::load(&ModelConfig::at(&dir), None).unwrap_or_else(|e| panic!("{e}"));
        let roi = Roi {
            x: roi[0],
            y: roi[1],
            width: roi[2],
            height: roi[3],
        };
        let pre = Preprocessor::new(
            &PreprocessConfig {
                roi: Some(roi),
                calibration: None,
            },
            &model.manifest.input,
        );
        let mut tensor = Vec::new();
        pre.run(&frame, &mut tensor)
            .unwrap_or_else(|e| panic!("{e}"));
        group.bench_function(format!("infer {name} (256 px)"), |b| {
            b.iter(|| model.infer(&tensor).unwrap_or_else(|e| panic!("{e}")))
        });
    }
    group.finish();
}

criterion_group!(benches, vision_models);
criterion_main!(benches);
