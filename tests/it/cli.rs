//! The `station` binary: help, exit codes with one-line reasons, validate, and a short demo run.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{PymodbusPlc, root};

pub(crate) fn station(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_station"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run station")
}

/// Asserts the command succeeded (showing its output otherwise) and returns its stdout.
pub(crate) fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub(crate) fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one error line expected in: {text}"
    );
    errors[0].to_string()
}

/// The repository's station.toml with its data redirected into `dir`.
pub(crate) fn demo_config(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("station.toml"))
        .unwrap()
        .replace(
            "data_dir = \"data\"",
            &format!("data_dir = \"{}\"", dir.join("data").display()),
        )
        .replace(
            "dir = \"models/",
            &format!("dir = \"{}/models/", root().display()),
        )
        .replace("port = 8080", "port = 0");
    let path = dir.join("station.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["validate", "--help"],
        &["bench", "--help"],
        &["spc", "--help"],
        &["calibrate", "--help"],
    ] {
        let out = station(args, &root());
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: station"),
            "{args:?}"
        );
    }
}

#[test]
fn a_malformed_config_reports_every_problem_on_one_line_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        r#"
[trigger]
kind = "sometimes"
[source]
kind = "folder"
seed = 3
[decision]
deadline_ms = 0
[plc]
kind = "tcp"
timeout_ms = "fast"
[model]
dir = "models/x"
"#,
    )
    .unwrap();
    let out = station(&["validate", "--config", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    for expected in [
        // A bad field no longer hides its section: `kind = "tcp"` is read, so its missing address shows too.
        "bad.toml: 6 problems",
        "plc.address: required with kind = \"tcp\"",
        "trigger.kind: expected \"interval\", \"plc\" or \"http\", got \"sometimes\"",
        "source.seed: not used with kind = \"folder\"",
        "source.path: required with kind = \"folder\"",
        "decision.deadline_ms: expected a positive number, got 0",
        "plc.timeout_ms: invalid type: string \"fast\", expected u64",
    ] {
        assert!(line.contains(expected), "missing `{expected}` in: {line}");
    }
}

#[test]
fn validate_checks_model_and_plc() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let out = station(
        &["validate", "--config", &config.to_string_lossy()],
        dir.path(),
    );
    let stdout = succeeded(&out);
    for expected in [
        "ok  config",
        "ok  model surface-defect v2",
        "ok  model inference",
        "ok  source synthetic conveyor",
        "ok  plc simulated",
    ] {
        assert!(stdout.contains(expected), "missing {expected} in {stdout}");
    }
    assert!(!stdout.contains("warn"), "{stdout}");

    // A crop the model was not trained on, and a deadline no model meets: warned, with the numbers.
    let demo = std::fs::read_to_string(&config).unwrap();
    // (without [audio]: its sound window alone would not fit a 1 ms deadline)
    let (audio, web) = (demo.find("[audio]").unwrap(), demo.find("[web]").unwrap());
    let demo = format!("{}{}", &demo[..audio], &demo[web..]);
    let misfit = dir.path().join("misfit.toml");
    std::fs::write(
        &misfit,
        demo.replace("roi = [32, 32, 256, 256]", "roi = [0, 0, 320, 320]")
            .replace("deadline_ms = 500", "deadline_ms = 1"),
    )
    .unwrap();
    let stdout = succeeded(&station(
        &["validate", "--config", &misfit.to_string_lossy()],
        dir.path(),
    ));
    assert!(
        stdout.contains("warn the model was trained on the ROI 32,32,256,256, but [preprocess] gives it the ROI 0,0,320,320"),
        "{stdout}"
    );
    assert!(
        stdout.contains("over decision.deadline_ms (1): every part would be rejected fail-safe"),
        "{stdout}"
    );

    // A real PLC that answers.
    let plc = PymodbusPlc::start();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "kind = \"simulated\"",
        &format!("kind = \"tcp\"\naddress = \"{}\"", plc.addr),
    );
    std::fs::write(&config, text).unwrap();
    let out = station(
        &["validate", "--config", &config.to_string_lossy()],
        dir.path(),
    );
    assert!(succeeded(&out).contains(&format!("ok  plc {} answered", plc.addr)));

    // No PLC there: exit 4.
    drop(plc);
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let start = text.find("address = \"").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    std::fs::write(
        &config,
        format!("{}address = \"{free}\"{}", &text[..start], &text[end..]),
    )
    .unwrap();
    let out = station(
        &["validate", "--config", &config.to_string_lossy()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr_line(&out).contains("PLC unreachable"));
}

#[test]
fn a_missing_onnx_runtime_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_station"))
        .args(["validate", "--config", &config.to_string_lossy()])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let line = stderr_line(&out);
    assert!(
        line.contains("/nonexistent/libonnxruntime.so from ORT_DYLIB_PATH does not exist"),
        "{line}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn the_demo_runs_and_prints_its_detection_figures() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let out = station(
        &[
            "run",
            "--config",
            &config.to_string_lossy(),
            "--max-parts",
            "40",
            "--quiet",
        ],
        dir.path(),
    );
    let stdout = succeeded(&out);
    assert!(stdout.contains("summary: 40 parts"), "{stdout}");
    assert!(
        stdout.contains("detection    defective parts rejected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("reject pulses seen by the simulated PLC"),
        "{stdout}"
    );
    assert!(dir.path().join("data/station.sqlite").exists());
}

#[test]
fn ctrl_c_finishes_the_parts_in_flight_and_flushes_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let child = Command::new(env!("CARGO_BIN_EXE_station"))
        .args(["run", "--config", &config.to_string_lossy(), "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = succeeded(&out);
    let parts: u64 = stdout
        .split("summary: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    assert!(parts > 0, "{stdout}");
    let conn = rusqlite::Connection::open(dir.path().join("data/station.sqlite")).unwrap();
    let rows: u64 = conn
        .query_row("SELECT count(*) FROM parts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, parts, "every judged part is recorded");
    let pending: u64 = conn
        .query_row(
            "SELECT count(*) FROM parts WHERE plc_status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0, "every verdict reached the PLC before exit");
    let finished: Option<i64> = conn
        .query_row("SELECT finished_us FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(finished.is_some(), "the run is closed");
}

#[test]
fn run_with_a_refused_model_exits_3_naming_the_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("empty-model")).unwrap();
    std::fs::write(
        dir.path().join("station.toml"),
        "[model]\ndir = \"empty-model\"\n[plc]\nkind = \"off\"\n",
    )
    .unwrap();
    let out = station(&["run", "--quiet", "--max-parts", "1"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("empty-model"), "{stderr}");
}

#[test]
fn validate_refuses_sound_windows_that_overlap_at_the_trigger_rate() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interval_ms = 50", "interval_ms = 25");
    std::fs::write(&config, text).unwrap();
    let out = station(
        &["validate", "--config", &config.to_string_lossy()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(
        line.contains("audio.post_ms")
            && line.contains("overlaps the next part's at trigger.interval_ms = 25"),
        "{line}"
    );
}
