//! ImageNet features for the anomaly heads: the EfficientNet-Lite0 feature graph converted from the PyPI wheel by
//! scripts/backbone.py (docs/BACKBONE.md), spliced into the trained model so the line still runs one graph.
//!
//! ```text
//! image [1, 1|3, S, S] ──(gray: replicate to RGB)──▶ backbone up to the chosen stages
//!   each stage's map ──▶ 3x3 average (the neighbourhood, as PatchCore) ──▶ resized to the finest grid
//!   ──▶ concatenated ──▶ random projection to `dims` channels (when fewer than the concatenation) ──▶ features
//! ```
//!
//! The manifest of the converted backbone gives each output's stage, stride and channels, and the sha256 of the
//! graph, which is checked before it is used.

use std::path::{Path, PathBuf};

use crate::model::sha256_hex;
use crate::onnx::{self, Attr, Graph};
use crate::rng::Rng;

/// The backbone `--backbone` names besides `pca`.
pub const EFFICIENTNET_LITE0: &str = "efficientnet-lite0";

/// One feature map of the backbone.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub stage: usize,
    /// The graph output's name.
    pub output: String,
    pub channels: usize,
    pub stride: usize,
}

/// A converted backbone, read and checked, with the stages chosen.
#[derive(Debug)]
pub struct Backbone {
    pub name: String,
    pub dir: PathBuf,
    /// sha256 of the feature graph (as the backbone's manifest records it).
    pub graph_sha256: String,
    /// sha256 of the source weights.
    pub source_sha256: String,
    pub layers: Vec<Layer>,
    /// The input contract: (pixel - mean) / std on 0..255 RGB.
    pub mean: f32,
    pub std: f32,
    graph: onnx::Imported,
}

fn field<'a>(t: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut table = t;
    for p in parents {
        table = table.get(*p)?.as_table()?;
    }
    table.get(*last)
}

impl Backbone {
    /// Reads `dir` (a converted backbone: manifest.toml and features.onnx) and picks the outputs of `stages`.
    pub fn load(dir: &Path, stages: &[usize]) -> Result<Backbone, String> {
        let at = |file: &str| dir.join(file).display().to_string();
        let setup = "the ImageNet backbone is installed and converted by `bash scripts/setup.sh` (docs/BACKBONE.md)";
        let text = std::fs::read_to_string(dir.join("manifest.toml"))
            .map_err(|e| format!("{}: {e}; {setup}", at("manifest.toml")))?;
        let manifest: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", at("manifest.toml")))?;
        let text_of = |path: &[&str]| -> Result<String, String> {
            field(&manifest, path)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    format!(
                        "{}: {} is missing (expected a string)",
                        at("manifest.toml"),
                        path.join(".")
                    )
                })
        };
        let number = |path: &[&str], v: Option<&toml::Value>| -> Result<f64, String> {
            v.and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
                .ok_or_else(|| {
                    format!(
                        "{}: {} is missing (expected a number)",
                        at("manifest.toml"),
                        path.join(".")
                    )
                })
        };
        let graph_sha256 = text_of(&["files", "features.onnx"])?;
        let source_sha256 = text_of(&["source", "sha256"])?;
        let first = |key: &str| -> Result<f32, String> {
            let v = field(&manifest, &["input", key]).and_then(|v| v.as_array()?.first().cloned());
            Ok(number(&["input", key], v.as_ref())? as f32)
        };
        let (mean, std) = (first("mean")?, first("std")?);
        let mut all = Vec::new();
        for (i, f) in field(&manifest, &["features"])
            .and_then(|v| v.as_array())
            .ok_or_else(|| format!("{}: no [[features]]", at("manifest.toml")))?
            .iter()
            .enumerate()
        {
            let get = |k: &str| number(&["features", &i.to_string(), k], f.get(k));
            all.push(Layer {
                stage: get("stage")? as usize,
                output: f
                    .get("name")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| {
                        format!("{}: features.{i}.name is missing", at("manifest.toml"))
                    })?
                    .to_string(),
                channels: get("channels")? as usize,
                stride: get("stride")? as usize,
            });
        }
        let mut layers = Vec::new();
        for &stage in stages {
            match all.iter().find(|l| l.stage == stage) {
                Some(l) if !layers.contains(l) => layers.push(l.clone()),
                Some(_) => return Err(format!("--layers: stage {stage} is given twice")),
                None => {
                    return Err(format!(
                        "--layers: the backbone has no stage {stage}; it has {}",
                        all.iter()
                            .map(|l| l.stage.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        if layers.is_empty() {
            return Err("--layers: expected at least one stage".into());
        }
        layers.sort_by_key(|l| l.stride);
        let bytes = std::fs::read(dir.join("features.onnx"))
            .map_err(|e| format!("{}: {e}; {setup}", at("features.onnx")))?;
        let actual = sha256_hex(&bytes);
        if actual != graph_sha256 {
            return Err(format!(
                "{}: sha256 {actual}, but the manifest says {graph_sha256}: the file is damaged or stale; \
                 run `python3 scripts/backbone.py --force`",
                at("features.onnx")
            ));
        }
        let graph = onnx::read(&bytes).map_err(|e| format!("{}: {e}", at("features.onnx")))?;
        Ok(Backbone {
            name: text_of(&["name"])?,
            dir: dir.to_path_buf(),
            graph_sha256,
            source_sha256,
            layers,
            mean,
            std,
            graph,
        })
    }

    /// Channels of the concatenated maps.
    pub fn channels(&self) -> usize {
        self.layers.iter().map(|l| l.channels).sum()
    }

    /// The feature grid for a `size` x `size` input: the finest chosen stage's (TF "SAME": ceil).
    pub fn grid(&self, size: usize) -> usize {
        size.div_ceil(self.layers[0].stride)
    }

    pub fn stages(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.stage).collect()
    }
}

/// The backbone with its projection, as the trainer uses it.
#[derive(Debug)]
pub struct Features {
    pub backbone: Backbone,
    /// `dims x channels` (row-major), or none when every channel is kept.
    pub projection: Option<Vec<f32>>,
    pub size_px: usize,
}

impl Features {
    /// A random Gaussian projection to `dims` channels (entries N(0, 1/dims): distances kept on average), or
    /// none when `dims` keeps every channel.
    pub fn new(backbone: Backbone, dims: usize, size_px: usize, seed: u64) -> Features {
        let c = backbone.channels();
        let projection = (dims < c).then(|| {
            let mut rng = Rng::new(seed ^ 0x5eed_ba4b);
            let scale = 1.0 / (dims as f64).sqrt();
            (0..dims * c)
                .map(|_| (rng.normal() * scale) as f32)
                .collect()
        });
        Features {
            backbone,
            projection,
            size_px,
        }
    }

    pub fn channels(&self) -> usize {
        match &self.projection {
            Some(p) => p.len() / self.backbone.channels(),
            None => self.backbone.channels(),
        }
    }

    pub fn grid(&self) -> (usize, usize) {
        let g = self.backbone.grid(self.size_px);
        (g, g)
    }

    /// Input pixels per feature cell.
    pub fn stride(&self) -> usize {
        self.backbone.layers[0].stride
    }

    /// Adds the features to `g` on input `x` ([N, `in_channels`, S, S], already (pixel - mean) / std); returns
    /// the features' name ([N, channels, grid, grid]).
    pub fn add_to_graph(
        &self,
        g: &mut Graph,
        x: &str,
        in_channels: usize,
    ) -> Result<String, String> {
        let rgb = if in_channels == 1 {
            g.op("Concat", &[x, x, x], vec![("axis", Attr::Int(1))])
        } else {
            x.to_string()
        };
        let outputs: Vec<&str> = self
            .backbone
            .layers
            .iter()
            .map(|l| l.output.as_str())
            .collect();
        let maps = g.splice(
            &self.backbone.graph,
            "backbone.",
            &[("image", &rgb)],
            &outputs,
        )?;
        let grid = self.backbone.grid(self.size_px) as i64;
        let mut pooled = Vec::new();
        for (map, layer) in maps.iter().zip(&self.backbone.layers) {
            let p = g.op(
                "AveragePool",
                &[map],
                vec![
                    ("kernel_shape", Attr::Ints(vec![3, 3])),
                    ("strides", Attr::Ints(vec![1, 1])),
                    ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                    ("count_include_pad", Attr::Int(0)),
                ],
            );
            let p = if layer.stride == self.backbone.layers[0].stride {
                p
            } else {
                // [batch, channels] of the map, then the finest grid: any batch (the tiles of a part).
                let shape = g.op("Shape", &[&p], vec![]);
                let (from, to) = (g.i64s("starts", &[1], &[0]), g.i64s("ends", &[1], &[2]));
                let nc = g.op("Slice", &[&shape, &from, &to], vec![]);
                let hw = g.i64s("grid", &[2], &[grid, grid]);
                let sizes = g.op("Concat", &[&nc, &hw], vec![("axis", Attr::Int(0))]);
                g.op(
                    "Resize",
                    &[&p, "", "", &sizes],
                    vec![("mode", Attr::Str("linear".into()))],
                )
            };
            pooled.push(p);
        }
        let refs: Vec<&str> = pooled.iter().map(String::as_str).collect();
        let cat = if refs.len() == 1 {
            pooled[0].clone()
        } else {
            g.op("Concat", &refs, vec![("axis", Attr::Int(1))])
        };
        Ok(match &self.projection {
            Some(p) => {
                let c = self.backbone.channels() as i64;
                let d = p.len() as i64 / c;
                let w = g.f32s("projection", &[d, c, 1, 1], p);
                g.op("Conv", &[&cat, &w], vec![])
            }
            None => cat,
        })
    }
}
