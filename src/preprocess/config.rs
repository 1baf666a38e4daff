//! `[preprocess]`: the region of the frame the model sees. Parsed into [`RawPreprocess`], validated into
//! [`PreprocessConfig`]; [`roi`] also checks the ROI of each `[[recipe]]`.

use serde::Deserialize;

use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocess {
    roi: Option<Vec<i64>>,
}

/// A rectangle in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    pub roi: Option<Roi>,
}

pub fn validate(p: &mut Problems, raw: RawPreprocess) -> PreprocessConfig {
    PreprocessConfig {
        roi: roi(p, "preprocess.roi", raw.roi),
    }
}

pub fn roi(p: &mut Problems, field: &str, raw: Option<Vec<i64>>) -> Option<Roi> {
    raw.and_then(|r| {
        let fits = |v: i64| i32::try_from(v).ok();
        match r.as_slice() {
            [x, y, w, h] if *x >= 0 && *y >= 0 && *w > 0 && *h > 0 => Some(Roi {
                x: fits(*x)?,
                y: fits(*y)?,
                width: fits(*w)?,
                height: fits(*h)?,
            }),
            _ => {
                p.problem(
                    field,
                    format!("expected [x, y, width, height] with x, y >= 0 and width, height > 0, got {r:?}"),
                );
                None
            }
        }
    })
}
