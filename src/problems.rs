//! The config's error collector, shared by every stage's section: each stage validates its own section into
//! [`Problems`], which keeps every problem with its field path (`plc.address`, `recipe[1].roi`, ...) so that the
//! whole file is reported at once, and resolves relative paths against the config file's folder. It imports
//! nothing from the crate: the root `config` and every stage's `config.rs` build on it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One problem in a config file: the field path and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The problems found so far, and the folder relative paths are resolved against.
pub struct Problems {
    pub list: Vec<Problem>,
    base: PathBuf,
}

impl Problems {
    pub fn new(base: &Path) -> Problems {
        Problems {
            list: Vec::new(),
            base: base.to_path_buf(),
        }
    }

    pub fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.list.push(Problem {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Deserializes one section (`unknown fields` refused by its raw type); on error records it with its path and
    /// carries on with the defaults, so one section's type error does not hide the others' problems.
    pub fn section<T: DeserializeOwned + Default>(&mut self, table: &toml::Table, name: &str) -> T {
        let Some(value) = table.get(name) else {
            return T::default();
        };
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(raw) => raw,
            Err(err) => {
                let inner = err.path().to_string();
                let field = if inner == "." || inner.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}.{inner}")
                };
                let message = err.into_inner().message().to_string();
                self.problem(&field, message);
                T::default()
            }
        }
    }

    /// A path from the file, resolved against the config file's folder.
    pub fn path(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    /// A positive number, or `default` when absent (0 is a problem).
    pub fn positive(&mut self, field: &str, value: Option<u64>, default: u64) -> u64 {
        match value {
            Some(0) => {
                self.problem(field, "expected a positive number, got 0");
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    /// A threshold override, which must be a finite number.
    pub fn finite(&mut self, field: &str, value: Option<f32>) -> Option<f32> {
        if let Some(t) = value.filter(|t| !t.is_finite()) {
            self.problem(field, format!("expected a finite number, got {t}"));
        }
        value
    }

    /// Reports fields set in a section that the chosen `kind` does not use.
    pub fn unused(&mut self, section: &str, kind: &str, fields: &[(&str, bool)]) {
        for (name, set) in fields {
            if *set {
                self.problem(
                    &format!("{section}.{name}"),
                    format!("not used with kind = \"{kind}\"; remove it"),
                );
            }
        }
    }

    /// A required path: resolved, or a problem saying what belongs there.
    pub fn required_path(&mut self, field: &str, value: Option<PathBuf>, what: &str) -> PathBuf {
        match value {
            Some(p) => self.path(p),
            None => {
                self.problem(field, what);
                PathBuf::new()
            }
        }
    }
}
