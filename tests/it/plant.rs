//! Part of the plant, against real peers: a real `station run` (the binary) scraped over HTTP at `/metrics`
//! (the exposition's counts against the SQLite rows of that run), and the outbox published to a real MQTT broker
//! (Debian's `mosquitto`, started by the test on a free port) that is down at the start, stopped mid-run and
//! restarted, across a station restart, with a real subscriber (rumqttc, persistent session) checking that every
//! part arrives, in order, without a gap, duplicates only with the same id.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::station;

/// A child process killed when dropped.
struct Process(Option<Child>);

impl Process {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `station run` on `dir/station.toml`, its output piped.
fn station_run(dir: &Path, max_parts: Option<u64>) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_station"));
    cmd.args(["run", "--config"])
        .arg(dir.join("station.toml"))
        .arg("--quiet")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(n) = max_parts {
        cmd.args(["--max-parts", &n.to_string()]);
    }
    Process(Some(cmd.spawn().expect("start station run")))
}

/// Waits for the station to exit; its output (it must have succeeded).
fn finished(mut p: Process) -> String {
    let out = p.0.take().unwrap().wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "station run failed: {text}");
    text
}

/// GET `path` over plain HTTP/1.1; the body.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

fn post_trigger(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"POST /trigger HTTP/1.1\r\nHost: station\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 2"), "{reply}");
}

/// The exposition's samples: `name{labels}` -> value (labels as written).
fn samples(text: &str) -> HashMap<String, f64> {
    assert!(
        text.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn count(conn: &rusqlite::Connection, sql: &str) -> f64 {
    conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as f64
}

#[test]
fn metrics_of_a_real_station_run_match_its_sqlite_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (metrics_port, trigger_port) = (free_port(), free_port());
    station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"http\"\nlisten = \"127.0.0.1:{trigger_port}\"\n\
             [source]\nkind = \"synthetic\"\nseed = 3\ndefect_fraction = 0.4\n\
             [plc]\nkind = \"simulated\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ),
    );
    let run = station_run(dir.path(), None);
    let db = dir.path().join("data/station.sqlite");
    wait_until("the metrics endpoint", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
            && TcpStream::connect(("127.0.0.1", trigger_port)).is_ok()
    });
    const PARTS: usize = 25;
    for _ in 0..PARTS {
        post_trigger(trigger_port);
        std::thread::sleep(Duration::from_millis(40));
    }
    // Quiet: every part recorded and its PLC outcome in; then the exposition must agree with the rows.
    let mut m = HashMap::new();
    wait_until(
        "all parts recorded and counted",
        Duration::from_secs(30),
        || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            let settled = count(
                &conn,
                "SELECT count(*) FROM parts WHERE plc_status != 'pending'",
            );
            m = samples(&http_get(metrics_port, "/metrics"));
            settled == PARTS as f64
                && m["station_stage_latency_seconds_count{stage=\"end_to_end\"}"] == PARTS as f64
                && m["station_plc_delivered_total"] == PARTS as f64
        },
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let run_id = count(&conn, "SELECT max(id) FROM runs");
    let of_run = |sql: &str| count(&conn, &sql.replace("RUN", &run_id.to_string()));
    assert_eq!(
        m["station_parts_total"],
        of_run("SELECT count(*) FROM parts WHERE run_id = RUN")
    );
    assert_eq!(
        m["station_verdicts_total{verdict=\"pass\"}"],
        of_run("SELECT count(*) FROM parts WHERE run_id = RUN AND verdict = 'PASS'")
    );
    let rejects = of_run("SELECT count(*) FROM parts WHERE run_id = RUN AND verdict = 'REJECT'");
    assert_eq!(m["station_verdicts_total{verdict=\"reject\"}"], rejects);
    assert!(rejects > 0.0, "the synthetic defects are rejected");
    let mut stmt = conn
        .prepare(
            "SELECT json_extract(value, '$.code'), count(*) FROM parts, json_each(parts.reasons)
             WHERE run_id = ?1 GROUP BY 1",
        )
        .unwrap();
    let reasons: BTreeMap<String, i64> = stmt
        .query_map([run_id as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!reasons.is_empty());
    for (reason, n) in &reasons {
        assert_eq!(
            m[&format!("station_reasons_total{{reason=\"{reason}\"}}")],
            *n as f64,
            "{reason}"
        );
    }
    let exposed = m
        .keys()
        .filter(|k| k.starts_with("station_reasons_total{"))
        .count();
    assert_eq!(exposed, reasons.len(), "no reason the rows do not have");
    for stage in ["capture", "preprocess", "inference"] {
        let key = format!("station_stage_latency_seconds_count{{stage=\"{stage}\"}}");
        assert_eq!(
            m[&key],
            of_run("SELECT count(*) FROM parts WHERE run_id = RUN AND inferred_us IS NOT NULL")
        );
    }
    let inf = m
        .iter()
        .find(|(k, _)| {
            k.starts_with("station_stage_latency_seconds_bucket{")
                && k.contains("stage=\"end_to_end\"")
                && k.contains("le=\"+Inf\"")
        })
        .map(|(_, v)| *v);
    assert_eq!(inf, Some(PARTS as f64), "the +Inf bucket holds every part");
    let version: String = conn
        .query_row("SELECT model_version FROM parts LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let info = m
        .iter()
        .find(|(k, _)| k.starts_with("station_model_info{"))
        .expect("model info");
    assert!(
        info.0.contains(&format!("version=\"{version}\"")),
        "{}",
        info.0
    );
    assert_eq!(m["station_plc_link_up"], 1.0);
    assert_eq!(m["station_faults_total{kind=\"deadline_missed\"}"], 0.0);
    assert_eq!(m["station_dropped_total{what=\"record_lost\"}"], 0.0);
    let status = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = finished(run);
    assert!(out.contains(&format!("summary: {PARTS} parts")), "{out}");
}

/// A real mosquitto on `port`, persisting its sessions in `dir` (so a subscriber's queued messages survive a
/// broker restart).
struct Broker {
    dir: PathBuf,
    port: u16,
    process: Option<Process>,
}

impl Broker {
    fn new(dir: &Path) -> Broker {
        assert!(
            Path::new("/usr/sbin/mosquitto").exists(),
            "/usr/sbin/mosquitto is missing: run `bash scripts/setup.sh` (installs Debian's mosquitto)"
        );
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        let root = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        std::fs::write(
            &conf,
            format!(
                "{root}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nmax_queued_messages 100000\n",
                dir.display()
            ),
        )
        .unwrap();
        Broker {
            dir: dir.to_path_buf(),
            port,
            process: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.process = Some(Process(Some(child)));
        let port = self.port;
        wait_until("mosquitto", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops it cleanly (SIGTERM: it saves the sessions).
    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.id().to_string()])
                .status();
            if let Some(mut child) = p.0.take() {
                let _ = child.wait();
            }
        }
    }
}

/// What the subscriber received: (topic, message) in arrival order.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A real MQTT client with a persistent session, subscribed to `filter` at QoS 1; reconnects on its own.
fn subscriber(port: u16, filter: &str) -> (Received, Arc<std::sync::atomic::AtomicBool>) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new("plant-test", "127.0.0.1", port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(options, 100);
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    let received: Received = Arc::default();
    let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r, s) = (received.clone(), subscribed.clone());
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap();
                    r.lock().unwrap().push((p.topic.clone(), v));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    s.store(true, std::sync::atomic::Ordering::SeqCst)
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    (received, subscribed)
}

fn part_messages(received: &Received) -> Vec<(String, Value)> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t.ends_with("/part"))
        .cloned()
        .collect()
}

#[test]
fn mqtt_gets_every_part_in_order_through_broker_outages_and_a_station_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let mut broker = Broker::new(&broker_dir);
    let metrics_port = free_port();
    station(
        dir.path(),
        &format!(
            "[trigger]\ninterval_ms = 50\n[source]\nkind = \"synthetic\"\nseed = 4\ndefect_fraction = 0.3\n\
             [plc]\nkind = \"simulated\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [mqtt]\nbroker = \"127.0.0.1:{}\"\nretry_min_ms = 50\nretry_max_ms = 400\nack_timeout_ms = 2000\n",
            broker.port
        ),
    );
    // The subscriber's session is made while the broker is up; then the broker goes down before the station starts.
    broker.start();
    let (received, subscribed) = subscriber(broker.port, "station/test/#");
    wait_until("the subscription", Duration::from_secs(10), || {
        subscribed.load(std::sync::atomic::Ordering::SeqCst)
    });
    broker.stop();

    const RUN1: usize = 150;
    let run = station_run(dir.path(), Some(RUN1 as u64));
    wait_until("the station's metrics", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
    });
    // Broker down at the start: the backlog grows, the line goes on.
    let db = dir.path().join("data/station.sqlite");
    wait_until(
        "parts recorded while the broker is down",
        Duration::from_secs(30),
        || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            count(&conn, "SELECT count(*) FROM parts") >= 15.0
        },
    );
    let m = samples(&http_get(metrics_port, "/metrics"));
    assert!(
        m["station_outbox_backlog_messages{sink=\"mqtt\"}"] >= 15.0,
        "{m:?}"
    );
    assert_eq!(m["station_outbox_peer_up{sink=\"mqtt\"}"], 0.0);
    assert!(m["station_outbox_oldest_age_seconds{sink=\"mqtt\"}"] > 0.0);
    // Up: the backlog drains; down again mid-run and up again; down once more until the station has stopped,
    // so that what is left waits in the outbox for the next start.
    broker.start();
    wait_until("the backlog delivered", Duration::from_secs(30), || {
        part_messages(&received).len() >= 15
    });
    broker.stop();
    std::thread::sleep(Duration::from_millis(1000));
    broker.start();
    wait_until("delivery resumed", Duration::from_secs(30), || {
        part_messages(&received).len() >= 40
    });
    broker.stop();
    let out = finished(run);
    assert!(out.contains(&format!("summary: {RUN1} parts")), "{out}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let left = count(
        &conn,
        "SELECT count(*) FROM outbox WHERE id > (SELECT delivered_id FROM outbox_cursors WHERE sink = 'mqtt')",
    );
    eprintln!("mqtt: {left} messages left in the outbox when the first run stopped");
    broker.start();
    const RUN2: usize = 20;
    finished(station_run(dir.path(), Some(RUN2 as u64)));

    let total = RUN1 + RUN2;
    wait_until(
        "every part at the subscriber",
        Duration::from_secs(30),
        || {
            let mut ids: Vec<String> = part_messages(&received)
                .iter()
                .map(|(_, v)| v["key"].as_str().unwrap().to_string())
                .collect();
            ids.dedup();
            let offline = received
                .lock()
                .unwrap()
                .last()
                .is_some_and(|(t, v)| t.ends_with("/state") && v["state"] == "offline");
            ids.len() >= total && offline
        },
    );
    check_delivery(&received, &db, total);
}

/// Every part arrived, in the order of the records, ids without a gap, a duplicate only as the same message; the
/// line was not slowed: every part has its PLC result; the retained state is `offline`.
fn check_delivery(received: &Received, db: &Path, total: usize) {
    let all = received.lock().unwrap().clone();
    let mut by_id: BTreeMap<i64, Value> = BTreeMap::new();
    let mut last = 0;
    let mut duplicates = 0;
    for (topic, m) in all.iter().filter(|(t, _)| !t.ends_with("/state")) {
        let id = m["id"].as_i64().unwrap();
        assert_eq!(m["station"], "test");
        assert_eq!(
            topic.ends_with("/part"),
            m["kind"] == "part",
            "{topic}: {m}"
        );
        match by_id.get(&id) {
            Some(first) => {
                assert_eq!(first, m, "a duplicate is the same message");
                duplicates += 1;
            }
            None => {
                assert!(id > last, "message {id} after {last}: out of order");
                last = id;
                by_id.insert(id, m.clone());
            }
        }
    }
    let ids: Vec<i64> = by_id.keys().copied().collect();
    assert_eq!(ids.first(), Some(&1), "from the first message");
    assert_eq!(
        ids.len() as i64,
        ids.last().unwrap() - ids[0] + 1,
        "no gap in the ids"
    );
    let conn = rusqlite::Connection::open(db).unwrap();
    let recorded: Vec<String> = conn
        .prepare("SELECT part_id FROM parts ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let published: Vec<String> = by_id
        .values()
        .filter(|m| m["kind"] == "part")
        .map(|m| m["data"]["part_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded.len(), total);
    assert_eq!(published, recorded, "every part, in the order recorded");
    let kinds: Vec<&str> = by_id
        .values()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "run_start").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "run_end").count(), 2);
    assert_eq!(
        kinds.iter().filter(|k| **k == "plc_delivered").count(),
        total,
        "every part's PLC outcome"
    );
    let not_delivered = count(
        &conn,
        "SELECT count(*) FROM parts WHERE plc_status != 'delivered'",
    );
    assert_eq!(not_delivered, 0.0, "every part got its PLC result");
    let fail_safe = count(
        &conn,
        "SELECT count(*) FROM parts, json_each(parts.reasons)
         WHERE json_extract(value, '$.code') IN ('pipeline_overloaded', 'deadline_missed')",
    );
    assert_eq!(fail_safe, 0.0, "the line was never overloaded");
    let states: Vec<&Value> = all
        .iter()
        .filter(|(t, _)| t.ends_with("/state"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        states.last().map(|s| &s["state"]),
        Some(&Value::from("offline"))
    );
    assert!(states.iter().any(|s| s["state"] == "online"));
    eprintln!(
        "mqtt: {} messages, {} parts, {duplicates} duplicates (same id), ids 1..={}",
        by_id.len(),
        published.len(),
        last
    );
}

/// A real HTTP receiver (tests/peers/webhook_receiver.py, Python's http.server) that refuses its first
/// `fail_first` requests with 503; what it saw, one JSON object per request, in arrival order.
struct Receiver {
    _process: Process,
    port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(secret: &str, fail_first: usize) -> Receiver {
        use std::io::BufRead;
        let mut child = Command::new(crate::common::python())
            .arg(crate::common::root().join("tests/peers/webhook_receiver.py"))
            .args([secret, &fail_first.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the webhook receiver");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let port = first.strip_prefix("PORT ").unwrap().parse().unwrap();
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        Receiver {
            _process: Process(Some(child)),
            port,
            seen,
        }
    }
}

#[test]
fn webhooks_get_every_part_signed_in_order_retried_from_the_cursor_and_resumed_after_a_restart() {
    const SECRET: &str = "a shared secret of the plant";
    let receiver = Receiver::start(SECRET, 5);
    let dir = tempfile::tempdir().unwrap();
    station(
        dir.path(),
        &format!(
            "[trigger]\ninterval_ms = 50\n[source]\nkind = \"synthetic\"\nseed = 6\ndefect_fraction = 0.3\n\
             [plc]\nkind = \"simulated\"\n[[webhook]]\nname = \"qms\"\n\
             url = \"http://127.0.0.1:{}/hooks/station\"\nsecret = \"{SECRET}\"\n\
             events = [\"part\", \"run_end\"]\nretry_min_ms = 50\nretry_max_ms = 200\n",
            receiver.port
        ),
    );
    finished(station_run(dir.path(), Some(30)));
    finished(station_run(dir.path(), Some(10)));
    let accepted = || -> Vec<Value> {
        let seen = receiver.seen.lock().unwrap();
        seen.iter()
            .filter(|r| r["status"] == 204)
            .cloned()
            .collect()
    };
    wait_until(
        "both runs' ends at the receiver",
        Duration::from_secs(20),
        || accepted().iter().filter(|r| r["kind"] == "run_end").count() == 2,
    );
    let seen = receiver.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|r| r["valid"] == true),
        "a request without a valid signature"
    );
    // The first five were refused: each was the same message again (retried from the cursor), then it landed.
    let first_id = &seen[0]["id"];
    assert!(
        seen[..6].iter().all(|r| &r["id"] == first_id),
        "{:?}",
        &seen[..6]
    );
    assert_eq!(seen[5]["status"], 204);
    let accepted = accepted();
    let ids: Vec<i64> = accepted
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {ids:?}"
    );
    for r in &accepted {
        assert_eq!(
            r["body"]["id"].to_string(),
            r["id"].as_str().unwrap(),
            "the header names the message"
        );
        assert!(
            r["kind"] == "part" || r["kind"] == "run_end",
            "only the kinds asked for: {r}"
        );
    }
    let conn = rusqlite::Connection::open(dir.path().join("data/station.sqlite")).unwrap();
    let recorded: Vec<String> = conn
        .prepare("SELECT part_id FROM parts ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let posted: Vec<String> = accepted
        .iter()
        .filter(|r| r["kind"] == "part")
        .map(|r| r["body"]["data"]["part_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded.len(), 40);
    assert_eq!(
        posted, recorded,
        "every part once, in the order recorded; the restart resent none"
    );
}
