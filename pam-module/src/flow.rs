//! What `pam_sm_authenticate` and `pam_sm_acct_mgmt` decide: the calls to
//! the daemon, the prompt, the PAM code for every outcome and the one line
//! the user is told.
//!
//! Written against [`PamIo`] and [`Daemon`] so every branch is unit-tested
//! without libpam or a bus.

use otpgate_proto::{
    valid_user_name, AccountState, ChallengeState, Method, MethodUsed, Policy, VerifyResult,
    MAX_CODE_LEN,
};
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
    /// The account phase's refusal.
    PermDenied,
    /// PAM itself failed us (the password could not be handed on).
    ServiceErr,
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
    /// Sets `PAM_AUTHTOK`, the password the next module takes with
    /// `use_first_pass` (`forward_pass`).
    fn set_authtok(&mut self, password: &str) -> Result<(), Error>;
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
/// The account phase's refusal of an account the policy requires to enrol.
pub const MSG_ACCOUNT_REQUIRES: &str =
    "No second factor is set up for this account, and this host requires one: ask an administrator.";
pub const MSG_REMEMBERED: &str = "Second factor already given in this session.";
/// A daemon older than the module, asked for a method it does not have.
pub const MSG_OUTDATED: &str =
    "otpgated is older than this login expects: second factor unavailable.";
pub const MSG_NO_CODE: &str = "No code entered.";
/// `forward_pass` when no code is asked: the whole answer is the password.
pub const PASSWORD_PROMPT: &str = "Password: ";
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
const ERROR_UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";

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

/// What `pam_sm_acct_mgmt` decides: whether the daemon's policy lets this
/// account in without a second factor. This is what enforces `require` on
/// logins whose auth stack never ran (sshd with public keys only).
///
/// Every refusal is `PAM_PERM_DENIED` (an unknown user `PAM_USER_UNKNOWN`),
/// the codes every application reads as "this account may not log in":
/// `PAM_AUTHINFO_UNAVAIL` is not one of the account phase's documented
/// answers. Only an absent daemon with `failmode=open` steps aside.
pub fn account<P: PamIo, D: Daemon>(
    pam: &mut P,
    daemon: &D,
    opts: &Options,
    silent: bool,
) -> PamCode {
    let mut f = Flow { pam, opts, silent };
    f.account(daemon)
}

/// A `forward_pass` answer taken apart. No `Debug`: it would print both.
pub struct Split {
    /// For the next module, as `PAM_AUTHTOK`.
    pub password: Zeroizing<String>,
    /// Empty when none could be found.
    pub code: Zeroizing<String>,
}

/// Crockford's base32 alphabet in lower case: the daemon's backup codes.
const BACKUP_ALPHABET: &str = "0123456789abcdefghjkmnpqrstvwxyz";
const BACKUP_LEN: usize = 10;

fn looks_like_backup_code(token: &str) -> bool {
    let mut n = 0;
    for c in token.chars().filter(|&c| c != '-') {
        if !BACKUP_ALPHABET.contains(c.to_ascii_lowercase()) {
            return false;
        }
        n += 1;
    }
    n == BACKUP_LEN
}

/// Takes one `forward_pass` answer apart into the password and the code
/// (`digits` long; 0 means 6), the code last:
///
/// 1. a backup code after the last space ("hunter2 abcd-efgh-jk");
/// 2. else the last `digits` characters, when they are all digits
///    ("hunter2123456" or "hunter2 123456"); one space before them is a
///    separator, not part of the password, so a password that itself ends
///    in a space is followed by a space before the code;
/// 3. else no code at all: the whole answer is the password.
///
/// Nothing is trimmed: a password may begin or end with a space.
pub fn split_answer(answer: &str, digits: u32) -> Split {
    let digits = match digits {
        0 => 6,
        n => (n as usize).min(MAX_CODE_LEN),
    };
    if let Some((password, token)) = answer.rsplit_once(' ') {
        if looks_like_backup_code(token) {
            return Split {
                password: Zeroizing::new(password.to_string()),
                code: Zeroizing::new(token.to_string()),
            };
        }
    }
    let bytes = answer.as_bytes();
    if bytes.len() >= digits && bytes[bytes.len() - digits..].iter().all(u8::is_ascii_digit) {
        // All ASCII from there on, so this is a character boundary.
        let (rest, code) = answer.split_at(answer.len() - digits);
        let password = rest.strip_suffix(' ').unwrap_or(rest);
        return Split {
            password: Zeroizing::new(password.to_string()),
            code: Zeroizing::new(code.to_string()),
        };
    }
    Split {
        password: Zeroizing::new(answer.to_string()),
        code: Zeroizing::new(String::new()),
    }
}

struct Flow<'a, P: PamIo> {
    pam: &'a mut P,
    opts: &'a Options,
    silent: bool,
}

impl<P: PamIo> Flow<'_, P> {
    /// The user and the PAM items, or the code to answer with.
    fn who(&mut self) -> Result<(String, Context, String), PamCode> {
        let user = match self.pam.user() {
            Ok(u) => u,
            Err(e) => {
                self.log(Level::Err, &e.to_string());
                return Err(PamCode::UserUnknown);
            }
        };
        if !valid_user_name(&user) {
            self.log(
                Level::Notice,
                &format!("refusing user name {:?}: not a name otpgate accepts", user),
            );
            return Err(PamCode::UserUnknown);
        }
        let ctx = self.pam.context();
        let whom = describe(&user, &ctx);
        Ok((user, ctx, whom))
    }

    fn run<D: Daemon>(&mut self, daemon: &D) -> PamCode {
        let (user, ctx, whom) = match self.who() {
            Ok(w) => w,
            Err(code) => return code,
        };
        self.log(
            Level::Debug,
            &format!("{whom}: asking otpgated (Challenge)"),
        );

        let challenge = match daemon.challenge(&user, &ctx) {
            Ok(c) => c,
            Err(e) => {
                let code = self.daemon_failed(&whom, e);
                return self.pass_on(&whom, code);
            }
        };
        self.log(
            Level::Debug,
            &format!("{whom}: Challenge said {}", challenge.state),
        );
        let rule = rule_note(&challenge.rule);
        match challenge.state {
            ChallengeState::CodeRequired => {}
            ChallengeState::NotEnrolled => {
                let code = self.not_enrolled(
                    &whom,
                    challenge.policy,
                    &challenge.enroll_by,
                    &challenge.rule,
                );
                return self.pass_on(&whom, code);
            }
            ChallengeState::Locked => return self.locked(&whom, challenge.locked_until),
            ChallengeState::Skip => {
                // Stepping aside, never vouching: the rest of the stack
                // decides, as if this module were not there.
                self.log(
                    Level::Info,
                    &format!("{whom}: no second factor asked here{rule}: ignored"),
                );
                return self.pass_on(&whom, PamCode::Ignore);
            }
            ChallengeState::Remembered => {
                self.info(MSG_REMEMBERED);
                self.log(
                    Level::Info,
                    &format!("{whom}: second factor already given in this session{rule}"),
                );
                return self.pass_on(&whom, PamCode::Success);
            }
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

        // An app's code first; a user who also has e-mail may ask for a
        // mailed code instead. Not with forward_pass: its one answer is the
        // password and the code.
        let offer_mail = !self.opts.forward_pass && challenge.offers(Method::Email);
        let prompt = if offer_mail {
            mail_prompt(&self.opts.prompt)
        } else {
            self.opts.prompt.clone()
        };
        let mut answer = match self.ask(&whom, &prompt) {
            Ok(a) => a,
            Err(code) => return code,
        };
        if offer_mail && matches!(answer.trim(), "" | "m" | "M") {
            drop(answer);
            let by_mail = Context {
                method: Some(Method::Email.as_str().to_string()),
                ..ctx.clone()
            };
            self.log(Level::Info, &format!("{whom}: a code by e-mail asked for"));
            let again = match daemon.challenge(&user, &by_mail) {
                Ok(c) => c,
                Err(e) => return self.daemon_failed(&whom, e),
            };
            match again.state {
                ChallengeState::CodeRequired => {}
                ChallengeState::Locked => return self.locked(&whom, again.locked_until),
                other => {
                    self.error(MSG_BAD_REPLY);
                    self.log(
                        Level::Err,
                        &format!("{whom}: Challenge for a mailed code said {other}: refused"),
                    );
                    return PamCode::AuthErr;
                }
            }
            if let Some(m) = shown(&again.message) {
                // Where the code went, or why none did: needed to answer.
                self.pam.text_info(&m);
            }
            answer = match self.ask(&whom, &self.opts.prompt) {
                Ok(a) => a,
                Err(code) => return code,
            };
        }
        let code = if self.opts.forward_pass {
            let split = split_answer(&answer, challenge.digits);
            drop(answer);
            // Before the code is judged, so that the modules after this one
            // see the same password whatever the code was.
            if let Err(code) = self.set_authtok(&whom, &split.password) {
                return code;
            }
            split.code
        } else {
            answer
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
        if let Some(n) = shown(&verify.notice) {
            if verify.result == VerifyResult::Ok {
                // A security note (a break-glass code was used): shown
                // even under PAM_SILENT.
                self.pam.text_info(&n);
            } else {
                self.error(&n);
            }
        }
        match verify.result {
            VerifyResult::Ok => {
                let used = verify.method_used.map_or("code", MethodUsed::as_str);
                // A break-glass code is root's way in past the factor:
                // worth an administrator's attention in the log.
                let level = if verify.method_used == Some(MethodUsed::Breakglass) {
                    Level::Warning
                } else {
                    Level::Info
                };
                self.log(level, &format!("{whom}: second factor accepted ({used})"));
                if verify.method_used == Some(MethodUsed::Backup) {
                    match verify.backup_codes_left {
                        // Running out is worth saying even under PAM_SILENT.
                        Some(0) => self.pam.text_info("Backup code accepted. That was the last one: run `otpgate backup-codes` for new ones."),
                        Some(n @ 1..=2) => self.pam.text_info(&format!(
                            "Backup code accepted: only {n} left. Run `otpgate backup-codes` for new ones."
                        )),
                        Some(n) => self.info(&format!("Backup code accepted: {n} left.")),
                        None => self.info("Backup code accepted."),
                    }
                } else if let Some(m) = shown(&verify.message) {
                    self.info(&m);
                }
                if let Some(line) = failures_line(&verify) {
                    // Someone else may have been trying: shown even under
                    // PAM_SILENT, like a refusal.
                    self.pam.text_info(&line);
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
            VerifyResult::NotEnrolled => self.not_enrolled(&whom, None, "", ""),
        }
    }

    /// `policy`, `enroll_by` and `rule` are the daemon's (Challenge's);
    /// `None` is `require`, as an older daemon meant it.
    fn not_enrolled(
        &mut self,
        whom: &str,
        policy: Option<Policy>,
        enroll_by: &str,
        rule: &str,
    ) -> PamCode {
        if self.unenrolled_passes(whom, policy, enroll_by, rule) {
            PamCode::Ignore
        } else {
            self.error(MSG_NOT_ENROLLED);
            PamCode::AuthErr
        }
    }

    /// Whether an account with no second factor passes, from the policy
    /// and `nullok` (the one stack's override of `require`). Says the
    /// grace notice and logs; the caller refuses in its own words.
    fn unenrolled_passes(
        &mut self,
        whom: &str,
        policy: Option<Policy>,
        enroll_by: &str,
        rule: &str,
    ) -> bool {
        let rule = rule_note(rule);
        match policy {
            Some(Policy::Optional) | Some(Policy::Skip) => {
                self.log(
                    Level::Info,
                    &format!("{whom}: not enrolled, the policy does not require it{rule}: ignored"),
                );
                true
            }
            Some(Policy::Grace) => {
                // The user must learn of the deadline before it passes, so
                // this is shown even under PAM_SILENT.
                self.pam.text_info(&grace_line(enroll_by));
                self.log(
                    Level::Notice,
                    &format!(
                        "{whom}: not enrolled, let in until {}{rule}: ignored",
                        printable(enroll_by)
                    ),
                );
                true
            }
            Some(Policy::Require) | None if self.opts.nullok => {
                self.log(
                    Level::Info,
                    &format!(
                        "{whom}: not enrolled; the policy requires a second factor{rule}, \
                         but nullok overrides it in this stack: ignored"
                    ),
                );
                true
            }
            Some(Policy::Require) | None => {
                self.log(
                    Level::Notice,
                    &format!("{whom}: not enrolled, refused{rule}"),
                );
                false
            }
        }
    }

    /// After an answer that lets the stack go on (`Success`, `Ignore`)
    /// with `forward_pass`: the one prompt still comes, and the whole
    /// answer is the password, so that `use_first_pass` below finds one.
    fn pass_on(&mut self, whom: &str, code: PamCode) -> PamCode {
        if !self.opts.forward_pass || !matches!(code, PamCode::Success | PamCode::Ignore) {
            return code;
        }
        let password = match self.ask(whom, PASSWORD_PROMPT) {
            Ok(p) => p,
            Err(code) => return code,
        };
        match self.set_authtok(whom, &password) {
            Ok(()) => code,
            Err(failed) => failed,
        }
    }

    /// One echo-off prompt; the code to answer with if there is no answer.
    fn ask(&mut self, whom: &str, prompt: &str) -> Result<Zeroizing<String>, PamCode> {
        match self.pam.prompt_hidden(prompt) {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => {
                self.log(
                    Level::Notice,
                    &format!("{whom}: the application gave no answer"),
                );
                Err(PamCode::ConvErr)
            }
            Err(e) => {
                self.log(Level::Notice, &format!("{whom}: {e}"));
                Err(PamCode::ConvErr)
            }
        }
    }

    fn set_authtok(&mut self, whom: &str, password: &str) -> Result<(), PamCode> {
        self.pam.set_authtok(password).map_err(|e| {
            self.log(Level::Err, &format!("{whom}: {e}"));
            PamCode::ServiceErr
        })
    }

    fn account<D: Daemon>(&mut self, daemon: &D) -> PamCode {
        let (user, ctx, whom) = match self.who() {
            Ok(w) => w,
            Err(code) => return code,
        };
        self.log(Level::Debug, &format!("{whom}: asking otpgated (Account)"));
        let answer = match daemon.account(&user, &ctx) {
            Ok(a) => a,
            Err(e) => {
                return match self.daemon_failed(&whom, e) {
                    code @ (PamCode::Ignore | PamCode::UserUnknown) => code,
                    _ => PamCode::PermDenied,
                }
            }
        };
        self.log(
            Level::Debug,
            &format!("{whom}: Account said {}", answer.state),
        );
        match answer.state {
            AccountState::Ok => {
                if let Some(m) = shown(&answer.message) {
                    self.info(&m);
                }
                PamCode::Success
            }
            AccountState::NotEnrolled => {
                if self.unenrolled_passes(&whom, answer.policy, &answer.enroll_by, &answer.rule) {
                    PamCode::Ignore
                } else {
                    self.error(MSG_ACCOUNT_REQUIRES);
                    PamCode::PermDenied
                }
            }
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
            Error::Service { name, .. } if name == ERROR_UNKNOWN_METHOD => {
                (MSG_OUTDATED, PamCode::AuthinfoUnavail)
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

/// "2 failed attempts since your last login, last from 203.0.113.5 at
/// 14:02." on a success that followed wrong codes.
fn failures_line(v: &crate::client::VerifyReply) -> Option<String> {
    let n = v.failures_since;
    if n == 0 {
        return None;
    }
    let what = if n == 1 {
        "1 failed attempt".to_string()
    } else {
        format!("{n} failed attempts")
    };
    let from: String = printable(v.last_failure_from.trim())
        .chars()
        .take(64)
        .collect();
    let when = Some(v.last_failure_at)
        .filter(|&t| t != 0)
        .and_then(clock::describe_until);
    let last = match (from.is_empty(), when) {
        (false, Some(w)) => format!(", last from {from} at {w}"),
        (false, None) => format!(", last from {from}"),
        (true, Some(w)) => format!(", last at {w}"),
        (true, None) => String::new(),
    };
    Some(format!("{what} since your last login{last}."))
}

/// The prompt when a code by e-mail may be asked for instead:
/// "Verification code: " becomes "Verification code (or m for a code by
/// e-mail): ".
fn mail_prompt(prompt: &str) -> String {
    let base = prompt.trim_end();
    let base = base.strip_suffix(':').unwrap_or(base).trim_end();
    format!("{base} (or m for a code by e-mail): ")
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

/// " (rule …)" for a log line, or nothing.
fn rule_note(rule: &str) -> String {
    match shown(rule) {
        Some(r) => format!(" (rule {r})"),
        None => String::new(),
    }
}

/// The notice of an account let in without a second factor until a day.
fn grace_line(enroll_by: &str) -> String {
    if is_date(enroll_by) {
        format!(
            "No second factor is set up for this account: run `otpgate enroll` before the end of {enroll_by}; after that day this login is refused."
        )
    } else {
        "No second factor is set up for this account: run `otpgate enroll` soon; this login will be refused without one.".to_string()
    }
}

/// `YYYY-MM-DD` in shape: anything else from the daemon is not shown.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
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

    #[test]
    fn a_success_after_wrong_codes_says_how_many_and_from_where() {
        let mut v = VerifyReply::plain(VerifyResult::Ok, "");
        assert_eq!(failures_line(&v), None);
        v.failures_since = 2;
        v.last_failure_from = "203.0.113.5".into();
        let line = failures_line(&v).unwrap();
        assert_eq!(
            line,
            "2 failed attempts since your last login, last from 203.0.113.5."
        );
        v.failures_since = 1;
        v.last_failure_from = String::new();
        v.last_failure_at = 1_800_000_000;
        let line = failures_line(&v).unwrap();
        assert!(
            line.starts_with("1 failed attempt since your last login, last at "),
            "{line}"
        );
        // A hostile remote host name cannot break the line.
        v.last_failure_from = "evil\nhost".into();
        assert!(!failures_line(&v).unwrap().contains('\n'));
    }
    use crate::client::{AccountReply, ChallengeReply, VerifyReply};

    #[derive(Default)]
    struct FakePam {
        user: Option<String>,
        answer: Option<&'static str>,
        /// Answers given before `answer`, in order.
        first: Vec<&'static str>,
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
                method: None,
            }
        }
        fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Zeroizing<String>>, Error> {
            self.prompts.push(prompt.to_string());
            if self.conv_fails {
                return Err(Error::Conversation("fails".into()));
            }
            if !self.first.is_empty() {
                return Ok(Some(Zeroizing::new(self.first.remove(0).to_string())));
            }
            Ok(self.answer.map(|a| Zeroizing::new(a.to_string())))
        }
        fn error_msg(&mut self, text: &str) {
            self.errors.push(text.to_string());
        }
        fn text_info(&mut self, text: &str) {
            self.infos.push(text.to_string());
        }
        fn set_authtok(&mut self, _: &str) -> Result<(), Error> {
            panic!("PAM_AUTHTOK is set only with forward_pass")
        }
        fn log(&mut self, level: Level, text: &str) {
            self.logs.push((level, text.to_string()));
        }
    }

    type Answer<T> = fn() -> Result<T, Error>;

    struct FakeDaemon {
        challenge: Answer<ChallengeReply>,
        verify: Answer<VerifyReply>,
        account: Answer<AccountReply>,
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
        fn account(&self, _user: &str, _ctx: &Context) -> Result<AccountReply, Error> {
            (self.account)()
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
            account: || panic!("no Account"),
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

    /// An app user who also has e-mail: Challenge offers it; a second
    /// Challenge with `method` = `email` mails the code.
    struct MailToo {
        asked: RefCell<Vec<Option<String>>>,
        codes: RefCell<Vec<String>>,
    }

    impl Daemon for MailToo {
        fn challenge(&self, _: &str, ctx: &Context) -> Result<ChallengeReply, Error> {
            self.asked.borrow_mut().push(ctx.method.clone());
            Ok(match ctx.method.as_deref() {
                Some("email") => ChallengeReply {
                    method: Some(otpgate_proto::Method::Email),
                    digits: 6,
                    message: "A code was sent to a***@example.org.".into(),
                    ..ChallengeReply::plain(ChallengeState::CodeRequired, "")
                },
                _ => ChallengeReply {
                    method: Some(otpgate_proto::Method::Totp),
                    digits: 6,
                    alternatives: "email".into(),
                    ..ChallengeReply::plain(ChallengeState::CodeRequired, "")
                },
            })
        }
        fn verify(&self, _: &str, code: &str, _: &Context) -> Result<VerifyReply, Error> {
            self.codes.borrow_mut().push(code.to_string());
            Ok(VerifyReply {
                method_used: Some(MethodUsed::Email),
                ..VerifyReply::plain(VerifyResult::Ok, "")
            })
        }
        fn account(&self, _: &str, _: &Context) -> Result<AccountReply, Error> {
            panic!("no Account")
        }
    }

    fn mail_too() -> MailToo {
        MailToo {
            asked: RefCell::new(Vec::new()),
            codes: RefCell::new(Vec::new()),
        }
    }

    #[test]
    fn an_app_user_with_email_too_may_ask_for_a_mailed_code() {
        let (opts, _) = Options::parse::<&str>(&[]);
        for first in ["m", "", " M\n"] {
            let d = mail_too();
            let mut pam = FakePam {
                first: vec![first],
                ..FakePam::new(Some("654321"))
            };
            assert_eq!(authenticate(&mut pam, &d, &opts, true), PamCode::Success);
            assert_eq!(
                pam.prompts,
                [
                    "Verification code (or m for a code by e-mail): ",
                    "Verification code: "
                ]
            );
            assert_eq!(*d.asked.borrow(), [None, Some("email".to_string())]);
            // Where it went is needed to answer: shown under PAM_SILENT too.
            assert_eq!(pam.infos, ["A code was sent to a***@example.org."]);
            assert_eq!(*d.codes.borrow(), ["654321"]);
        }
        // A code from the app (or a backup code) is taken at once.
        let d = mail_too();
        let mut pam = FakePam::new(Some("123456"));
        assert_eq!(authenticate(&mut pam, &d, &opts, false), PamCode::Success);
        assert_eq!(pam.prompts.len(), 1);
        assert_eq!(*d.asked.borrow(), [None]);
        // A prompt= of one's own gets the offer too.
        let d = mail_too();
        let mut pam = FakePam::new(Some("123456"));
        let (own, _) = Options::parse(&["prompt=OTP:"]);
        assert_eq!(authenticate(&mut pam, &d, &own, false), PamCode::Success);
        assert_eq!(pam.prompts, ["OTP (or m for a code by e-mail): "]);
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

#[cfg(test)]
mod policy_tests {
    //! The policy's states, `forward_pass` and the account phase.

    use std::cell::RefCell;

    use super::*;
    use crate::client::{AccountReply, ChallengeReply, VerifyReply};

    #[derive(Default)]
    struct Host {
        answer: Option<&'static str>,
        authtok_fails: bool,
        authtoks: Vec<String>,
        prompts: Vec<String>,
        errors: Vec<String>,
        infos: Vec<String>,
        logs: Vec<(Level, String)>,
    }

    impl Host {
        fn new(answer: Option<&'static str>) -> Host {
            Host {
                answer,
                ..Host::default()
            }
        }

        fn logged(&self, level: Level, part: &str) -> bool {
            self.logs
                .iter()
                .any(|(l, t)| *l == level && t.contains(part))
        }
    }

    impl PamIo for Host {
        fn user(&mut self) -> Result<String, Error> {
            Ok("alice".into())
        }
        fn context(&mut self) -> Context {
            Context {
                service: Some("sshd".into()),
                ..Context::default()
            }
        }
        fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Zeroizing<String>>, Error> {
            self.prompts.push(prompt.to_string());
            Ok(self.answer.map(|a| Zeroizing::new(a.to_string())))
        }
        fn error_msg(&mut self, text: &str) {
            self.errors.push(text.to_string());
        }
        fn text_info(&mut self, text: &str) {
            self.infos.push(text.to_string());
        }
        fn set_authtok(&mut self, password: &str) -> Result<(), Error> {
            if self.authtok_fails {
                return Err(Error::Item("PAM_BUF_ERR".into()));
            }
            self.authtoks.push(password.to_string());
            Ok(())
        }
        fn log(&mut self, level: Level, text: &str) {
            self.logs.push((level, text.to_string()));
        }
    }

    /// Answers as scripted; a call that is not scripted fails the test.
    #[derive(Default)]
    struct Scripted {
        challenge: Option<ChallengeReply>,
        verify: Option<VerifyReply>,
        account: Option<Result<AccountReply, fn() -> Error>>,
        codes: RefCell<Vec<String>>,
    }

    impl Daemon for Scripted {
        fn challenge(&self, _: &str, _: &Context) -> Result<ChallengeReply, Error> {
            Ok(self.challenge.clone().expect("no Challenge expected"))
        }
        fn verify(&self, _: &str, code: &str, _: &Context) -> Result<VerifyReply, Error> {
            self.codes.borrow_mut().push(code.to_string());
            Ok(self.verify.clone().expect("no Verify expected"))
        }
        fn account(&self, _: &str, _: &Context) -> Result<AccountReply, Error> {
            match self.account.clone().expect("no Account expected") {
                Ok(a) => Ok(a),
                Err(e) => Err(e()),
            }
        }
    }

    fn challenge(state: ChallengeState) -> Scripted {
        Scripted {
            challenge: Some(ChallengeReply::plain(state, "")),
            ..Scripted::default()
        }
    }

    fn unenrolled(policy: Option<Policy>) -> Scripted {
        Scripted {
            challenge: Some(ChallengeReply {
                policy,
                enroll_by: "2027-01-31".into(),
                rule: "policy[2]".into(),
                ..ChallengeReply::plain(ChallengeState::NotEnrolled, "")
            }),
            ..Scripted::default()
        }
    }

    fn code_then(verify: VerifyReply) -> Scripted {
        Scripted {
            challenge: Some(ChallengeReply::plain(ChallengeState::CodeRequired, "")),
            verify: Some(verify),
            ..Scripted::default()
        }
    }

    fn auth(host: &mut Host, d: &Scripted, args: &[&str], silent: bool) -> PamCode {
        let (opts, w) = Options::parse(args);
        assert!(w.is_empty(), "{w:?}");
        authenticate(host, d, &opts, silent)
    }

    fn acct(host: &mut Host, d: &Scripted, args: &[&str], silent: bool) -> PamCode {
        let (opts, w) = Options::parse(args);
        assert!(w.is_empty(), "{w:?}");
        account(host, d, &opts, silent)
    }

    const GRACE_LINE: &str = "No second factor is set up for this account: run `otpgate enroll` before the end of 2027-01-31; after that day this login is refused.";

    fn split(answer: &str, digits: u32) -> (String, String) {
        let s = split_answer(answer, digits);
        (s.password.to_string(), s.code.to_string())
    }

    fn pair(p: &str, c: &str) -> (String, String) {
        (p.to_string(), c.to_string())
    }

    #[test]
    fn split_takes_the_code_from_the_end() {
        // Digits, with and without a separator.
        assert_eq!(split("hunter2123456", 0), pair("hunter2", "123456"));
        assert_eq!(split("hunter2 123456", 0), pair("hunter2", "123456"));
        assert_eq!(split("hunter2 123456", 6), pair("hunter2", "123456"));
        // Only one space is a separator: a password ending in a space
        // is typed with one more.
        assert_eq!(split("pass  123456", 0), pair("pass ", "123456"));
        // A password that ends in digits keeps them.
        assert_eq!(split("pw2024 123456", 0), pair("pw2024", "123456"));
        assert_eq!(split("pw2024123456", 0), pair("pw2024", "123456"));
        // The code's length is the daemon's.
        assert_eq!(split("pw12345678", 8), pair("pw", "12345678"));
        assert_eq!(split("pw 12345678", 6), pair("pw 12", "345678"));
        // The code alone leaves an empty password.
        assert_eq!(split("123456", 0), pair("", "123456"));
        // Spaces inside the password stay.
        assert_eq!(
            split(" my pass phrase 123456", 0),
            pair(" my pass phrase", "123456")
        );
        // Non-ASCII passwords are split on characters, not bytes.
        assert_eq!(split("pässwört123456", 0), pair("pässwört", "123456"));
    }

    #[test]
    fn split_takes_a_backup_code_after_the_last_space() {
        assert_eq!(
            split("hunter2 abcd-efgh-jk", 0),
            pair("hunter2", "abcd-efgh-jk")
        );
        assert_eq!(
            split("hunter2 ABCDEFGHJK", 0),
            pair("hunter2", "ABCDEFGHJK")
        );
        assert_eq!(split("a b c 0123456789", 0), pair("a b c", "0123456789"));
        // Not the alphabet (i, l, o, u), not 10 characters, no space: no
        // backup code, so the rules for digits or none apply.
        assert_eq!(split("pw abcdefghil", 0), pair("pw abcdefghil", ""));
        assert_eq!(split("pw abcdefghj", 0), pair("pw abcdefghj", ""));
        assert_eq!(split("pwabcdefghjk", 0), pair("pwabcdefghjk", ""));
        assert_eq!(split("pw abcde-fghjkm", 0), pair("pw abcde-fghjkm", ""));
    }

    #[test]
    fn split_without_a_code_keeps_the_whole_answer_as_the_password() {
        assert_eq!(split("hunter2", 0), pair("hunter2", ""));
        assert_eq!(split("12345", 0), pair("12345", ""));
        assert_eq!(split("", 0), pair("", ""));
        assert_eq!(split("trailing ", 0), pair("trailing ", ""));
        assert_eq!(split("pw 12345x", 0), pair("pw 12345x", ""));
    }

    #[test]
    fn skip_steps_aside_without_a_prompt() {
        let d = Scripted {
            challenge: Some(ChallengeReply {
                rule: "policy[1]".into(),
                ..ChallengeReply::plain(ChallengeState::Skip, "")
            }),
            ..Scripted::default()
        };
        let mut h = Host::new(Some("123456"));
        assert_eq!(auth(&mut h, &d, &[], false), PamCode::Ignore);
        assert!(h.prompts.is_empty() && h.errors.is_empty() && h.infos.is_empty());
        assert!(h.logged(Level::Info, "(rule policy[1])"), "{:?}", h.logs);
    }

    #[test]
    fn remembered_succeeds_without_a_prompt_and_says_so_unless_silent() {
        let d = challenge(ChallengeState::Remembered);
        let mut h = Host::new(Some("123456"));
        assert_eq!(auth(&mut h, &d, &[], false), PamCode::Success);
        assert!(h.prompts.is_empty() && h.errors.is_empty());
        assert_eq!(h.infos, [MSG_REMEMBERED]);
        assert!(h.logged(Level::Info, "already given"));

        let mut h = Host::new(Some("123456"));
        assert_eq!(auth(&mut h, &d, &[], true), PamCode::Success);
        assert!(h.infos.is_empty());
    }

    #[test]
    fn not_enrolled_follows_the_policy_and_nullok_overrides_only_require() {
        for silent in [false, true] {
            let mut h = Host::new(None);
            let d = unenrolled(Some(Policy::Optional));
            assert_eq!(auth(&mut h, &d, &[], silent), PamCode::Ignore);
            assert!(h.prompts.is_empty() && h.errors.is_empty() && h.infos.is_empty());

            // The date is shown even under PAM_SILENT.
            let mut h = Host::new(None);
            let d = unenrolled(Some(Policy::Grace));
            assert_eq!(auth(&mut h, &d, &[], silent), PamCode::Ignore);
            assert_eq!(h.infos, [GRACE_LINE]);
            assert!(h.errors.is_empty());

            for policy in [Some(Policy::Require), None] {
                let d = unenrolled(policy);
                let mut h = Host::new(None);
                assert_eq!(auth(&mut h, &d, &[], silent), PamCode::AuthErr);
                assert_eq!(h.errors, [MSG_NOT_ENROLLED]);
                let mut h = Host::new(None);
                assert_eq!(auth(&mut h, &d, &["nullok"], silent), PamCode::Ignore);
                assert!(h.errors.is_empty());
                assert!(h.logged(Level::Info, "nullok overrides"), "{:?}", h.logs);
            }
        }
    }

    #[test]
    fn a_grace_date_that_is_not_one_is_not_shown() {
        let d = Scripted {
            challenge: Some(ChallengeReply {
                policy: Some(Policy::Grace),
                enroll_by: "\x1b[2Jsoon".into(),
                ..ChallengeReply::plain(ChallengeState::NotEnrolled, "")
            }),
            ..Scripted::default()
        };
        let mut h = Host::new(None);
        assert_eq!(auth(&mut h, &d, &[], true), PamCode::Ignore);
        assert_eq!(h.infos.len(), 1);
        assert!(!h.infos[0].contains('\x1b') && h.infos[0].contains("otpgate enroll"));
    }

    #[test]
    fn a_notice_with_ok_is_shown_even_under_silent_and_breakglass_is_a_warning() {
        let d = code_then(VerifyReply {
            method_used: Some(MethodUsed::Breakglass),
            notice: "A break-glass code was used on tty1.".into(),
            ..VerifyReply::plain(VerifyResult::Ok, "")
        });
        let mut h = Host::new(Some("abcd-efgh-jk"));
        assert_eq!(auth(&mut h, &d, &[], true), PamCode::Success);
        assert_eq!(h.infos, ["A break-glass code was used on tty1."]);
        assert!(h.errors.is_empty());
        assert!(
            h.logged(Level::Warning, "accepted (breakglass)"),
            "{:?}",
            h.logs
        );

        let d = code_then(VerifyReply {
            method_used: Some(MethodUsed::Totp),
            ..VerifyReply::plain(VerifyResult::Ok, "")
        });
        let mut h = Host::new(Some("123456"));
        assert_eq!(auth(&mut h, &d, &[], false), PamCode::Success);
        assert!(h.logged(Level::Info, "accepted (totp)"));
    }

    #[test]
    fn forward_pass_splits_one_answer_and_hands_the_password_on() {
        let d = code_then(VerifyReply::plain(VerifyResult::Ok, ""));
        let mut h = Host::new(Some("hunter2 123456"));
        assert_eq!(auth(&mut h, &d, &["forward_pass"], false), PamCode::Success);
        assert_eq!(h.prompts, ["Password and verification code: "]);
        assert_eq!(h.authtoks, ["hunter2"]);
        assert_eq!(*d.codes.borrow(), ["123456"]);
        assert!(h.logs.iter().all(|(_, l)| !l.contains("hunter2")));

        // The daemon's code length.
        let d = Scripted {
            challenge: Some(ChallengeReply {
                digits: 8,
                ..ChallengeReply::plain(ChallengeState::CodeRequired, "")
            }),
            verify: Some(VerifyReply::plain(VerifyResult::Ok, "")),
            ..Scripted::default()
        };
        let mut h = Host::new(Some("pw12345678"));
        assert_eq!(
            auth(&mut h, &d, &["forward_pass", "prompt=PW+OTP: "], false),
            PamCode::Success
        );
        assert_eq!(h.prompts, ["PW+OTP: "]);
        assert_eq!(h.authtoks, ["pw"]);
        assert_eq!(*d.codes.borrow(), ["12345678"]);

        // No e-mail alternative is offered: the one answer is password
        // and code (Scripted answers one Challenge only).
        let d = Scripted {
            challenge: Some(ChallengeReply {
                digits: 6,
                alternatives: "email".into(),
                ..ChallengeReply::plain(ChallengeState::CodeRequired, "")
            }),
            verify: Some(VerifyReply::plain(VerifyResult::Ok, "")),
            ..Scripted::default()
        };
        let mut h = Host::new(Some("m 123456"));
        assert_eq!(auth(&mut h, &d, &["forward_pass"], false), PamCode::Success);
        assert_eq!(h.prompts, ["Password and verification code: "]);
        assert_eq!(h.authtoks, ["m"]);
    }

    #[test]
    fn forward_pass_hands_the_password_on_even_when_the_code_is_wrong_or_missing() {
        let d = code_then(VerifyReply::plain(VerifyResult::Invalid, ""));
        let mut h = Host::new(Some("hunter2000000"));
        assert_eq!(auth(&mut h, &d, &["forward_pass"], false), PamCode::AuthErr);
        assert_eq!(h.authtoks, ["hunter2"]);
        assert_eq!(h.errors, ["Wrong code."]);

        let d = code_then(VerifyReply::plain(VerifyResult::Ok, ""));
        let mut h = Host::new(Some("hunter2"));
        assert_eq!(auth(&mut h, &d, &["forward_pass"], false), PamCode::AuthErr);
        assert_eq!(h.authtoks, ["hunter2"]);
        assert_eq!(h.errors, [MSG_NO_CODE]);
        assert!(d.codes.borrow().is_empty());
    }

    #[test]
    fn forward_pass_asks_for_the_password_alone_where_no_code_is_needed() {
        let passing = [
            (
                challenge(ChallengeState::Skip),
                &["forward_pass"][..],
                PamCode::Ignore,
            ),
            (
                challenge(ChallengeState::Remembered),
                &["forward_pass"][..],
                PamCode::Success,
            ),
            (
                unenrolled(Some(Policy::Optional)),
                &["forward_pass"][..],
                PamCode::Ignore,
            ),
            (
                unenrolled(Some(Policy::Grace)),
                &["forward_pass"][..],
                PamCode::Ignore,
            ),
            (
                unenrolled(None),
                &["forward_pass", "nullok"][..],
                PamCode::Ignore,
            ),
        ];
        for (d, args, code) in passing {
            // The whole answer, digits and spaces too, is the password.
            let mut h = Host::new(Some("pass word 123456"));
            assert_eq!(auth(&mut h, &d, args, false), code);
            assert_eq!(h.prompts, [PASSWORD_PROMPT]);
            assert_eq!(h.authtoks, ["pass word 123456"]);
        }
        // No answer: a conversation error, nothing set.
        let mut h = Host::new(None);
        let d = challenge(ChallengeState::Skip);
        assert_eq!(auth(&mut h, &d, &["forward_pass"], false), PamCode::ConvErr);
        assert!(h.authtoks.is_empty());
        // PAM refusing the item.
        let mut h = Host::new(Some("pw"));
        h.authtok_fails = true;
        assert_eq!(
            auth(&mut h, &d, &["forward_pass"], false),
            PamCode::ServiceErr
        );
    }

    #[test]
    fn forward_pass_does_not_prompt_where_the_login_is_refused_anyway() {
        let locked = Scripted {
            challenge: Some(ChallengeReply::plain(ChallengeState::Locked, "")),
            ..Scripted::default()
        };
        let mut h = Host::new(Some("pw 123456"));
        assert_eq!(
            auth(&mut h, &locked, &["forward_pass"], false),
            PamCode::MaxTries
        );
        assert!(h.prompts.is_empty() && h.authtoks.is_empty());

        let mut h = Host::new(Some("pw 123456"));
        let d = unenrolled(None);
        assert_eq!(auth(&mut h, &d, &["forward_pass"], false), PamCode::AuthErr);
        assert!(h.prompts.is_empty() && h.authtoks.is_empty());
        assert_eq!(h.errors, [MSG_NOT_ENROLLED]);
    }

    #[test]
    fn forward_pass_with_an_absent_daemon_and_failmode_open_still_hands_the_password_on() {
        struct Absent;
        impl Daemon for Absent {
            fn challenge(&self, _: &str, _: &Context) -> Result<ChallengeReply, Error> {
                Err(Error::NotRunning("no owner".into()))
            }
            fn verify(&self, _: &str, _: &str, _: &Context) -> Result<VerifyReply, Error> {
                unreachable!()
            }
            fn account(&self, _: &str, _: &Context) -> Result<AccountReply, Error> {
                Err(Error::NotRunning("no owner".into()))
            }
        }
        let (opts, _) = Options::parse(&["forward_pass", "failmode=open"]);
        let mut h = Host::new(Some("pw"));
        assert_eq!(authenticate(&mut h, &Absent, &opts, false), PamCode::Ignore);
        assert_eq!(h.authtoks, ["pw"]);
        let (opts, _) = Options::parse(&["forward_pass"]);
        let mut h = Host::new(Some("pw"));
        assert_eq!(
            authenticate(&mut h, &Absent, &opts, false),
            PamCode::AuthinfoUnavail
        );
        assert!(h.prompts.is_empty());

        // The account phase: absence is the only thing failmode=open lets by.
        let (opts, _) = Options::parse(&["failmode=open"]);
        let mut h = Host::new(None);
        assert_eq!(account(&mut h, &Absent, &opts, false), PamCode::Ignore);
        let (opts, _) = Options::parse::<&str>(&[]);
        let mut h = Host::new(None);
        assert_eq!(account(&mut h, &Absent, &opts, false), PamCode::PermDenied);
        assert_eq!(h.errors, [MSG_UNAVAILABLE]);
    }

    fn account_says(state: AccountState, policy: Option<Policy>) -> Scripted {
        Scripted {
            account: Some(Ok(AccountReply {
                state,
                policy,
                enroll_by: "2027-01-31".into(),
                rule: "policy[0]".into(),
                message: String::new(),
            })),
            ..Scripted::default()
        }
    }

    #[test]
    fn account_maps_the_policy() {
        let mut h = Host::new(None);
        let d = account_says(AccountState::Ok, None);
        assert_eq!(acct(&mut h, &d, &[], false), PamCode::Success);
        assert!(h.prompts.is_empty() && h.errors.is_empty());

        let mut h = Host::new(None);
        let d = account_says(AccountState::NotEnrolled, Some(Policy::Optional));
        assert_eq!(acct(&mut h, &d, &[], false), PamCode::Ignore);
        assert!(h.infos.is_empty());

        let mut h = Host::new(None);
        let d = account_says(AccountState::NotEnrolled, Some(Policy::Grace));
        assert_eq!(acct(&mut h, &d, &[], true), PamCode::Ignore);
        assert_eq!(h.infos, [GRACE_LINE]);

        for policy in [Some(Policy::Require), None] {
            let d = account_says(AccountState::NotEnrolled, policy);
            let mut h = Host::new(None);
            assert_eq!(acct(&mut h, &d, &[], true), PamCode::PermDenied);
            assert_eq!(h.errors, [MSG_ACCOUNT_REQUIRES]);
            let mut h = Host::new(None);
            assert_eq!(acct(&mut h, &d, &["nullok"], false), PamCode::Ignore);
            assert!(h.errors.is_empty());
        }
    }

    #[test]
    fn account_refuses_whatever_else_goes_wrong() {
        type MakeError = fn() -> Error;
        let cases: [(MakeError, PamCode, &str); 5] = [
            (
                || Error::TimedOut(std::time::Duration::from_secs(5)),
                PamCode::PermDenied,
                MSG_TIMED_OUT,
            ),
            (
                || Error::BadReply("unknown Account state".into()),
                PamCode::PermDenied,
                MSG_BAD_REPLY,
            ),
            (
                || Error::NotRoot(1000),
                PamCode::PermDenied,
                MSG_NOT_TRUSTED,
            ),
            (
                || Error::Service {
                    name: "org.freedesktop.DBus.Error.UnknownMethod".into(),
                    message: "no Account".into(),
                },
                PamCode::PermDenied,
                MSG_OUTDATED,
            ),
            (
                || Error::Service {
                    name: "org.otpgate.Otpgate1.Error.InvalidUser".into(),
                    message: "no such user".into(),
                },
                PamCode::UserUnknown,
                MSG_UNKNOWN_USER,
            ),
        ];
        for (err, code, line) in cases {
            let d = Scripted {
                account: Some(Err(err)),
                ..Scripted::default()
            };
            let mut h = Host::new(None);
            assert_eq!(acct(&mut h, &d, &["failmode=open", "nullok"], false), code);
            assert_eq!(h.errors, [line]);
        }
    }
}
