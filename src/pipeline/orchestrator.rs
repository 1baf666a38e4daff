//! The orchestrator: the thin async loop around the part-in-flight rules ([`InFlight`]). It takes triggers,
//! stage reports, sounds, deadlines, recipe loads, hot swaps and Ctrl-C as they come, passes each to the rules
//! with the time, and carries out what they decide: it records each verdict (through the records channel it is
//! given), tells the PLC, counts, and keeps the run's figures. Single task, no locks.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::identities::Identities;
use super::inflight::{Admission, Count, Finished, Heard, InFlight, Now, Outcome};
use super::listener::Listener;
use crate::acoustic::AcousticReport;
use crate::clock::Clock;
use crate::decision::{Reason, ResultCode, Verdict};
use crate::identity::reader::ScanEvent;
use crate::metrics::{Counters, Detection, Latencies, bump, read};
use crate::model::heatmap::HeatMap;
use crate::part::record::{Drawing, ImageBudget, PartRecord, PartRow, PlcOutcome, RecordMsg};
use crate::part::{Frame, Job, ModelInfo, Seq, StageReport, StageTimes, TriggerEvent, part_id};
use crate::plc::{self, PlcJob, PlcMsg};
use crate::recipe;

/// The latency samples of the run, per stage.
#[derive(Default)]
pub struct StageLatencies {
    pub end_to_end: Latencies,
    pub after_capture: Latencies,
    pub capture: Latencies,
    pub preprocess: Latencies,
    pub inference: Latencies,
}

/// What the orchestrator listens to.
pub struct Inputs {
    pub triggers: mpsc::Receiver<TriggerEvent>,
    pub reports: mpsc::Receiver<StageReport>,
    pub sounds: mpsc::Receiver<AcousticReport>,
    pub recipes: mpsc::Receiver<recipe::LoadResult>,
    pub swaps: mpsc::Receiver<recipe::Loaded>,
    /// Scans from the scanner (never sends without `identity.source = "scanner"`).
    pub scans: mpsc::Receiver<ScanEvent>,
}

pub struct Orchestrator {
    pub parts: InFlight,
    pub clock: Clock,
    pub run_id: i64,
    pub switches: recipe::Switches,
    pub save_passed_every: u64,
    /// Passed parts scoring at least `threshold * (1 - uncertain_margin)` keep their image (`web.uncertain_margin`).
    pub uncertain_margin: f32,
    /// Bytes of images the record writer may have waiting; a part whose images do not fit skips them.
    pub images: ImageBudget,
    pub counters: Arc<Counters>,
    /// Last sequence number each CPU stage finished: capture, preprocess, inference.
    pub progress: [Arc<AtomicU64>; 3],
    pub capture_tx: Option<SyncSender<Job>>,
    pub records: mpsc::Sender<RecordMsg>,
    pub plc_tx: Option<mpsc::Sender<PlcMsg>>,
    pub detection: Detection,
    pub latency: StageLatencies,
    pub stop_tx: watch::Sender<bool>,
    pub status_line: bool,
    pub started: Instant,
    pub listener: Option<Listener>,
    pub plc_status: Option<plc::status::SharedStatus>,
    /// The model in force as the live view sees it: a technician may change the threshold there.
    pub model_rx: Option<watch::Receiver<Option<ModelInfo>>>,
    /// Told the new model at a hot swap.
    pub model_tx: Option<watch::Sender<Option<ModelInfo>>>,
    /// No recipe has replaced the configured model (hot swaps of a promoted version apply to it only).
    pub base_in_force: bool,
    /// Every model put in force in this run, in order ("name vX").
    pub used_models: Vec<String>,
    /// Each part's identity (`[identity]`), assigned at its trigger.
    pub identities: Identities,
}

/// The frame's part of a record: origin, truth, the frame kept, its heat map, the heat map's region.
type FrameRecord = (
    String,
    Option<String>,
    Option<opencv::core::Mat>,
    Option<Box<dyn Drawing>>,
    Option<String>,
);

impl Orchestrator {
    /// Runs until the triggers have ended and every part in flight has its verdict.
    pub async fn run(&mut self, mut inputs: Inputs, shutdown: impl Future<Output = ()>) {
        let listening = self.listener.is_some();
        tokio::pin!(shutdown);
        let mut triggers_open = true;
        let mut stopping = false;
        let mut status = tokio::time::interval(Duration::from_secs(1));
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let terminal = std::io::stderr().is_terminal();
        loop {
            if !triggers_open && self.parts.is_empty() {
                break;
            }
            let next_deadline = self
                .parts
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                Some(report) = inputs.reports.recv() => {
                    self.follow_threshold();
                    let outcomes = self.parts.reported(report, self.now());
                    self.carry_out(outcomes).await;
                }
                Some(report) = inputs.sounds.recv(), if listening => self.on_sound(report).await,
                // Before triggers: a scan that came before a trigger is there when the trigger is matched.
                Some(scan) = inputs.scans.recv() => self.identities.scanned(scan),
                _ = async { tokio::time::sleep_until(next_deadline.unwrap_or_else(tokio::time::Instant::now)).await },
                    if next_deadline.is_some() => {
                    self.follow_threshold();
                    let outcomes = self.parts.expire(self.now());
                    self.carry_out(outcomes).await;
                }
                event = inputs.triggers.recv(), if triggers_open => match event {
                    Some(event) => self.on_trigger(event).await,
                    None => triggers_open = false,
                },
                _ = &mut shutdown, if !stopping => {
                    stopping = true;
                    tracing::info!("stopping: finishing {} part(s) in flight", self.parts.len());
                    let _ = self.stop_tx.send(true);
                }
                Some(loaded) = inputs.recipes.recv() => self.on_recipe(loaded),
                Some(loaded) = inputs.swaps.recv() => self.on_swap(loaded),
                _ = status.tick(), if self.status_line => self.print_status(terminal),
            }
        }
        if self.status_line && terminal {
            eprintln!();
        }
    }

    /// The time, and how far each CPU stage has come.
    fn now(&self) -> Now {
        let done = |i: usize| self.progress[i].load(Ordering::Acquire);
        Now {
            at: Instant::now(),
            done: [done(0), done(1), done(2)],
        }
    }

    async fn carry_out(&mut self, outcomes: Vec<Outcome>) {
        for outcome in outcomes {
            match outcome {
                Outcome::Verdict(finished) => self.finish(*finished).await,
                Outcome::Late { .. } => bump(&self.counters.late_results),
                Outcome::SoundLatency(waited) => {
                    if let Some(l) = self.listener.as_mut() {
                        l.latency.push(waited);
                    }
                }
                Outcome::Exhausted { detail } => {
                    tracing::info!("{detail}; stopping");
                    let _ = self.stop_tx.send(true);
                }
            }
        }
    }

    async fn on_trigger(&mut self, event: TriggerEvent) {
        self.follow_threshold();
        let seq = self.parts.begin();
        self.identities
            .assign(seq, &part_id(self.run_id, seq), &event, &self.counters);
        if let Some(plc_tx) = &self.plc_tx {
            let msg = PlcMsg::Triggered {
                seq,
                part_id: part_id(self.run_id, seq),
                at: event.at,
                tag: event.tag,
            };
            if plc_tx.try_send(msg).is_err() {
                tracing::warn!("part {seq}: PLC queue full; the reject gate does not know it");
            }
        }
        let admission = if event.refused {
            Admission::Refused
        } else {
            let Some(capture_tx) = &self.capture_tx else {
                return;
            };
            let job = Job {
                seq,
                times: StageTimes::new(event.at),
                frame: None,
                tensor: Vec::new(),
            };
            match capture_tx.try_send(job) {
                Ok(()) => Admission::Accepted {
                    heard: self.listener.as_mut().and_then(|l| l.listen(seq, event.at)),
                },
                Err(TrySendError::Full(_)) => Admission::Full,
                Err(TrySendError::Disconnected(_)) => Admission::Stopped,
            }
        };
        if let Some(finished) = self.parts.admit(seq, event.at, event.tag, admission) {
            self.finish(finished).await;
        }
    }

    async fn on_sound(&mut self, report: AcousticReport) {
        let heard = Heard {
            result: report.result.map(|s| (s.score, s.samples)),
            truth: report.truth,
        };
        let outcomes = self
            .parts
            .heard(report.seq, report.scored, heard, self.now());
        self.carry_out(outcomes).await;
    }

    /// Hands a loaded model and its preprocessor to the workers, in force from the next part on; returns that
    /// part's number, or `None` when the workers have stopped.
    fn switch_to(&mut self, loaded: recipe::Loaded) -> Option<Seq> {
        let from = self.parts.upcoming();
        let info = loaded.model.info.clone();
        let sent = self
            .switches
            .preprocess
            .send((from, loaded.preprocessor))
            .is_ok()
            && self.switches.inference.send((from, loaded.model)).is_ok();
        if !sent {
            return None;
        }
        self.used_models.push(format!(
            "{} v{} (from part {from})",
            info.name, info.version
        ));
        self.parts.switch(from, info);
        Some(from)
    }

    /// A promoted version of the configured model was loaded: a hot swap between two parts.
    fn on_swap(&mut self, loaded: recipe::Loaded) {
        if !self.base_in_force {
            tracing::warn!(
                "model {} v{} was promoted, but a recipe's model is in force: it applies when the configured model \
                 is selected again",
                loaded.model.info.name,
                loaded.model.info.version
            );
            return;
        }
        let info = loaded.model.info.clone();
        let old = format!("v{}", self.parts.current_model().version);
        if let Some(from) = self.switch_to(loaded) {
            bump(&self.counters.model_swaps);
            tracing::info!(
                "hot swap: model {} v{} (sha256 {}, threshold {}) in force from part {from} (was {old})",
                info.name,
                info.version,
                &info.sha256[..12],
                info.threshold,
            );
            if let Some(tx) = &self.model_tx {
                tx.send_replace(Some(info));
                if let Some(rx) = &mut self.model_rx {
                    rx.borrow_and_update();
                }
            }
        }
    }

    /// A recipe was loaded (or failed to): it applies from the next part on, in every stage at once.
    fn on_recipe(&mut self, loaded: recipe::LoadResult) {
        let (number, ok) = match loaded {
            Ok(l) => {
                let number = l.number;
                let info = l.model.info.clone();
                let sent = self.switch_to(l);
                if let Some(from) = sent {
                    self.base_in_force = false;
                    tracing::info!(
                        "recipe {number} ({} v{}, threshold {}) in force from part {from}",
                        info.name,
                        info.version,
                        info.threshold
                    );
                }
                (number, sent.is_some())
            }
            Err((number, detail)) => {
                tracing::error!("recipe {number} refused: {detail}");
                (number, false)
            }
        };
        if let Some(plc_tx) = &self.plc_tx {
            let _ = plc_tx.try_send(PlcMsg::Recipe { number, ok });
        }
    }

    /// Takes up a threshold changed on the review page (a technician's decision, audited there).
    fn follow_threshold(&mut self) {
        let Some(rx) = &mut self.model_rx else { return };
        if rx.has_changed().unwrap_or(false) {
            // The current recipe's model: parts judged from now on use the new threshold.
            let threshold = rx.borrow_and_update().as_ref().map(|m| m.threshold);
            if let Some(threshold) = threshold
                && let Some(old) = self.parts.set_threshold(threshold)
            {
                tracing::info!("threshold changed from {old} to {threshold}");
            }
        }
    }

    /// Records the verdict, tells the PLC, updates the figures.
    async fn finish(&mut self, mut f: Finished) {
        let decided = Instant::now();
        let identity = self.identities.take(f.seq);
        if let Some(problem) = identity.problem {
            f.decision.add(problem);
        }
        let rejected = f.decision.verdict == Verdict::Reject;
        let code = f.decision.result_code();
        self.tally(&f, decided, rejected);
        let mut record = self.record(f, decided, rejected);
        record.row.identity = identity.row;
        let skipped = record.reserve_images(&self.images);
        if skipped > 0 {
            self.counters
                .images_skipped
                .fetch_add(u64::from(skipped), std::sync::atomic::Ordering::Relaxed);
        }
        let (part_id, seq) = (record.row.part_id.clone(), record.row.seq);
        if self
            .records
            .send(RecordMsg::Insert(Box::new(record)))
            .await
            .is_err()
        {
            tracing::error!("part {part_id}: the record writer has stopped; record lost");
        }
        self.tell_plc(part_id, seq, code, rejected).await;
    }

    /// The counters and latency samples of a verdict.
    fn tally(&mut self, f: &Finished, decided: Instant, rejected: bool) {
        let c = &self.counters;
        if let Some(count) = f.count {
            bump(match count {
                Count::Overloaded => &c.overloaded,
                Count::FrameFault => &c.frame_faults,
                Count::ModelError => &c.model_errors,
                Count::DeadlineMiss => &c.deadline_misses,
            });
        }
        bump(&c.parts);
        bump(if rejected { &c.rejected } else { &c.passed });
        let (l, times) = (&mut self.latency, &f.times);
        l.end_to_end.push(decided - times.triggered);
        if let Some(captured) = times.captured {
            l.capture.push(captured - times.triggered);
            l.after_capture.push(decided - captured);
            if let Some(pre) = times.preprocessed {
                l.preprocess.push(pre - captured);
                if let Some(inferred) = times.inferred {
                    l.inference.push(inferred - pre);
                }
            }
        }
    }

    /// The part's record: its times, scores and reasons, the frame to keep (rejected parts and every Nth passed
    /// one), its heat map and its sound.
    fn record(&mut self, f: Finished, decided: Instant, rejected: bool) -> PartRecord {
        let for_sound = f
            .decision
            .reasons
            .iter()
            .any(|r| matches!(r, Reason::AcousticScoreOverThreshold { .. }));
        let judged_with_sound = f.heard.is_some();
        let (acoustic, spectrogram) = match self.listener.as_mut() {
            Some(l) => {
                l.summary.scored += u64::from(judged_with_sound);
                let (row, spectrogram) = l.record(f.heard, rejected, for_sound);
                (Some(row), spectrogram)
            }
            None => (None, None),
        };
        let sound_truth = acoustic.as_ref().and_then(|a| a.truth.as_deref());
        let calibration = f.frame.as_ref().and_then(|frame| frame.calibration.clone());
        let (origin, truth, image, heatmap, heatmap_roi) = match f.frame {
            Some(frame) => {
                // A passed part the review queue will ask about (uncertain) always keeps its image.
                let uncertain = f
                    .score
                    .is_some_and(|s| s >= f.model.threshold * (1.0 - self.uncertain_margin));
                self.keep_frame(
                    frame,
                    sound_truth,
                    rejected || uncertain,
                    rejected,
                    f.model.threshold,
                )
            }
            None => ("(no frame)".to_string(), None, None, None, None),
        };
        let wall = |t: Option<Instant>| t.map(|t| self.clock.wall_us(t));
        let row = PartRow {
            part_id: part_id(self.run_id, f.seq),
            run_id: self.run_id,
            seq: f.seq,
            origin,
            truth,
            triggered_us: self.clock.wall_us(f.times.triggered),
            captured_us: wall(f.times.captured),
            preprocessed_us: wall(f.times.preprocessed),
            inferred_us: wall(f.times.inferred),
            decided_us: self.clock.wall_us(decided),
            score: f.score,
            threshold: f.model.threshold,
            verdict: f.decision.verdict.as_str().into(),
            reasons: f.decision.reasons_json(),
            result_code: f.decision.result_code() as u16,
            plc_status: if self.plc_tx.is_some() {
                "pending"
            } else {
                "off"
            }
            .into(),
            model_name: f.model.name,
            model_version: f.model.version,
            model_sha256: f.model.sha256,
            image_path: None,
            heatmap_path: None,
            heatmap_roi,
            images_skipped: 0,
            acoustic,
            plc_part_id: f.tag.map(|t| t.part_id),
            encoder: f.tag.map(|t| t.encoder),
            trigger_uncertainty_us: f.tag.map(|t| t.uncertainty_us),
            calibration_id: calibration.as_ref().map(|c| c.id.clone()),
            mm_per_px: calibration.and_then(|c| c.mm_per_px),
            identity: None,
        };
        PartRecord {
            row,
            image,
            heatmap,
            spectrogram,
            reserved: None,
        }
    }

    /// The frame's part of the record: the detection tally against its truth (a part is good only if it looks
    /// and sounds good), the image kept for rejected, uncertain and every Nth passed part, a rejected part's heat map and
    /// the region of the frame it covers.
    fn keep_frame(
        &mut self,
        frame: Frame,
        sound_truth: Option<&str>,
        must_keep: bool,
        rejected: bool,
        threshold: f32,
    ) -> FrameRecord {
        if let Some(truth) = &frame.truth {
            let truth = match sound_truth {
                Some(sound) if truth == "good" && sound != "normal" => sound,
                _ => truth.as_str(),
            };
            self.detection.add(truth, rejected);
        }
        let every = self.save_passed_every;
        let sample = every > 0 && read(&self.counters.passed) % every == 0;
        let keep = must_keep || sample;
        let heatmap = frame.anomaly_map.filter(|_| rejected).map(|map| HeatMap {
            map,
            roi: frame.roi,
            threshold,
        });
        let roi = heatmap.as_ref().and_then(HeatMap::roi_text);
        (
            frame.origin,
            frame.truth,
            keep.then_some(frame.image),
            heatmap.map(|h| Box::new(h) as Box<dyn Drawing>),
            roi,
        )
    }

    /// Queues the verdict for the PLC; a full or stopped PLC queue marks the part undelivered.
    async fn tell_plc(&mut self, part_id: String, seq: Seq, code: ResultCode, reject: bool) {
        let Some(plc_tx) = &self.plc_tx else { return };
        let job = PlcJob {
            part_id: part_id.clone(),
            seq,
            code,
            reject,
        };
        if let Err(e) = plc_tx.try_send(PlcMsg::Verdict(job)) {
            bump(&self.counters.plc_undelivered);
            if !reject {
                crate::metrics::pass_became_reject(&self.counters);
            }
            let detail = match e {
                mpsc::error::TrySendError::Full(_) => "PLC queue full",
                mpsc::error::TrySendError::Closed(_) => "PLC task stopped",
            };
            let msg = RecordMsg::Actuated {
                part_id,
                outcome: PlcOutcome::Undelivered {
                    detail: detail.into(),
                    reject_pulse: None,
                },
            };
            let _ = self.records.send(msg).await;
        }
    }

    fn print_status(&self, terminal: bool) {
        let c = &self.counters;
        let parts = read(&c.parts);
        let rate = parts as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let p = |q| {
            self.latency
                .end_to_end
                .recent_percentile(1000, q)
                .unwrap_or(0.0)
        };
        let line = format!(
            "parts {parts}  {rate:.1}/s  pass {}  reject {}  latency p50 {:.1} ms p99 {:.1} ms  faults {}  overloaded {}  plc undelivered {}",
            read(&c.passed),
            read(&c.rejected),
            p(50.0),
            p(99.0),
            read(&c.frame_faults) + read(&c.model_errors) + read(&c.deadline_misses),
            read(&c.overloaded),
            read(&c.plc_undelivered),
        );
        let (waiting, failed_images) = (read(&c.records_waiting), read(&c.images_failed));
        let line = if waiting + failed_images + read(&c.records_lost) > 0 {
            let alarm = if read(&c.records_alarm) > 0 {
                "  RECORDS ALARM: database and journal refuse writes"
            } else {
                ""
            };
            format!(
                "{line}  records waiting {waiting}  lost {}  images not written {failed_images}{alarm}",
                read(&c.records_lost)
            )
        } else {
            line
        };
        let line = match &self.plc_status {
            Some(status) => format!("{line}  |  {}", plc::status::read(status)),
            None => line,
        };
        if terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }
}
