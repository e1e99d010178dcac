//! Which login session a caller's process belongs to, and whether it sits
//! at a local console: read by the daemon from /proc for the pid the bus
//! or the kernel vouches for, never taken from the caller's arguments.
//!
//! `remember_secs` keys a success on the session: the logind session
//! (`session-N.scope` in the process's cgroup) where there is one, else
//! the controlling terminal plus the session leader's pid and start time
//! (sudo's "tty" timestamp). A new login is a new session; a leader's pid
//! reused later has another start time.

use std::fs;

/// The fields of /proc/PID/stat this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Session id: the pid of the session leader.
    pub session: u32,
    /// Controlling terminal (device number); 0 for none.
    pub tty_nr: u64,
    /// Clock ticks after boot at which the process started.
    pub start: u64,
}

/// Parses /proc/PID/stat. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) session(6) tty_nr(7) ... starttime(22).
    Some(Stat {
        session: f.get(3)?.parse().ok()?,
        tty_nr: f.get(4)?.parse::<i64>().ok()?.try_into().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// The logind session named in /proc/PID/cgroup (cgroup v1 or v2).
pub fn logind_session(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.split('/').find_map(|part| {
            let id = part.strip_prefix("session-")?.strip_suffix(".scope")?;
            (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
                .then(|| id.to_string())
        })
    })
}

fn stat_of(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The login session of process `pid`, as a key; `None` when it has none
/// that can be told apart (no logind session and no controlling terminal).
pub fn key_of(pid: u32) -> Option<String> {
    if pid == 0 {
        return None;
    }
    if let Some(id) = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .as_deref()
        .and_then(logind_session)
    {
        return Some(format!("logind:{id}"));
    }
    let stat = stat_of(pid)?;
    if stat.tty_nr == 0 || stat.session == 0 {
        return None;
    }
    let leader = stat_of(stat.session)?;
    Some(format!(
        "tty:{}:leader:{}:{}",
        stat.tty_nr, stat.session, leader.start
    ))
}

/// Linux's major number of a device number as /proc/PID/stat gives it.
fn major(tty_nr: u64) -> u64 {
    (tty_nr >> 8) & 0xfff
}

/// Whether a `PAM_TTY` names a local console: a virtual console (`tty1`),
/// a serial line (`ttyS0`, `ttyAMA0`, `ttyUSB0`), a hypervisor console
/// (`hvc0`, `xvc0`) or `console`, with or without `/dev/`.
pub fn console_name(tty: &str) -> bool {
    let t = tty.strip_prefix("/dev/").unwrap_or(tty);
    if t == "console" {
        return true;
    }
    ["ttyS", "ttyAMA", "ttyUSB", "hvc", "xvc", "tty"]
        .iter()
        .any(|p| {
            t.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Whether process `pid`'s controlling terminal (if it has one) could be a
/// console: a pseudo-terminal (major 136-143: ssh, terminal emulators)
/// is not. A process without one is judged by `PAM_TTY` alone.
pub fn not_on_a_pty(pid: Option<u32>) -> bool {
    match pid.and_then(stat_of) {
        Some(s) if s.tty_nr != 0 => !(136..=143).contains(&major(s.tty_nr)),
        // No pid (never on the bus or the socket) or no terminal.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_strange_name() {
        let line = "4242 (a) b (c)) S 1 4242 4240 34816 4242 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                session: 4240,
                tty_nr: 34816,
                start: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 0"), None);
    }

    #[test]
    fn logind_sessions_from_cgroups() {
        assert_eq!(
            logind_session("0::/user.slice/user-1000.slice/session-3.scope\n"),
            Some("3".into())
        );
        assert_eq!(
            logind_session("1:name=systemd:/user.slice/user-0.slice/session-c12.scope\n"),
            Some("c12".into())
        );
        assert_eq!(
            logind_session("0::/user.slice/user-1000.slice/user@1000.service/app.slice\n"),
            None
        );
        assert_eq!(logind_session("0::/\n"), None);
        assert_eq!(logind_session("0::/session-../x\n"), None);
    }

    #[test]
    fn consoles() {
        for yes in [
            "tty1",
            "/dev/tty12",
            "ttyS0",
            "/dev/ttyS1",
            "console",
            "hvc0",
            "ttyAMA0",
        ] {
            assert!(console_name(yes), "{yes}");
        }
        for no in [
            "pts/0",
            "/dev/pts/3",
            "ssh",
            "",
            "tty",
            ":0",
            "ttyx",
            "/dev/tty",
            "ttyS",
        ] {
            assert!(!console_name(no), "{no}");
        }
        assert_eq!(major(34816), 136);
    }

    #[test]
    fn this_process_has_a_readable_session_or_none() {
        // Under a test runner there may be no terminal: then no key, which
        // is what the engine must get (no session, nothing remembered).
        let me = std::process::id();
        let stat = stat_of(me).expect("own stat");
        match key_of(me) {
            Some(k) => assert!(k.starts_with("logind:") || k.starts_with("tty:"), "{k}"),
            None => assert_eq!(stat.tty_nr, 0),
        }
    }
}
