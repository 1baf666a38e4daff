//! `station generate-parts`: writes synthetic conveyor parts as image files, for replay tests and trials.

use std::path::Path;

use anyhow::Context;

use crate::capture::synthetic::{SyntheticParams, write_parts};

pub fn generate(
    out: &Path,
    masks: Option<&Path>,
    count: u64,
    seed: u64,
    defect_fraction: f64,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&defect_fraction),
        "--defect-fraction: expected a fraction between 0 and 1, got {defect_fraction}"
    );
    let params = SyntheticParams {
        seed,
        defect_fraction,
    };
    let truths = write_parts(out, masks, &params, count)
        .with_context(|| format!("cannot write parts to {}", out.display()))?;
    let defective = truths.iter().filter(|t| **t != "good").count();
    println!(
        "wrote {count} parts ({defective} defective) to {}",
        out.display()
    );
    Ok(())
}
