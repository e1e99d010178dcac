//! The policy around a login: which rule applies (`crate::policy`), what
//! the daemon itself knows of the caller (its login session, whether it
//! sits at a local console), the successes remembered per session, and the
//! two calls that are only about policy: Account (the PAM account stage)
//! and ExplainPolicy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use otpgate_proto::codec::{AccountAnswer, Explanation};
use otpgate_proto::{AccountState, Policy as Word, ServiceError};

use super::{Context, Decided, Engine};
use crate::accounts::Account;
use crate::audit::Level;
use crate::authz::{Caller, Interface};
use crate::policy::{Decision, Login, Mode};
use crate::session;

/// What is known about one login before its record is read.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub decision: Decision,
    /// Root's caller, no remote host, PAM_TTY a console and the caller's
    /// own terminal not a pseudo-terminal: break-glass codes count here.
    pub console: bool,
    /// The caller's login session, when a rule may remember a success.
    pub session: Option<String>,
    /// This session passed the second factor under this rule, recently.
    pub remembered: bool,
    pub tty: String,
    pub service: String,
}

/// Remembered successes: (uid, session, rule index) → until when. Kept in
/// memory only: a restarted daemon asks again, which is the safe side.
#[derive(Default)]
pub(crate) struct Remembered(Mutex<HashMap<(u32, String, usize), u64>>);

/// More sessions than this at once is no workload; drop the oldest.
const MAX_REMEMBERED: usize = 65_536;

impl Remembered {
    fn get(&self, uid: u32, session: &str, rule: usize, now: u64) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(uid, session.to_string(), rule))
            .is_some_and(|&until| now < until)
    }

    fn put(&self, uid: u32, session: String, rule: usize, until: u64, now: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, &mut u| u > now);
            while map.len() >= MAX_REMEMBERED {
                let Some(oldest) = map.iter().min_by_key(|(_, &u)| u).map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        map.insert((uid, session, rule), until);
    }

    /// Everything remembered of `uid` (its second factor was reset or
    /// removed).
    fn forget(&self, uid: u32) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(u, _, _), _| *u != uid);
    }
}

/// The not-enrolled answer's words for a decision.
pub(crate) fn unenrolled_message(name: &str, word: Word, decision: &Decision) -> String {
    match (word, decision.enroll_by) {
        (Word::Grace, Some(day)) => format!(
            "{name} has no second factor enrolled: run `otpgate enroll` by the end of {day} (UTC); after that this login is refused"
        ),
        (Word::Optional | Word::Skip, _) => {
            format!("{name} has no second factor enrolled; this host's policy does not require one here")
        }
        _ => format!("{name} has no second factor enrolled"),
    }
}

impl Engine {
    /// The account's groups, when a rule looks at groups (else none are
    /// asked for): read from the name service off the bus's executor. A
    /// group database that cannot be asked refuses the call rather than
    /// guess which rule applies.
    async fn groups_for_policy(&self, account: &Account) -> Result<Vec<String>, ServiceError> {
        if !self.config.policy.needs_groups() {
            return Ok(Vec::new());
        }
        let (accounts, a) = (Arc::clone(&self.accounts), account.clone());
        self.blocking(move || accounts.groups(&a))
            .await?
            .map_err(|e| {
                ServiceError::Unavailable(format!(
                    "the groups of {} could not be read from the group database ({}): the policy cannot be applied",
                    account.name,
                    crate::audit::clean(&e)
                ))
            })
    }

    /// The policy's decision and what the daemon knows of the caller.
    pub(super) async fn facts(
        self: &Arc<Self>,
        caller: &Caller,
        account: &Account,
        ctx: &Context,
    ) -> Result<Facts, ServiceError> {
        let policy = &self.config.policy;
        let groups = self.groups_for_policy(account).await?;
        let decision = policy.decide(&Login {
            user: &account.name,
            groups: &groups,
            service: &ctx.service,
            rhost: &ctx.rhost,
        });
        // Only a root caller's process is a login's host (sshd, sudo,
        // login); a user's own process could be anything it likes.
        let session = match (caller.is_root(), decision.rule, caller.pid) {
            (true, Some(_), Some(pid)) if decision.remember_secs > 0 => session::key_of(pid),
            _ => None,
        };
        let remembered = match (&session, decision.rule) {
            (Some(s), Some(rule)) => self.remembered.get(account.uid, s, rule, self.clock.now()),
            _ => false,
        };
        let console = caller.is_root()
            && ctx.rhost.is_empty()
            && session::console_name(&ctx.tty)
            && session::not_on_a_pty(caller.pid);
        Ok(Facts {
            decision,
            console,
            session,
            remembered,
            tty: ctx.tty.clone(),
            service: ctx.service.clone(),
        })
    }

    /// The explicit `[[policy]]` rule that requires a second factor of
    /// `account` (by its users and groups, whatever its services), named
    /// for a refusal; `None` if no rule does.
    pub(super) async fn required_rule(
        self: &Arc<Self>,
        account: &Account,
    ) -> Result<Option<String>, ServiceError> {
        let policy = &self.config.policy;
        if policy.rules.is_empty() {
            return Ok(None);
        }
        let groups = self.groups_for_policy(account).await?;
        Ok(policy.requiring(&account.name, &groups))
    }

    /// After a success: this session need not be asked again under this
    /// rule until `remember_secs` have passed.
    pub(super) fn remember(&self, account: &Account, facts: &Facts) {
        if let (Some(session), Some(rule)) = (&facts.session, facts.decision.rule) {
            let now = self.clock.now();
            let until = now + facts.decision.remember_secs;
            self.remembered
                .put(account.uid, session.clone(), rule, until, now);
        }
    }

    pub(super) fn forget_sessions(&self, uid: u32) {
        self.remembered.forget(uid);
    }

    /// Auth.Account: at PAM's account stage, which runs even when the auth
    /// stack did not (public-key-only ssh): is a second factor required
    /// here of an account that has none?
    pub async fn account_check(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        ctx: Context,
    ) -> Result<AccountAnswer, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::Auth, user).await?;
        let facts = self.facts(caller, &account, &ctx).await?;
        let ok = AccountAnswer {
            state: AccountState::Ok,
            policy: None,
            enroll_by: String::new(),
            rule: facts.decision.describe.clone(),
            message: String::new(),
        };
        if facts.decision.mode == Mode::Skip {
            return Ok(AccountAnswer {
                policy: Some(Word::Skip),
                ..ok
            });
        }
        let enrolled = self
            .transact_read_first(&account, &ctx, caller.uid, |rec, _| {
                Decided::keep(Ok(rec.is_some_and(|r| r.enrolled())))
            })
            .await?;
        if enrolled {
            return Ok(ok);
        }
        let word = facts.decision.unenrolled(self.clock.now());
        Ok(AccountAnswer {
            state: AccountState::NotEnrolled,
            policy: Some(word),
            enroll_by: facts
                .decision
                .enroll_by
                .map(|d| d.to_string())
                .unwrap_or_default(),
            message: unenrolled_message(&account.name, word, &facts.decision),
            ..ok
        })
    }

    /// Admin.ExplainPolicy: which rule applies to `user` on `ctx.service`
    /// (from `ctx.rhost`), why, and what a login would get now.
    pub async fn explain_policy(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
        ctx: Context,
    ) -> Result<Explanation, ServiceError> {
        let _permit = self.admit(caller)?;
        self.authorize(caller, Interface::Admin, None)?;
        let account = self.account(user).await?;
        // As the PAM module would ask it; no session, no console.
        let facts = self.facts(&Caller::root(), &account, &ctx).await?;
        let now = self.clock.now();
        let (enrolled, locked_until) = self
            .transact_read_first(&account, &ctx, caller.uid, |rec, _| {
                Decided::keep(Ok(
                    rec.map_or((false, 0), |r| (r.enrolled(), r.locked_until))
                ))
            })
            .await?;
        let d = &facts.decision;
        let outcome = match d.mode {
            Mode::Skip => "no second factor is asked: the module steps aside (PAM_IGNORE)".to_string(),
            _ if enrolled && locked_until > now => {
                format!("refused while the second factor is locked (until {locked_until}, Unix time)")
            }
            _ if enrolled && d.remember_secs > 0 => format!(
                "a code is asked; after a success the same login session is not asked again on this rule's services for {} s",
                d.remember_secs
            ),
            _ if enrolled => "a code is asked".to_string(),
            _ => match d.unenrolled(now) {
                Word::Optional | Word::Skip => {
                    "passes without a code: not enrolled, and the rule makes the second factor optional".to_string()
                }
                Word::Grace => format!(
                    "passes with a notice: not enrolled, allowed through the end of {} (UTC); refused after that",
                    d.enroll_by.map(|x| x.to_string()).unwrap_or_default()
                ),
                Word::Require => {
                    "refused: not enrolled (unless the PAM line says nullok)".to_string()
                }
            },
        };
        self.audit.event(
            Level::Info,
            "policy-explained",
            &account.name,
            &ctx,
            caller.uid,
            "",
        );
        Ok(Explanation {
            user: account.name.clone(),
            service: ctx.service.clone(),
            rhost: ctx.rhost.clone(),
            mode: d.mode.as_str().to_string(),
            rule: d.describe.clone(),
            reasons: d.reasons.clone(),
            enrolled,
            enroll_by: d.enroll_by.map(|x| x.to_string()).unwrap_or_default(),
            remember_secs: d.remember_secs,
            outcome,
        })
    }
}
