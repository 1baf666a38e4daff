//! The PLC handshake against a PLC simulator (tests/peers/plc_sim.py, pymodbus) in every role: the station as
//! Modbus TCP client, as Modbus TCP server, as Modbus RTU master over a socat pseudo-terminal pair; and its
//! faults: link cut, PLC heartbeat stopped, a PLC that never acknowledges, a trigger held high, triggers while
//! busy, verdicts too late for the gate.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use inspection_station::capture::synthetic::{SyntheticParams, generate};
use inspection_station::config::Config;
use inspection_station::metrics::RunSummary;
use inspection_station::pipeline::{self, Ready, RunOptions};

use crate::common::{Row, make_model, merged_pulses, python, root, rows, station};

#[derive(Debug, Deserialize)]
pub struct Trigger {
    pub part_id: u32,
    pub t: Option<f64>,
    /// The encoder count the PLC set when it raised the trigger.
    #[serde(default)]
    pub encoder: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct Shown {
    pub counter: u16,
    pub part_id: u32,
    pub code: u16,
    /// When the PLC took it (ms on the simulator's clock).
    pub t: f64,
}

#[derive(Debug, Deserialize)]
pub struct Seen {
    pub bits: u16,
    pub max_depth: u16,
    pub faults: Vec<u16>,
    /// Diagnostic registers +9..+15: triggers, refused, overruns, heartbeat faults, gate fail-safe, outages,
    /// reject pulses.
    pub diag: Option<Vec<u16>>,
}

/// What the simulated PLC saw (times in ms on its own clock).
#[derive(Debug, Deserialize)]
pub struct Report {
    pub triggers: Vec<Trigger>,
    pub results: Vec<Shown>,
    pub pulses: Vec<(f64, Option<f64>)>,
    pub seen: Seen,
    pub station_heartbeats: usize,
    /// The active recipe register's successive values.
    pub recipes: Vec<u16>,
    /// The last result block the PLC read.
    #[serde(default)]
    pub final_status: Option<Vec<u16>>,
    /// After each cut: ms from the PLC listening again to the station's first request.
    #[serde(default)]
    pub reconnect_ms: Vec<f64>,
    /// Register reads the station made (roles server and rtu).
    #[serde(default)]
    pub station_reads: Option<u64>,
}

const READY: u16 = 1;

/// Each part's recorded PLC part ID and encoder count at the trigger, in seq order.
fn plc_tags(config: &Config) -> Vec<(Option<u32>, Option<u32>)> {
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let mut stmt = conn
        .prepare("SELECT plc_part_id, encoder_at_trigger FROM parts ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

const OVERRUN: u16 = 1 << 4;
const ALARM: u16 = 1 << 5;
const TRIGGER_REFUSED: u16 = 1 << 6;
const HEARTBEAT_LOST: u16 = 1 << 7;

/// The PLC simulator, running.
pub struct Sim {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std_mpsc::Receiver<String>,
    /// What it printed after READY: its port, its end of the serial line for the station, or `-`.
    pub ready: String,
}

impl Sim {
    pub fn start(scenario: serde_json::Value) -> Sim {
        let mut child = Command::new(python())
            .arg(root().join("tests/peers/plc_sim.py"))
            .arg(scenario.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PLC simulator");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the PLC simulator did not start");
        let ready = first
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected first line from the simulator: {first}"))
            .to_string();
        Sim {
            stdin: child.stdin.take(),
            child,
            lines,
            ready,
        }
    }

    /// Lets a simulator started with `wait_for_go` begin its program.
    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the program to end and returns what it saw.
    pub fn report(&mut self) -> Report {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("the PLC simulator did not report");
            if let Some(json) = line.strip_prefix("RESULT ") {
                return serde_json::from_str(json).unwrap();
            }
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the line; returns its task and the addresses once it runs.
async fn start_line(
    config: &Config,
    max_parts: u64,
) -> (tokio::task::JoinHandle<RunSummary>, Ready) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let (ready_tx, ready_rx) = oneshot::channel();
    let cfg = config.clone();
    let line = tokio::spawn(async move {
        let opts = RunOptions {
            max_parts: Some(max_parts),
            ready: Some(ready_tx),
            ..Default::default()
        };
        pipeline::run(&cfg, opts, std::future::pending::<()>())
            .await
            .unwrap_or_else(|e| panic!("run failed: {e}"))
    });
    (line, ready_rx.await.expect("the line did not start"))
}

async fn finish(line: tokio::task::JoinHandle<RunSummary>) -> RunSummary {
    tokio::time::timeout(Duration::from_secs(60), line)
        .await
        .expect("the line did not stop")
        .unwrap()
}

fn report_of(sim: Sim) -> Report {
    let mut sim = sim;
    tokio::task::block_in_place(|| sim.report())
}

const SYNTHETIC: &str = "[source]\nkind = \"synthetic\"\nseed = 5\ndefect_fraction = 0.35\n";

/// Every result arrived once, in order, with its own part's counter and part ID and the recorded code.
fn assert_results_match(report: &Report, rows: &[Row]) {
    assert_eq!(report.results.len(), rows.len(), "{:?}", report.results);
    for (i, (shown, row)) in report.results.iter().zip(rows).enumerate() {
        assert_eq!(shown.counter, row.seq as u16, "result {i}: {shown:?}");
        assert_eq!(
            shown.code, row.result_code,
            "result {i}: {shown:?} vs {row:?}"
        );
        if let Some(trigger) = report.triggers.get(i) {
            assert_eq!(
                shown.part_id, trigger.part_id,
                "result {i} carries another part's ID"
            );
        }
    }
}

/// Each rejected part got one pulse, starting `delay_ms` after its trigger (generous tolerance: loaded machine);
/// returns the trigger-to-pulse latencies in ms.
fn assert_pulses_on_time(report: &Report, delay_ms: f64) -> Vec<f64> {
    let mut latencies = Vec::new();
    let mut pulses = report.pulses.iter();
    for (trigger, shown) in report.triggers.iter().zip(&report.results) {
        if shown.code == 1 {
            continue;
        }
        let t = trigger.t.expect("trigger time");
        let (on, off) = pulses
            .next()
            .unwrap_or_else(|| panic!("no pulse for part {}", trigger.part_id));
        let latency = on - t;
        assert!(
            (delay_ms - 15.0..=delay_ms + 150.0).contains(&latency),
            "part {}: pulse {latency:.1} ms after the trigger, configured {delay_ms} ms",
            trigger.part_id
        );
        assert!(off.is_some(), "the reject coil was left on");
        latencies.push(latency);
    }
    assert!(pulses.next().is_none(), "more pulses than rejects");
    assert!(!latencies.is_empty(), "the run needs rejected parts");
    latencies
}

fn spread(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "{name}: n {} min {:.1} p50 {:.1} p99 {:.1} max {:.1} ms",
        ms.len(),
        ms[0],
        at(50.0),
        at(99.0),
        ms[ms.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_as_client_delivers_every_result_once_in_order_and_rejects_on_time() {
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 30, "period_ms": 90, "wait_for_go": true, "linger_s": 1.5,
                                    "run_s": 30}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
             reject_delay_ms = 1000\nreject_pulse_ms = 20\nheartbeat_ms = 50\ntimeout_ms = 500\n",
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 30).await;
    sim.go();
    // `station plc status` beside the running line: it reads the map from the PLC.
    let file = dir.path().join("station.toml");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_station"))
            .args(["plc", "status", "--seconds", "1", "--config"])
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    for expected in [
        "link up",
        "round trip      p50",
        "heartbeats      station",
        "counters        triggers",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
    assert_eq!(
        text.matches("changed").count(),
        2,
        "both heartbeats count: {text}"
    );
    let report = report_of(sim);
    let summary = finish(line).await;
    let rows = rows(&config);
    assert_eq!(summary.parts, 30, "{summary}");
    assert_eq!(summary.plc_delivered, 30, "{summary}");
    assert!(rows.iter().all(|r| r.plc_status == "delivered"));
    assert_results_match(&report, &rows);
    // The PLC's part ID is on every record; the encoder count is the one read with the trigger (the PLC's
    // encoder moves 10 counts per ms, so it is at or a little after the count the PLC set with the trigger).
    let tags = plc_tags(&config);
    assert_eq!(tags.len(), report.triggers.len());
    for (i, ((part_id, encoder), trigger)) in tags.iter().zip(&report.triggers).enumerate() {
        assert_eq!(*part_id, Some(trigger.part_id), "part {}", i + 1);
        let (recorded, raised) = (encoder.expect("encoder recorded"), trigger.encoder.unwrap());
        assert!(
            recorded.wrapping_sub(raised) <= 10 * 1000,
            "part {}: encoder {recorded} recorded, {raised} set by the PLC",
            i + 1
        );
    }
    let latencies = assert_pulses_on_time(&report, 1000.0);
    // The record says when the result block went out, when the PLC acknowledged it, and when the reject output
    // was driven high and low (the station's side of the pulse).
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT result_code, triggered_us, result_written_us, actuated_us, reject_on_us, reject_off_us
             FROM parts ORDER BY seq",
        )
        .unwrap();
    type Times = (u16, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
    let times: Vec<Times> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let (mut starts, mut widths) = (Vec::new(), Vec::new());
    for (i, (code, triggered, written, acked, on, off)) in times.iter().enumerate() {
        let (written, acked) = (
            written.expect("result written"),
            acked.expect("acknowledged"),
        );
        assert!(
            written <= acked,
            "part {}: acknowledged before written",
            i + 1
        );
        if *code == 1 {
            assert!(on.is_none(), "part {}: a pass got a reject pulse", i + 1);
            continue;
        }
        let (on, off) = (on.expect("reject on"), off.expect("reject off"));
        starts.push((on - triggered) as f64 / 1e3);
        widths.push((off - on) as f64 / 1e3);
        assert!(
            off - on >= 18_000,
            "part {}: pulse of {} us for 20 ms",
            i + 1,
            off - on
        );
    }
    spread(
        "client role: trigger to reject on, station side (1000 ms)",
        starts,
    );
    spread(
        "client role: reject pulse width, station side (20 ms)",
        widths,
    );
    println!("{summary}");
    spread(
        "client role: trigger to reject output (configured 1000 ms)",
        latencies,
    );
    assert!(
        report.station_heartbeats > 10,
        "the station heartbeat counts"
    );
    // No fault but, on a very loaded machine, a verdict late at the gate (5).
    assert!(
        report.seen.faults.iter().all(|f| [0, 5].contains(f)),
        "{:?}",
        report.seen
    );
    assert_eq!(report.seen.bits & HEARTBEAT_LOST, 0, "{:?}", report.seen);
}

/// One run's parts as recorded, in order: (run, seq, PLC part ID, trigger uncertainty us, reject on us, reject
/// off us, reject_pulse, result code).
type PulseRow = (
    i64,
    i64,
    Option<u32>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    u16,
);

fn pulse_rows(config: &Config) -> Vec<PulseRow> {
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT run_id, seq, plc_part_id, trigger_uncertainty_us, reject_on_us, reject_off_us, reject_pulse,
                    result_code FROM parts ORDER BY run_id, seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// A PLC that serves every request 0-20 ms late (as one that answers once per scan) and stalls one read for
/// 350 ms (timeout 250 ms). The trigger's time is taken when the read's answer came, so no pulse is early; the
/// output has its own connection, so a pulse's width at the station's side does not depend on the other calls;
/// the stalled read is waited for once (`slow_answer_retries = 1`, the default) instead of being an outage, and is
/// one with `slow_answer_retries = 0`. The two runs share one database: the PLC's part IDs are on every record
/// across the restart, while the station's sequence starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_that_answers_late_gets_pulses_timed_by_the_trigger_and_one_slow_answer_is_no_outage()
{
    let dir = tempfile::tempdir().unwrap();
    let mut sent_ids = Vec::new();
    let mut config = None;
    for (run, retries) in [(0u32, 1u32), (1, 0)] {
        let mut sim = Sim::start(json!({"role": "server", "parts": 40, "period_ms": 150,
            "wait_for_go": true, "linger_s": 1.0, "run_s": 40, "answer_delay_ms": [0, 20],
            "stall_at_s": 2.0, "stall_ms": 350, "first_part_id": 70_000 + run * 100_000, "seed": run + 1}));
        let cfg = station(
            dir.path(),
            &format!(
                "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
                 reject_delay_ms = 500\nreject_pulse_ms = 30\ntimeout_ms = 250\nslow_answer_retries = {retries}\n",
                sim.ready
            ),
        );
        let (line, _) = start_line(&cfg, 40).await;
        sim.go();
        let report = report_of(sim);
        let summary = finish(line).await;
        assert_eq!(summary.parts, 40, "{summary}");
        sent_ids.extend(report.triggers.iter().map(|t| t.part_id));
        if retries == 0 {
            assert!(
                summary.plc_outages >= 1,
                "without a retry the stall is an outage: {summary}"
            );
            config = Some(cfg);
            continue;
        }
        assert_eq!(
            summary.plc_outages, 0,
            "one slow answer is no outage: {summary}"
        );
        assert_eq!(summary.plc_delivered, 40, "{summary}");
        // At the PLC: every pulse starts at or after trigger + 500 ms (never early), and lasts 30 ms give or
        // take the two writes' random latencies (0-20 ms each).
        let results = &report.results;
        let (mut starts, mut widths) = (Vec::new(), Vec::new());
        let mut pulses = report.pulses.iter();
        for (trigger, shown) in report.triggers.iter().zip(results) {
            if shown.code == 1 {
                continue;
            }
            let (on, off) = pulses.next().expect("a pulse for each reject");
            let start = on - (trigger.t.expect("trigger time") + 500.0);
            assert!(
                start >= -0.5,
                "part {}: pulse {start:.1} ms early",
                trigger.part_id
            );
            assert!(
                start < 200.0,
                "part {}: pulse {start:.1} ms late",
                trigger.part_id
            );
            let width = off.expect("the coil went low") - on;
            assert!(
                (30.0 - 22.0..30.0 + 80.0).contains(&width),
                "part {}: a pulse of {width:.1} ms at the PLC",
                trigger.part_id
            );
            starts.push(start);
            widths.push(width);
        }
        assert!(pulses.next().is_none(), "more pulses than rejects");
        assert!(starts.len() >= 5, "the run needs rejects: {}", starts.len());
        spread(
            "PLC answering in 0-20 ms: pulse start after trigger + delay, at the PLC",
            starts,
        );
        spread(
            "PLC answering in 0-20 ms: pulse width at the PLC (30 ms)",
            widths,
        );
        // At the station's side: the OFF write goes out 30 ms after the ON write (never sooner).
        let rows: Vec<PulseRow> = pulse_rows(&cfg);
        let (mut station_widths, mut bounds) = (Vec::new(), Vec::new());
        for (_, seq, _, bound, on, off, pulse, code) in &rows {
            bounds.push(bound.expect("trigger uncertainty recorded") as f64 / 1e3);
            match (*code, pulse.as_deref()) {
                (1, Some("not_needed")) => assert!(on.is_none()),
                (1, other) => panic!("part {seq}: a pass with reject_pulse {other:?}"),
                (_, Some("driven")) => {
                    let width = (off.expect("reject off") - on.expect("reject on")) as f64 / 1e3;
                    assert!(width >= 29.9, "part {seq}: {width:.2} ms at the station");
                    station_widths.push(width);
                }
                (_, Some("extended")) => {}
                (_, other) => panic!("part {seq}: a reject with reject_pulse {other:?}"),
            }
        }
        station_widths.sort_by(f64::total_cmp);
        let median = station_widths[station_widths.len() / 2];
        assert!(
            (median - 30.0).abs() <= 2.0,
            "median pulse width {median:.2} ms at the station's side for 30 ms"
        );
        spread(
            "PLC answering in 0-20 ms: pulse width at the station's side (30 ms)",
            station_widths,
        );
        spread(
            "PLC answering in 0-20 ms: trigger time's error bound (the read's round trip)",
            bounds,
        );
    }
    // Across the restart: every record carries the ID the PLC sent, in order; the sequence started again.
    let rows = pulse_rows(&config.unwrap());
    let recorded: Vec<u32> = rows.iter().map(|r| r.2.expect("PLC part ID")).collect();
    assert_eq!(recorded, sent_ids, "part IDs on record across the restart");
    let runs: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        rows.iter().filter(|r| r.1 == 1).count(),
        2,
        "each run starts at seq 1"
    );
}

/// The handshake flat out in each role: a PLC that raises the next trigger as soon as TRIGGER_ACK fell and
/// acknowledges every result at once (2 ms scan). Measures the trigger cycle (one part's trigger handshake),
/// the interval between results taken, and parts per second (docs/PLC.md, "Timing and throughput"); asserts
/// that every result was delivered once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_rate_in_each_role_is_measured_with_every_result_delivered() {
    const PARTS: u64 = 120;
    for role in ["client", "client, shared connection", "server", "rtu"] {
        let dir = tempfile::tempdir().unwrap();
        let scenario = |extra: serde_json::Value| {
            let mut s = json!({"parts": PARTS, "period_ms": 0, "run_s": 40, "linger_s": 0.5});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            s
        };
        let plc = |link: &str| {
            format!(
                // A result buffer of 32 absorbs the Python PLC's own stalls on a loaded 2-core machine (with the
                // default 8, a CI run saw two results overrun while the simulator was late to acknowledge).
                "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\n{link}reject_pulse_ms = 5\ntimeout_ms = 500\nresult_buffer = 32\n"
            )
        };
        let (summary, report, config) = match role {
            "server" => {
                let config = station(
                    dir.path(),
                    &plc("kind = \"tcp\"\nrole = \"server\"\nlisten = \"127.0.0.1:0\"\n"),
                );
                let (line, ready) = start_line(&config, PARTS).await;
                let addr = ready.plc.expect("the station's Modbus server");
                let sim = Sim::start(scenario(
                    json!({"role": "client", "connect": addr.to_string()}),
                ));
                let summary = finish(line).await;
                (summary, report_of(sim), config)
            }
            _ => {
                let extra = if role == "rtu" {
                    json!({"role": "rtu", "baud": 115200, "wait_for_go": true})
                } else {
                    json!({"role": "server", "wait_for_go": true})
                };
                let mut sim = Sim::start(scenario(extra));
                let link = if role == "rtu" {
                    format!(
                        "kind = \"rtu\"\ndevice = \"{}\"\nbaud_rate = 115200\nparity = \"none\"\n",
                        sim.ready
                    )
                } else {
                    let shared = if role == "client" { "own" } else { "shared" };
                    format!(
                        "kind = \"tcp\"\naddress = \"127.0.0.1:{}\"\noutput_connection = \"{shared}\"\n",
                        sim.ready
                    )
                };
                let config = station(dir.path(), &plc(&link));
                let (line, _) = start_line(&config, PARTS).await;
                sim.go();
                let report = report_of(sim);
                (finish(line).await, report, config)
            }
        };
        assert_eq!(
            (summary.parts, summary.plc_delivered),
            (PARTS, PARTS),
            "{role}: {summary}"
        );
        assert_results_match(&report, &rows(&config));
        let times = |ts: Vec<f64>| ts.windows(2).map(|w| w[1] - w[0]).collect::<Vec<f64>>();
        let raised: Vec<f64> = report
            .triggers
            .iter()
            .map(|t| t.t.expect("trigger time"))
            .collect();
        let taken: Vec<f64> = report.results.iter().map(|r| r.t).collect();
        let span_s = (taken[taken.len() - 1] - raised[0]) / 1e3;
        println!(
            "{role}: {PARTS} parts in {span_s:.2} s: {:.1} parts/s with acknowledge",
            PARTS as f64 / span_s
        );
        spread(
            &format!("{role}: trigger cycle (raise to next raise)"),
            times(raised),
        );
        spread(
            &format!("{role}: interval between results taken"),
            times(taken),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_as_server_is_polled_by_the_plc_and_rejects_at_the_encoder_distance() {
    let dir = tempfile::tempdir().unwrap();
    // 10 counts per ms on the simulator's encoder: 10000 counts = 1000 ms.
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\nkind = \"tcp\"\nrole = \"server\"\n\
             listen = \"127.0.0.1:0\"\nreject_distance_counts = 10000\nreject_pulse_ms = 20\nheartbeat_ms = 50\n"
        ),
    );
    let (line, ready) = start_line(&config, 25).await;
    let addr = ready.plc.expect("the station's Modbus server");
    let sim = Sim::start(
        json!({"role": "client", "connect": addr.to_string(), "parts": 25,
                                "period_ms": 90, "counts_per_ms": 10, "run_s": 30, "linger_s": 1.5}),
    );
    let summary = finish(line).await;
    let report = report_of(sim);
    let rows = rows(&config);
    assert_eq!(summary.parts, 25, "{summary}");
    assert_eq!(summary.plc_delivered, 25, "{summary}");
    assert_results_match(&report, &rows);
    let latencies = assert_pulses_on_time(&report, 1000.0);
    spread(
        "server role: trigger to reject output (10000 counts = 1000 ms)",
        latencies,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_as_rtu_master_over_a_serial_line() {
    let mut sim = Sim::start(
        json!({"role": "rtu", "parts": 12, "period_ms": 150, "wait_for_go": true,
                                    "run_s": 30, "baud": 115200, "linger_s": 1.5}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\nkind = \"rtu\"\ndevice = \"{}\"\nbaud_rate = 115200\n\
             parity = \"none\"\nreject_delay_ms = 1000\nreject_pulse_ms = 20\npoll_ms = 10\ntimeout_ms = 500\n",
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 12).await;
    sim.go();
    let summary = finish(line).await;
    let report = report_of(sim);
    let rows = rows(&config);
    assert_eq!(
        (summary.parts, summary.plc_delivered),
        (12, 12),
        "{summary}"
    );
    assert_results_match(&report, &rows);
    let latencies = assert_pulses_on_time(&report, 1000.0);
    spread(
        "rtu: trigger to reject output (configured 1000 ms)",
        latencies,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_mid_run_delays_results_but_loses_none() {
    // Station-timed parts (interval trigger) go on during the outage; their results wait in the buffer.
    let mut sim = Sim::start(
        json!({"role": "server", "wait_for_go": true, "cut_at_s": 1.0,
                                    "cut_for_s": 2.0, "expect_results": 50, "run_s": 20}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\ninterval_ms = 60\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
             result_buffer = 64\nreject_pulse_ms = 10\ntimeout_ms = 200\nreconnect_min_ms = 50\n\
             reconnect_max_ms = 200\n",
            sim.ready
        ),
    );
    sim.go();
    let (line, _) = start_line(&config, 50).await;
    let summary = finish(line).await;
    let report = report_of(sim);
    let rows = rows(&config);
    assert_eq!(rows.len(), 50, "every part is recorded");
    assert!(summary.plc_outages >= 1, "{summary}");
    // Every result reached the PLC once, in order, after the link came back.
    assert_eq!(report.results.len(), 50, "{:?}", report.results);
    for (shown, row) in report.results.iter().zip(&rows) {
        assert_eq!(
            (shown.counter, shown.part_id),
            (row.seq as u16, row.seq as u32)
        );
        assert_eq!(shown.code, row.result_code);
    }
    // Passes judged during the outage are delivered late; rejects whose pulse could not be written are not
    // replayed: recorded REJECT plc_undelivered.
    let missed: Vec<&Row> = rows
        .iter()
        .filter(|r| r.plc_status == "undelivered")
        .collect();
    assert!(!missed.is_empty(), "rejects during a 2 s outage: {summary}");
    for row in &missed {
        assert_eq!(row.verdict, "REJECT");
        assert!(row.reason_codes().contains(&"plc_undelivered".to_string()));
        assert!(
            row.reasons.to_string().contains("reject pulse not written"),
            "{}",
            row.reasons
        );
    }
    assert_eq!(
        summary.plc_delivered + summary.plc_undelivered,
        50,
        "{summary}"
    );
    let diag = report.seen.diag.as_ref().unwrap();
    assert_eq!(diag[5], 1, "one outage in the diagnostics");
    // The outage is not a heartbeat fault (the watchdog waits for the link), and the pulses that could not be
    // written are counted apart (+16) with their own latched fault, which the PLC reads after the reconnect.
    assert_eq!(
        diag[3], 0,
        "no heartbeat fault for an outage: {:?}",
        report.seen
    );
    assert!(!report.seen.faults.contains(&1), "{:?}", report.seen);
    assert_eq!(
        diag[7] as usize,
        missed.len(),
        "missed pulses: {:?}",
        report.seen
    );
    assert!(report.seen.faults.contains(&6), "{:?}", report.seen);
    // The records say why no pulse: the link was down.
    let fates = pulse_rows(&config);
    let link_down = fates
        .iter()
        .filter(|r| r.6.as_deref() == Some("missed_link_down"))
        .count();
    assert!(
        link_down >= 1 && link_down <= missed.len(),
        "{link_down} of {} undelivered parts say missed_link_down",
        missed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_station_clears_ready_when_it_stops() {
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 0, "wait_for_go": true, "expect_results": 5,
                                    "linger_s": 3.0, "run_s": 20}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\ninterval_ms = 50\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n",
            sim.ready
        ),
    );
    sim.go();
    let (line, _) = start_line(&config, 5).await;
    let summary = finish(line).await;
    let report = report_of(sim);
    assert_eq!(summary.plc_delivered, 5, "{summary}");
    assert_ne!(
        report.seen.bits & READY,
        0,
        "READY while running: {:?}",
        report.seen
    );
    let last = report.final_status.expect("the PLC read the block");
    assert_eq!(
        last[0] & READY,
        0,
        "READY still set after the station stopped: {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_heartbeat_that_stops_raises_the_alarm_until_reset() {
    let mut sim = Sim::start(
        json!({"role": "server", "wait_for_go": true, "heartbeat_stop_s": 0.8,
                                    "reset_at_s": 2.0, "run_s": 2.6}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\ninterval_ms = 100\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
             heartbeat_ms = 50\nheartbeat_missed = 5\n",
            sim.ready
        ),
    );
    sim.go();
    let (line, _) = start_line(&config, 20).await;
    let report = report_of(sim);
    let summary = finish(line).await;
    let seen = &report.seen;
    assert_ne!(seen.bits & HEARTBEAT_LOST, 0, "{seen:?}");
    assert_ne!(seen.bits & ALARM, 0, "{seen:?}");
    assert!(
        seen.faults.contains(&1),
        "fault code 1 (heartbeat lost): {seen:?}"
    );
    assert_eq!(
        seen.diag.as_ref().unwrap()[3],
        1,
        "one heartbeat fault counted: {seen:?}"
    );
    // The heartbeat stays stopped: a fault reset does not clear a cause that is still there.
    assert!(seen.faults.contains(&1));
    assert_eq!(
        summary.parts, 20,
        "inspection goes on under the alarm: {summary}"
    );
}

/// A station that holds the results itself: one part in inspection at a time (`max_parts_in_flight = 1`), a PLC
/// that triggers flat out, a buffer of one. Refused triggers get their fail-safe result at once, but results go
/// out in trigger order, so they wait behind the part still in inspection and fill the buffer: the records and
/// the fault code (8, not 2) say it is the station that holds them, not the PLC (which acknowledges at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_full_of_results_the_station_holds_is_the_stations_fault_not_the_plcs() {
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 60, "period_ms": 0, "wait_for_go": true,
        "run_s": 8, "linger_s": 0.5}),
    );
    let dir = tempfile::tempdir().unwrap();
    // One 3000x3000 frame, replayed for every part: its decode (tens of ms) keeps each part in inspection for
    // several of the PLC's trigger cycles.
    let params = SyntheticParams {
        seed: 5,
        defect_fraction: 0.0,
    };
    let part = generate(&params, 0).unwrap().image;
    let mut big = opencv::core::Mat::default();
    opencv::imgproc::resize(
        &part,
        &mut big,
        opencv::core::Size::new(3000, 3000),
        0.0,
        0.0,
        opencv::imgproc::INTER_LINEAR,
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("frames")).unwrap();
    let file = dir.path().join("frames/part.png");
    let written =
        opencv::imgcodecs::imwrite(file.to_str().unwrap(), &big, &opencv::core::Vector::new());
    assert!(written.unwrap());
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n[source]\nkind = \"folder\"\npath = \"frames\"\nloop = true\n\
             [plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\nmax_parts_in_flight = 1\nresult_buffer = 1\n",
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 60).await;
    sim.go();
    let report = report_of(sim);
    let summary = finish(line).await;
    assert_eq!(summary.parts, 60, "{summary}");
    let rows = rows(&config);
    let held: Vec<&Row> = rows
        .iter()
        .filter(|r| r.reasons.to_string().contains("the station holds them"))
        .collect();
    assert!(
        !held.is_empty(),
        "no result found the buffer full of held results: {summary}"
    );
    for row in &held {
        assert_eq!(row.verdict, "REJECT");
        assert!(
            row.reasons
                .to_string()
                .contains("has no verdict yet and results go out in trigger order"),
            "{}",
            row.reasons
        );
    }
    assert!(
        report.seen.faults.contains(&8),
        "the PLC reads fault 8 (station holds results): {:?}",
        report.seen
    );
    println!(
        "{} of 60 parts found the buffer full of results the station held; faults seen {:?}",
        held.len(),
        report.seen.faults
    );
}

/// With nothing in the command block that needs the scan's pace (station-timed triggers, no acknowledge), the
/// station reads it at the heartbeat's pace (heartbeat, fault reset, recipe) instead of every `poll_ms`, and still
/// writes every result as it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_handshake_reads_the_plc_at_the_heartbeats_pace_and_loses_no_result() {
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 0, "ack": false, "wait_for_go": true,
        "expect_results": 50, "run_s": 20, "linger_s": 0.3}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\ninterval_ms = 25\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
             result_ack = false\n",
            sim.ready
        ),
    );
    sim.go();
    let started = std::time::Instant::now();
    let (line, _) = start_line(&config, 50).await;
    let summary = finish(line).await;
    let elapsed = started.elapsed().as_secs_f64();
    let report = report_of(sim);
    assert_eq!(
        (summary.parts, summary.plc_delivered),
        (50, 50),
        "{summary}"
    );
    assert_results_match(&report, &rows(&config));
    let reads = report.station_reads.expect("the simulator counts reads");
    // Every 100 ms (heartbeat_ms) for the run and the 2 s drain; every 5 ms it would be 20 times as many.
    let bound = (elapsed / 0.1).ceil() as u64 + 5;
    println!(
        "idle handshake: {reads} command reads in {elapsed:.1} s for 50 parts (bound {bound})"
    );
    assert!(reads <= bound, "{reads} reads in {elapsed:.1} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_that_never_acknowledges_fills_the_buffer_and_parts_are_rejected_fail_safe() {
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 10, "period_ms": 80, "ack": false,
                                    "wait_for_go": true, "run_s": 4}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n[source]\nkind = \"synthetic\"\nseed = 5\ndefect_fraction = 0.0\n\
             [plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\nresult_buffer = 4\nreject_delay_ms = 400\n\
             reject_pulse_ms = 30\n",
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 10).await;
    sim.go();
    let report = report_of(sim);
    let summary = finish(line).await;
    let rows = rows(&config);
    assert_eq!(rows.len(), 10);
    // The summary counts what the records say, after the PLC outcomes (good parts rejected at the gate count
    // as rejects).
    let recorded = |v: &str| rows.iter().filter(|r| r.verdict == v).count() as u64;
    assert_eq!(
        (summary.passed, summary.rejected),
        (recorded("PASS"), recorded("REJECT")),
        "{summary}"
    );
    // The first result stays shown (never overwritten); the buffer holds 4; the rest overrun.
    assert_eq!(report.results.len(), 1, "{:?}", report.results);
    assert_eq!(
        (report.results[0].counter, report.results[0].part_id),
        (1, 1000)
    );
    assert_eq!(report.seen.max_depth, 4, "{:?}", report.seen);
    assert_ne!(report.seen.bits & OVERRUN, 0);
    assert!(report.seen.faults.contains(&2), "{:?}", report.seen);
    assert_eq!(report.seen.diag.as_ref().unwrap()[2], 6, "6 overruns");
    // Good parts whose result overran are rejected at the gate and recorded as such; on a loaded machine one
    // of the first four may also reach the gate before its verdict (rejected fail-safe, recorded too).
    let late = rows[..4]
        .iter()
        .filter(|r| {
            r.reason_codes()
                .contains(&"verdict_late_at_gate".to_string())
        })
        .count();
    assert_eq!(
        report.pulses.len() as u64 + merged_pulses(&summary),
        6 + late as u64,
        "{:?} {summary}",
        report.pulses
    );
    for row in &rows[4..] {
        assert_eq!(row.verdict, "REJECT");
        // The record says who holds the results: here the PLC, which never acknowledges the first.
        let reasons = row.reasons.to_string();
        assert!(
            reasons.contains("result buffer full")
                && reasons.contains("the PLC has not acknowledged the result of part 1"),
            "{reasons}"
        );
        // A good part rejected at the gate is a fail-safe reject in the records too, not a pass.
        assert_eq!(row.result_code, 4, "part {}", row.seq);
    }
    // The 4 buffered ones were never acknowledged: undelivered at shutdown.
    assert_eq!(summary.plc_undelivered, 10, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_held_high_fires_once_and_triggers_while_busy_are_refused() {
    // Held high for 600 ms: one part. Then triggers every 10 ms with one part allowed in flight: some are
    // refused (busy), flagged, recorded and rejected; none is lost and results stay in order. Each later
    // trigger is held until TRIGGER_ACK, as the documented handshake asks: a pulse shorter than the poll
    // period could pass unseen on a loaded machine. The result buffer holds every refusal, so a PLC slow to
    // acknowledge on a loaded machine does not turn this into the overrun test.
    let mut sim = Sim::start(json!({"role": "server", "parts": 12, "period_ms": 10,
                                    "hold_first_ms": 600, "wait_for_go": true, "run_s": 20, "scan_ms": 1}));
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
             max_parts_in_flight = 1\npoll_ms = 2\nresult_buffer = 16\n",
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 12).await;
    sim.go();
    let summary = finish(line).await;
    let report = report_of(sim);
    let rows = rows(&config);
    assert_eq!(report.triggers.len(), 12);
    assert_eq!(rows.len(), 12, "one part per rising edge: {summary}");
    assert_results_match(&report, &rows);
    let refused = report.seen.diag.as_ref().unwrap()[1];
    assert!(
        refused > 0,
        "triggers every 10 ms with one part in flight: {:?}",
        report.seen
    );
    assert_ne!(report.seen.bits & TRIGGER_REFUSED, 0);
    let overloaded = rows
        .iter()
        .filter(|r| {
            r.reason_codes()
                .contains(&"pipeline_overloaded".to_string())
        })
        .count();
    assert_eq!(
        overloaded as u16, refused,
        "each refused trigger is a recorded REJECT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_reaches_the_gate_before_its_verdict_is_rejected_fail_safe() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow");
    make_model("slow", &slow);
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 3, "period_ms": 300, "wait_for_go": true,
                                    "run_s": 30}),
    );
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[model]\ndir = \"{}\"\n[plc]\nkind = \"tcp\"\n\
             address = \"127.0.0.1:{}\"\nreject_delay_ms = 5\nreject_pulse_ms = 10\n",
            slow.display(),
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 3).await;
    sim.go();
    let summary = finish(line).await;
    let report = report_of(sim);
    let rows = rows(&config);
    assert_eq!(rows.len(), 3, "{summary}");
    assert_eq!(report.pulses.len(), 3, "every part rejected at the gate");
    for (row, shown) in rows.iter().zip(&report.results) {
        assert_eq!(row.verdict, "REJECT");
        assert!(
            row.reason_codes()
                .contains(&"verdict_late_at_gate".to_string()),
            "{}",
            row.reasons
        );
        assert_eq!(
            (row.result_code, shown.code),
            (4, 4),
            "reject fail-safe on both sides"
        );
    }
    assert!(report.seen.faults.contains(&5), "{:?}", report.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plc_recipe_switches_model_threshold_and_roi_between_parts() {
    // Recipe 2 rejects everything, recipe 1 passes everything; 9 is not configured.
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 30, "period_ms": 100, "wait_for_go": true,
                                    "recipe_at": [[0, 2], [1500, 9], [2000, 1]], "run_s": 30}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
             [[recipe]]\nnumber = 1\nthreshold = 1000000.0\nroi = [0, 0, 320, 320]\n\
             [[recipe]]\nnumber = 2\nthreshold = -1000000.0\n",
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 30).await;
    sim.go();
    let report = report_of(sim);
    let summary = finish(line).await;
    assert_eq!(summary.parts, 30, "{summary}");
    let rows = rows(&config);
    assert_results_match(&report, &rows);
    // Each part is judged wholly by one recipe, and recipes follow each other in the order asked for.
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let judged: Vec<(f64, String)> = conn
        .prepare("SELECT threshold, verdict FROM parts ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut phases: Vec<f64> = Vec::new();
    for (threshold, verdict) in &judged {
        if phases.last() != Some(threshold) {
            phases.push(*threshold);
        }
        match *threshold {
            t if t < -1.0 => assert_eq!(verdict, "REJECT"),
            t if t > 1000.0 => assert_eq!(verdict, "PASS"),
            _ => {}
        }
    }
    let recipe_phases: Vec<f64> = phases
        .iter()
        .copied()
        .filter(|t| t.abs() > 1000.0)
        .collect();
    assert_eq!(recipe_phases, [-1e6, 1e6], "{phases:?}");
    assert!(phases.len() <= 3, "no going back and forth: {phases:?}");
    // Acknowledged back; the unknown one refused with fault 4 while recipe 2 stayed in force.
    assert_eq!(report.recipes, [0, 2, 1], "{:?}", report.recipes);
    assert!(report.seen.faults.contains(&4), "{:?}", report.seen);
}

#[test]
fn plc_and_recipe_settings_are_checked_with_every_problem_reported() {
    let text = r#"
        [model]
        dir = "m"
        [trigger]
        kind = "plc"
        input_kind = "discrete_input"
        [plc]
        kind = "tcp"
        role = "server"
        listen = "127.0.0.1:0"
        reject_delay_ms = 100
        reject_distance_counts = 50
        result_register = 30
        command_register = 40
        result_buffer = 0
        parity = "even"
        output_connection = "both"
        [[recipe]]
        number = 3
        [[recipe]]
        number = 3
        roi = [0, 0, 0, 10]
        [[recipe]]
        threshold = 0.5
    "#;
    let err = Config::parse(text, "plc.toml", std::path::Path::new(".")).unwrap_err();
    let line = err.to_string();
    for expected in [
        "trigger.input_kind: a PLC cannot write the station's discrete inputs",
        "plc.reject_distance_counts: set either plc.reject_delay_ms or plc.reject_distance_counts, not both",
        "plc.command_register: the command block (40..46) overlaps the result block (30..46)",
        "plc.result_buffer: expected at least 1 result, got 0",
        "plc.parity: not used with kind = \"tcp\", role = \"server\"",
        "plc.output_connection: expected \"own\" or \"shared\", got \"both\"",
        "recipe[1].number: recipe 3 is defined twice",
        "recipe[1].roi: expected [x, y, width, height]",
        "recipe[2].number: required",
    ] {
        assert!(line.contains(expected), "missing {expected:?} in {line}");
    }
    let bad_listen =
        "[model]\ndir = \"m\"\n[plc]\nkind = \"tcp\"\nrole = \"server\"\nlisten = \"nowhere\"\n";
    let err = Config::parse(bad_listen, "l.toml", std::path::Path::new(".")).unwrap_err();
    assert!(
        err.to_string()
            .contains("plc.listen: expected an address like \"0.0.0.0:502\", got \"nowhere\""),
        "{err}"
    );
    // An older [plc] section (before the handshake) is still valid.
    let old = "[model]\ndir = \"m\"\n[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:502\"\nresult_register = 10\n\
               reject_coil = 3\nreject_pulse_ms = 5\n[trigger]\nkind = \"plc\"\ninput_kind = \"coil\"\n\
               input_address = 5\npoll_ms = 5\n";
    Config::parse(old, "old.toml", std::path::Path::new(".")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_of_any_length_the_station_is_back_within_half_a_second() {
    for cut_s in [3.5, 10.0] {
        let mut sim = Sim::start(
            json!({"role": "server", "parts": 0, "wait_for_go": true, "cut_at_s": 1.0,
                                        "cut_for_s": cut_s, "expect_results": 0, "run_s": cut_s + 3.0}),
        );
        let dir = tempfile::tempdir().unwrap();
        let config = station(
            dir.path(),
            &format!(
                "[trigger]\ninterval_ms = 100\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n",
                sim.ready
            ),
        );
        sim.go();
        let parts = ((cut_s + 3.0) * 10.0) as u64;
        let (line, _) = start_line(&config, parts).await;
        let report = report_of(sim);
        let summary = finish(line).await;
        assert!(summary.plc_outages >= 1, "{summary}");
        let back = report
            .reconnect_ms
            .first()
            .copied()
            .expect("the station came back");
        println!(
            "outage of {cut_s} s: the station's first request {back:.0} ms after the PLC was back"
        );
        assert!(back < 500.0, "{back:.0} ms after a {cut_s} s outage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plcs_part_id_is_the_parts_identity_and_a_later_run_counts_attempts() {
    // Parts 70000..70005 (above 16 bits: both registers count), then the same six IDs again.
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 6, "period_ms": 120, "wait_for_go": true, "linger_s": 1.0,
               "run_s": 30, "first_part_id": 70_000}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
             timeout_ms = 500\n[identity]\nsource = \"plc\"\nduplicate_window_s = 600\n",
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 6).await;
    sim.go();
    finish(line).await;
    let report = report_of(sim);
    let mut sim = Sim::start(
        json!({"role": "server", "parts": 3, "period_ms": 120, "wait_for_go": true, "linger_s": 1.0,
               "run_s": 30, "first_part_id": 70_003}),
    );
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\n{SYNTHETIC}[plc]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\
             timeout_ms = 500\n[identity]\nsource = \"plc\"\nduplicate_window_s = 600\n",
            sim.ready
        ),
    );
    let (line, _) = start_line(&config, 3).await;
    sim.go();
    finish(line).await;
    drop(report_of(sim));
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    type IdRow = (String, Option<String>, Option<i64>, i64, String);
    let rows: Vec<IdRow> = conn
        .prepare(
            "SELECT identity_source, serial, plc_part_id, attempt, reasons FROM parts ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let sent: Vec<u32> = report.triggers.iter().map(|t| t.part_id).collect();
    assert_eq!(sent, (70_000..70_006).collect::<Vec<_>>());
    assert_eq!(rows.len(), 9, "{rows:?}");
    for (i, (source, serial, plc_id, attempt, reasons)) in rows.iter().enumerate() {
        let expected = if i < 6 { 70_000 + i } else { 70_003 + i - 6 };
        assert_eq!(source, "plc");
        assert_eq!(serial.as_deref(), Some(expected.to_string().as_str()));
        assert_eq!(*plc_id, Some(expected as i64));
        // A later run's part with an earlier ID is a re-inspection (a new process: not a duplicate).
        assert_eq!(*attempt, if i < 6 { 1 } else { 2 }, "row {i}");
        assert!(
            !reasons.contains("noread") && !reasons.contains("duplicate_serial"),
            "{reasons}"
        );
    }
}
