//! `calibration/<camera>/calibration.toml`: a [`Calibration`] written as TOML under its id, and read back.
//!
//! The id is the sha256 (lowercase hex) of the file's canonical content: every field but `id`, serialised as
//! [`canonical`] does. Comments and layout do not count; any changed value does. [`load`] recomputes it and
//! refuses a file whose content no longer matches its id (edited by hand: calibrate again), so the id a part's
//! record carries always names exactly the numbers its frame was undistorted with.

use std::path::{Path, PathBuf};

use super::{Calibration, CalibrationError};

/// The canonical content of a calibration: its TOML without the id.
pub fn canonical(calibration: &Calibration) -> Result<String, toml::ser::Error> {
    toml::to_string(calibration)
}

/// Whether a camera name can be a folder name: letters, digits, `-`, `_`, `.` (not starting with `.`).
pub fn valid_camera_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Writes `calibration` to `<root>/<camera>/calibration.toml`, sets its id, returns the file's path.
pub fn write(root: &Path, calibration: &mut Calibration) -> Result<PathBuf, CalibrationError> {
    let dir = root.join(&calibration.camera);
    let path = dir.join("calibration.toml");
    let failed = |detail: String| CalibrationError::File {
        path: path.display().to_string(),
        detail,
    };
    let body = canonical(calibration).map_err(|e| failed(format!("cannot serialise: {e}")))?;
    calibration.id = crate::model::sha256_hex(body.as_bytes());
    let text = format!(
        "# Calibration of camera \"{}\", written by `station calibrate`.\n\
         # id: sha256 of the canonical content (every field but `id`). An edited value no longer matches it and\n\
         # the file is refused: calibrate again instead.\n\
         id = \"{}\"\n{body}",
        calibration.camera, calibration.id
    );
    std::fs::create_dir_all(&dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let partial = dir.join("calibration.toml.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| failed(format!("cannot write: {e}")))?;
    Ok(path)
}

/// Reads a calibration file, checks its id against its content and its numbers for sense.
pub fn load(path: &Path) -> Result<Calibration, CalibrationError> {
    let failed = |detail: String| CalibrationError::File {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read: {e}")))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| failed(format!("not TOML: {}", e.message())))?;
    let id = match table.remove("id") {
        Some(toml::Value::String(id)) => id,
        Some(other) => return Err(failed(format!("id: expected a string, got {other}"))),
        None => {
            return Err(failed(
                "id: missing (a file written by `station calibrate` has one)".into(),
            ));
        }
    };
    let mut calibration: Calibration = serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|e| {
            let field = e.path().to_string();
            failed(format!("{field}: {}", e.into_inner().message()))
        })?;
    let body = canonical(&calibration).map_err(|e| failed(format!("cannot serialise: {e}")))?;
    let content_id = crate::model::sha256_hex(body.as_bytes());
    if content_id != id {
        return Err(failed(format!(
            "id: the content's sha256 is {content_id}, not the recorded {id}: the file was edited after \
             `station calibrate` wrote it; calibrate again"
        )));
    }
    check(&calibration).map_err(failed)?;
    calibration.id = id;
    Ok(calibration)
}

/// The numbers a lens can have: positive focal lengths, the principal point inside the image, 4 to 14 finite
/// distortion coefficients.
fn check(c: &Calibration) -> Result<(), String> {
    let m = &c.camera_matrix;
    let finite = m
        .iter()
        .flatten()
        .chain(&c.distortion)
        .all(|v| v.is_finite());
    if !finite {
        return Err("camera_matrix / distortion: expected finite numbers".into());
    }
    if c.image.width == 0 || c.image.height == 0 {
        return Err(format!(
            "image: expected a positive width and height, got {}",
            c.image
        ));
    }
    if !(c.fx() > 0.0 && c.fy() > 0.0) || m[2] != [0.0, 0.0, 1.0] || m[1][0] != 0.0 {
        return Err(format!(
            "camera_matrix: expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {m:?}"
        ));
    }
    let inside = |v: f64, n: u32| (0.0..=f64::from(n)).contains(&v);
    if !inside(c.cx(), c.image.width) || !inside(c.cy(), c.image.height) {
        return Err(format!(
            "camera_matrix: the principal point ({}, {}) lies outside the {} image",
            c.cx(),
            c.cy(),
            c.image
        ));
    }
    if ![4, 5, 8, 12, 14].contains(&c.distortion.len()) {
        return Err(format!(
            "distortion: expected 4, 5, 8, 12 or 14 coefficients (OpenCV's), got {}",
            c.distortion.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::{Board, ImageSize, ViewError};

    fn sample() -> Calibration {
        Calibration {
            id: String::new(),
            camera: "cam0".into(),
            rms_px: 0.4,
            first_fit_rms_px: 0.5,
            camera_matrix: [[536.0, 0.0, 342.0], [0.0, 536.0, 235.0], [0.0, 0.0, 1.0]],
            distortion: vec![-0.26, -0.04, 0.002, -0.0001, 0.25],
            image: ImageSize {
                width: 640,
                height: 480,
            },
            board: Board::parse("9x6", 25.0).unwrap(),
            scale: None,
            views: vec![ViewError {
                image: "left01.jpg".into(),
                sha256: "ab".into(),
                rms_px: 0.4,
            }],
            dropped: vec![],
        }
    }

    #[test]
    fn the_id_is_the_content_hash_and_an_edited_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut c = sample();
        let path = write(root.path(), &mut c).unwrap();
        assert_eq!(path, root.path().join("cam0/calibration.toml"));
        assert_eq!(c.id.len(), 64);
        let back = load(&path).unwrap();
        assert_eq!(back, c);
        // The same content, the same id; another value, another id.
        let mut again = sample();
        write(root.path(), &mut again).unwrap();
        assert_eq!(again.id, c.id);
        let mut other = sample();
        other.rms_px = 0.41;
        let other_root = tempfile::tempdir().unwrap();
        write(other_root.path(), &mut other).unwrap();
        assert_ne!(other.id, c.id);
        // Comments and layout do not count...
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("# a note\n\n{text}")).unwrap();
        assert_eq!(load(&path).unwrap().id, c.id);
        // ...a value does.
        std::fs::write(&path, text.replace("rms_px = 0.4\n", "rms_px = 0.2\n")).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("edited") && err.contains("calibration.toml"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_file_names_the_file_and_the_field() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("c.toml");
        let mut c = sample();
        let text = write(root.path(), &mut c)
            .map(|p| std::fs::read_to_string(p).unwrap())
            .unwrap();
        for (edit, says) in [
            (
                text.replace("width = 640", "width = \"wide\""),
                "image.width",
            ),
            (
                text.replace("camera = \"cam0\"", "camera = \"cam0\"\nlens = 1"),
                "lens",
            ),
            (text.replace("id = ", "ident = "), "id: missing"),
            ("not toml [".to_string(), "not TOML"),
        ] {
            std::fs::write(&path, edit).unwrap();
            let err = load(&path).unwrap_err().to_string();
            assert!(
                err.contains("c.toml") && err.contains(says),
                "{says}: {err}"
            );
        }
        let err = load(&root.path().join("absent.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("absent.toml") && err.contains("cannot read"),
            "{err}"
        );
        assert!(
            valid_camera_name("cam_0.left") && !valid_camera_name("../x") && !valid_camera_name("")
        );
    }

    #[test]
    fn numbers_no_lens_has_are_refused() {
        let mut c = sample();
        c.camera_matrix[0][0] = -1.0;
        assert!(check(&c).unwrap_err().contains("fx, fy > 0"));
        let mut c = sample();
        c.distortion.pop();
        c.distortion.pop();
        c.distortion.pop();
        assert!(check(&c).unwrap_err().contains("coefficients"));
        let mut c = sample();
        c.camera_matrix[0][2] = 900.0;
        assert!(check(&c).unwrap_err().contains("outside"));
    }
}
