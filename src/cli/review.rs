//! `station review`: serves the review page over an existing data folder, without running the line.

use std::io::Write as _;

use anyhow::Context;

use super::{ConfigArg, existing_database, load_config, runtime};

pub fn review(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    existing_database(&config)?;
    let rt = runtime()?;
    rt.block_on(async {
        let (addr, server) = crate::web::start(&config.record.database, &config.web, None)
            .await
            .context("cannot start the review page")?;
        let users: i64 = crate::store::open_database(&config.record.database)?.query_row(
            "SELECT count(*) FROM users",
            [],
            |r| r.get(0),
        )?;
        if users == 0 {
            eprintln!("no users yet: add one with `station user add NAME --role technician`");
        }
        println!("review page: http://{addr}/");
        std::io::stdout().flush()?;
        tokio::select! {
            served = server => served?.context("review page stopped"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
