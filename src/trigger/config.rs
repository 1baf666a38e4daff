//! `[trigger]`: what says "a part is here". Parsed into [`RawTrigger`], validated into [`TriggerConfig`]. That
//! `kind = "plc"` needs a real PLC link is checked by the root config, which sees both sections.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    kind: Option<String>,
    /// Milliseconds, fractions allowed (0.5 is a part every 500 µs).
    interval_ms: Option<f64>,
    input_address: Option<u16>,
    input_kind: Option<String>,
    poll_ms: Option<u64>,
    listen: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlcInputKind {
    /// The trigger bit of the PLC's command word (the handshake's own trigger; see docs/PLC.md).
    Command,
    Coil,
    DiscreteInput,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerConfig {
    /// Free-running: one part every `interval_us` (configured as `interval_ms`, fractions allowed).
    Interval { interval_us: u64 },
    /// A PLC input bit, polled; each rising edge is one part.
    Plc {
        input_kind: PlcInputKind,
        input_address: u16,
        poll_ms: u64,
    },
    /// `POST /trigger` on this address.
    Http { listen: SocketAddr },
}

pub fn validate(p: &mut Problems, raw: RawTrigger) -> TriggerConfig {
    let kind = raw.kind.as_deref().unwrap_or("interval");
    match kind {
        "interval" => {
            p.unused(
                "trigger",
                kind,
                &[
                    ("input_address", raw.input_address.is_some()),
                    ("input_kind", raw.input_kind.is_some()),
                    ("poll_ms", raw.poll_ms.is_some()),
                    ("listen", raw.listen.is_some()),
                ],
            );
            let ms = raw.interval_ms.unwrap_or(100.0);
            if !(ms.is_finite() && ms >= 0.001) {
                p.problem(
                    "trigger.interval_ms",
                    format!(
                        "expected a positive number of milliseconds, at least 0.001 (fractions allowed, e.g. 0.5), got {ms}"
                    ),
                );
            }
            TriggerConfig::Interval {
                interval_us: ((ms * 1000.0).round() as u64).max(1),
            }
        }
        "plc" => {
            p.unused(
                "trigger",
                kind,
                &[
                    ("interval_ms", raw.interval_ms.is_some()),
                    ("listen", raw.listen.is_some()),
                ],
            );
            let input_kind = match raw.input_kind.as_deref().unwrap_or("command") {
                "command" => PlcInputKind::Command,
                "discrete_input" => PlcInputKind::DiscreteInput,
                "coil" => PlcInputKind::Coil,
                other => {
                    p.problem(
                        "trigger.input_kind",
                        format!(
                            "expected \"command\", \"discrete_input\" or \"coil\", got \"{other}\""
                        ),
                    );
                    PlcInputKind::Command
                }
            };
            TriggerConfig::Plc {
                input_kind,
                input_address: raw.input_address.unwrap_or(0),
                poll_ms: p.positive("trigger.poll_ms", raw.poll_ms, 5),
            }
        }
        "http" => {
            p.unused(
                "trigger",
                kind,
                &[
                    ("interval_ms", raw.interval_ms.is_some()),
                    ("input_address", raw.input_address.is_some()),
                    ("input_kind", raw.input_kind.is_some()),
                    ("poll_ms", raw.poll_ms.is_some()),
                ],
            );
            let text = raw.listen.unwrap_or_else(|| "127.0.0.1:8090".into());
            let listen = text.parse().unwrap_or_else(|_| {
                p.problem(
                    "trigger.listen",
                    format!("expected an address like \"127.0.0.1:8090\", got \"{text}\""),
                );
                SocketAddr::from(([127, 0, 0, 1], 8090))
            });
            TriggerConfig::Http { listen }
        }
        other => {
            p.problem(
                "trigger.kind",
                format!("expected \"interval\", \"plc\" or \"http\", got \"{other}\""),
            );
            TriggerConfig::Interval {
                interval_us: 100_000,
            }
        }
    }
}
