//! Frame sources other than the folder: a video file through OpenCV, the synthetic conveyor of the demo.

use opencv::core::Size;
use opencv::prelude::*;
use opencv::videoio::{VideoWriter, VideoWriterTrait};

use inspection_station::capture::synthetic::{SyntheticParams, generate};

use crate::common::{merged_pulses, rows, run, station};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_file_replays_frame_by_frame_and_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("line.avi");
    let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
    let mut writer = VideoWriter::new(&video, fourcc, 10.0, Size::new(320, 320), true).unwrap();
    assert!(
        writer.is_opened().unwrap(),
        "OpenCV cannot write MJPG video here"
    );
    let params = SyntheticParams {
        seed: 9,
        defect_fraction: 0.0,
    };
    for i in 0..6 {
        writer.write(&generate(&params, i).unwrap().image).unwrap();
    }
    writer.release().unwrap();

    let config = station(
        dir.path(),
        r#"
        [trigger]
        interval_ms = 40
        [source]
        kind = "video"
        path = "line.avi"
        [plc]
        kind = "off"
        "#,
    );
    // No part limit: the end of the video stops the line.
    let summary = run(&config, None).await;
    assert_eq!(summary.parts, 6, "{summary}");
    let rows = rows(&config);
    assert_eq!(rows.len(), 6);
    for row in &rows {
        assert!(row.origin.contains("line.avi#"), "{}", row.origin);
        assert!(row.score.is_some());
        assert_eq!(
            row.verdict, "PASS",
            "good parts after MJPG compression, part {} scored {:?}",
            row.seq, row.score
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_conveyor_with_the_simulated_plc_counts_one_pulse_per_reject() {
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        r#"
        [trigger]
        interval_ms = 30
        [source]
        kind = "synthetic"
        seed = 3
        defect_fraction = 0.5
        [plc]
        kind = "simulated"
        reject_pulse_ms = 5
        result_buffer = 64
        "#,
    );
    // The buffer holds every result: a simulated PLC slow to acknowledge on a loaded machine must not turn
    // this into the overrun test (tests/it/plc.rs has that one).
    let summary = run(&config, Some(30)).await;
    assert_eq!(summary.parts, 30);
    assert!(summary.rejected >= 5, "{summary}");
    // Rejects that fall due together (a loaded machine delays the gate task) share one longer pulse; the
    // status line counts them as merged.
    assert_eq!(
        summary
            .simulated_plc_pulses
            .map(|p| p + merged_pulses(&summary)),
        Some(summary.rejected),
        "{summary}"
    );
    assert_eq!(summary.plc_delivered, 30);
    let d = summary.detection;
    assert_eq!(
        (d.defective_rejected, d.good_rejected),
        (d.defective, 0),
        "{summary}"
    );
    assert_eq!(rows(&config).len(), 30);
}
