//! Enroll and Confirm. An enrolment waits `PENDING_TTL_SECS` for its
//! confirming code (from the new app, or mailed to the new address); the
//! confirming code is used up, the backup codes are handed out once, and
//! only the uid that started it (or root) may confirm it.
//!
//! Secrets, codes and ids are drawn by the engine and passed in, so a
//! decision is a function of its inputs; sealing and hashing draw their
//! own nonces and salts.

use std::sync::Arc;

use otpgate_proto::{Method, ServiceError};
use zeroize::Zeroizing;

use super::mail::Mail;
use super::{
    corrupt, Context, Decided, Engine, Enrollment, Env, Event, EMAIL_CODE_DIGITS,
    EMAIL_SENDS_PER_HOUR, PENDING_MAX_ATTEMPTS, PENDING_TTL_SECS,
};
use crate::audit::Level;
use crate::authz::{Caller, Interface};
use crate::backup;
use crate::crypto;
use crate::email::{self, Purpose};
use crate::record::{EmailCode, EmailFactor, Factor, Pending, TotpFactor, UserRecord};
use crate::totp;

/// An enrolment's inputs, drawn before the transaction.
pub(crate) struct NewFactor<'a> {
    pub method: Method,
    pub address: Option<&'a str>,
    pub id: &'a str,
    /// The TOTP secret (raw bytes).
    pub secret: &'a [u8],
    /// The confirmation code for the e-mail method.
    pub email_code: &'a str,
    pub hostname: &'a str,
    /// The device's name (`--name`); needed to add a device to an
    /// enrolled user.
    pub name: Option<&'a str>,
}

/// Why `name` cannot be added to `rec`'s devices, if it cannot.
fn name_taken(rec: &UserRecord, name: &str, method: Method) -> Option<String> {
    if rec.device(name).is_some() {
        return Some(format!(
            "a device named {name:?} exists already: choose another --name (`otpgate status` lists them)"
        ));
    }
    if method == Method::Email && rec.email().is_some() {
        return Some(
            "there is an e-mail factor already: remove it first (`otpgate remove-device NAME`)"
                .into(),
        );
    }
    None
}

pub(crate) fn decide_enroll(
    rec: Option<UserRecord>,
    env: &Env,
    new: &NewFactor,
) -> Decided<(Enrollment, Option<Mail>)> {
    let now = env.now;
    let user = env.account.name.as_str();
    let mut rec = rec.unwrap_or_else(|| UserRecord::new(&env.account.key(), now));
    if rec.enrolled() {
        let Some(name) = new.name else {
            return Decided::keep(Err(ServiceError::AlreadyEnrolled(format!(
                "{user} is already enrolled: add another device with `otpgate enroll --name NAME`, or disable it first (`otpgate disable`, or an administrator's `otpgate reset {user}`)"
            ))));
        };
        if let Some(why) = name_taken(&rec, name, new.method) {
            return Decided::keep(Err(ServiceError::InvalidArgument(why)));
        }
    }
    let name = new.name.map(str::to_string);
    let expires = now + PENDING_TTL_SECS;
    if let (Method::Email, Some(address)) = (new.method, new.address) {
        // Enrolment mails count against the same per-user limits as login
        // mails: any local user may start an enrolment of its own.
        let cfg = &env.config.email;
        let last = rec
            .pending
            .as_ref()
            .and_then(|p| p.code.as_ref())
            .map(|c| c.sent_at);
        if let Some(last) = last.filter(|&t| now < t + cfg.resend_cooldown_secs) {
            return Decided::keep(Err(ServiceError::TooManyRequests(format!(
                "a code was mailed for this enrolment {} s ago: wait {} s before asking for another",
                now - last,
                last + cfg.resend_cooldown_secs - now
            ))));
        }
        rec.email_sends.retain(|&t| t + 3600 > now);
        if rec.email_sends.len() >= EMAIL_SENDS_PER_HOUR {
            return Decided {
                write: crate::store::Write::Keep,
                answer: Err(ServiceError::TooManyRequests(format!(
                    "{EMAIL_SENDS_PER_HOUR} codes were mailed for {user} in the last hour: try again later"
                ))),
                events: vec![Event::new(
                    Level::Warning,
                    "email-send-limited",
                    "purpose=enrolment",
                )],
            };
        }
        rec.email_sends.push(now);
        let hash = email::code_hash(env.key, rec.bound_to(), new.email_code);
        rec.pending = Some(Pending {
            factor: Factor::Email(EmailFactor {
                id: new.id.to_string(),
                address: address.to_string(),
                created_at: now,
                name: name.clone(),
                last_used_at: None,
            }),
            started_by: env.caller_uid,
            expires_at: expires,
            attempts: 0,
            code: Some(EmailCode {
                hash: hash.clone(),
                expires_at: expires,
                sent_at: now,
            }),
        });
        let events = vec![Event::new(
            Level::Notice,
            "enroll-started",
            format!(
                "method=email to={}",
                crate::audit::clean(&email::mask(address))
            ),
        )];
        let mail = Mail {
            address: address.to_string(),
            code: Zeroizing::new(new.email_code.to_string()),
            hash,
        };
        let answer = Enrollment::Email {
            sent_to: email::mask(address),
            expires,
        };
        return Decided::put(rec, Ok((answer, Some(mail))), events);
    }
    let sealed = match crypto::seal(env.key, rec.bound_to(), new.id, new.secret) {
        Ok(s) => s,
        Err(e) => return Decided::keep(Err(super::internal(e))),
    };
    let cfg = &env.config.totp;
    rec.pending = Some(Pending {
        factor: Factor::Totp(TotpFactor {
            algorithm: cfg.algorithm.as_str().to_string(),
            digits: cfg.digits,
            period: cfg.period_secs,
            name,
            ..TotpFactor::new(new.id, sealed, now, "enrolled")
        }),
        started_by: env.caller_uid,
        expires_at: expires,
        attempts: 0,
        code: None,
    });
    let b32 = totp::base32(new.secret);
    let uri = totp::otpauth_uri(
        &cfg.issuer,
        &format!("{user}@{}", new.hostname),
        &b32,
        cfg.algorithm.as_str(),
        cfg.digits,
        cfg.period_secs,
    );
    let events = vec![Event::new(Level::Notice, "enroll-started", "method=totp")];
    let answer = Enrollment::Totp {
        uri,
        secret: b32,
        expires,
    };
    Decided::put(rec, Ok((answer, None)), events)
}

pub(crate) fn decide_confirm(
    rec: Option<UserRecord>,
    code: &str,
    env: &Env,
    new_codes: &[Zeroizing<String>],
) -> Decided<Vec<Zeroizing<String>>> {
    let now = env.now;
    let user = env.account.name.as_str();
    let no_pending = || {
        Decided::keep(Err(ServiceError::NoPendingEnrollment(format!(
            "{user} has no enrolment waiting: start one with `otpgate enroll`"
        ))))
    };
    let Some(mut rec) = rec else {
        return no_pending();
    };
    let Some(pending) = rec.pending.clone() else {
        return no_pending();
    };
    if pending.expires_at <= now {
        rec.pending = None;
        return Decided::put(
            rec,
            Err(ServiceError::PendingExpired(format!(
                "the enrolment of {user} expired (10 minutes): start again with `otpgate enroll`"
            ))),
            Vec::new(),
        );
    }
    if pending.started_by != env.caller_uid && env.caller_uid != 0 {
        return Decided::keep(Err(ServiceError::AccessDenied(format!(
            "the enrolment of {user} was started by uid {}; only that uid or root may confirm it",
            pending.started_by
        ))));
    }
    let bind = rec.bound_to().to_string();
    let confirmed = match pending.factor {
        Factor::Totp(mut factor) => {
            let params = match super::verify::params_of(&factor) {
                Ok(p) => p,
                Err(e) => return corrupt(env, e),
            };
            let secret = match crypto::open(env.key, &bind, &factor.id, &factor.secret) {
                Ok(s) => s,
                Err(e) => return corrupt(env, e),
            };
            let step = totp::normalise(code, params.digits)
                .totp
                .and_then(|c| totp::matched_step(&secret, params, env.config.totp.window, &c, now));
            step.map(|step| {
                // The confirming code is used: it cannot log in afterwards.
                factor.last_step = Some(step);
                Factor::Totp(factor)
            })
        }
        Factor::Email(factor) => {
            let right = totp::normalise(code, EMAIL_CODE_DIGITS)
                .totp
                .zip(pending.code.as_ref())
                .is_some_and(|(c, s)| email::code_matches(env.key, &bind, &c, &s.hash));
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
        let answer = Err(ServiceError::InvalidCode(if left == 0 {
            "wrong code, and too many of them: the enrolment was dropped; start again with `otpgate enroll`".into()
        } else {
            format!("wrong code: check the code (and for an app, its clock) and try again ({left} tries left)")
        }));
        return Decided::put(
            rec,
            answer,
            vec![Event::new(Level::Notice, "enroll-wrong-code", "")],
        );
    };
    let method = factor.method().as_str();
    if rec.enrolled() {
        // Another device: it counts from now; the backup codes stay.
        let name = factor.name().to_string();
        if let Some(why) = name_taken(&rec, &name, factor.method()) {
            rec.pending = None;
            return Decided::put(rec, Err(ServiceError::InvalidArgument(why)), Vec::new());
        }
        rec.factors.push(factor);
        rec.pending = None;
        rec.note(
            env.now,
            "device-added",
            env.ctx,
            format!("{name} ({method})"),
        );
        let events = vec![Event::new(
            Level::Notice,
            "device-added",
            format!("device={name} method={method}"),
        )];
        return Decided::put(rec, Ok(Vec::new()), events);
    }
    if let Err(e) = super::replace_backup_codes(&mut rec, env, new_codes) {
        return Decided::keep(Err(e));
    }
    rec.factors = vec![factor];
    rec.pending = None;
    rec.email_code = None;
    rec.note(env.now, "enrolled", env.ctx, method.to_string());
    rec.failures = 0;
    rec.locked_until = 0;
    rec.lock_streak = 0;
    rec.today(now).enrolled += 1;
    let events = vec![Event::new(
        Level::Notice,
        "enroll-confirmed",
        format!("method={method} backup_codes={}", new_codes.len()),
    )];
    Decided::put(rec, Ok(new_codes.to_vec()), events)
}

impl Engine {
    pub async fn enroll(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        method: Option<String>,
        address: Option<String>,
        name: Option<String>,
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
        if !self.config.methods.allowed.contains(&method) {
            let allowed: Vec<&str> = self
                .config
                .methods
                .allowed
                .iter()
                .map(|m| m.as_str())
                .collect();
            return Err(ServiceError::InvalidArgument(format!(
                "the {method} method may not be enrolled on this host: [methods] allowed = {:?}",
                allowed
            )));
        }
        if let Some(n) = &name {
            if !crate::record::valid_device_name(n) {
                return Err(ServiceError::InvalidArgument(format!(
                    "{:?} is not a device name: 1 to {} of a-z, 0-9, '.', '_' and '-'",
                    crate::audit::clean(n),
                    crate::record::MAX_DEVICE_NAME
                )));
            }
        }
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
        let id = crypto::hex(&crypto::random_bytes::<8>().map_err(super::internal)?);
        let mut pool = Zeroizing::new(
            crypto::random_bytes::<{ totp::MAX_SECRET_LEN }>().map_err(super::internal)?,
        );
        let secret = Zeroizing::new(pool[..self.config.totp.secret_bytes].to_vec());
        pool.fill(0);
        let email_code = email::new_code().map_err(super::internal)?;
        let hostname = self.hostname.clone();
        let ctx = Context::default();
        let (answer, mail) = self
            .transact(&account, &ctx, caller.uid, move |rec, env| {
                let new = NewFactor {
                    method,
                    address: address.as_deref(),
                    id: &id,
                    secret: secret.as_ref(),
                    email_code: &email_code,
                    hostname: &hostname,
                    name: name.as_deref(),
                };
                decide_enroll(rec, env, &new)
            })
            .await?;
        if let Some(mail) = mail {
            self.send_mail(&account, mail, Purpose::Enrolment, &ctx, caller.uid)
                .await?;
        }
        Ok(answer)
    }

    pub async fn confirm(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        code: super::Code,
    ) -> Result<Vec<Zeroizing<String>>, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Manager, user).await?;
        let codes = backup::generate(self.config.backup_codes.count).map_err(super::internal)?;
        self.transact(
            &account,
            &Context::default(),
            caller.uid,
            move |rec, env| decide_confirm(rec, &code, env, &codes),
        )
        .await
    }
}
