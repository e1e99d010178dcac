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
//! - `reauth.rs`: the account's password before a destructive change
//!   (`[self_service] reauth = "password+code"`), through PAM;
//! - `admin.rs`: ListUsers, Unlock, Reset, Stats, Import, and moving
//!   records filed by name to their uid;
//! - `mail.rs`: sending a code without holding anything, and taking it
//!   back when it could not be sent;
//! - `policy.rs`: which `[[policy]]` rule applies to a login, the caller's
//!   session and console, remembered successes, Account and ExplainPolicy;
//! - `breakglass.rs`: root's console-only one-time codes.
//!
//! Around a decision the engine does, in this order: admission (a caller
//! that is not root has a bounded number of calls), the account (the name
//! resolved through the name service), authorisation (the access table, by
//! the caller's uid), the transaction (`Store::update` on the account's
//! record, on the blocking pool, behind an async gate per account so that
//! waiting holds no thread), then the audit events and any mail, only once
//! the change is durable.

mod access;
mod admin;
mod breakglass;
mod challenge;
mod enrol;
mod mail;
mod manage;
mod policy;
mod reauth;
mod transact;
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
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::email::{Mailer, SendCode};
use crate::error::Error;
use crate::lockout::{CallerLimiter, SourceLimiter};
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
    /// Where the call comes from (for the user's history).
    pub ctx: &'a Context,
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

/// Replaces the record's backup codes with the hashes of `codes`, bound
/// as the record's secrets are.
pub(crate) fn replace_backup_codes(
    rec: &mut UserRecord,
    env: &Env,
    codes: &[Zeroizing<String>],
) -> Result<(), ServiceError> {
    let set = crate::backup::hash_set(env.key, rec.bound_to(), codes, env.now).map_err(internal)?;
    rec.backup = Some(set);
    Ok(())
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
    /// Successes remembered per login session (`remember_secs`).
    remembered: policy::Remembered,
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
            remembered: policy::Remembered::default(),
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
}

/// What an administrator's `prove` or a login sends as a code, kept wiped.
pub(crate) type Code = Zeroizing<String>;
