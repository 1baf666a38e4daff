//! Shared helpers for the integration tests: the project's Python peers (a pymodbus PLC, special ONNX models), a
//! temporary station with its config, and reading back the SQLite records.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inspection_station::config::Config;
use inspection_station::metrics::RunSummary;
use inspection_station::pipeline::{self, RunOptions};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's virtualenv Python (installed by scripts/setup.sh).
pub fn python() -> PathBuf {
    let python = root().join(".local/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh` (the test peers need pymodbus and onnx)",
        python.display()
    );
    python
}

/// A folder of the shared data (`$STATION_SHARED_DATA`, else `../shared/data` beside the repository); a missing
/// one fails the test with what is needed.
pub fn shared_data(sub: &str) -> PathBuf {
    let dir = std::env::var_os("STATION_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"))
        .join(sub);
    assert!(
        dir.is_dir(),
        "{} is missing: the shared data's {sub}/ folder is needed (set STATION_SHARED_DATA to the shared data folder)",
        dir.display()
    );
    dir
}

pub fn demo_model() -> PathBuf {
    root().join("models/surface-defect/1")
}

/// Builds one of the special test models of tests/peers/make_models.py into `dir`.
pub fn make_model(kind: &str, dir: &Path) {
    let status = Command::new(python())
        .arg(root().join("tests/peers/make_models.py"))
        .arg(kind)
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("run make_models.py");
    assert!(status.success(), "make_models.py {kind} failed");
}

/// One write request the pymodbus PLC served.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Write {
    pub fc: u8,
    pub address: u16,
    pub values: Vec<u16>,
}

/// A real Modbus TCP server (pymodbus) playing the PLC, on a free port; logs every write it serves.
pub struct PymodbusPlc {
    child: Child,
    pub addr: SocketAddr,
    writes: Arc<Mutex<Vec<Write>>>,
}

impl PymodbusPlc {
    pub fn start() -> PymodbusPlc {
        Self::start_on(0)
    }

    /// Starts on a given port (0: a free one); a restarted PLC comes back on the port it had.
    pub fn start_on(port: u16) -> PymodbusPlc {
        let mut child = Command::new(python())
            .arg(root().join("tests/peers/plc_server.py"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the pymodbus PLC");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines
            .next()
            .expect("PLC printed nothing")
            .expect("read PLC stdout");
        let port: u16 = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the PLC: {first}"));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let sink = writes.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let write: Write = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad PLC log line {line}: {e}"));
                sink.lock().unwrap().push(write);
            }
        });
        PymodbusPlc {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            writes,
        }
    }

    /// The writes served so far, waiting up to 5 s for at least `min` of them to be logged and then until no new
    /// one has come for 300 ms (the peer logs asynchronously: the last writes may still be on their way).
    pub fn writes(&self, min: usize) -> Vec<Write> {
        let until = Instant::now() + Duration::from_secs(5);
        let (mut seen, mut quiet_since) = (0, Instant::now());
        loop {
            let writes = self.writes.lock().unwrap().clone();
            if writes.len() != seen {
                (seen, quiet_since) = (writes.len(), Instant::now());
            }
            let settled = quiet_since.elapsed() >= Duration::from_millis(300);
            if (writes.len() >= min && settled) || Instant::now() > until {
                return writes;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PymodbusPlc {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `station.toml` into `dir` from the given sections (data goes to `dir/data`) and loads it. Sections not
/// given default to: the demo model, the demo's ROI, and a 5 s deadline (generous: tests share 2 cores).
pub fn station(dir: &Path, sections: &str) -> Config {
    let mut text = format!("[station]\nname = \"test\"\ndata_dir = \"data\"\n{sections}\n");
    if !sections.contains("[model]") {
        text += &format!("[model]\ndir = \"{}\"\n", demo_model().display());
    }
    if !sections.contains("[preprocess]") {
        text += "[preprocess]\nroi = [32, 32, 256, 256]\n";
    }
    if !sections.contains("[decision]") {
        text += "[decision]\ndeadline_ms = 5000\n";
    }
    let path = dir.join("station.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

pub async fn run(config: &Config, max_parts: Option<u64>) -> RunSummary {
    pipeline::run(
        config,
        RunOptions {
            max_parts,
            ..Default::default()
        },
        std::future::pending::<()>(),
    )
    .await
    .unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// A part's row, as recorded.
#[derive(Debug)]
pub struct Row {
    pub seq: u64,
    pub origin: String,
    pub truth: Option<String>,
    pub score: Option<f64>,
    pub verdict: String,
    pub reasons: serde_json::Value,
    pub result_code: u16,
    pub plc_status: String,
    pub image_path: Option<String>,
    pub captured_us: Option<i64>,
    pub decided_us: i64,
    pub triggered_us: i64,
    pub model_sha256: String,
}

impl Row {
    pub fn reason_codes(&self) -> Vec<String> {
        self.reasons
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap().to_string())
            .collect()
    }
}

pub fn rows(config: &Config) -> Vec<Row> {
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT seq, origin, truth, score, verdict, reasons, result_code, plc_status, image_path, captured_us,
                    decided_us, triggered_us, model_sha256 FROM parts ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            seq: r.get::<_, i64>(0)? as u64,
            origin: r.get(1)?,
            truth: r.get(2)?,
            score: r.get(3)?,
            verdict: r.get(4)?,
            reasons: serde_json::from_str(&r.get::<_, String>(5)?).unwrap(),
            result_code: r.get(6)?,
            plc_status: r.get(7)?,
            image_path: r.get(8)?,
            captured_us: r.get(9)?,
            decided_us: r.get(10)?,
            triggered_us: r.get(11)?,
            model_sha256: r.get(12)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Reject fires that fell due together and shared one longer pulse, as the run's PLC status line counts them.
pub fn merged_pulses(summary: &RunSummary) -> u64 {
    let status = summary.plc_status.as_deref().unwrap_or_default();
    status
        .split_once(" merged)")
        .and_then(|(head, _)| head.rsplit_once('(')?.1.parse().ok())
        .unwrap_or_else(|| panic!("no merged-pulse count in the PLC status: {status}"))
}
