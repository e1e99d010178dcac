//! What `otpgate doctor` reports: findings, each with how bad it is and
//! the exact change that fixes it.

use serde::Serialize;

/// How bad a finding is. Only `Bypass` makes `doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A login can succeed without otpgate's code (for some users, from
    /// some places, or when something fails), with no administrator's
    /// choice saying so.
    Bypass,
    /// Not a way in by itself, but weaker than it looks, or a way to lock
    /// everyone out.
    Warning,
    /// Worth knowing; nothing to fix.
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Bypass => "bypass",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The PAM service it concerns (`sshd`, `sudo`, …), or `None` for the
    /// host as a whole (the daemon, the module file).
    pub service: Option<String>,
    /// What is wrong, one line, naming the file and line where there is one
    /// (`/etc/pam.d/sshd:4: auth sufficient pam_permit.so runs before
    /// pam_otpgate.so`).
    pub what: String,
    /// The exact change that fixes it, one line.
    pub fix: String,
}

impl Finding {
    pub fn new(
        severity: Severity,
        service: Option<&str>,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            service: service.map(str::to_owned),
            what: what.into(),
            fix: fix.into(),
        }
    }
}
