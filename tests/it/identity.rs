//! Part identity through a real `station run`: a socat pseudo-terminal pair plays the barcode scanner (CR, LF and
//! CRLF endings, split writes, two scans in one write, GS1 strings with GS separators, a bad check digit), the
//! HTTP trigger says when each part is at the camera, and the SQLite rows must hold each part's scan as
//! received and parsed, NOREADs and duplicate serials as fail-safe REJECTs, and re-inspections as attempts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use inspection_station::review;
use inspection_station::users::{self, Role};

use crate::common::station;

/// A socat pseudo-terminal pair: the station opens `station_end`, the test writes scans into `scanner_end`.
struct Scanner {
    socat: Child,
    station_end: PathBuf,
    scanner_end: PathBuf,
}

impl Scanner {
    fn start(dir: &Path) -> Scanner {
        let (station_end, scanner_end) = (dir.join("tty-station"), dir.join("tty-scanner"));
        let socat = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", station_end.display()))
            .arg(format!("pty,raw,echo=0,link={}", scanner_end.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is missing: run `bash scripts/setup.sh`");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(station_end.exists() && scanner_end.exists()) {
            assert!(Instant::now() < deadline, "socat made no pty pair");
            std::thread::sleep(Duration::from_millis(20));
        }
        Scanner {
            socat,
            station_end,
            scanner_end,
        }
    }

    /// Writes each chunk as its own write, a little apart (a scan split over several reads).
    fn send(&self, chunks: &[&[u8]]) {
        let mut port = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.scanner_end)
            .unwrap();
        for chunk in chunks {
            port.write_all(chunk).unwrap();
            port.flush().unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `POST /trigger`, retried while the station is still starting.
fn trigger(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"POST /trigger HTTP/1.1\r\nHost: station\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            std::io::Read::read_to_string(&mut s, &mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 202"), "{response}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the station's trigger never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the station's trigger accepts connections (its scanner port is open by then).
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the station's trigger never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `station run` on `config` for `parts` parts.
fn run_station(config: &Path, parts: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_station"))
        .args([
            "run",
            "--quiet",
            "--max-parts",
            &parts.to_string(),
            "--config",
        ])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: Child) -> (Output, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "station run failed:\n{text}");
    (out, text)
}

#[derive(Debug)]
struct Identified {
    part_id: String,
    verdict: String,
    codes: Vec<String>,
    source: Option<String>,
    raw: Option<Vec<u8>>,
    symbology: Option<String>,
    serial: Option<String>,
    gtin: Option<String>,
    lot: Option<String>,
    expiry: Option<String>,
    error: Option<String>,
    attempt: i64,
    previous: Option<String>,
    reasons: serde_json::Value,
}

fn identified(db: &Path) -> Vec<Identified> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT part_id, verdict, reasons, identity_source, scan_raw, scan_symbology, serial, gtin, lot, expiry,
                    identity_error, attempt, previous_part_id FROM parts ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let reasons: serde_json::Value = serde_json::from_str(&r.get::<_, String>(2)?).unwrap();
        Ok(Identified {
            part_id: r.get(0)?,
            verdict: r.get(1)?,
            codes: reasons
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["code"].as_str().unwrap().to_string())
                .collect(),
            source: r.get(3)?,
            raw: r.get(4)?,
            symbology: r.get(5)?,
            serial: r.get(6)?,
            gtin: r.get(7)?,
            lot: r.get(8)?,
            expiry: r.get(9)?,
            error: r.get(10)?,
            attempt: r.get(11)?,
            previous: r.get(12)?,
            reasons,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

const IDENTITY_CODES: [&str; 3] = ["noread", "duplicate_serial", "identity_invalid"];

fn identity_codes(p: &Identified) -> Vec<&str> {
    p.codes
        .iter()
        .map(String::as_str)
        .filter(|c| IDENTITY_CODES.contains(c))
        .collect()
}

#[test]
fn scans_from_a_serial_scanner_identify_parts_and_noread_or_duplicates_reject() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Scanner::start(dir.path());
    let port = free_port();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"http\"\nlisten = \"127.0.0.1:{port}\"\n[plc]\nkind = \"off\"\n\
             [source]\nkind = \"synthetic\"\nseed = 4\n\
             [identity]\nsource = \"scanner\"\nport = \"{}\"\nbaud = 115200\naim_identifier = true\n\
             scan_window_ms = 600\nduplicate_window_s = 600\n",
            scanner.station_end.display()
        ),
    );
    let config_path = dir.path().join("station.toml");
    let child = run_station(&config_path, 10);
    wait_listening(port);
    // Each part: what the scanner sends, a pause so the station has read it, then the trigger.
    let gs = "\u{1d}";
    let b = |s: &str| s.as_bytes().to_vec();
    let plan: Vec<(Vec<Vec<u8>>, u64)> = vec![
        (vec![b("SN-0001\r")], 150), // 1: plain serial, CR
        // 2: a GS1 DataMatrix scan in four writes, its CRLF split
        (
            vec![
                b("]d2010950600013435"),
                b("21726123110LOT42"),
                b(&format!("{gs}21SER7\r")),
                b("\n"),
            ],
            150,
        ),
        (vec![], 150),                                    // 3: no scan: NOREAD
        (vec![b("SN-0001\n")], 150), // 4: the serial of part 1 again: duplicate
        (vec![b("]d20109506000134353\r\n")], 150), // 5: GTIN with a bad check digit
        (vec![b("(01)09506000134352(21)SER8\r\n")], 150), // 6: human-readable GS1
        (vec![b("STALE-1\r\n")], 1000), // 7: older than the window at the trigger: NOREAD
        (vec![b("SN-0009\r\n")], 150), // 8: the next scan is this part's
        (vec![b("A-1\rA-2\r")], 150), // 9: two scans in one write: the oldest first
        (vec![], 0),                 // 10: takes A-2
    ];
    for (chunks, pause_ms) in &plan {
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        scanner.send(&chunks);
        std::thread::sleep(Duration::from_millis(*pause_ms));
        trigger(port);
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, text) = finished(child);
    assert!(
        text.contains(
            "identity     scanner  scans 9  NOREAD 2  duplicate serials 1  invalid 1  stale scans 1"
        ),
        "summary:\n{text}"
    );
    let parts = identified(&config.record.database);
    assert_eq!(parts.len(), 10, "{parts:#?}");
    let serials: Vec<_> = parts.iter().map(|p| p.serial.as_deref()).collect();
    assert_eq!(
        serials,
        [
            Some("SN-0001"),
            Some("SER7"),
            None,
            Some("SN-0001"),
            None,
            Some("SER8"),
            None,
            Some("SN-0009"),
            Some("A-1"),
            Some("A-2")
        ]
    );
    let codes: Vec<_> = parts.iter().map(identity_codes).collect();
    assert_eq!(
        codes,
        [
            vec![],
            vec![],
            vec!["noread"],
            vec!["duplicate_serial"],
            vec!["identity_invalid"],
            vec![],
            vec!["noread"],
            vec![],
            vec![],
            vec![]
        ]
    );
    for p in parts.iter().filter(|p| !identity_codes(p).is_empty()) {
        assert_eq!(
            p.verdict, "REJECT",
            "identity problems are fail-safe: {p:?}"
        );
    }
    // The GS1 scan, split over four writes, as received and as parsed.
    let gs1 = &parts[1];
    assert_eq!(
        gs1.raw.as_deref(),
        Some(format!("]d20109506000134352{}10LOT42{gs}21SER7", "17261231").as_bytes())
    );
    assert_eq!(gs1.symbology.as_deref(), Some("]d2"));
    assert_eq!(
        (
            gs1.gtin.as_deref(),
            gs1.lot.as_deref(),
            gs1.expiry.as_deref()
        ),
        (Some("09506000134352"), Some("LOT42"), Some("2026-12-31"))
    );
    assert_eq!(parts[5].gtin.as_deref(), Some("09506000134352"));
    // The duplicate names the first part, and is the serial's second attempt, linked to it.
    let duplicate = &parts[3];
    let dup_reason = duplicate
        .reasons
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "duplicate_serial")
        .unwrap();
    assert_eq!(dup_reason["first_part"], parts[0].part_id.as_str());
    assert_eq!(
        (duplicate.attempt, duplicate.previous.as_deref()),
        (2, Some(parts[0].part_id.as_str()))
    );
    assert_eq!(parts[0].attempt, 1);
    // The bad check digit is named on the record, with the scan as received.
    let bad = &parts[4];
    assert!(
        bad.error
            .as_deref()
            .is_some_and(|e| e.contains("check digit")),
        "{bad:?}"
    );
    assert_eq!(bad.raw.as_deref(), Some(&b"]d20109506000134353"[..]));
    // A NOREAD has no scan, but is still a scanner part.
    assert_eq!(
        (parts[2].source.as_deref(), parts[2].raw.as_ref()),
        (Some("scanner"), None)
    );

    // A later run: SN-0009 again is a re-inspection (attempt 2, linked), not a duplicate of this run.
    let child = run_station(&config_path, 1);
    wait_listening(port);
    scanner.send(&[b"SN-0009\r\n"]);
    std::thread::sleep(Duration::from_millis(150));
    trigger(port);
    finished(child);
    let parts = identified(&config.record.database);
    let again = parts.last().unwrap();
    assert_eq!(again.serial.as_deref(), Some("SN-0009"));
    assert_eq!(identity_codes(again), Vec::<&str>::new(), "{again:?}");
    assert_eq!(
        (again.attempt, again.previous.as_deref()),
        (2, Some(parts[7].part_id.as_str()))
    );

    // Traced: an operator confirms the GS1 part as a scratch; its serial, part id and lot find it.
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let ana = users::add_user(&conn, "ana", Role::Operator, "secret-pass").unwrap();
    let review = review::NewReview {
        label: "defect".into(),
        defect_class: Some("scratch".into()),
        comment: "edge".into(),
    };
    review::add_review(
        &conn,
        &parts[1].part_id,
        ana,
        &review,
        &config.web.defect_classes,
    )
    .unwrap();
    let history = trace_json(&config_path, &["SER7"]);
    assert_eq!(history["attempts"], 1);
    let p = &history["parts"][0];
    assert_eq!(
        (&p["part_id"], &p["lot"], &p["gtin"], &p["station"]),
        (
            &serde_json::json!(parts[1].part_id),
            &serde_json::json!("LOT42"),
            &serde_json::json!("09506000134352"),
            &serde_json::json!("test")
        )
    );
    assert_eq!(p["reviews"][0]["defect_class"], "scratch");
    assert_eq!(
        p["scan_raw"],
        "]d201095060001343521726123110LOT42\\x1d21SER7"
    );
    assert!(
        p["software_version"]
            .as_str()
            .unwrap()
            .starts_with(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        trace_json(&config_path, &[&parts[1].part_id])["parts"],
        history["parts"]
    );
    // SN-0001: both attempts, oldest first; SN-0009 across two runs.
    let sn1 = trace_json(&config_path, &["SN-0001"]);
    assert_eq!(sn1["attempts"], 2);
    assert_eq!(sn1["parts"][1]["reasons"][0]["code"], "duplicate_serial");
    assert_eq!(trace_json(&config_path, &["SN-0009"])["attempts"], 2);
    let lot = trace_json(&config_path, &["--lot", "LOT42"]);
    assert_eq!(
        (&lot["parts"], &lot["confirmed_defects_by_class"]["scratch"]),
        (&serde_json::json!(1), &serde_json::json!(1))
    );
    // The text form says the same; an unknown serial is an error that names it.
    let out = trace(&config_path, &["SN-0001"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("SN-0001: 2 attempt(s)")
            && text.contains("duplicate_serial"),
        "{text}"
    );
    let out = trace(&config_path, &["NO-SUCH-SERIAL"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NO-SUCH-SERIAL"));
    exports_parse_back(&config_path, &config.record.database, &parts);
}

/// `station export`: CSV, JSON and AQDEF read back by parsers of the test's own.
fn exports_parse_back(config_path: &Path, db: &Path, parts: &[Identified]) {
    let export = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_station"))
            .arg("export")
            .args(args)
            .arg("--config")
            .arg(config_path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let conn = rusqlite::Connection::open(db).unwrap();
    let (hash, threshold): (String, f64) = conn
        .query_row(
            "SELECT c.hash, p.threshold FROM record_chain c JOIN parts p ON p.part_id = c.ref
             WHERE c.kind = 'part' AND p.serial = 'SER7'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // CSV (RFC 4180), one lot.
    let (code, csv, _) = export(&["--lot", "LOT42", "--format", "csv"]);
    assert_eq!(code, Some(0));
    let table = parse_csv(&csv);
    assert_eq!(table.len(), 2, "{csv}");
    let row: std::collections::HashMap<_, _> = table[0].iter().zip(&table[1]).collect();
    assert_eq!(row[&"serial".to_string()], "SER7");
    assert_eq!(row[&"gtin".to_string()], "09506000134352");
    assert_eq!(row[&"operator".to_string()], "ana");
    assert_eq!(row[&"review".to_string()], "defect:scratch");
    assert_eq!(row[&"record_hash".to_string()], &hash);
    assert_eq!(row[&"station".to_string()], "test");
    // JSON, everything: both runs, in record order.
    let (_, json, _) = export(&["--format", "json"]);
    let all: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), parts.len(), "both runs");
    assert_eq!(
        &ids[..parts.len()],
        parts
            .iter()
            .map(|p| p.part_id.as_str())
            .collect::<Vec<_>>()
            .as_slice()
    );
    assert!(
        all[3]["reasons"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("duplicate_serial"))
    );
    // AQDEF: K-field lines, one value block per part.
    let (_, aqdef, _) = export(&["--format", "aqdef"]);
    let mut fields: std::collections::HashMap<String, Vec<String>> = Default::default();
    for line in aqdef.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            key.starts_with('K') && key[1..5].chars().all(|c| c.is_ascii_digit()),
            "not a K-field: {line}"
        );
        fields
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
    }
    assert_eq!(
        fields["K0100"],
        ["1"],
        "one characteristic: the vision score (no sound in this run)"
    );
    assert_eq!(
        fields["K1001"],
        ["09506000134352"],
        "the part number is the GTIN scanned"
    );
    assert_eq!(fields["K2111/1"][0].parse::<f64>().unwrap(), threshold);
    assert_eq!(fields["K0001/1"].len(), parts.len());
    assert_eq!(fields["K0014/1"][1], "SER7");
    assert_eq!(
        fields["K0014/1"][2], parts[2].part_id,
        "a NOREAD is named by its part id"
    );
    assert_eq!(fields["K0006/1"][1], "LOT42");
    assert_eq!(fields["K0008/1"][1], "ana");
    let t = &fields["K0004/1"][0];
    assert!(
        t.len() == 19 && &t[2..3] == "." && &t[10..11] == "/",
        "K0004 dd.mm.yyyy/hh:mm:ss: {t}"
    );
    // A window with nothing in it, and a date that is not one.
    let (_, empty, _) = export(&["--from", "2100-01-01", "--format", "csv"]);
    assert_eq!(parse_csv(&empty).len(), 1);
    let (code, _, err) = export(&["--from", "2026-02-30"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--from") && err.contains("2026-02-30"),
        "{err}"
    );
}

/// RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field, mut quoted) = (Vec::new(), Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows
}

fn trace(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_station"))
        .arg("trace")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn trace_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = trace(config, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_scanner_port_that_cannot_be_opened_stops_the_start_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    station(
        dir.path(),
        "[plc]\nkind = \"off\"\n[source]\nkind = \"synthetic\"\n\
         [identity]\nsource = \"scanner\"\nport = \"/dev/no-such-scanner\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_station"))
        .args(["run", "--quiet", "--max-parts", "3", "--config"])
        .arg(dir.path().join("station.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("/dev/no-such-scanner") && text.contains("identity.port"),
        "{text}"
    );
}

/// Copies the data folder of `from` (database and images) into a fresh folder with the same config.
fn copy_station(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from.join("data"))
        .arg(from.join("station.toml"))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_station"))
        .args(["verify", "--config"])
        .arg(dir.join("station.toml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn station_verify_passes_an_untouched_record_and_names_an_edit_a_deletion_a_reorder_and_a_swapped_file()
 {
    let dir = tempfile::tempdir().unwrap();
    // The demo's simulated PLC: each part's delivery is a chained event too.
    let config = station(
        dir.path(),
        "[trigger]\nkind = \"interval\"\ninterval_ms = 20\n[plc]\nkind = \"simulated\"\n\
         [source]\nkind = \"synthetic\"\nseed = 7\ndefect_fraction = 0.4\n[record]\nsave_passed_every = 3\n",
    );
    finished(run_station(&dir.path().join("station.toml"), 24));
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    assert!(
        text.contains("24 parts") && text.contains("ok: every record"),
        "{text}"
    );
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let entries: i64 = conn
        .query_row("SELECT count(*) FROM record_chain", [], |r| r.get(0))
        .unwrap();
    assert!(entries > 24, "PLC deliveries are chained too: {entries}");
    let (kept, other): (String, String) = conn
        .query_row(
            "SELECT a.image_path, b.image_path FROM parts a, parts b
             WHERE a.image_path IS NOT NULL AND b.image_path IS NOT NULL AND a.id < b.id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    drop(conn);
    let tamper = |sql: &str| -> String {
        let copy = tempfile::tempdir().unwrap();
        copy_station(dir.path(), copy.path());
        let db = copy.path().join("data/station.sqlite");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        let (ok, text) = verify(copy.path());
        assert!(!ok, "tampering not found ({sql}):\n{text}");
        text
    };
    let edited = tamper("UPDATE parts SET score = score - 1.0 WHERE seq = 5;");
    assert!(edited.contains("-000005: score is"), "{edited}");
    let deleted = tamper("DELETE FROM parts WHERE seq = 9;");
    assert!(
        deleted.contains("-000009: its row was deleted"),
        "{deleted}"
    );
    let entry_gone = tamper("DELETE FROM record_chain WHERE id = 3;");
    assert!(
        entry_gone.contains("chain entry 4") && entry_gone.contains("deleted or reordered"),
        "{entry_gone}"
    );
    let rewritten = tamper(
        "UPDATE record_chain SET payload = replace(payload, '\"seq\":2,', '\"seq\":20,') WHERE kind = 'part' AND ref LIKE '%-000002';",
    );
    assert!(rewritten.contains("the entry was edited"), "{rewritten}");
    // A swapped image file.
    let copy = tempfile::tempdir().unwrap();
    copy_station(dir.path(), copy.path());
    std::fs::copy(
        copy.path().join("data").join(&other),
        copy.path().join("data").join(&kept),
    )
    .unwrap();
    let (ok, text) = verify(copy.path());
    assert!(
        !ok && text.contains(&format!("file {kept} is not the file recorded")),
        "{text}"
    );
}
