//! The engine: everything the daemon decides, and the orchestration around
//! each decision.
//!
//! Each operation lives in a file of its own, as a pure decision — a
//! function from (the record, the input, the time, the configuration) to
//! (what to write, the answer, the audit events), with no I/O, no lock and
//! no clock inside — and the `Engine` method that runs it:
//!
//! - `challenge.rs`: Challenge (and the e-mail code it issues);
//! - `verify.rs`: a code against a record (TOTP, e-mail, backup code,
//!   failures, lock, replay) and Verify;
//! - `enrol.rs`: Enroll and Confirm;
//! - `manage.rs`: Status, Disable, RegenerateBackupCodes;
//! - `admin.rs`: ListUsers, Unlock, Reset, Stats, Import, and moving
//!   records filed by name to their uid;
//! - `mail.rs`: sending a code without holding anything, and taking it
//!   back when it could not be sent.
//!
//! Around a decision the engine does, in this order: admission (a caller
//! that is not root has a bounded number of calls), the account (the name
//! resolved through the name service), authorisation (the access table, by
//! the caller's uid), the transaction (`Store::update` on the account's
//! record, on the blocking pool, behind an async gate per account so that
//! waiting holds no thread), then the audit events and any mail, only once
//! the change is durable.

mod admin;
mod challenge;
mod enrol;
mod mail;
mod manage;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use otpgate_proto::ServiceError;
use zeroize::Zeroizing;

use crate::accounts::{Account, Accounts, SystemAccounts};
use crate::audit::{Audit, Level};
use crate::authz::{self, Caller, Interface};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::email::{Mailer, SendCode};
use crate::error::Error;
use crate::lockout::{CallerLimiter, Permit, SourceLimiter};
use crate::record::UserRecord;
use crate::store::{Store, Write};

pub use crate::context::Context;

/// How long an enrolment waits for its confirming code.
pub const PENDING_TTL_SECS: u64 = 600;
/// Wrong confirmation codes before a pending enrolment is dropped.
pub const PENDING_MAX_ATTEMPTS: u32 = 5;
/// Stats covers this many days.
pub const STATS_DAYS: u64 = 30;
/// Mails to one user per hour, at most (login and enrolment mails alike).
pub const EMAIL_SENDS_PER_HOUR: usize = 5;
/// E-mailed codes are always six digits.
pub const EMAIL_CODE_DIGITS: usize = 6;

// The answers are the wire's own types: the bus encodes them through the
// codec, so what the engine decides is exactly what a client reads.
pub use otpgate_proto::codec::{
    ChallengeAnswer as ChallengeOutcome, Enrollment, Stats, Status, VerifyAnswer as VerifyOutcome,
};

/// An audit line a decision asks for. Written only once what it reports
/// is durable; `throttle` names a key under which repeats go out once a
/// minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub level: Level,
    pub name: &'static str,
    pub detail: String,
    pub throttle: Option<String>,
}

impl Event {
    pub fn new(level: Level, name: &'static str, detail: impl Into<String>) -> Event {
        Event {
            level,
            name,
            detail: detail.into(),
            throttle: None,
        }
    }
}

/// What a decision sees besides the record: fixed for the call.
pub(crate) struct Env<'a> {
    pub config: &'a Config,
    pub key: &'a MasterKey,
    pub now: u64,
    pub caller_uid: u32,
    /// The account the call is about (its name, for messages and events).
    pub account: &'a Account,
}

/// A decision: what to write, what to answer, what to log.
pub(crate) struct Decided<T> {
    pub write: Write,
    pub answer: Result<T, ServiceError>,
    pub events: Vec<Event>,
}

impl<T> Decided<T> {
    pub fn keep(answer: Result<T, ServiceError>) -> Decided<T> {
        Decided {
            write: Write::Keep,
            answer,
            events: Vec::new(),
        }
    }

    pub fn put(rec: UserRecord, answer: Result<T, ServiceError>, events: Vec<Event>) -> Decided<T> {
        Decided {
            write: Write::Put(rec),
            answer,
            events,
        }
    }
}

/// A record that exists but cannot be used: the answer, and the log line
/// that names the user and the reason.
pub(crate) fn corrupt<T>(env: &Env, reason: impl std::fmt::Display) -> Decided<T> {
    let e = Error::Corrupt {
        user: env.account.name.clone(),
        reason: reason.to_string(),
    };
    Decided {
        write: Write::Keep,
        events: vec![Event::new(
            Level::Error,
            "storage-error",
            format!("error=\"{}\"", crate::audit::clean(&e.to_string())),
        )],
        answer: Err(e.into()),
    }
}

/// One async gate per account with a call under way, so that calls about
/// one account queue without holding a blocking thread each. Atomicity is
/// the store's (`Store::update`); this only keeps the queue off the pool.
#[derive(Default)]
struct Gates(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl Gates {
    fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = map.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_string(), Arc::downgrade(&lock));
        lock
    }
}

pub struct Engine {
    config: Config,
    store: Box<dyn Store>,
    key: MasterKey,
    clock: Arc<dyn Clock>,
    audit: Audit,
    hostname: String,
    gates: Gates,
    blocking: tokio::runtime::Handle,
    inflight: AtomicUsize,
    sources: SourceLimiter,
    callers: CallerLimiter,
    mailer: Option<Arc<dyn SendCode>>,
    accounts: Arc<dyn Accounts>,
    /// The last failed login mail per account key (when, why): reported at
    /// Verify, and no new mail is tried within the resend cooldown.
    mail_failures: Mutex<HashMap<String, (u64, String)>>,
    /// Records filed by name are left (their names did not resolve at
    /// start): look for one before deciding that an account has none.
    legacy_left: AtomicBool,
}

/// This host's name, as shown in authenticator apps and mail subjects.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Failed(format!("otpgated internal error: {e}"))
}

fn check_user_name(user: &str) -> Result<(), ServiceError> {
    if otpgate_proto::valid_user_name(user) {
        Ok(())
    } else {
        Err(ServiceError::InvalidUser(format!(
            "{:?} is not a valid user name",
            crate::audit::clean(user)
        )))
    }
}

/// Counts an operation from start to answer, for a clean stop's drain.
struct Inflight<'a>(&'a AtomicUsize);

impl<'a> Inflight<'a> {
    fn start(n: &'a AtomicUsize) -> Inflight<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Inflight(n)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Engine {
    /// `blocking` is the Tokio runtime whose blocking pool does file I/O
    /// and hashing (the bus may run on another executor).
    pub fn new(
        config: Config,
        store: Box<dyn Store>,
        key: MasterKey,
        clock: Arc<dyn Clock>,
        audit: Audit,
        blocking: tokio::runtime::Handle,
    ) -> Engine {
        Engine {
            config,
            store,
            key,
            clock,
            audit,
            hostname: hostname(),
            gates: Gates::default(),
            blocking,
            inflight: AtomicUsize::new(0),
            sources: SourceLimiter::default(),
            callers: CallerLimiter::default(),
            mailer: None,
            accounts: Arc::new(SystemAccounts),
            mail_failures: Mutex::new(HashMap::new()),
            legacy_left: AtomicBool::new(true),
        }
    }

    /// Turns the e-mail factor on (see `Mailer::from_config`).
    pub fn with_mailer(self, mailer: Option<Mailer>) -> Engine {
        let sender = mailer.map(|m| Arc::new(m) as Arc<dyn SendCode>);
        self.with_code_sender(sender)
    }

    /// Turns the e-mail factor on with any sender (tests use an outbox).
    pub fn with_code_sender(mut self, sender: Option<Arc<dyn SendCode>>) -> Engine {
        self.mailer = sender;
        self
    }

    /// Replaces the host's name service (tests use a table).
    pub fn with_accounts(mut self, accounts: Arc<dyn Accounts>) -> Engine {
        self.accounts = accounts;
        self
    }

    /// Replaces the host name shown in authenticator apps (tests).
    pub fn with_hostname(mut self, hostname: &str) -> Engine {
        self.hostname = hostname.to_string();
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Operations started and not yet answered.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// At a clean stop, once nothing is in flight: leaves the store needing
    /// no recovery at the next start.
    pub async fn checkpoint(self: &Arc<Self>) -> Result<(), String> {
        let this = Arc::clone(self);
        match self.blocking(move || this.store.checkpoint()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs `f` on the blocking pool (no gate, no engine access).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.blocking.spawn_blocking(f).await.map_err(internal)
    }

    /// Runs `f` with the engine on the blocking pool, behind `key`'s gate
    /// if given.
    async fn run<T, F>(self: &Arc<Self>, key: Option<&str>, f: F) -> Result<T, ServiceError>
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
    async fn transact<T, F>(
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

    /// `transact` on the calling (blocking) thread.
    fn transact_now<T, F>(
        &self,
        account: &Account,
        ctx: &Context,
        caller_uid: u32,
        mut decide: F,
    ) -> Result<T, ServiceError>
    where
        F: FnMut(Option<UserRecord>, &Env) -> Decided<T>,
    {
        if self.legacy_left.load(Ordering::Relaxed) {
            self.migrate_legacy(&account.name, account)?;
        }
        let env = Env {
            config: &self.config,
            key: &self.key,
            now: self.clock.now(),
            caller_uid,
            account,
        };
        let mut out = None;
        let key = account.key();
        let stored = self.store.update(&key, &mut |rec| {
            let mut d = decide(rec, &env);
            if let Write::Put(r) = &mut d.write {
                r.updated_at = env.now;
                r.name = Some(account.name.clone());
            }
            let write = std::mem::replace(&mut d.write, Write::Keep);
            out = Some((d.answer, d.events));
            write
        });
        let stored = stored.map_err(|e| match e {
            Error::Corrupt { reason, .. } => Error::Corrupt {
                user: account.name.clone(),
                reason,
            },
            other => other,
        });
        if let Err(e) = stored {
            return Err(self.storage_error(&account.name, e));
        }
        let (answer, events) = out.expect("update called the decision");
        self.write_events(&account.name, ctx, caller_uid, env.now, events);
        answer
    }

    fn write_events(
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
    fn storage_error(&self, user: &str, e: Error) -> ServiceError {
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

    /// Counts the call against a non-root caller's allowance (root is every
    /// PAM login and is limited per source instead); the permit is held
    /// until the call is answered.
    fn admit(&self, caller: &Caller) -> Result<Option<Permit<'_>>, ServiceError> {
        if caller.is_root() {
            return Ok(None);
        }
        let now = self.clock.now();
        self.callers
            .admit(caller.uid, now)
            .map(Some)
            .map_err(|why| {
                if let Some(held) = self.audit.admit(&format!("too-many:{}", caller.uid), now) {
                    self.audit.log(
                        Level::Warning,
                        &format!(
                            "event=caller-limited caller_uid={} reason=\"{why}\"{}",
                            caller.uid,
                            suppressed(held)
                        ),
                    );
                }
                ServiceError::TooManyRequests(format!(
                    "uid {} sent too many requests ({why}): wait a minute",
                    caller.uid
                ))
            })
    }

    /// The account `user` names, through the name service (on the blocking
    /// pool: sssd or LDAP may take a while). A name it does not know is
    /// refused, never answered "not enrolled": with `nullok` that answer
    /// would let the password alone through.
    async fn account(&self, user: &str) -> Result<Account, ServiceError> {
        check_user_name(user)?;
        let accounts = Arc::clone(&self.accounts);
        let name = user.to_string();
        match self.blocking(move || accounts.lookup(&name)).await? {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(ServiceError::InvalidUser(format!(
                "there is no user {} on this system",
                crate::audit::clean(user)
            ))),
            Err(e) => {
                self.audit.log(
                    Level::Error,
                    &format!(
                        "event=nss-error user={} error=\"{}\"",
                        crate::audit::clean(user),
                        crate::audit::clean(&e)
                    ),
                );
                Err(ServiceError::Unavailable(format!(
                    "the user database could not be asked about {}: {}",
                    crate::audit::clean(user),
                    crate::audit::clean(&e)
                )))
            }
        }
    }

    fn authorize(
        &self,
        caller: &Caller,
        iface: Interface,
        user: Option<&Account>,
    ) -> Result<(), ServiceError> {
        authz::check(caller, iface, user).inspect_err(|e| {
            let Some(held) = self
                .audit
                .admit(&format!("denied:{}", caller.uid), self.clock.now())
            else {
                return;
            };
            self.audit.log(
                Level::Warning,
                &format!(
                    "event=access-denied caller_uid={} user={} reason=\"{}\"{}",
                    caller.uid,
                    user.map(|a| crate::audit::clean(&a.name))
                        .unwrap_or_default(),
                    e,
                    suppressed(held)
                ),
            )
        })
    }

    /// Admission, then the account, then the access table: what every call
    /// about one user starts with.
    async fn open_call(
        &self,
        caller: &Caller,
        iface: Interface,
        user: &str,
    ) -> Result<(Option<Permit<'_>>, Account), ServiceError> {
        let permit = self.admit(caller)?;
        let account = self.account(user).await?;
        self.authorize(caller, iface, Some(&account))?;
        Ok((permit, account))
    }
}

fn suppressed(held: u32) -> String {
    if held > 0 {
        format!(" suppressed={held}")
    } else {
        String::new()
    }
}

/// What an administrator's `prove` or a login sends as a code, kept wiped.
pub(crate) type Code = Zeroizing<String>;
