//! `station run`: runs the line with a live status line and (when `[web]` is enabled) the review page, stops
//! cleanly on Ctrl-C, prints the summary.

use anyhow::Context;

use super::{ConfigArg, load_config, runtime};
use crate::live::LineTap;
use crate::pipeline::{self, RunOptions};

pub fn run(arg: &ConfigArg, max_parts: Option<u64>, quiet: bool) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let rt = runtime()?;
    let summary = rt.block_on(async {
        let tap = LineTap::default();
        if config.web.enabled {
            crate::web::start(&config.record.database, &config.web, Some(tap.clone()))
                .await
                .context("cannot start the review page")?;
        }
        pipeline::run(
            &config,
            RunOptions {
                max_parts,
                status_line: !quiet,
                ready: None,
                tap: Some(tap),
            },
            async {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
        )
        .await
        .with_context(|| format!("cannot run the line with {}", config.file))
    })?;
    println!("{summary}");
    Ok(())
}
