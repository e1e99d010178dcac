//! Self-service: Status, Disable and RegenerateBackupCodes. A user proves
//! the second factor for the last two (the code is checked and counted as
//! at a login), and with `[self_service] reauth = "password+code"` the
//! account's password too (`reauth.rs`); an administrator needs neither.

use std::sync::Arc;

use otpgate_proto::{ServiceError, VerifyResult};
use zeroize::Zeroizing;

use super::reauth::{self, Password, Reauth};
use super::verify::check_code;
use super::{Context, Decided, Engine, Env, Event, Status};
use crate::audit::Level;
use crate::authz::{Caller, Interface};
use crate::backup;
use crate::record::UserRecord;
use crate::store::Write;

/// What Status says of a record (or of no record), under `name`.
pub(crate) fn status_of(rec: Option<&UserRecord>, name: String, now: u64) -> Status {
    let Some(rec) = rec else {
        return status_of(Some(&UserRecord::new("", 0)), name, now);
    };
    let locked = rec.locked_until > now;
    Status {
        user: name,
        enrolled: rec.enrolled(),
        pending: rec.pending_live(now).is_some(),
        method: rec
            .method()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        backup_codes_left: rec.backup_codes_left() as u32,
        locked,
        breakglass_codes_left: rec.breakglass.as_ref().map_or(0, |b| b.hashes.len()) as u32,
        breakglass_unacknowledged: rec.breakglass_uses.len() as u32,
        clock_offset_secs: rec
            .totp()
            .and_then(|t| t.drift)
            .map_or(0, |d| d.offset_secs),
        clock_offset_seen_at: rec.totp().and_then(|t| t.drift).map_or(0, |d| d.seen_at),
        locked_until: if locked { rec.locked_until } else { 0 },
        // An expired lock's count is reset at the next attempt.
        failures: if rec.locked_until != 0 && !locked {
            0
        } else {
            rec.failures
        },
    }
}

/// A user's proof of the second factor (administrators need none): `Ok`
/// with the record as the check left it, or the decision that refuses.
// The refusal is a whole decision, made once per call: not worth a box.
#[allow(clippy::result_large_err)]
fn prove(
    rec: UserRecord,
    admin: bool,
    code: &str,
    pw: Reauth,
    env: &Env,
) -> Result<(UserRecord, Vec<Event>), Decided<()>> {
    if admin {
        return Ok((rec, Vec::new()));
    }
    // Re-authentication's hook: a wrong password is counted and refused
    // here; a code refused after a right password says no more than that.
    let rec = reauth::admit(rec, pw, env)?;
    prove_code(rec, code, env).map_err(|refused| reauth::uniform(refused, pw, env))
}

/// The code half of `prove`.
#[allow(clippy::result_large_err)]
fn prove_code(
    rec: UserRecord,
    code: &str,
    env: &Env,
) -> Result<(UserRecord, Vec<Event>), Decided<()>> {
    if code.is_empty() {
        return Err(Decided::keep(Err(ServiceError::InvalidCode(
            "a current code (or a backup code) is required: pass --code".into(),
        ))));
    }
    let mut rec = rec;
    let checked = match check_code(&mut rec, code, env, None, None) {
        Ok(c) => c,
        Err(fault) => {
            return Err(Decided {
                write: fault.write,
                answer: fault.answer.map(|_| ()),
                events: fault.events,
            })
        }
    };
    let o = checked.outcome;
    let refusal = match o.result {
        VerifyResult::Ok => return Ok((rec, checked.events)),
        VerifyResult::Locked => ServiceError::Locked(format!(
            "too many wrong codes: locked until {} (unix time)",
            o.locked_until
        )),
        _ => ServiceError::InvalidCode(format!(
            "{} {} attempts left.",
            o.message,
            o.attempts_left.unwrap_or(0)
        )),
    };
    Err(Decided {
        write: if checked.changed {
            Write::Put(rec)
        } else {
            Write::Keep
        },
        answer: Err(refusal),
        events: checked.events,
    })
}

fn not_enrolled<T>(env: &Env) -> Decided<T> {
    Decided::keep(Err(ServiceError::NotEnrolled(format!(
        "{} has no second factor enrolled",
        env.account.name
    ))))
}

pub(crate) fn decide_disable(
    rec: Option<UserRecord>,
    admin: bool,
    code: &str,
    pw: Reauth,
    env: &Env,
) -> Decided<()> {
    let rec = match rec {
        Some(r) if r.enrolled() => r,
        _ => return not_enrolled(env),
    };
    match prove(rec, admin, code, pw, env) {
        Err(refused) => refused,
        Ok((_, mut events)) => {
            events.push(Event::new(Level::Notice, "disabled", ""));
            Decided {
                write: Write::Delete,
                answer: Ok(()),
                events,
            }
        }
    }
}

pub(crate) fn decide_regenerate(
    rec: Option<UserRecord>,
    admin: bool,
    code: &str,
    pw: Reauth,
    env: &Env,
    new_codes: &[Zeroizing<String>],
) -> Decided<Vec<Zeroizing<String>>> {
    let rec = match rec {
        Some(r) if r.enrolled() => r,
        _ => return not_enrolled(env),
    };
    let (mut rec, mut events) = match prove(rec, admin, code, pw, env) {
        Err(refused) => {
            return Decided {
                write: refused.write,
                answer: refused.answer.map(|()| Vec::new()),
                events: refused.events,
            }
        }
        Ok(proved) => proved,
    };
    if let Err(e) = super::replace_backup_codes(&mut rec, env, new_codes) {
        return Decided::keep(Err(e));
    }
    events.push(Event::new(
        Level::Notice,
        "backup-codes-regenerated",
        format!("count={}", new_codes.len()),
    ));
    rec.note(
        env.now,
        "backup-codes-replaced",
        env.ctx,
        format!("{} new", new_codes.len()),
    );
    Decided::put(rec, Ok(new_codes.to_vec()), events)
}

impl Engine {
    /// The user's history, oldest first (own user, or an administrator).
    pub async fn history(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
    ) -> Result<Vec<otpgate_proto::codec::HistoryEntry>, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        self.transact_read_first(&account, &Context::default(), caller.uid, |rec, _| {
            let entries = rec
                .map(|r| r.history)
                .unwrap_or_default()
                .into_iter()
                .map(|h| otpgate_proto::codec::HistoryEntry {
                    at: h.at,
                    event: h.event,
                    service: h.service,
                    rhost: h.rhost,
                    tty: h.tty,
                    detail: h.detail,
                })
                .collect();
            Decided::keep(Ok(entries))
        })
        .await
    }

    pub async fn status(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
    ) -> Result<Status, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let name = account.name.clone();
        self.transact(
            &account,
            &Context::default(),
            caller.uid,
            move |rec, env| Decided::keep(Ok(status_of(rec.as_ref(), name.clone(), env.now))),
        )
        .await
    }

    pub async fn disable(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        code: super::Code,
        password: Option<Password>,
    ) -> Result<(), ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let admin = caller.is_admin();
        let pw = self
            .reauthenticate(caller, &account, admin, &code, password)
            .await?;
        self.transact(
            &account,
            &Context::default(),
            caller.uid,
            move |rec, env| decide_disable(rec, admin, &code, pw, env),
        )
        .await?;
        // A remembered session must not outlive the factor it proved.
        self.forget_sessions(account.uid);
        Ok(())
    }

    pub async fn regenerate_backup_codes(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        code: super::Code,
        password: Option<Password>,
    ) -> Result<Vec<Zeroizing<String>>, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let admin = caller.is_admin();
        let pw = self
            .reauthenticate(caller, &account, admin, &code, password)
            .await?;
        let codes = backup::generate(self.config.backup_codes.count).map_err(super::internal)?;
        self.transact(
            &account,
            &Context::default(),
            caller.uid,
            move |rec, env| decide_regenerate(rec, admin, &code, pw, env, &codes),
        )
        .await
    }
}
