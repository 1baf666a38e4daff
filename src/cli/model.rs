//! `station model list | promote NAME VERSION | rollback NAME`: the model registry (`models/<name>/<version>/`).
//! A promotion is refused unless the version loads and checks against its manifest; a running station with
//! `[model] dir = "models/<name>"` takes the new version up between two parts.

use std::path::Path;

use crate::config::ModelConfig;
use crate::model::{Model, registry};

fn who() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

pub fn list(root: &Path) -> anyhow::Result<()> {
    let names = registry::names(root)?;
    if names.is_empty() {
        println!("no models under {}", root.display());
    }
    for name in names {
        println!("{name}");
        for v in registry::versions(root, &name)? {
            let mark = if v.active { "*" } else { " " };
            match &v.manifest {
                Ok(m) => {
                    let design = m.training.as_ref().map_or("-", |t| t.design.as_str());
                    let auroc = m
                        .metrics
                        .as_ref()
                        .and_then(|t| t.get("image_auroc"))
                        .and_then(|v| v.as_float())
                        .map_or("-".into(), |a| format!("{a:.4}"));
                    println!(
                        " {mark} {:<6} threshold {:<10} design {:<10} AUROC {:<7} sha256 {}",
                        v.version,
                        m.threshold.value,
                        design,
                        auroc,
                        &m.sha256[..12.min(m.sha256.len())]
                    );
                }
                Err(e) => match crate::acoustic::AcousticModel::load(&v.dir, None) {
                    Ok(a) => println!(
                        " {mark} {:<6} threshold {:<10} acoustic model          sha256 {}",
                        v.version,
                        a.info.threshold,
                        &a.info.sha256[..12.min(a.info.sha256.len())]
                    ),
                    Err(_) => println!(" {mark} {:<6} unreadable manifest: {e}", v.version),
                },
            }
        }
        for line in registry::history(root, &name).iter().rev().take(3) {
            println!("     history: {line}");
        }
    }
    Ok(())
}

pub fn promote(root: &Path, name: &str, version: &str) -> anyhow::Result<()> {
    // The version must load (manifest, sha256, ONNX contract) before it can be put in force.
    let dir = root.join(name).join(version);
    if dir.join("manifest.toml").exists() {
        let checked = if registry::is_acoustic(&dir) {
            crate::acoustic::AcousticModel::load(&dir, None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            Model::load(&ModelConfig::at(&dir), None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        checked.map_err(|detail| registry::RegistryError::Refused {
            name: name.into(),
            version: version.into(),
            detail,
        })?;
    }
    let old = registry::promote(root, name, version, &who())?;
    println!(
        "{name} v{version} is active (was {}); running stations take it up between two parts",
        old.map_or("none".into(), |v| format!("v{v}"))
    );
    Ok(())
}

pub fn rollback(root: &Path, name: &str) -> anyhow::Result<()> {
    let (from, to) = registry::rollback(root, name, &who())?;
    println!("{name}: rolled back from v{from} to v{to}");
    Ok(())
}
