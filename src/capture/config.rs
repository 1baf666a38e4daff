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
    decode: Option<String>,
    decode_threads: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Synthetic(SyntheticParams),
    /// Image files replayed; a file whose header says more than `max_pixels` is refused before decoding.
    Folder {
        path: PathBuf,
        looping: bool,
        max_pixels: u64,
        /// Decode to gray (`Some(true)`), to colour (`Some(false)`), or as the model takes it (`None`, "auto").
        gray: Option<bool>,
        decode_threads: usize,
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
                    ("decode", raw.decode.is_some()),
                    ("decode_threads", raw.decode_threads.is_some()),
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
                let gray = match raw.decode.as_deref() {
                    None | Some("auto") => None,
                    Some("gray") => Some(true),
                    Some("color") => Some(false),
                    Some(other) => {
                        p.problem(
                            "source.decode",
                            format!("expected \"auto\", \"gray\" or \"color\", got \"{other}\""),
                        );
                        None
                    }
                };
                let decode_threads = raw.decode_threads.unwrap_or(2);
                if decode_threads == 0 || decode_threads > 16 {
                    p.problem(
                        "source.decode_threads",
                        format!("expected 1 to 16 threads, got {decode_threads}"),
                    );
                }
                SourceConfig::Folder {
                    path,
                    looping,
                    max_pixels,
                    gray,
                    decode_threads: decode_threads.clamp(1, 16),
                }
            } else {
                p.unused(
                    "source",
                    kind,
                    &[
                        ("max_pixels", raw.max_pixels.is_some()),
                        ("decode", raw.decode.is_some()),
                        ("decode_threads", raw.decode_threads.is_some()),
                    ],
                );
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
