//! The journal: where records wait, durably, while the database cannot take them (locked, full disk, I/O
//! error). An append-only file of JSON lines ([`Row`]s), each append flushed and `fsync`ed before it counts as
//! written; replayed into SQLite (in one transaction, idempotently) as soon as the database takes writes again,
//! then truncated. At start the station replays whatever a previous run left there.
//!
//! It lives on its own path (`[record] journal`, by default beside the database) so that it can be put on
//! another disk than the database and the images.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::rows::Row;

/// A journal file.
pub struct Journal {
    path: PathBuf,
    /// Rows in the file, not yet replayed.
    pub rows: u64,
}

impl Journal {
    /// The journal at `path`; counts the rows a previous run left. A torn last line (a crash in the middle of
    /// an append, never acknowledged) is cut off so the next append starts on a line of its own.
    pub fn open(path: &Path) -> Journal {
        let mut journal = Journal {
            path: path.to_path_buf(),
            rows: 0,
        };
        if let Ok(bytes) = std::fs::read(path)
            && bytes.last().is_some_and(|b| *b != b'\n')
        {
            let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            tracing::warn!(
                "journal {}: cutting off a torn last line ({} bytes)",
                path.display(),
                bytes.len() - keep
            );
            if let Err(e) = OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(keep as u64))
            {
                tracing::error!("journal {}: cannot cut the torn line: {e}", path.display());
            }
        }
        journal.rows = journal.read().map_or(0, |rows| rows.len() as u64);
        journal
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends rows and makes them durable (`fsync`) before returning.
    pub fn append(&mut self, rows: &[Row]) -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = String::new();
        for row in rows {
            let line = serde_json::to_string(row).map_err(std::io::Error::other)?;
            text.push_str(&line);
            text.push('\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Every row in the file, in order. A line that does not parse (a torn write at a crash, the last line) is
    /// skipped with an error in the log; it was never acknowledged as written.
    pub fn read(&self) -> std::io::Result<Vec<Row>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut rows = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(row) => rows.push(row),
                Err(e) => tracing::error!(
                    "journal {}: line {} is not a record ({e}); skipped",
                    self.path.display(),
                    i + 1
                ),
            }
        }
        Ok(rows)
    }

    /// Empties the journal once its rows are in the database.
    pub fn clear(&mut self) -> std::io::Result<()> {
        match File::create(&self.path) {
            Ok(file) => file.sync_all()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.rows = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_reopen_and_a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j/records.jsonl");
        let mut j = Journal::open(&path);
        assert!(j.is_empty());
        let rows = vec![
            Row::Delivered {
                part_id: "1-000001".into(),
                actuated_us: 5,
                result_written_us: Some(4),
                reject_on_us: None,
                reject_pulse: Some("not_needed".into()),
            },
            Row::RunEnd {
                run_id: 1,
                finished_us: 9,
            },
        ];
        j.append(&rows).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"row\":\"delivered\",\"part_").unwrap();
        let mut j = Journal::open(&path);
        assert_eq!(j.rows, 2);
        assert_eq!(j.read().unwrap(), rows);
        // The next append starts on a line of its own.
        j.append(&rows[..1]).unwrap();
        assert_eq!(j.read().unwrap().len(), 3);
        j.clear().unwrap();
        assert!(Journal::open(&path).is_empty());
    }
}
