//! `station dataset export --out DIR`: writes reviewed parts' images as a training set (`good/`,
//! `<defect_class>/`, `labels.csv`), from each part's latest review.

use std::path::Path;

use anyhow::Context;

use super::{ConfigArg, load_config};

pub fn export(arg: &ConfigArg, out: &Path) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let db = &config.record.database;
    let conn = crate::store::open_database(db)?;
    let data_dir = db.parent().unwrap_or(Path::new("."));
    let summary = crate::review::export(&conn, data_dir, out)
        .with_context(|| format!("cannot export the reviewed parts of {}", db.display()))?;
    let total: u64 = summary.per_label.iter().map(|(_, n)| n).sum();
    println!("exported {total} reviewed images to {}", out.display());
    for (label, n) in &summary.per_label {
        println!("  {label:<12} {n}");
    }
    println!(
        "  of which false rejects (rejected, reviewed good) {}, escapes (passed, reviewed defective) {}",
        summary.false_rejects, summary.escapes
    );
    if summary.without_image > 0 {
        println!(
            "  {} reviewed part(s) had no kept image and were left out",
            summary.without_image
        );
    }
    Ok(())
}
