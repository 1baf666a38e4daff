//! Which scan belongs to which part, and which serials were seen too recently: pure bookkeeping over the times
//! scans and triggers came, kept by the orchestrator (single task, no locks).
//!
//! Rules (also in `docs/IDENTITY.md`):
//! - a trigger takes the oldest scan still waiting that came at most `scan_window_ms` before it (a scan after the
//!   trigger belongs to a later part); none is a NOREAD;
//! - a scan older than the window at a trigger is stale: dropped and counted, never given to a later part;
//! - the same serial within `duplicate_window_s` of its last inspection is a duplicate (its first part is named).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::PartIdentity;

/// Scans waiting for their part, and the serials seen lately.
#[derive(Debug)]
pub struct ScanBook {
    window: Duration,
    duplicate_window: Duration,
    waiting: VecDeque<(Instant, PartIdentity)>,
    /// Serial -> when it was last inspected and the part id it had then.
    seen: HashMap<String, (Instant, String)>,
    /// Scans dropped because no trigger came within the window after them.
    pub stale: u64,
}

impl ScanBook {
    pub fn new(window: Duration, duplicate_window: Duration) -> ScanBook {
        ScanBook {
            window,
            duplicate_window,
            waiting: VecDeque::new(),
            seen: HashMap::new(),
            stale: 0,
        }
    }

    /// A scan came at `at`.
    pub fn scanned(&mut self, at: Instant, identity: PartIdentity) {
        self.waiting.push_back((at, identity));
        // Bounded: a scanner that reads with no part under the camera cannot grow this past a few windows.
        while self.waiting.len() > 1024 {
            self.waiting.pop_front();
            self.stale += 1;
        }
    }

    /// The scan of the part triggered at `trigger`, if one came within the window before it.
    pub fn take(&mut self, trigger: Instant) -> Option<PartIdentity> {
        while let Some((at, _)) = self.waiting.front() {
            if trigger.saturating_duration_since(*at) > self.window {
                self.waiting.pop_front();
                self.stale += 1;
            } else {
                break;
            }
        }
        match self.waiting.front() {
            Some((at, _)) if *at <= trigger => self.waiting.pop_front().map(|(_, id)| id),
            _ => None,
        }
    }

    /// Notes that `serial` is inspected as `part_id` at `at`; returns the part id it had within the duplicate
    /// window before, if any.
    pub fn duplicate(&mut self, serial: &str, at: Instant, part_id: &str) -> Option<String> {
        let window = self.duplicate_window;
        self.seen
            .retain(|_, (seen, _)| at.saturating_duration_since(*seen) <= window);
        let earlier = self.seen.get(serial).map(|(_, id)| id.clone());
        if earlier.is_none() {
            self.seen
                .insert(serial.to_string(), (at, part_id.to_string()));
        }
        earlier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(serial: &str) -> PartIdentity {
        PartIdentity {
            raw: serial.as_bytes().to_vec(),
            symbology: None,
            serial: Some(serial.into()),
            gtin: None,
            lot: None,
            expiry: None,
            production_date: None,
            fields: Vec::new(),
            error: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_trigger_takes_the_oldest_scan_in_its_window_and_none_is_a_noread() {
        let t0 = Instant::now();
        let mut book = ScanBook::new(ms(500), ms(60_000));
        book.scanned(t0, id("A"));
        book.scanned(t0 + ms(100), id("B"));
        let first = book.take(t0 + ms(200)).unwrap();
        assert_eq!(first.serial.as_deref(), Some("A"));
        assert_eq!(
            book.take(t0 + ms(300)).unwrap().serial.as_deref(),
            Some("B")
        );
        assert!(book.take(t0 + ms(400)).is_none(), "no scan left: NOREAD");
        assert_eq!(book.stale, 0);
    }

    #[test]
    fn a_scan_after_the_trigger_waits_for_the_next_part_and_an_old_one_is_stale() {
        let t0 = Instant::now();
        let mut book = ScanBook::new(ms(500), ms(60_000));
        book.scanned(t0 + ms(50), id("late"));
        assert!(
            book.take(t0).is_none(),
            "a scan after the trigger is not this part's"
        );
        assert_eq!(
            book.take(t0 + ms(60)).unwrap().serial.as_deref(),
            Some("late")
        );
        book.scanned(t0 + ms(100), id("old"));
        assert!(book.take(t0 + ms(700)).is_none(), "601 ms > window");
        assert_eq!(book.stale, 1);
    }

    #[test]
    fn a_serial_within_the_duplicate_window_names_its_first_part() {
        let t0 = Instant::now();
        let mut book = ScanBook::new(ms(500), ms(1_000));
        assert_eq!(book.duplicate("S1", t0, "1-000001"), None);
        assert_eq!(book.duplicate("S2", t0 + ms(10), "1-000002"), None);
        assert_eq!(
            book.duplicate("S1", t0 + ms(900), "1-000003").as_deref(),
            Some("1-000001")
        );
        // After the window it is a re-inspection, not a duplicate.
        assert_eq!(book.duplicate("S1", t0 + ms(1_100), "1-000004"), None);
    }
}
