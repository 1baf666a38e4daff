//! `station trace`: a part's whole history from its serial, part id or PLC part ID, or a lot's figures, read from
//! the station's database (the line may be running). `--json` prints what `/api/trace` answers.

use serde_json::Value;

use super::{ConfigArg, existing_database, load_config};
use crate::clock::utc_text;

pub fn trace(
    arg: &ConfigArg,
    key: Option<&str>,
    lot: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let conn = crate::store::open_database(existing_database(&config)?)?;
    let margin = config.web.uncertain_margin;
    let found = match (key, lot) {
        (_, Some(lot)) => crate::trace::lot(&conn, lot)?,
        (Some(key), None) => crate::trace::part_history(&conn, key, margin)?,
        (None, None) => anyhow::bail!("give a serial, part id or PLC part ID, or --lot LOT"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else if lot.is_some() {
        print_lot(&found);
    } else {
        print_history(&found);
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_history(h: &Value) {
    println!(
        "{}: {} attempt(s){}",
        text(&h["query"]),
        h["attempts"],
        h["serial"]
            .as_str()
            .map(|s| format!(", serial {s}"))
            .unwrap_or_default()
    );
    for p in h["parts"].as_array().into_iter().flatten() {
        print_attempt(p);
    }
}

/// One attempt: verdict and scores, who judged it, its identity, files and reviews.
fn print_attempt(p: &Value) {
    let codes: Vec<String> = p["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| text(&r["code"]))
        .collect();
    println!(
        "\n{}  attempt {}  {}  {}  score {} / {}  reasons: {}",
        text(&p["part_id"]),
        p["attempt"],
        p["triggered_us"].as_i64().map_or("-".into(), utc_text),
        text(&p["verdict"]),
        text(&p["score"]),
        text(&p["threshold"]),
        if codes.is_empty() {
            "-".into()
        } else {
            codes.join(", ")
        }
    );
    println!(
        "  station {}  software {}  model {} v{}  PLC {}  previous attempt {}",
        text(&p["station"]),
        text(&p["software_version"]),
        text(&p["model_name"]),
        text(&p["model_version"]),
        text(&p["plc_status"]),
        text(&p["previous_part_id"])
    );
    println!(
        "  identity {}  scan {}  serial {}  GTIN {}  lot {}  expiry {}{}",
        text(&p["identity_source"]),
        text(&p["scan_raw"]),
        text(&p["serial"]),
        text(&p["gtin"]),
        text(&p["lot"]),
        text(&p["expiry"]),
        p["identity_error"]
            .as_str()
            .map(|e| format!("  error: {e}"))
            .unwrap_or_default()
    );
    if p["acoustic_score"].is_number() {
        println!(
            "  sound score {} / {}",
            text(&p["acoustic_score"]),
            text(&p["acoustic_threshold"])
        );
    }
    for key in ["image_path", "heatmap_path", "spectrogram_path"] {
        if let Some(path) = p[key].as_str() {
            println!("  {key:<16} {path}");
        }
    }
    for r in p["reviews"].as_array().into_iter().flatten() {
        println!(
            "  review {} by {}: {}{}{}",
            r["at_us"].as_i64().map_or("-".into(), utc_text),
            text(&r["user"]),
            text(&r["label"]),
            r["defect_class"]
                .as_str()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            r["comment"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(|c| format!(" \"{c}\""))
                .unwrap_or_default()
        );
    }
}

fn print_lot(l: &Value) {
    println!(
        "lot {}: {} parts, {} passed, {} rejected, yield {:.2}%",
        text(&l["lot"]),
        l["parts"],
        l["passed"],
        l["rejected"],
        l["yield"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!("  reject reasons: {}", l["reject_reasons"]);
    println!(
        "  confirmed defects by class: {}",
        l["confirmed_defects_by_class"]
    );
    for p in l["list"].as_array().into_iter().flatten() {
        println!(
            "  {}  serial {}  attempt {}  {}  review {}",
            text(&p["part_id"]),
            text(&p["serial"]),
            p["attempt"],
            text(&p["verdict"]),
            text(&p["review"])
        );
    }
}
