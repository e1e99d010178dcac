//! The audit trail: one syslog line (facility authpriv) per event that
//! matters, also written to stderr for the journal. Values that come from
//! callers are escaped and cut short; codes and secrets are never passed in.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

use crate::context::Context;

pub struct Audit {
    syslog: Mutex<Option<Logger<LoggerBackend, Formatter3164>>>,
    stderr: bool,
    /// Every line, kept in memory: for tests that read the audit trail.
    kept: Option<Mutex<Vec<String>>>,
    /// Repeated refusals (a locked account hammered, a denied caller
    /// retrying) are logged once a minute per key, with the number held
    /// back, so no local user can flood the log or push others' lines past
    /// syslog's rate limit.
    throttle: Mutex<HashMap<String, (u64, u32)>>,
}

/// One line per key per this many seconds for throttled events.
pub const THROTTLE_SECS: u64 = 60;
const THROTTLE_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Notice,
    Warning,
    Error,
    /// Someone must look now (a break-glass code was used).
    Alert,
}

/// Keeps a caller-supplied value on one line and short.
pub fn clean(value: &str) -> String {
    let mut s = String::new();
    for c in value.chars().take(128) {
        if c.is_control() || c == '"' || c == '\\' {
            let _ = write!(s, "\\x{:02x}", c as u32);
        } else {
            s.push(c);
        }
    }
    if value.chars().count() > 128 {
        s.push('…');
    }
    s
}

impl Audit {
    /// Connects to the local syslog if there is one; without it (containers)
    /// the lines still reach stderr.
    pub fn new(stderr: bool) -> Audit {
        let formatter = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "otpgated".into(),
            pid: std::process::id(),
        };
        Audit {
            syslog: Mutex::new(syslog::unix(formatter).ok()),
            stderr,
            kept: None,
            throttle: Mutex::default(),
        }
    }

    /// A silent audit, for unit tests.
    pub fn none() -> Audit {
        Audit {
            syslog: Mutex::new(None),
            stderr: false,
            kept: None,
            throttle: Mutex::default(),
        }
    }

    /// An audit that keeps its lines in memory (`lines`), for tests.
    pub fn kept() -> Audit {
        Audit {
            kept: Some(Mutex::new(Vec::new())),
            ..Audit::none()
        }
    }

    /// The lines an audit made with `kept` has written so far.
    pub fn lines(&self) -> Vec<String> {
        self.kept
            .as_ref()
            .map(|k| k.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    pub fn log(&self, level: Level, line: &str) {
        if let Some(kept) = &self.kept {
            kept.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line.to_string());
        }
        if self.stderr {
            eprintln!("otpgated: {line}");
        }
        if let Ok(mut guard) = self.syslog.lock() {
            if let Some(logger) = guard.as_mut() {
                let _ = match level {
                    Level::Info => logger.info(line),
                    Level::Notice => logger.notice(line),
                    Level::Warning => logger.warning(line),
                    Level::Error => logger.err(line),
                    Level::Alert => logger.alert(line),
                };
            }
        }
    }

    /// Whether a throttled line under `key` may go out at `now`; if so,
    /// how many were held back since the last one.
    pub fn admit(&self, key: &str, now: u64) -> Option<u32> {
        let mut map = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((start, held)) = map.get_mut(key) {
            if now < *start + THROTTLE_SECS {
                *held = held.saturating_add(1);
                return None;
            }
            let n = *held;
            *start = now;
            *held = 0;
            return Some(n);
        }
        if map.len() >= THROTTLE_KEYS {
            map.retain(|_, (start, _)| now < *start + THROTTLE_SECS);
        }
        map.insert(key.to_string(), (now, 0));
        Some(0)
    }

    /// `event`, at most once a minute per `key`, with `suppressed=N` for
    /// the lines held back since the last one.
    #[allow(clippy::too_many_arguments)]
    pub fn event_throttled(
        &self,
        key: &str,
        now: u64,
        level: Level,
        event: &str,
        user: &str,
        ctx: &Context,
        caller_uid: u32,
    ) {
        if let Some(held) = self.admit(key, now) {
            let detail = if held > 0 {
                format!("suppressed={held}")
            } else {
                String::new()
            };
            self.event(level, event, user, ctx, caller_uid, &detail);
        }
    }

    /// `event=NAME user=U [detail] service=S rhost=H ruser=R tty=T uid=N`.
    pub fn event(
        &self,
        level: Level,
        event: &str,
        user: &str,
        ctx: &Context,
        caller_uid: u32,
        detail: &str,
    ) {
        let mut line = format!("event={event} user={}", clean(user));
        if !detail.is_empty() {
            line.push(' ');
            line.push_str(detail);
        }
        for (k, v) in [
            ("service", &ctx.service),
            ("rhost", &ctx.rhost),
            ("ruser", &ctx.ruser),
            ("tty", &ctx.tty),
        ] {
            if !v.is_empty() {
                let _ = write!(line, " {k}={}", clean(v));
            }
        }
        let _ = write!(line, " caller_uid={caller_uid}");
        self.log(level, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_lines_go_out_once_a_minute_with_the_count_held_back() {
        let a = Audit::none();
        assert_eq!(a.admit("locked:alice", 1000), Some(0));
        for t in 1001..1060 {
            assert_eq!(a.admit("locked:alice", t), None);
        }
        assert_eq!(a.admit("locked:bob", 1001), Some(0), "keys are separate");
        assert_eq!(a.admit("locked:alice", 1060), Some(59));
        assert_eq!(a.admit("locked:alice", 1061), None);
        assert_eq!(a.admit("locked:alice", 1200), Some(1));
    }
}
