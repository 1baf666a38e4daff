//! Decision: PASS or REJECT, with reasons. A rejected part is a normal outcome, not an error.
//!
//! The model's score over the threshold rejects (`score_over_threshold`). Everything that prevents a trustworthy
//! verdict rejects fail-safe: a frame fault, a model error, a missed deadline, an overloaded pipeline, or a result
//! the PLC never received. The result code sent to the PLC says which kind of reject it was.

pub mod config;

use serde::Serialize;

pub use config::DecisionConfig;

use crate::part::Stage;
pub use crate::part::record::Verdict;

/// Result code written to the PLC's result register (the same codes the full PLC handshake uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ResultCode {
    Pass = 1,
    RejectVision = 2,
    RejectAcoustic = 3,
    RejectFailSafe = 4,
    Error = 5,
}

/// Why a part was rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// The model's score is above the threshold.
    ScoreOverThreshold { score: f32, threshold: f32 },
    /// The frame could not be captured or used.
    FrameFault { detail: String },
    /// The model failed on this part.
    ModelError { detail: String },
    /// No verdict within the deadline; `stage` is where the part was.
    DeadlineMissed { deadline_ms: u64, stage: String },
    /// The pipeline's queue was full when the trigger came: the part was never processed.
    PipelineOverloaded,
    /// The PLC never received this part's result.
    PlcUndelivered { detail: String },
    /// The acoustic model's score of the part's sound is above its threshold.
    AcousticScoreOverThreshold { score: f32, threshold: f32 },
    /// The part's sound could not be captured or scored.
    AudioFault { detail: String },
    /// No scan came for the part within `identity.scan_window_ms` before its trigger (or the PLC gave no part
    /// ID with a PLC identity): a part is never passed without its identity.
    #[serde(rename = "noread")]
    NoRead { detail: String },
    /// The part's serial was inspected within `identity.duplicate_window_s` before, as `first_part`.
    DuplicateSerial { serial: String, first_part: String },
    /// The part's scan could not be read as an identity (a GS1 string that does not parse, no serial).
    IdentityInvalid { detail: String },
}

impl Reason {
    pub fn code(&self) -> &'static str {
        match self {
            Reason::ScoreOverThreshold { .. } => "score_over_threshold",
            Reason::FrameFault { .. } => "frame_fault",
            Reason::ModelError { .. } => "model_error",
            Reason::DeadlineMissed { .. } => "deadline_missed",
            Reason::PipelineOverloaded => "pipeline_overloaded",
            Reason::PlcUndelivered { .. } => "plc_undelivered",
            Reason::AcousticScoreOverThreshold { .. } => "acoustic_score_over_threshold",
            Reason::AudioFault { .. } => "audio_fault",
            Reason::NoRead { .. } => "noread",
            Reason::DuplicateSerial { .. } => "duplicate_serial",
            Reason::IdentityInvalid { .. } => "identity_invalid",
        }
    }

    pub fn is_fail_safe(&self) -> bool {
        !matches!(
            self,
            Reason::ScoreOverThreshold { .. } | Reason::AcousticScoreOverThreshold { .. }
        )
    }

    /// A reason for a stage fault.
    pub fn from_fault(stage: Stage, detail: String) -> Reason {
        match stage {
            Stage::Capture | Stage::Preprocess => Reason::FrameFault { detail },
            Stage::Inference => Reason::ModelError { detail },
        }
    }
}

/// A verdict with its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// Judges a model score. A score that is not a number is a model error.
    pub fn judge(score: f32, threshold: f32) -> Decision {
        if !score.is_finite() {
            return Decision::fail_safe(Reason::ModelError {
                detail: format!("the model returned a score of {score}"),
            });
        }
        if score > threshold {
            Decision {
                verdict: Verdict::Reject,
                reasons: vec![Reason::ScoreOverThreshold { score, threshold }],
            }
        } else {
            Decision {
                verdict: Verdict::Pass,
                reasons: Vec::new(),
            }
        }
    }

    /// Adds the acoustic model's judgement: a score over the threshold rejects, a score that is not a number is an
    /// audio fault (fail-safe).
    pub fn add_acoustic(&mut self, score: f32, threshold: f32) {
        let reason = if !score.is_finite() {
            Reason::AudioFault {
                detail: format!("the acoustic model returned a score of {score}"),
            }
        } else if score > threshold {
            Reason::AcousticScoreOverThreshold { score, threshold }
        } else {
            return;
        };
        self.add(reason);
    }

    /// Adds a reason to reject.
    pub fn add(&mut self, reason: Reason) {
        self.verdict = Verdict::Reject;
        self.reasons.push(reason);
    }

    /// A REJECT because something failed.
    pub fn fail_safe(reason: Reason) -> Decision {
        Decision {
            verdict: Verdict::Reject,
            reasons: vec![reason],
        }
    }

    pub fn result_code(&self) -> ResultCode {
        match self.verdict {
            Verdict::Pass => ResultCode::Pass,
            Verdict::Reject if self.reasons.iter().any(Reason::is_fail_safe) => {
                ResultCode::RejectFailSafe
            }
            Verdict::Reject
                if !self
                    .reasons
                    .iter()
                    .any(|r| matches!(r, Reason::ScoreOverThreshold { .. })) =>
            {
                ResultCode::RejectAcoustic
            }
            Verdict::Reject => ResultCode::RejectVision,
        }
    }

    /// The reasons as stored in the record: a JSON array of `{"code": ..., ...}` objects.
    pub fn reasons_json(&self) -> String {
        serde_json::to_string(&self.reasons).unwrap_or_else(|_| "[]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_exclusive_and_nan_is_fail_safe() {
        assert_eq!(Decision::judge(0.5, 0.5).verdict, Verdict::Pass);
        let over = Decision::judge(0.51, 0.5);
        assert_eq!(over.verdict, Verdict::Reject);
        assert_eq!(over.result_code(), ResultCode::RejectVision);
        let nan = Decision::judge(f32::NAN, 0.5);
        assert_eq!(nan.verdict, Verdict::Reject);
        assert_eq!(nan.reasons[0].code(), "model_error");
        assert_eq!(nan.result_code(), ResultCode::RejectFailSafe);
    }

    #[test]
    fn the_acoustic_score_joins_the_vision_score() {
        let mut sound_only = Decision::judge(0.1, 0.5);
        sound_only.add_acoustic(2.0, 1.5);
        assert_eq!(sound_only.verdict, Verdict::Reject);
        assert_eq!(sound_only.result_code(), ResultCode::RejectAcoustic);
        assert_eq!(
            sound_only.reasons_json(),
            r#"[{"code":"acoustic_score_over_threshold","score":2.0,"threshold":1.5}]"#
        );
        let mut both = Decision::judge(0.9, 0.5);
        both.add_acoustic(2.0, 1.5);
        assert_eq!(both.result_code(), ResultCode::RejectVision);
        assert_eq!(both.reasons.len(), 2);
        let mut quiet = Decision::judge(0.1, 0.5);
        quiet.add_acoustic(1.5, 1.5);
        assert_eq!(quiet.verdict, Verdict::Pass);
        let mut broken = Decision::judge(0.1, 0.5);
        broken.add_acoustic(f32::NAN, 1.5);
        assert_eq!(broken.result_code(), ResultCode::RejectFailSafe);
        assert_eq!(broken.reasons[0].code(), "audio_fault");
    }

    #[test]
    fn reasons_serialize_with_their_code() {
        for reason in [
            Reason::NoRead { detail: "x".into() },
            Reason::DuplicateSerial {
                serial: "S".into(),
                first_part: "1-000001".into(),
            },
            Reason::IdentityInvalid { detail: "x".into() },
        ] {
            let json = serde_json::to_value(&reason).unwrap();
            assert_eq!(json["code"], reason.code());
        }
        let d = Decision::fail_safe(Reason::DeadlineMissed {
            deadline_ms: 50,
            stage: "inference".into(),
        });
        assert_eq!(
            d.reasons_json(),
            r#"[{"code":"deadline_missed","deadline_ms":50,"stage":"inference"}]"#
        );
    }
}
