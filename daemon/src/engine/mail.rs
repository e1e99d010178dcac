//! Sending a code that a decision issued, without holding anything: a slow
//! mail server delays no one else. A code that could not be sent is taken
//! back (and not counted against the hourly limit); for a login the
//! failure is remembered for the resend cooldown and reported at Verify.

use std::sync::Arc;

use otpgate_proto::ServiceError;
use zeroize::Zeroizing;

use super::{Context, Decided, Engine, Env};
use crate::accounts::Account;
use crate::audit::Level;
use crate::email::{self, Purpose};
use crate::record::UserRecord;
use crate::store::Write;

/// A code to mail once the transaction that issued it is durable.
pub(crate) struct Mail {
    pub address: String,
    pub code: Zeroizing<String>,
    pub hash: Vec<u8>,
}

/// Takes back a code that was never mailed, and its place in the hourly
/// count; a newer code (another login's) is left alone.
pub(crate) fn withdraw(rec: Option<UserRecord>, hash: &[u8], enrolment: bool) -> Decided<()> {
    let Some(mut rec) = rec else {
        return Decided::keep(Ok(()));
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
        return Decided::keep(Ok(()));
    };
    if let Some(i) = rec.email_sends.iter().rposition(|&t| t == sent_at) {
        rec.email_sends.remove(i);
    }
    Decided {
        write: Write::Put(rec),
        answer: Ok(()),
        events: Vec::new(),
    }
}

/// Something the owner of an account with an e-mail address is told by
/// mail, whoever is at the keyboard.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Notice {
    /// Too many wrong codes: the second factor is locked until then.
    Locked { until: u64 },
    /// A backup code was used to log in; this many are left.
    BackupUsed { left: u32 },
}

impl Notice {
    fn text(self, user: &str, host: &str, ctx: &Context, now: u64) -> (String, String) {
        let via = match (ctx.service.is_empty(), ctx.rhost.is_empty()) {
            (false, false) => format!(" through {} from {}", ctx.service, ctx.rhost),
            (false, true) => format!(" through {}", ctx.service),
            (true, false) => format!(" from {}", ctx.rhost),
            (true, true) => String::new(),
        };
        let when = crate::clock::utc(now);
        let not_you =
            "If this was not you, someone may know your password: tell your administrator.";
        match self {
            Notice::Locked { until } => (
                format!("The second factor of {user} is locked"),
                format!(
                    "Too many wrong codes were entered for {user} on {host}{via}, the last at {when} UTC.\n\
                     Logins with a second factor are refused until {} UTC.\n\n{not_you}\n",
                    crate::clock::utc(until)
                ),
            ),
            Notice::BackupUsed { left } => (
                format!("A backup code of {user} was used"),
                format!(
                    "A backup code was used to log in as {user} on {host}{via} at {when} UTC.\n\
                     {left} backup code(s) are left; `otpgate backup-codes` makes new ones.\n\n{not_you}\n"
                ),
            ),
        }
    }
}

impl Engine {
    /// Mails `notice` to the account's address on file (its e-mail
    /// factor), if it has one and mail is on; in the background, so the
    /// login does not wait for the mail server. Text from the caller
    /// (service, remote host) is cleaned to one short line first.
    pub(crate) fn mail_notice(
        self: &Arc<Self>,
        account: &Account,
        ctx: &Context,
        caller_uid: u32,
        notice: Notice,
    ) {
        let Some(sender) = self.mailer.clone() else {
            return;
        };
        let this = Arc::clone(self);
        let account = account.clone();
        let ctx = Context {
            service: crate::audit::clean(&ctx.service),
            rhost: crate::audit::clean(&ctx.rhost),
            ..Context::default()
        };
        self.blocking.spawn(async move {
            let key = account.key();
            let read = key.clone();
            let address = this
                .run(Some(&key), move |e| {
                    let rec = e.store.get(&read).ok().flatten();
                    Ok(rec.and_then(|r| r.email().map(|f| f.address.clone())))
                })
                .await
                .ok()
                .flatten();
            let Some(address) = address else { return };
            let now = this.clock.now();
            let (subject, body) = notice.text(&account.name, &this.hostname, &ctx, now);
            let (level, event, detail) = match sender.send_notice(&address, &subject, &body).await {
                Ok(()) => (
                    Level::Info,
                    "notice-mailed",
                    format!("to={}", email::mask(&address)),
                ),
                Err(why) => (
                    Level::Warning,
                    "notice-mail-failed",
                    format!("error=\"{}\"", crate::audit::clean(&why)),
                ),
            };
            this.audit
                .event(level, event, &account.name, &ctx, caller_uid, &detail);
        });
    }

    /// Why the last login mail to this account failed, if that was within
    /// the resend cooldown.
    pub(crate) fn recent_mail_failure(&self, key: &str, now: u64) -> Option<String> {
        let map = self.mail_failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| now < at + self.config.email.resend_cooldown_secs.max(1))
            .map(|(_, why)| why.clone())
    }

    /// Mails `mail`. On failure the code is withdrawn and the error says
    /// why (Enroll passes it on; a login's is reported at Verify).
    pub(crate) async fn send_mail(
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
            let sender = self.mailer.clone();
            let (address, code) = (mail.address.clone(), mail.code.clone());
            self.blocking
                .spawn(async move {
                    match sender {
                        Some(s) => s.send_code(&address, &code, purpose, ttl).await,
                        None => Err("the e-mail factor is off".into()),
                    }
                })
                .await
                .map_err(super::internal)?
        };
        let reason = match sent {
            Ok(()) => {
                self.audit.event(
                    Level::Info,
                    "email-sent",
                    user,
                    ctx,
                    caller_uid,
                    &format!("to={}", crate::audit::clean(&masked)),
                );
                return Ok(());
            }
            Err(reason) => crate::audit::clean(&reason),
        };
        self.audit.event(
            Level::Error,
            "email-send-failed",
            user,
            ctx,
            caller_uid,
            &format!("to={} error=\"{reason}\"", crate::audit::clean(&masked)),
        );
        if !enrolment {
            let mut map = self.mail_failures.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= 4096 {
                map.clear();
            }
            map.insert(
                account.key(),
                (self.clock.now(), format!("mail server: {reason}")),
            );
        }
        let hash = mail.hash;
        self.transact(account, ctx, caller_uid, move |rec, _env: &Env| {
            withdraw(rec, &hash, enrolment)
        })
        .await?;
        Err(ServiceError::Unavailable(format!(
            "the code could not be mailed to {masked} (mail server: {reason}); try again later or use a backup code"
        )))
    }
}
