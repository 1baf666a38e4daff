//! `station bench`: runs parts through the real pipeline, then times the bare model (`session.run` alone) on the
//! same frames, and reports per-stage latency percentiles and the end-to-end / bare-model ratio: the overhead
//! figure we track. Both measurements come from the same run, on the same machine.

use std::time::Instant;

use anyhow::Context;

use super::{ConfigArg, load_config, runtime};
use crate::capture;
use crate::metrics::{Latencies, Spread};
use crate::model::Model;
use crate::pipeline::{self, RunOptions};
use crate::preprocess::Preprocessor;

pub fn bench(arg: &ConfigArg, parts: u64) -> anyhow::Result<()> {
    let mut config = load_config(arg)?;
    // The bench measures the station, not a PLC's round trips or the disk.
    config.plc.link = crate::config::PlcLink::Off;
    // Nor the acoustic path: a part's verdict would wait for its post-trigger sound window, hiding the vision
    // pipeline's overhead. `cargo bench --bench audio` measures the acoustic path.
    if config.audio.take().is_some() {
        println!(
            "(acoustic scoring is off for this measurement; `cargo bench --bench audio` measures it)"
        );
    }
    let scratch = tempdir_in_data(&config.station.data_dir)?;
    config.record.database = scratch.join("bench.sqlite");
    config.record.images_dir = scratch.join("images");
    let rt = runtime()?;
    let summary = rt
        .block_on(pipeline::run(
            &config,
            RunOptions {
                max_parts: Some(parts),
                status_line: false,
                ready: None,
                tap: None,
            },
            std::future::pending::<()>(),
        ))
        .context("pipeline run")?;

    // The bare model on the same frames (same source config, same preprocessing).
    let mut model = Model::load(&config.model, config.station.onnxruntime_path.as_deref())?;
    let pre = Preprocessor::new(&config.preprocess, &model.manifest.input);
    let gray = capture::decode_gray(&model.manifest.input, config.recipes.len());
    let mut source = capture::open(&config.source, gray)?;
    let mut bare = Latencies::default();
    let mut tensor = Vec::new();
    for _ in 0..summary.parts {
        let Ok(frame) = source.grab() else { continue };
        if pre.run(&frame.image, &mut tensor).is_err() {
            continue;
        }
        let t = Instant::now();
        if model.infer(&tensor).is_ok() {
            bare.push(t.elapsed());
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);

    println!(
        "bench: {} parts, trigger {:?}, model {} v{}",
        summary.parts, config.trigger, model.info.name, model.info.version
    );
    println!("{:<22}{:>10}{:>10}", "stage", "p50 ms", "p99 ms");
    let row = |name: &str, s: Option<Spread>| match s {
        Some(s) => println!("{name:<22}{:>10.3}{:>10.3}", s.p50_ms, s.p99_ms),
        None => println!("{name:<22}{:>10}{:>10}", "-", "-"),
    };
    row("capture", summary.capture);
    row("preprocess", summary.preprocess);
    row("inference", summary.inference);
    row("end-to-end", summary.end_to_end);
    row("captured -> verdict", summary.after_capture);
    let bare_spread = Spread::of(&bare);
    row("bare session.run", bare_spread);
    if let (Some(e2e), Some(b)) = (summary.end_to_end, bare_spread) {
        println!(
            "overhead ratio (end-to-end / bare session.run): p50 {:.2}x  p99 {:.2}x",
            e2e.p50_ms / b.p50_ms,
            e2e.p99_ms / b.p99_ms
        );
    }
    if let (Some(after), Some(b)) = (summary.after_capture, bare_spread) {
        println!(
            "station overhead ratio without the camera ((verdict - captured) / bare session.run): p50 {:.2}x  p99 {:.2}x",
            after.p50_ms / b.p50_ms,
            after.p99_ms / b.p99_ms
        );
    }
    println!(
        "fail-safe during bench: frame faults {}, model errors {}, deadline misses {}, overloaded {}",
        summary.frame_faults, summary.model_errors, summary.deadline_misses, summary.overloaded
    );
    Ok(())
}

pub(super) fn tempdir_in_data(data_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = data_dir.join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
