//! The model registry: `models/<name>/<version>/` holds `model.onnx` and `manifest.toml`; beside the versions,
//! `models/<name>/active` names the version in force and `models/<name>/history.log` records every promotion and
//! rollback (when, who, from which version to which).
//!
//! `[model] dir` may name a version folder (a fixed model) or a name folder (the registry's active version). A
//! running line with a name folder watches `active` and swaps to a newly promoted version between two parts
//! (see `pipeline`): a part is judged by the old or the new model, never by a half-loaded one, and its record
//! says which.

use std::path::{Path, PathBuf};

use super::Manifest;

/// The file naming the active version.
pub const ACTIVE_FILE: &str = "active";
/// Promotions and rollbacks, one line each.
pub const HISTORY_FILE: &str = "history.log";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "{0}: neither a model version (manifest.toml) nor a registry with an active version (`station model promote NAME VERSION`)"
    )]
    NotAModel(String),
    #[error("{path}: {detail}")]
    Io { path: String, detail: String },
    #[error("model {name} has no version {version} under {dir} (versions: {known})")]
    NoSuchVersion {
        name: String,
        version: String,
        dir: String,
        known: String,
    },
    #[error("model {name} v{version} is refused: {detail}")]
    Refused {
        name: String,
        version: String,
        detail: String,
    },
    #[error("model {0}: nothing to roll back to (no earlier promotion in history.log)")]
    NothingToRollBack(String),
}

/// Where a configured model folder leads.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The version folder holding `model.onnx` and `manifest.toml`.
    pub version_dir: PathBuf,
    /// The name folder when the model came from the registry's `active` file (watched for hot swaps).
    pub registry: Option<PathBuf>,
}

/// Resolves `[model] dir`: a version folder as it is, a name folder through its `active` file.
pub fn resolve(dir: &Path) -> Result<Resolved, RegistryError> {
    if dir.join("manifest.toml").exists() {
        return Ok(Resolved {
            version_dir: dir.to_path_buf(),
            registry: None,
        });
    }
    match active_version(dir)? {
        Some(version) => Ok(Resolved {
            version_dir: dir.join(version),
            registry: Some(dir.to_path_buf()),
        }),
        None => Err(RegistryError::NotAModel(dir.display().to_string())),
    }
}

/// The version named in `<name_dir>/active`, if the file exists.
pub fn active_version(name_dir: &Path) -> Result<Option<String>, RegistryError> {
    let path = name_dir.join(ACTIVE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let version = text.trim();
            if version.is_empty() || !is_version_name(version) {
                return Err(RegistryError::Io {
                    path: path.display().to_string(),
                    detail: format!("expected a version folder name, got {text:?}"),
                });
            }
            Ok(Some(version.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path, e)),
    }
}

fn is_version_name(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !v.starts_with('.')
}

fn io(path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// One version of a model as the registry lists it.
#[derive(Debug)]
pub struct Version {
    pub version: String,
    pub dir: PathBuf,
    /// The manifest, or why it cannot be read.
    pub manifest: Result<Box<Manifest>, String>,
    pub active: bool,
}

/// Versions of the model `name` under `root`, oldest first (numeric versions in number order).
pub fn versions(root: &Path, name: &str) -> Result<Vec<Version>, RegistryError> {
    let name_dir = root.join(name);
    let active = active_version(&name_dir)?;
    let entries = std::fs::read_dir(&name_dir).map_err(|e| io(&name_dir, e))?;
    let mut out: Vec<Version> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.toml").exists())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.to_string();
            let dir = e.path();
            let manifest = Manifest::load_file(&dir.join("manifest.toml")).map(Box::new);
            Some(Version {
                active: active.as_deref() == Some(version.as_str()),
                version,
                dir,
                manifest,
            })
        })
        .collect();
    out.sort_by(|a, b| version_order(&a.version, &b.version));
    Ok(out)
}

/// Whether a version folder holds an acoustic model (its manifest says `kind = "acoustic"`).
pub fn is_acoustic(version_dir: &Path) -> bool {
    std::fs::read_to_string(version_dir.join("manifest.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.get("kind").and_then(|k| k.as_str()) == Some("acoustic"))
}

/// Names of the models under `root` (folders holding at least one version).
pub fn names(root: &Path) -> Result<Vec<String>, RegistryError> {
    let entries = std::fs::read_dir(root).map_err(|e| io(root, e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_dir(e.path())
                .map(|mut d| d.any(|v| v.is_ok_and(|v| v.path().join("manifest.toml").exists())))
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The next free numeric version under `root/name` ("1" when none).
pub fn next_version(root: &Path, name: &str) -> String {
    let highest = std::fs::read_dir(root.join(name))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    (highest + 1).to_string()
}

/// Makes `version` the active version of `name` (the caller has checked that it loads); returns the version it
/// replaces. Written atomically (a temporary file renamed over `active`), then logged in `history.log`.
pub fn promote(
    root: &Path,
    name: &str,
    version: &str,
    who: &str,
) -> Result<Option<String>, RegistryError> {
    let name_dir = root.join(name);
    if !name_dir.join(version).join("manifest.toml").exists() {
        let known = versions(root, name)
            .map(|v| {
                v.iter()
                    .map(|v| v.version.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        return Err(RegistryError::NoSuchVersion {
            name: name.into(),
            version: version.into(),
            dir: name_dir.display().to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known
            },
        });
    }
    let old = active_version(&name_dir)?;
    set_active(&name_dir, version)?;
    log(&name_dir, "promote", old.as_deref(), version, who)?;
    Ok(old)
}

/// Goes back to the version that was active before the current one (history.log is replayed as a stack:
/// a promotion pushes, a rollback pops). Returns (from, to).
pub fn rollback(root: &Path, name: &str, who: &str) -> Result<(String, String), RegistryError> {
    let name_dir = root.join(name);
    let stack = history_stack(&name_dir)?;
    let current = active_version(&name_dir)?;
    let (Some(current), [.., previous, _]) = (current, stack.as_slice()) else {
        return Err(RegistryError::NothingToRollBack(name.into()));
    };
    let previous = previous.clone();
    set_active(&name_dir, &previous)?;
    log(&name_dir, "rollback", Some(&current), &previous, who)?;
    Ok((current, previous))
}

/// The stack of active versions that history.log describes.
fn history_stack(name_dir: &Path) -> Result<Vec<String>, RegistryError> {
    let path = name_dir.join(HISTORY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&path, e)),
    };
    let mut stack = Vec::new();
    for line in text.lines() {
        // "<unix_us> <action> <from> -> <to> by <who>"
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [_, "promote", _, "->", to, ..] => stack.push(to.to_string()),
            [_, "rollback", ..] => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(stack)
}

fn set_active(name_dir: &Path, version: &str) -> Result<(), RegistryError> {
    let path = name_dir.join(ACTIVE_FILE);
    let tmp = name_dir.join(format!(".{ACTIVE_FILE}.tmp"));
    std::fs::write(&tmp, format!("{version}\n")).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
}

fn log(
    name_dir: &Path,
    action: &str,
    from: Option<&str>,
    to: &str,
    who: &str,
) -> Result<(), RegistryError> {
    use std::io::Write as _;
    let path = name_dir.join(HISTORY_FILE);
    let now = crate::clock::Clock::new().now_us();
    let line = format!(
        "{now} {action} {} -> {to} by {who}\n",
        from.unwrap_or("none")
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| io(&path, e))
}

/// The history lines of `name`, oldest first.
pub fn history(root: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(root.join(name).join(HISTORY_FILE))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(root: &Path, name: &str, v: &str) {
        let dir = root.join(name).join(v);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.toml"), "name = \"x\"").unwrap();
    }

    #[test]
    fn promote_and_rollback_follow_the_history_as_a_stack() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for v in ["1", "2", "10"] {
            version(root, "m", v);
        }
        assert!(matches!(
            resolve(&root.join("m")),
            Err(RegistryError::NotAModel(_))
        ));
        assert_eq!(promote(root, "m", "1", "t").unwrap(), None);
        assert_eq!(promote(root, "m", "2", "t").unwrap().as_deref(), Some("1"));
        assert_eq!(promote(root, "m", "10", "t").unwrap().as_deref(), Some("2"));
        let r = resolve(&root.join("m")).unwrap();
        assert_eq!(r.version_dir, root.join("m/10"));
        assert_eq!(r.registry.as_deref(), Some(root.join("m").as_path()));
        assert_eq!(rollback(root, "m", "t").unwrap(), ("10".into(), "2".into()));
        assert_eq!(rollback(root, "m", "t").unwrap(), ("2".into(), "1".into()));
        assert!(matches!(
            rollback(root, "m", "t"),
            Err(RegistryError::NothingToRollBack(_))
        ));
        assert_eq!(
            active_version(&root.join("m")).unwrap().as_deref(),
            Some("1")
        );
        let listed: Vec<String> = versions(root, "m")
            .unwrap()
            .into_iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(listed, ["1", "2", "10"]);
        assert_eq!(next_version(root, "m"), "11");
        assert!(matches!(
            promote(root, "m", "7", "t"),
            Err(RegistryError::NoSuchVersion { .. })
        ));
        assert_eq!(history(root, "m").len(), 5);
        // A version folder resolves to itself, without a registry.
        let fixed = resolve(&root.join("m/2")).unwrap();
        assert_eq!(fixed.registry, None);
    }
}
