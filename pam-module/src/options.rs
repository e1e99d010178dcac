//! The module's arguments from the PAM configuration line.
//!
//! A bad argument never stops a login on its own: it is reported (the caller
//! logs the warnings) and the default stays in force. Every default is the
//! safe one, so a typo can only make the module stricter, never weaker.
//! The exceptions are `bus=` and `socket=`, kept as written: a path that is
//! not one only root controls makes every login fail (see `trust`), which
//! is stricter still.

use std::time::Duration;

use otpgate_proto::{PAM_SOCKET, SYSTEM_BUS_ADDRESS};

pub const DEFAULT_PROMPT: &str = "Verification code: ";
/// The prompt with `forward_pass`, unless `prompt=` says otherwise.
pub const FORWARD_PASS_PROMPT: &str = "Password and verification code: ";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A longer wait would keep sshd's login grace timer, not ours, in charge.
pub const MAX_TIMEOUT_SECS: u64 = 120;
/// Longest prompt accepted; PAM's own limit for a message is 512 bytes.
pub const MAX_PROMPT_LEN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Daemon unreachable: refuse (`PAM_AUTHINFO_UNAVAIL`).
    Secure,
    /// Daemon unreachable: step aside (`PAM_IGNORE`).
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub nullok: bool,
    pub failmode: FailMode,
    pub timeout: Duration,
    pub bus: String,
    /// otpgated's direct socket, asked before the bus.
    pub socket: String,
    /// Never the direct socket: the bus only.
    pub bus_only: bool,
    pub debug: bool,
    pub prompt: String,
    /// One prompt for the password and the code; the password goes on
    /// as `PAM_AUTHTOK` for the next module (`use_first_pass`).
    pub forward_pass: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nullok: false,
            failmode: FailMode::Secure,
            timeout: DEFAULT_TIMEOUT,
            bus: SYSTEM_BUS_ADDRESS.to_string(),
            socket: PAM_SOCKET.to_string(),
            bus_only: false,
            debug: false,
            prompt: DEFAULT_PROMPT.to_string(),
            forward_pass: false,
        }
    }
}

impl Options {
    /// Parses the module arguments. Returns the options and one warning per
    /// argument that was ignored, for the log.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> (Options, Vec<String>) {
        let mut opts = Options::default();
        let mut warnings = Vec::new();
        let mut prompt_given = false;
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            match (key, value) {
                ("nullok", None) => opts.nullok = true,
                ("bus_only", None) => opts.bus_only = true,
                ("debug", None) => opts.debug = true,
                ("forward_pass", None) => opts.forward_pass = true,
                ("failmode", Some("secure")) => opts.failmode = FailMode::Secure,
                ("failmode", Some("open")) => opts.failmode = FailMode::Open,
                ("failmode", _) => {
                    warnings.push(format!("ignoring {arg:?}: failmode must be secure or open"))
                }
                ("timeout", Some(v)) => match v.parse::<u64>() {
                    Ok(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) => {
                        opts.timeout = Duration::from_secs(secs)
                    }
                    _ => warnings.push(format!(
                        "ignoring {arg:?}: timeout must be 1 to {MAX_TIMEOUT_SECS} seconds"
                    )),
                },
                // Kept as written, even when unusable: falling back to the
                // default bus could hand the login to a daemon other than the
                // one configured. `trust` refuses a bad address at every
                // login, whatever `failmode` says.
                ("bus", Some(v)) => opts.bus = v.to_string(),
                // Kept as written for the same reason as `bus=`.
                ("socket", Some(v)) => opts.socket = v.to_string(),
                ("prompt", Some(v)) => {
                    if v.is_empty() || v.len() > MAX_PROMPT_LEN || v.chars().any(char::is_control) {
                        warnings.push(format!(
                            "ignoring {arg:?}: prompt must be 1 to {MAX_PROMPT_LEN} printable bytes"
                        ));
                    } else {
                        opts.prompt = v.to_string();
                        prompt_given = true;
                    }
                }
                _ => warnings.push(format!("ignoring unknown option {arg:?}")),
            }
        }
        if opts.forward_pass && !prompt_given {
            opts.prompt = FORWARD_PASS_PROMPT.to_string();
        }
        (opts, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_ones() {
        let (o, w) = Options::parse::<&str>(&[]);
        assert!(w.is_empty());
        assert_eq!(o, Options::default());
        assert!(!o.nullok);
        assert_eq!(o.failmode, FailMode::Secure);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.bus, "unix:path=/run/dbus/system_bus_socket");
        assert_eq!(o.socket, "/run/otpgate/pam.socket");
        assert!(!o.bus_only);
        assert_eq!(o.prompt, "Verification code: ");
    }

    #[test]
    fn every_option() {
        let (o, w) = Options::parse(&[
            "nullok",
            "failmode=open",
            "timeout=2",
            "bus=unix:path=/run/x/bus",
            "socket=/run/x/pam.socket",
            "bus_only",
            "debug",
            "prompt=OTP for sudo: ",
            "forward_pass",
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert!(o.nullok && o.debug && o.forward_pass);
        assert_eq!(o.failmode, FailMode::Open);
        assert_eq!(o.timeout, Duration::from_secs(2));
        assert_eq!(o.bus, "unix:path=/run/x/bus");
        assert_eq!(o.socket, "/run/x/pam.socket");
        assert!(o.bus_only);
        assert_eq!(o.prompt, "OTP for sudo: ");
    }

    #[test]
    fn forward_pass_has_its_own_prompt_unless_one_is_given() {
        let (o, _) = Options::parse(&["forward_pass"]);
        assert_eq!(o.prompt, "Password and verification code: ");
        for args in [
            ["forward_pass", "prompt=Password+OTP: "],
            ["prompt=Password+OTP: ", "forward_pass"],
        ] {
            let (o, w) = Options::parse(&args);
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(o.prompt, "Password+OTP: ");
        }
        // A rejected prompt= leaves forward_pass's default, not the code's.
        let (o, w) = Options::parse(&["forward_pass", "prompt="]);
        assert_eq!(w.len(), 1);
        assert_eq!(o.prompt, FORWARD_PASS_PROMPT);
    }

    #[test]
    fn later_options_win() {
        let (o, _) = Options::parse(&["failmode=open", "failmode=secure"]);
        assert_eq!(o.failmode, FailMode::Secure);
    }

    #[test]
    fn bad_values_keep_the_default_and_warn() {
        let (o, w) = Options::parse(&[
            "failmode=maybe",
            "timeout=0",
            "timeout=abc",
            "timeout=100000",
            "timeout=-1",
            "prompt=",
            "prompt=a\nb",
            "nullok=yes",
            "bus_only=yes",
            "forward_pass=yes",
            "frobnicate",
            "",
        ]);
        assert_eq!(o, Options::default());
        assert_eq!(w.len(), 12, "{w:?}");
        assert!(w.iter().any(|m| m.contains("frobnicate")));
    }

    #[test]
    fn an_unusable_bus_is_kept_so_that_it_is_refused_not_replaced() {
        for bad in [
            "bus=unix:abstract=otpgate-test",
            "bus=tcp:host=evil,port=1",
            "bus=unix:path=relative/sock",
        ] {
            let (o, w) = Options::parse(&[bad]);
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(o.bus, bad.strip_prefix("bus=").unwrap());
        }
    }
}
