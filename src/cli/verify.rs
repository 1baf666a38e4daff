//! `station verify`: recomputes the record chain and checks it against the part rows and their image files
//! (`store::chain`); names the first record or file that was changed, deleted or reordered, and fails if any.

use super::{ConfigArg, existing_database, load_config};

pub fn verify(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let db = existing_database(&config)?;
    let conn = crate::store::open_database(db)?;
    let data_dir = db.parent().unwrap_or(std::path::Path::new("."));
    let v = crate::store::chain::verify(&conn, data_dir)?;
    println!(
        "record chain of {}: {} entries, {} parts, {} files checked ({} removed by retention)",
        db.display(),
        v.entries,
        v.parts,
        v.files,
        v.pruned_files
    );
    if v.problems.is_empty() {
        println!("ok: every record and file is as recorded");
        return Ok(());
    }
    for p in &v.problems {
        println!("  {p}");
    }
    anyhow::bail!(
        "the records were changed: {} problem(s); the first: {}",
        v.problems.len(),
        v.problems[0]
    )
}
