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
