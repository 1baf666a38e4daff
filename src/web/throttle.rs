//! Login throttling, per account name and per client address: after `FREE_FAILURES` failed logins in a row each
//! further failure is answered only after a growing delay (doubling from `FIRST_DELAY` up to `MAX_DELAY`), and
//! at `LOCK_AFTER` failures the key is locked for `LOCK_FOR`: every login for it, even with the right password,
//! is refused with 429 until then. A success clears the account and the address. Lockouts are logged and shown
//! in the page's alerts. State is in memory: a restart clears it (the Argon2 check still costs each guess).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const FREE_FAILURES: u32 = 3;
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
pub const MAX_DELAY: Duration = Duration::from_secs(4);
pub const LOCK_AFTER: u32 = 10;
pub const LOCK_FOR: Duration = Duration::from_secs(300);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Failed logins by key (`user:<name>`, `addr:<ip>`).
#[derive(Debug, Default)]
pub struct Throttle {
    keys: HashMap<String, Failures>,
}

impl Throttle {
    /// How long the keys stay locked, if any of them is.
    pub fn locked(&mut self, keys: &[String], now: Instant) -> Option<Duration> {
        self.forget(now);
        keys.iter()
            .filter_map(|k| self.keys.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Counts a failure on each key; returns how long to wait before answering it.
    pub fn failed(&mut self, keys: &[String], now: Instant) -> Duration {
        let mut delay = Duration::ZERO;
        for key in keys {
            let f = self.keys.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
            f.count += 1;
            f.last = now;
            if f.count >= LOCK_AFTER && f.locked_until.is_none_or(|u| u <= now) {
                f.locked_until = Some(now + LOCK_FOR);
                tracing::warn!(
                    "login: {key} locked for {} s after {} failed attempts",
                    LOCK_FOR.as_secs(),
                    f.count
                );
            }
            if f.count > FREE_FAILURES {
                let step = (f.count - FREE_FAILURES - 1).min(8);
                delay = delay.max((FIRST_DELAY * 2u32.pow(step)).min(MAX_DELAY));
            }
        }
        delay
    }

    /// A login succeeded: its keys start afresh.
    pub fn succeeded(&mut self, keys: &[String]) {
        for key in keys {
            self.keys.remove(key);
        }
    }

    /// The keys locked now, with the seconds left (for the page's alerts).
    pub fn lockouts(&mut self, now: Instant) -> Vec<(String, u64)> {
        self.forget(now);
        let mut out: Vec<_> = self
            .keys
            .iter()
            .filter_map(|(k, f)| {
                let until = f.locked_until.filter(|u| *u > now)?;
                Some((k.clone(), (until - now).as_secs().max(1)))
            })
            .collect();
        out.sort();
        out
    }

    fn forget(&mut self, now: Instant) {
        self.keys.retain(|_, f| {
            now.duration_since(f.last) < FORGET_AFTER || f.locked_until.is_some_and(|u| u > now)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_then_lock_and_a_success_clears_them() {
        let (mut t, now) = (Throttle::default(), Instant::now());
        let keys = vec!["user:ana".to_string(), "addr:10.0.0.5".to_string()];
        let delays: Vec<_> = (0..LOCK_AFTER).map(|_| t.failed(&keys, now)).collect();
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert_eq!(delays[3], FIRST_DELAY);
        assert_eq!(delays[4], FIRST_DELAY * 2);
        assert_eq!(delays[9], MAX_DELAY);
        assert_eq!(t.locked(&keys, now), Some(LOCK_FOR));
        // Another account from the same address is locked too; the account from elsewhere as well.
        assert!(t.locked(&["addr:10.0.0.5".into()], now).is_some());
        assert!(
            t.locked(&["user:ana".into(), "addr:10.0.0.9".into()], now)
                .is_some()
        );
        assert!(
            t.locked(&["user:tom".into(), "addr:10.0.0.9".into()], now)
                .is_none()
        );
        assert_eq!(t.lockouts(now).len(), 2);
        // The lock ends by itself.
        assert!(
            t.locked(&keys, now + LOCK_FOR + Duration::from_secs(1))
                .is_none()
        );
        t.succeeded(&keys);
        assert_eq!(t.failed(&keys, now), Duration::ZERO);
    }
}
