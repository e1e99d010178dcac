//! The administrator's calls (ListUsers, Unlock, Reset, Stats, Import) and
//! moving records that earlier versions filed by name to their uid key.
//!
//! Reset, like Disable, leaves a retired record (its day counters only), so
//! `Stats` still counts what the user did; ListUsers does not show it, and
//! Stats deletes one whose counters are all older than `DAYS_KEPT`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use otpgate_proto::ServiceError;
use zeroize::Zeroizing;

use super::manage::status_of;
use super::{Context, Decided, Engine, Env, Event, Stats, Status, STATS_DAYS};
use crate::accounts::{uid_of_key, Account};
use crate::audit::Level;
use crate::authz::{Caller, Interface};
use crate::crypto;
use crate::error::Error;
use crate::record::{Factor, Retired, TotpFactor, UserRecord, SECS_PER_DAY};
use crate::store::Write;

/// Adds one record to the statistics of the last `STATS_DAYS` days.
pub(crate) fn add_to_stats(s: &mut Stats, rec: &UserRecord, now: u64) {
    let first_day = (now / SECS_PER_DAY).saturating_sub(STATS_DAYS - 1);
    if rec.enrolled() {
        s.users_enrolled += 1;
    }
    if rec.locked_until > now {
        s.users_locked += 1;
    }
    for d in rec.days.iter().filter(|d| d.day >= first_day) {
        s.successes += d.successes;
        s.failures += d.failures;
        s.lockouts += d.lockouts;
        s.backup_codes_used += d.backup_used;
        s.enrolments += d.enrolled;
        s.disabled += d.disabled;
        s.resets += d.reset;
    }
}

pub(crate) fn decide_unlock(rec: Option<UserRecord>, env: &Env) -> Decided<()> {
    let mut rec = match rec {
        Some(r) if r.enrolled() => r,
        _ => {
            return Decided::keep(Err(ServiceError::NotEnrolled(format!(
                "{} has no second factor enrolled",
                env.account.name
            ))))
        }
    };
    rec.failures = 0;
    rec.locked_until = 0;
    rec.lock_streak = 0;
    Decided::put(rec, Ok(()), vec![Event::new(Level::Notice, "unlocked", "")])
}

/// An imported google-authenticator file, parsed before the transaction.
pub(crate) struct Imported<'a> {
    pub id: &'a str,
    pub secret: &'a [u8],
    pub step_secs: u64,
    pub scratch_codes: &'a [Zeroizing<String>],
}

pub(crate) fn decide_import(rec: Option<UserRecord>, env: &Env, ga: &Imported) -> Decided<u32> {
    let now = env.now;
    let user = env.account.name.as_str();
    let mut rec = rec.unwrap_or_else(|| UserRecord::new(&env.account.key(), now));
    if rec.enrolled() {
        return Decided::keep(Err(ServiceError::AlreadyEnrolled(format!(
            "{user} is already enrolled in otpgate: `otpgate reset {user}` first to replace it"
        ))));
    }
    let bind = rec.bound_to().to_string();
    let sealed = match crypto::seal(env.key, &bind, ga.id, ga.secret) {
        Ok(s) => s,
        Err(e) => return Decided::keep(Err(super::internal(e))),
    };
    rec.factors = vec![Factor::Totp(TotpFactor {
        period: ga.step_secs,
        ..TotpFactor::new(ga.id, sealed, now, "imported")
    })];
    rec.pending = None;
    rec.note(
        env.now,
        "enrolled",
        env.ctx,
        "imported from google-authenticator".into(),
    );
    if let Err(e) = super::replace_backup_codes(&mut rec, env, ga.scratch_codes) {
        return Decided::keep(Err(e));
    }
    rec.today(now).enrolled += 1;
    let n = ga.scratch_codes.len() as u32;
    let events = vec![Event::new(
        Level::Notice,
        "imported",
        format!("source=google-authenticator backup_codes={n}"),
    )];
    Decided::put(rec, Ok(n), events)
}

impl Engine {
    /// The name to show for a record: its uid's name now (a rename shows
    /// the new name), else the name it was last written under.
    fn shown_name(&self, key: &str, rec: Option<&UserRecord>) -> String {
        uid_of_key(key)
            .and_then(|uid| self.accounts.name_of(uid))
            .or_else(|| rec.map(|r| r.display_name().to_string()))
            .unwrap_or_else(|| key.to_string())
    }

    /// Every user with a record that is not retired; an unreadable record
    /// is listed with its error instead of failing the whole list.
    pub async fn list_users(
        self: &Arc<Self>,
        caller: &Caller,
    ) -> Result<Vec<Result<Status, (String, String)>>, ServiceError> {
        let _permit = self.admit(caller)?;
        self.authorize(caller, Interface::Admin, None)?;
        self.run(None, |e| {
            let now = e.clock.now();
            let all = e.store.list().map_err(|err| e.storage_error("*", err))?;
            Ok(all
                .into_iter()
                .filter(|(_, rec)| !matches!(rec, Ok(r) if r.retired(now)))
                .map(|(key, rec)| match rec {
                    Ok(rec) => Ok(status_of(Some(&rec), e.shown_name(&key, Some(&rec)), now)),
                    Err(err) => Err((e.shown_name(&key, None), err.to_string())),
                })
                .collect())
        })
        .await
    }

    pub async fn unlock(self: &Arc<Self>, caller: &Caller, user: &str) -> Result<(), ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Admin, user).await?;
        self.transact(&account, &Context::default(), caller.uid, |rec, env| {
            decide_unlock(rec, env)
        })
        .await
    }

    /// Retires the user's record (its counters stay for Stats), or removes
    /// it if it cannot be read: this is also how an administrator recovers
    /// a user whose record is corrupt, and clears the record of an account
    /// the name service no longer knows (by the name `otpgate list` shows
    /// for it). A record still filed by name is removed, as it always was.
    pub async fn reset(self: &Arc<Self>, caller: &Caller, user: &str) -> Result<(), ServiceError> {
        let _permit = self.admit(caller)?;
        self.authorize(caller, Interface::Admin, None)?;
        let keys = match self.account(user).await {
            Ok(account) => {
                self.forget_sessions(account.uid);
                vec![account.key(), account.name]
            }
            Err(ServiceError::InvalidUser(_)) => {
                let name = user.to_string();
                self.run(None, move |e| Ok(e.orphan_keys(&name))).await?
            }
            Err(other) => return Err(other),
        };
        let Some(gate) = keys.first().cloned() else {
            return Err(ServiceError::InvalidUser(format!(
                "there is no user {} on this system, nor a record under that name",
                crate::audit::clean(user)
            )));
        };
        let (name, uid) = (user.to_string(), caller.uid);
        self.run(Some(&gate), move |e| {
            let now = e.clock.now();
            let mut removed = 0;
            for key in keys.iter().filter(|k| crate::store::valid_key(k)) {
                if uid_of_key(key).is_some() {
                    let mut retired = false;
                    let done = e.store.update(key, &mut |rec| match rec {
                        Some(r) if !r.retired(now) => {
                            retired = true;
                            Write::Put(r.retire(Retired::Reset, now))
                        }
                        _ => {
                            retired = false;
                            Write::Keep
                        }
                    });
                    match done {
                        Ok(()) => {
                            removed += usize::from(retired);
                            continue;
                        }
                        // Unreadable: nothing to keep; removed below.
                        Err(Error::Corrupt { .. }) => {}
                        Err(err) => return Err(e.storage_error(&name, err)),
                    }
                }
                if e.store
                    .remove(key)
                    .map_err(|err| e.storage_error(&name, err))?
                {
                    removed += 1;
                }
            }
            if removed == 0 {
                return Err(ServiceError::NotEnrolled(format!(
                    "{name} has no record to reset"
                )));
            }
            e.audit
                .event(Level::Notice, "reset", &name, &Context::default(), uid, "");
            Ok(())
        })
        .await
    }

    /// The keys of records shown under `name` whose account the name
    /// service does not know (any more).
    fn orphan_keys(&self, name: &str) -> Vec<String> {
        let Ok(all) = self.store.list() else {
            return Vec::new();
        };
        all.into_iter()
            .filter(|(key, rec)| match uid_of_key(key) {
                None => key == name,
                Some(uid) => {
                    self.accounts.name_of(uid).is_none()
                        && matches!(rec, Ok(r) if r.display_name() == name)
                }
            })
            .map(|(key, _)| key)
            .collect()
    }

    pub async fn stats(self: &Arc<Self>, caller: &Caller) -> Result<Stats, ServiceError> {
        let _permit = self.admit(caller)?;
        self.authorize(caller, Interface::Admin, None)?;
        self.run(None, |e| {
            let now = e.clock.now();
            let mut s = Stats::default();
            for (key, rec) in e.store.list().map_err(|err| e.storage_error("*", err))? {
                let Ok(rec) = rec else { continue };
                if rec.forgettable(now) {
                    e.forget(&key, now);
                } else {
                    add_to_stats(&mut s, &rec, now);
                }
            }
            Ok(s)
        })
        .await
    }

    /// Deletes a retired record whose counters are all past `DAYS_KEPT`
    /// (unless it changed meanwhile). A failure is logged; the next Stats
    /// tries again.
    fn forget(&self, key: &str, now: u64) {
        let done = self.store.update(key, &mut |rec| match rec {
            Some(r) if r.forgettable(now) => Write::Delete,
            _ => Write::Keep,
        });
        if let Err(err) = done {
            self.storage_error(key, err);
        }
    }

    /// Takes over a `~/.google_authenticator` file: the secret (with its
    /// own step size, SHA1, 6 digits) and the scratch codes as backup codes.
    pub async fn import(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        contents: Zeroizing<String>,
    ) -> Result<u32, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Admin, user).await?;
        let ga = crate::import::parse_google_authenticator(&contents)
            .map_err(|err| ServiceError::InvalidArgument(format!("cannot import: {err}")))?;
        let id = crypto::hex(&crypto::random_bytes::<8>().map_err(super::internal)?);
        self.transact(
            &account,
            &Context::default(),
            caller.uid,
            move |rec, env| {
                let imported = Imported {
                    id: &id,
                    secret: &ga.secret,
                    step_secs: ga.step_secs,
                    scratch_codes: &ga.scratch_codes,
                };
                decide_import(rec, env, &imported)
            },
        )
        .await
    }

    /// Moves a record filed under a user name to its account's uid key,
    /// keeping what its secrets are bound to. The new record is durable
    /// before the old one goes, so a crash in between loses nothing.
    pub(crate) fn migrate_legacy(
        &self,
        legacy: &str,
        account: &Account,
    ) -> Result<(), ServiceError> {
        if !crate::store::valid_key(legacy) || uid_of_key(legacy).is_some() {
            return Ok(());
        }
        let old = match self.store.get(legacy) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(self.storage_error(legacy, e)),
        };
        let key = account.key();
        let now = self.clock.now();
        let mut moved = false;
        self.store
            .update(&key, &mut |current| {
                if current.as_ref().is_some_and(|c| !c.retired(now)) {
                    moved = false;
                    return Write::Keep;
                }
                let mut rec = old.clone();
                // Over a retired record: its counters are kept.
                if let Some(c) = &current {
                    rec.add_days(&c.days);
                }
                if rec.binding.is_none() {
                    rec.binding = Some(rec.user.clone());
                }
                rec.user = key.clone();
                rec.name = Some(account.name.clone());
                moved = true;
                Write::Put(rec)
            })
            .map_err(|e| self.storage_error(&account.name, e))?;
        if !moved {
            self.audit.log(
                Level::Warning,
                &format!(
                    "event=record-not-moved from={} user={} reason=\"{} already has a record\"",
                    crate::audit::clean(legacy),
                    crate::audit::clean(&account.name),
                    key
                ),
            );
            return Ok(());
        }
        self.store
            .remove(legacy)
            .map_err(|e| self.storage_error(legacy, e))?;
        self.audit.log(
            Level::Notice,
            &format!(
                "event=record-moved from={} to={key} user={}",
                crate::audit::clean(legacy),
                crate::audit::clean(&account.name)
            ),
        );
        Ok(())
    }

    /// At start: moves every record still filed under a name whose account
    /// the name service knows to its uid key. A record of a name it does
    /// not know stays, and is moved when the name resolves again.
    ///
    /// A fleet's store holds uid keys only (`migrate-store` moves no name
    /// keys): nothing to look for, and no extra read at every login.
    pub async fn migrate_legacy_records(self: &Arc<Self>) -> Result<usize, ServiceError> {
        if self.store.shared() {
            self.legacy_left.store(false, Ordering::Relaxed);
            return Ok(0);
        }
        let this = Arc::clone(self);
        self.blocking(move || {
            let keys = this.store.keys().map_err(|e| this.storage_error("*", e))?;
            let mut moved = 0;
            let mut left = false;
            for key in keys.iter().filter(|k| uid_of_key(k).is_none()) {
                match this.accounts.lookup(key) {
                    Ok(Some(account)) => {
                        this.migrate_legacy(key, &account)?;
                        if this.store.get(key).ok().flatten().is_none() {
                            moved += 1;
                        } else {
                            left = true;
                        }
                    }
                    _ => left = true,
                }
            }
            this.legacy_left.store(left, Ordering::Relaxed);
            Ok(moved)
        })
        .await?
    }
}
