//! Re-authentication before a destructive change to one's own second
//! factor (`[self_service] reauth`): with "password+code", a user who is
//! not an administrator proves the account's password as well as a code
//! to disable the second factor, replace the backup codes or remove a
//! device.
//!
//! The hook for every such call is two steps:
//!
//! 1. before the transaction, [`Engine::reauthenticate`] (async: it runs
//!    PAM on the blocking pool) says whether a password was asked for and
//!    whether it was right, or refuses the call (no password given, the
//!    account locked, PAM unusable);
//! 2. inside the transaction, the decision hands that [`Reauth`] to
//!    `prove` (`manage.rs`), which calls [`admit`] before it checks the
//!    code and [`uniform`] on its refusal.
//!
//! A wrong password is counted like a wrong code, in the same
//! transaction: the same failure count, the same lock. The code is then
//! not checked at all (a TOTP step is not used up by a call that failed on
//! its password), and the answer does not say which of the two was wrong.
//!
//! The password is checked by the host's PAM stack under the service
//! `[self_service] pam_service` (`/etc/pam.d/otpgate-reauth` as shipped:
//! pam_unix only, never pam_otpgate, which would ask this daemon back).
//! It is held in `Zeroizing` buffers, handed to PAM once through the
//! conversation, and never logged.

use std::ffi::{CStr, CString};
use std::sync::Arc;

use otpgate_proto::ServiceError;
use pam_client::{ConversationHandler, ErrorCode, Flag};
use zeroize::Zeroizing;

use super::{Context, Decided, Engine, Env, Event};
use crate::accounts::Account;
use crate::audit::Level;
use crate::authz::Caller;
use crate::config::ReauthMode;
use crate::lockout::lock_duration;
use crate::record::UserRecord;
use crate::store::Write;

/// The account's password as it came over the bus, kept wiped.
pub(crate) type Password = Zeroizing<String>;

/// Where libpam looks services up.
const PAM_DIR: &str = "/etc/pam.d";

/// What [`Engine::reauthenticate`] found, for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reauth {
    /// No password was asked for: "code" mode, or an administrator.
    NotAsked,
    /// PAM accepted the password and the account.
    Passed,
    /// PAM refused the password: counted like a wrong code.
    WrongPassword,
}

/// Step 2a, inside the transaction, before the code is checked: a wrong
/// password is a failure of the second factor's count (and may lock it);
/// a lock refuses. `Ok` hands the record on to the code's check.
// The refusal is a whole decision, made once per call: not worth a box.
#[allow(clippy::result_large_err)]
pub(crate) fn admit<T>(
    mut rec: UserRecord,
    reauth: Reauth,
    env: &Env,
) -> Result<UserRecord, Decided<T>> {
    if reauth != Reauth::WrongPassword {
        // A right password (or none asked for): the code decides, and
        // its check refuses a locked account.
        return Ok(rec);
    }
    let now = env.now;
    let cfg = &env.config.lockout;
    let mut changed = false;
    if rec.locked_until != 0 && rec.locked_until <= now {
        // The lock ran out: a fresh set of tries (the streak stays).
        rec.locked_until = 0;
        rec.failures = 0;
        changed = true;
    }
    if rec.locked_until > now {
        let until = rec.locked_until;
        return Err(Decided {
            write: if changed {
                Write::Put(rec)
            } else {
                Write::Keep
            },
            answer: Err(locked(until)),
            events: vec![Event {
                throttle: Some(format!("locked:{}", env.account.name)),
                ..Event::new(Level::Notice, "verify-locked", "")
            }],
        });
    }
    rec.failures = rec.failures.saturating_add(1);
    rec.today(now).failures += 1;
    rec.note(now, "failure", env.ctx, "wrong password".to_owned());
    let mut events = vec![Event::new(
        Level::Notice,
        "reauth-failed",
        format!("reason=password failures={}", rec.failures),
    )];
    let answer = if rec.failures >= cfg.max_failures {
        rec.lock_streak = rec.lock_streak.saturating_add(1);
        rec.locked_until = now + lock_duration(cfg, rec.lock_streak);
        rec.today(now).lockouts += 1;
        let until = rec.locked_until;
        rec.note(now, "locked", env.ctx, format!("for {} s", until - now));
        events.push(Event::new(
            Level::Warning,
            "locked",
            format!("until={until} streak={}", rec.lock_streak),
        ));
        locked(until)
    } else {
        wrong(cfg.max_failures.saturating_sub(rec.failures))
    };
    Err(Decided::put(rec, Err(answer), events))
}

/// Step 2b, on the code check's refusal: when a password was checked, a
/// wrong code reads like a wrong password, so the answer is no oracle for
/// the password. `attempts_left` is read back from the message's count.
pub(crate) fn uniform<T>(refused: Decided<T>, reauth: Reauth, env: &Env) -> Decided<T> {
    match (reauth, &refused.answer) {
        (Reauth::Passed, Err(ServiceError::InvalidCode(_))) => {
            let left = match &refused.write {
                Write::Put(r) => env.config.lockout.max_failures.saturating_sub(r.failures),
                _ => env.config.lockout.max_failures,
            };
            Decided {
                answer: Err(wrong(left)),
                ..refused
            }
        }
        _ => refused,
    }
}

fn wrong(left: u32) -> ServiceError {
    ServiceError::InvalidCode(format!("Wrong password or code. {left} attempts left."))
}

fn locked(until: u64) -> ServiceError {
    ServiceError::Locked(format!(
        "too many wrong codes: locked until {until} (unix time)"
    ))
}

impl Engine {
    /// Step 1, before the transaction: whether this call must prove the
    /// password, and if so whether PAM accepts it. `admin` is the same
    /// flag that spares an administrator the code, `code` the code the
    /// call brought (only whether it is empty is looked at). Refuses, without
    /// counting anything, a call that must prove it and brought none
    /// (`PasswordRequired`: the client asks and calls the `...WithPassword`
    /// method), and a locked account (PAM is not asked then). A password
    /// given where none is needed is wiped unread.
    pub(crate) async fn reauthenticate(
        self: &Arc<Self>,
        caller: &Caller,
        account: &Account,
        admin: bool,
        code: &str,
        password: Option<Password>,
    ) -> Result<Reauth, ServiceError> {
        if admin || self.config.self_service.reauth == ReauthMode::Code {
            return Ok(Reauth::NotAsked);
        }
        if code.is_empty() {
            // Said before the password is asked for (or tried): without a
            // code the call cannot succeed anyway.
            return Err(ServiceError::InvalidCode(
                "a current code (or a backup code) is required: pass --code".into(),
            ));
        }
        let Some(password) = password else {
            return Err(ServiceError::PasswordRequired(format!(
                "{} must give the account's password as well as a code for this",
                account.name
            )));
        };
        let locked_until = self
            .transact_read_first(account, &Context::default(), caller.uid, |rec, env| {
                let until = rec.map_or(0, |r| r.locked_until);
                Decided::keep(Ok(if until > env.now { until } else { 0 }))
            })
            .await?;
        if locked_until != 0 {
            return Err(locked(locked_until));
        }
        let service = self.config.self_service.pam_service.clone();
        let user = account.name.clone();
        let checked = self
            .blocking(move || pam_check(&service, &user, password))
            .await?;
        match checked {
            Ok(true) => Ok(Reauth::Passed),
            Ok(false) => Ok(Reauth::WrongPassword),
            Err(e) => {
                self.audit().event(
                    Level::Error,
                    "reauth-unavailable",
                    &account.name,
                    &Context::default(),
                    caller.uid,
                    &format!("error=\"{}\"", crate::audit::clean(e.message())),
                );
                Err(e)
            }
        }
    }
}

/// Answers the first password prompt with the password, once; refuses
/// every other prompt (the service should ask for nothing else: a module
/// asking for a code means pam_otpgate is in it).
struct OnePassword {
    password: Option<Password>,
}

impl ConversationHandler for OnePassword {
    fn prompt_echo_on(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        Err(ErrorCode::CONV_ERR)
    }

    fn prompt_echo_off(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        let password = self.password.take().ok_or(ErrorCode::CONV_ERR)?;
        // pam-client copies this into the malloc'd reply libpam frees (and
        // pam_unix wipes); the CString's own bytes are freed unwiped, like
        // the bus message that brought the password (see security.md).
        let bytes = Zeroizing::new(password.as_bytes().to_vec());
        CString::new(bytes.to_vec()).map_err(|_| ErrorCode::CONV_ERR)
    }

    fn text_info(&mut self, _msg: &CStr) {}

    fn error_msg(&mut self, _msg: &CStr) {}
}

/// Runs `service`'s auth and account stacks for `user` with `password`.
/// `Ok(false)`: the password (or the user) was refused, which counts;
/// `Err`: PAM itself could not be used, which does not.
fn pam_check(service: &str, user: &str, password: Password) -> Result<bool, ServiceError> {
    // Without its file libpam would use /etc/pam.d/other, which on Debian
    // includes common-auth, and so perhaps pam_otpgate.
    let path = std::path::Path::new(PAM_DIR).join(service);
    if !path.is_file() {
        return Err(ServiceError::Unavailable(format!(
            "the password cannot be checked: {} is missing (see [self_service] pam_service)",
            path.display()
        )));
    }
    if password.contains('\0') {
        return Ok(false);
    }
    let conv = OnePassword {
        password: Some(password),
    };
    let unusable = |e: pam_client::Error| {
        ServiceError::Unavailable(format!(
            "the password cannot be checked: PAM service {service}: {e}"
        ))
    };
    let mut pam = pam_client::Context::new(service, Some(user), conv).map_err(unusable)?;
    match pam.authenticate(Flag::SILENT | Flag::DISALLOW_NULL_AUTHTOK) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::AUTH_ERR
                    | ErrorCode::USER_UNKNOWN
                    | ErrorCode::MAXTRIES
                    | ErrorCode::CRED_INSUFFICIENT
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(unusable(e)),
    }
    match pam.acct_mgmt(Flag::SILENT | Flag::DISALLOW_NULL_AUTHTOK) {
        Ok(()) => Ok(true),
        Err(e) => Err(ServiceError::AccessDenied(format!(
            "the password is right but PAM refuses the account ({e}): \
             an expired password or account must be renewed first"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::crypto::MasterKey;

    fn with_env<R>(f: impl FnOnce(&Env) -> R) -> R {
        let config = Config::default();
        let key = MasterKey::from_bytes([7; 32]);
        let account = Account {
            uid: 1000,
            name: "alice".into(),
        };
        let ctx = Context::default();
        let env = Env {
            config: &config,
            key: &key,
            now: 1_000_000,
            caller_uid: 1000,
            account: &account,
            ctx: &ctx,
        };
        f(&env)
    }

    fn refused(r: Result<UserRecord, Decided<()>>) -> Decided<()> {
        match r {
            Err(d) => d,
            Ok(_) => panic!("admitted"),
        }
    }

    fn rec() -> UserRecord {
        UserRecord::new("alice", 1000)
    }

    #[test]
    fn a_right_password_or_none_asked_hands_the_record_on_unchanged() {
        with_env(|env| {
            for r in [Reauth::NotAsked, Reauth::Passed] {
                let out = admit::<()>(rec(), r, env).ok().expect("admitted");
                assert_eq!(out.failures, 0);
                assert!(out.history.is_empty());
            }
        });
    }

    #[test]
    fn a_wrong_password_counts_like_a_wrong_code_and_locks_at_max_failures() {
        with_env(|env| {
            let max = env.config.lockout.max_failures;
            let mut r = rec();
            for n in 1..=max {
                let d = refused(admit(r, Reauth::WrongPassword, env));
                r = match d.write {
                    Write::Put(r) => r,
                    _ => panic!("a wrong password must be written"),
                };
                assert_eq!(r.failures, n);
                if n < max {
                    assert!(
                        matches!(&d.answer, Err(ServiceError::InvalidCode(m)) if m.contains("Wrong password or code") && m.contains(&format!("{} attempts left", max - n))),
                        "{:?}",
                        d.answer
                    );
                    assert_eq!(r.locked_until, 0);
                } else {
                    assert!(matches!(d.answer, Err(ServiceError::Locked(_))));
                    assert_eq!(r.locked_until, env.now + env.config.lockout.duration_secs);
                    assert_eq!(r.lock_streak, 1);
                }
            }
            assert!(r.history.iter().any(|h| h.detail == "wrong password"));
            // Locked: refused, not counted again, nothing written.
            let d = refused(admit(r.clone(), Reauth::WrongPassword, env));
            assert!(matches!(d.answer, Err(ServiceError::Locked(_))));
            assert!(matches!(d.write, Write::Keep));
        });
    }

    #[test]
    fn an_expired_lock_gives_a_fresh_count() {
        with_env(|env| {
            let mut r = rec();
            r.failures = 5;
            r.locked_until = env.now - 1;
            r.lock_streak = 1;
            let d = refused(admit(r, Reauth::WrongPassword, env));
            let Write::Put(r) = d.write else {
                panic!("written")
            };
            assert_eq!((r.failures, r.locked_until, r.lock_streak), (1, 0, 1));
        });
    }

    #[test]
    fn a_wrong_code_after_a_right_password_reads_like_a_wrong_password() {
        with_env(|env| {
            let mut r = rec();
            r.failures = 2;
            let refused: Decided<()> = Decided {
                write: Write::Put(r),
                answer: Err(ServiceError::InvalidCode(
                    "Wrong code. 2 attempts left.".into(),
                )),
                events: Vec::new(),
            };
            let d = uniform(refused, Reauth::Passed, env);
            assert!(
                matches!(&d.answer, Err(ServiceError::InvalidCode(m)) if m == "Wrong password or code. 3 attempts left."),
                "{:?}",
                d.answer
            );
            // In code mode the message is the code check's own.
            let refused: Decided<()> =
                Decided::keep(Err(ServiceError::InvalidCode("Wrong code.".into())));
            let d = uniform(refused, Reauth::NotAsked, env);
            assert!(matches!(&d.answer, Err(ServiceError::InvalidCode(m)) if m == "Wrong code."));
        });
    }

    #[test]
    fn a_missing_service_file_is_unavailable_not_a_wrong_password() {
        let r = pam_check(
            "otpgate-no-such-service-for-tests",
            "root",
            Zeroizing::new("x".into()),
        );
        assert!(matches!(r, Err(ServiceError::Unavailable(_))), "{r:?}");
    }
}
