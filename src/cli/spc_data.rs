//! Reading `station spc`'s CSV: a header line, then one row per subgroup or sample, comma-separated (no quoting).
//! An id column (`subgroup`, `sample`, `batch`, `id`, ... or any first column that is not numeric) and a `phase`
//! column (1/2 or I/II) are recognised by name; the other columns are data unless `--columns` names them.
//! Every problem names the file, the line, the field and what was expected.

use std::path::{Path, PathBuf};

/// What is wrong with the data file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no data: expected a header line and at least one row", file.display())]
    Empty { file: PathBuf },
    #[error("{}:{line}: {found} fields, expected {expected} as in the header", file.display())]
    Width {
        file: PathBuf,
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error("{}:{line}: field `{field}`: expected {expected}, got `{value}`", file.display())]
    Field {
        file: PathBuf,
        line: usize,
        field: String,
        expected: String,
        value: String,
    },
    #[error("{}:{line}: {what}", file.display())]
    Row {
        file: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{}: {what}", file.display())]
    Columns { file: PathBuf, what: String },
}

/// Header names taken as the id column when first.
const ID_NAMES: [&str; 9] = [
    "subgroup", "sample", "batch", "id", "index", "lot", "time", "date", "point",
];

/// The file's rows as text, with their line numbers.
pub struct Table {
    pub file: PathBuf,
    pub headers: Vec<String>,
    lines: Vec<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn read(file: &Path) -> Result<Table, DataError> {
        let text = std::fs::read_to_string(file).map_err(|source| DataError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Table::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Table, DataError> {
        let split =
            |l: &str| -> Vec<String> { l.split(',').map(|f| f.trim().to_string()).collect() };
        let mut numbered = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
        let empty = || DataError::Empty {
            file: file.to_path_buf(),
        };
        let headers = split(numbered.next().ok_or_else(empty)?.1);
        let (mut lines, mut rows) = (Vec::new(), Vec::new());
        for (line, l) in numbered {
            let fields = split(l);
            if fields.len() != headers.len() {
                return Err(DataError::Width {
                    file: file.to_path_buf(),
                    line,
                    found: fields.len(),
                    expected: headers.len(),
                });
            }
            lines.push(line);
            rows.push(fields);
        }
        if rows.is_empty() {
            return Err(empty());
        }
        Ok(Table {
            file: file.to_path_buf(),
            headers,
            lines,
            rows,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The column named `name` (case-insensitive), if any.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }

    /// The column named `name`, or an error listing the columns there are.
    pub fn named(&self, name: &str) -> Result<usize, DataError> {
        self.column(name).ok_or_else(|| {
            self.columns_error(format!(
                "no column `{name}`; the header has {}",
                self.headers.join(", ")
            ))
        })
    }

    /// A problem with the data row `row` (0-based), located by its line.
    pub fn row_error(&self, row: usize, what: String) -> DataError {
        DataError::Row {
            file: self.file.clone(),
            line: self.lines.get(row).copied().unwrap_or(0),
            what,
        }
    }

    pub fn columns_error(&self, what: String) -> DataError {
        DataError::Columns {
            file: self.file.clone(),
            what,
        }
    }

    /// The id column: first, and named like one or not numeric in the first row.
    pub fn id_column(&self) -> Option<usize> {
        let first = self.headers.first()?.to_ascii_lowercase();
        let named = ID_NAMES.contains(&first.as_str());
        (named || self.rows[0][0].parse::<f64>().is_err()).then_some(0)
    }

    /// Each row's id (its id column, else its 1-based row number).
    pub fn ids(&self) -> Vec<String> {
        match self.id_column() {
            Some(c) => self.rows.iter().map(|r| r[c].clone()).collect(),
            None => (1..=self.len()).map(|i| i.to_string()).collect(),
        }
    }

    /// The columns holding data: all but the id and phase columns.
    pub fn data_columns(&self) -> Vec<usize> {
        let (id, phase) = (self.id_column(), self.column("phase"));
        (0..self.headers.len())
            .filter(|&c| Some(c) != id && Some(c) != phase)
            .collect()
    }

    /// Column `c` as numbers, checked with `valid` (described by `expected`).
    pub fn numbers(
        &self,
        c: usize,
        expected: &str,
        valid: fn(f64) -> bool,
    ) -> Result<Vec<f64>, DataError> {
        self.rows
            .iter()
            .zip(&self.lines)
            .map(|(row, &line)| {
                row[c]
                    .parse::<f64>()
                    .ok()
                    .filter(|&v| v.is_finite() && valid(v))
                    .ok_or_else(|| DataError::Field {
                        file: self.file.clone(),
                        line,
                        field: self.headers[c].clone(),
                        expected: expected.to_string(),
                        value: row[c].clone(),
                    })
            })
            .collect()
    }

    /// The 0-based rows whose phase column says phase I (`1` or `I`); None without a phase column.
    pub fn phase_one_rows(&self) -> Result<Option<Vec<usize>>, DataError> {
        let Some(c) = self.column("phase") else {
            return Ok(None);
        };
        let mut phase_one = Vec::new();
        for (i, (row, &line)) in self.rows.iter().zip(&self.lines).enumerate() {
            match row[c].to_ascii_uppercase().as_str() {
                "1" | "I" => phase_one.push(i),
                "2" | "II" => {}
                _ => {
                    return Err(DataError::Field {
                        file: self.file.clone(),
                        line,
                        field: self.headers[c].clone(),
                        expected: "1 or 2 (or I or II)".into(),
                        value: row[c].clone(),
                    });
                }
            }
        }
        Ok(Some(phase_one))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        Table::parse(Path::new("t.csv"), text).unwrap()
    }

    #[test]
    fn finds_the_id_phase_and_data_columns() {
        let t = table("subgroup,phase,x1,x2\n1,1,3.0,4.0\n2,2,5,6\n");
        assert_eq!(t.id_column(), Some(0));
        assert_eq!(t.data_columns(), vec![2, 3]);
        assert_eq!(t.phase_one_rows().unwrap(), Some(vec![0]));
        let plain = table("a,b\n1,2\n");
        assert_eq!(plain.id_column(), None);
        assert_eq!(plain.ids(), vec!["1"]);
    }

    #[test]
    fn errors_name_file_line_field_and_expectation() {
        let t = table("sample,n,d\n1,50,3\n\n2,50,x\n");
        let err = t
            .numbers(2, "a count >= 0", |v| v >= 0.0)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "t.csv:4: field `d`: expected a count >= 0, got `x`");
        let err = Table::parse(Path::new("t.csv"), "a,b\n1\n")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(err, "t.csv:2: 1 fields, expected 2 as in the header");
        let err = table("a,phase\n1,3\n")
            .phase_one_rows()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.csv:2: field `phase`: expected 1 or 2"),
            "{err}"
        );
    }
}
