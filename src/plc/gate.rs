//! The reject gate's timing: a shift register of the parts between the camera and the gate.
//!
//! Each triggered part takes a slot, due at its trigger time + `reject_delay_ms`, or when the PLC's encoder has
//! moved `reject_distance_counts` from its count at the trigger (robust to belt speed and to processing time).
//! When a slot falls due: a REJECT verdict fires the reject output, a PASS does nothing, and a part with no
//! verdict yet is rejected fail-safe ("default to reject") and reported, so its record says so. With
//! `RejectTiming::OnVerdict` there is no shift register: a reject fires as soon as it is known.
//!
//! The output is one coil held for `reject_pulse_ms` per fire. Pulses of close parts that overlap are merged: a
//! fire while the coil is on extends the pulse to end `reject_pulse_ms` after the later part (never dropped,
//! never cut short). The gate is pure timing: [`super::output`] drives the coil from it and says which parts'
//! fires each write carried ([`Gate::take_fired`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::config::RejectTiming;
use crate::part::Seq;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Due {
    At(Instant),
    /// Encoder count at the trigger.
    From(u32),
}

#[derive(Debug)]
struct Slot {
    seq: Seq,
    due: Due,
    reject: Option<bool>,
}

/// What happened to a part at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtGate {
    /// Rejected: its verdict was REJECT.
    Rejected(Seq),
    /// Rejected fail-safe: no verdict when it reached the gate.
    FailSafe(Seq),
    /// Passed: its verdict was PASS.
    Passed(Seq),
}

impl AtGate {
    pub fn seq(self) -> Seq {
        match self {
            AtGate::Rejected(seq) | AtGate::FailSafe(seq) | AtGate::Passed(seq) => seq,
        }
    }
}

/// What a verdict did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnVerdict {
    /// The reject fired now (no gate timing).
    Fired,
    /// The part waits in the shift register.
    Scheduled,
    /// The part already passed the gate and was rejected fail-safe.
    AlreadyRejected,
    /// Not a part the gate knows (passes with no timing, or a part older than the register).
    Unknown,
}

/// The shift register and the reject coil's pulse.
#[derive(Debug)]
pub struct Gate {
    timing: RejectTiming,
    pulse: Duration,
    slots: VecDeque<Slot>,
    /// Parts rejected fail-safe whose verdict has not come yet (bounded).
    failed_safe: VecDeque<Seq>,
    on_until: Option<Instant>,
    /// Parts fired since the output last took them (their pulse is to be driven).
    fired: Vec<Seq>,
    /// Fires that landed while the coil was already on (merged into one longer pulse).
    pub merged: u64,
    /// Rising edges of the coil.
    pub pulses: u64,
}

const FAILED_SAFE_KEPT: usize = 4096;

impl Gate {
    pub fn new(timing: RejectTiming, pulse: Duration) -> Gate {
        Gate {
            timing,
            pulse,
            slots: VecDeque::new(),
            failed_safe: VecDeque::new(),
            on_until: None,
            fired: Vec::new(),
            merged: 0,
            pulses: 0,
        }
    }

    /// Parts between the camera and the gate.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A part was triggered at `at`, with the encoder at `encoder`.
    pub fn part(&mut self, seq: Seq, at: Instant, encoder: u32) {
        let due = match self.timing {
            RejectTiming::OnVerdict => return,
            RejectTiming::DelayMs(ms) => Due::At(at + Duration::from_millis(ms)),
            RejectTiming::DistanceCounts(_) => Due::From(encoder),
        };
        self.slots.push_back(Slot {
            seq,
            due,
            reject: None,
        });
    }

    /// A part's verdict (or a forced reject when its result cannot reach the PLC).
    pub fn verdict(&mut self, seq: Seq, reject: bool, now: Instant) -> OnVerdict {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.seq == seq) {
            slot.reject = Some(slot.reject.unwrap_or(false) || reject);
            return OnVerdict::Scheduled;
        }
        if let Some(i) = self.failed_safe.iter().position(|s| *s == seq) {
            self.failed_safe.remove(i);
            return OnVerdict::AlreadyRejected;
        }
        if self.timing == RejectTiming::OnVerdict && reject {
            self.fire(seq, now);
            return OnVerdict::Fired;
        }
        OnVerdict::Unknown
    }

    /// Moves parts whose time has come through the gate; says what happened to each.
    pub fn advance(&mut self, now: Instant, encoder: Option<u32>) -> Vec<AtGate> {
        let mut out = Vec::new();
        while let Some(slot) = self.slots.front() {
            let due = match (slot.due, self.timing, encoder) {
                (Due::At(t), ..) => t <= now,
                (Due::From(start), RejectTiming::DistanceCounts(d), Some(count)) => {
                    // Signed difference: an encoder that jitters backwards does not count as a full turn.
                    count.wrapping_sub(start) as i32 >= d as i32
                }
                _ => false,
            };
            if !due {
                break;
            }
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            match slot.reject {
                Some(true) => {
                    self.fire(slot.seq, now);
                    out.push(AtGate::Rejected(slot.seq));
                }
                Some(false) => out.push(AtGate::Passed(slot.seq)),
                None => {
                    self.fire(slot.seq, now);
                    if self.failed_safe.len() == FAILED_SAFE_KEPT {
                        self.failed_safe.pop_front();
                    }
                    self.failed_safe.push_back(slot.seq);
                    out.push(AtGate::FailSafe(slot.seq));
                }
            }
        }
        out
    }

    fn fire(&mut self, seq: Seq, now: Instant) {
        self.fired.push(seq);
        let end = now + self.pulse;
        match self.on_until {
            Some(until) if until > now => {
                self.merged += 1;
                self.on_until = Some(until.max(end));
            }
            _ => {
                self.pulses += 1;
                self.on_until = Some(end);
            }
        }
    }

    /// The parts fired since the last call: the output drives (or extends) the pulse for them.
    pub fn take_fired(&mut self) -> Vec<Seq> {
        std::mem::take(&mut self.fired)
    }

    /// The write that drove the coil high was sent at `at` (a little after the fire, when the output task woke):
    /// the pulse lasts its full width from then.
    pub fn driven(&mut self, at: Instant) {
        if let Some(until) = self.on_until {
            self.on_until = Some(until.max(at + self.pulse));
        }
    }

    /// The pulse could not be written: it is dropped, not replayed later (a late pulse would hit another part).
    pub fn cancel(&mut self) {
        self.on_until = None;
    }

    /// When the pulse on now ends.
    pub fn pulse_end(&self) -> Option<Instant> {
        self.on_until
    }

    /// Whether the reject coil is on at `now`.
    pub fn coil(&self, now: Instant) -> bool {
        self.on_until.is_some_and(|until| until > now)
    }

    /// The next instant something changes on its own: the pulse ends or a timed slot falls due.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let pulse_end = self.on_until.filter(|t| *t > now);
        let slot_due = self.slots.front().and_then(|s| match s.due {
            Due::At(t) => Some(t),
            Due::From(_) => None,
        });
        match (pulse_end, slot_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delayed_rejects_fire_on_time_and_passes_do_not() {
        let t0 = Instant::now();
        let mut g = Gate::new(RejectTiming::DelayMs(100), 20 * MS);
        g.part(1, t0, 0);
        g.part(2, t0 + 10 * MS, 0);
        assert_eq!(g.verdict(1, true, t0 + 30 * MS), OnVerdict::Scheduled);
        assert_eq!(g.verdict(2, false, t0 + 40 * MS), OnVerdict::Scheduled);
        assert_eq!(g.next_change(t0 + 40 * MS), Some(t0 + 100 * MS));
        assert!(g.advance(t0 + 99 * MS, None).is_empty());
        assert_eq!(g.advance(t0 + 100 * MS, None), [AtGate::Rejected(1)]);
        assert_eq!(g.take_fired(), [1]);
        assert!(g.coil(t0 + 100 * MS) && g.coil(t0 + 119 * MS));
        assert_eq!(g.advance(t0 + 111 * MS, None), [AtGate::Passed(2)]);
        assert_eq!(g.pulses, 1, "a pass fires nothing");
        assert!(!g.coil(t0 + 120 * MS));
        assert!(g.is_empty());
    }

    #[test]
    fn a_part_without_verdict_at_the_gate_is_rejected_fail_safe() {
        let t0 = Instant::now();
        let mut g = Gate::new(RejectTiming::DelayMs(50), 10 * MS);
        g.part(7, t0, 0);
        assert_eq!(g.advance(t0 + 50 * MS, None), [AtGate::FailSafe(7)]);
        assert!(g.coil(t0 + 55 * MS));
        assert_eq!(
            g.verdict(7, false, t0 + 80 * MS),
            OnVerdict::AlreadyRejected
        );
        assert_eq!(g.verdict(7, false, t0 + 81 * MS), OnVerdict::Unknown);
    }

    #[test]
    fn overlapping_pulses_are_extended_never_dropped() {
        let t0 = Instant::now();
        let mut g = Gate::new(RejectTiming::DelayMs(0), 30 * MS);
        g.part(1, t0, 0);
        g.part(2, t0 + 10 * MS, 0);
        g.verdict(1, true, t0);
        g.verdict(2, true, t0);
        g.advance(t0, None);
        g.advance(t0 + 10 * MS, None);
        assert_eq!((g.pulses, g.merged), (1, 1));
        assert!(
            g.coil(t0 + 39 * MS),
            "extended to 30 ms after the second part"
        );
        assert!(!g.coil(t0 + 40 * MS));
    }

    #[test]
    fn encoder_distance_handles_wrap_and_backward_jitter() {
        let t0 = Instant::now();
        let mut g = Gate::new(RejectTiming::DistanceCounts(500), 10 * MS);
        g.part(1, t0, u32::MAX - 100);
        g.verdict(1, true, t0);
        assert!(
            g.advance(t0, Some(u32::MAX - 102)).is_empty(),
            "jitter back"
        );
        assert!(g.advance(t0, Some(398)).is_empty(), "499 counts");
        assert_eq!(g.next_change(t0), None, "encoder slots have no time");
        assert_eq!(g.advance(t0, Some(399)), [AtGate::Rejected(1)]);
    }

    #[test]
    fn without_timing_a_reject_fires_at_its_verdict() {
        let t0 = Instant::now();
        let mut g = Gate::new(RejectTiming::OnVerdict, 10 * MS);
        g.part(1, t0, 0);
        assert!(g.is_empty());
        assert_eq!(g.verdict(1, true, t0), OnVerdict::Fired);
        assert_eq!(g.verdict(2, false, t0), OnVerdict::Unknown);
        assert!(g.coil(t0));
    }
}
