//! One clock for a run: monotonic instants for deadlines and latencies, and wall-clock microseconds (derived from
//! the same monotonic source, so they never go backwards within a run) for the records.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Maps monotonic [`Instant`]s of this process to wall-clock microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_wall_us: i64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        let start_wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Self {
            start: Instant::now(),
            start_wall_us,
        }
    }

    /// Wall-clock microseconds of `at`.
    pub fn wall_us(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.start);
        self.start_wall_us + since.as_micros() as i64
    }

    /// Wall-clock microseconds now.
    pub fn now_us(&self) -> i64 {
        self.wall_us(Instant::now())
    }
}

/// Milliseconds of a duration as a float, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_follows_monotonic_instants() {
        let clock = Clock::new();
        let a = Instant::now();
        let b = a + Duration::from_millis(250);
        assert_eq!(clock.wall_us(b) - clock.wall_us(a), 250_000);
        assert!(clock.now_us() >= clock.wall_us(a));
    }
}
