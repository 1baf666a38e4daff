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

/// The calendar date (year, month 1-12, day 1-31) of a day number since 1970-01-01 (Howard Hinnant's
/// civil-from-days).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Wall-clock microseconds as UTC calendar fields: (year, month, day, hour, minute, second, millisecond).
pub fn utc_fields(us: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let secs = us.div_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (
        y,
        m,
        d,
        s / 3600,
        s / 60 % 60,
        s % 60,
        us.rem_euclid(1_000_000) / 1000,
    )
}

/// Wall-clock microseconds as UTC text: `2026-12-02 16:46:15.123 UTC`.
pub fn utc_text(us: i64) -> String {
    let (y, m, d, h, min, s, ms) = utc_fields(us);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}.{ms:03} UTC")
}

#[cfg(test)]
mod calendar_tests {
    #[test]
    fn utc_text_matches_known_dates() {
        assert_eq!(super::utc_text(0), "1970-01-01 00:00:00.000 UTC");
        // 2024-02-29 12:34:56.789 UTC (a leap day), as `date -d @1709210096` gives it.
        assert_eq!(
            super::utc_text(1_709_210_096_789_000),
            "2024-02-29 12:34:56.789 UTC"
        );
        assert_eq!(super::civil_from_days(20_819), (2027, 1, 1));
    }
}
