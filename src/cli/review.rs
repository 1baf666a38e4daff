//! `station review`: serves the review page over an existing data folder, without running the line.

use std::io::Write as _;

use anyhow::Context;

use super::{ConfigArg, load_config, runtime};

pub fn review(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    // A mistyped data_dir must not serve an empty database it just created.
    let db = &config.record.database;
    if !db.is_file() {
        return Err(crate::config::ConfigError::Read {
            path: db.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no station database here: check station.data_dir and record.database (station run creates it)",
            ),
        }
        .into());
    }
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
