//! One sink's delivery loop: reads the outbox after the sink's cursor (its own SQLite connection, on tokio's
//! blocking pool), hands the messages to the sink in order, and moves the cursor past what the peer
//! acknowledged. While the peer is down it retries with exponential backoff (`retry_min_ms` doubling up to
//! `retry_max_ms`), resending from the cursor, so a message may arrive twice (same `id`) but never out of order
//! or not at all. At the stop it keeps delivering for up to `DRAIN` while the peer takes messages; what is left
//! waits in the outbox for the next start. It never touches the line: the record writer only appends.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use crate::store::outbox::{self, Message};

/// How often an idle sink looks for new messages.
const POLL: Duration = Duration::from_millis(50);
/// How long a stopping sink keeps delivering what is left.
pub const DRAIN: Duration = Duration::from_secs(5);

/// A peer messages are delivered to.
pub trait Sink: Send + 'static {
    /// The cursor's name in `outbox_cursors`.
    fn name(&self) -> &str;
    /// Delivers `batch` in order; returns how many of its first messages the peer acknowledged, and why it
    /// stopped short (the connection is then taken as lost: the next call starts afresh from the cursor).
    fn deliver(
        &mut self,
        batch: &[Message],
    ) -> impl Future<Output = (usize, Option<String>)> + Send;
    /// Says goodbye to the peer at the stop (best effort).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// What a sink shows the metrics: its backlog, how old its oldest message is, and how it is doing.
#[derive(Debug, Default)]
pub struct SinkStatus {
    /// Messages after the cursor.
    pub backlog: AtomicU64,
    /// `created_us` of the oldest message not delivered (0: none).
    pub oldest_us: AtomicI64,
    pub delivered: AtomicU64,
    /// Failed deliveries (each retried).
    pub failures: AtomicU64,
    /// 1 while the last delivery reached the peer.
    pub up: AtomicU64,
    pub cursor: AtomicI64,
}

/// How the loop retries and how much it sends at once.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub batch: usize,
}

/// Delivers the outbox of `database` to `sink` from `cursor` on, until `stop` turns true (then drains).
pub async fn run<S: Sink>(
    mut sink: S,
    database: PathBuf,
    mut cursor: i64,
    pace: Pace,
    status: Arc<SinkStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let conn = match blocking(move || crate::store::open_database(&database)).await {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => {
            tracing::error!("{}: cannot open the outbox: {e}", sink.name());
            return;
        }
    };
    let mut backoff = pace.retry_min;
    let mut draining: Option<tokio::time::Instant> = None;
    let mut outage = false;
    loop {
        if draining.is_none() && *stop.borrow() {
            draining = Some(tokio::time::Instant::now() + DRAIN);
        }
        let batch = match read(&conn, cursor, pace.batch, &status).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("{}: cannot read the outbox: {e}", sink.name());
                Vec::new()
            }
        };
        let past_drain = draining.is_some_and(|d| tokio::time::Instant::now() >= d);
        if (batch.is_empty() && draining.is_some()) || past_drain {
            break;
        }
        if batch.is_empty() {
            wait(&mut stop, POLL).await;
            continue;
        }
        let (sent, error) = sink.deliver(&batch).await;
        if sent > 0 {
            cursor = batch[sent - 1].id;
            status.cursor.store(cursor, Ordering::Relaxed);
            status.delivered.fetch_add(sent as u64, Ordering::Relaxed);
            let (c, name) = (conn.clone(), sink.name().to_string());
            let saved = blocking(move || lock(&c, |c| outbox::advance(c, &name, cursor))).await;
            if let Err(e) = saved {
                tracing::error!(
                    "{}: cannot save its cursor ({cursor}): {e}; resent after a restart",
                    sink.name()
                );
            }
        }
        match error {
            None => {
                status.up.store(1, Ordering::Relaxed);
                if outage {
                    tracing::info!("{}: delivering again (cursor {cursor})", sink.name());
                }
                (outage, backoff) = (false, pace.retry_min);
            }
            Some(e) => {
                status.up.store(0, Ordering::Relaxed);
                status.failures.fetch_add(1, Ordering::Relaxed);
                if !outage {
                    tracing::warn!(
                        "{}: {e}; the outbox keeps the messages, retrying every {} ms at most",
                        sink.name(),
                        pace.retry_max.as_millis()
                    );
                }
                outage = true;
                if draining.is_some() {
                    break;
                }
                wait(&mut stop, backoff).await;
                backoff = (backoff * 2).min(pace.retry_max);
            }
        }
    }
    sink.close().await;
}

/// The next batch after `cursor`, and the backlog as the status shows it.
async fn read(
    conn: &Arc<Mutex<Connection>>,
    cursor: i64,
    limit: usize,
    status: &Arc<SinkStatus>,
) -> rusqlite::Result<Vec<Message>> {
    let (c, s) = (conn.clone(), status.clone());
    blocking(move || {
        lock(&c, |c| {
            let backlog = outbox::backlog(c, cursor)?;
            s.backlog.store(backlog.messages, Ordering::Relaxed);
            s.oldest_us
                .store(backlog.oldest_us.unwrap_or(0), Ordering::Relaxed);
            outbox::read_after(c, cursor, limit)
        })
    })
    .await
}

/// Sleeps `d`, or less when the stop comes.
async fn wait(stop: &mut watch::Receiver<bool>, d: Duration) {
    let _ = tokio::time::timeout(d, stop.wait_for(|s| *s)).await;
}

fn lock<T>(conn: &Mutex<Connection>, f: impl FnOnce(&Connection) -> T) -> T {
    f(&conn.lock().unwrap_or_else(|p| p.into_inner()))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}
