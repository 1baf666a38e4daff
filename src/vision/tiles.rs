//! Tiling (`station train vision --tile 256 --overlap 32`): a high-resolution ROI is scored in overlapping
//! tiles at its own resolution instead of being shrunk to the model size, so a defect of a few pixels stays a
//! few pixels.
//!
//! The model's input is the whole ROI; the graph cuts it into tiles (Slice), runs features and head on them as
//! one batch, takes the part's score as the maximum over every tile (each tile's outer ring of cells left out, as
//! for a single image: the overlap covers it), and stitches the anomaly map by the maximum of the tiles' maps
//! placed at their offsets. Training learns from the same tiles of the good images.

use super::heads;
use crate::onnx::{Attr, Graph};

/// Where the tiles lie on an input of `height` x `width`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiling {
    pub tile: usize,
    pub height: usize,
    pub width: usize,
    pub ys: Vec<usize>,
    pub xs: Vec<usize>,
}

/// Tile origins along one axis: every `tile - overlap`, the last flush with the end.
fn starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    let step = tile - overlap;
    let mut out: Vec<usize> = (0..)
        .map(|i| i * step)
        .take_while(|&s| s + tile < len)
        .collect();
    out.push(len - tile);
    out.dedup();
    out
}

impl Tiling {
    /// Plans the tiles; `stride` is the feature grid's stride, which every origin must be a multiple of.
    pub fn plan(
        height: usize,
        width: usize,
        tile: usize,
        overlap: usize,
        stride: usize,
    ) -> Result<Tiling, String> {
        let mut problems = Vec::new();
        if tile < 32 || tile % stride != 0 {
            problems.push(format!(
                "--tile: expected a multiple of the feature stride ({stride} px) from 32 on, got {tile}"
            ));
        }
        if overlap % stride != 0 || overlap < 2 * stride || overlap >= tile / 2 {
            problems.push(format!(
                "--overlap: expected a multiple of {stride} px from {} (two cells: each tile's outer ring is left \
                 out) to below half the tile, got {overlap}",
                2 * stride
            ));
        }
        if height < tile || width < tile || height % stride != 0 || width % stride != 0 {
            problems.push(format!(
                "--tile {tile}: the ROI ({width} x {height} px) must be at least one tile and a multiple of {stride} px \
                 each way"
            ));
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Tiling {
            tile,
            height,
            width,
            ys: starts(height, tile, overlap),
            xs: starts(width, tile, overlap),
        })
    }

    pub fn count(&self) -> usize {
        self.ys.len() * self.xs.len()
    }

    fn origins(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ys
            .iter()
            .flat_map(move |&y| self.xs.iter().map(move |&x| (y, x)))
    }

    /// Cuts `x` ([1, C, H, W]) into the tiles as one batch ([T, C, tile, tile]).
    pub fn split(&self, g: &mut Graph, x: &str) -> String {
        let t = self.tile as i64;
        let axes = g.i64s("tile_axes", &[2], &[2, 3]);
        let tiles: Vec<String> = self
            .origins()
            .map(|(y, x0)| {
                let starts = g.i64s("tile_start", &[2], &[y as i64, x0 as i64]);
                let ends = g.i64s("tile_end", &[2], &[y as i64 + t, x0 as i64 + t]);
                g.op("Slice", &[x, &starts, &ends, &axes], vec![])
            })
            .collect();
        let refs: Vec<&str> = tiles.iter().map(String::as_str).collect();
        g.op("Concat", &refs, vec![("axis", Attr::Int(0))])
    }

    /// Adds `score` and `anomaly_map` from the tiles' smoothed maps ([T, 1, g, g], `stride` px per cell): each
    /// tile's outer ring of cells is zeroed, the tiles are placed at their offsets and stitched by their maximum,
    /// the ROI `mask` (its grid: 1 inspected, 0 not) applies, and the score is the stitched map's maximum.
    pub fn add_outputs(&self, g: &mut Graph, maps: &str, stride: usize, mask: Option<&[f32]>) {
        let (gh, gw, cells) = (
            self.height / stride,
            self.width / stride,
            self.tile / stride,
        );
        let ring: Vec<f32> = (0..cells * cells)
            .map(|i| {
                let (y, x) = (i / cells, i % cells);
                let inner = y > 0 && x > 0 && y + 1 < cells && x + 1 < cells;
                if inner { 1.0 } else { 0.0 }
            })
            .collect();
        let ring = g.f32s("tile_ring", &[1, 1, cells as i64, cells as i64], &ring);
        let maps = g.op("Mul", &[maps, &ring], vec![]);
        let batch = g.i64s("batch_axis", &[1], &[0]);
        let placed: Vec<String> = self
            .origins()
            .enumerate()
            .map(|(i, (y, x))| {
                let from = g.i64s("tile_index", &[1], &[i as i64]);
                let to = g.i64s("tile_index", &[1], &[i as i64 + 1]);
                let one = g.op("Slice", &[&maps, &from, &to, &batch], vec![]);
                let (y, x, c) = ((y / stride) as i64, (x / stride) as i64, cells as i64);
                let pads = g.i64s(
                    "tile_pads",
                    &[8],
                    &[0, 0, y, x, 0, 0, gh as i64 - y - c, gw as i64 - x - c],
                );
                g.op("Pad", &[&one, &pads], vec![])
            })
            .collect();
        let refs: Vec<&str> = placed.iter().map(String::as_str).collect();
        let stitched = if refs.len() == 1 {
            placed[0].clone()
        } else {
            g.op("Max", &refs, vec![])
        };
        let stitched = heads::masked(g, &stitched, mask.map(|m| (m, gh, gw)));
        heads::named_outputs(g, &stitched, &stitched, self.height, self.width);
    }

    /// The stitched grid (height, width) at `stride` px per cell.
    pub fn grid(&self, stride: usize) -> (usize, usize) {
        (self.height / stride, self.width / stride)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_roi_with_the_last_flush() {
        assert_eq!(starts(1024, 256, 32), [0, 224, 448, 672, 768]);
        assert_eq!(starts(256, 256, 32), [0]);
        assert_eq!(starts(480, 256, 32), [0, 224]);
        let t = Tiling::plan(768, 1024, 256, 32, 4).unwrap();
        assert_eq!((t.ys.len(), t.xs.len(), t.count()), (4, 5, 20));
        let err = Tiling::plan(100, 1024, 250, 3, 4).unwrap_err();
        assert!(
            err.contains("--tile") && err.contains("--overlap") && err.contains("ROI"),
            "{err}"
        );
    }
}
