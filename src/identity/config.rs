//! `[identity]`: where a part's identity comes from. Parsed into [`RawIdentity`], validated into
//! [`IdentityConfig`]. That `source = "plc"` needs a PLC trigger is checked by the root config.

use std::path::PathBuf;

use serde::Deserialize;

use super::scan::FramerConfig;
use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    source: Option<String>,
    port: Option<PathBuf>,
    baud: Option<u32>,
    prefix: Option<String>,
    suffix: Option<String>,
    aim_identifier: Option<bool>,
    gs1_without_marker: Option<bool>,
    max_scan_bytes: Option<u64>,
    scan_window_ms: Option<u64>,
    duplicate_window_s: Option<u64>,
}

/// A barcode or RFID scanner on a serial port (CDC/serial mode).
#[derive(Debug, Clone, PartialEq)]
pub struct ScannerConfig {
    pub port: PathBuf,
    pub baud: u32,
    pub framer: FramerConfig,
    /// Data without a GS1 marker is still read as GS1 when it starts with a known AI's digits.
    pub gs1_without_marker: bool,
    /// A scan is the identity of the first trigger that comes within this many ms after it; a scan older than
    /// that at a trigger is stale (dropped and counted), a trigger with no scan in it is a NOREAD.
    pub scan_window_ms: u64,
}

/// Which identity a part gets.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentitySource {
    /// The station's own `<run>-<seq>` only (no serial).
    Sequence,
    /// The PLC's 32-bit part ID from the command block, as the serial.
    Plc,
    /// A scan matched to the part.
    Scanner(ScannerConfig),
}

impl IdentitySource {
    pub fn name(&self) -> &'static str {
        match self {
            IdentitySource::Sequence => "sequence",
            IdentitySource::Plc => "plc",
            IdentitySource::Scanner(_) => "scanner",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdentityConfig {
    pub source: IdentitySource,
    /// The same serial again within this many seconds of its last inspection is a `duplicate_serial` REJECT
    /// (two parts with one label, or one label read twice); later it is a re-inspection (its `attempt` grows).
    pub duplicate_window_s: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            source: IdentitySource::Sequence,
            duplicate_window_s: 60,
        }
    }
}

pub fn validate(p: &mut Problems, raw: RawIdentity) -> IdentityConfig {
    let source = raw.source.as_deref().unwrap_or("sequence");
    let scanner_fields = [
        ("port", raw.port.is_some()),
        ("baud", raw.baud.is_some()),
        ("prefix", raw.prefix.is_some()),
        ("suffix", raw.suffix.is_some()),
        ("aim_identifier", raw.aim_identifier.is_some()),
        ("gs1_without_marker", raw.gs1_without_marker.is_some()),
        ("max_scan_bytes", raw.max_scan_bytes.is_some()),
        ("scan_window_ms", raw.scan_window_ms.is_some()),
    ];
    let duplicate_window_s = raw.duplicate_window_s.unwrap_or(60);
    let source = match source {
        "sequence" | "plc" => {
            for (name, _) in scanner_fields.iter().filter(|(_, set)| *set) {
                p.problem(
                    &format!("identity.{name}"),
                    format!("only used with source = \"scanner\", not {source:?}; remove it"),
                );
            }
            if source == "plc" {
                IdentitySource::Plc
            } else {
                IdentitySource::Sequence
            }
        }
        "scanner" => IdentitySource::Scanner(scanner(p, raw)),
        other => {
            p.problem(
                "identity.source",
                format!("expected \"sequence\", \"plc\" or \"scanner\", got {other:?}"),
            );
            IdentitySource::Sequence
        }
    };
    IdentityConfig {
        source,
        duplicate_window_s,
    }
}

fn scanner(p: &mut Problems, raw: RawIdentity) -> ScannerConfig {
    let port = raw.port.unwrap_or_else(|| {
        p.problem(
            "identity.port",
            "source = \"scanner\" needs the scanner's serial port, e.g. \"/dev/ttyACM0\"",
        );
        PathBuf::new()
    });
    let baud = raw.baud.unwrap_or(9600);
    if baud == 0 {
        p.problem("identity.baud", "expected a positive baud rate, got 0");
    }
    let max_scan_bytes = p.positive("identity.max_scan_bytes", raw.max_scan_bytes, 4096) as usize;
    let scan_window_ms = p.positive("identity.scan_window_ms", raw.scan_window_ms, 1000);
    ScannerConfig {
        port,
        baud,
        framer: FramerConfig {
            prefix: raw.prefix.unwrap_or_default().into_bytes(),
            suffix: raw.suffix.unwrap_or_default().into_bytes(),
            aim_identifier: raw.aim_identifier.unwrap_or(false),
            max_scan_bytes,
        },
        gs1_without_marker: raw.gs1_without_marker.unwrap_or(false),
        scan_window_ms,
    }
}
