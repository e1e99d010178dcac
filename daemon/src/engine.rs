//! The decisions: enrolment, verification, lockout, replay, backup codes,
//! administration. Bus-agnostic; `bus` translates D-Bus calls into these.
//!
//! Exactness: every operation that reads and changes a user's record holds
//! that user's lock from load to durable save, and the answer is computed
//! from the saved record. So N concurrent guesses are judged one after the
//! other, and a code or backup code that was answered `ok` has its mark on
//! disk before the caller hears `ok`. Blocking work (file I/O, fsync,
//! argon2) runs on Tokio's blocking pool; waiting for a user's lock does not
//! hold a thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use otpgate_proto::{ChallengeState, Method, MethodUsed, ServiceError, VerifyResult};
use zeroize::Zeroizing;

use crate::accounts::{self, Account, Accounts, SystemAccounts};
use crate::audit::{Audit, Level};
use crate::authz::{self, Caller, Interface};
use crate::backup;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::{self, MasterKey};
use crate::email::{self, Mailer, Purpose};
use crate::error::Error;
use crate::lockout::{lock_duration, CallerLimiter, Permit, SourceLimiter};
use crate::record::{
    EmailCode, EmailFactor, Factor, Pending, TotpFactor, UserRecord, SECS_PER_DAY,
};
use crate::store::Store;
use crate::totp::{self, Params};

/// How long an enrolment waits for its confirming code.
pub const PENDING_TTL_SECS: u64 = 600;
/// Wrong confirmation codes before a pending enrolment is dropped.
pub const PENDING_MAX_ATTEMPTS: u32 = 5;
/// Stats covers this many days.
pub const STATS_DAYS: u64 = 30;

/// Where a login comes from, as the PAM module reports it. Used for the
/// audit trail only, never for a decision.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub service: String,
    pub rhost: String,
    pub ruser: String,
    pub tty: String,
}

// The answers are the wire's own types: the bus encodes them through the
// codec, so what the engine decides is exactly what a client reads.
pub use otpgate_proto::codec::{
    ChallengeAnswer as ChallengeOutcome, Enrollment, Stats, Status, VerifyAnswer as VerifyOutcome,
};

/// A code to mail once the user's lock is released.
struct Mail {
    address: String,
    code: Zeroizing<String>,
    hash: Vec<u8>,
}

/// An answer, and possibly a mail to send with it.
enum Prepared<T> {
    Answer(T),
    Mail(Mail, T),
}

/// Mails to one user per hour, at most.
pub const EMAIL_SENDS_PER_HOUR: usize = 5;
/// E-mailed codes are always six digits.
pub const EMAIL_CODE_DIGITS: usize = 6;

/// One async mutex per user with a live operation. Entries are weak so
/// idle users cost nothing; dead ones are swept as the map grows.
#[derive(Default)]
struct UserLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl UserLocks {
    fn get(&self, user: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = map.get(user).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(user.to_string(), Arc::downgrade(&lock));
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
    locks: UserLocks,
    blocking: tokio::runtime::Handle,
    inflight: AtomicUsize,
    sources: SourceLimiter,
    callers: CallerLimiter,
    mailer: Option<Mailer>,
    accounts: Arc<dyn Accounts>,
    /// The last failed login mail per user key (when, why): reported at
    /// Verify, and no new mail is tried within the resend cooldown.
    mail_failures: Mutex<HashMap<String, (u64, String)>>,
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
        let hostname = hostname();
        Engine {
            config,
            store,
            key,
            clock,
            audit,
            hostname,
            locks: UserLocks::default(),
            blocking,
            inflight: AtomicUsize::new(0),
            sources: SourceLimiter::default(),
            callers: CallerLimiter::default(),
            mailer: None,
            accounts: Arc::new(SystemAccounts),
            mail_failures: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the host's name service (tests use a table).
    pub fn with_accounts(mut self, accounts: Arc<dyn Accounts>) -> Engine {
        self.accounts = accounts;
        self
    }

    /// Turns the e-mail factor on (see `Mailer::from_config`).
    pub fn with_mailer(mut self, mailer: Option<Mailer>) -> Engine {
        self.mailer = mailer;
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

    /// Runs `f` on the blocking pool (no lock, no engine access).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.blocking.spawn_blocking(f).await.map_err(internal)
    }

    /// Runs `f` on the blocking pool, holding `user`'s lock if given.
    async fn run<T, F>(self: &Arc<Self>, user: Option<&str>, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, ServiceError> + Send + 'static,
    {
        struct Inflight<'a>(&'a AtomicUsize);
        impl Drop for Inflight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let _inflight = Inflight(&self.inflight);
        let lock = user.map(|u| self.locks.get(u));
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let this = Arc::clone(self);
        self.blocking
            .spawn_blocking(move || f(&this))
            .await
            .map_err(internal)?
    }

    fn load(&self, user: &str) -> Result<Option<UserRecord>, ServiceError> {
        self.store
            .load(user)
            .map_err(|e| self.storage_error(user, e))
    }

    fn save(&self, rec: &mut UserRecord) -> Result<(), ServiceError> {
        rec.updated_at = self.clock.now();
        self.store
            .save(rec)
            .map_err(|e| self.storage_error(rec.display_name(), e))
    }

    /// Logs a storage failure once, clearly, and turns it into the bus error.
    fn storage_error(&self, user: &str, e: Error) -> ServiceError {
        let level = Level::Error;
        self.audit.log(
            level,
            &format!(
                "event=storage-error user={} error=\"{}\"",
                crate::audit::clean(user),
                e
            ),
        );
        e.into()
    }

    fn corrupt(&self, user: &str, reason: impl std::fmt::Display) -> ServiceError {
        self.storage_error(
            user,
            Error::Corrupt {
                user: user.to_string(),
                reason: reason.to_string(),
            },
        )
    }

    /// The secret of `f`, a factor of `rec`.
    fn open_totp(
        &self,
        rec: &UserRecord,
        f: &TotpFactor,
    ) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
        crypto::open(&self.key, rec.bound_to(), &f.id, &f.secret)
            .map_err(|e| self.corrupt(rec.display_name(), e))
    }

    fn params_of(&self, user: &str, f: &TotpFactor) -> Result<Params, ServiceError> {
        let algorithm = totp::algorithm(&f.algorithm)
            .ok_or_else(|| self.corrupt(user, format!("unknown algorithm {:?}", f.algorithm)))?;
        Ok(Params {
            algorithm,
            digits: f.digits,
            period: f.period,
        })
    }

    fn new_params(&self) -> Params {
        Params {
            algorithm: self.config.totp.algorithm.to_totp(),
            digits: self.config.totp.digits,
            period: self.config.totp.period_secs,
        }
    }

    /// Counts the call against a non-root caller's allowance (root is every
    /// PAM login and is limited per source instead); the permit is held
    /// until the call is answered.
    fn admit(&self, caller: &Caller) -> Result<Option<Permit<'_>>, ServiceError> {
        if caller.is_root() {
            return Ok(None);
        }
        self.callers
            .admit(caller.uid, self.clock.now())
            .map(Some)
            .map_err(|why| {
                if let Some(held) = self
                    .audit
                    .admit(&format!("too-many:{}", caller.uid), self.clock.now())
                {
                    self.audit.log(
                        Level::Warning,
                        &format!(
                            "event=caller-limited caller_uid={} reason=\"{why}\"{}",
                            caller.uid,
                            if held > 0 {
                                format!(" suppressed={held}")
                            } else {
                                String::new()
                            }
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

    /// The record of `account`: under its uid key, or (once, moved there)
    /// under the name earlier versions filed it by.
    fn load_account(&self, account: &Account) -> Result<Option<UserRecord>, ServiceError> {
        let key = account.key();
        // Errors name the account, not its key: "otpgate reset alice" is
        // what the administrator can act on.
        let loaded = self.store.load(&key).map_err(|e| match e {
            Error::Corrupt { reason, .. } => Error::Corrupt {
                user: account.name.clone(),
                reason,
            },
            other => other,
        });
        if let Some(rec) = loaded.map_err(|e| self.storage_error(&account.name, e))? {
            return Ok(Some(rec));
        }
        self.migrate_legacy(&account.name, account)
    }

    /// Moves a record filed under a user name to its account's uid key,
    /// keeping what its secrets are bound to. The new record is durable
    /// before the old one goes, so a crash in between loses nothing.
    fn migrate_legacy(
        &self,
        legacy: &str,
        account: &Account,
    ) -> Result<Option<UserRecord>, ServiceError> {
        if !crate::store::valid_key(legacy) || accounts::uid_of_key(legacy).is_some() {
            return Ok(None);
        }
        let Some(mut rec) = self.load(legacy)? else {
            return Ok(None);
        };
        if rec.binding.is_none() {
            rec.binding = Some(rec.user.clone());
        }
        rec.user = account.key();
        rec.name = Some(account.name.clone());
        self.save(&mut rec)?;
        self.store
            .delete(legacy)
            .map_err(|e| self.storage_error(legacy, e))?;
        self.audit.log(
            Level::Notice,
            &format!(
                "event=record-moved from={} to={} user={}",
                crate::audit::clean(legacy),
                account.key(),
                crate::audit::clean(&account.name)
            ),
        );
        Ok(Some(rec))
    }

    /// At start: moves every record still filed under a name whose account
    /// the name service knows to its uid key (a record of a name it does
    /// not know stays, and is moved when the name resolves again).
    pub async fn migrate_legacy_records(self: &Arc<Self>) -> Result<usize, ServiceError> {
        let this = Arc::clone(self);
        self.blocking(move || {
            let mut moved = 0;
            let keys = this
                .store
                .users()
                .map_err(|e| this.storage_error("*", e))?;
            for key in keys.iter().filter(|k| accounts::uid_of_key(k).is_none()) {
                let Ok(Some(account)) = this.accounts.lookup(key) else {
                    continue;
                };
                if this.load(&account.key())?.is_some() {
                    this.audit.log(
                        Level::Warning,
                        &format!(
                            "event=record-not-moved from={} user={} reason=\"{} already has a record\"",
                            crate::audit::clean(key),
                            crate::audit::clean(&account.name),
                            account.key()
                        ),
                    );
                    continue;
                }
                if this.migrate_legacy(key, &account)?.is_some() {
                    moved += 1;
                }
            }
            Ok(moved)
        })
        .await?
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
                    if held > 0 {
                        format!(" suppressed={held}")
                    } else {
                        String::new()
                    }
                ),
            )
        })
    }

    // ---- Auth ---------------------------------------------------------

    pub async fn challenge(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        ctx: Context,
    ) -> Result<ChallengeOutcome, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Auth, user).await?;
        let uid = caller.uid;
        let (a, c) = (account.clone(), ctx.clone());
        let prepared = self
            .run(Some(&account.key()), move |e| {
                e.challenge_locked(&a, &c, uid)
            })
            .await?;
        match prepared {
            Prepared::Answer(outcome) => Ok(outcome),
            Prepared::Mail(mail, outcome) => {
                // The prompt must not wait for the mail relay (a slow one
                // would run into the module's deadline, and a deadline is a
                // refusal): the code's hash is on disk, the mail goes out
                // now, and a failure is reported at Verify.
                let purpose = Purpose::Login {
                    service: ctx.service.clone(),
                };
                let this = Arc::clone(self);
                self.blocking.spawn(async move {
                    let _ = this.send_mail(&account, mail, purpose, &ctx, uid).await;
                });
                Ok(outcome)
            }
        }
    }

    /// Under the user's lock: what Challenge answers, and for an e-mail
    /// user whose code must be (re)sent, the code to mail. The new code's
    /// hash is on disk before the mail leaves. Whatever happens to the
    /// mail, the user is prompted: a backup code always works.
    fn challenge_locked(
        &self,
        account: &Account,
        ctx: &Context,
        caller_uid: u32,
    ) -> Result<Prepared<ChallengeOutcome>, ServiceError> {
        let now = self.clock.now();
        let user = account.name.as_str();
        let mut rec = match self.load_account(account)? {
            Some(r) if r.enrolled() => r,
            _ => {
                return Ok(Prepared::Answer(ChallengeOutcome {
                    state: ChallengeState::NotEnrolled,
                    method: None,
                    locked_until: 0,
                    message: format!("{user} has no second factor enrolled"),
                }))
            }
        };
        let method = rec.method();
        if rec.locked_until > now {
            return Ok(Prepared::Answer(ChallengeOutcome {
                state: ChallengeState::Locked,
                method,
                locked_until: rec.locked_until,
                message: "Too many wrong codes: the second factor is locked.".into(),
            }));
        }
        let code_required = |message: String| ChallengeOutcome {
            state: ChallengeState::CodeRequired,
            method,
            locked_until: 0,
            message,
        };
        let Some(address) = rec.email().map(|f| f.address.clone()) else {
            return Ok(Prepared::Answer(code_required(String::new())));
        };
        let cfg = &self.config.email;
        let masked = email::mask(&address);
        let sent_to = format!("A code was sent to {masked}.");
        let live = rec
            .email_code
            .as_ref()
            .filter(|c| now < c.expires_at)
            .is_some();
        // A login flood must not become a mail flood: within the cooldown
        // the code already sent stands.
        let cooling = rec
            .email_code
            .as_ref()
            .is_some_and(|c| now < c.expires_at && now < c.sent_at + cfg.resend_cooldown_secs);
        if cooling {
            return Ok(Prepared::Answer(code_required(sent_to)));
        }
        if self.mailer.is_none() {
            return Ok(Prepared::Answer(code_required(if live {
                sent_to
            } else {
                "E-mail codes are off on this host, so none was sent: use a backup code.".into()
            })));
        }
        if let Some(why) = self.recent_mail_failure(&account.key(), now) {
            // Nor does a broken relay get hammered: one try per cooldown.
            return Ok(Prepared::Answer(code_required(format!(
                "No code could be mailed to {masked} ({why}): use a backup code, or try again in a minute."
            ))));
        }
        rec.email_sends.retain(|&t| t + 3600 > now);
        if rec.email_sends.len() >= EMAIL_SENDS_PER_HOUR {
            self.audit.event(
                Level::Warning,
                "email-send-limited",
                user,
                ctx,
                caller_uid,
                "",
            );
            return Ok(Prepared::Answer(code_required(if live {
                sent_to
            } else {
                "Too many codes were mailed in the last hour, so no new one was sent: use a backup code.".into()
            })));
        }
        let code = email::new_code().map_err(internal)?;
        let hash = email::code_hash(&self.key, rec.bound_to(), &code);
        rec.email_code = Some(EmailCode {
            hash: hash.clone(),
            expires_at: now + cfg.code_ttl_secs,
            sent_at: now,
        });
        rec.email_sends.push(now);
        rec.name = Some(account.name.clone());
        self.save(&mut rec)?;
        Ok(Prepared::Mail(
            Mail {
                address,
                code,
                hash,
            },
            code_required(sent_to),
        ))
    }

    /// Why the last login mail to this user failed, if that was within the
    /// resend cooldown.
    fn recent_mail_failure(&self, key: &str, now: u64) -> Option<String> {
        let map = self.mail_failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| now < at + self.config.email.resend_cooldown_secs.max(1))
            .map(|(_, why)| why.clone())
    }

    /// Mails a code prepared under the lock, without holding it: a slow
    /// mail server delays no one else. If the mail cannot be sent, the
    /// stored code (or pending enrolment) is withdrawn and not counted,
    /// and the error says why.
    async fn send_mail(
        self: &Arc<Self>,
        account: &Account,
        mail: Mail,
        purpose: Purpose,
        ctx: &Context,
        caller_uid: u32,
    ) -> Result<(), ServiceError> {
        let user = account.name.as_str();
        let masked = email::mask(&mail.address);
        let enrolment = matches!(purpose, Purpose::Enrolment);
        let ttl = self.config.email.code_ttl_secs;
        // lettre's transport runs on Tokio; the bus may be on another executor.
        let sent = {
            let this = Arc::clone(self);
            let (address, code) = (mail.address.clone(), mail.code.clone());
            self.blocking
                .spawn(async move {
                    match this.mailer.as_ref() {
                        Some(m) => m.send(&address, &code, purpose, ttl).await,
                        None => Err("the e-mail factor is off".into()),
                    }
                })
                .await
                .map_err(internal)?
        };
        match sent {
            Ok(()) => {
                self.audit.event(
                    Level::Info,
                    "email-sent",
                    user,
                    ctx,
                    caller_uid,
                    &format!("to={}", crate::audit::clean(&masked)),
                );
                Ok(())
            }
            Err(reason) => {
                let reason = crate::audit::clean(&reason);
                self.audit.event(
                    Level::Error,
                    "email-send-failed",
                    user,
                    ctx,
                    caller_uid,
                    &format!("to={} error=\"{}\"", crate::audit::clean(&masked), reason),
                );
                let key = account.key();
                if !enrolment {
                    let mut map = self.mail_failures.lock().unwrap_or_else(|p| p.into_inner());
                    if map.len() >= 4096 {
                        map.clear();
                    }
                    map.insert(
                        key.clone(),
                        (self.clock.now(), format!("mail server: {reason}")),
                    );
                }
                let hash = mail.hash;
                self.run(Some(&key.clone()), move |e| {
                    e.withdraw_code(&key, &hash, enrolment)
                })
                .await?;
                Err(ServiceError::Unavailable(format!(
                    "the code could not be mailed to {masked} (mail server: {reason}); try again later or use a backup code"
                )))
            }
        }
    }

    /// Takes back a code that was never mailed, and its place in the
    /// hourly count.
    fn withdraw_code(&self, key: &str, hash: &[u8], enrolment: bool) -> Result<(), ServiceError> {
        let Some(mut rec) = self.load(key)? else {
            return Ok(());
        };
        let sent_at = if enrolment {
            let ours = rec
                .pending
                .as_ref()
                .and_then(|p| p.code.as_ref())
                .filter(|c| c.hash == hash)
                .map(|c| c.sent_at);
            if ours.is_some() {
                rec.pending = None;
            }
            ours
        } else {
            let ours = rec
                .email_code
                .as_ref()
                .filter(|c| c.hash == hash)
                .map(|c| c.sent_at);
            if ours.is_some() {
                rec.email_code = None;
            }
            ours
        };
        let Some(sent_at) = sent_at else {
            return Ok(());
        };
        if let Some(i) = rec.email_sends.iter().rposition(|&t| t == sent_at) {
            rec.email_sends.remove(i);
        }
        self.save(&mut rec)
    }

    pub async fn verify(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        code: Zeroizing<String>,
        ctx: Context,
    ) -> Result<VerifyOutcome, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Auth, user).await?;
        let uid = caller.uid;
        let a = account.clone();
        let mut outcome = self
            .run(Some(&account.key()), move |e| {
                let mut rec = match e.load_account(&a)? {
                    Some(r) if r.enrolled() => r,
                    _ => {
                        return Ok(VerifyOutcome::plain(
                            VerifyResult::NotEnrolled,
                            format!("{} has no second factor enrolled", a.name),
                        ))
                    }
                };
                rec.name = Some(a.name.clone());
                e.verify_locked(&mut rec, &code, &ctx, uid)
            })
            .await?;
        if outcome.result != VerifyResult::Ok {
            if let Some(why) = self.recent_mail_failure(&account.key(), self.clock.now()) {
                outcome.notice = format!("No code could be mailed ({why}): use a backup code.");
            }
        }
        Ok(outcome)
    }

    /// The verification core, for a loaded record under the user's lock.
    /// Saves before returning whenever anything changed.
    fn verify_locked(
        &self,
        rec: &mut UserRecord,
        code: &str,
        ctx: &Context,
        caller_uid: u32,
    ) -> Result<VerifyOutcome, ServiceError> {
        let now = self.clock.now();
        let user = rec.display_name().to_string();
        let bind = rec.bound_to().to_string();
        let mut dirty = false;
        if rec.locked_until != 0 && rec.locked_until <= now {
            // The lock ran out: a fresh set of tries (the streak stays).
            rec.locked_until = 0;
            rec.failures = 0;
            dirty = true;
        }
        if rec.locked_until > now {
            if dirty {
                self.save(rec)?;
            }
            self.audit.event_throttled(
                &format!("locked:{user}"),
                now,
                Level::Notice,
                "verify-locked",
                &user,
                ctx,
                caller_uid,
            );
            return Ok(VerifyOutcome::locked(
                "Too many wrong codes: the second factor is locked.",
                rec.locked_until,
            ));
        }

        // Only root's callers (the PAM module in sshd, sudo, login) report
        // a remote host worth trusting; a user's own caller could name any.
        let source = if caller_uid == 0 {
            ctx.rhost.as_str()
        } else {
            ""
        };
        if let Some(until) = self
            .sources
            .blocked_until(&self.config.lockout, source, now)
        {
            if dirty {
                self.save(rec)?;
            }
            self.audit.event_throttled(
                &format!("source:{source}"),
                now,
                Level::Warning,
                "verify-source-blocked",
                &user,
                ctx,
                caller_uid,
            );
            return Ok(VerifyOutcome::locked(
                "Too many failed logins from this host: try again later.",
                until,
            ));
        }

        let mut result = VerifyResult::Invalid;
        let mut method = None;
        let candidate;
        match rec.factors.first().cloned() {
            Some(Factor::Totp(factor)) => {
                let params = self.params_of(&user, &factor)?;
                candidate = totp::normalise(code, params.digits);
                if let Some(t) = &candidate.totp {
                    let secret = self.open_totp(rec, &factor)?;
                    let step = totp::matched_step(&secret, params, self.config.totp.window, t, now);
                    if let Some(step) = step {
                        if factor.last_step.is_some_and(|last| step <= last) {
                            result = VerifyResult::Replayed;
                        } else {
                            result = VerifyResult::Ok;
                            method = Some(MethodUsed::Totp);
                            rec.totp_mut().expect("checked above").last_step = Some(step);
                        }
                    }
                }
            }
            Some(Factor::Email(_)) => {
                candidate = totp::normalise(code, EMAIL_CODE_DIGITS);
                if let (Some(t), Some(sent)) = (&candidate.totp, rec.email_code.clone()) {
                    if now >= sent.expires_at {
                        // Said once, then forgotten: the next try is plain wrong.
                        rec.email_code = None;
                        self.save(rec)?;
                        self.audit.event(
                            Level::Notice,
                            "verify-expired",
                            &user,
                            ctx,
                            caller_uid,
                            "",
                        );
                        let mut o = VerifyOutcome::plain(
                            VerifyResult::Expired,
                            "That code has expired: log in again to get a new one.",
                        );
                        o.attempts_left = Some(
                            self.config
                                .lockout
                                .max_failures
                                .saturating_sub(rec.failures),
                        );
                        return Ok(o);
                    }
                    if email::code_matches(&self.key, &bind, t, &sent.hash) {
                        result = VerifyResult::Ok;
                        method = Some(MethodUsed::Email);
                        rec.email_code = None;
                    }
                }
            }
            None => return Err(self.corrupt(&user, "no factor")),
        }
        if result == VerifyResult::Invalid {
            if let (Some(b), Some(set)) = (&candidate.backup, &rec.backup) {
                if let Some(i) = backup::find(&self.key, &bind, set, b).map_err(internal)? {
                    rec.backup.as_mut().expect("checked above").hashes.remove(i);
                    result = VerifyResult::Ok;
                    method = Some(MethodUsed::Backup);
                }
            }
        }

        let max = self.config.lockout.max_failures;
        let mut outcome = VerifyOutcome::plain(result, "");
        outcome.method_used = method;
        if result == VerifyResult::Ok {
            rec.failures = 0;
            rec.lock_streak = 0;
            let day = rec.today(now);
            day.successes += 1;
            if method == Some(MethodUsed::Backup) {
                day.backup_used += 1;
            }
            self.save(rec)?;
            let left = rec.backup_codes_left() as u32;
            outcome.backup_codes_left = Some(left);
            outcome.attempts_left = Some(max);
            let m = method.map(|m| m.as_str()).unwrap_or("");
            self.audit.event(
                Level::Info,
                "verify-ok",
                &user,
                ctx,
                caller_uid,
                &format!("method={m}"),
            );
            if method == Some(MethodUsed::Backup) {
                self.audit.event(
                    Level::Notice,
                    "backup-code-used",
                    &user,
                    ctx,
                    caller_uid,
                    &format!("backup_codes_left={left}"),
                );
                outcome.message = format!("Backup code accepted; {left} left.");
            }
            return Ok(outcome);
        }

        rec.failures = rec.failures.saturating_add(1);
        rec.today(now).failures += 1;
        let locking = rec.failures >= max;
        if locking {
            rec.lock_streak = rec.lock_streak.saturating_add(1);
            rec.locked_until = now + lock_duration(&self.config.lockout, rec.lock_streak);
            rec.today(now).lockouts += 1;
        }
        self.save(rec)?;
        if self.sources.failure(&self.config.lockout, source, now) {
            self.audit.event(
                Level::Warning,
                "source-limited",
                &user,
                ctx,
                caller_uid,
                &format!("window_secs={}", self.config.lockout.source_window_secs),
            );
        }
        let event = if result == VerifyResult::Replayed {
            "verify-replayed"
        } else {
            "verify-failed"
        };
        self.audit.event(
            Level::Notice,
            event,
            &user,
            ctx,
            caller_uid,
            &format!("failures={}", rec.failures),
        );
        outcome.attempts_left = Some(max.saturating_sub(rec.failures));
        outcome.message = if result == VerifyResult::Replayed {
            "That code was already used; wait for the next one.".into()
        } else {
            "Wrong code.".into()
        };
        if locking {
            outcome.locked_until = rec.locked_until;
            self.audit.event(
                Level::Warning,
                "locked",
                &user,
                ctx,
                caller_uid,
                &format!("until={} streak={}", rec.locked_until, rec.lock_streak),
            );
        }
        Ok(outcome)
    }

    // ---- Manager ------------------------------------------------------

    pub async fn enroll(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        method: Option<String>,
        address: Option<String>,
    ) -> Result<Enrollment, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let method = match method.as_deref() {
            None | Some("totp") => Method::Totp,
            Some("email") => Method::Email,
            Some(other) => {
                return Err(ServiceError::InvalidArgument(format!(
                    "unknown method {:?}: use totp or email",
                    crate::audit::clean(other)
                )))
            }
        };
        if method == Method::Email {
            if self.mailer.is_none() {
                return Err(ServiceError::InvalidArgument(
                    "the e-mail factor is off on this host: an administrator sets [email] smtp_url"
                        .into(),
                ));
            }
            match &address {
                Some(a) if email::valid_address(a) => {}
                Some(a) => {
                    return Err(ServiceError::InvalidArgument(format!(
                        "{:?} is not an e-mail address",
                        crate::audit::clean(a)
                    )))
                }
                None => {
                    return Err(ServiceError::InvalidArgument(
                        "the e-mail method needs an address (--email ADDR)".into(),
                    ))
                }
            }
        } else if address.is_some() {
            return Err(ServiceError::InvalidArgument(
                "an e-mail address goes with --method email".into(),
            ));
        }
        let uid = caller.uid;
        let a = account.clone();
        let prepared = self
            .run(Some(&account.key()), move |e| {
                e.enroll_locked(&a, uid, method, address)
            })
            .await?;
        match prepared {
            Prepared::Answer(e) => Ok(e),
            Prepared::Mail(mail, answer) => {
                let ctx = Context::default();
                self.send_mail(&account, mail, Purpose::Enrolment, &ctx, uid)
                    .await?;
                Ok(answer)
            }
        }
    }

    fn enroll_locked(
        &self,
        account: &Account,
        caller_uid: u32,
        method: Method,
        address: Option<String>,
    ) -> Result<Prepared<Enrollment>, ServiceError> {
        let user = account.name.as_str();
        let now = self.clock.now();
        let mut rec = self
            .load_account(account)?
            .unwrap_or_else(|| UserRecord::new(&account.key(), now));
        rec.name = Some(account.name.clone());
        if rec.enrolled() {
            return Err(ServiceError::AlreadyEnrolled(format!(
                "{user} is already enrolled: disable it first (`otpgate disable`, or an administrator's `otpgate reset {user}`)"
            )));
        }
        let id = crypto::hex(&crypto::random_bytes::<8>().map_err(internal)?);
        let expires = now + PENDING_TTL_SECS;
        if let (Method::Email, Some(address)) = (method, address) {
            // Enrolment mails count against the same per-user limits as
            // login mails: any local user may start an enrolment of its own.
            let cfg = &self.config.email;
            let last = rec
                .pending
                .as_ref()
                .and_then(|p| p.code.as_ref())
                .map(|c| c.sent_at);
            if let Some(last) = last.filter(|&t| now < t + cfg.resend_cooldown_secs) {
                return Err(ServiceError::TooManyRequests(format!(
                    "a code was mailed for this enrolment {} s ago: wait {} s before asking for another",
                    now - last,
                    last + cfg.resend_cooldown_secs - now
                )));
            }
            rec.email_sends.retain(|&t| t + 3600 > now);
            if rec.email_sends.len() >= EMAIL_SENDS_PER_HOUR {
                self.audit.event(
                    Level::Warning,
                    "email-send-limited",
                    user,
                    &Context::default(),
                    caller_uid,
                    "purpose=enrolment",
                );
                return Err(ServiceError::TooManyRequests(format!(
                    "{EMAIL_SENDS_PER_HOUR} codes were mailed for {user} in the last hour: try again later"
                )));
            }
            rec.email_sends.push(now);
            let code = email::new_code().map_err(internal)?;
            let hash = email::code_hash(&self.key, rec.bound_to(), &code);
            rec.pending = Some(Pending {
                factor: Factor::Email(EmailFactor {
                    id,
                    address: address.clone(),
                    created_at: now,
                }),
                started_by: caller_uid,
                expires_at: expires,
                attempts: 0,
                code: Some(EmailCode {
                    hash: hash.clone(),
                    expires_at: expires,
                    sent_at: now,
                }),
            });
            self.save(&mut rec)?;
            self.audit.event(
                Level::Notice,
                "enroll-started",
                user,
                &Context::default(),
                caller_uid,
                &format!(
                    "method=email to={}",
                    crate::audit::clean(&email::mask(&address))
                ),
            );
            return Ok(Prepared::Mail(
                Mail {
                    address: address.clone(),
                    code,
                    hash,
                },
                Enrollment::Email {
                    sent_to: email::mask(&address),
                    expires,
                },
            ));
        }
        let secret =
            Zeroizing::new(crypto::random_bytes::<{ totp::SECRET_LEN }>().map_err(internal)?);
        let sealed =
            crypto::seal(&self.key, rec.bound_to(), &id, secret.as_ref()).map_err(internal)?;
        let params = self.new_params();
        rec.pending = Some(Pending {
            factor: Factor::Totp(TotpFactor {
                id,
                secret: sealed,
                algorithm: self.config.totp.algorithm.as_str().to_string(),
                digits: params.digits,
                period: params.period,
                last_step: None,
                created_at: now,
                origin: "enrolled".into(),
            }),
            started_by: caller_uid,
            expires_at: expires,
            attempts: 0,
            code: None,
        });
        self.save(&mut rec)?;
        self.audit.event(
            Level::Notice,
            "enroll-started",
            user,
            &Context::default(),
            caller_uid,
            "method=totp",
        );
        let b32 = totp::base32(secret.as_ref());
        let account = format!("{user}@{}", self.hostname);
        let uri = totp::otpauth_uri(
            &self.config.totp.issuer,
            &account,
            &b32,
            self.config.totp.algorithm.as_str(),
            params.digits,
            params.period,
        );
        Ok(Prepared::Answer(Enrollment::Totp {
            uri,
            secret: b32,
            expires,
        }))
    }

    pub async fn confirm(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        code: Zeroizing<String>,
    ) -> Result<Vec<Zeroizing<String>>, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let uid = caller.uid;
        let a = account.clone();
        self.run(Some(&account.key()), move |e| {
            e.confirm_locked(&a, uid, &code)
        })
        .await
    }

    fn confirm_locked(
        &self,
        account: &Account,
        caller_uid: u32,
        code: &str,
    ) -> Result<Vec<Zeroizing<String>>, ServiceError> {
        let now = self.clock.now();
        let user = account.name.as_str();
        let Some(mut rec) = self.load_account(account)? else {
            return Err(ServiceError::NoPendingEnrollment(format!(
                "{user} has no enrolment waiting: start one with `otpgate enroll`"
            )));
        };
        let Some(pending) = rec.pending.clone() else {
            return Err(ServiceError::NoPendingEnrollment(format!(
                "{user} has no enrolment waiting: start one with `otpgate enroll`"
            )));
        };
        if pending.expires_at <= now {
            rec.pending = None;
            self.save(&mut rec)?;
            return Err(ServiceError::PendingExpired(format!(
                "the enrolment of {user} expired (10 minutes): start again with `otpgate enroll`"
            )));
        }
        if pending.started_by != caller_uid && caller_uid != 0 {
            return Err(ServiceError::AccessDenied(format!(
                "the enrolment of {user} was started by uid {}; only that uid or root may confirm it",
                pending.started_by
            )));
        }
        let confirmed = match pending.factor {
            Factor::Totp(mut factor) => {
                let params = self.params_of(user, &factor)?;
                let secret = self.open_totp(&rec, &factor)?;
                let step = totp::normalise(code, params.digits).totp.and_then(|c| {
                    totp::matched_step(&secret, params, self.config.totp.window, &c, now)
                });
                step.map(|step| {
                    // The confirming code is used: it cannot log in afterwards.
                    factor.last_step = Some(step);
                    Factor::Totp(factor)
                })
            }
            Factor::Email(factor) => {
                let sent = pending.code.as_ref();
                let right = totp::normalise(code, EMAIL_CODE_DIGITS)
                    .totp
                    .zip(sent)
                    .is_some_and(|(c, s)| {
                        email::code_matches(&self.key, rec.bound_to(), &c, &s.hash)
                    });
                right.then_some(Factor::Email(factor))
            }
        };
        let Some(factor) = confirmed else {
            let p = rec.pending.as_mut().expect("checked above");
            p.attempts += 1;
            let left = PENDING_MAX_ATTEMPTS.saturating_sub(p.attempts);
            if left == 0 {
                rec.pending = None;
            }
            self.save(&mut rec)?;
            self.audit.event(
                Level::Notice,
                "enroll-wrong-code",
                user,
                &Context::default(),
                caller_uid,
                "",
            );
            return Err(ServiceError::InvalidCode(if left == 0 {
                "wrong code, and too many of them: the enrolment was dropped; start again with `otpgate enroll`".into()
            } else {
                format!("wrong code: check the code (and for an app, its clock) and try again ({left} tries left)")
            }));
        };
        let method = match &factor {
            Factor::Totp(_) => "totp",
            Factor::Email(_) => "email",
        };
        let codes = backup::generate(self.config.backup_codes.count).map_err(internal)?;
        rec.backup =
            Some(backup::hash_set(&self.key, rec.bound_to(), &codes, now).map_err(internal)?);
        rec.factors = vec![factor];
        rec.pending = None;
        rec.email_code = None;
        rec.failures = 0;
        rec.locked_until = 0;
        rec.lock_streak = 0;
        self.save(&mut rec)?;
        self.audit.event(
            Level::Notice,
            "enroll-confirmed",
            user,
            &Context::default(),
            caller_uid,
            &format!("method={method} backup_codes={}", codes.len()),
        );
        Ok(codes)
    }

    /// The name to show for a record: its uid's name now (a rename shows
    /// the new name), else the name it was last written under.
    fn name_of(&self, rec: &UserRecord) -> String {
        accounts::uid_of_key(&rec.user)
            .and_then(|uid| self.accounts.name_of(uid))
            .unwrap_or_else(|| rec.display_name().to_string())
    }

    fn status_of(&self, rec: &UserRecord, name: String) -> Status {
        let now = self.clock.now();
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
            locked_until: if locked { rec.locked_until } else { 0 },
            // An expired lock's count is reset at the next attempt.
            failures: if rec.locked_until != 0 && !locked {
                0
            } else {
                rec.failures
            },
        }
    }

    pub async fn status(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
    ) -> Result<Status, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let a = account.clone();
        self.run(Some(&account.key()), move |e| {
            Ok(match e.load_account(&a)? {
                Some(rec) => e.status_of(&rec, a.name.clone()),
                None => e.status_of(&UserRecord::new(&a.key(), 0), a.name.clone()),
            })
        })
        .await
    }

    /// For Disable and RegenerateBackupCodes: administrators need no code,
    /// a user proves the second factor (counted like any other attempt).
    fn prove(&self, caller: &Caller, rec: &mut UserRecord, code: &str) -> Result<(), ServiceError> {
        if caller.is_admin() {
            return Ok(());
        }
        if code.is_empty() {
            return Err(ServiceError::InvalidCode(
                "a current code (or a backup code) is required: pass --code".into(),
            ));
        }
        let o = self.verify_locked(rec, code, &Context::default(), caller.uid)?;
        match o.result {
            VerifyResult::Ok => Ok(()),
            VerifyResult::Locked => Err(ServiceError::Locked(format!(
                "too many wrong codes: locked until {} (unix time)",
                o.locked_until
            ))),
            _ => Err(ServiceError::InvalidCode(format!(
                "{} {} attempts left.",
                o.message,
                o.attempts_left.unwrap_or(0)
            ))),
        }
    }

    fn load_enrolled(&self, account: &Account) -> Result<UserRecord, ServiceError> {
        match self.load_account(account)? {
            Some(r) if r.enrolled() => Ok(r),
            _ => Err(ServiceError::NotEnrolled(format!(
                "{} has no second factor enrolled",
                account.name
            ))),
        }
    }

    pub async fn disable(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        code: Zeroizing<String>,
    ) -> Result<(), ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let c = caller.clone();
        let a = account.clone();
        self.run(Some(&account.key()), move |e| {
            let mut rec = e.load_enrolled(&a)?;
            e.prove(&c, &mut rec, &code)?;
            e.store
                .delete(&rec.user)
                .map_err(|err| e.storage_error(&a.name, err))?;
            e.audit.event(
                Level::Notice,
                "disabled",
                &a.name,
                &Context::default(),
                c.uid,
                "",
            );
            Ok(())
        })
        .await
    }

    pub async fn regenerate_backup_codes(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        code: Zeroizing<String>,
    ) -> Result<Vec<Zeroizing<String>>, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let c = caller.clone();
        let a = account.clone();
        self.run(Some(&account.key()), move |e| {
            let mut rec = e.load_enrolled(&a)?;
            e.prove(&c, &mut rec, &code)?;
            let now = e.clock.now();
            let codes = backup::generate(e.config.backup_codes.count).map_err(internal)?;
            rec.backup =
                Some(backup::hash_set(&e.key, rec.bound_to(), &codes, now).map_err(internal)?);
            e.save(&mut rec)?;
            e.audit.event(
                Level::Notice,
                "backup-codes-regenerated",
                &a.name,
                &Context::default(),
                c.uid,
                &format!("count={}", codes.len()),
            );
            Ok(codes)
        })
        .await
    }

    // ---- Admin --------------------------------------------------------

    /// Every user with a record; an unreadable record is listed with its
    /// error instead of failing the whole list.
    pub async fn list_users(
        self: &Arc<Self>,
        caller: &Caller,
    ) -> Result<Vec<Result<Status, (String, String)>>, ServiceError> {
        let _permit = self.admit(caller)?;
        self.authorize(caller, Interface::Admin, None)?;
        self.run(None, |e| {
            let users = e.store.users().map_err(|err| e.storage_error("*", err))?;
            Ok(users
                .into_iter()
                .map(|u| {
                    let shown = accounts::uid_of_key(&u)
                        .and_then(|uid| e.accounts.name_of(uid))
                        .unwrap_or_else(|| u.clone());
                    match e.store.load(&u) {
                        Ok(Some(rec)) => Ok(e.status_of(&rec, e.name_of(&rec))),
                        Ok(None) => Err((shown, "removed while listing".into())),
                        Err(err) => Err((shown, err.to_string())),
                    }
                })
                .collect())
        })
        .await
    }

    pub async fn unlock(self: &Arc<Self>, caller: &Caller, user: &str) -> Result<(), ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Admin, user).await?;
        let uid = caller.uid;
        let a = account.clone();
        self.run(Some(&account.key()), move |e| {
            let mut rec = e.load_enrolled(&a)?;
            rec.failures = 0;
            rec.locked_until = 0;
            rec.lock_streak = 0;
            e.save(&mut rec)?;
            e.audit.event(
                Level::Notice,
                "unlocked",
                &a.name,
                &Context::default(),
                uid,
                "",
            );
            Ok(())
        })
        .await
    }

    /// Removes the user's record, readable or not: this is also how an
    /// administrator recovers a user whose record is corrupt, and clears
    /// the record of an account the name service no longer knows (by the
    /// name `otpgate list` shows for it).
    pub async fn reset(self: &Arc<Self>, caller: &Caller, user: &str) -> Result<(), ServiceError> {
        let permit = self.admit(caller)?;
        self.authorize(caller, Interface::Admin, None)?;
        let keys = match self.account(user).await {
            Ok(account) => vec![account.key(), account.name],
            Err(ServiceError::InvalidUser(_)) => {
                let name = user.to_string();
                self.run(None, move |e| Ok(e.orphan_keys(&name))).await?
            }
            Err(other) => return Err(other),
        };
        let (name, uid) = (user.to_string(), caller.uid);
        let Some(lock_key) = keys.first().cloned() else {
            return Err(ServiceError::InvalidUser(format!(
                "there is no user {} on this system, nor a record under that name",
                crate::audit::clean(user)
            )));
        };
        self.run(Some(&lock_key), move |e| {
            let mut removed = 0;
            for key in keys.iter().filter(|k| crate::store::valid_key(k)) {
                let exists = match e.store.load(key) {
                    Ok(r) => r.is_some(),
                    Err(Error::Corrupt { .. }) => true,
                    Err(err) => return Err(e.storage_error(&name, err)),
                };
                if exists {
                    e.store
                        .delete(key)
                        .map_err(|err| e.storage_error(&name, err))?;
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
        .await?;
        drop(permit);
        Ok(())
    }

    /// The keys of records shown under `name` whose account the name
    /// service does not know (any more).
    fn orphan_keys(&self, name: &str) -> Vec<String> {
        let Ok(keys) = self.store.users() else {
            return Vec::new();
        };
        keys.into_iter()
            .filter(|key| match accounts::uid_of_key(key) {
                None => key == name,
                Some(uid) => {
                    self.accounts.name_of(uid).is_none()
                        && matches!(self.store.load(key), Ok(Some(r)) if r.display_name() == name)
                }
            })
            .collect()
    }

    pub async fn stats(self: &Arc<Self>, caller: &Caller) -> Result<Stats, ServiceError> {
        let _permit = self.admit(caller)?;
        self.authorize(caller, Interface::Admin, None)?;
        self.run(None, |e| {
            let now = e.clock.now();
            let first_day = (now / SECS_PER_DAY).saturating_sub(STATS_DAYS - 1);
            let mut s = Stats::default();
            for u in e.store.users().map_err(|err| e.storage_error("*", err))? {
                let Ok(Some(rec)) = e.store.load(&u) else {
                    continue;
                };
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
                }
            }
            Ok(s)
        })
        .await
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
        let uid = caller.uid;
        let a = account.clone();
        self.run(Some(&account.key()), move |e| {
            let ga = crate::import::parse_google_authenticator(&contents)
                .map_err(|err| ServiceError::InvalidArgument(format!("cannot import: {err}")))?;
            let user = a.name.clone();
            let now = e.clock.now();
            let mut rec = e.load_account(&a)?.unwrap_or_else(|| UserRecord::new(&a.key(), now));
            rec.name = Some(a.name.clone());
            if rec.enrolled() {
                return Err(ServiceError::AlreadyEnrolled(format!(
                    "{user} is already enrolled in otpgate: `otpgate reset {user}` first to replace it"
                )));
            }
            let id = crypto::hex(&crypto::random_bytes::<8>().map_err(internal)?);
            let sealed = crypto::seal(&e.key, rec.bound_to(), &id, &ga.secret).map_err(internal)?;
            rec.factors = vec![Factor::Totp(TotpFactor {
                id,
                secret: sealed,
                algorithm: "SHA1".into(),
                digits: 6,
                period: ga.step_secs,
                last_step: None,
                created_at: now,
                origin: "imported".into(),
            })];
            rec.pending = None;
            rec.backup = Some(backup::hash_set(&e.key, rec.bound_to(), &ga.scratch_codes, now).map_err(internal)?);
            e.save(&mut rec)?;
            let n = ga.scratch_codes.len() as u32;
            e.audit.event(
                Level::Notice,
                "imported",
                &user,
                &Context::default(),
                uid,
                &format!("source=google-authenticator backup_codes={n}"),
            );
            Ok(n)
        })
        .await
    }
}
