//! Self-service: Status, Disable, RegenerateBackupCodes and RemoveDevice.
//! A user proves the second factor for the last three (the code is checked
//! and counted as at a login), and with `[self_service] reauth =
//! "password+code"` the account's password too (`reauth.rs`); an
//! administrator needs neither. Disable leaves a retired record
//! (`UserRecord::retire`): its counters, nothing that could authenticate.

use std::sync::Arc;

use otpgate_proto::{ServiceError, VerifyResult};
use zeroize::Zeroizing;

use super::reauth::{self, Password, Reauth};
use super::verify::check_code;
use super::{Context, Decided, Engine, Env, Event, Status};
use crate::audit::Level;
use crate::authz::{Caller, Interface};
use crate::backup;
use crate::record::{Factor, Retired, UserRecord};
use crate::store::Write;
use otpgate_proto::codec::Device;

/// What Status says of a record (or of no record), under `name`.
pub(crate) fn status_of(rec: Option<&UserRecord>, name: String, now: u64) -> Status {
    let Some(rec) = rec else {
        return status_of(Some(&UserRecord::new("", 0)), name, now);
    };
    let locked = rec.locked_until > now;
    // The device whose clock was seen off last.
    let drift = rec
        .factors
        .iter()
        .filter_map(|f| match f {
            Factor::Totp(t) => t.drift,
            Factor::Email(_) => None,
        })
        .max_by_key(|d| d.seen_at);
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
        clock_offset_secs: drift.map_or(0, |d| d.offset_secs),
        clock_offset_seen_at: drift.map_or(0, |d| d.seen_at),
        devices: rec
            .factors
            .iter()
            .map(|f| Device {
                name: f.name().to_string(),
                method: f.method().as_str().to_string(),
                added: f.created_at(),
                last_used: f.last_used_at(),
                clock_offset_secs: f.drift().map_or(0, |d| d.offset_secs),
                clock_offset_seen_at: f.drift().map_or(0, |d| d.seen_at),
            })
            .collect(),
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
        Ok((rec, mut events)) => {
            events.push(Event::new(Level::Notice, "disabled", ""));
            Decided::put(rec.retire(Retired::Disabled, env.now), Ok(()), events)
        }
    }
}

/// Why a user may not remove their last factor: the explicit rule that
/// requires one of them.
pub(crate) fn last_factor_refusal(user: &str, rule: &str) -> ServiceError {
    ServiceError::AccessDenied(format!(
        "{user} may not remove their last second factor: the policy requires one ({rule}); add another device first, or ask an administrator"
    ))
}

/// RemoveDevice's decision. `required` is the `[[policy]]` rule that
/// requires a factor of this user, for a caller who is not an
/// administrator (an administrator may remove anything).
pub(crate) fn decide_remove_device(
    rec: Option<UserRecord>,
    admin: bool,
    name: &str,
    code: &str,
    pw: Reauth,
    env: &Env,
    required: Option<&str>,
) -> Decided<()> {
    let rec = match rec {
        Some(r) if r.enrolled() => r,
        _ => return not_enrolled(env),
    };
    let Some(i) = rec.device(name) else {
        let names: Vec<&str> = rec.factors.iter().map(|f| f.name()).collect();
        return Decided::keep(Err(ServiceError::InvalidArgument(format!(
            "{} has no device named {:?} (devices: {})",
            env.account.name,
            crate::audit::clean(name),
            names.join(", ")
        ))));
    };
    if let (false, 1, Some(rule)) = (admin, rec.factors.len(), required) {
        return Decided::keep(Err(last_factor_refusal(&env.account.name, rule)));
    }
    let (mut rec, mut events) = match prove(rec, admin, code, pw, env) {
        Err(refused) => return refused,
        Ok(proved) => proved,
    };
    let removed = rec.factors.remove(i);
    let (name, method) = (removed.name().to_string(), removed.method().as_str());
    events.push(Event::new(
        Level::Notice,
        "device-removed",
        format!("device={name} method={method}"),
    ));
    if rec.factors.is_empty() {
        // The last one: as `disable` (the day counters stay for stats).
        events.push(Event::new(Level::Notice, "disabled", ""));
        return Decided::put(rec.retire(Retired::Disabled, env.now), Ok(()), events);
    }
    if matches!(removed, Factor::Email(_)) {
        rec.email_code = None;
    }
    rec.note(
        env.now,
        "device-removed",
        env.ctx,
        format!("{name} ({method})"),
    );
    Decided::put(rec, Ok(()), events)
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
        if !admin {
            if let Some(rule) = self.required_rule(&account).await? {
                return Err(last_factor_refusal(&account.name, &rule));
            }
        }
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

    pub async fn remove_device(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        name: &str,
        code: super::Code,
        password: Option<Password>,
    ) -> Result<(), ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let admin = caller.is_admin();
        let required = if admin {
            None
        } else {
            self.required_rule(&account).await?
        };
        let pw = self
            .reauthenticate(caller, &account, admin, &code, password)
            .await?;
        let name = name.to_string();
        let gone = self
            .transact(
                &account,
                &Context::default(),
                caller.uid,
                move |rec, env| {
                    let last = rec.as_ref().is_some_and(|r| r.factors.len() == 1);
                    let d = decide_remove_device(
                        rec,
                        admin,
                        &name,
                        &code,
                        pw,
                        env,
                        required.as_deref(),
                    );
                    Decided {
                        answer: d.answer.map(|()| last),
                        write: d.write,
                        events: d.events,
                    }
                },
            )
            .await?;
        if gone {
            // A remembered session must not outlive the factor it proved.
            self.forget_sessions(account.uid);
        }
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
