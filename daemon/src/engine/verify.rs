//! A code against a record: the TOTP step (and its replay mark), a mailed
//! code (and its expiry), a backup code (used once); failures counted, a
//! lock after `max_failures`, an expired lock's fresh set of tries.
//!
//! `check_code` is the rule, also used by Disable and
//! RegenerateBackupCodes when a user proves the second factor.

use std::sync::Arc;

use otpgate_proto::{MethodUsed, ServiceError, VerifyResult};

use super::breakglass;
use super::mail::Notice;
use super::policy::Facts;
use super::{corrupt, Context, Decided, Engine, Env, Event, VerifyOutcome, EMAIL_CODE_DIGITS};
use crate::audit::Level;
use crate::authz::{Caller, Interface};
use crate::backup;
use crate::config::LockoutConfig;
use crate::crypto;
use crate::email;
use crate::error::Error;
use crate::lockout::{lock_duration, SourceCounter};
use crate::record::{
    AcceptedCode, BreakglassUse, Drift, Factor, TotpFactor, UserRecord, ACCEPTED_BINDING,
};
use crate::store::Write;
use crate::totp::{self, Params};

/// Steps kept burned per device: a few wrong codes' worth within the
/// hour a drift hint looks at.
const MAX_BURNED_STEPS: usize = 16;

/// What the user is told when a wrong code was the code of another time.
pub(crate) fn drift_line(offset_secs: i64) -> String {
    let (how, secs) = if offset_secs > 0 {
        ("fast", offset_secs.unsigned_abs())
    } else {
        ("slow", offset_secs.unsigned_abs())
    };
    let amount = if secs < 120 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", (secs + 30) / 60)
    };
    format!("Your authenticator's clock looks about {amount} {how}: set it to automatic time.")
}

/// What checking a code did: the answer, whether the record changed, and
/// what to log. A fault (a record that cannot be used) is an `Err` with
/// its log line.
pub(crate) struct Checked {
    pub outcome: VerifyOutcome,
    pub changed: bool,
    pub events: Vec<Event>,
}

pub(crate) fn params_of(f: &TotpFactor) -> Result<Params, String> {
    let algorithm = totp::algorithm(&f.algorithm)
        .ok_or_else(|| format!("unknown algorithm {:?}", f.algorithm))?;
    Ok(Params {
        algorithm,
        digits: f.digits,
        period: f.period,
    })
}

/// The rule. `source_blocked` is the caller's remote host and when its
/// failure window ends, if it is over its limit (the engine's in-memory
/// per-source count). `console` is the login, when it sits at a local
/// console: only then are break-glass codes tried.
// The refusal is a whole decision, made once per call: not worth a box.
#[allow(clippy::result_large_err)]
pub(crate) fn check_code(
    rec: &mut UserRecord,
    code: &str,
    env: &Env,
    source_blocked: Option<(&str, u64)>,
    console: Option<&Facts>,
) -> Result<Checked, Decided<VerifyOutcome>> {
    let now = env.now;
    let cfg = env.config;
    let mut changed = false;
    let mut events = Vec::new();
    if rec.locked_until != 0 && rec.locked_until <= now {
        // The lock ran out: a fresh set of tries (the streak stays).
        rec.locked_until = 0;
        rec.failures = 0;
        changed = true;
    }
    if rec.locked_until > now {
        events.push(Event {
            throttle: Some(format!("locked:{}", env.account.name)),
            ..Event::new(Level::Notice, "verify-locked", "")
        });
        return Ok(Checked {
            outcome: VerifyOutcome::locked(
                "Too many wrong codes: the second factor is locked.",
                rec.locked_until,
            ),
            changed,
            events,
        });
    }
    if let Some((source, until)) = source_blocked {
        events.push(Event {
            throttle: Some(format!("source:{source}")),
            ..Event::new(Level::Warning, "verify-source-blocked", "")
        });
        return Ok(Checked {
            outcome: VerifyOutcome::locked(
                "Too many failed logins from this host: try again later.",
                until,
            ),
            changed,
            events,
        });
    }

    let bind = rec.bound_to().to_string();
    let mut result = VerifyResult::Invalid;
    let mut method = None;
    // A wrong TOTP code that is the code of another step: (device, offset
    // in steps, period).
    let mut drifted: Option<(usize, i64, u64)> = None;
    let mut drift_notice = String::new();
    // The device whose code it was, on a success.
    let mut used: Option<usize> = None;
    let mut expired = false;
    if rec.factors.is_empty() && !(console.is_some() && rec.breakglass.is_some()) {
        return Err(corrupt(env, "no factor"));
    }
    // Any device verifies; each keeps its own replay mark.
    let accepted_bind = format!("{bind}{ACCEPTED_BINDING}");
    rec.accepted.retain(|a| now < a.until);
    for (i, f) in rec.factors.clone().iter().enumerate() {
        match f {
            Factor::Totp(factor) => {
                let params = params_of(factor).map_err(|e| corrupt(env, e))?;
                let Some(t) = totp::normalise(code, params.digits).totp else {
                    continue;
                };
                let secret = crypto::open(env.key, &bind, &factor.id, &factor.secret)
                    .map_err(|e| corrupt(env, e))?;
                if let Some(step) = totp::matched_step(&secret, params, cfg.totp.window, &t, now) {
                    let seen = email::code_hash(env.key, &accepted_bind, &t);
                    if factor.last_step.is_some_and(|last| step <= last)
                        || factor.burned_steps.contains(&step)
                        || rec.accepted.iter().any(|a| a.hash == seen)
                    {
                        result = VerifyResult::Replayed;
                        continue;
                    }
                    result = VerifyResult::Ok;
                    method = Some(MethodUsed::Totp);
                    used = Some(i);
                    if let Factor::Totp(f) = &mut rec.factors[i] {
                        f.last_step = Some(step);
                    }
                    // Typeable until the window has passed that step.
                    let until = (step + cfg.totp.window + 1).saturating_mul(params.period);
                    rec.accepted.push(AcceptedCode {
                        step,
                        until,
                        hash: seen,
                    });
                    break;
                } else if drifted.is_none() {
                    drifted = totp::drift(
                        &secret,
                        params,
                        cfg.totp.window,
                        &t,
                        now,
                        totp::DRIFT_REACH_SECS,
                    )
                    .map(|k| (i, k, params.period));
                }
            }
            Factor::Email(_) => {
                let Some(t) = totp::normalise(code, EMAIL_CODE_DIGITS).totp else {
                    continue;
                };
                let Some(sent) = rec.email_code.clone() else {
                    continue;
                };
                if now >= sent.expires_at {
                    // Said once, then forgotten: the next try is plain wrong.
                    rec.email_code = None;
                    expired = true;
                    continue;
                }
                if email::code_matches(env.key, &bind, &t, &sent.hash) {
                    result = VerifyResult::Ok;
                    method = Some(MethodUsed::Email);
                    used = Some(i);
                    rec.email_code = None;
                    break;
                }
            }
        }
    }
    if let Some(i) = used {
        rec.factors[i].mark_used(now);
    }
    let candidate = totp::normalise(code, 6);
    if result == VerifyResult::Invalid {
        if let (Some(b), Some(set)) = (&candidate.backup, &rec.backup) {
            let found = backup::find(env.key, &bind, set, b)
                .map_err(|e| Decided::<VerifyOutcome>::keep(Err(super::internal(e))))?;
            if let Some(i) = found {
                rec.backup.as_mut().expect("checked above").hashes.remove(i);
                result = VerifyResult::Ok;
                method = Some(MethodUsed::Backup);
            }
        }
    }
    if let (VerifyResult::Invalid, Some(facts), Some(b)) = (result, console, &candidate.backup) {
        if let Some(set) = &rec.breakglass {
            let found = backup::find(env.key, &breakglass::binding(rec), set, b)
                .map_err(|e| Decided::<VerifyOutcome>::keep(Err(super::internal(e))))?;
            if let Some(i) = found {
                rec.breakglass
                    .as_mut()
                    .expect("checked above")
                    .hashes
                    .remove(i);
                rec.breakglass_uses.push(BreakglassUse {
                    at: now,
                    tty: crate::audit::clean(&facts.tty),
                    service: crate::audit::clean(&facts.service),
                });
                result = VerifyResult::Ok;
                method = Some(MethodUsed::Breakglass);
            }
        }
    }

    if expired && result == VerifyResult::Invalid {
        rec.note(now, "expired", env.ctx, String::new());
        events.push(Event::new(Level::Notice, "verify-expired", ""));
        let mut o = VerifyOutcome::plain(
            VerifyResult::Expired,
            "That code has expired: log in again to get a new one.",
        );
        o.attempts_left = Some(cfg.lockout.max_failures.saturating_sub(rec.failures));
        return Ok(Checked {
            outcome: o,
            changed: true,
            events,
        });
    }
    let max = cfg.lockout.max_failures;
    let mut outcome = VerifyOutcome::plain(result, "");
    outcome.method_used = method;
    if result == VerifyResult::Ok {
        // What the user is told: the wrong codes since their last success.
        outcome.failures_since = rec.failures;
        if rec.failures > 0 {
            if let Some(last) = rec
                .history
                .iter()
                .rev()
                .find(|h| h.event == "failure" || h.event == "replayed")
            {
                outcome.last_failure_at = last.at;
                outcome.last_failure_from = last.rhost.clone();
            }
        }
        rec.failures = 0;
        rec.lock_streak = 0;
        let day = rec.today(now);
        day.successes += 1;
        if method == Some(MethodUsed::Backup) {
            day.backup_used += 1;
        }
        let left = rec.backup_codes_left() as u32;
        outcome.backup_codes_left = Some(left);
        outcome.attempts_left = Some(max);
        let m = method.map(|m| m.as_str()).unwrap_or("");
        events.push(Event::new(Level::Info, "verify-ok", format!("method={m}")));
        rec.note(now, "success", env.ctx, m.to_string());
        match method {
            Some(MethodUsed::Backup) => {
                rec.note(now, "backup-code-used", env.ctx, format!("{left} left"))
            }
            Some(MethodUsed::Breakglass) => {
                let left = rec.breakglass.as_ref().map_or(0, |b| b.hashes.len());
                rec.note(now, "breakglass-used", env.ctx, format!("{left} left"))
            }
            _ => {}
        }
        if method == Some(MethodUsed::Backup) {
            events.push(Event::new(
                Level::Notice,
                "backup-code-used",
                format!("backup_codes_left={left}"),
            ));
            outcome.message = format!("Backup code accepted; {left} left.");
        }
        if method == Some(MethodUsed::Breakglass) {
            let left = rec.breakglass.as_ref().map_or(0, |b| b.hashes.len());
            events.push(Event::new(
                Level::Alert,
                "breakglass-used",
                format!("breakglass_codes_left={left}"),
            ));
            outcome.message = format!(
                "Break-glass code accepted; {left} left. This use is reported to the administrators."
            );
        }
        // Noted at every login until root acknowledges it.
        outcome.notice = breakglass::note(rec);
        return Ok(Checked {
            outcome,
            changed: true,
            events,
        });
    }

    if let (VerifyResult::Invalid, Some((i, k, period))) = (result, drifted) {
        let offset_secs = k * period as i64;
        let Factor::Totp(f) = &mut rec.factors[i] else {
            unreachable!("drift is only looked for on a TOTP factor")
        };
        f.drift = Some(Drift {
            offset_secs,
            seen_at: now,
        });
        // That step's code is now known to whoever typed it: it must never
        // pass when its time comes. Steps already past need no mark.
        let origin = now / period;
        f.burned_steps.retain(|&s| s + cfg.totp.window >= origin);
        let burned = origin.saturating_add_signed(k);
        if !f.burned_steps.contains(&burned) {
            f.burned_steps.push(burned);
        }
        if f.burned_steps.len() > MAX_BURNED_STEPS {
            f.burned_steps.remove(0);
        }
        events.push(Event::new(
            Level::Notice,
            "clock-drift",
            format!("offset_secs={offset_secs}"),
        ));
        drift_notice = drift_line(offset_secs);
    }
    rec.failures = rec.failures.saturating_add(1);
    rec.today(now).failures += 1;
    let word = if result == VerifyResult::Replayed {
        "replayed"
    } else {
        "failure"
    };
    let detail = match drifted {
        Some((_, k, period)) => format!("clock off by {} s", k * period as i64),
        None => String::new(),
    };
    rec.note(now, word, env.ctx, detail);
    let locking = rec.failures >= max;
    if locking {
        rec.lock_streak = rec.lock_streak.saturating_add(1);
        rec.locked_until = now + lock_duration(&cfg.lockout, rec.lock_streak);
        rec.today(now).lockouts += 1;
        let until = rec.locked_until;
        rec.note(now, "locked", env.ctx, format!("for {} s", until - now));
    }
    let event = if result == VerifyResult::Replayed {
        "verify-replayed"
    } else {
        "verify-failed"
    };
    events.push(Event::new(
        Level::Notice,
        event,
        format!("failures={}", rec.failures),
    ));
    outcome.attempts_left = Some(max.saturating_sub(rec.failures));
    outcome.message = if result == VerifyResult::Replayed {
        "That code was already used; wait for the next one.".into()
    } else {
        "Wrong code.".into()
    };
    outcome.notice = drift_notice;
    if locking {
        outcome.locked_until = rec.locked_until;
        events.push(Event::new(
            Level::Warning,
            "locked",
            format!("until={} streak={}", rec.locked_until, rec.lock_streak),
        ));
    }
    Ok(Checked {
        outcome,
        changed: true,
        events,
    })
}

/// Verify's decision: not enrolled, or the rule.
pub(crate) fn decide(
    rec: Option<UserRecord>,
    code: &str,
    env: &Env,
    source_blocked: Option<(&str, u64)>,
    facts: &Facts,
) -> Decided<VerifyOutcome> {
    let console = facts.console.then_some(facts);
    let mut rec = match rec {
        Some(r) if r.enrolled() => r,
        Some(r) if console.is_some() && r.breakglass.is_some() => r,
        _ => {
            return Decided::keep(Ok(VerifyOutcome::plain(
                VerifyResult::NotEnrolled,
                format!("{} has no second factor enrolled", env.account.name),
            )))
        }
    };
    match check_code(&mut rec, code, env, source_blocked, console) {
        Err(fault) => fault,
        Ok(c) => Decided {
            write: if c.changed {
                Write::Put(rec)
            } else {
                Write::Keep
            },
            answer: Ok(c.outcome),
            events: c.events,
        },
    }
}

impl Engine {
    /// Asks the per-source counter: the shared store's when there is one
    /// (a database round trip, so on the blocking pool), else this
    /// daemon's memory. `idle` is the answer when there is nothing to ask.
    async fn ask_sources<T: Send + 'static>(
        self: &Arc<Self>,
        source: &str,
        idle: T,
        ask: fn(&dyn SourceCounter, &LockoutConfig, &str, u64) -> Result<T, Error>,
    ) -> Result<T, ServiceError> {
        if source.is_empty() || self.config.lockout.source_max_failures == 0 {
            return Ok(idle);
        }
        let now = self.clock.now();
        if self.store.sources().is_none() {
            return Ok(ask(&self.sources, &self.config.lockout, source, now)?);
        }
        let source = source.to_string();
        self.run(None, move |e| {
            let shared = e.store.sources().expect("checked above");
            Ok(ask(shared, &e.config.lockout, &source, now)?)
        })
        .await
    }

    pub async fn verify(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        code: super::Code,
        ctx: Context,
    ) -> Result<VerifyOutcome, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Auth, user).await?;
        let facts = self.facts(caller, &account, &ctx).await?;
        // Only root's callers (the PAM module in sshd, sudo, login) report
        // a remote host worth trusting; a user's own caller could name any.
        let source = if caller.is_root() {
            ctx.rhost.clone()
        } else {
            String::new()
        };
        let blocked = self
            .ask_sources(&source, None, |c, cfg, s, now| c.blocked_until(cfg, s, now))
            .await?;
        let mut outcome = self
            .transact(&account, &ctx, caller.uid, {
                let (source, facts) = (source.clone(), facts.clone());
                move |rec, env| {
                    decide(
                        rec,
                        &code,
                        env,
                        blocked.map(|u| (source.as_str(), u)),
                        &facts,
                    )
                }
            })
            .await?;
        if outcome.result == VerifyResult::Ok {
            self.remember(&account, &facts);
        }
        let failed = matches!(
            outcome.result,
            VerifyResult::Invalid | VerifyResult::Replayed
        );
        if failed
            && self
                .ask_sources(&source, false, |c, cfg, s, now| c.failure(cfg, s, now))
                .await?
        {
            self.audit.event(
                Level::Warning,
                "source-limited",
                &account.name,
                &ctx,
                caller.uid,
                &format!("window_secs={}", self.config.lockout.source_window_secs),
            );
        }
        if outcome.result != VerifyResult::Ok {
            if let Some(why) = self.recent_mail_failure(&account.key(), self.clock.now()) {
                outcome.notice = format!("No code could be mailed ({why}): use a backup code.");
            }
        }
        let locked_now = failed && outcome.attempts_left == Some(0) && outcome.locked_until > 0;
        let backup_used = outcome.method_used == Some(MethodUsed::Backup);
        if locked_now || backup_used {
            let notice = if locked_now {
                Notice::Locked {
                    until: outcome.locked_until,
                }
            } else {
                Notice::BackupUsed {
                    left: outcome.backup_codes_left.unwrap_or(0),
                }
            };
            self.mail_notice(&account, &ctx, caller.uid, notice);
        }
        Ok(outcome)
    }
}
