//! `station run`: runs the line with a live status line and (when `[web]` is enabled) the review page, stops
//! cleanly on Ctrl-C, SIGTERM (`systemctl stop`, `docker stop`, `kill`) or SIGHUP (the terminal went away): the
//! trigger stops, parts in flight get their verdicts, the PLC queue and the records are flushed, the run is
//! closed, the plant's sinks ([`crate::plant`]: MQTT, `/metrics`) deliver what is left, the summary printed,
//! exit code 0.

use anyhow::Context;

use super::{ConfigArg, load_config, runtime};
use crate::live::LineTap;
use crate::pipeline::{self, RunOptions};

pub fn run(arg: &ConfigArg, max_parts: Option<u64>, quiet: bool) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    for problem in config.pace_problems() {
        tracing::warn!(
            "{}: {problem} (`station validate` refuses this)",
            config.file
        );
    }
    let rt = runtime()?;
    let summary = rt.block_on(async {
        let tap = LineTap::default();
        if config.web.enabled {
            crate::web::start(&config.record.database, &config.web, Some(tap.clone()))
                .await
                .context("cannot start the review page")?;
        }
        let setup = crate::plant::Setup {
            station: &config.station.name,
            database: &config.record.database,
            metrics: config.metrics.as_ref(),
            mqtt: config.mqtt.as_ref(),
            webhooks: &config.webhooks,
        };
        let plant = crate::plant::start(setup, &tap)
            .await
            .context("cannot start the plant's sinks")?;
        let summary = pipeline::run(
            &config,
            RunOptions {
                max_parts,
                status_line: !quiet,
                ready: None,
                tap: Some(tap),
            },
            stop_signal(),
        )
        .await
        .with_context(|| format!("cannot run the line with {}", config.file));
        plant.stop().await;
        summary
    })?;
    println!("{summary}");
    Ok(())
}

/// Resolves at the first Ctrl-C, SIGTERM or SIGHUP (then logs which).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGHUP; only Ctrl-C stops the line cleanly");
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        return;
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let name = tokio::select! {
        _ = ctrl_c => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    };
    tracing::info!("{name}: stopping the line");
}
