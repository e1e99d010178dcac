//! How long a lock lasts, and the per-source limit.
//!
//! Per user: `max_failures` consecutive failures lock the second factor;
//! each lock after the first in a row (no success in between) lasts twice
//! as long as the one before, up to `max_duration_secs`. The count, the
//! lock and the streak live in the user's record, on disk.
//!
//! Per source: many failures from one remote host across many users (a
//! password-spraying pattern the per-user lock cannot see) refuse that host
//! for the rest of a fixed window. On one host this counter is in memory:
//! it is a brake on a flood, not a record that must survive restarts. A
//! fleet counts in its shared database instead (`Store::sources`).
//!
//! Per caller: a local user who is not root may have a few calls in flight
//! and a bounded number a minute, whatever they are (enrolments that mail,
//! verifications that hash backup codes), so no user can make the daemon a
//! mail cannon or a CPU sink. Root is every PAM login: it is limited per
//! source and per account instead, never here.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::LockoutConfig;
use crate::error::Error;

/// Duration of a lock that is the `streak`-th in a row (1 = the first).
pub fn lock_duration(cfg: &LockoutConfig, streak: u32) -> u64 {
    let doublings = streak.saturating_sub(1).min(63);
    cfg.duration_secs
        .checked_shl(doublings)
        .filter(|d| d >> doublings == cfg.duration_secs)
        .unwrap_or(u64::MAX)
        .min(cfg.max_duration_secs)
}

/// Failures per remote host, wherever they are counted: in this daemon's
/// memory (`SourceLimiter`), or in a store the fleet shares, so that
/// spreading guesses over hosts buys nothing.
pub trait SourceCounter: Send + Sync {
    /// If `source` is over its limit, the time its window ends.
    fn blocked_until(
        &self,
        cfg: &LockoutConfig,
        source: &str,
        now: u64,
    ) -> Result<Option<u64>, Error>;
    /// Counts a failure from `source`; true if that reached the limit.
    fn failure(&self, cfg: &LockoutConfig, source: &str, now: u64) -> Result<bool, Error>;
}

impl SourceCounter for SourceLimiter {
    fn blocked_until(
        &self,
        cfg: &LockoutConfig,
        source: &str,
        now: u64,
    ) -> Result<Option<u64>, Error> {
        Ok(SourceLimiter::blocked_until(self, cfg, source, now))
    }
    fn failure(&self, cfg: &LockoutConfig, source: &str, now: u64) -> Result<bool, Error> {
        Ok(SourceLimiter::failure(self, cfg, source, now))
    }
}

/// A source's window that began at `start` with `count` failures: the
/// time it ends if the source is blocked now.
pub fn window_blocks(cfg: &LockoutConfig, start: u64, count: u32, now: u64) -> Option<u64> {
    let end = start.saturating_add(cfg.source_window_secs);
    (now < end && count >= cfg.source_max_failures).then_some(end)
}

/// Sources tracked at most; beyond it, entries whose window ended are
/// dropped, then (a flood of distinct hosts) the oldest.
const MAX_SOURCES: usize = 65_536;

#[derive(Default)]
pub struct SourceLimiter {
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

impl SourceLimiter {
    /// If `source` is over its limit, the time its window ends.
    pub fn blocked_until(&self, cfg: &LockoutConfig, source: &str, now: u64) -> Option<u64> {
        if cfg.source_max_failures == 0 || source.is_empty() {
            return None;
        }
        let map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let &(start, count) = map.get(source)?;
        window_blocks(cfg, start, count, now)
    }

    /// Counts a failure from `source`; true if that reached the limit.
    pub fn failure(&self, cfg: &LockoutConfig, source: &str, now: u64) -> bool {
        if cfg.source_max_failures == 0 || source.is_empty() {
            return false;
        }
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SOURCES && !map.contains_key(source) {
            map.retain(|_, (start, _)| now < *start + cfg.source_window_secs);
            if map.len() >= MAX_SOURCES {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(source.to_string()).or_insert((now, 0));
        if now >= entry.0 + cfg.source_window_secs {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 == cfg.source_max_failures
    }
}

/// Calls one non-root uid may have in flight at once.
pub const CALLER_MAX_INFLIGHT: u32 = 4;
/// Calls one non-root uid may start per minute.
pub const CALLER_MAX_PER_MINUTE: u32 = 60;
const CALLER_WINDOW_SECS: u64 = 60;
/// Callers tracked at most; idle ones are dropped first.
const MAX_CALLERS: usize = 65_536;

#[derive(Default, Debug)]
struct CallerState {
    inflight: u32,
    window_start: u64,
    calls: u32,
}

#[derive(Default, Debug)]
pub struct CallerLimiter {
    callers: Mutex<HashMap<u32, CallerState>>,
}

/// A call admitted by `CallerLimiter::admit`; ends when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a CallerLimiter,
    uid: u32,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut map = self.limiter.lock();
        if let Some(s) = map.get_mut(&self.uid) {
            s.inflight = s.inflight.saturating_sub(1);
        }
    }
}

impl CallerLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, CallerState>> {
        self.callers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one call of `uid`, or says which limit it is over.
    pub fn admit(&self, uid: u32, now: u64) -> Result<Permit<'_>, String> {
        let mut map = self.lock();
        if map.len() >= MAX_CALLERS && !map.contains_key(&uid) {
            map.retain(|_, s| s.inflight > 0 || now < s.window_start + CALLER_WINDOW_SECS);
        }
        let s = map.entry(uid).or_default();
        if now >= s.window_start + CALLER_WINDOW_SECS {
            s.window_start = now;
            s.calls = 0;
        }
        if s.inflight >= CALLER_MAX_INFLIGHT {
            return Err(format!("{CALLER_MAX_INFLIGHT} calls already in progress"));
        }
        if s.calls >= CALLER_MAX_PER_MINUTE {
            return Err(format!("over {CALLER_MAX_PER_MINUTE} calls a minute"));
        }
        s.inflight += 1;
        s.calls += 1;
        Ok(Permit { limiter: self, uid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LockoutConfig {
        LockoutConfig {
            max_failures: 5,
            duration_secs: 900,
            max_duration_secs: 86_400,
            source_max_failures: 3,
            source_window_secs: 60,
        }
    }

    #[test]
    fn locks_double_up_to_the_cap() {
        let c = cfg();
        let d: Vec<u64> = (1..=10).map(|s| lock_duration(&c, s)).collect();
        assert_eq!(
            d,
            [900, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 86400, 86400]
        );
        assert_eq!(lock_duration(&c, 0), 900);
        assert_eq!(lock_duration(&c, u32::MAX), 86400);
        let flat = LockoutConfig {
            max_duration_secs: 900,
            ..c
        };
        assert_eq!(lock_duration(&flat, 5), 900);
    }

    #[test]
    fn a_source_is_refused_for_the_rest_of_its_window() {
        let c = cfg();
        let l = SourceLimiter::default();
        assert!(!l.failure(&c, "198.51.100.9", 1000));
        assert!(!l.failure(&c, "198.51.100.9", 1001));
        assert_eq!(l.blocked_until(&c, "198.51.100.9", 1002), None);
        assert!(l.failure(&c, "198.51.100.9", 1002));
        assert_eq!(l.blocked_until(&c, "198.51.100.9", 1003), Some(1060));
        assert_eq!(l.blocked_until(&c, "203.0.113.1", 1003), None);
        assert_eq!(l.blocked_until(&c, "198.51.100.9", 1060), None);
        // Off for local logins and when configured off.
        for _ in 0..10 {
            l.failure(&c, "", 1000);
        }
        assert_eq!(l.blocked_until(&c, "", 1001), None);
        let off = LockoutConfig {
            source_max_failures: 0,
            ..c
        };
        assert!(!l.failure(&off, "x", 1));
        assert_eq!(l.blocked_until(&off, "198.51.100.9", 1003), None);
    }

    #[test]
    fn a_caller_gets_a_few_calls_at_once_and_a_bounded_number_a_minute() {
        let l = CallerLimiter::default();
        let held: Vec<_> = (0..CALLER_MAX_INFLIGHT)
            .map(|_| l.admit(1000, 100).expect("within the limit"))
            .collect();
        assert!(l.admit(1000, 100).unwrap_err().contains("in progress"));
        // Another uid is not affected.
        drop(l.admit(1001, 100).expect("other uid"));
        drop(held);
        for _ in CALLER_MAX_INFLIGHT..CALLER_MAX_PER_MINUTE {
            drop(l.admit(1000, 120).expect("within the minute's allowance"));
        }
        assert!(l.admit(1000, 159).unwrap_err().contains("a minute"));
        // A new window starts a minute after the last one began.
        drop(l.admit(1000, 160).expect("next minute"));
    }
}
