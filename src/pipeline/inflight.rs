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
use crate::part::{Frame, ModelInfo, PlcTag, Seq, Stage, StageReport, StageTimes};

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
    /// What the PLC gave with the trigger (its part ID, the encoder count).
    pub tag: Option<PlcTag>,
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
    tag: Option<PlcTag>,
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
    pub fn admit(
        &mut self,
        seq: Seq,
        at: Instant,
        tag: Option<PlcTag>,
        admission: Admission,
    ) -> Option<Finished> {
        let times = StageTimes::new(at);
        let (reason, count) = match admission {
            Admission::Accepted { heard } => {
                self.parts.push_back(Part {
                    seq,
                    tag,
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
        let mut f = self.fail_safe(seq, times, reason, count);
        f.tag = tag;
        Some(f)
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
                    out.push(self.judge(seq, p.tag, vision, p.sound));
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
                let tag = self.parts.remove(index).and_then(|p| p.tag);
                let count = match stage {
                    Stage::Capture | Stage::Preprocess => Count::FrameFault,
                    Stage::Inference => Count::ModelError,
                };
                tracing::warn!("part {seq}: {detail}");
                let reason = Reason::from_fault(stage, detail);
                let mut f = self.fail_safe(seq, times, reason, count);
                f.frame = frame;
                f.tag = tag;
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
                let tag = self.parts.remove(index).and_then(|p| p.tag);
                out.push(self.judge(seq, tag, vision, Some(heard)));
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
                f.tag = p.tag;
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
            let mut f = self.fail_safe(p.seq, times, reason, count);
            f.tag = p.tag;
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
    fn judge(
        &self,
        seq: Seq,
        tag: Option<PlcTag>,
        vision: (StageTimes, Frame, f32),
        sound: Option<Heard>,
    ) -> Outcome {
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
            tag,
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
            tag: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Verdict;
    use crate::part::Inference;

    const DEADLINE: Duration = Duration::from_millis(500);

    fn model(version: &str, threshold: f32) -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            version: version.into(),
            sha256: "0".repeat(64),
            threshold,
        }
    }

    fn frame() -> Frame {
        Frame {
            image: opencv::core::Mat::default(),
            origin: "test".into(),
            truth: None,
            roi: None,
            anomaly_map: None,
            calibration: None,
        }
    }

    fn scored(seq: Seq, at: Instant, score: f32) -> StageReport {
        StageReport::Scored {
            seq,
            times: StageTimes::new(at),
            frame: frame(),
            inference: Inference {
                score,
                anomaly_map: None,
            },
        }
    }

    fn sound(score: f32) -> Heard {
        Heard {
            result: Ok((score, vec![0.0; 4])),
            truth: None,
        }
    }

    fn now(at: Instant, done: Seq) -> Now {
        Now {
            at,
            done: [done; 3],
        }
    }

    /// A line with one part triggered at `t0`, queued for capture.
    fn one_part(listening: bool) -> (InFlight, Instant) {
        let mut parts = InFlight::new(DEADLINE, model("1", 1.0), listening.then_some(2.0));
        let t0 = Instant::now();
        let seq = parts.begin();
        let admission = Admission::Accepted { heard: None };
        assert!(parts.admit(seq, t0, None, admission).is_none());
        (parts, t0)
    }

    fn verdicts(outcomes: Vec<Outcome>) -> Vec<Finished> {
        outcomes
            .into_iter()
            .filter_map(|o| match o {
                Outcome::Verdict(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    fn codes(f: &Finished) -> Vec<&'static str> {
        f.decision.reasons.iter().map(|r| r.code()).collect()
    }

    #[test]
    fn a_score_is_judged_against_the_threshold_of_its_model() {
        let (mut parts, t0) = one_part(false);
        let ms = Duration::from_millis(10);
        let out = verdicts(parts.reported(scored(1, t0, 1.5), now(t0 + ms, 1)));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].decision.verdict, Verdict::Reject);
        assert_eq!(codes(&out[0]), ["score_over_threshold"]);
        assert_eq!(out[0].score, Some(1.5));
        assert!(out[0].count.is_none());
        assert!(parts.is_empty());
    }

    #[test]
    fn a_deadline_while_capturing_is_a_stalled_capture_while_inferring_a_missed_deadline() {
        let (mut parts, t0) = one_part(false);
        let seq = parts.begin();
        parts.admit(seq, t0, None, Admission::Accepted { heard: None });
        assert_eq!(parts.next_deadline(), Some(t0 + DEADLINE));
        let late = t0 + DEADLINE;
        // Part 1 is the next frame capture owes: capture stalled. Part 2 waits behind it in capture.
        let out = verdicts(parts.expire(now(late, 0)));
        assert_eq!(out.len(), 2);
        assert_eq!(codes(&out[0]), ["frame_fault"]);
        assert_eq!(out[0].count, Some(Count::FrameFault));
        assert_eq!(codes(&out[1]), ["deadline_missed"]);
        assert_eq!(out[1].count, Some(Count::DeadlineMiss));

        // Captured and preprocessed, stuck in inference.
        let (mut parts, t0) = one_part(false);
        let done = Now {
            at: t0 + DEADLINE,
            done: [1, 1, 0],
        };
        let out = verdicts(parts.expire(done));
        assert_eq!(out.len(), 1);
        let reason = serde_json::to_value(&out[0].decision.reasons[0]).unwrap();
        assert_eq!(reason["code"], "deadline_missed");
        assert_eq!(reason["stage"], "inference");
        assert_eq!(out[0].decision.verdict, Verdict::Reject);
    }

    #[test]
    fn nothing_expires_before_its_deadline() {
        let (mut parts, t0) = one_part(false);
        assert!(parts.expire(now(t0 + DEADLINE / 2, 0)).is_empty());
        assert_eq!(parts.len(), 1);
    }

    #[test]
    fn vision_and_sound_are_joined_in_either_order() {
        let ms = Duration::from_millis(10);
        // Vision first: the part waits for its sound.
        let (mut parts, t0) = one_part(true);
        assert!(verdicts(parts.reported(scored(1, t0, 0.5), now(t0 + ms, 1))).is_empty());
        let out = parts.heard(1, t0 + 2 * ms, sound(3.0), now(t0 + 2 * ms, 1));
        assert!(matches!(out[0], Outcome::SoundLatency(d) if d == 2 * ms));
        let out = verdicts(out);
        assert_eq!(codes(&out[0]), ["acoustic_score_over_threshold"]);
        assert!(out[0].heard.is_some());
        assert!(parts.is_empty());

        // Sound first: the verdict comes with the vision score.
        let (mut parts, t0) = one_part(true);
        assert!(verdicts(parts.heard(1, t0 + ms, sound(0.5), now(t0 + ms, 0))).is_empty());
        let out = verdicts(parts.reported(scored(1, t0, 0.5), now(t0 + 2 * ms, 1)));
        assert_eq!(out[0].decision.verdict, Verdict::Pass);
        assert!(out[0].heard.is_some());
    }

    #[test]
    fn a_part_whose_sound_never_comes_is_rejected_at_its_deadline_with_its_vision_score() {
        let (mut parts, t0) = one_part(true);
        parts.reported(scored(1, t0, 0.5), now(t0, 1));
        let out = verdicts(parts.expire(now(t0 + DEADLINE, 1)));
        let reason = serde_json::to_value(&out[0].decision.reasons[0]).unwrap();
        assert_eq!(reason["stage"], "acoustic");
        assert_eq!(out[0].score, Some(0.5));
        assert!(out[0].frame.is_some());
    }

    #[test]
    fn a_result_after_the_deadline_is_late_and_changes_nothing() {
        let (mut parts, t0) = one_part(false);
        let after = t0 + DEADLINE + Duration::from_millis(1);
        assert_eq!(verdicts(parts.expire(now(after, 0))).len(), 1);
        let out = parts.reported(scored(1, t0, 0.1), now(after, 1));
        assert!(matches!(out[..], [Outcome::Late { seq: 1 }]));
        // A sound for a part that has its verdict is not counted twice.
        assert!(parts.heard(1, after, sound(0.1), now(after, 1)).is_empty());
    }

    #[test]
    fn a_result_that_beats_the_timer_but_not_the_deadline_still_misses() {
        let (mut parts, t0) = one_part(false);
        let after = t0 + DEADLINE + Duration::from_millis(1);
        let out = parts.reported(scored(1, t0, 0.1), now(after, 1));
        assert!(matches!(out[0], Outcome::Late { seq: 1 }));
        let out = verdicts(out);
        assert_eq!(codes(&out[0]), ["deadline_missed"]);
        assert!(parts.is_empty());
    }

    #[test]
    fn a_fault_after_a_score_is_late_and_a_fault_before_rejects_fail_safe() {
        let (mut parts, t0) = one_part(false);
        let ms = Duration::from_millis(5);
        let fault = |stage| StageReport::Fault {
            seq: 1,
            times: StageTimes::new(t0),
            stage,
            detail: "broken".into(),
            frame: None,
            source_exhausted: false,
        };
        assert_eq!(
            verdicts(parts.reported(scored(1, t0, 0.1), now(t0 + ms, 1))).len(),
            1
        );
        let out = parts.reported(fault(Stage::Inference), now(t0 + 2 * ms, 1));
        assert!(matches!(out[..], [Outcome::Late { seq: 1 }]));

        let (mut parts, t0) = one_part(false);
        let out = verdicts(parts.reported(fault(Stage::Inference), now(t0 + ms, 0)));
        assert_eq!(codes(&out[0]), ["model_error"]);
        assert_eq!(out[0].count, Some(Count::ModelError));
        let (mut parts, t0) = one_part(false);
        let out = verdicts(parts.reported(fault(Stage::Preprocess), now(t0 + ms, 0)));
        assert_eq!(codes(&out[0]), ["frame_fault"]);
        assert_eq!(out[0].count, Some(Count::FrameFault));
    }

    #[test]
    fn an_exhausted_replay_stops_the_line_without_a_record() {
        let (mut parts, t0) = one_part(false);
        let report = StageReport::Fault {
            seq: 1,
            times: StageTimes::new(t0),
            stage: Stage::Capture,
            detail: "end of the folder".into(),
            frame: None,
            source_exhausted: true,
        };
        let out = parts.reported(report, now(t0, 0));
        assert!(
            matches!(&out[..], [Outcome::Exhausted { detail }] if detail == "end of the folder")
        );
        assert!(parts.is_empty());
    }

    #[test]
    fn overload_and_a_stopped_capture_reject_at_the_trigger() {
        let mut parts = InFlight::new(DEADLINE, model("1", 1.0), None);
        let t0 = Instant::now();
        for (admission, code, count) in [
            (Admission::Full, "pipeline_overloaded", Count::Overloaded),
            (Admission::Refused, "pipeline_overloaded", Count::Overloaded),
            (Admission::Stopped, "frame_fault", Count::FrameFault),
        ] {
            let seq = parts.begin();
            let f = parts
                .admit(seq, t0, None, admission)
                .expect("a verdict at once");
            assert_eq!(f.seq, seq);
            assert_eq!(codes(&f), [code]);
            assert_eq!(f.count, Some(count));
            assert_eq!(f.decision.verdict, Verdict::Reject);
        }
        assert!(parts.is_empty());
        assert_eq!(parts.upcoming(), 4);
    }

    #[test]
    fn a_sound_that_could_not_be_queued_is_an_audio_fault_in_the_verdict() {
        let mut parts = InFlight::new(DEADLINE, model("1", 1.0), Some(2.0));
        let t0 = Instant::now();
        let heard = Some(Heard {
            result: Err("the acoustic queue was full".into()),
            truth: None,
        });
        parts.admit(parts.upcoming(), t0, None, Admission::Accepted { heard });
        parts.begin();
        let out = verdicts(parts.reported(scored(1, t0, 0.1), now(t0, 1)));
        assert_eq!(codes(&out[0]), ["audio_fault"]);
    }

    #[test]
    fn a_recipe_switch_at_part_n_judges_earlier_parts_with_the_old_model() {
        let mut parts = InFlight::new(DEADLINE, model("1", 1.0), None);
        let t0 = Instant::now();
        for _ in 0..2 {
            let seq = parts.begin();
            parts.admit(seq, t0, None, Admission::Accepted { heard: None });
        }
        let from = parts.upcoming();
        assert_eq!(from, 3);
        parts.switch(from, model("2", 10.0));
        let seq = parts.begin();
        parts.admit(seq, t0, None, Admission::Accepted { heard: None });
        // The same score: a reject under v1 (threshold 1), a pass under v2 (threshold 10).
        for seq in 1..=3 {
            let f = verdicts(parts.reported(scored(seq, t0, 5.0), now(t0, seq)));
            let expected = if seq < 3 {
                ("1", Verdict::Reject)
            } else {
                ("2", Verdict::Pass)
            };
            assert_eq!(
                (f[0].model.version.as_str(), f[0].decision.verdict),
                expected,
                "part {seq}"
            );
        }
        assert_eq!(parts.current_model().version, "2");
        // A technician's threshold applies to the model in force.
        assert_eq!(parts.set_threshold(4.0), Some(10.0));
        assert_eq!(parts.set_threshold(4.0), None);
        assert_eq!(parts.model_for(9).threshold, 4.0);
    }
}
