//! Build script: records the software version (`git describe` of the checkout, with the crate's version) so
//! that every run's record says which build judged its parts. Without git (a source tarball) it is the crate's
//! version alone.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let crate_version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let version = match git(&["describe", "--always", "--dirty"]) {
        Some(describe) => format!("{crate_version} ({describe})"),
        None => crate_version,
    };
    println!("cargo:rustc-env=STATION_SOFTWARE_VERSION={version}");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        // A commit rewrites the index; a checkout rewrites HEAD.
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
