//! Trace queries over the records: a part's whole history from its serial, the station's part id or the PLC's
//! part ID (every attempt, oldest first, each with its verdict, reasons, scores, images, PLC outcome, reviews, and
//! the run that judged it: station and software version), and a lot's figures (counts, yield, reject reasons,
//! confirmed defects by class, every part). The same JSON serves `station trace` and `/api/trace`.

use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

use crate::review::{self, ReviewError};

/// The history of what `key` names: a serial, a part id (`12-000042`) or a PLC part ID (digits).
pub fn part_history(conn: &Connection, key: &str, margin: f32) -> Result<Value, ReviewError> {
    let plc_part_id: Option<i64> = key.parse().ok();
    let mut stmt = conn.prepare_cached(
        "SELECT part_id FROM parts WHERE part_id = ?1
         UNION SELECT part_id FROM parts WHERE serial = ?1
         UNION SELECT part_id FROM parts WHERE plc_part_id = ?2",
    )?;
    let ids: Vec<String> = stmt
        .query_map(params![key, plc_part_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(ReviewError::NoPart(key.to_string()));
    }
    let mut attempts = Vec::with_capacity(ids.len());
    for id in &ids {
        let mut part = review::part(conn, id, margin)?;
        if let Value::Object(obj) = &mut part {
            add_run_and_scan(conn, id, obj)?;
        }
        attempts.push(part);
    }
    attempts.sort_by_key(|p| p["id"].as_i64());
    let serials: Vec<&str> = attempts
        .iter()
        .filter_map(|p| p["serial"].as_str())
        .collect();
    Ok(json!({
        "query": key,
        "serial": serials.first(),
        "attempts": attempts.len(),
        "parts": attempts,
    }))
}

/// The run that judged part `id` (station, software version), and its scan as received, printable.
fn add_run_and_scan(
    conn: &Connection,
    id: &str,
    obj: &mut Map<String, Value>,
) -> Result<(), ReviewError> {
    let (station, software, raw): (String, Option<String>, Option<Vec<u8>>) = conn.query_row(
        "SELECT r.station, r.software_version, p.scan_raw FROM parts p JOIN runs r ON r.id = p.run_id
         WHERE p.part_id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    obj.insert("station".into(), station.into());
    obj.insert("software_version".into(), software.into());
    obj.insert(
        "scan_raw".into(),
        raw.map(|b| b.escape_ascii().to_string()).into(),
    );
    Ok(())
}

/// A lot: how many parts, how many passed, the yield, reject reasons, confirmed defects by class (latest review
/// of each part), and every part (id, serial, verdict, attempt), oldest first.
pub fn lot(conn: &Connection, lot: &str) -> Result<Value, ReviewError> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.part_id, p.serial, p.verdict, p.attempt, p.reasons, p.score, p.triggered_us,
            (SELECT r.label || ':' || COALESCE(r.defect_class, '') FROM reviews r WHERE r.part_id = p.part_id
             ORDER BY r.id DESC LIMIT 1)
         FROM parts p WHERE p.lot = ?1 ORDER BY p.id",
    )?;
    let mut parts = Vec::new();
    let (mut passed, mut reasons, mut classes) = (0u64, Map::new(), Map::new());
    let rows = stmt.query_map([lot], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<f64>>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, Option<String>>(7)?,
        ))
    })?;
    for row in rows {
        let (part_id, serial, verdict, attempt, why, score, triggered_us, review) = row?;
        passed += u64::from(verdict == "PASS");
        let why: Value = serde_json::from_str(&why).unwrap_or(Value::Null);
        for code in why.as_array().into_iter().flatten() {
            if let Some(code) = code["code"].as_str() {
                count(&mut reasons, code);
            }
        }
        if let Some(class) = review.as_deref().and_then(|r| r.strip_prefix("defect:")) {
            count(
                &mut classes,
                if class.is_empty() { "(none)" } else { class },
            );
        }
        parts.push(json!({
            "part_id": part_id, "serial": serial, "verdict": verdict, "attempt": attempt,
            "score": score, "triggered_us": triggered_us, "review": review,
        }));
    }
    if parts.is_empty() {
        return Err(ReviewError::NoPart(format!("lot {lot}")));
    }
    let total = parts.len() as u64;
    Ok(json!({
        "lot": lot,
        "parts": total,
        "passed": passed,
        "rejected": total - passed,
        "yield": passed as f64 / total as f64,
        "reject_reasons": reasons,
        "confirmed_defects_by_class": classes,
        "list": parts,
    }))
}

fn count(map: &mut Map<String, Value>, key: &str) {
    let n = map.get(key).and_then(Value::as_u64).unwrap_or(0);
    map.insert(key.to_string(), (n + 1).into());
}
