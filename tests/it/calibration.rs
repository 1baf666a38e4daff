//! Camera calibration on the shared chessboard photos (OpenCV's `left*.jpg`, 9x6, 640x480): the engine against
//! OpenCV's published result for that set, `station calibrate` end to end, and its errors on bad input.

use std::path::{Path, PathBuf};

use inspection_station::calibration::{self, Board, CalibrationError, solve};

use crate::cli::{station, stderr_line, succeeded};
use crate::common::shared_data;

/// OpenCV's published result for the left*.jpg set: fx = fy = 535.9, cx 342.3, cy 235.6, RMS about 0.40 px.
const FX: f64 = 535.9;
const CX: f64 = 342.3;
const CY: f64 = 235.6;

/// The shared left*.jpg photos, copied into a folder of their own (the shared folder also holds right*.jpg).
fn left_photos(dir: &Path) -> PathBuf {
    let out = dir.join("left");
    std::fs::create_dir_all(&out).unwrap();
    let shared = shared_data("calibration_chessboard");
    for entry in std::fs::read_dir(&shared).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("left") && name.ends_with(".jpg") {
            std::fs::copy(&path, out.join(&name)).unwrap();
        }
    }
    out
}

fn board() -> Board {
    Board::parse("9x6", 25.0).unwrap()
}

/// fx, fy within 1% of the published 535.9; cx, cy within `px` pixels.
fn assert_meets_the_bar(fx: f64, fy: f64, cx: f64, cy: f64, px: f64) {
    for (name, f) in [("fx", fx), ("fy", fy)] {
        assert!(
            (f - FX).abs() / FX < 0.01,
            "{name} {f} not within 1% of {FX}"
        );
    }
    assert!((cx - CX).abs() < px, "cx {cx} not within {px} px of {CX}");
    assert!((cy - CY).abs() < px, "cy {cy} not within {px} px of {CY}");
}

#[test]
fn the_engine_meets_the_accuracy_bar_on_the_shared_chessboard_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let detected = calibration::detect_views(&left_photos(tmp.path()), &board()).unwrap();
    assert_eq!(detected.images, 13);
    assert_eq!(detected.views.len(), 13, "the board is in every photo");
    assert!(detected.dropped.is_empty());
    // Every view: OpenCV's published figures.
    let all = solve::fit(&detected.views, &board(), detected.size).unwrap();
    let k = |r, c| *opencv::prelude::MatTraitConst::at_2d::<f64>(&all.camera_matrix, r, c).unwrap();
    println!(
        "all 13 views: fx {:.2} fy {:.2} cx {:.2} cy {:.2} rms {:.4}",
        k(0, 0),
        k(1, 1),
        k(0, 2),
        k(1, 2),
        all.rms_px
    );
    assert_meets_the_bar(k(0, 0), k(1, 1), k(0, 2), k(1, 2), 1.0);
    assert!((0.39..=0.41).contains(&all.rms_px), "rms {}", all.rms_px);
    // left02.jpg reprojects 6x worse than the median view: the one outlier, dropped; the refit still meets the
    // bar, with a lower error.
    let c = calibration::calibrate("cam0", detected, &board()).unwrap();
    println!(
        "after rejection: fx {:.2} fy {:.2} cx {:.2} cy {:.2} rms {:.4}; dropped {:?}",
        c.fx(),
        c.fy(),
        c.cx(),
        c.cy(),
        c.rms_px,
        c.dropped
    );
    assert_eq!(c.dropped.len(), 1, "{:?}", c.dropped);
    assert_eq!(c.dropped[0].image, "left02.jpg");
    assert!(
        c.dropped[0].reason.starts_with("outlier"),
        "{:?}",
        c.dropped
    );
    assert_eq!(c.views.len(), 12);
    assert_meets_the_bar(c.fx(), c.fy(), c.cx(), c.cy(), 3.0);
    assert!(c.rms_px < 0.3 && c.rms_px < all.rms_px, "rms {}", c.rms_px);
    assert!((c.first_fit_rms_px - all.rms_px).abs() < 1e-9);
    assert!(
        c.views
            .iter()
            .all(|v| v.rms_px < 0.5 && v.sha256.len() == 64)
    );
}

#[test]
fn station_calibrate_writes_the_calibration_file_under_its_content_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = left_photos(tmp.path());
    let reference = photos.join("left01.jpg");
    let out = station(
        &[
            "calibrate",
            "--camera",
            "cam0",
            "--images",
            photos.to_str().unwrap(),
            "--board",
            "9x6",
            "--square-mm",
            "25",
            "--reference",
            reference.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let stdout = succeeded(&out);
    println!("{stdout}");
    assert!(stdout.contains("dropped  left02.jpg: outlier"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("view ")).count(),
        12,
        "{stdout}"
    );
    let path = tmp.path().join("calibration/cam0/calibration.toml");
    let c = calibration::load(&path).unwrap();
    assert!(stdout.contains(&format!("(id {})", c.id)), "{stdout}");
    let canonical = calibration::file::canonical(&c).unwrap();
    assert_eq!(
        c.id,
        inspection_station::model::sha256_hex(canonical.as_bytes())
    );
    assert_meets_the_bar(c.fx(), c.fy(), c.cx(), c.cy(), 3.0);
    assert_eq!((c.image.width, c.image.height), (640, 480));
    assert_eq!(c.board, board());
    assert_eq!(c.views.len(), 12);
    // The scale: a 25 mm square seen at about 35 px in left01.jpg.
    let scale = c.scale.expect("measured on the reference view");
    assert_eq!(scale.reference, "left01.jpg");
    assert!((30.0..40.0).contains(&scale.square_px), "{scale:?}");
    assert!((scale.mm_per_px * scale.square_px - 25.0).abs() < 1e-9);
}

#[test]
fn station_calibrate_explains_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |images: &Path| {
        station(
            &[
                "calibrate",
                "--camera",
                "cam0",
                "--images",
                images.to_str().unwrap(),
                "--square-mm",
                "25",
            ],
            dir,
        )
    };
    // A missing folder, an empty one.
    let missing = dir.join("nowhere");
    let line = stderr_line(&run(&missing));
    assert!(
        line.contains("nowhere") && line.contains("cannot be read"),
        "{line}"
    );
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let line = stderr_line(&run(&empty));
    assert!(line.contains("no image files"), "{line}");
    // A file that is no image, named.
    let photos = left_photos(dir);
    std::fs::write(photos.join("left99.jpg"), b"not a jpeg").unwrap();
    let out = run(&photos);
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(
        line.contains("left99.jpg") && line.contains("not a readable image"),
        "{line}"
    );
    std::fs::remove_file(photos.join("left99.jpg")).unwrap();
    // A photo of another size.
    let small = opencv::imgcodecs::imread(
        photos.join("left01.jpg").to_str().unwrap(),
        opencv::imgcodecs::IMREAD_GRAYSCALE,
    )
    .unwrap();
    let mut half = opencv::core::Mat::default();
    opencv::imgproc::resize(
        &small,
        &mut half,
        opencv::core::Size::new(320, 240),
        0.0,
        0.0,
        opencv::imgproc::INTER_AREA,
    )
    .unwrap();
    let written = photos.join("left00.png");
    opencv::imgcodecs::imwrite_def(written.to_str().unwrap(), &half).unwrap();
    let line = stderr_line(&run(&photos));
    assert!(
        line.contains("mixed image sizes")
            && line.contains("left00.png")
            && line.contains("320x240"),
        "{line}"
    );
    std::fs::remove_file(&written).unwrap();
    // A photo without the board is reported and left out; the rest calibrates.
    let blank = opencv::core::Mat::new_rows_cols_with_default(
        480,
        640,
        opencv::core::CV_8UC1,
        opencv::core::Scalar::all(128.0),
    )
    .unwrap();
    opencv::imgcodecs::imwrite_def(photos.join("left00.png").to_str().unwrap(), &blank).unwrap();
    let stdout = succeeded(&run(&photos));
    assert!(
        stdout.contains("skipped  left00.png: chessboard 9x6 not found"),
        "{stdout}"
    );
    let c = calibration::load(&dir.join("calibration/cam0/calibration.toml")).unwrap();
    assert!(c.dropped.iter().any(|d| d.image == "left00.png"));
    // Too few views: three photos with the board, and the blank.
    let few = dir.join("few");
    std::fs::create_dir(&few).unwrap();
    for name in ["left01.jpg", "left03.jpg", "left04.jpg", "left00.png"] {
        std::fs::copy(photos.join(name), few.join(name)).unwrap();
    }
    let line = stderr_line(&run(&few));
    assert!(
        line.contains("too few usable views: 3 of 4 images (5 needed)")
            && line.contains("left00.png"),
        "{line}"
    );
    let err = calibration::detect_views(&few, &board())
        .and_then(|d| calibration::calibrate("cam0", d, &board()))
        .unwrap_err();
    assert!(
        matches!(err, CalibrationError::TooFewViews { usable: 3, .. }),
        "{err}"
    );
    // A board the command line cannot use: exit code 2.
    let out = station(
        &[
            "calibrate",
            "--camera",
            "../x",
            "--images",
            "p",
            "--square-mm",
            "25",
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_line(&out).contains("--camera"));
}

/// How far the board's rows and columns of corners are from straight lines: the RMS distance of the corners
/// from each row's and column's best line (total least squares), over all rows and columns, in pixels.
fn bending_px(corners: &[opencv::core::Point2f], board: &Board) -> f64 {
    let (cols, rows) = (board.cols as usize, board.rows as usize);
    let mut lines: Vec<Vec<(f64, f64)>> = Vec::new();
    for r in 0..rows {
        lines.push(
            (0..cols)
                .map(|c| corners[r * cols + c])
                .map(|p| (f64::from(p.x), f64::from(p.y)))
                .collect(),
        );
    }
    for c in 0..cols {
        lines.push(
            (0..rows)
                .map(|r| corners[r * cols + c])
                .map(|p| (f64::from(p.x), f64::from(p.y)))
                .collect(),
        );
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for line in &lines {
        let k = line.len() as f64;
        let (mx, my) = (
            line.iter().map(|p| p.0).sum::<f64>() / k,
            line.iter().map(|p| p.1).sum::<f64>() / k,
        );
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for (x, y) in line {
            a += (x - mx).powi(2);
            b += (x - mx) * (y - my);
            c += (y - my).powi(2);
        }
        // The smaller eigenvalue of the scatter matrix: the squared distances from the best line, summed.
        let smallest = (a + c) / 2.0 - (((a - c) / 2.0).powi(2) + b * b).sqrt();
        sum += smallest.max(0.0);
        n += line.len();
    }
    (sum / n as f64).sqrt()
}

#[test]
fn undistortion_straightens_the_boards_rows_and_columns() {
    use inspection_station::calibration::Undistortion;
    use inspection_station::calibration::detect::{find_corners, read_gray};
    let tmp = tempfile::tempdir().unwrap();
    let photos = left_photos(tmp.path());
    let detected = calibration::detect_views(&photos, &board()).unwrap();
    let mut c = calibration::calibrate("cam0", detected, &board()).unwrap();
    let path = calibration::write(tmp.path(), &mut c).unwrap();
    let u = Undistortion::new(&c, &path).unwrap();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for name in [
        "left01.jpg",
        "left05.jpg",
        "left09.jpg",
        "left12.jpg",
        "left14.jpg",
    ] {
        let (gray, _) = read_gray(&photos.join(name)).unwrap();
        let raw = find_corners(&gray, &board())
            .unwrap()
            .expect("board in the photo");
        let straight = u.apply(&gray).unwrap();
        let undistorted = find_corners(&straight, &board())
            .unwrap()
            .expect("board after undistortion");
        let (b, a) = (
            bending_px(&raw.iter().collect::<Vec<_>>(), &board()),
            bending_px(&undistorted.iter().collect::<Vec<_>>(), &board()),
        );
        println!("{name}: rows and columns bend {b:.3} px as captured, {a:.3} px undistorted");
        before.push(b);
        after.push(a);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (b, a) = (mean(&before), mean(&after));
    println!("mean: {b:.3} px -> {a:.3} px");
    assert!(b > 0.5, "the lens bends the board's lines visibly: {b}");
    assert!(
        a < 0.4 * b,
        "undistorted lines are straighter: {b:.3} -> {a:.3} px"
    );
    assert!(
        before.iter().zip(&after).all(|(b, a)| a < b),
        "{before:?} -> {after:?}"
    );
    // A frame of another size is refused, naming the file.
    let small =
        opencv::core::Mat::new_rows_cols_with_default(240, 320, opencv::core::CV_8UC1, 0.into())
            .unwrap();
    let err = u.apply(&small).unwrap_err().to_string();
    assert!(
        err.contains("320x240") && err.contains("640x480") && err.contains("calibration.toml"),
        "{err}"
    );
}

#[test]
fn a_station_run_with_a_calibration_records_its_id_on_every_part() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let photos = left_photos(dir);
    let detected = calibration::detect_views(&photos, &board()).unwrap();
    let mut c = calibration::calibrate("cam0", detected, &board()).unwrap();
    c.scale = Some(calibration::undistort::measure_scale(&c, &photos.join("left01.jpg")).unwrap());
    calibration::write(&dir.join("calibration"), &mut c).unwrap();
    let config = crate::common::station(
        dir,
        &format!(
            "[source]\nkind = \"folder\"\npath = \"{}\"\n[preprocess]\nroi = [32, 32, 256, 256]\ncalibration = \"calibration/cam0/calibration.toml\"\n",
            photos.display()
        ),
    );
    let out = station(&["run", "--quiet", "--config", "station.toml"], dir);
    succeeded(&out);
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let rows: Vec<(Option<String>, Option<f64>, String)> = conn
        .prepare("SELECT calibration_id, mm_per_px, verdict FROM parts ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 13, "{rows:?}");
    let mm = c.scale.as_ref().unwrap().mm_per_px;
    for (id, mm_per_px, _) in &rows {
        assert_eq!(id.as_deref(), Some(c.id.as_str()));
        assert_eq!(*mm_per_px, Some(mm));
    }
}

#[test]
fn a_calibration_the_line_cannot_use_is_a_config_problem_naming_the_file() {
    use inspection_station::config::{Config, ConfigError};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let photos = left_photos(dir);
    let mut c = calibration::calibrate(
        "cam0",
        calibration::detect_views(&photos, &board()).unwrap(),
        &board(),
    )
    .unwrap();
    calibration::write(dir, &mut c).unwrap();
    let problems = |text: &str| match Config::parse(text, "s.toml", dir) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    };
    let model = format!(
        "[model]\ndir = \"{}\"\n",
        crate::common::demo_model().display()
    );
    // Missing.
    let p = problems(&format!(
        "{model}[preprocess]\ncalibration = \"absent/calibration.toml\"\n"
    ));
    assert_eq!(p[0].field, "preprocess.calibration");
    assert!(
        p[0].message.contains("absent/calibration.toml") && p[0].message.contains("cannot read"),
        "{p:?}"
    );
    // 640x480 against the synthetic conveyor's 320x320 frames.
    let p = problems(&format!(
        "{model}[preprocess]\ncalibration = \"cam0/calibration.toml\"\n"
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field, "preprocess.calibration");
    assert!(
        p[0].message.contains("640x480") && p[0].message.contains("320x320"),
        "{p:?}"
    );
    // Malformed (an edited value).
    let file = dir.join("cam0/calibration.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("cols = 9", "cols = 8");
    std::fs::write(&file, text).unwrap();
    let source = format!(
        "[source]\nkind = \"folder\"\npath = \"{}\"\n",
        photos.display()
    );
    let p = problems(&format!(
        "{model}{source}[preprocess]\ncalibration = \"cam0/calibration.toml\"\n"
    ));
    assert_eq!(p[0].field, "preprocess.calibration");
    assert!(
        p[0].message.contains("calibration.toml") && p[0].message.contains("edited"),
        "{p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_another_size_than_the_calibration_is_a_counted_frame_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let photos = left_photos(dir);
    let detected = calibration::detect_views(&photos, &board()).unwrap();
    let mut c = calibration::calibrate("cam0", detected, &board()).unwrap();
    calibration::write(&dir.join("calibration"), &mut c).unwrap();
    // The replay: a 640x480 photo first (the config's check passes), then a 320x240 one.
    let replay = dir.join("replay");
    std::fs::create_dir(&replay).unwrap();
    std::fs::copy(photos.join("left01.jpg"), replay.join("a.jpg")).unwrap();
    let gray = opencv::imgcodecs::imread(
        photos.join("left03.jpg").to_str().unwrap(),
        opencv::imgcodecs::IMREAD_COLOR,
    )
    .unwrap();
    let mut half = opencv::core::Mat::default();
    let size = opencv::core::Size::new(320, 240);
    opencv::imgproc::resize(
        &gray,
        &mut half,
        size,
        0.0,
        0.0,
        opencv::imgproc::INTER_AREA,
    )
    .unwrap();
    opencv::imgcodecs::imwrite_def(replay.join("b.png").to_str().unwrap(), &half).unwrap();
    let config = crate::common::station(
        dir,
        &format!(
            "[source]\nkind = \"folder\"\npath = \"{}\"\n[preprocess]\nroi = [32, 32, 256, 200]\ncalibration = \"calibration/cam0/calibration.toml\"\n",
            replay.display()
        ),
    );
    let summary = crate::common::run(&config, None).await;
    assert_eq!((summary.parts, summary.frame_faults), (2, 1));
    let rows = crate::common::rows(&config);
    // The first photo fits and is judged by the model (whatever it makes of a chessboard).
    assert!(
        !rows[0].reason_codes().contains(&"frame_fault".to_string()),
        "{rows:?}"
    );
    assert!(rows[0].score.is_some(), "{rows:?}");
    assert_eq!(rows[1].verdict, "REJECT");
    assert_eq!(rows[1].reason_codes(), ["frame_fault"], "{rows:?}");
    let detail = rows[1].reasons.to_string();
    assert!(
        detail.contains("320x240")
            && detail.contains("640x480")
            && detail.contains("calibration.toml"),
        "{detail}"
    );
}
