//! `pam_otpgate.so`: the PAM side of otpgate.
//!
//! ```text
//! auth    required pam_otpgate.so [nullok] [failmode=secure|open] [timeout=SECS] [socket=PATH] [bus_only] [bus=unix:path=/ABSOLUTE/PATH] [debug] [prompt=TEXT] [forward_pass]
//! account required pam_otpgate.so [nullok] [failmode=secure|open] [timeout=SECS] [socket=PATH] [bus_only] [bus=unix:path=/ABSOLUTE/PATH] [debug]
//! ```
//!
//! `forward_pass` takes the password and the code at one prompt (the code
//! last) and hands the password on as `PAM_AUTHTOK` to the next module
//! (`pam_unix.so use_first_pass`). The `account` line asks the daemon
//! whether its policy lets an account with no second factor in: the one
//! check that still runs when sshd accepts a public key alone.
//!
//! This file is the thin shim between libpam and the module's logic: the
//! entry points (pamsm), the PAM items and the conversation. What the module
//! decides is in `flow`, how it talks to otpgated in `client`, which bus it
//! is willing to ask in `trust`.
//!
//! Being a guest in sshd, sudo, su and screen lockers, it leaves nothing
//! behind: no thread (each bus exchange runs and closes inside one
//! `zruntime::block_on` on the calling thread), no descriptor, no signal
//! handler, no syslog state; and a panic is caught here and answered with
//! `PAM_SERVICE_ERR` instead of aborting the host. That needs the profile's
//! `panic = "unwind"` (the default): never build this crate with `abort`.

pub mod client;
pub mod conv;
pub mod error;
pub mod flow;
pub mod log;
pub mod options;
pub mod trust;

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pamsm::{pam_module, Pam, PamError, PamFlags, PamLibExt, PamServiceModule};
use zeroize::Zeroizing;

use crate::client::{BusDaemon, Context, Route, SocketDaemon};
use crate::error::Error;
use crate::flow::{PamCode, PamIo};
use crate::log::{Level, Syslog};
use crate::options::Options;

pub struct PamOtpgate;

impl PamServiceModule for PamOtpgate {
    fn authenticate(pamh: Pam, flags: PamFlags, args: Vec<String>) -> PamError {
        guarded(|| authenticate(&pamh, flags, &args))
    }

    /// There is no credential to set: the second factor only says yes or no.
    fn setcred(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::SUCCESS
    }

    fn acct_mgmt(pamh: Pam, flags: PamFlags, args: Vec<String>) -> PamError {
        guarded(|| account(&pamh, flags, &args))
    }

    fn open_session(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::IGNORE
    }

    fn close_session(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::IGNORE
    }

    fn chauthtok(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        PamError::IGNORE
    }
}

pam_module!(PamOtpgate);

/// Runs `f`, turning a panic into `PAM_SERVICE_ERR`: unwinding into C is
/// undefined behaviour and aborting would kill sudo or the sshd child.
pub fn guarded(f: impl FnOnce() -> PamError) -> PamError {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(PamError::SERVICE_ERR)
}

type Daemons = Route<SocketDaemon, trust::Checked<BusDaemon>>;

fn authenticate(pamh: &Pam, flags: PamFlags, args: &[String]) -> PamError {
    run(pamh, flags, args, |io, d, o, s| {
        flow::authenticate(io, d, o, s)
    })
}

fn account(pamh: &Pam, flags: PamFlags, args: &[String]) -> PamError {
    run(pamh, flags, args, |io, d, o, s| flow::account(io, d, o, s))
}

/// Both phases reach the daemon the same way: the socket first, then the
/// bus, with the same trust checks and deadline.
fn run(
    pamh: &Pam,
    flags: PamFlags,
    args: &[String],
    phase: impl FnOnce(&mut LibPam<'_>, &Daemons, &Options, bool) -> PamCode,
) -> PamError {
    let (opts, warnings) = Options::parse(args);
    let mut io = LibPam::new(pamh, opts.debug);
    for w in &warnings {
        io.log(Level::Warning, w);
    }
    let daemon = Route {
        socket: (!opts.bus_only).then(|| SocketDaemon::new(&opts.socket, opts.timeout)),
        bus: trust::Checked::new(&opts.bus, BusDaemon::new(&opts.bus, opts.timeout)),
    };
    let silent = flags.contains(PamFlags::SILENT);
    to_pam(phase(&mut io, &daemon, &opts, silent))
}

fn to_pam(code: PamCode) -> PamError {
    match code {
        PamCode::Success => PamError::SUCCESS,
        PamCode::AuthErr => PamError::AUTH_ERR,
        PamCode::MaxTries => PamError::MAXTRIES,
        PamCode::Ignore => PamError::IGNORE,
        PamCode::AuthinfoUnavail => PamError::AUTHINFO_UNAVAIL,
        PamCode::ConvErr => PamError::CONV_ERR,
        PamCode::UserUnknown => PamError::USER_UNKNOWN,
        PamCode::PermDenied => PamError::PERM_DENIED,
        PamCode::ServiceErr => PamError::SERVICE_ERR,
    }
}

/// The real host: libpam's items and the application's conversation.
struct LibPam<'a> {
    pamh: &'a Pam,
    raw: *const c_void,
    log: Syslog,
}

impl<'a> LibPam<'a> {
    fn new(pamh: &'a Pam, debug: bool) -> LibPam<'a> {
        // SAFETY: `Pam` is `#[repr(transparent)]` over libpam's handle
        // pointer, so reading it as that pointer reads the handle itself.
        let raw = unsafe { *(pamh as *const Pam as *const *const c_void) };
        let service = item(pamh.get_service());
        LibPam {
            pamh,
            raw,
            log: Syslog::new(service.as_deref(), debug),
        }
    }

    fn say(&mut self, style: std::ffi::c_int, text: &str) {
        // SAFETY: `raw` is the handle of the running pam_sm_* call.
        if let Err(e) = unsafe { conv::converse(self.raw, style, text) } {
            self.log
                .log(Level::Debug, &format!("could not show a message: {e}"));
        }
    }
}

fn item(r: pamsm::PamResult<Option<&std::ffi::CStr>>) -> Option<String> {
    r.ok()
        .flatten()
        .and_then(|c| c.to_str().ok())
        .map(str::to_owned)
}

impl PamIo for LibPam<'_> {
    fn user(&mut self) -> Result<String, Error> {
        match self.pamh.get_user(None) {
            Ok(Some(u)) => u
                .to_str()
                .map(str::to_owned)
                .map_err(|_| Error::NoUser("the user name is not UTF-8".into())),
            Ok(None) => Err(Error::NoUser("PAM has no user name".into())),
            Err(e) => Err(Error::NoUser(format!("pam_get_user failed: {e}"))),
        }
    }

    fn context(&mut self) -> Context {
        Context {
            service: item(self.pamh.get_service()),
            rhost: item(self.pamh.get_rhost()),
            ruser: item(self.pamh.get_ruser()),
            // SAFETY: `raw` is the handle of the running call.
            tty: unsafe { conv::string_item(self.raw, conv::PAM_TTY) },
            method: None,
        }
    }

    fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Zeroizing<String>>, Error> {
        // SAFETY: `raw` is the handle of the running call.
        unsafe { conv::converse(self.raw, conv::PAM_PROMPT_ECHO_OFF, prompt) }
    }

    fn error_msg(&mut self, text: &str) {
        self.say(conv::PAM_ERROR_MSG, text);
    }

    fn text_info(&mut self, text: &str) {
        self.say(conv::PAM_TEXT_INFO, text);
    }

    fn set_authtok(&mut self, password: &str) -> Result<(), Error> {
        // Built in a buffer with room for the NUL, so that CString::new
        // does not move the password to a new allocation and leave a copy
        // behind; the CString's bytes are wiped once libpam has its own.
        let mut bytes = Zeroizing::new(Vec::with_capacity(password.len() + 1));
        bytes.extend_from_slice(password.as_bytes());
        let c = std::ffi::CString::new(std::mem::take(&mut *bytes)).map_err(|e| {
            drop(Zeroizing::new(e.into_vec()));
            Error::Item("the password contains NUL".into())
        })?;
        let result = self.pamh.set_authtok(&c);
        drop(Zeroizing::new(c.into_bytes_with_nul()));
        result.map_err(|e| Error::Item(format!("pam_set_item(PAM_AUTHTOK) failed: {e}")))
    }

    fn log(&mut self, level: Level, text: &str) {
        self.log.log(level, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_service_err() {
        assert_eq!(guarded(|| panic!("boom")), PamError::SERVICE_ERR);
        assert_eq!(guarded(|| PamError::SUCCESS), PamError::SUCCESS);
    }

    #[test]
    fn every_code_maps() {
        assert_eq!(to_pam(PamCode::Success), PamError::SUCCESS);
        assert_eq!(to_pam(PamCode::AuthErr), PamError::AUTH_ERR);
        assert_eq!(to_pam(PamCode::MaxTries), PamError::MAXTRIES);
        assert_eq!(to_pam(PamCode::Ignore), PamError::IGNORE);
        assert_eq!(to_pam(PamCode::AuthinfoUnavail), PamError::AUTHINFO_UNAVAIL);
        assert_eq!(to_pam(PamCode::ConvErr), PamError::CONV_ERR);
        assert_eq!(to_pam(PamCode::UserUnknown), PamError::USER_UNKNOWN);
        assert_eq!(to_pam(PamCode::PermDenied), PamError::PERM_DENIED);
        assert_eq!(to_pam(PamCode::ServiceErr), PamError::SERVICE_ERR);
    }
}
