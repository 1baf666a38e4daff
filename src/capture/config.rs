//! `[source]`: where the frames come from. Parsed into [`RawSource`], validated into [`SourceConfig`].

use std::path::PathBuf;

use serde::Deserialize;

use super::synthetic::SyntheticParams;
use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    kind: Option<String>,
    seed: Option<u64>,
    defect_fraction: Option<f64>,
    path: Option<PathBuf>,
    #[serde(rename = "loop")]
    looping: Option<bool>,
    max_pixels: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Synthetic(SyntheticParams),
    /// Image files replayed; a file whose header says more than `max_pixels` is refused before decoding.
    Folder {
        path: PathBuf,
        looping: bool,
        max_pixels: u64,
    },
    Video {
        path: PathBuf,
        looping: bool,
    },
}

pub fn validate(p: &mut Problems, raw: RawSource) -> SourceConfig {
    let kind = raw.kind.as_deref().unwrap_or("synthetic");
    match kind {
        "synthetic" => {
            p.unused(
                "source",
                kind,
                &[
                    ("path", raw.path.is_some()),
                    ("loop", raw.looping.is_some()),
                    ("max_pixels", raw.max_pixels.is_some()),
                ],
            );
            let defect_fraction = raw.defect_fraction.unwrap_or(0.2);
            if !(0.0..=1.0).contains(&defect_fraction) {
                p.problem(
                    "source.defect_fraction",
                    format!("expected a fraction between 0 and 1, got {defect_fraction}"),
                );
            }
            SourceConfig::Synthetic(SyntheticParams {
                seed: raw.seed.unwrap_or(1),
                defect_fraction,
            })
        }
        "folder" | "video" => {
            p.unused(
                "source",
                kind,
                &[
                    ("seed", raw.seed.is_some()),
                    ("defect_fraction", raw.defect_fraction.is_some()),
                ],
            );
            let path = p.required_path(
                "source.path",
                raw.path,
                &format!("required with kind = \"{kind}\""),
            );
            let looping = raw.looping.unwrap_or(false);
            if kind == "folder" {
                let max_pixels = p.positive("source.max_pixels", raw.max_pixels, 50_000_000);
                SourceConfig::Folder {
                    path,
                    looping,
                    max_pixels,
                }
            } else {
                p.unused("source", kind, &[("max_pixels", raw.max_pixels.is_some())]);
                SourceConfig::Video { path, looping }
            }
        }
        other => {
            p.problem(
                "source.kind",
                format!("expected \"synthetic\", \"folder\" or \"video\", got \"{other}\""),
            );
            SourceConfig::Synthetic(SyntheticParams {
                seed: 1,
                defect_fraction: 0.0,
            })
        }
    }
}
