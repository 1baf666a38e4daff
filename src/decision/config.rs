//! `[decision]`: how long a part may take before it is rejected fail-safe. Parsed into [`RawDecision`],
//! validated into [`DecisionConfig`].

use serde::Deserialize;

use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecision {
    deadline_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    pub deadline_ms: u64,
}

pub fn validate(p: &mut Problems, raw: RawDecision) -> DecisionConfig {
    DecisionConfig {
        deadline_ms: p.positive("decision.deadline_ms", raw.deadline_ms, 500),
    }
}
