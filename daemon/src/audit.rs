//! The audit trail: one syslog line (facility authpriv) per event that
//! matters, also written to stderr for the journal. Values that come from
//! callers are escaped and cut short; codes and secrets are never passed in.

use std::fmt::Write as _;
use std::sync::Mutex;

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

use crate::engine::Context;

pub struct Audit {
    syslog: Mutex<Option<Logger<LoggerBackend, Formatter3164>>>,
    stderr: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Notice,
    Warning,
    Error,
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
        }
    }

    /// A silent audit, for unit tests.
    pub fn none() -> Audit {
        Audit {
            syslog: Mutex::new(None),
            stderr: false,
        }
    }

    pub fn log(&self, level: Level, line: &str) {
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
                };
            }
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
