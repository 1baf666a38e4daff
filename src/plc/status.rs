//! What the PLC handshake shows the operator: link state, Modbus round-trip p50/p99, heartbeat ages, result
//! buffer depth, fault counters. The handshake task keeps a [`PlcStatus`] up to date; the live status line, the
//! run summary and `station plc status` print it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::metrics::Latencies;

/// Round-trip samples kept (the most recent).
const RTT_KEPT: usize = 1000;

/// Fault counters of the handshake (since the station started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// PLC triggers refused because the station was busy.
    pub refused: u64,
    /// Results that found the buffer full (the PLC did not acknowledge).
    pub overruns: u64,
    /// Times the PLC heartbeat stopped for `heartbeat_missed` periods.
    pub heartbeat: u64,
    /// Parts that reached the gate without a verdict (rejected fail-safe).
    pub late_at_gate: u64,
    /// Reject pulses that could not be written (link down).
    pub missed_pulses: u64,
    /// Link losses.
    pub outages: u64,
}

/// A snapshot of the handshake.
#[derive(Debug, Clone, Default)]
pub struct PlcStatus {
    /// `up`, `down (...)`, `listening on ...`.
    pub link: String,
    rtt_ms: VecDeque<f64>,
    /// Milliseconds since the PLC's heartbeat last changed (None: never seen).
    pub plc_heartbeat_age_ms: Option<u64>,
    /// Results waiting for the PLC's acknowledge (the one shown included).
    pub buffer_depth: usize,
    /// Parts between the camera and the gate.
    pub parts_before_gate: usize,
    pub reject_pulses: u64,
    /// Pulses that overlapped a running one and extended it.
    pub merged_pulses: u64,
    pub faults: FaultCounts,
}

pub type SharedStatus = Arc<Mutex<PlcStatus>>;

impl PlcStatus {
    pub fn add_rtt(&mut self, ms: f64) {
        if self.rtt_ms.len() == RTT_KEPT {
            self.rtt_ms.pop_front();
        }
        self.rtt_ms.push_back(ms);
    }

    /// Round-trip p50 and p99 in ms over the recent samples.
    pub fn rtt(&self) -> Option<(f64, f64)> {
        let mut l = Latencies::default();
        for ms in &self.rtt_ms {
            l.push(std::time::Duration::from_secs_f64(ms / 1e3));
        }
        Some((l.percentile(50.0)?, l.percentile(99.0)?))
    }
}

impl fmt::Display for PlcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plc {}", self.link)?;
        match self.rtt() {
            Some((p50, p99)) => write!(f, "  rtt p50 {p50:.1} ms p99 {p99:.1} ms")?,
            None => write!(f, "  rtt -")?,
        }
        match self.plc_heartbeat_age_ms {
            Some(age) => write!(f, "  plc heartbeat {age} ms ago")?,
            None => write!(f, "  plc heartbeat never seen")?,
        }
        write!(
            f,
            "  before gate {}  pulses {} ({} merged)",
            self.parts_before_gate, self.reject_pulses, self.merged_pulses
        )?;
        let c = &self.faults;
        write!(
            f,
            "  buffer {}  faults: refused {} overrun {} heartbeat {} late-at-gate {} missed-pulse {} outages {}",
            self.buffer_depth,
            c.refused,
            c.overruns,
            c.heartbeat,
            c.late_at_gate,
            c.missed_pulses,
            c.outages
        )
    }
}

/// Locks the shared status, recovering from a poisoned lock.
pub fn read(status: &SharedStatus) -> PlcStatus {
    status.lock().unwrap_or_else(|p| p.into_inner()).clone()
}
