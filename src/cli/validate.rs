//! `station validate`: checks the config, the model against its manifest and ONNX file, the frame source, the
//! acoustic model and audio input (with `[audio]`), and the PLC's reachability, without running the line. Prints
//! one `ok` line per check.

use anyhow::Context;

use super::{ConfigArg, PlcUnreachable, load_config, runtime};
use crate::capture;
use crate::config::PlcLink;
use crate::model::Model;
use crate::plc::{self, Endpoint, sim::SimPlc};

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
    let model = Model::load(&config.model, config.station.onnxruntime_path.as_deref())?;
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
    let source = capture::open(&config.source).context("frame source")?;
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
