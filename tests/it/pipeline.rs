//! Whole pipeline: replayed parts with known truth, a pymodbus server as the PLC.

use inspection_station::capture::synthetic::{SyntheticParams, write_parts};

use crate::common::{PymodbusPlc, rows, run, station};

const RESULT_REGISTER: u16 = 10;
const REJECT_COIL: u16 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_parts_get_the_right_verdicts_and_the_plc_sees_each_one() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    let truths = write_parts(
        &parts,
        None,
        &SyntheticParams {
            seed: 21,
            defect_fraction: 0.3,
        },
        40,
    )
    .unwrap();
    let defective = truths.iter().filter(|t| **t != "good").count();
    assert!(
        defective >= 6,
        "the replay needs defective parts, got {defective}"
    );

    let plc = PymodbusPlc::start();
    let config = station(
        dir.path(),
        &format!(
            r#"
            [trigger]
            kind = "interval"
            interval_ms = 60
            [source]
            kind = "folder"
            path = "parts"
            [plc]
            kind = "tcp"
            address = "{}"
            reject_coil = {REJECT_COIL}
            result_register = {RESULT_REGISTER}
            reject_pulse_ms = 5
            result_ack = false
            heartbeat_missed = 0
            "#,
            plc.addr
        ),
    );
    let summary = run(&config, None).await;
    assert_eq!(summary.parts, 40, "{summary}");
    assert_eq!(summary.plc_delivered, 40, "{summary}");
    assert_eq!(
        summary.detection.defective_rejected, defective as u64,
        "{summary}"
    );
    assert_eq!(summary.detection.good_rejected, 0, "{summary}");

    // Every part has its row with the right verdict.
    let rows = rows(&config);
    assert_eq!(rows.len(), 40);
    for (i, (row, truth)) in rows.iter().zip(&truths).enumerate() {
        assert_eq!(row.seq, i as u64 + 1);
        assert_eq!(row.truth.as_deref(), Some(*truth));
        let expected = if *truth == "good" { "PASS" } else { "REJECT" };
        assert_eq!(
            row.verdict, expected,
            "part {} ({truth}, {}) scored {:?}",
            row.seq, row.origin, row.score
        );
        assert_eq!(row.plc_status, "delivered");
        assert!(row.captured_us.is_some() && row.decided_us >= row.triggered_us);
        assert_eq!(row.model_sha256.len(), 64);
        if expected == "REJECT" {
            assert_eq!(row.reason_codes(), ["score_over_threshold"]);
            assert_eq!(row.result_code, 2);
            let image = config
                .station
                .data_dir
                .join(row.image_path.as_ref().expect("rejected part image"));
            assert!(image.exists(), "{}", image.display());
        } else {
            assert_eq!(row.result_code, 1);
        }
    }

    // The PLC saw every part's result (result block: status word, code, inspection counter, part ID high, low,
    // ...), once, in order, each with its own part's counter and ID; and one reject pulse per rejected part (the
    // reject output has its own connection and task, so its writes interleave freely with the result blocks,
    // and it refreshes the coil's state every second while idle).
    let writes = plc.writes(40 + 2 * defective);
    let mut results: Vec<(u16, u16, u32)> = Vec::new();
    let mut coil = false;
    let mut pulses = 0;
    for w in &writes {
        match (w.fc, w.address) {
            (16, RESULT_REGISTER) => {
                let v = &w.values;
                let result = (v[1], v[2], u32::from(v[3]) << 16 | u32::from(v[4]));
                if v[0] & 0b1000 != 0 && results.last() != Some(&result) {
                    results.push(result);
                }
            }
            (5, REJECT_COIL) => {
                let on = w.values[0] != 0;
                pulses += usize::from(on && !coil);
                coil = on;
            }
            other => panic!("unexpected write {other:?}: {w:?}"),
        }
    }
    let expected: Vec<(u16, u16, u32)> = rows
        .iter()
        .map(|r| (r.result_code, r.seq as u16, r.seq as u32))
        .collect();
    assert_eq!(results, expected);
    assert!(!coil, "the reject coil was left on");
    let rejected: Vec<u16> = rows
        .iter()
        .filter(|r| r.verdict == "REJECT")
        .map(|r| r.seq as u16)
        .collect();
    assert_eq!(pulses, rejected.len(), "one pulse per reject");
    // Each record says its pulse was driven (rejects) or not needed (passes).
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let driven: Vec<u16> = conn
        .prepare("SELECT seq FROM parts WHERE reject_pulse = 'driven' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(driven, rejected);
    let not_needed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM parts WHERE reject_pulse = 'not_needed' AND verdict = 'PASS'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(not_needed as usize, 40 - rejected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_that_goes_away_is_reconnected_and_no_part_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let plc = PymodbusPlc::start();
    let port = plc.addr.port();
    let config = station(
        dir.path(),
        &format!(
            r#"
            [trigger]
            interval_ms = 50
            [source]
            kind = "synthetic"
            seed = 8
            [plc]
            kind = "tcp"
            address = "{}"
            timeout_ms = 200
            reject_pulse_ms = 5
            reconnect_min_ms = 50
            reconnect_max_ms = 200
            result_ack = false
            heartbeat_missed = 0
            "#,
            plc.addr
        ),
    );
    let cfg = config.clone();
    let line = tokio::spawn(async move { run(&cfg, Some(60)).await });
    // The PLC goes away for a while, then comes back on the same port.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    drop(plc);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let _back = PymodbusPlc::start_on(port);
    let summary = line.await.unwrap();

    assert_eq!(summary.parts, 60, "{summary}");
    assert!(summary.plc_outages >= 1, "{summary}");
    assert!(
        summary.plc_undelivered >= 1,
        "parts judged during the outage: {summary}"
    );
    assert_eq!(
        summary.plc_delivered + summary.plc_undelivered,
        60,
        "{summary}"
    );
    let rows = rows(&config);
    assert_eq!(rows.len(), 60, "every part is recorded, PLC or not");
    let first_lost = rows
        .iter()
        .position(|r| r.plc_status == "undelivered")
        .unwrap();
    assert!(
        first_lost > 0
            && rows[..first_lost]
                .iter()
                .all(|r| r.plc_status == "delivered")
    );
    for row in rows.iter().filter(|r| r.plc_status == "undelivered") {
        assert_eq!(row.verdict, "REJECT");
        assert!(row.reason_codes().contains(&"plc_undelivered".to_string()));
    }
    // After the PLC came back, results flow again.
    assert_eq!(rows.last().unwrap().plc_status, "delivered", "{summary}");
}

/// Without acknowledge, at full rate: every result is written to a real PLC (pymodbus) once, in order, before the
/// next replaces it, so none is lost ("overwritten before the PLC could read it" used to make 7-62 of 500 parts
/// REJECT `plc_undelivered`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_acknowledge_at_full_rate_every_result_reaches_the_plc() {
    let dir = tempfile::tempdir().unwrap();
    let plc = PymodbusPlc::start();
    let config = station(
        dir.path(),
        &format!(
            r#"
            [trigger]
            kind = "interval"
            interval_ms = 3
            [source]
            kind = "synthetic"
            seed = 12
            [plc]
            kind = "tcp"
            address = "{}"
            result_register = {RESULT_REGISTER}
            reject_coil = {REJECT_COIL}
            result_ack = false
            result_hold_ms = 1
            result_buffer = 64
            heartbeat_missed = 0
            "#,
            plc.addr
        ),
    );
    const PARTS: u64 = 300;
    let summary = run(&config, Some(PARTS)).await;
    assert_eq!(summary.parts, PARTS, "{summary}");
    let rows = rows(&config);
    assert_eq!(rows.len() as u64, PARTS);
    let undelivered: Vec<u64> = rows
        .iter()
        .filter(|r| r.plc_status != "delivered")
        .map(|r| r.seq)
        .collect();
    assert!(
        undelivered.is_empty(),
        "not delivered: {undelivered:?}; {summary}"
    );
    assert_eq!(summary.plc_delivered, PARTS, "{summary}");
    // The PLC's own log: each inspection counter once, in order.
    let writes = plc.writes(PARTS as usize);
    let mut counters: Vec<u16> = Vec::new();
    for w in writes
        .iter()
        .filter(|w| (w.fc, w.address) == (16, RESULT_REGISTER))
    {
        let (ready, counter) = (w.values[0] & 0b1000 != 0, w.values[2]);
        if ready && counters.last() != Some(&counter) {
            counters.push(counter);
        }
    }
    let expected: Vec<u16> = (1..=PARTS as u16).collect();
    assert_eq!(counters, expected);
}
