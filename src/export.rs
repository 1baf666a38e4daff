//! Exports for the plant's systems: one row (CSV) or object (JSON) per part, with identity, lot, verdict,
//! reasons, scores with their thresholds, the operator of its latest review, the run's station and software,
//! times and the part's record-chain hash; or AQDEF (the Q-DAS ASCII transfer format) with the model scores as
//! variable characteristics and their thresholds as upper limits. The K-fields written are in docs/IDENTITY.md.

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::clock::{civil_from_days, utc_fields};

/// Which parts: a lot, a time window (µs since the epoch, `from` inclusive, `to` exclusive), or both.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub lot: Option<String>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
}

/// One exported part.
#[derive(Debug, Clone, Serialize)]
pub struct ExportRow {
    pub part_id: String,
    pub serial: Option<String>,
    pub gtin: Option<String>,
    pub lot: Option<String>,
    pub attempt: i64,
    pub verdict: String,
    /// Reason codes, `;`-separated in CSV.
    pub reasons: Vec<String>,
    pub score: Option<f64>,
    pub threshold: f64,
    pub acoustic_score: Option<f64>,
    pub acoustic_threshold: Option<f64>,
    pub model: String,
    pub triggered_us: i64,
    pub decided_us: i64,
    /// Who reviewed it last, and what they said (`good` / `defect:<class>`).
    pub operator: Option<String>,
    pub review: Option<String>,
    pub station: String,
    pub software_version: Option<String>,
    /// The part's entry in the record chain (`station verify`).
    pub record_hash: Option<String>,
}

/// The parts of a selection, oldest first.
pub fn rows(conn: &Connection, sel: &Selection) -> rusqlite::Result<Vec<ExportRow>> {
    let mut stmt = conn.prepare(
        "SELECT p.part_id, p.serial, p.gtin, p.lot, p.attempt, p.verdict, p.reasons, p.score, p.threshold,
                p.acoustic_score, p.acoustic_threshold, p.model_name || ' v' || p.model_version,
                p.triggered_us, p.decided_us, u.name, rv.label || COALESCE(':' || rv.defect_class, ''),
                r.station, r.software_version,
                (SELECT c.hash FROM record_chain c WHERE c.ref = p.part_id AND c.kind = 'part')
         FROM parts p JOIN runs r ON r.id = p.run_id
         LEFT JOIN reviews rv ON rv.id = (SELECT max(id) FROM reviews WHERE part_id = p.part_id)
         LEFT JOIN users u ON u.id = rv.user_id
         WHERE (?1 IS NULL OR p.lot = ?1) AND (?2 IS NULL OR p.triggered_us >= ?2)
           AND (?3 IS NULL OR p.triggered_us < ?3)
         ORDER BY p.id",
    )?;
    stmt.query_map(params![sel.lot, sel.from_us, sel.to_us], |r| {
        let reasons: String = r.get(6)?;
        let reasons: serde_json::Value = serde_json::from_str(&reasons).unwrap_or_default();
        Ok(ExportRow {
            part_id: r.get(0)?,
            serial: r.get(1)?,
            gtin: r.get(2)?,
            lot: r.get(3)?,
            attempt: r.get(4)?,
            verdict: r.get(5)?,
            reasons: reasons
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["code"].as_str().map(str::to_string))
                .collect(),
            score: r.get(7)?,
            threshold: r.get(8)?,
            acoustic_score: r.get(9)?,
            acoustic_threshold: r.get(10)?,
            model: r.get(11)?,
            triggered_us: r.get(12)?,
            decided_us: r.get(13)?,
            operator: r.get(14)?,
            review: r.get(15)?,
            station: r.get(16)?,
            software_version: r.get(17)?,
            record_hash: r.get(18)?,
        })
    })?
    .collect()
}

const CSV_HEADER: &str = "part_id,serial,gtin,lot,attempt,verdict,reasons,score,threshold,acoustic_score,\
acoustic_threshold,model,triggered_us,decided_us,operator,review,station,software_version,record_hash";

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

pub fn csv(rows: &[ExportRow]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in rows {
        let fields = [
            r.part_id.clone(),
            opt(&r.serial),
            opt(&r.gtin),
            opt(&r.lot),
            r.attempt.to_string(),
            r.verdict.clone(),
            r.reasons.join(";"),
            opt(&r.score),
            r.threshold.to_string(),
            opt(&r.acoustic_score),
            opt(&r.acoustic_threshold),
            r.model.clone(),
            r.triggered_us.to_string(),
            r.decided_us.to_string(),
            opt(&r.operator),
            opt(&r.review),
            r.station.clone(),
            opt(&r.software_version),
            opt(&r.record_hash),
        ];
        let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
        out += &line.join(",");
        out.push('\n');
    }
    out
}

/// `dd.mm.yyyy/hh:mm:ss` (UTC), AQDEF's date and time.
fn aqdef_time(us: i64) -> String {
    let (y, m, d, h, min, s, _) = utc_fields(us);
    format!("{d:02}.{m:02}.{y:04}/{h:02}:{min:02}:{s:02}")
}

/// AQDEF text: the vision score (characteristic 1) and, when any part has one, the acoustic score
/// (characteristic 2), each with its threshold as the upper limit; one value line per part and characteristic.
pub fn aqdef(rows: &[ExportRow], part_number: &str) -> String {
    let acoustic = rows.iter().any(|r| r.acoustic_threshold.is_some());
    let count = if acoustic { 2 } else { 1 };
    let mut out = format!("K0100 {count}\nK1001 {part_number}\nK1002 inspection station scores\n");
    let upper = |f: fn(&ExportRow) -> Option<f64>| rows.iter().rev().find_map(f);
    let chars: Vec<(&str, Option<f64>)> = [
        ("vision anomaly score", upper(|r| Some(r.threshold))),
        ("acoustic anomaly score", upper(|r| r.acoustic_threshold)),
    ]
    .into_iter()
    .take(count)
    .collect();
    for (i, (name, usl)) in chars.iter().enumerate() {
        let n = i + 1;
        out += &format!("K2001/{n} {n}\nK2002/{n} {name}\nK2004/{n} 0\n");
        if let Some(usl) = usl {
            out += &format!("K2111/{n} {usl}\n");
        }
    }
    for r in rows {
        for n in 1..=count {
            let value = if n == 1 { r.score } else { r.acoustic_score };
            // Attribute 0: a value; 255: no value (the part faulted before it was scored).
            let (value, attribute) = value.map_or(("0".to_string(), 255), |v| (v.to_string(), 0));
            out += &format!(
                "K0001/{n} {value}\nK0002/{n} {attribute}\nK0004/{n} {}\nK0006/{n} {}\nK0008/{n} {}\nK0014/{n} {}\n",
                aqdef_time(r.triggered_us),
                opt(&r.lot),
                opt(&r.operator),
                r.serial.as_deref().unwrap_or(&r.part_id)
            );
        }
    }
    out
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]` (UTC) as µs since the epoch.
pub fn parse_utc(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    if !(0..24).contains(&h) || !(0..60).contains(&min) || !(0..61).contains(&s) {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    if civil_from_days(days) != (y, m as u32, day as u32) {
        return None; // e.g. 2026-02-30
    }
    Some(((days * 86_400) + h * 3600 + min * 60 + s) * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_round_trip() {
        assert_eq!(parse_utc("1970-01-02"), Some(86_400_000_000));
        assert_eq!(
            parse_utc("2024-02-29T12:34:56"),
            Some(1_709_210_096_000_000)
        );
        assert_eq!(
            crate::clock::utc_text(parse_utc("2026-12-02 16:46").unwrap()),
            "2026-12-02 16:46:00.000 UTC"
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "yesterday",
            "2026-01-01T25:00",
            "2026-01",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
        assert_eq!(aqdef_time(1_709_210_096_000_000), "29.02.2024/12:34:56");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
