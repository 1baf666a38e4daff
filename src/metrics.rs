//! What the station counts and times: counters shared by all stages (atomics), latency samples per stage kept by
//! the orchestrator, the live status line, and the end-of-run summary (with the detection figures when the parts'
//! truth is known: synthetic or labelled replay).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters, shared between the pipeline's tasks and threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub parts: AtomicU64,
    pub passed: AtomicU64,
    pub rejected: AtomicU64,
    pub frame_faults: AtomicU64,
    pub model_errors: AtomicU64,
    pub deadline_misses: AtomicU64,
    /// Triggers that found the pipeline full: rejected without processing, never silent.
    pub overloaded: AtomicU64,
    /// Stage results that came after their part's deadline had already rejected it.
    pub late_results: AtomicU64,
    pub plc_outages: AtomicU64,
    pub plc_delivered: AtomicU64,
    pub plc_undelivered: AtomicU64,
    /// Parts the shadow model scored, and tensors it could not take in time (dropped, counted).
    pub shadow_scored: AtomicU64,
    pub shadow_dropped: AtomicU64,
    /// Promoted models taken up by the running line (hot swaps).
    pub model_swaps: AtomicU64,
    /// Database writes that failed (each retried; the records wait in the journal meanwhile).
    pub record_write_failures: AtomicU64,
    /// Records waiting for the database (journal and memory): a gauge.
    pub records_waiting: AtomicU64,
    /// 1 while neither the database nor the journal takes writes (records held in memory): a gauge.
    pub records_alarm: AtomicU64,
    /// Records lost because memory was full too (the only way to lose one; never silent).
    pub records_lost: AtomicU64,
    /// Image files (frames, heat maps, spectrograms) that could not be written; their rows were.
    pub images_failed: AtomicU64,
    /// Images not written because the image writer was `record.image_queue_mb` behind (their parts were
    /// judged, sent to the PLC and recorded as usual; each row says how many of its images it skipped).
    pub images_skipped: AtomicU64,
    /// Parts whose images retention removed to keep the disk quota, and of those, unreviewed rejects removed
    /// because the emergency floor was reached.
    pub images_pruned: AtomicU64,
    pub images_pruned_emergency: AtomicU64,
    /// Bytes of images in the images folder (a gauge kept by the record writer).
    pub images_bytes: AtomicU64,
    /// Scans read off the scanner; scans the station was too far behind to take (their parts are NOREADs);
    /// scanner port failures and unusable lines; scans no part came for within `identity.scan_window_ms`.
    pub scans: AtomicU64,
    pub scans_dropped: AtomicU64,
    pub scanner_faults: AtomicU64,
    pub stale_scans: AtomicU64,
    /// Parts rejected for their identity: no scan (NOREAD), a serial seen within `identity.duplicate_window_s`,
    /// a scan that did not parse.
    pub noreads: AtomicU64,
    pub duplicate_serials: AtomicU64,
    pub identity_invalid: AtomicU64,
    /// Outbox messages pruned before every sink had sent them (`record.outbox_max_rows`).
    pub outbox_dropped: AtomicU64,
    /// Messages waiting in the record writer's channel (a gauge, as the writer last saw it).
    pub records_queued: AtomicU64,
    /// 1 while the PLC link is up (a client connected, or a server the PLC polled in the last 2 s), else 0.
    pub plc_link_up: AtomicU64,
    /// Results waiting for the PLC's acknowledge (a gauge).
    pub plc_result_buffer: AtomicU64,
    /// Reasons of the records written, by code (`score_over_threshold`, `frame_fault`, ...; a record may have
    /// several), counted by the record writer once the row is committed.
    pub reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Per-stage latency histograms from the timestamps of the records written.
    pub stages: StageHistograms,
}

/// Upper bounds of the latency histograms' buckets, in ms (the last bucket is everything above).
pub const BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// A latency histogram in fixed buckets ([`BUCKETS_MS`]), lock-free: bucket counts (not cumulative), the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One count per bucket of [`BUCKETS_MS`], and one above the last.
    pub buckets: [AtomicU64; 15],
    pub sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl Histogram {
    pub fn observe_us(&self, us: i64) {
        let us = us.max(0) as u64;
        let ms = us as f64 / 1e3;
        let bucket = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The stages' latency histograms, as the records tell them: trigger to verdict, trigger to frame captured,
/// captured to preprocessed, preprocessed to inferred.
#[derive(Debug, Default)]
pub struct StageHistograms {
    pub end_to_end: Histogram,
    pub capture: Histogram,
    pub preprocess: Histogram,
    pub inference: Histogram,
}

impl StageHistograms {
    /// Observes a record's times (a stage a faulted part never reached is left out).
    pub fn observe(
        &self,
        triggered: i64,
        captured: Option<i64>,
        pre: Option<i64>,
        inferred: Option<i64>,
        decided: i64,
    ) {
        self.end_to_end.observe_us(decided - triggered);
        if let Some(c) = captured {
            self.capture.observe_us(c - triggered);
            if let Some(p) = pre {
                self.preprocess.observe_us(p - c);
                if let Some(i) = inferred {
                    self.inference.observe_us(i - p);
                }
            }
        }
    }
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A part counted as passed whose record became REJECT after its verdict (its result could not reach the PLC, or
/// it reached the gate first): the counts follow the record, so the summary and the page agree with the database.
pub fn pass_became_reject(c: &Counters) {
    let _ = c
        .passed
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    bump(&c.rejected);
}

pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Latency samples in milliseconds, in bounded memory: exact up to `EXACT_CAP` samples, then a histogram of 1%
/// bins (percentiles within 1%, rounded up) so a line that runs for months keeps a flat footprint; the last
/// `RECENT` samples are kept apart for the live status line.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    exact: Vec<f64>,
    histogram: Option<Box<[u32]>>,
    count: u64,
    recent: std::collections::VecDeque<f64>,
}

/// Samples kept exactly before the histogram takes over.
const EXACT_CAP: usize = 10_000;
/// Samples the live line's percentiles look at, at most.
const RECENT: usize = 1000;
/// Histogram bins: 1% wide from 1 µs up to ~17 minutes.
const BIN_MIN_MS: f64 = 0.001;
const BIN_GROWTH: f64 = 1.01;
const BINS: usize = 2100;

fn bin_of(ms: f64) -> usize {
    if ms <= BIN_MIN_MS {
        return 0;
    }
    ((ms / BIN_MIN_MS).ln() / BIN_GROWTH.ln())
        .ceil()
        .min((BINS - 1) as f64) as usize
}

fn bin_value(bin: usize) -> f64 {
    BIN_MIN_MS * BIN_GROWTH.powi(bin as i32)
}

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1e3;
        self.count += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(ms);
        match &mut self.histogram {
            Some(h) => h[bin_of(ms)] += 1,
            None if self.exact.len() < EXACT_CAP => self.exact.push(ms),
            None => {
                let mut h = vec![0u32; BINS].into_boxed_slice();
                for v in self.exact.drain(..).chain(std::iter::once(ms)) {
                    h[bin_of(v)] += 1;
                }
                self.exact.shrink_to_fit();
                self.histogram = Some(h);
            }
        }
    }
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The `p`-th percentile (0..=100, nearest rank), or None without samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let Some(h) = &self.histogram else {
            return percentile(&self.exact, p);
        };
        let rank = (((p / 100.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (bin, n) in h.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                return Some(bin_value(bin));
            }
        }
        None
    }
    /// Percentile over the most recent `n` samples (at most 1000; for the live line).
    pub fn recent_percentile(&self, n: usize, p: f64) -> Option<f64> {
        let recent: Vec<f64> = self.recent.iter().copied().collect();
        percentile(&recent[recent.len().saturating_sub(n)..], p)
    }
}

fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50 and p99 of one stage, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Spread {
    pub fn of(l: &Latencies) -> Option<Spread> {
        Some(Spread {
            p50_ms: l.percentile(50.0)?,
            p99_ms: l.percentile(99.0)?,
        })
    }
}

/// Detection figures against known truth.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Detection {
    pub defective: u64,
    pub defective_rejected: u64,
    pub good: u64,
    pub good_rejected: u64,
}

impl Detection {
    pub fn add(&mut self, truth: &str, rejected: bool) {
        if truth == "good" {
            self.good += 1;
            self.good_rejected += u64::from(rejected);
        } else {
            self.defective += 1;
            self.defective_rejected += u64::from(rejected);
        }
    }
    /// Fraction of defective parts rejected.
    pub fn detection_rate(&self) -> Option<f64> {
        (self.defective > 0).then(|| self.defective_rejected as f64 / self.defective as f64)
    }
    /// Fraction of good parts rejected.
    pub fn false_reject_rate(&self) -> Option<f64> {
        (self.good > 0).then(|| self.good_rejected as f64 / self.good as f64)
    }
}

/// The end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub run_id: i64,
    pub elapsed: Duration,
    pub parts: u64,
    pub passed: u64,
    pub rejected: u64,
    pub frame_faults: u64,
    pub model_errors: u64,
    pub deadline_misses: u64,
    pub overloaded: u64,
    pub late_results: u64,
    pub plc_outages: u64,
    pub plc_delivered: u64,
    pub plc_undelivered: u64,
    /// The models that judged parts in this run, in order (more than one after a hot swap), and the swaps.
    pub models: Vec<String>,
    pub model_swaps: u64,
    /// The shadow model, the parts it scored and the tensors it dropped.
    pub shadow: Option<String>,
    pub shadow_scored: u64,
    pub shadow_dropped: u64,
    /// Reject pulses the simulated PLC counted (demo only).
    pub simulated_plc_pulses: Option<u64>,
    /// The PLC handshake's last status (link, round trip, heartbeats, buffer, faults), when a PLC is configured.
    pub plc_status: Option<String>,
    pub detection: Detection,
    pub end_to_end: Option<Spread>,
    /// From frame captured to verdict: the station's own work, without the camera.
    pub after_capture: Option<Spread>,
    pub capture: Option<Spread>,
    pub preprocess: Option<Spread>,
    pub inference: Option<Spread>,
    pub database: String,
    /// Failed database writes (retried), records still waiting in the journal at the end, records lost, image
    /// files not written.
    pub record_write_failures: u64,
    pub records_waiting: u64,
    pub records_lost: u64,
    pub images_failed: u64,
    pub images_skipped: u64,
    /// Parts whose images retention removed (of those, unreviewed rejects in an emergency), and the images
    /// folder's size at the end.
    pub images_pruned: u64,
    pub images_pruned_emergency: u64,
    pub images_mb: f64,
    /// Acoustic figures, when the station listened.
    pub acoustic: Option<AcousticSummary>,
    /// Identity figures, when parts are identified by a scanner or the PLC (`identity.source`).
    pub identity: Option<IdentitySummary>,
}

/// How parts got their identities in a run.
#[derive(Debug, Clone, Default)]
pub struct IdentitySummary {
    /// `scanner` or `plc`.
    pub source: String,
    pub scans: u64,
    pub noreads: u64,
    pub duplicate_serials: u64,
    pub invalid: u64,
    pub stale_scans: u64,
    pub scans_dropped: u64,
    pub scanner_faults: u64,
}

/// What the acoustic stage did in a run.
#[derive(Debug, Clone, Default)]
pub struct AcousticSummary {
    /// `name vversion` of the acoustic model.
    pub model: String,
    pub source: String,
    pub scored: u64,
    /// Parts rejected because of their sound.
    pub rejected: u64,
    /// Parts whose sound could not be cut or scored (rejected fail-safe).
    pub faults: u64,
    /// Audio ring overruns (slices that lost samples, device overruns).
    pub overruns: u64,
    /// Against the known truth of synthetic sound: "defective" = anomalous sound, rejected = for its sound.
    pub detection: Detection,
    /// From trigger to acoustic score (includes waiting for the post-trigger window).
    pub latency: Option<Spread>,
}

impl RunSummary {
    /// The records' lines of the summary: where they are, and what did not go as it should.
    fn fmt_records(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  records      {}", self.database)?;
        write!(
            f,
            "\n               images {:.1} MB  removed by retention {} (unreviewed rejects, emergency: {})",
            self.images_mb, self.images_pruned, self.images_pruned_emergency
        )?;
        if self.images_skipped > 0 {
            write!(f, "  skipped (queue full) {}", self.images_skipped)?;
        }
        if self.record_write_failures
            + self.records_waiting
            + self.records_lost
            + self.images_failed
            > 0
        {
            write!(
                f,
                "\n               write failures {} (retried)  waiting in the journal {}  LOST {}  images not written {}",
                self.record_write_failures,
                self.records_waiting,
                self.records_lost,
                self.images_failed
            )?;
        }
        Ok(())
    }
}

impl RunSummary {
    pub fn parts_per_s(&self) -> f64 {
        self.parts as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn spread(f: &mut fmt::Formatter<'_>, name: &str, s: Option<Spread>) -> fmt::Result {
    match s {
        Some(s) => writeln!(
            f,
            "  {name:<14} p50 {:>8.2} ms   p99 {:>8.2} ms",
            s.p50_ms, s.p99_ms
        ),
        None => writeln!(f, "  {name:<14} (no samples)"),
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "run {} summary: {} parts in {:.1} s ({:.1} parts/s)",
            self.run_id,
            self.parts,
            self.elapsed.as_secs_f64(),
            self.parts_per_s()
        )?;
        let pct = |n: u64, of: u64| {
            if of == 0 {
                0.0
            } else {
                100.0 * n as f64 / of as f64
            }
        };
        writeln!(
            f,
            "  verdicts     pass {}  reject {}  (yield {:.1}%)",
            self.passed,
            self.rejected,
            pct(self.passed, self.parts)
        )?;
        let d = &self.detection;
        if d.defective + d.good > 0 {
            writeln!(
                f,
                "  detection    defective parts rejected {}/{} ({:.1}%)   good parts rejected {}/{} ({:.1}%)",
                d.defective_rejected,
                d.defective,
                pct(d.defective_rejected, d.defective),
                d.good_rejected,
                d.good,
                pct(d.good_rejected, d.good)
            )?;
        }
        writeln!(
            f,
            "  fail-safe    frame faults {}  model errors {}  deadline misses {}  overloaded {}  late results {}",
            self.frame_faults,
            self.model_errors,
            self.deadline_misses,
            self.overloaded,
            self.late_results
        )?;
        write!(
            f,
            "  plc          delivered {}  undelivered {}  outages {}",
            self.plc_delivered, self.plc_undelivered, self.plc_outages
        )?;
        match self.simulated_plc_pulses {
            Some(p) => writeln!(f, "  reject pulses seen by the simulated PLC {p}")?,
            None => writeln!(f)?,
        }
        if let Some(status) = &self.plc_status {
            writeln!(f, "               {status}")?;
        }
        if !self.models.is_empty() {
            writeln!(
                f,
                "  model        {}  (hot swaps {})",
                self.models.join(" -> "),
                self.model_swaps
            )?;
        }
        if let Some(shadow) = &self.shadow {
            writeln!(
                f,
                "  shadow       {shadow}  scored {}  dropped {}  (never drives the reject)",
                self.shadow_scored, self.shadow_dropped
            )?;
        }
        writeln!(f, "  latency")?;
        spread(f, "end-to-end", self.end_to_end)?;
        spread(f, "after capture", self.after_capture)?;
        spread(f, "capture", self.capture)?;
        spread(f, "preprocess", self.preprocess)?;
        spread(f, "inference", self.inference)?;
        if let Some(a) = &self.acoustic {
            writeln!(
                f,
                "  acoustic     model {}  scored {}  rejected for sound {}  faults {}  ring overruns {}",
                a.model, a.scored, a.rejected, a.faults, a.overruns
            )?;
            let d = &a.detection;
            if d.defective + d.good > 0 {
                writeln!(
                    f,
                    "               anomalous sounds rejected {}/{} ({:.1}%)   normal sounds rejected {}/{} ({:.1}%)",
                    d.defective_rejected,
                    d.defective,
                    pct(d.defective_rejected, d.defective),
                    d.good_rejected,
                    d.good,
                    pct(d.good_rejected, d.good)
                )?;
            }
            spread(f, "acoustic", a.latency)?;
        }
        if let Some(i) = &self.identity {
            writeln!(
                f,
                "  identity     {}  scans {}  NOREAD {}  duplicate serials {}  invalid {}  stale scans {}  dropped {}  scanner faults {}",
                i.source,
                i.scans,
                i.noreads,
                i.duplicate_serials,
                i.invalid,
                i.stale_scans,
                i.scans_dropped,
                i.scanner_faults
            )?;
        }
        self.fmt_records(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.push(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile(50.0), Some(50.0));
        assert_eq!(l.percentile(99.0), Some(99.0));
        assert_eq!(l.percentile(100.0), Some(100.0));
        assert_eq!(l.recent_percentile(10, 50.0), Some(95.0));
        assert_eq!(Latencies::default().percentile(50.0), None);
    }

    #[test]
    fn a_long_run_keeps_its_percentiles_within_one_percent_in_bounded_memory() {
        let mut l = Latencies::default();
        for i in 0..50_000u64 {
            // 1.000 .. 50.999 ms, uniformly
            l.push(Duration::from_micros(1000 + (i * 7919) % 50_000));
        }
        assert_eq!(l.len(), 50_000);
        assert!(l.exact.capacity() == 0 && l.histogram.is_some());
        let p50 = l.percentile(50.0).unwrap();
        let p99 = l.percentile(99.0).unwrap();
        assert!((p50 / 26.0 - 1.0).abs() < 0.011, "{p50}");
        assert!((p99 / 50.5 - 1.0).abs() < 0.011, "{p99}");
        assert!(l.recent_percentile(1000, 50.0).is_some());
    }

    #[test]
    fn detection_rates() {
        let mut d = Detection::default();
        d.add("good", false);
        d.add("good", true);
        d.add("scratch", true);
        assert_eq!(d.detection_rate(), Some(1.0));
        assert_eq!(d.false_reject_rate(), Some(0.5));
    }
}
