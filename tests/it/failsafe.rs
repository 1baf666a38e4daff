//! Fail-safe: whatever fails, the part still gets a recorded REJECT with the right reason and the run continues.

use std::time::Duration;

use inspection_station::capture::synthetic::{SyntheticParams, write_parts};

use crate::common::{make_model, rows, run, station};

fn parts(dir: &std::path::Path, count: u64) -> Vec<&'static str> {
    write_parts(
        &dir.join("parts"),
        None,
        &SyntheticParams {
            seed: 5,
            defect_fraction: 0.3,
        },
        count,
    )
    .unwrap()
}

fn folder_config(
    dir: &std::path::Path,
    interval_ms: u64,
    deadline_ms: u64,
    extra: &str,
) -> inspection_station::config::Config {
    station(
        dir,
        &format!(
            r#"
            [trigger]
            kind = "interval"
            interval_ms = {interval_ms}
            [source]
            kind = "folder"
            path = "parts"
            [decision]
            deadline_ms = {deadline_ms}
            {extra}
            "#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_image_is_a_recorded_frame_fault() {
    let dir = tempfile::tempdir().unwrap();
    let truths = parts(dir.path(), 6);
    let corrupt = dir
        .path()
        .join("parts")
        .join(truths[2])
        .join("part-000003.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n this is not a picture").unwrap();
    let config = folder_config(dir.path(), 50, 5000, "[plc]\nkind = \"off\"");
    let summary = run(&config, None).await;
    assert_eq!(summary.parts, 6);
    assert_eq!(summary.frame_faults, 1);
    let rows = rows(&config);
    assert_eq!(rows.len(), 6);
    let bad = &rows[2];
    assert_eq!(bad.verdict, "REJECT");
    assert_eq!(bad.reason_codes(), ["frame_fault"]);
    assert_eq!(bad.result_code, 4);
    let detail = bad.reasons[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("part-000003.png") && detail.contains("cannot decode"),
        "{detail}"
    );
    // The others were judged normally.
    for (row, truth) in rows.iter().zip(&truths).filter(|(r, _)| r.seq != 3) {
        assert!(row.score.is_some());
        assert_eq!(
            row.verdict == "REJECT",
            *truth != "good",
            "part {}",
            row.seq
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_errors_rejects_every_part_with_model_error() {
    let dir = tempfile::tempdir().unwrap();
    parts(dir.path(), 4);
    let model = dir.path().join("error-model");
    make_model("error", &model);
    let config = folder_config(
        dir.path(),
        50,
        5000,
        &format!(
            "[plc]\nkind = \"off\"\n[model]\ndir = \"{}\"",
            model.display()
        ),
    );
    let summary = run(&config, None).await;
    assert_eq!(
        (summary.parts, summary.model_errors, summary.rejected),
        (4, 4, 4)
    );
    for row in rows(&config) {
        assert_eq!(row.verdict, "REJECT");
        assert_eq!(row.reason_codes(), ["model_error"]);
        let detail = row.reasons[0]["detail"].as_str().unwrap();
        assert!(detail.contains("cannot be reshaped"), "{detail}");
        assert!(
            row.image_path.is_some(),
            "the frame of a fail-safe reject is kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_deadline_rejects() {
    let dir = tempfile::tempdir().unwrap();
    parts(dir.path(), 3);
    let model = dir.path().join("slow-model");
    make_model("slow", &model);
    // The slow model needs well over 100 ms per part; the deadline is 40 ms.
    let config = folder_config(
        dir.path(),
        400,
        40,
        &format!(
            "[plc]\nkind = \"off\"\n[model]\ndir = \"{}\"",
            model.display()
        ),
    );
    let summary = run(&config, None).await;
    assert_eq!(
        (summary.parts, summary.deadline_misses),
        (3, 3),
        "{summary}"
    );
    for row in rows(&config) {
        assert_eq!(row.verdict, "REJECT");
        assert_eq!(row.reason_codes(), ["deadline_missed"]);
        assert_eq!(row.reasons[0]["deadline_ms"], 40);
        assert_eq!(row.score, None);
        let waited_us = row.decided_us - row.triggered_us;
        assert!(
            waited_us >= 40_000,
            "rejected before the deadline: {waited_us} us"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_that_never_answers_still_gets_every_part_recorded() {
    // A real TCP peer that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let truths = parts(dir.path(), 5);
    let config = folder_config(
        dir.path(),
        50,
        5000,
        &format!(
            "[plc]\nkind = \"tcp\"\naddress = \"{addr}\"\ntimeout_ms = 100\nreconnect_min_ms = 50\nreconnect_max_ms = 200"
        ),
    );
    let summary = tokio::time::timeout(Duration::from_secs(30), run(&config, None))
        .await
        .expect("the run must not hang on a silent PLC");
    assert_eq!(
        (
            summary.parts,
            summary.plc_undelivered,
            summary.plc_delivered
        ),
        (5, 5, 0),
        "{summary}"
    );
    assert!(summary.plc_outages >= 1);
    let rows = rows(&config);
    assert_eq!(rows.len(), 5);
    for (row, truth) in rows.iter().zip(&truths) {
        assert_eq!(row.plc_status, "undelivered");
        assert_eq!(
            row.verdict, "REJECT",
            "an undelivered result must not stand as PASS"
        );
        let codes = row.reason_codes();
        assert_eq!(codes.last().map(String::as_str), Some("plc_undelivered"));
        // The model's own judgement is kept beside it.
        assert!(row.score.is_some());
        assert_eq!(
            codes.contains(&"score_over_threshold".to_string()),
            *truth != "good"
        );
    }
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_source_is_a_frame_fault_and_the_line_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let truths = parts(dir.path(), 30);
    // Part 2's file becomes a FIFO: reading it blocks until someone writes, as a hung camera would.
    let stalled = dir
        .path()
        .join("parts")
        .join(truths[1])
        .join("part-000002.png");
    std::fs::remove_file(&stalled).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&stalled)
        .status()
        .unwrap();
    assert!(status.success());
    let unblock = {
        let stalled = stalled.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            // Opening for write releases the reader; the bytes are no image.
            std::fs::write(&stalled, b"garbage").unwrap();
        })
    };
    let config = folder_config(dir.path(), 100, 300, "[plc]\nkind = \"off\"");
    let summary = run(&config, None).await;
    unblock.join().unwrap();
    assert_eq!(summary.parts, 30, "{summary}");
    let rows = rows(&config);
    assert_eq!(rows.len(), 30);
    let part2 = &rows[1];
    assert_eq!(part2.verdict, "REJECT");
    assert_eq!(part2.reason_codes(), ["frame_fault"]);
    assert!(
        part2.reasons[0]["detail"]
            .as_str()
            .unwrap()
            .contains("capture stalled")
    );
    // Parts caught behind the stall are rejected fail-safe too, never skipped ...
    for row in &rows[2..8] {
        assert_eq!(row.verdict, "REJECT", "part {}", row.seq);
        assert!(row.score.is_none());
    }
    // ... and once the source is back, parts are judged again.
    let last = rows.last().unwrap();
    assert!(last.score.is_some(), "{last:?}");
    // (Triggers rejected as overloaded consumed no file, so the last part replays an earlier file: its truth is
    // the one its frame carried.)
    assert_eq!(
        last.verdict == "REJECT",
        last.truth.as_deref() != Some("good"),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_and_a_huge_image_are_frame_faults_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let truths = parts(dir.path(), 6);
    let part = |seq: usize| {
        dir.path()
            .join("parts")
            .join(truths[seq - 1])
            .join(format!("part-{seq:06}.png"))
    };
    std::fs::write(part(2), b"").unwrap();
    // A real PNG header announcing 20000 x 20000 pixels: refused from the header, never decoded.
    let mut huge = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    huge.extend_from_slice(&20_000u32.to_be_bytes());
    huge.extend_from_slice(&20_000u32.to_be_bytes());
    huge.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0, 0]);
    std::fs::write(part(4), &huge).unwrap();
    let config = folder_config(dir.path(), 50, 5000, "[plc]\nkind = \"off\"");
    let summary = run(&config, None).await;
    assert_eq!(summary.parts, 6);
    assert_eq!(summary.frame_faults, 2);
    let rows = rows(&config);
    let detail = |seq: usize| {
        rows[seq - 1].reasons[0]["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(rows[1].reason_codes(), ["frame_fault"]);
    assert!(
        detail(2).contains("part-000002.png") && detail(2).contains("empty"),
        "{}",
        detail(2)
    );
    assert_eq!(rows[3].reason_codes(), ["frame_fault"]);
    assert!(
        detail(4).contains("part-000004.png")
            && detail(4).contains("20000x20000")
            && detail(4).contains("max_pixels"),
        "{}",
        detail(4)
    );
    for row in rows.iter().filter(|r| r.seq != 2 && r.seq != 4) {
        assert!(row.score.is_some(), "part {} was not inspected", row.seq);
    }
}
