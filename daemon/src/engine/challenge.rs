//! Challenge: what the login is asked for. For an e-mail user this issues
//! the code to mail (its hash on disk before the mail leaves), within the
//! resend cooldown and the hourly limit; whatever happens to the mail, the
//! user is prompted, since a backup code always works.

use std::sync::Arc;

use otpgate_proto::{ChallengeState, Method, ServiceError};

use super::breakglass;
use super::mail::Mail;
use super::policy::{unenrolled_message, Facts};
use super::{ChallengeOutcome, Context, Decided, Engine, Env, Event, EMAIL_SENDS_PER_HOUR};
use crate::audit::Level;
use crate::authz::{Caller, Interface};
use crate::email::{self, Purpose};
use crate::policy::Mode;
use crate::record::{EmailCode, UserRecord};
use crate::store::Write;

/// What the engine knows about mail when it decides.
pub(crate) struct MailState<'a> {
    /// A mail server is configured.
    pub on: bool,
    /// Why the last mail to this user failed, within the cooldown.
    pub failed: Option<&'a str>,
    /// A fresh code, should one be issued.
    pub fresh: &'a str,
}

pub(crate) fn decide(
    rec: Option<UserRecord>,
    env: &Env,
    mail: &MailState,
    facts: &Facts,
) -> Decided<(ChallengeOutcome, Option<Mail>)> {
    let now = env.now;
    let rule = facts.decision.describe.clone();
    let mut rec = match rec {
        Some(r) if r.enrolled() => r,
        Some(r) if facts.console && r.breakglass.as_ref().is_some_and(|b| !b.hashes.is_empty()) => {
            // Root without a device, at the console, with break-glass codes.
            let _ = r;
            return Decided::keep(Ok((
                ChallengeOutcome {
                    rule,
                    ..ChallengeOutcome::plain(
                        ChallengeState::CodeRequired,
                        "No second factor is enrolled: enter a break-glass code.",
                    )
                },
                None,
            )));
        }
        _ => {
            let word = facts.decision.unenrolled(now);
            return Decided::keep(Ok((
                ChallengeOutcome {
                    policy: Some(word),
                    enroll_by: facts
                        .decision
                        .enroll_by
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    rule,
                    ..ChallengeOutcome::plain(
                        ChallengeState::NotEnrolled,
                        unenrolled_message(&env.account.name, word, &facts.decision),
                    )
                },
                None,
            )));
        }
    };
    let method = rec.method();
    if rec.locked_until > now {
        return Decided::keep(Ok((
            ChallengeOutcome {
                method,
                locked_until: rec.locked_until,
                rule,
                ..ChallengeOutcome::plain(
                    ChallengeState::Locked,
                    "Too many wrong codes: the second factor is locked.",
                )
            },
            None,
        )));
    }
    if facts.remembered {
        return Decided::keep(Ok((
            ChallengeOutcome {
                method,
                rule,
                ..ChallengeOutcome::plain(
                    ChallengeState::Remembered,
                    "Second factor already given in this session.",
                )
            },
            None,
        )));
    }
    // An app's code first; a user who also has e-mail may ask for a mail
    // instead (context `method` = `email`).
    let by_mail =
        rec.email().is_some() && (rec.totp().is_none() || env.ctx.method == Method::Email.as_str());
    let method = if by_mail { Some(Method::Email) } else { method };
    let alternatives = if rec.totp().is_some() && rec.email().is_some() && !by_mail {
        Method::Email.as_str().to_string()
    } else {
        String::new()
    };
    let digits = match (by_mail, rec.totp()) {
        (false, Some(t)) => t.digits,
        _ => super::EMAIL_CODE_DIGITS,
    } as u32;
    // Root's unacknowledged break-glass uses go before whatever else is said.
    let note = breakglass::note(&rec);
    let prompt = |message: String| ChallengeOutcome {
        method,
        digits,
        rule: rule.clone(),
        alternatives: alternatives.clone(),
        ..ChallengeOutcome::plain(
            ChallengeState::CodeRequired,
            match (note.is_empty(), message.is_empty()) {
                (true, _) => message,
                (false, true) => note.clone(),
                (false, false) => format!("{note} {message}"),
            },
        )
    };
    let Some(address) = rec.email().filter(|_| by_mail).map(|f| f.address.clone()) else {
        return Decided::keep(Ok((prompt(String::new()), None)));
    };
    let cfg = &env.config.email;
    let masked = email::mask(&address);
    let sent_to = format!("A code was sent to {masked}.");
    let live = rec.email_code.as_ref().is_some_and(|c| now < c.expires_at);
    // A login flood must not become a mail flood: within the cooldown the
    // code already sent stands.
    let cooling = rec
        .email_code
        .as_ref()
        .is_some_and(|c| now < c.expires_at && now < c.sent_at + cfg.resend_cooldown_secs);
    if cooling {
        return Decided::keep(Ok((prompt(sent_to), None)));
    }
    if !mail.on {
        return Decided::keep(Ok((
            prompt(if live {
                sent_to
            } else {
                "E-mail codes are off on this host, so none was sent: use a backup code.".into()
            }),
            None,
        )));
    }
    if let Some(why) = mail.failed {
        // Nor does a broken relay get hammered: one try per cooldown.
        return Decided::keep(Ok((
            prompt(format!(
                "No code could be mailed to {masked} ({why}): use a backup code, or try again in a minute."
            )),
            None,
        )));
    }
    rec.email_sends.retain(|&t| t + 3600 > now);
    if rec.email_sends.len() >= EMAIL_SENDS_PER_HOUR {
        let answer = prompt(if live {
            sent_to
        } else {
            "Too many codes were mailed in the last hour, so no new one was sent: use a backup code.".into()
        });
        return Decided {
            write: Write::Keep,
            answer: Ok((answer, None)),
            events: vec![Event::new(Level::Warning, "email-send-limited", "")],
        };
    }
    let hash = email::code_hash(env.key, rec.bound_to(), mail.fresh);
    rec.email_code = Some(EmailCode {
        hash: hash.clone(),
        expires_at: now + cfg.code_ttl_secs,
        sent_at: now,
    });
    rec.email_sends.push(now);
    let out = Mail {
        address,
        code: zeroize::Zeroizing::new(mail.fresh.to_string()),
        hash,
    };
    Decided::put(rec, Ok((prompt(sent_to), Some(out))), Vec::new())
}

impl Engine {
    pub async fn challenge(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        ctx: Context,
    ) -> Result<ChallengeOutcome, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Auth, user).await?;
        let facts = self.facts(caller, &account, &ctx).await?;
        if facts.decision.mode == Mode::Skip {
            // Decided by the configuration alone: no record is read.
            self.audit.event(
                Level::Info,
                "policy-skip",
                &account.name,
                &ctx,
                caller.uid,
                &format!("rule=\"{}\"", facts.decision.describe),
            );
            return Ok(ChallengeOutcome {
                rule: facts.decision.describe,
                ..ChallengeOutcome::plain(ChallengeState::Skip, "")
            });
        }
        let on = self.mailer.is_some();
        let failed = self.recent_mail_failure(&account.key(), self.clock.now());
        let fresh = email::new_code().map_err(super::internal)?;
        let (outcome, mail) = self
            .transact_read_first(&account, &ctx, caller.uid, move |rec, env| {
                let state = MailState {
                    on,
                    failed: failed.as_deref(),
                    fresh: &fresh,
                };
                decide(rec, env, &state, &facts)
            })
            .await?;
        if let Some(mail) = mail {
            // The prompt must not wait for the mail relay (a slow one would
            // run into the module's deadline, and a deadline is a refusal):
            // the code's hash is on disk, the mail goes out now, and a
            // failure is reported at Verify.
            let purpose = Purpose::Login {
                service: ctx.service.clone(),
            };
            let this = Arc::clone(self);
            let uid = caller.uid;
            self.blocking.spawn(async move {
                let _ = this.send_mail(&account, mail, purpose, &ctx, uid).await;
            });
        }
        Ok(outcome)
    }
}
