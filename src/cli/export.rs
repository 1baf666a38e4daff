//! `station export`: the records of a lot or a time window for the plant's systems, as CSV, JSON or AQDEF
//! (`crate::export`), to a file or standard output.

use anyhow::Context;

use super::{ConfigArg, existing_database, load_config};
use crate::export::{self, Selection};

/// What `station export` was asked for.
pub struct ExportArgs<'a> {
    pub lot: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub format: &'a str,
    pub out: Option<&'a std::path::Path>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExportUsage(pub String);

fn time(flag: &str, text: Option<&str>) -> Result<Option<i64>, ExportUsage> {
    text.map(|t| {
        export::parse_utc(t).ok_or_else(|| {
            ExportUsage(format!(
                "{flag}: expected a UTC date YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], got {t:?}"
            ))
        })
    })
    .transpose()
}

pub fn export(arg: &ConfigArg, a: &ExportArgs) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let sel = Selection {
        lot: a.lot.map(str::to_string),
        from_us: time("--from", a.from)?,
        to_us: time("--to", a.to)?,
    };
    if !["csv", "json", "aqdef"].contains(&a.format) {
        return Err(ExportUsage(format!(
            "--format: expected csv, json or aqdef, got {:?}",
            a.format
        ))
        .into());
    }
    let conn = crate::store::open_database(existing_database(&config)?)?;
    let rows = export::rows(&conn, &sel)?;
    let text = match a.format {
        "csv" => export::csv(&rows),
        "json" => serde_json::to_string_pretty(&rows)? + "\n",
        _ => {
            let part_number = rows
                .iter()
                .find_map(|r| r.gtin.clone())
                .unwrap_or_else(|| config.station.name.clone());
            export::aqdef(&rows, &part_number)
        }
    };
    match a.out {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{} part(s) written to {}", rows.len(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
