//! Logging to syslog, facility authpriv, without touching the host's syslog
//! state: `openlog(3)` would change the host's ident and facility, and
//! `syslog(3)` keeps a socket open in the host. Each message goes over a
//! socket of its own that is closed again at once. Codes are never logged.

use syslog::{Facility, Formatter3164};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

/// Where a module's messages go: `pam_otpgate(SERVICE:auth): text`, tagged
/// with the host program's name and pid as the host's own messages are.
pub struct Syslog {
    prefix: String,
    debug: bool,
}

impl Syslog {
    pub fn new(service: Option<&str>, debug: bool) -> Syslog {
        Syslog {
            prefix: format!("pam_otpgate({}:auth): ", service.unwrap_or("<unknown>")),
            debug,
        }
    }

    pub fn log(&self, level: Level, text: &str) {
        if level == Level::Debug && !self.debug {
            return;
        }
        let formatter = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: program_name(),
            pid: std::process::id(),
        };
        // No syslog socket (a container, a test): nothing to do, and no reason
        // to fail a login over it.
        let Ok(mut logger) = syslog::unix(formatter) else {
            return;
        };
        let line = format!("{}{}", self.prefix, printable(text));
        let _ = match level {
            Level::Err => logger.err(line),
            Level::Warning => logger.warning(line),
            Level::Notice => logger.notice(line),
            Level::Info => logger.info(line),
            Level::Debug => logger.debug(line),
        };
    }
}

fn program_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .ok()
        .map(|s| s.trim_end().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pam_otpgate".to_string())
}

/// Keeps one message one line: user names and host names come from outside.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines() {
        assert_eq!(printable("bob\nfake: ok\x1b[2J"), "bob?fake: ok?[2J");
    }

    #[test]
    fn logging_without_a_syslog_socket_is_harmless() {
        Syslog::new(Some("test"), true).log(Level::Debug, "unit test message");
    }
}
