//! Logging to syslog, facility authpriv, without touching the host's syslog
//! state: `openlog(3)` would change the host's ident and facility, and
//! `syslog(3)` keeps a socket open in the host. Each message goes over a
//! socket of its own that is closed again at once. Codes are never logged.

use std::path::{Path, PathBuf};

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
    /// The syslog socket; `None` is the system's (/dev/log).
    socket: Option<PathBuf>,
}

impl Syslog {
    pub fn new(service: Option<&str>, debug: bool) -> Syslog {
        Syslog {
            prefix: format!("pam_otpgate({}:auth): ", service.unwrap_or("<unknown>")),
            debug,
            socket: None,
        }
    }

    /// Logs to the datagram socket at `path` instead (tests).
    pub fn to_socket(mut self, path: &Path) -> Syslog {
        self.socket = Some(path.to_path_buf());
        self
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
        let logger = match &self.socket {
            None => syslog::unix(formatter),
            Some(path) => syslog::unix_custom(formatter, path),
        };
        let Ok(mut logger) = logger else {
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
    fn messages_go_to_authpriv_with_the_module_and_service_named() {
        let dir = std::env::temp_dir().join(format!("otpgate-pam-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let log = Syslog::new(Some("sshd"), false).to_socket(&path);
        log.log(Level::Notice, "user bob\nforged: wrong code");
        log.log(Level::Debug, "not shown without debug");
        log.log(Level::Err, "otpgated is not running");
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        let n = sock.recv(&mut buf).unwrap();
        let second = String::from_utf8_lossy(&buf[..n]).into_owned();
        std::fs::remove_dir_all(&dir).unwrap();
        // authpriv (10) * 8 + notice (5) = 85; + err (3) = 83.
        assert!(first.starts_with("<85>"), "{first}");
        assert!(
            first.ends_with("pam_otpgate(sshd:auth): user bob?forged: wrong code"),
            "{first}"
        );
        assert!(second.starts_with("<83>"), "{second}");
        assert!(
            second.contains(&format!("[{}]: ", std::process::id())),
            "{second}"
        );
    }

    #[test]
    fn logging_without_a_syslog_socket_is_harmless() {
        Syslog::new(Some("test"), true).log(Level::Debug, "unit test message");
    }
}
