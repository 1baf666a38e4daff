//! `station bench --peer`: the station against the plain Python pipeline of the same job
//! (`benches/peers/python_pipeline.py`: opencv-python, onnxruntime with one thread, pymodbus, sqlite3), in one
//! run, on the same frames and the same model, both writing their results to the same Modbus peer
//! (`tests/peers/plc_server.py`). Two frame sets are generated in a scratch folder: the demo's 320x320 colour
//! parts, and 1280x1024 mono frames made from them (the part scaled to 768x768 in the middle, ROI 768x768 ->
//! the model's input), as an industrial camera gives them.
//!
//! For each set it measures the bare `session.run`, the Python pipeline (sequential), the station at the
//! highest rate it sustains (paced, raised by 25% while no part is overloaded or late: a line's throughput is
//! the rate it keeps up with), and the station at 80% of that rate; it prints parts/s, latency p50/p99 (trigger
//! to verdict), CPU ms per part and the ratios. The station's CPU per part leaves out what a run costs once
//! (loading the model, the PLC task's drain): it is the difference between a run of all the parts and a run of
//! half of them, divided by the parts between. Build it with `--release`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opencv::core::{Mat, Rect, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

use super::{ConfigArg, load_config, runtime};
use crate::capture::SourceConfig;
use crate::capture::synthetic::{SyntheticParams, write_parts};
use crate::config::{Config, PlcLink, Roi, TriggerConfig};
use crate::metrics::{Latencies, Spread};
use crate::model::Model;
use crate::pipeline::{self, RunOptions};
use crate::preprocess::Preprocessor;

const PEER: &str = "benches/peers/python_pipeline.py";
const PLC_PEER: &str = "tests/peers/plc_server.py";

/// One measured way of doing the job.
struct Measured {
    name: String,
    /// Each part's score, in part order (the Python reference and the station).
    scores: Vec<f64>,
    parts_per_s: f64,
    latency: Option<Spread>,
    cpu_ms_per_part: Option<f64>,
    note: String,
}

pub fn peer(arg: &ConfigArg, parts: u64) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let python = std::env::var_os("STATION_PYTHON")
        .map_or_else(|| PathBuf::from(".local/venv/bin/python"), PathBuf::from);
    for file in [&python, &PathBuf::from(PEER), &PathBuf::from(PLC_PEER)] {
        if !file.exists() {
            bail!(
                "{} not found: run `station bench --peer` from the project folder after `bash scripts/setup.sh`",
                file.display()
            );
        }
    }
    let check = Command::new(&python)
        .args(["-c", "import cv2, onnxruntime, pymodbus"])
        .output()?;
    if !check.status.success() {
        bail!(
            "the Python reference needs opencv-python: `{} -m pip install opencv-python-headless` ({})",
            python.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    let scratch = super::bench::tempdir_in_data(&config.station.data_dir)?;
    let result = compare(&config, &python, &scratch, parts);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn compare(config: &Config, python: &Path, scratch: &Path, parts: u64) -> anyhow::Result<()> {
    let demo = scratch.join("frames-320");
    let params = SyntheticParams {
        seed: 7,
        defect_fraction: 0.2,
    };
    write_parts(&demo, None, &params, parts)?;
    let mono = scratch.join("frames-1280");
    make_mono(&demo, &mono)?;
    let mut plc = PlcPeer::start(python)?;
    let sets = [
        ("320x320 colour PNG", demo, roi(32, 32, 256, 256)),
        ("1280x1024 mono PNG", mono, roi(256, 128, 768, 768)),
    ];
    let model_dir = Model::load(&config.model, config.station.onnxruntime_path.as_deref())?
        .dir
        .clone();
    for (name, frames, roi) in sets {
        println!(
            "\n== {name}, {parts} parts, ROI {roi:?}, model {}",
            model_dir.display()
        );
        let mut rows = vec![bare(config, &frames, roi)?];
        let py = python_peer(python, &frames, &model_dir, roi, plc.addr, scratch)?;
        let py_rate = py.parts_per_s;
        rows.push(py);
        let (best, paced, to_plc) = station(config, &frames, roi, plc.addr, scratch, py_rate)?;
        let agree = score_difference(&rows[1].scores, &paced.scores);
        let bare_p99 = rows[0].latency.map(|s| s.p99_ms);
        rows.push(best);
        rows.push(paced);
        print_table(&rows);
        print_latency_target(bare_p99, to_plc);
        match agree {
            Some((n, max)) => println!(
                "scores: the station and the Python reference agree on all {n} parts within {max:.2e} (max |difference|)"
            ),
            None => println!("scores: the two runs judged different numbers of parts"),
        }
    }
    plc.stop();
    Ok(())
}

fn roi(x: i32, y: i32, width: i32, height: i32) -> Roi {
    Roi {
        x,
        y,
        width,
        height,
    }
}

/// The demo parts as a mono camera's 1280x1024 frames: gray, the part scaled to 768x768 at (256, 128).
fn make_mono(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in walk(from)? {
        let color = imgcodecs::imread(&entry, imgcodecs::IMREAD_COLOR)?;
        let mut gray = Mat::default();
        imgproc::cvt_color(&color, &mut gray, imgproc::COLOR_BGR2GRAY, 0)?;
        let mut part = Mat::default();
        imgproc::resize(
            &gray,
            &mut part,
            Size::new(768, 768),
            0.0,
            0.0,
            imgproc::INTER_LINEAR,
        )?;
        let mut frame = Mat::new_rows_cols_with_default(
            1024,
            1280,
            opencv::core::CV_8UC1,
            opencv::core::Scalar::all(40.0),
        )?;
        part.copy_to(&mut Mat::roi_mut(
            &mut frame,
            Rect::new(256, 128, 768, 768),
        )?)?;
        let out = to.join(entry.strip_prefix(from)?);
        std::fs::create_dir_all(out.parent().unwrap_or(to))?;
        anyhow::ensure!(
            imgcodecs::imwrite(&out, &frame, &Vector::new())?,
            "cannot write {}",
            out.display()
        );
    }
    Ok(())
}

fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn source(frames: &Path) -> SourceConfig {
    SourceConfig::Folder {
        path: frames.to_path_buf(),
        looping: false,
        max_pixels: 50_000_000,
        gray: None,
        decode_threads: 2,
    }
}

/// The bare model: `session.run` alone on the preprocessed frames.
fn bare(config: &Config, frames: &Path, roi: Roi) -> anyhow::Result<Measured> {
    let mut model = Model::load(&config.model, config.station.onnxruntime_path.as_deref())?;
    let mut pre_config = config.preprocess.clone();
    pre_config.roi = Some(roi);
    let pre = Preprocessor::new(&pre_config, &model.manifest.input);
    let gray = crate::capture::decode_gray(&model.manifest.input, 0);
    let mut source = crate::capture::open(&source(frames), gray)?;
    let (mut times, mut tensor, mut total) = (Latencies::default(), Vec::new(), Duration::ZERO);
    while let Ok(frame) = source.grab() {
        pre.run(&frame.image, &mut tensor)?;
        let t = Instant::now();
        model.infer(&tensor)?;
        times.push(t.elapsed());
        total += t.elapsed();
    }
    let n = times.len().max(1) as f64;
    Ok(Measured {
        scores: Vec::new(),
        name: "bare session.run".into(),
        parts_per_s: n / total.as_secs_f64(),
        latency: Spread::of(&times),
        cpu_ms_per_part: None,
        note: "the model alone, one after another".into(),
    })
}

fn python_peer(
    python: &Path,
    frames: &Path,
    model: &Path,
    roi: Roi,
    plc: std::net::SocketAddr,
    scratch: &Path,
) -> anyhow::Result<Measured> {
    let db = scratch.join(format!("python-{}.sqlite", roi.width));
    let args = serde_json::json!({
        "frames": frames, "model": model, "roi": [roi.x, roi.y, roi.width, roi.height],
        "plc": plc.to_string(), "db": db, "parts": 0,
    });
    let out = Command::new(python)
        .arg(PEER)
        .arg(args.to_string())
        .output()
        .context("run the Python reference")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(json) = text.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        bail!(
            "the Python reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let r: serde_json::Value = serde_json::from_str(json)?;
    let n = r["parts"].as_f64().unwrap_or(0.0).max(1.0);
    let mut latency = Latencies::default();
    for ms in r["latency_ms"].as_array().into_iter().flatten() {
        latency.push(Duration::from_secs_f64(ms.as_f64().unwrap_or(0.0) / 1e3));
    }
    let scores = r["scores"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_f64())
        .collect();
    Ok(Measured {
        scores,
        name: "Python reference".into(),
        parts_per_s: n / r["seconds"].as_f64().unwrap_or(1.0),
        latency: Spread::of(&latency),
        cpu_ms_per_part: r["cpu_s"].as_f64().map(|s| s * 1e3 / n),
        note: "sequential, one core".into(),
    })
}

/// CPU time of this process so far (user + system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only fills the struct it is given.
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The station paced at `rate` parts/s on the frames; the summary, wall time and CPU time.
#[allow(clippy::too_many_arguments)]
fn station_at(
    config: &Config,
    frames: &Path,
    roi: Roi,
    plc: std::net::SocketAddr,
    scratch: &Path,
    rate: f64,
    run: usize,
    max_parts: Option<u64>,
) -> anyhow::Result<(crate::metrics::RunSummary, Duration, Duration)> {
    let mut c = config.clone();
    c.source = source(frames);
    c.preprocess.roi = Some(roi);
    c.trigger = TriggerConfig::Interval {
        interval_us: (1e6 / rate).round().max(1.0) as u64,
    };
    c.plc.link = PlcLink::Tcp(plc);
    c.plc.result_ack = false;
    // The peer is a plain Modbus server that reads nothing back, and the Python reference writes each result
    // without holding it: a 1 ms hold (up to 1,000 results/s) and room for a burst keep the two comparable,
    // while every result is still written (an overrun would be a fail-safe reject, and fails the run).
    c.plc.result_hold_ms = 1;
    c.plc.result_buffer = 32;
    c.plc.heartbeat_missed = 0;
    c.audio = None;
    c.record.database = scratch.join(format!("station-{}-{run}.sqlite", roi.width));
    c.record.images_dir = scratch.join(format!("images-{}-{run}", roi.width));
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let summary = runtime()?.block_on(pipeline::run(
        &c,
        RunOptions {
            status_line: false,
            max_parts,
            ..Default::default()
        },
        std::future::pending::<()>(),
    ))?;
    Ok((summary, wall0.elapsed(), cpu_time() - cpu0))
}

/// The highest rate the station sustains (no part overloaded or late), and the station at 80% of it.
fn station(
    config: &Config,
    frames: &Path,
    roi: Roi,
    plc: std::net::SocketAddr,
    scratch: &Path,
    start_rate: f64,
) -> anyhow::Result<(Measured, Measured, Option<Spread>)> {
    let note = |s: &crate::metrics::RunSummary| {
        format!(
            "overloaded {}, late {}, PLC undelivered {}, images skipped {} / not written {}",
            s.overloaded, s.deadline_misses, s.plc_undelivered, s.images_skipped, s.images_failed
        )
    };
    let mut rate = start_rate;
    let mut best: Option<(f64, crate::metrics::RunSummary)> = None;
    for run in 0..10 {
        let (s, _, _) = station_at(config, frames, roi, plc, scratch, rate, run, None)?;
        let clean = s.overloaded == 0
            && s.deadline_misses == 0
            && s.frame_faults == 0
            && s.plc_undelivered == 0;
        println!(
            "  station paced at {rate:.0} parts/s: {} parts, overloaded {}, late {}, PLC undelivered {}",
            s.parts, s.overloaded, s.deadline_misses, s.plc_undelivered
        );
        if !clean {
            break;
        }
        best = Some((rate, s));
        rate *= 1.25;
    }
    let Some((best_rate, top)) = best else {
        bail!(
            "the station did not keep up even at the Python reference's rate ({start_rate:.0} parts/s)"
        );
    };
    // CPU per part at 80%: a full run less a half run, over the parts between.
    let paced_rate = best_rate * 0.8;
    let (s, _, cpu_full) = station_at(config, frames, roi, plc, scratch, paced_rate, 98, None)?;
    let half = s.parts / 2;
    let (_, _, cpu_half) = station_at(
        config,
        frames,
        roi,
        plc,
        scratch,
        paced_rate,
        99,
        Some(half),
    )?;
    let cpu_ms =
        cpu_full.saturating_sub(cpu_half).as_secs_f64() * 1e3 / (s.parts - half).max(1) as f64;
    let db = scratch.join(format!("station-{}-98.sqlite", roi.width));
    let (scores, to_plc) = recorded(&db)?;
    let top = Measured {
        scores: Vec::new(),
        name: format!("station at {best_rate:.0}/s (highest sustained)"),
        parts_per_s: best_rate,
        latency: top.end_to_end,
        cpu_ms_per_part: None,
        note: note(&top),
    };
    let paced = Measured {
        scores,
        name: format!("station at {paced_rate:.0}/s (80%)"),
        parts_per_s: paced_rate,
        latency: s.end_to_end,
        cpu_ms_per_part: Some(cpu_ms),
        note: note(&s),
    };
    Ok((top, paced, to_plc))
}

/// A station run's scores in part order, and the spread of trigger -> PLC result written.
fn recorded(db: &Path) -> anyhow::Result<(Vec<f64>, Option<Spread>)> {
    let read = || -> rusqlite::Result<_> {
        let conn = rusqlite::Connection::open(db)?;
        let mut stmt =
            conn.prepare("SELECT score, result_written_us - triggered_us FROM parts ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Option<f64>>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
        let (mut scores, mut to_plc) = (Vec::new(), Latencies::default());
        for row in rows {
            let (score, us) = row?;
            scores.push(score.unwrap_or(f64::NAN));
            if let Some(us) = us {
                to_plc.push(Duration::from_micros(us.max(0) as u64));
            }
        }
        Ok((scores, Spread::of(&to_plc)))
    };
    read().with_context(|| format!("read the records in {}", db.display()))
}

/// The paced run's trigger -> PLC result written against the target: p99 <= 1.1 x bare-model p99 + 2 ms.
fn print_latency_target(bare_p99_ms: Option<f64>, to_plc: Option<Spread>) {
    match (bare_p99_ms, to_plc) {
        (Some(bare), Some(s)) => {
            let bound = 1.1 * bare + 2.0;
            println!(
                "paced: trigger -> PLC result written p50 {:.2} ms, p99 {:.2} ms; target p99 <= 1.1 x bare p99 ({bare:.2} ms) + 2 ms = {bound:.2} ms: {}",
                s.p50_ms,
                s.p99_ms,
                if s.p99_ms <= bound { "met" } else { "NOT met" }
            );
        }
        _ => println!("paced: no PLC result times recorded"),
    }
}

/// How far apart two runs' scores are (parts, max |difference|), when they judged the same parts.
fn score_difference(a: &[f64], b: &[f64]) -> Option<(usize, f64)> {
    (a.len() == b.len() && !a.is_empty()).then(|| {
        let max = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        (a.len(), max)
    })
}

fn print_table(rows: &[Measured]) {
    let python = rows.iter().find(|r| r.name == "Python reference");
    println!(
        "{:<36}{:>10}{:>9}{:>9}{:>10}{:>9}{:>9}  notes",
        "", "parts/s", "p50 ms", "p99 ms", "CPU ms", "x rate", "x CPU"
    );
    for r in rows {
        let (p50, p99) = r.latency.map_or(("-".into(), "-".into()), |s| {
            (format!("{:.2}", s.p50_ms), format!("{:.2}", s.p99_ms))
        });
        let cpu = r.cpu_ms_per_part.map_or("-".into(), |c| format!("{c:.2}"));
        let ratio = python.map_or("-".into(), |p| {
            format!("{:.2}", r.parts_per_s / p.parts_per_s)
        });
        let cpu_ratio = match (python.and_then(|p| p.cpu_ms_per_part), r.cpu_ms_per_part) {
            (Some(p), Some(c)) => format!("{:.2}", c / p),
            _ => "-".into(),
        };
        println!(
            "{:<36}{:>10.1}{p50:>9}{p99:>9}{cpu:>10}{ratio:>9}{cpu_ratio:>9}  {}",
            r.name, r.parts_per_s, r.note
        );
    }
}

/// The Modbus peer both pipelines write their results to (its log of writes is read and dropped).
struct PlcPeer {
    child: Child,
    addr: std::net::SocketAddr,
}

impl PlcPeer {
    fn start(python: &Path) -> anyhow::Result<PlcPeer> {
        let mut child = Command::new(python)
            .arg(PLC_PEER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start the Modbus peer")?;
        let mut lines = BufReader::new(child.stdout.take().context("peer stdout")?).lines();
        let first = lines.next().context("the Modbus peer said nothing")??;
        let port: u16 = first
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("unexpected line from the Modbus peer: {first}"))?;
        std::thread::spawn(move || lines.for_each(drop));
        Ok(PlcPeer {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
