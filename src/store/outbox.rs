//! The outbox: every record the station writes (a part, a PLC outcome, a review, a setting change, a run's start
//! and end) is also appended here, once, in the same SQLite transaction as the row it describes, as a message with
//! a JSON payload. Outbound sinks (MQTT, ...) read it with their own connection, each from its own cursor
//! (`outbox_cursors`), so a sink whose peer is down falls behind without holding up the line or the other sinks.
//!
//! A message's `id` is gapless and increasing (`AUTOINCREMENT`: a rolled-back transaction gives its ids back, a
//! deleted row never has its id reused), and stable once committed: a sink that resends after a restart resends
//! the same id, so a receiver de-duplicates on (station, id). `key` is the record's own stable id (the part id,
//! the review id, the run id).
//!
//! Pruning (by the record writer, at most once a second): rows every configured sink has delivered are deleted;
//! rows beyond `outbox.max_rows` behind the newest are deleted too (dropped for the sinks that had not sent them:
//! counted, logged, and visible to a receiver as a jump in `id`). See docs/PLANT.md ("Full disk").

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

/// The outbox and the sinks' cursors (a schema step of [`super::MIGRATIONS`]).
pub const SCHEMA: &str = "
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (kind, key)
);
CREATE TABLE outbox_cursors (
    sink TEXT PRIMARY KEY,
    delivered_id INTEGER NOT NULL,
    delivered_us INTEGER
);
";

/// Rows deleted in one pruning step, at most (keeps the write lock short).
const PRUNE_STEP: i64 = 5000;

/// One message, as a sink reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: i64,
    /// `part`, `plc`, `review`, `audit`, `run_start`, `run_end`.
    pub kind: String,
    /// The record's stable id.
    pub key: String,
    pub created_us: i64,
    /// The record, as JSON text.
    pub payload: String,
}

impl Message {
    /// The message as sent: `{"id", "station", "kind", "key", "created_us", "data"}`.
    pub fn envelope(&self, station: &str) -> serde_json::Value {
        let data = serde_json::from_str(&self.payload)
            .unwrap_or_else(|_| serde_json::Value::String(self.payload.clone()));
        serde_json::json!({
            "id": self.id,
            "station": station,
            "kind": self.kind,
            "key": self.key,
            "created_us": self.created_us,
            "data": data,
        })
    }
}

/// Appends a message in the caller's transaction; a (kind, key) already there is left as it is (a journal
/// replayed twice appends nothing new). Not `INSERT OR IGNORE`: an ignored insert would still take an id from
/// the sequence and leave a gap.
pub fn append(
    tx: &Transaction,
    kind: &str,
    key: &str,
    payload: &serde_json::Value,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO outbox (kind, key, created_us, payload) SELECT ?1, ?2, ?3, ?4
         WHERE NOT EXISTS (SELECT 1 FROM outbox WHERE kind = ?1 AND key = ?2)",
    )?
    .execute(params![
        kind,
        key,
        crate::clock::Clock::new().now_us(),
        payload.to_string()
    ])?;
    Ok(())
}

/// Up to `limit` messages after `after`, in order.
pub fn read_after(conn: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<Message>> {
    conn.prepare_cached(
        "SELECT id, kind, key, created_us, payload FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?
    .query_map(params![after, limit as i64], |r| {
        Ok(Message {
            id: r.get(0)?,
            kind: r.get(1)?,
            key: r.get(2)?,
            created_us: r.get(3)?,
            payload: r.get(4)?,
        })
    })?
    .collect()
}

/// Keeps a cursor for each of `sinks` and drops the cursors of sinks no longer configured (whose backlog then
/// no longer holds pruning back). A new sink starts at the oldest message still kept. Returns each sink's cursor.
pub fn register(conn: &Connection, sinks: &[&str]) -> rusqlite::Result<Vec<i64>> {
    let tx = conn.unchecked_transaction()?;
    let names = serde_json::to_string(sinks).unwrap_or_default();
    tx.execute(
        "DELETE FROM outbox_cursors WHERE sink NOT IN (SELECT value FROM json_each(?1))",
        [names],
    )?;
    for sink in sinks {
        tx.execute(
            "INSERT OR IGNORE INTO outbox_cursors (sink, delivered_id)
             VALUES (?1, (SELECT coalesce(min(id) - 1, (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'outbox')) FROM outbox))",
            [sink],
        )?;
    }
    let cursors = sinks
        .iter()
        .map(|s| cursor(&tx, s).map(Option::unwrap_or_default))
        .collect::<rusqlite::Result<_>>()?;
    tx.commit()?;
    Ok(cursors)
}

/// A sink's cursor: the id of the last message it delivered.
pub fn cursor(conn: &Connection, sink: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT delivered_id FROM outbox_cursors WHERE sink = ?1",
        [sink],
        |r| r.get(0),
    )
    .optional()
}

/// Moves a sink's cursor on (never back).
pub fn advance(conn: &Connection, sink: &str, delivered_id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox_cursors SET delivered_id = max(delivered_id, ?2), delivered_us = ?3 WHERE sink = ?1",
    )?
    .execute(params![sink, delivered_id, crate::clock::Clock::new().now_us()])?;
    Ok(())
}

/// What waits for one sink: messages after its cursor, and the oldest one's age.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub messages: u64,
    pub oldest_us: Option<i64>,
}

/// Ids are gapless past the oldest row kept, so this is two index look-ups, whatever the backlog's size.
pub fn backlog(conn: &Connection, after: i64) -> rusqlite::Result<Backlog> {
    conn.prepare_cached(
        "SELECT (SELECT max(id) FROM outbox), (SELECT min(id) FROM outbox),
                (SELECT created_us FROM outbox WHERE id > ?1 ORDER BY id LIMIT 1)",
    )?
    .query_row([after], |r| {
        let newest: Option<i64> = r.get(0)?;
        let oldest: Option<i64> = r.get(1)?;
        let messages = match (newest, oldest) {
            (Some(n), Some(o)) => (n - after.max(o - 1)).max(0) as u64,
            _ => 0,
        };
        Ok(Backlog {
            messages,
            oldest_us: r.get(2)?,
        })
    })
}

/// One sink's backlog, for the review page's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkBacklog {
    pub sink: String,
    pub messages: u64,
    /// `created_us` of the oldest message not delivered.
    pub oldest_us: Option<i64>,
    /// When the sink last delivered something.
    pub delivered_us: Option<i64>,
}

/// Every registered sink's backlog.
pub fn backlogs(conn: &Connection) -> rusqlite::Result<Vec<SinkBacklog>> {
    let cursors: Vec<(String, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT sink, delivered_id, delivered_us FROM outbox_cursors ORDER BY sink",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    cursors
        .into_iter()
        .map(|(sink, cursor, delivered_us)| {
            let b = backlog(conn, cursor)?;
            Ok(SinkBacklog {
                sink,
                messages: b.messages,
                oldest_us: b.oldest_us,
                delivered_us,
            })
        })
        .collect()
}

/// What one pruning step removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Delivered by every sink.
    pub delivered: u64,
    /// Beyond `max_rows` and not yet delivered by some sink (lost for it; counted).
    pub dropped: u64,
}

/// Deletes what every sink has delivered, then what lies more than `max_rows` behind the newest message (with no
/// sink configured that only keeps the last `max_rows` for a sink added later).
pub fn prune(conn: &Connection, max_rows: u64) -> rusqlite::Result<Pruned> {
    let tx = conn.unchecked_transaction()?;
    let (oldest, newest): (Option<i64>, Option<i64>) =
        tx.query_row("SELECT min(id), max(id) FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(oldest), Some(newest)) = (oldest, newest) else {
        return Ok(Pruned::default());
    };
    let floor: Option<i64> =
        tx.query_row("SELECT min(delivered_id) FROM outbox_cursors", [], |r| {
            r.get(0)
        })?;
    let step_end = oldest + PRUNE_STEP;
    let mut pruned = Pruned::default();
    if let Some(floor) = floor {
        pruned.delivered =
            tx.execute("DELETE FROM outbox WHERE id <= ?1", [floor.min(step_end)])? as u64;
    }
    let cap = newest - max_rows as i64;
    let over = tx.execute("DELETE FROM outbox WHERE id <= ?1", [cap.min(step_end)])? as u64;
    if floor.is_some() {
        pruned.dropped = over;
    }
    tx.commit()?;
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_database(&dir.path().join("s.sqlite")).unwrap();
        (dir, conn)
    }

    fn add(conn: &Connection, n: usize) {
        let tx = conn.unchecked_transaction().unwrap();
        let start: i64 = tx
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
            .unwrap();
        for i in 0..n {
            let key = format!("p{}", start as usize + i);
            append(&tx, "part", &key, &serde_json::json!({ "i": i })).unwrap();
            append(&tx, "part", &key, &serde_json::json!({ "again": true })).unwrap();
        }
        tx.commit().unwrap();
    }

    #[test]
    fn messages_are_appended_once_in_order_and_read_from_a_cursor() {
        let (_dir, conn) = db();
        add(&conn, 5);
        let all = read_after(&conn, 0, 100).unwrap();
        assert_eq!(
            all.iter().map(|m| m.id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(all[0].payload, r#"{"i":0}"#, "the first append wins");
        assert_eq!(register(&conn, &["mqtt"]).unwrap(), [0]);
        advance(&conn, "mqtt", 3).unwrap();
        advance(&conn, "mqtt", 2).unwrap();
        assert_eq!(cursor(&conn, "mqtt").unwrap(), Some(3), "never back");
        let b = backlog(&conn, 3).unwrap();
        assert_eq!(b.messages, 2);
        assert_eq!(b.oldest_us, Some(all[3].created_us));
        let env = all[4].envelope("line-1");
        assert_eq!(env["station"], "line-1");
        assert_eq!(env["data"]["i"], 4);
    }

    #[test]
    fn pruning_keeps_what_a_sink_has_not_delivered_up_to_the_cap() {
        let (_dir, conn) = db();
        add(&conn, 10);
        register(&conn, &["a", "b"]).unwrap();
        advance(&conn, "a", 8).unwrap();
        advance(&conn, "b", 4).unwrap();
        let p = prune(&conn, 100).unwrap();
        assert_eq!(
            p,
            Pruned {
                delivered: 4,
                dropped: 0
            }
        );
        assert_eq!(read_after(&conn, 0, 100).unwrap()[0].id, 5);
        // The cap: only the newest 3 are kept; b had not sent 5, 6, 7.
        let p = prune(&conn, 3).unwrap();
        assert_eq!(
            p,
            Pruned {
                delivered: 0,
                dropped: 3
            }
        );
        // A sink dropped from the config no longer holds pruning back; a new one starts at the oldest kept.
        assert_eq!(register(&conn, &["a", "c"]).unwrap(), [8, 7]);
        add(&conn, 1);
        assert_eq!(
            read_after(&conn, 10, 10).unwrap()[0].id,
            11,
            "ids are never reused"
        );
    }

    #[test]
    fn with_no_sink_only_the_newest_max_rows_are_kept_and_none_counts_as_dropped() {
        let (_dir, conn) = db();
        add(&conn, 10);
        assert_eq!(prune(&conn, 4).unwrap(), Pruned::default());
        assert_eq!(read_after(&conn, 0, 100).unwrap().len(), 4);
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute("DELETE FROM outbox", []).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            register(&conn, &["late"]).unwrap(),
            [10],
            "an empty outbox: from the newest id"
        );
    }
}
