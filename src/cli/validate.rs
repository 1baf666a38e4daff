//! `station validate`: checks the config, the model against its manifest and ONNX file, the frame source, the
//! acoustic model and audio input (with `[audio]`), and the PLC's reachability, without running the line. Prints
//! one `ok` line per check.

use anyhow::Context;

use super::{ConfigArg, PlcUnreachable, load_config, runtime};
use crate::capture;
use crate::config::PlcLink;
use crate::model::Model;
use crate::plc::{self, Endpoint, sim::SimPlc};

/// Whether the model suits this line: the crop it was trained on against the config's, and its measured
/// inference time against the trigger rate and the verdict deadline. Each misfit is one warning.
fn model_fit(config: &crate::config::Config, model: &mut Model) -> anyhow::Result<Vec<String>> {
    use crate::model::manifest::ModelKind;
    use crate::trigger::TriggerConfig;
    let mut warnings = Vec::new();
    let roi = config.preprocess.roi.map(|r| [r.x, r.y, r.width, r.height]);
    let shown = |r: Option<[i32; 4]>| {
        r.map_or("the whole frame".to_string(), |[x, y, w, h]| {
            format!("the ROI {x},{y},{w},{h}")
        })
    };
    match (&model.manifest.training, model.manifest.kind) {
        (Some(t), _) if t.roi != roi => warnings.push(format!(
            "the model was trained on {}, but [preprocess] gives it {}: its scores and threshold do not hold \
             for what it sees here",
            shown(t.roi),
            shown(roi)
        )),
        (None, ModelKind::Anomalib) if roi.is_some() => warnings.push(format!(
            "anomalib model with {}: anomalib models are usually trained on whole frames, and one that was \
             rejects every cropped part; check that its training images were this crop",
            shown(roi)
        )),
        _ => {}
    }
    let shape = &model.manifest.input.shape;
    let tensor = vec![0f32; shape.iter().skip(1).product::<i64>() as usize];
    model.infer(&tensor)?; // warm-up
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let started = std::time::Instant::now();
            model
                .infer(&tensor)
                .map(|_| started.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let infer_ms = times[2];
    println!("ok  model inference {infer_ms:.1} ms per part (median of 5, this machine)");
    let deadline_ms = config.decision.deadline_ms as f64;
    if infer_ms >= deadline_ms {
        warnings.push(format!(
            "the model takes {infer_ms:.0} ms per part, at or over decision.deadline_ms ({deadline_ms:.0}): every \
             part would be rejected fail-safe"
        ));
    }
    if let TriggerConfig::Interval { interval_us } = config.trigger
        && infer_ms * 1000.0 >= interval_us as f64
    {
        let interval_ms = interval_us as f64 / 1000.0;
        warnings.push(format!(
            "the model takes {infer_ms:.0} ms per part, at or over trigger.interval_ms ({interval_ms}): the line \
             cannot keep up, and parts would be rejected as overloaded"
        ));
    }
    Ok(warnings)
}

pub fn validate(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let pace = config.pace_problems();
    if !pace.is_empty() {
        return Err(crate::config::ConfigError::Invalid {
            file: config.file.clone(),
            problems: pace,
        }
        .into());
    }
    println!("ok  config {}", config.file);
    let mut model = Model::load(&config.model, config.station.onnxruntime_path.as_deref())?;
    println!(
        "ok  model {} v{} ({}; sha256 {}; input {:?} {:?}; threshold {})",
        model.info.name,
        model.info.version,
        model.dir.display(),
        &model.info.sha256[..12],
        model.manifest.input.shape,
        model.manifest.input.layout,
        model.info.threshold
    );
    for warning in model_fit(&config, &mut model)? {
        println!("warn {warning}");
    }
    if let Some(registry) = &model.registry {
        println!(
            "ok  model registry {}: the active version; a promotion is taken up while running",
            registry.display()
        );
    }
    if let Some(dir) = &config.model.shadow_dir {
        let shadow =
            crate::model::shadow::load(dir, &model, config.station.onnxruntime_path.as_deref())?;
        println!(
            "ok  shadow model {} v{} ({}; threshold {}): scored and recorded, never rejects",
            shadow.info.name,
            shadow.info.version,
            shadow.dir.display(),
            shadow.info.threshold
        );
    }
    let gray = capture::decode_gray(&model.manifest.input, config.recipes.len());
    let source = capture::open(&config.source, gray).context("frame source")?;
    println!("ok  source {}", source.describe());
    if let Some(audio) = &config.audio {
        match crate::pipeline::open_acoustic(audio)? {
            Some((input, model)) => println!(
                "ok  acoustic model {} v{} ({}; sha256 {}; threshold {}), audio: {}",
                model.info.name,
                model.info.version,
                model.dir.display(),
                &model.info.sha256[..12],
                model.info.threshold,
                input.describe()
            ),
            None => println!(
                "warn audio input unavailable: the line would run without the acoustic score"
            ),
        }
    }
    let rt = runtime()?;
    rt.block_on(async {
        let plc = &config.plc;
        match &plc.link {
            PlcLink::Off => println!("ok  plc off (verdicts are recorded only)"),
            PlcLink::Simulated => {
                let sim = SimPlc::start(plc).await?;
                plc::probe(plc, &Endpoint::Tcp(sim.addr))
                    .await
                    .map_err(PlcUnreachable)?;
                println!("ok  plc simulated (in-process Modbus server answered)");
            }
            PlcLink::Serve(listen) => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| PlcUnreachable(format!("cannot listen on {listen}: {e}")))?;
                drop(listener);
                println!("ok  plc server: the station can listen on {listen} for the PLC");
            }
            link => {
                let endpoint =
                    Endpoint::of(link).ok_or_else(|| PlcUnreachable("no endpoint".into()))?;
                plc::probe(plc, &endpoint).await.map_err(PlcUnreachable)?;
                println!("ok  plc {endpoint} answered (unit {})", plc.unit_id);
            }
        }
        Ok::<(), anyhow::Error>(())
    })
}
