//! Decision: PASS or REJECT, with reasons. A rejected part is a normal outcome, not an error.
//!
//! The model's score over the threshold rejects (`score_over_threshold`). Everything that prevents a trustworthy
//! verdict rejects fail-safe: a frame fault, a model error, a missed deadline, an overloaded pipeline, or a result
//! the PLC never received. The result code sent to the PLC says which kind of reject it was.

use serde::Serialize;

use crate::part::Stage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Reject => "REJECT",
        }
    }
}

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
        }
    }

    pub fn is_fail_safe(&self) -> bool {
        !matches!(self, Reason::ScoreOverThreshold { .. })
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
    fn reasons_serialize_with_their_code() {
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
