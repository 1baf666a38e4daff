//! Drain and summary: once the orchestrator has stopped (no more triggers, every part in flight judged), the line
//! comes down in order: the orchestrator's senders close (the workers see the end of their queues), then the
//! trigger task, the PLC queue and the record writer finish, and the worker threads are joined (a thread stuck in
//! a device call is left behind after a grace period, with a warning, rather than hanging the shutdown). What the
//! run did is then read into the [`RunSummary`].

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::build::{Line, PlcParts};
use super::orchestrator::{Orchestrator, StageLatencies};
use crate::metrics::{
    AcousticSummary, Counters, Detection, IdentitySummary, RunSummary, Spread, read,
};
use crate::plc;

/// What the orchestrator kept of the run.
struct Figures {
    latency: StageLatencies,
    detection: Detection,
    models: Vec<String>,
    acoustic: Option<AcousticSummary>,
    started: Instant,
    counters: std::sync::Arc<Counters>,
    /// `identity.source`, unless the station's own sequence.
    identity_source: Option<&'static str>,
}

impl Orchestrator {
    /// Consumes the orchestrator: its senders close here (capture, the acoustic queue, the PLC queue, records).
    fn into_figures(self) -> Figures {
        Figures {
            acoustic: self.listener.map(|l| l.into_summary()),
            latency: self.latency,
            detection: self.detection,
            models: self.used_models,
            started: self.started,
            counters: self.counters,
            identity_source: self.identities.source_name(),
        }
    }
}

/// Takes the line down, in order, and sums up the run.
pub async fn drain(mut line: Line) -> RunSummary {
    if let Some(tx) = &line.orchestrator.model_tx {
        tx.send_replace(None);
    }
    let figures = line.orchestrator.into_figures();
    let _ = line.trigger_task.await;
    if let Some(p) = &mut line.plc {
        // The task ends once its queue is closed and drained.
        let _ = (&mut p.task).await;
    }
    let waiting = line.store_task.await.ok().map(|s| s.backlog());
    join_workers(line.threads);
    let database = match waiting {
        Some(n) if n > 0 => format!(
            "{} ({n} records wait in the journal for the database: written at the next start)",
            line.database
        ),
        None => format!("{} (the record writer failed: see log)", line.database),
        _ => line.database,
    };
    summary(
        figures,
        line.run_id,
        line.shadow,
        line.plc.as_ref(),
        database,
    )
}

/// Joins the worker threads; a thread stuck in a device call (a stalled source) is left behind after a grace
/// period, with a warning, rather than hanging the shutdown.
fn join_workers(threads: Vec<JoinHandle<()>>) {
    let grace = Instant::now() + Duration::from_secs(5);
    for handle in threads {
        while !handle.is_finished() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        let name = handle.thread().name().unwrap_or("worker").to_string();
        if handle.is_finished() {
            if handle.join().is_err() {
                tracing::error!("the {name} thread panicked");
            }
        } else {
            tracing::warn!(
                "the {name} thread is still blocked (stalled device?); leaving it behind"
            );
        }
    }
}

/// The run's summary: the counters, the latencies, the detection figures, the PLC's state.
fn summary(
    figures: Figures,
    run_id: i64,
    shadow: Option<String>,
    plc: Option<&PlcParts>,
    database: String,
) -> RunSummary {
    let c = &figures.counters;
    let latency = &figures.latency;
    RunSummary {
        run_id,
        elapsed: figures.started.elapsed(),
        parts: read(&c.parts),
        passed: read(&c.passed),
        rejected: read(&c.rejected),
        frame_faults: read(&c.frame_faults),
        model_errors: read(&c.model_errors),
        deadline_misses: read(&c.deadline_misses),
        overloaded: read(&c.overloaded),
        late_results: read(&c.late_results),
        plc_outages: read(&c.plc_outages),
        plc_delivered: read(&c.plc_delivered),
        plc_undelivered: read(&c.plc_undelivered),
        models: figures.models,
        model_swaps: read(&c.model_swaps),
        shadow,
        shadow_scored: read(&c.shadow_scored),
        shadow_dropped: read(&c.shadow_dropped),
        plc_status: plc.map(|p| plc::status::read(&p.info.status).to_string()),
        simulated_plc_pulses: plc
            .and_then(|p| p.info.sim.as_ref())
            .map(|s| s.reject_pulses()),
        detection: figures.detection,
        end_to_end: Spread::of(&latency.end_to_end),
        after_capture: Spread::of(&latency.after_capture),
        capture: Spread::of(&latency.capture),
        preprocess: Spread::of(&latency.preprocess),
        inference: Spread::of(&latency.inference),
        database,
        record_write_failures: read(&c.record_write_failures),
        records_waiting: read(&c.records_waiting),
        records_lost: read(&c.records_lost),
        images_failed: read(&c.images_failed),
        images_skipped: read(&c.images_skipped),
        images_pruned: read(&c.images_pruned),
        images_pruned_emergency: read(&c.images_pruned_emergency),
        images_mb: read(&c.images_bytes) as f64 / (1024.0 * 1024.0),
        acoustic: figures.acoustic,
        identity: figures.identity_source.map(|source| IdentitySummary {
            source: source.into(),
            scans: read(&c.scans),
            noreads: read(&c.noreads),
            duplicate_serials: read(&c.duplicate_serials),
            invalid: read(&c.identity_invalid),
            stale_scans: read(&c.stale_scans),
            scans_dropped: read(&c.scans_dropped),
            scanner_faults: read(&c.scanner_faults),
        }),
    }
}
