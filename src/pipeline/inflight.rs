//! The rules of a part in flight, as plain data: which parts wait for what, and what each event means for them.
//! No channels, no threads and no clock of its own: the orchestrator passes every event in, with the time it
//! happened, and carries out what comes back ([`Outcome`]: record a verdict and tell the PLC, count a late result,
//! stop the line).
//!
//! A part leaves in exactly one way: it is refused at its trigger (overloaded, capture stopped), a stage reports
//! a fault, its deadline passes first (REJECT fail-safe; the stage it was stuck at is named), or it is judged once
//! its vision score, and its sound when the station listens, are both in. Whatever arrives after that is late:
//! counted and ignored. Which model judges a part follows the recipe switches ([`InFlight::switch`]): a part is
//! judged by the model in force at its trigger.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::decision::{Decision, Reason};
use crate::part::{Frame, ModelInfo, Seq, Stage, StageReport, StageTimes};

/// When an event is handled: the time, and the last part each CPU stage finished (capture, preprocess,
/// inference), which names the stage a late part is stuck at.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub done: [Seq; 3],
}

/// A part's acoustic result: its score and slice, or why it has none; and the sound's known truth.
#[derive(Debug)]
pub struct Heard {
    pub result: Result<(f32, Vec<f32>), String>,
    pub truth: Option<String>,
}

/// How the capture queue took a part at its trigger.
pub enum Admission {
    /// Queued for capture; `heard` is set when its sound could not be queued (a fault known at once).
    Accepted { heard: Option<Heard> },
    /// The PLC handshake refused the trigger (busy).
    Refused,
    /// The capture queue was full.
    Full,
    /// The capture worker has stopped.
    Stopped,
}

/// What a fail-safe verdict is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Overloaded,
    FrameFault,
    ModelError,
    DeadlineMiss,
}

/// A part's verdict, with everything the record needs.
pub struct Finished {
    pub seq: Seq,
    pub times: StageTimes,
    pub decision: Decision,
    pub frame: Option<Frame>,
    /// The vision score, when the model scored the part.
    pub score: Option<f32>,
    /// The part's sound, when it was judged with it.
    pub heard: Option<Heard>,
    /// The fail-safe counter this verdict adds to.
    pub count: Option<Count>,
    /// The model (and threshold) that judged the part.
    pub model: ModelInfo,
}

/// What the orchestrator must do after an event.
pub enum Outcome {
    /// Record the verdict and tell the PLC.
    Verdict(Box<Finished>),
    /// A result came after its part's verdict (its deadline): count it, ignore it.
    Late { seq: Seq },
    /// How long a part's sound took, from its trigger to its score.
    SoundLatency(Duration),
    /// The replay has no more frames: no part was there; stop the line.
    Exhausted { detail: String },
}

struct Part {
    seq: Seq,
    triggered: Instant,
    deadline: Instant,
    /// The vision result, kept while the part waits for its sound.
    vision: Option<(StageTimes, Frame, f32)>,
    sound: Option<Heard>,
}

/// The parts in flight, in trigger order, and the models that judge them.
pub struct InFlight {
    parts: VecDeque<Part>,
    deadline: Duration,
    /// The acoustic model's threshold, when the station listens (a part then waits for its sound).
    acoustic_threshold: Option<f32>,
    /// The model in force from each part on: one entry per switch.
    models: Vec<(Seq, ModelInfo)>,
    next_seq: Seq,
}

impl InFlight {
    pub fn new(deadline: Duration, model: ModelInfo, acoustic_threshold: Option<f32>) -> InFlight {
        InFlight {
            parts: VecDeque::new(),
            deadline,
            acoustic_threshold,
            models: vec![(1, model)],
            next_seq: 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// The number the next trigger will get.
    pub fn upcoming(&self) -> Seq {
        self.next_seq
    }

    /// Numbers a new trigger.
    pub fn begin(&mut self) -> Seq {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// When the oldest part's deadline passes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.parts.front().map(|p| p.deadline)
    }

    /// The model that judges part `seq`.
    pub fn model_for(&self, seq: Seq) -> &ModelInfo {
        let at = self.models.partition_point(|(from, _)| *from <= seq);
        &self.models[at.saturating_sub(1)].1
    }

    /// The model judging new parts.
    pub fn current_model(&self) -> &ModelInfo {
        &self.models[self.models.len() - 1].1
    }

    /// A new model judges parts from `from` on; parts before it keep theirs.
    pub fn switch(&mut self, from: Seq, model: ModelInfo) {
        let oldest = self.parts.front().map_or(from, |p| p.seq);
        while self.models.len() > 1 && self.models[1].0 <= oldest {
            self.models.remove(0);
        }
        self.models.push((from, model));
    }

    /// A technician changed the threshold: parts judged from now on use it. Returns the old one when it changed.
    pub fn set_threshold(&mut self, threshold: f32) -> Option<f32> {
        let last = self.models.len() - 1;
        let info = &mut self.models[last].1;
        if info.threshold == threshold {
            return None;
        }
        Some(std::mem::replace(&mut info.threshold, threshold))
    }

    /// A part was triggered at `at` and handed to capture (or not).
    pub fn admit(&mut self, seq: Seq, at: Instant, admission: Admission) -> Option<Finished> {
        let times = StageTimes::new(at);
        let (reason, count) = match admission {
            Admission::Accepted { heard } => {
                self.parts.push_back(Part {
                    seq,
                    triggered: at,
                    deadline: at + self.deadline,
                    vision: None,
                    sound: heard,
                });
                return None;
            }
            Admission::Refused => (Reason::PipelineOverloaded, Count::Overloaded),
            Admission::Full => {
                tracing::warn!("part {seq}: pipeline full, rejected without inspection");
                (Reason::PipelineOverloaded, Count::Overloaded)
            }
            Admission::Stopped => (
                Reason::FrameFault {
                    detail: "the capture worker has stopped".into(),
                },
                Count::FrameFault,
            ),
        };
        Some(self.fail_safe(seq, times, reason, count))
    }

    /// A CPU stage's report on a part: scored by the model, or a stage failed (or the replay ran out).
    pub fn reported(&mut self, report: StageReport, now: Now) -> Vec<Outcome> {
        let mut out = Vec::new();
        let Some(index) = self.waiting(report.seq(), now, &mut out) else {
            return out;
        };
        match report {
            StageReport::Scored {
                seq,
                times,
                frame,
                inference,
            } => {
                let vision = (times, frame, inference.score);
                if self.acoustic_threshold.is_some() && self.parts[index].sound.is_none() {
                    self.parts[index].vision = Some(vision);
                } else if let Some(p) = self.parts.remove(index) {
                    out.push(self.judge(seq, vision, p.sound));
                }
            }
            StageReport::Fault {
                source_exhausted: true,
                detail,
                ..
            } => {
                self.parts.remove(index);
                out.push(Outcome::Exhausted { detail });
            }
            StageReport::Fault {
                seq,
                times,
                stage,
                detail,
                frame,
                ..
            } => {
                self.parts.remove(index);
                let count = match stage {
                    Stage::Capture | Stage::Preprocess => Count::FrameFault,
                    Stage::Inference => Count::ModelError,
                };
                tracing::warn!("part {seq}: {detail}");
                let reason = Reason::from_fault(stage, detail);
                let mut f = self.fail_safe(seq, times, reason, count);
                f.frame = frame;
                out.push(Outcome::Verdict(Box::new(f)));
            }
        }
        out
    }

    /// The acoustic stage scored part `seq` (or could not), at `scored`.
    pub fn heard(&mut self, seq: Seq, scored: Instant, heard: Heard, now: Now) -> Vec<Outcome> {
        let mut out = Vec::new();
        let Some(p) = self.parts.iter().find(|p| p.seq == seq) else {
            // The part already has its verdict (a vision fault, or its deadline, which counted it).
            return out;
        };
        out.push(Outcome::SoundLatency(
            scored.saturating_duration_since(p.triggered),
        ));
        let Some(index) = self.waiting(seq, now, &mut out) else {
            return out;
        };
        match self.parts[index].vision.take() {
            Some(vision) => {
                self.parts.remove(index);
                out.push(self.judge(seq, vision, Some(heard)));
            }
            None => self.parts[index].sound = Some(heard),
        }
        out
    }

    /// Rejects every part whose deadline has passed; the stages' progress names the stage each was stuck at.
    pub fn expire(&mut self, now: Now) -> Vec<Outcome> {
        let done = now.done;
        let mut out = Vec::new();
        let deadline_ms = self.deadline.as_millis() as u64;
        while self.parts.front().is_some_and(|p| p.deadline <= now.at) {
            let Some(p) = self.parts.pop_front() else {
                break;
            };
            if let Some((times, frame, score)) = p.vision {
                // Vision was done; the sound was not.
                tracing::warn!("part {}: no acoustic score within {deadline_ms} ms", p.seq);
                let reason = Reason::DeadlineMissed {
                    deadline_ms,
                    stage: "acoustic".into(),
                };
                let mut f = self.fail_safe(p.seq, times, reason, Count::DeadlineMiss);
                f.frame = Some(frame);
                f.score = Some(score);
                out.push(Outcome::Verdict(Box::new(f)));
                continue;
            }
            let stage = if done[0] < p.seq {
                Stage::Capture
            } else if done[1] < p.seq {
                Stage::Preprocess
            } else {
                Stage::Inference
            };
            let (reason, count) = if stage == Stage::Capture && done[0] + 1 == p.seq {
                let detail =
                    format!("capture stalled: no frame within the {deadline_ms} ms deadline");
                (Reason::FrameFault { detail }, Count::FrameFault)
            } else {
                let stage_name = stage.name().into();
                let reason = Reason::DeadlineMissed {
                    deadline_ms,
                    stage: stage_name,
                };
                (reason, Count::DeadlineMiss)
            };
            tracing::warn!(
                "part {}: no verdict within {deadline_ms} ms (at {})",
                p.seq,
                stage.name()
            );
            let times = StageTimes::new(p.triggered);
            let f = self.fail_safe(p.seq, times, reason, count);
            out.push(Outcome::Verdict(Box::new(f)));
        }
        out
    }

    /// The part `seq`, if it still waits and its deadline has not passed. A result after the deadline is late;
    /// one that beats the deadline timer still misses: the deadline rejects the part (and every other due).
    fn waiting(&mut self, seq: Seq, now: Now, out: &mut Vec<Outcome>) -> Option<usize> {
        let Some(index) = self.parts.iter().position(|p| p.seq == seq) else {
            out.push(Outcome::Late { seq });
            return None;
        };
        if now.at > self.parts[index].deadline {
            out.push(Outcome::Late { seq });
            out.extend(self.expire(now));
            return None;
        }
        Some(index)
    }

    /// Both scores are in (or the station does not listen): the verdict.
    fn judge(&self, seq: Seq, vision: (StageTimes, Frame, f32), sound: Option<Heard>) -> Outcome {
        let (times, frame, score) = vision;
        let model = self.model_for(seq).clone();
        let mut decision = Decision::judge(score, model.threshold);
        let sound = sound.filter(|_| self.acoustic_threshold.is_some());
        if let (Some(heard), Some(threshold)) = (&sound, self.acoustic_threshold) {
            match &heard.result {
                Ok((s, _)) => decision.add_acoustic(*s, threshold),
                Err(detail) => {
                    tracing::warn!("part {seq}: sound: {detail}");
                    decision.add(Reason::AudioFault {
                        detail: detail.clone(),
                    });
                }
            }
        }
        Outcome::Verdict(Box::new(Finished {
            seq,
            times,
            decision,
            frame: Some(frame),
            score: Some(score),
            heard: sound,
            count: None,
            model,
        }))
    }

    fn fail_safe(&self, seq: Seq, times: StageTimes, reason: Reason, count: Count) -> Finished {
        Finished {
            seq,
            times,
            decision: Decision::fail_safe(reason),
            frame: None,
            score: None,
            heard: None,
            count: Some(count),
            model: self.model_for(seq).clone(),
        }
    }
}
