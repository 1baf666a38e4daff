//! The tamper-evident record: every part record and every later event on it (PLC delivered, undelivered,
//! rejected at the gate, pulse ended) is appended to `record_chain` in the same transaction as the row it
//! describes, as a canonical JSON payload with the SHA-256 of the part's image files, chained to the entry
//! before it: `hash = sha256(prev_hash \n kind \n ref \n payload \n files)`.
//!
//! [`verify`] recomputes the chain and checks it against the records and the files: it names the first entry
//! whose hash or link is wrong (an entry edited, deleted or reordered), a part whose row no longer says what its
//! entry recorded (an edited row), an entry whose part row is gone (a deleted row), a part row with no entry
//! (a row added by hand), and an image file whose bytes changed (a swapped file; files removed by retention are
//! reported as pruned, not tampered). What it does not prove is in docs/IDENTITY.md.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::rows::PartRow;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry_hash(prev: &str, kind: &str, reference: &str, payload: &str, files: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, kind, reference, payload, files] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

/// `[[path, sha256]]` of the files a part row names (paths relative to `data_dir`); `missing` for a file that
/// is not there.
pub fn files_json(data_dir: &Path, row: &PartRow) -> String {
    let paths = [
        row.image_path.as_deref(),
        row.heatmap_path.as_deref(),
        row.acoustic
            .as_ref()
            .and_then(|a| a.spectrogram_path.as_deref()),
    ];
    let list: Vec<Value> = paths
        .into_iter()
        .flatten()
        .map(|p| serde_json::json!([p, file_sha256(&data_dir.join(p))]))
        .collect();
    Value::Array(list).to_string()
}

fn file_sha256(path: &Path) -> String {
    std::fs::read(path).map_or_else(|_| "missing".into(), |b| hex(&Sha256::digest(b)))
}

/// Appends an entry (in the caller's transaction).
pub fn append(
    tx: &Transaction,
    kind: &str,
    reference: &str,
    payload: &str,
    files: &str,
) -> rusqlite::Result<()> {
    let prev: String = tx
        .query_row(
            "SELECT hash FROM record_chain ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| GENESIS.to_string());
    let hash = entry_hash(&prev, kind, reference, payload, files);
    tx.prepare_cached(
        "INSERT INTO record_chain (kind, ref, payload, files, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![kind, reference, payload, files, prev, hash])?;
    Ok(())
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Verified {
    pub entries: u64,
    pub parts: u64,
    pub files: u64,
    /// Image files retention removed (their rows say so): not tampering.
    pub pruned_files: u64,
    /// Every problem, in chain order; the first is the first place the record was changed.
    pub problems: Vec<String>,
}

/// The part-row columns an entry's payload must still match (later events may change verdict, reasons, result
/// code and PLC columns: those changes are chained events of their own).
const FIXED: [&str; 15] = [
    "run_id",
    "seq",
    "origin",
    "triggered_us",
    "decided_us",
    "score",
    "threshold",
    "model_name",
    "model_version",
    "model_sha256",
    "image_path",
    "heatmap_path",
    "plc_part_id",
    "images_skipped",
    "calibration_id",
];

/// Recomputes the chain and checks it against the part rows and their files.
pub fn verify(conn: &Connection, data_dir: &Path) -> rusqlite::Result<Verified> {
    let mut out = Verified::default();
    let mut stmt = conn.prepare(
        "SELECT id, kind, ref, payload, files, prev_hash, hash FROM record_chain ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut prev = GENESIS.to_string();
    while let Some(r) = rows.next()? {
        let (id, kind, reference): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let (payload, files, prev_hash, hash): (String, String, String, String) =
            (r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
        out.entries += 1;
        if prev_hash != prev {
            out.problems.push(format!(
                "chain entry {id} ({kind} {reference}): its link does not follow the entry before it (an entry was deleted or reordered)"
            ));
        }
        if entry_hash(&prev_hash, &kind, &reference, &payload, &files) != hash {
            out.problems.push(format!(
                "chain entry {id} ({kind} {reference}): its hash does not match its content (the entry was edited)"
            ));
        }
        prev = hash;
        if kind == "part" {
            out.parts += 1;
            check_part(conn, data_dir, &reference, &payload, &files, &mut out)?;
        }
    }
    let unchained: Vec<String> = conn
        .prepare(
            "SELECT part_id FROM parts WHERE part_id NOT IN
                (SELECT ref FROM record_chain WHERE kind = 'part') ORDER BY id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for part in unchained {
        out.problems.push(format!(
            "part {part}: its row is not in the chain (added outside the station, or recorded before the chain existed)"
        ));
    }
    Ok(out)
}

/// One part's row and files against its entry.
fn check_part(
    conn: &Connection,
    data_dir: &Path,
    part_id: &str,
    payload: &str,
    files: &str,
    out: &mut Verified,
) -> rusqlite::Result<()> {
    let recorded: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let columns = FIXED.join(", ");
    let current = conn
        .query_row(
            &format!("SELECT {columns}, images_pruned_us FROM parts WHERE part_id = ?1"),
            [part_id],
            |r| {
                let mut values = Vec::new();
                for i in 0..FIXED.len() {
                    values.push(sql_json(r.get_ref(i)?));
                }
                Ok((values, r.get::<_, Option<i64>>(FIXED.len())?))
            },
        )
        .optional()?;
    let Some((values, pruned)) = current else {
        out.problems
            .push(format!("part {part_id}: its row was deleted"));
        return Ok(());
    };
    for (name, now) in FIXED.iter().zip(values) {
        let then = &recorded[*name];
        // Retention removes a part's images and clears their paths (and says when).
        let pruned_path = pruned.is_some() && name.ends_with("_path") && now.is_null();
        if !same(then, &now) && !pruned_path {
            out.problems.push(format!(
                "part {part_id}: {name} is {now} but was recorded as {then} (the row was edited)"
            ));
        }
    }
    let listed: Vec<(String, String)> = serde_json::from_str(files).unwrap_or_default();
    for (path, sha) in listed {
        out.files += 1;
        let now = file_sha256(&data_dir.join(&path));
        if now == "missing" && pruned.is_some() {
            out.pruned_files += 1;
        } else if now != sha {
            out.problems.push(format!(
                "part {part_id}: file {path} is not the file recorded (sha256 {now}, recorded {sha})"
            ));
        }
    }
    Ok(())
}

fn sql_json(v: rusqlite::types::ValueRef) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::from(hex(b)),
    }
}

/// Equal as recorded: numbers compared as f32 (scores and thresholds are stored from f32).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x as f32 == y as f32,
        _ => a == b,
    }
}
