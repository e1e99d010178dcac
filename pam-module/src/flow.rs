//! What `pam_sm_authenticate` decides: the calls to the daemon, the prompt,
//! the PAM code for every outcome and the one line the user is told.
//!
//! Written against [`PamIo`] and [`Daemon`] so every branch is unit-tested
//! without libpam or a bus.

use otpgate_proto::{valid_user_name, ChallengeState, MethodUsed, VerifyResult, MAX_CODE_LEN};
use zeroize::Zeroizing;

use crate::client::{Context, Daemon};
use crate::error::Error;
use crate::log::{printable, Level};
use crate::options::{FailMode, Options};

/// The PAM codes this module answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamCode {
    Success,
    AuthErr,
    MaxTries,
    Ignore,
    AuthinfoUnavail,
    ConvErr,
    UserUnknown,
}

/// The host side: PAM items, the conversation and the log.
pub trait PamIo {
    /// The user being authenticated (`pam_get_user`).
    fn user(&mut self) -> Result<String, Error>;
    /// `service`, `rhost`, `ruser`, `tty` from the PAM items.
    fn context(&mut self) -> Context;
    /// Asks with echo off. `Ok(None)` is an application that gave no answer.
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Zeroizing<String>>, Error>;
    /// `PAM_ERROR_MSG`.
    fn error_msg(&mut self, text: &str);
    /// `PAM_TEXT_INFO`.
    fn text_info(&mut self, text: &str);
    fn log(&mut self, level: Level, text: &str);
}

pub const MSG_UNAVAILABLE: &str = "otpgate is not running: second factor unavailable.";
pub const MSG_TIMED_OUT: &str = "otpgate did not answer in time: second factor unavailable.";
pub const MSG_NOT_TRUSTED: &str =
    "otpgate is not run by root on this bus: second factor unavailable.";
pub const MSG_BUS_NOT_TRUSTED: &str =
    "otpgate's configured bus is not trusted: second factor unavailable.";
pub const MSG_SOCKET_NOT_TRUSTED: &str =
    "otpgate's PAM socket is not trusted: second factor unavailable.";
pub const MSG_FAILED: &str = "otpgate could not check the code: second factor unavailable.";
/// The daemon answered but cannot read or save records: a full or failed
/// disk, or the fleet's database down or too slow.
pub const MSG_STORAGE: &str =
    "otpgate cannot reach its records (disk or database): second factor unavailable.";
pub const MSG_BAD_REPLY: &str = "otpgate gave an answer this login does not understand: refused.";
pub const MSG_NOT_ENROLLED: &str =
    "No second factor is set up for this account: run `otpgate enroll` or ask an administrator.";
pub const MSG_NO_CODE: &str = "No code entered.";
pub const MSG_REPLAYED: &str = "That code was already used: wait for the next one.";
pub const MSG_EXPIRED: &str = "That code has expired: ask for a new one.";
pub const MSG_UNKNOWN_USER: &str =
    "otpgate does not know this account in the user database: refused.";
pub const MSG_TOO_MANY: &str = "Too many requests to otpgate from this user: wait a minute.";
pub const MSG_DENIED: &str =
    "otpgate does not let this program check that account's codes: refused.";

const ERROR_INVALID_USER: &str = "org.otpgate.Otpgate1.Error.InvalidUser";
const ERROR_TOO_MANY: &str = "org.otpgate.Otpgate1.Error.TooManyRequests";
const ERROR_STORAGE: &str = "org.otpgate.Otpgate1.Error.Storage";

/// Longest daemon message shown to a user.
const MAX_SHOWN: usize = 200;

pub fn authenticate<P: PamIo, D: Daemon>(
    pam: &mut P,
    daemon: &D,
    opts: &Options,
    silent: bool,
) -> PamCode {
    let mut f = Flow { pam, opts, silent };
    f.run(daemon)
}

struct Flow<'a, P: PamIo> {
    pam: &'a mut P,
    opts: &'a Options,
    silent: bool,
}

impl<P: PamIo> Flow<'_, P> {
    fn run<D: Daemon>(&mut self, daemon: &D) -> PamCode {
        let user = match self.pam.user() {
            Ok(u) => u,
            Err(e) => {
                self.log(Level::Err, &e.to_string());
                return PamCode::UserUnknown;
            }
        };
        if !valid_user_name(&user) {
            self.log(
                Level::Notice,
                &format!("refusing user name {:?}: not a name otpgate accepts", user),
            );
            return PamCode::UserUnknown;
        }
        let ctx = self.pam.context();
        let whom = describe(&user, &ctx);
        self.log(
            Level::Debug,
            &format!("{whom}: asking otpgated (Challenge)"),
        );

        let challenge = match daemon.challenge(&user, &ctx) {
            Ok(c) => c,
            Err(e) => return self.daemon_failed(&whom, e),
        };
        self.log(
            Level::Debug,
            &format!("{whom}: Challenge said {}", challenge.state),
        );
        match challenge.state {
            ChallengeState::CodeRequired => {}
            ChallengeState::NotEnrolled => return self.not_enrolled(&whom),
            ChallengeState::Locked => return self.locked(&whom, challenge.locked_until),
            ChallengeState::Skip => return PamCode::Ignore,
            ChallengeState::Remembered => return PamCode::Success,
        }
        if let Some(m) = shown(&challenge.message) {
            // For a mailed code this says where it went, or why none came
            // and that a backup code works: needed to answer the prompt, so
            // shown even under PAM_SILENT.
            if challenge.method == Some(otpgate_proto::Method::Email) {
                self.pam.text_info(&m);
            } else {
                self.info(&m);
            }
        }

        let code = match self.pam.prompt_hidden(&self.opts.prompt) {
            Ok(Some(code)) => code,
            Ok(None) => {
                self.log(
                    Level::Notice,
                    &format!("{whom}: the application gave no answer"),
                );
                return PamCode::ConvErr;
            }
            Err(e) => {
                self.log(Level::Notice, &format!("{whom}: {e}"));
                return PamCode::ConvErr;
            }
        };
        let trimmed = code.trim();
        if trimmed.is_empty() {
            self.error(MSG_NO_CODE);
            self.log(Level::Notice, &format!("{whom}: no code entered"));
            return PamCode::AuthErr;
        }
        if trimmed.len() > MAX_CODE_LEN {
            // Cannot be right; not worth a trip to the daemon.
            self.error("Wrong code.");
            self.log(Level::Notice, &format!("{whom}: code too long, refused"));
            return PamCode::AuthErr;
        }

        let verify = daemon.verify(&user, trimmed, &ctx);
        drop(code);
        let verify = match verify {
            Ok(v) => v,
            Err(e) => return self.daemon_failed(&whom, e),
        };
        if verify.result != VerifyResult::Ok {
            let n = verify.notice.trim();
            if !n.is_empty() {
                let n: String = printable(n).chars().take(MAX_SHOWN).collect();
                self.error(&n);
            }
        }
        match verify.result {
            VerifyResult::Ok => {
                let used = verify.method_used.map_or("code", MethodUsed::as_str);
                self.log(
                    Level::Info,
                    &format!("{whom}: second factor accepted ({used})"),
                );
                if verify.method_used == Some(MethodUsed::Backup) {
                    let line = match verify.backup_codes_left {
                        Some(0) => "Backup code accepted. That was the last one: run `otpgate backup-codes` for new ones.".to_string(),
                        Some(1) => "Backup code accepted: 1 left.".to_string(),
                        Some(n) => format!("Backup code accepted: {n} left."),
                        None => "Backup code accepted.".to_string(),
                    };
                    self.info(&line);
                } else if let Some(m) = shown(&verify.message) {
                    self.info(&m);
                }
                PamCode::Success
            }
            VerifyResult::Invalid => {
                let line = match verify.attempts_left {
                    // This failure engaged the lock: say so now, not at the next try.
                    Some(0) => format!("Wrong code. {}", lock_line(verify.locked_until)),
                    Some(1) => "Wrong code. 1 attempt left.".to_string(),
                    Some(n) => format!("Wrong code. {n} attempts left."),
                    None => "Wrong code.".to_string(),
                };
                self.error(&line);
                self.log(Level::Notice, &format!("{whom}: wrong code"));
                PamCode::AuthErr
            }
            VerifyResult::Replayed => {
                self.error(MSG_REPLAYED);
                self.log(Level::Notice, &format!("{whom}: code replayed"));
                PamCode::AuthErr
            }
            VerifyResult::Expired => {
                self.error(MSG_EXPIRED);
                self.log(Level::Notice, &format!("{whom}: code expired"));
                PamCode::AuthErr
            }
            VerifyResult::Locked => self.locked(&whom, verify.locked_until),
            VerifyResult::NotEnrolled => self.not_enrolled(&whom),
        }
    }

    fn not_enrolled(&mut self, whom: &str) -> PamCode {
        if self.opts.nullok {
            self.log(
                Level::Info,
                &format!("{whom}: not enrolled, nullok: ignored"),
            );
            PamCode::Ignore
        } else {
            self.error(MSG_NOT_ENROLLED);
            self.log(Level::Notice, &format!("{whom}: not enrolled, refused"));
            PamCode::AuthErr
        }
    }

    /// `until` is 0 when the daemon gave no end.
    fn locked(&mut self, whom: &str, until: u64) -> PamCode {
        self.error(&lock_line(until));
        self.log(Level::Notice, &format!("{whom}: locked (until {until})"));
        PamCode::MaxTries
    }

    /// The daemon could not be asked, or answered nothing usable. Only a
    /// daemon that is not there is subject to `failmode=open`: an impostor,
    /// an error answer or a garbled answer is always a refusal.
    fn daemon_failed(&mut self, whom: &str, e: Error) -> PamCode {
        // Absence only: no bus socket, or nobody owns the name. A daemon
        // that was found and then was slow or failed is refused whatever
        // `failmode` says, since a local user may be able to cause that.
        let absent = match &e {
            Error::Unreachable { .. } | Error::NotRunning(_) => Some(MSG_UNAVAILABLE),
            _ => None,
        };
        if let Some(line) = absent {
            return match self.opts.failmode {
                FailMode::Secure => {
                    self.error(line);
                    self.log(
                        Level::Err,
                        &format!("{whom}: {e}: refused (failmode=secure)"),
                    );
                    PamCode::AuthinfoUnavail
                }
                FailMode::Open => {
                    self.log(
                        Level::Warning,
                        &format!("{whom}: {e}: second factor skipped (failmode=open)"),
                    );
                    PamCode::Ignore
                }
            };
        }
        let (line, code) = match &e {
            Error::NotRoot(_) => (MSG_NOT_TRUSTED, PamCode::AuthinfoUnavail),
            Error::UntrustedBus { .. } => (MSG_BUS_NOT_TRUSTED, PamCode::AuthinfoUnavail),
            Error::UntrustedSocket { .. } => (MSG_SOCKET_NOT_TRUSTED, PamCode::AuthinfoUnavail),
            Error::BadReply(_) => (MSG_BAD_REPLY, PamCode::AuthErr),
            Error::TimedOut(_) => (MSG_TIMED_OUT, PamCode::AuthinfoUnavail),
            Error::Service { name, .. } if name == ERROR_INVALID_USER => {
                (MSG_UNKNOWN_USER, PamCode::UserUnknown)
            }
            Error::Service { name, .. } if name == ERROR_STORAGE => {
                (MSG_STORAGE, PamCode::AuthinfoUnavail)
            }
            Error::Service { name, .. } if name == ERROR_TOO_MANY => {
                (MSG_TOO_MANY, PamCode::AuthinfoUnavail)
            }
            Error::Service { name, .. } if name == otpgate_proto::ACCESS_DENIED => {
                (MSG_DENIED, PamCode::AuthinfoUnavail)
            }
            _ => (MSG_FAILED, PamCode::AuthinfoUnavail),
        };
        self.error(line);
        self.log(Level::Err, &format!("{whom}: {e}: refused"));
        code
    }

    /// The one line that says why a login was refused. Shown even under
    /// `PAM_SILENT`, which sudo sets by default: without it a locked user
    /// would only learn "incorrect password attempt" and keep trying.
    fn error(&mut self, text: &str) {
        self.pam.error_msg(text);
    }

    /// Everything that is not a refusal is kept back under `PAM_SILENT`.
    fn info(&mut self, text: &str) {
        if !self.silent {
            self.pam.text_info(text);
        }
    }

    fn log(&mut self, level: Level, text: &str) {
        self.pam.log(level, text);
    }
}

fn lock_line(until: u64) -> String {
    match Some(until)
        .filter(|&t| t != 0)
        .and_then(clock::describe_until)
    {
        Some(when) => format!("Too many wrong codes: locked until {when}."),
        None => "Too many wrong codes: locked.".to_string(),
    }
}

/// The daemon's own message, made safe to print on a terminal.
fn shown(message: &str) -> Option<String> {
    let m = message.trim();
    if m.is_empty() {
        return None;
    }
    Some(printable(m).chars().take(MAX_SHOWN).collect())
}

fn describe(user: &str, ctx: &Context) -> String {
    let mut s = format!("user {user}");
    if let Some(h) = &ctx.rhost {
        s.push_str(&format!(" from {}", printable(h)));
    }
    if let Some(r) = &ctx.ruser {
        s.push_str(&format!(" (ruser {})", printable(r)));
    }
    if let Some(t) = &ctx.tty {
        s.push_str(&format!(" on {}", printable(t)));
    }
    s
}

/// Wall-clock times for people: the host's local time zone.
pub mod clock {
    /// A broken-down local time.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Local {
        pub year: i32,
        pub month: u32,
        pub day: u32,
        pub hour: u32,
        pub minute: u32,
    }

    pub fn local(unix: u64) -> Option<Local> {
        let t = libc::time_t::try_from(unix).ok()?;
        // SAFETY: an all-zero `tm` is a valid value of a plain C struct.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is the
        // reentrant form and keeps no pointer to them.
        if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            return None;
        }
        Some(Local {
            year: tm.tm_year + 1900,
            month: u32::try_from(tm.tm_mon + 1).ok()?,
            day: u32::try_from(tm.tm_mday).ok()?,
            hour: u32::try_from(tm.tm_hour).ok()?,
            minute: u32::try_from(tm.tm_min).ok()?,
        })
    }

    /// "14:05" today, "2026-11-25 14:05" on another day.
    pub fn format_until(until: Local, now: Local) -> String {
        if (until.year, until.month, until.day) == (now.year, now.month, now.day) {
            format!("{:02}:{:02}", until.hour, until.minute)
        } else {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                until.year, until.month, until.day, until.hour, until.minute
            )
        }
    }

    pub fn describe_until(unix: u64) -> Option<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(format_until(local(unix)?, local(now)?))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::Duration;

    use super::*;
    use crate::client::{ChallengeReply, VerifyReply};

    #[derive(Default)]
    struct FakePam {
        user: Option<String>,
        answer: Option<&'static str>,
        conv_fails: bool,
        prompts: Vec<String>,
        errors: Vec<String>,
        infos: Vec<String>,
        logs: Vec<(Level, String)>,
    }

    impl FakePam {
        fn new(answer: Option<&'static str>) -> FakePam {
            FakePam {
                user: Some("alice".into()),
                answer,
                ..FakePam::default()
            }
        }
    }

    impl PamIo for FakePam {
        fn user(&mut self) -> Result<String, Error> {
            self.user
                .clone()
                .ok_or_else(|| Error::NoUser("PAM_USER unset".into()))
        }
        fn context(&mut self) -> Context {
            Context {
                service: Some("sshd".into()),
                rhost: Some("192.0.2.1".into()),
                ruser: None,
                tty: Some("ssh".into()),
            }
        }
        fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Zeroizing<String>>, Error> {
            self.prompts.push(prompt.to_string());
            if self.conv_fails {
                return Err(Error::Conversation("fails".into()));
            }
            Ok(self.answer.map(|a| Zeroizing::new(a.to_string())))
        }
        fn error_msg(&mut self, text: &str) {
            self.errors.push(text.to_string());
        }
        fn text_info(&mut self, text: &str) {
            self.infos.push(text.to_string());
        }
        fn log(&mut self, level: Level, text: &str) {
            self.logs.push((level, text.to_string()));
        }
    }

    type Answer<T> = fn() -> Result<T, Error>;

    struct FakeDaemon {
        challenge: Answer<ChallengeReply>,
        verify: Answer<VerifyReply>,
        verified: RefCell<Vec<(String, String, Context)>>,
    }

    impl Daemon for FakeDaemon {
        fn challenge(&self, _user: &str, _ctx: &Context) -> Result<ChallengeReply, Error> {
            (self.challenge)()
        }
        fn verify(&self, user: &str, code: &str, ctx: &Context) -> Result<VerifyReply, Error> {
            self.verified
                .borrow_mut()
                .push((user.to_string(), code.to_string(), ctx.clone()));
            (self.verify)()
        }
    }

    fn code_required() -> Result<ChallengeReply, Error> {
        Ok(ChallengeReply::plain(ChallengeState::CodeRequired, ""))
    }

    fn verify_says(result: VerifyResult) -> Result<VerifyReply, Error> {
        Ok(VerifyReply::plain(result, ""))
    }

    fn daemon(challenge: Answer<ChallengeReply>, verify: Answer<VerifyReply>) -> FakeDaemon {
        FakeDaemon {
            challenge,
            verify,
            verified: RefCell::new(Vec::new()),
        }
    }

    fn run(pam: &mut FakePam, d: &FakeDaemon, args: &[&str]) -> PamCode {
        let (opts, _) = Options::parse(args);
        authenticate(pam, d, &opts, false)
    }

    #[test]
    fn ok_is_success_with_context_and_trimmed_code() {
        let d = daemon(code_required, || verify_says(VerifyResult::Ok));
        let mut pam = FakePam::new(Some(" 123456\n"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::Success);
        assert_eq!(pam.prompts, ["Verification code: "]);
        assert!(pam.errors.is_empty());
        let calls = d.verified.borrow();
        assert_eq!(calls[0].0, "alice");
        assert_eq!(calls[0].1, "123456");
        assert_eq!(calls[0].2.service.as_deref(), Some("sshd"));
        assert_eq!(calls[0].2.rhost.as_deref(), Some("192.0.2.1"));
        assert_eq!(calls[0].2.tty.as_deref(), Some("ssh"));
        // The code never reaches the log.
        assert!(pam.logs.iter().all(|(_, l)| !l.contains("123456")));
    }

    #[test]
    fn prompt_option_changes_the_prompt() {
        let d = daemon(code_required, || verify_says(VerifyResult::Ok));
        let mut pam = FakePam::new(Some("123456"));
        run(&mut pam, &d, &["prompt=OTP: "]);
        assert_eq!(pam.prompts, ["OTP: "]);
    }

    #[test]
    fn wrong_code_says_how_many_attempts_are_left() {
        let d = daemon(code_required, || {
            Ok(VerifyReply {
                attempts_left: Some(3),
                ..VerifyReply::plain(VerifyResult::Invalid, "")
            })
        });
        let mut pam = FakePam::new(Some("000000"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
        assert_eq!(pam.errors, ["Wrong code. 3 attempts left."]);

        let d = daemon(code_required, || verify_says(VerifyResult::Invalid));
        let mut pam = FakePam::new(Some("000000"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
        assert_eq!(pam.errors, ["Wrong code."]);

        let d = daemon(code_required, || {
            Ok(VerifyReply {
                attempts_left: Some(0),
                ..VerifyReply::plain(VerifyResult::Invalid, "")
            })
        });
        let mut pam = FakePam::new(Some("000000"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
        assert_eq!(pam.errors, ["Wrong code. Too many wrong codes: locked."]);
    }

    #[test]
    fn replayed_and_expired_are_auth_errors() {
        let d = daemon(code_required, || verify_says(VerifyResult::Replayed));
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
        assert_eq!(pam.errors, [MSG_REPLAYED]);

        let d = daemon(code_required, || verify_says(VerifyResult::Expired));
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
        assert_eq!(pam.errors, [MSG_EXPIRED]);
    }

    #[test]
    fn locked_at_challenge_is_maxtries_without_a_prompt() {
        let d = daemon(
            || {
                Ok(ChallengeReply {
                    locked_until: 4_000_000_000,
                    ..ChallengeReply::plain(ChallengeState::Locked, "")
                })
            },
            || panic!("Verify must not be called"),
        );
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::MaxTries);
        assert!(pam.prompts.is_empty());
        assert_eq!(pam.errors.len(), 1);
        assert!(
            pam.errors[0].starts_with("Too many wrong codes: locked until "),
            "{:?}",
            pam.errors
        );
    }

    #[test]
    fn locked_at_verify_is_maxtries() {
        let d = daemon(code_required, || verify_says(VerifyResult::Locked));
        let mut pam = FakePam::new(Some("000000"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::MaxTries);
        assert_eq!(pam.errors, ["Too many wrong codes: locked."]);
    }

    #[test]
    fn not_enrolled_depends_on_nullok() {
        let not_enrolled = || Ok(ChallengeReply::plain(ChallengeState::NotEnrolled, ""));
        let d = daemon(not_enrolled, || panic!("no Verify"));
        let mut pam = FakePam::new(None);
        assert_eq!(run(&mut pam, &d, &["nullok"]), PamCode::Ignore);
        assert!(pam.prompts.is_empty() && pam.errors.is_empty());

        let mut pam = FakePam::new(None);
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
        assert_eq!(pam.errors, [MSG_NOT_ENROLLED]);

        // Unenrolled between Challenge and Verify.
        let d = daemon(code_required, || verify_says(VerifyResult::NotEnrolled));
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &["nullok"]), PamCode::Ignore);
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
    }

    #[test]
    fn absent_daemon_follows_failmode() {
        for err in [
            || {
                Err(Error::Unreachable {
                    address: "unix:path=/x".into(),
                    reason: "ENOENT".into(),
                })
            },
            || Err(Error::NotRunning("no owner".into())),
        ] as [Answer<ChallengeReply>; 2]
        {
            let d = daemon(err, || panic!("no Verify"));
            let mut pam = FakePam::new(Some("123456"));
            assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthinfoUnavail);
            assert!(pam.prompts.is_empty());
            assert_eq!(pam.errors.len(), 1);
            assert!(pam.errors[0].contains("second factor unavailable"));

            let mut pam = FakePam::new(Some("123456"));
            assert_eq!(run(&mut pam, &d, &["failmode=open"]), PamCode::Ignore);
            assert!(pam.errors.is_empty());
        }
        let d = daemon(|| Err(Error::NotRunning("x".into())), || panic!());
        let mut pam = FakePam::new(None);
        run(&mut pam, &d, &[]);
        assert_eq!(pam.errors, [MSG_UNAVAILABLE]);
    }

    #[test]
    fn daemon_vanishing_before_verify_follows_failmode_too() {
        let d = daemon(code_required, || Err(Error::NotRunning("gone".into())));
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthinfoUnavail);
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &["failmode=open"]), PamCode::Ignore);
    }

    #[test]
    fn impostor_garbage_and_errors_refuse_even_with_failmode_open() {
        let cases: [(Answer<ChallengeReply>, PamCode, &str); 8] = [
            // Found, then silent or failing: slowness can be caused by a
            // local user, absence cannot.
            (
                || Err(Error::TimedOut(Duration::from_secs(5))),
                PamCode::AuthinfoUnavail,
                MSG_TIMED_OUT,
            ),
            (
                || Err(Error::Failed("NoReply".into())),
                PamCode::AuthinfoUnavail,
                MSG_FAILED,
            ),
            (
                || {
                    Err(Error::Service {
                        name: "org.otpgate.Otpgate1.Error.InvalidUser".into(),
                        message: "there is no user ALICE".into(),
                    })
                },
                PamCode::UserUnknown,
                MSG_UNKNOWN_USER,
            ),
            (
                || {
                    Err(Error::Service {
                        name: "org.otpgate.Otpgate1.Error.TooManyRequests".into(),
                        message: "wait".into(),
                    })
                },
                PamCode::AuthinfoUnavail,
                MSG_TOO_MANY,
            ),
            (
                || Err(Error::NotRoot(1000)),
                PamCode::AuthinfoUnavail,
                MSG_NOT_TRUSTED,
            ),
            (
                || Err(Error::BadReply("unknown state \"OK\"".into())),
                PamCode::AuthErr,
                MSG_BAD_REPLY,
            ),
            (
                || {
                    Err(Error::Service {
                        name: "org.otpgate.Otpgate1.Error.Storage".into(),
                        message: "disk full".into(),
                    })
                },
                PamCode::AuthinfoUnavail,
                MSG_STORAGE,
            ),
            (
                || {
                    Err(Error::Service {
                        name: "org.otpgate.Otpgate1.Error.Failed".into(),
                        message: "internal".into(),
                    })
                },
                PamCode::AuthinfoUnavail,
                MSG_FAILED,
            ),
        ];
        for (answer, code, line) in cases {
            for args in [&[][..], &["failmode=open", "nullok"][..]] {
                let d = daemon(answer, || panic!("no Verify"));
                let mut pam = FakePam::new(Some("123456"));
                assert_eq!(run(&mut pam, &d, args), code);
                assert_eq!(pam.errors, [line]);
                assert!(pam.prompts.is_empty());
            }
        }
        let d = daemon(code_required, || Err(Error::BadReply("x".into())));
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &["failmode=open"]), PamCode::AuthErr);
    }

    #[test]
    fn an_untrusted_bus_is_never_asked_and_refuses_even_with_failmode_open() {
        for address in ["unix:abstract=otpgate", "unix:path=/tmp/otpgate/bus"] {
            let args = [&format!("bus={address}"), "failmode=open", "nullok"];
            let (opts, _) = Options::parse(&args);
            let d = crate::trust::Checked::new(
                &opts.bus,
                daemon(|| panic!("no Challenge"), || panic!("no Verify")),
            );
            let mut pam = FakePam::new(Some("123456"));
            assert_eq!(
                authenticate(&mut pam, &d, &opts, false),
                PamCode::AuthinfoUnavail
            );
            assert_eq!(pam.errors, [MSG_BUS_NOT_TRUSTED]);
            assert!(pam.prompts.is_empty());
            let wanted = format!("the bus at {address} is not trusted: ");
            assert!(
                pam.logs
                    .iter()
                    .any(|(level, line)| *level == Level::Err && line.contains(&wanted)),
                "{:?}",
                pam.logs
            );
        }
    }

    #[test]
    fn empty_or_absurd_codes_never_reach_the_daemon() {
        let d = daemon(code_required, || panic!("no Verify"));
        let mut pam = FakePam::new(Some("  "));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
        assert_eq!(pam.errors, [MSG_NO_CODE]);

        let long: &'static str = Box::leak("9".repeat(MAX_CODE_LEN + 1).into_boxed_str());
        let mut pam = FakePam::new(Some(long));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::AuthErr);
        assert_eq!(pam.errors, ["Wrong code."]);
    }

    #[test]
    fn conversation_failures_are_conv_errors() {
        let d = daemon(code_required, || panic!("no Verify"));
        let mut pam = FakePam::new(None);
        assert_eq!(run(&mut pam, &d, &[]), PamCode::ConvErr);
        let mut pam = FakePam::new(Some("1"));
        pam.conv_fails = true;
        assert_eq!(run(&mut pam, &d, &[]), PamCode::ConvErr);
    }

    #[test]
    fn bad_or_missing_user() {
        let d = daemon(|| panic!("no Challenge"), || panic!("no Verify"));
        let mut pam = FakePam::new(Some("1"));
        pam.user = None;
        assert_eq!(run(&mut pam, &d, &[]), PamCode::UserUnknown);
        let mut pam = FakePam::new(Some("1"));
        pam.user = Some("../etc/passwd".into());
        assert_eq!(run(&mut pam, &d, &[]), PamCode::UserUnknown);
    }

    #[test]
    fn backup_code_tells_how_many_are_left() {
        let d = daemon(code_required, || {
            Ok(VerifyReply {
                method_used: Some(MethodUsed::Backup),
                backup_codes_left: Some(4),
                ..VerifyReply::plain(VerifyResult::Ok, "")
            })
        });
        let mut pam = FakePam::new(Some("abcd-efgh"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::Success);
        assert_eq!(pam.infos, ["Backup code accepted: 4 left."]);
    }

    #[test]
    fn daemon_message_is_shown_cleaned() {
        let d = daemon(
            || {
                Ok(ChallengeReply {
                    message: "A code was sent to a***@example.org\x1b[2J".into(),
                    ..ChallengeReply::plain(ChallengeState::CodeRequired, "")
                })
            },
            || verify_says(VerifyResult::Ok),
        );
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(run(&mut pam, &d, &[]), PamCode::Success);
        assert_eq!(pam.infos, ["A code was sent to a***@example.org?[2J"]);
    }

    #[test]
    fn silent_flag_hides_information_but_not_the_reason_for_a_refusal() {
        let (opts, _) = Options::parse::<&str>(&[]);
        let d = daemon(code_required, || verify_says(VerifyResult::Invalid));
        let mut pam = FakePam::new(Some("000000"));
        assert_eq!(authenticate(&mut pam, &d, &opts, true), PamCode::AuthErr);
        assert_eq!(pam.errors, ["Wrong code."]);

        let d = daemon(code_required, || {
            Ok(VerifyReply {
                method_used: Some(MethodUsed::Backup),
                backup_codes_left: Some(4),
                ..VerifyReply::plain(VerifyResult::Ok, "")
            })
        });
        let mut pam = FakePam::new(Some("abcd-efgh"));
        assert_eq!(authenticate(&mut pam, &d, &opts, true), PamCode::Success);
        assert!(pam.infos.is_empty());
    }

    #[test]
    fn an_email_user_is_told_why_no_code_came_even_under_silent_and_may_use_a_backup_code() {
        let (opts, _) = Options::parse::<&str>(&[]);
        let no_mail = || {
            Ok(ChallengeReply {
                method: Some(otpgate_proto::Method::Email),
                message: "No code could be mailed: use a backup code.".into(),
                ..ChallengeReply::plain(ChallengeState::CodeRequired, "")
            })
        };
        let d = daemon(no_mail, || {
            Ok(VerifyReply {
                attempts_left: Some(4),
                notice: "No code could be mailed (mail server: refused).".into(),
                ..VerifyReply::plain(VerifyResult::Invalid, "")
            })
        });
        let mut pam = FakePam::new(Some("000000"));
        assert_eq!(authenticate(&mut pam, &d, &opts, true), PamCode::AuthErr);
        assert_eq!(pam.prompts.len(), 1, "prompted although no mail went out");
        assert_eq!(pam.infos, ["No code could be mailed: use a backup code."]);
        assert_eq!(
            pam.errors,
            [
                "No code could be mailed (mail server: refused).",
                "Wrong code. 4 attempts left."
            ]
        );
        let d = daemon(no_mail, || {
            Ok(VerifyReply {
                method_used: Some(MethodUsed::Backup),
                backup_codes_left: Some(3),
                ..VerifyReply::plain(VerifyResult::Ok, "")
            })
        });
        let mut pam = FakePam::new(Some("abcd-efgh"));
        assert_eq!(authenticate(&mut pam, &d, &opts, true), PamCode::Success);
    }

    #[test]
    fn a_denied_caller_is_told_so() {
        let d = daemon(
            || {
                Err(Error::Service {
                    name: "org.freedesktop.DBus.Error.AccessDenied".into(),
                    message: "uid 1001 may not verify codes of user root".into(),
                })
            },
            || panic!("no Verify"),
        );
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(
            run(&mut pam, &d, &["failmode=open", "nullok"]),
            PamCode::AuthinfoUnavail
        );
        assert_eq!(pam.errors, [MSG_DENIED]);
    }

    #[test]
    fn lock_times_read_like_a_clock() {
        use clock::{format_until, Local};
        let now = Local {
            year: 2026,
            month: 11,
            day: 24,
            hour: 13,
            minute: 50,
        };
        let today = Local {
            hour: 14,
            minute: 5,
            ..now
        };
        assert_eq!(format_until(today, now), "14:05");
        let tomorrow = Local {
            day: 25,
            hour: 0,
            minute: 7,
            ..now
        };
        assert_eq!(format_until(tomorrow, now), "2026-11-25 00:07");
        assert!(clock::local(1_800_000_000).is_some());
    }
}
