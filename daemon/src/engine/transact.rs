//! The transaction every decision about one account goes through: behind
//! the account's async gate (so waiting holds no thread), on the blocking
//! pool, inside `Store::update`; the decision's audit events are written
//! once the change is durable, never before.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use otpgate_proto::ServiceError;

use super::{internal, Context, Decided, Engine, Env, Event, Inflight};
use crate::accounts::Account;
use crate::audit::Level;
use crate::error::Error;
use crate::record::UserRecord;
use crate::store::Write;

impl Engine {
    /// Runs `f` with the engine on the blocking pool, behind `key`'s gate
    /// if given.
    pub(super) async fn run<T, F>(
        self: &Arc<Self>,
        key: Option<&str>,
        f: F,
    ) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, ServiceError> + Send + 'static,
    {
        let _inflight = Inflight::start(&self.inflight);
        let gate = key.map(|k| self.gates.get(k));
        let _held = match &gate {
            Some(g) => Some(g.lock().await),
            None => None,
        };
        let this = Arc::clone(self);
        self.blocking
            .spawn_blocking(move || f(&this))
            .await
            .map_err(internal)?
    }

    /// The transaction every decision about one account goes through:
    /// `decide` runs inside `Store::update` on the account's record; its
    /// events are written once the change is durable, never before.
    pub(super) async fn transact<T, F>(
        self: &Arc<Self>,
        account: &Account,
        ctx: &Context,
        caller_uid: u32,
        decide: F,
    ) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnMut(Option<UserRecord>, &Env) -> Decided<T> + Send + 'static,
    {
        let (a, c) = (account.clone(), ctx.clone());
        self.run(Some(&account.key()), move |e| {
            e.transact_now(&a, &c, caller_uid, decide)
        })
        .await
    }

    /// `transact` for a decision that usually writes nothing (Challenge
    /// for an app's code): it decides on a plain read first, and only if
    /// that decision would write does it decide again inside the
    /// transaction. A login then costs a fleet's database one read instead
    /// of a transaction holding the row's lock. Safe because such an
    /// answer only says what to prompt for; Verify decides in a
    /// transaction.
    pub(super) async fn transact_read_first<T, F>(
        self: &Arc<Self>,
        account: &Account,
        ctx: &Context,
        caller_uid: u32,
        mut decide: F,
    ) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnMut(Option<UserRecord>, &Env) -> Decided<T> + Send + 'static,
    {
        let (a, c) = (account.clone(), ctx.clone());
        self.run(Some(&account.key()), move |e| {
            e.look_for_legacy(&a)?;
            let rec = e
                .store
                .get(&a.key())
                .map_err(|err| e.storage_error(&a.name, named(err, &a)))?;
            let env = e.env(&a, &c, caller_uid);
            if let Some(other) = clash_with(e.store.shared(), rec.as_ref(), &a, env.now) {
                return Err(e.clash_error(&a, &other));
            }
            let d = decide(rec, &env);
            if matches!(d.write, Write::Keep) {
                e.write_events(&a.name, &c, caller_uid, env.now, d.events);
                return d.answer;
            }
            e.transact_now(&a, &c, caller_uid, decide)
        })
        .await
    }

    /// What a decision about `account` sees, now.
    fn env<'a>(&'a self, account: &'a Account, ctx: &'a Context, caller_uid: u32) -> Env<'a> {
        Env {
            ctx,
            config: &self.config,
            key: &self.key,
            now: self.clock.now(),
            caller_uid,
            account,
        }
    }

    /// While records filed by name are left, one may be this account's.
    fn look_for_legacy(&self, account: &Account) -> Result<(), ServiceError> {
        if self.legacy_left.load(Ordering::Relaxed) {
            self.migrate_legacy(&account.name, account)?;
        }
        Ok(())
    }

    fn clash_error(&self, account: &Account, other: &str) -> ServiceError {
        let e = Error::Database(format!(
            "uid {} is {} on this host but the fleet's record for it was written for {}: \
             every host of a fleet must give a user the same uid; nothing was changed",
            account.uid,
            crate::audit::clean(&account.name),
            crate::audit::clean(other)
        ));
        self.storage_error(&account.name, e)
    }

    /// `transact` on the calling (blocking) thread.
    pub(super) fn transact_now<T, F>(
        &self,
        account: &Account,
        ctx: &Context,
        caller_uid: u32,
        mut decide: F,
    ) -> Result<T, ServiceError>
    where
        F: FnMut(Option<UserRecord>, &Env) -> Decided<T>,
    {
        self.look_for_legacy(account)?;
        let env = self.env(account, ctx, caller_uid);
        let mut out = None;
        let mut clash = None;
        let key = account.key();
        let shared = self.store.shared();
        let stored = self.store.update(&key, &mut |rec| {
            clash = clash_with(shared, rec.as_ref(), account, env.now);
            if clash.is_some() {
                return Write::Keep;
            }
            let existed = rec.is_some();
            let mut d = decide(rec, &env);
            if let Write::Put(r) = &mut d.write {
                r.updated_at = env.now;
                r.name = Some(account.name.clone());
                // Nothing left worth keeping (say, an enrolment that
                // expired, of a record retired long ago): not written.
                if r.forgettable(env.now) {
                    d.write = if existed { Write::Delete } else { Write::Keep };
                }
            }
            let write = std::mem::replace(&mut d.write, Write::Keep);
            out = Some((d.answer, d.events));
            write
        });
        if let Err(e) = stored {
            return Err(self.storage_error(&account.name, named(e, account)));
        }
        if let Some(other) = clash {
            return Err(self.clash_error(account, &other));
        }
        let (answer, events) = out.expect("update called the decision");
        self.write_events(&account.name, ctx, caller_uid, env.now, events);
        answer
    }

    pub(super) fn write_events(
        &self,
        user: &str,
        ctx: &Context,
        caller_uid: u32,
        now: u64,
        events: Vec<Event>,
    ) {
        for ev in events {
            match &ev.throttle {
                Some(key) => self
                    .audit
                    .event_throttled(key, now, ev.level, ev.name, user, ctx, caller_uid),
                None => self
                    .audit
                    .event(ev.level, ev.name, user, ctx, caller_uid, &ev.detail),
            }
        }
    }

    /// Logs a storage failure once, clearly, and turns it into the bus error.
    pub(super) fn storage_error(&self, user: &str, e: Error) -> ServiceError {
        self.audit.log(
            Level::Error,
            &format!(
                "event=storage-error user={} error=\"{}\"",
                crate::audit::clean(user),
                crate::audit::clean(&e.to_string())
            ),
        );
        e.into()
    }
}

/// Records are keyed by uid. On one host a uid is one account; across a
/// fleet only if every host agrees, and hosts with their own /etc/passwd
/// often do not: a record written for another name is never decided on.
/// The name it was written for, if it clashes. A retired record holds
/// nothing to protect: another name may enrol over it (its counters stay).
fn clash_with(
    shared: bool,
    rec: Option<&UserRecord>,
    account: &Account,
    now: u64,
) -> Option<String> {
    rec.filter(|r| !r.retired(now))
        .and_then(|r| r.name.clone())
        .filter(|n| shared && *n != account.name)
}

/// A store error about this account, named as the account (not its key).
fn named(e: Error, account: &Account) -> Error {
    match e {
        Error::Corrupt { reason, .. } => Error::Corrupt {
            user: account.name.clone(),
            reason,
        },
        other => other,
    }
}
