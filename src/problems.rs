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

    /// Deserializes one section (`unknown fields` refused by its raw type). A field that does not fit is
    /// recorded with its path and left out, and the section is read again without it, so that one bad field
    /// hides neither the section's other problems nor the other sections' (the rest carry on with defaults).
    pub fn section<T: DeserializeOwned + Default>(&mut self, table: &toml::Table, name: &str) -> T {
        let Some(value) = table.get(name) else {
            return T::default();
        };
        let mut value = value.clone();
        // Each pass removes one bad field; a section has far fewer fields than this.
        for _ in 0..64 {
            match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(raw) => return raw,
                Err(err) => {
                    let path = err.path().to_string();
                    let field = if path == "." || path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{name}.{path}")
                    };
                    let message = err.into_inner().message().to_string();
                    let removed = remove_at(&mut value, &path, &message);
                    self.problem(&field, message);
                    if !removed {
                        return T::default();
                    }
                }
            }
        }
        T::default()
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

/// Removes the field a deserialisation error points at (`a.b`, `recipe[1].roi`, or an unknown field named in the
/// message at that level); false when there is nothing to remove.
fn remove_at(value: &mut toml::Value, path: &str, message: &str) -> bool {
    let mut segments: Vec<String> = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    // `unknown field `x``: serde points at the table holding it.
    if let Some(unknown) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        && segments.last().map(String::as_str) != Some(unknown)
    {
        segments.push(unknown.to_string());
    }
    let Some(last) = segments.pop() else {
        return false;
    };
    let mut here = value;
    for seg in &segments {
        here = match step(here, seg) {
            Some(next) => next,
            None => return false,
        };
    }
    match (here, index_of(&last)) {
        (toml::Value::Array(a), Some(("", i))) if i < a.len() => {
            a.remove(i);
            true
        }
        (toml::Value::Table(t), None) => t.remove(&last).is_some(),
        (toml::Value::Table(t), Some((key, i))) => match t.get_mut(key) {
            Some(toml::Value::Array(a)) if i < a.len() => {
                // An element of an array of tables: drop the element's bad field, or the element.
                a.remove(i);
                true
            }
            _ => false,
        },
        (toml::Value::Array(a), _) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// One step down a path segment: `key`, `key[i]` or `i`.
fn step<'a>(value: &'a mut toml::Value, seg: &str) -> Option<&'a mut toml::Value> {
    match index_of(seg) {
        Some(("", i)) => value.get_mut(i),
        Some((key, i)) => value.get_mut(key)?.get_mut(i),
        None => match seg.parse::<usize>() {
            Ok(i) if value.is_array() => value.get_mut(i),
            _ => value.get_mut(seg),
        },
    }
}

/// `key[i]` as `(key, i)`.
fn index_of(seg: &str) -> Option<(&str, usize)> {
    let (key, rest) = seg.split_once('[')?;
    Some((key, rest.strip_suffix(']')?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        a: Option<u64>,
        b: Option<String>,
        c: Option<bool>,
    }

    #[test]
    fn every_bad_field_of_a_section_is_reported_not_only_the_first() {
        let table: toml::Table =
            toml::from_str("[s]\na = \"x\"\nb = 3\nc = true\nd = 1\n").unwrap();
        let mut p = Problems::new(Path::new("."));
        let raw: Raw = p.section(&table, "s");
        let fields: Vec<&str> = p.list.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields.len(), 3, "{:?}", p.list);
        for f in ["s.a", "s.b", "s.d"] {
            assert!(fields.contains(&f), "{f} missing in {fields:?}");
        }
        // What was right is kept.
        assert_eq!(raw.c, Some(true));

        // Arrays of tables: each bad field of each element.
        let table: toml::Table = toml::from_str("[[r]]\na = \"x\"\nb = 2\n[[r]]\nc = 5\n").unwrap();
        let mut p = Problems::new(Path::new("."));
        let _: Vec<Raw> = p.section(&table, "r");
        assert_eq!(p.list.len(), 3, "{:?}", p.list);
    }
}
