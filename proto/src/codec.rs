//! The answer dictionaries, written by otpgated and read by the PAM module
//! and the CLI from one definition each.
//!
//! Reading is strict on types: a known key whose value has the wrong type
//! makes the whole answer unreadable, since a client that guessed might tell
//! a user the wrong thing (or an impostor's garbage might pass). Unknown keys
//! are ignored, so the daemon may add some without breaking older clients.
//! Optional numbers and texts follow the daemon's habit: 0 or "" is sent as
//! an absent key and read back as 0 or "".

use std::fmt;

use serde::Serialize;
use zbus::{OwnedVariant, Variant};
use zeroize::Zeroizing;

use crate::{
    device, enroll, explain, history, import, info, stats, status, AccountState, ChallengeState,
    Method, MethodUsed, OwnedDict, Policy, VerifyResult,
};

/// An answer that does not have the contract's shape. The text names the
/// key or word at fault, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

// ---- writing ---------------------------------------------------------------

fn put<'a>(d: &mut OwnedDict, key: &str, value: impl Into<Variant<'a>>) {
    let value = OwnedVariant::try_from(value.into())
        .expect("strings, numbers and booleans are always owned variants");
    d.insert(key.to_owned(), value);
}

fn put_nonzero(d: &mut OwnedDict, key: &str, value: u64) {
    if value != 0 {
        put(d, key, value);
    }
}

fn put_text(d: &mut OwnedDict, key: &str, value: &str) {
    if !value.is_empty() {
        put(d, key, value);
    }
}

// ---- reading ---------------------------------------------------------------

/// `what` names the dictionary in errors: "info", "status", ...
fn get<'a, T>(what: &str, d: &'a OwnedDict, key: &str) -> Result<Option<T>, DecodeError>
where
    T: TryFrom<&'a OwnedVariant>,
{
    match d.get(key) {
        None => Ok(None),
        Some(v) => T::try_from(v)
            .map(Some)
            .map_err(|_| DecodeError(format!("{what} key {key:?} has the wrong type"))),
    }
}

fn text(what: &str, d: &OwnedDict, key: &str) -> Result<Option<String>, DecodeError> {
    Ok(get::<&str>(what, d, key)?.map(str::to_owned))
}

fn word<T>(
    what: &str,
    d: &OwnedDict,
    key: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, DecodeError> {
    match get::<&str>(what, d, key)? {
        None => Ok(None),
        Some(w) => parse(w)
            .map(Some)
            .ok_or_else(|| DecodeError(format!("unknown {key} {w:?}"))),
    }
}

fn required<T>(what: &str, key: &str, value: Option<T>) -> Result<T, DecodeError> {
    value.ok_or_else(|| DecodeError(format!("{what} without `{key}`")))
}

// ---- Auth ------------------------------------------------------------------

/// Every key either `info` dictionary may carry, each checked whichever
/// answer it comes with: a Challenge answer with a garbled `attempts_left`
/// is as suspect as a Verify answer with one.
struct Info {
    method: Option<Method>,
    method_used: Option<MethodUsed>,
    attempts_left: Option<u32>,
    locked_until: u64,
    backup_codes_left: Option<u32>,
    message: String,
    notice: String,
    policy: Option<Policy>,
    enroll_by: String,
    digits: u32,
    rule: String,
    failures_since: u32,
    last_failure_at: u64,
    last_failure_from: String,
    alternatives: String,
}

impl Info {
    fn decode(d: &OwnedDict) -> Result<Info, DecodeError> {
        const W: &str = "info";
        Ok(Info {
            method: word(W, d, info::METHOD, Method::parse)?,
            method_used: word(W, d, info::METHOD_USED, MethodUsed::parse)?,
            attempts_left: get(W, d, info::ATTEMPTS_LEFT)?,
            locked_until: get(W, d, info::LOCKED_UNTIL)?.unwrap_or(0),
            backup_codes_left: get(W, d, info::BACKUP_CODES_LEFT)?,
            message: text(W, d, info::MESSAGE)?.unwrap_or_default(),
            notice: text(W, d, info::NOTICE)?.unwrap_or_default(),
            policy: word(W, d, info::POLICY, Policy::parse)?,
            enroll_by: text(W, d, info::ENROLL_BY)?.unwrap_or_default(),
            digits: get(W, d, info::DIGITS)?.unwrap_or(0),
            rule: text(W, d, info::RULE)?.unwrap_or_default(),
            failures_since: get(W, d, info::FAILURES_SINCE)?.unwrap_or(0),
            last_failure_at: get(W, d, info::LAST_FAILURE_AT)?.unwrap_or(0),
            last_failure_from: text(W, d, info::LAST_FAILURE_FROM)?.unwrap_or_default(),
            alternatives: text(W, d, info::ALTERNATIVES)?.unwrap_or_default(),
        })
    }
}

/// The policy keys common to Challenge and Account answers.
fn put_policy(d: &mut OwnedDict, policy: Option<Policy>, enroll_by: &str, rule: &str) {
    if let Some(p) = policy {
        put(d, info::POLICY, p.as_str());
    }
    put_text(d, info::ENROLL_BY, enroll_by);
    put_text(d, info::RULE, rule);
}

/// `Auth.Challenge`: the state word and its `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeAnswer {
    pub state: ChallengeState,
    /// The factor the code is for, when a code is required.
    pub method: Option<Method>,
    /// When the lock ends (Unix time); 0 for no lock.
    pub locked_until: u64,
    /// A line for the user; empty for none.
    pub message: String,
    /// `not-enrolled`: what the policy says of that (`None`: `require`).
    pub policy: Option<Policy>,
    /// With `Policy::Grace`: the last day, `YYYY-MM-DD`.
    pub enroll_by: String,
    /// `code-required`: the code's length in digits (0: not said).
    pub digits: u32,
    /// The policy rule that decided, for logs; empty for none.
    pub rule: String,
    /// `code-required`: the other methods the user may ask for instead
    /// (comma-separated, e.g. "email"); empty for none.
    pub alternatives: String,
}

impl ChallengeAnswer {
    /// Whether the user may ask for `method` instead.
    pub fn offers(&self, method: Method) -> bool {
        self.alternatives
            .split(',')
            .any(|m| m.trim() == method.as_str())
    }

    pub fn plain(state: ChallengeState, message: impl Into<String>) -> ChallengeAnswer {
        ChallengeAnswer {
            state,
            method: None,
            locked_until: 0,
            message: message.into(),
            policy: None,
            enroll_by: String::new(),
            digits: 0,
            rule: String::new(),
            alternatives: String::new(),
        }
    }

    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        if let Some(m) = self.method {
            put(&mut d, info::METHOD, m.as_str());
        }
        put_text(&mut d, info::ALTERNATIVES, &self.alternatives);
        put_nonzero(&mut d, info::LOCKED_UNTIL, self.locked_until);
        put_text(&mut d, info::MESSAGE, &self.message);
        put_policy(&mut d, self.policy, &self.enroll_by, &self.rule);
        if self.digits != 0 {
            put(&mut d, info::DIGITS, self.digits);
        }
        d
    }

    /// The reply body: `(state, info)`.
    pub fn encode(&self) -> (String, OwnedDict) {
        (self.state.as_str().to_owned(), self.to_dict())
    }

    pub fn decode(state: &str, d: &OwnedDict) -> Result<ChallengeAnswer, DecodeError> {
        let state = ChallengeState::parse(state)
            .ok_or_else(|| DecodeError(format!("unknown Challenge state {state:?}")))?;
        let i = Info::decode(d)?;
        Ok(ChallengeAnswer {
            state,
            method: i.method,
            locked_until: i.locked_until,
            message: i.message,
            policy: i.policy,
            enroll_by: i.enroll_by,
            digits: i.digits,
            rule: i.rule,
            alternatives: i.alternatives,
        })
    }
}

/// `Auth.Account`: the state word and its `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAnswer {
    pub state: AccountState,
    /// `not-enrolled`: what the policy says of that (`None`: `require`).
    pub policy: Option<Policy>,
    pub enroll_by: String,
    pub rule: String,
    /// A line for the user; empty for none.
    pub message: String,
}

impl AccountAnswer {
    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        put_text(&mut d, info::MESSAGE, &self.message);
        put_policy(&mut d, self.policy, &self.enroll_by, &self.rule);
        d
    }

    pub fn encode(&self) -> (String, OwnedDict) {
        (self.state.as_str().to_owned(), self.to_dict())
    }

    pub fn decode(state: &str, d: &OwnedDict) -> Result<AccountAnswer, DecodeError> {
        let state = AccountState::parse(state)
            .ok_or_else(|| DecodeError(format!("unknown Account state {state:?}")))?;
        let i = Info::decode(d)?;
        Ok(AccountAnswer {
            state,
            policy: i.policy,
            enroll_by: i.enroll_by,
            rule: i.rule,
            message: i.message,
        })
    }
}

/// `Auth.Verify`: the result word and its `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyAnswer {
    pub result: VerifyResult,
    /// What matched, on `ok`.
    pub method_used: Option<MethodUsed>,
    pub attempts_left: Option<u32>,
    /// When the lock ends (Unix time); 0 for no lock.
    pub locked_until: u64,
    pub backup_codes_left: Option<u32>,
    /// A line for the user; empty for none.
    pub message: String,
    /// A line the user should see besides the result (why no code came
    /// by mail); empty if none.
    pub notice: String,
    /// On `ok`: wrong codes since the last success, and the last one's
    /// time and remote host (0 and "" for none).
    pub failures_since: u32,
    pub last_failure_at: u64,
    pub last_failure_from: String,
}

impl VerifyAnswer {
    pub fn plain(result: VerifyResult, message: impl Into<String>) -> VerifyAnswer {
        VerifyAnswer {
            result,
            method_used: None,
            attempts_left: None,
            locked_until: 0,
            backup_codes_left: None,
            message: message.into(),
            notice: String::new(),
            failures_since: 0,
            last_failure_at: 0,
            last_failure_from: String::new(),
        }
    }

    /// `locked`, with no attempt left until `until`.
    pub fn locked(message: &str, until: u64) -> VerifyAnswer {
        let mut o = VerifyAnswer::plain(VerifyResult::Locked, message);
        o.locked_until = until;
        o.attempts_left = Some(0);
        o
    }

    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        if let Some(m) = self.method_used {
            put(&mut d, info::METHOD_USED, m.as_str());
        }
        if let Some(a) = self.attempts_left {
            put(&mut d, info::ATTEMPTS_LEFT, a);
        }
        put_nonzero(&mut d, info::LOCKED_UNTIL, self.locked_until);
        if let Some(b) = self.backup_codes_left {
            put(&mut d, info::BACKUP_CODES_LEFT, b);
        }
        put_text(&mut d, info::MESSAGE, &self.message);
        put_text(&mut d, info::NOTICE, &self.notice);
        if self.failures_since != 0 {
            put(&mut d, info::FAILURES_SINCE, self.failures_since);
        }
        put_nonzero(&mut d, info::LAST_FAILURE_AT, self.last_failure_at);
        put_text(&mut d, info::LAST_FAILURE_FROM, &self.last_failure_from);
        d
    }

    /// The reply body: `(result, info)`.
    pub fn encode(&self) -> (String, OwnedDict) {
        (self.result.as_str().to_owned(), self.to_dict())
    }

    pub fn decode(result: &str, d: &OwnedDict) -> Result<VerifyAnswer, DecodeError> {
        let result = VerifyResult::parse(result)
            .ok_or_else(|| DecodeError(format!("unknown Verify result {result:?}")))?;
        let i = Info::decode(d)?;
        Ok(VerifyAnswer {
            result,
            method_used: i.method_used,
            attempts_left: i.attempts_left,
            locked_until: i.locked_until,
            backup_codes_left: i.backup_codes_left,
            message: i.message,
            notice: i.notice,
            failures_since: i.failures_since,
            last_failure_at: i.last_failure_at,
            last_failure_from: i.last_failure_from,
        })
    }
}

// ---- Manager.Status, Admin.ListUsers ---------------------------------------

/// `Manager.Status`, and each readable `Admin.ListUsers` entry. Serialised
/// as is by `otpgate status --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub user: String,
    pub enrolled: bool,
    pub pending: bool,
    /// Empty when not enrolled.
    pub method: String,
    pub backup_codes_left: u32,
    pub locked: bool,
    pub locked_until: u64,
    pub failures: u32,
    pub breakglass_codes_left: u32,
    pub breakglass_unacknowledged: u32,
    /// The authenticator's clock as last seen off (+ fast); 0 with
    /// `clock_offset_seen_at` 0 when never.
    pub clock_offset_secs: i64,
    pub clock_offset_seen_at: u64,
    /// Every enrolled device; empty from a daemon older than devices.
    pub devices: Vec<Device>,
}

/// One enrolled device of a [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Device {
    pub name: String,
    /// `totp` | `email`.
    pub method: String,
    /// When it was added (Unix time).
    pub added: u64,
    /// When a code of it was last accepted; 0 for never.
    pub last_used: u64,
    /// How far off its clock was last seen (+ fast), and when (0: never).
    pub clock_offset_secs: i64,
    pub clock_offset_seen_at: u64,
}

impl Device {
    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        put(&mut d, device::NAME, self.name.as_str());
        put(&mut d, device::METHOD, self.method.as_str());
        put(&mut d, device::ADDED, self.added);
        put(&mut d, device::LAST_USED, self.last_used);
        if self.clock_offset_seen_at != 0 {
            put(&mut d, device::CLOCK_OFFSET_SECS, self.clock_offset_secs);
            put(
                &mut d,
                device::CLOCK_OFFSET_SEEN_AT,
                self.clock_offset_seen_at,
            );
        }
        d
    }

    pub fn from_dict(d: &OwnedDict) -> Result<Device, DecodeError> {
        const W: &str = "device";
        Ok(Device {
            name: required(W, device::NAME, text(W, d, device::NAME)?)?,
            method: text(W, d, device::METHOD)?.unwrap_or_default(),
            added: get(W, d, device::ADDED)?.unwrap_or(0),
            last_used: get(W, d, device::LAST_USED)?.unwrap_or(0),
            clock_offset_secs: get(W, d, device::CLOCK_OFFSET_SECS)?.unwrap_or(0),
            clock_offset_seen_at: get(W, d, device::CLOCK_OFFSET_SEEN_AT)?.unwrap_or(0),
        })
    }
}

impl Status {
    /// Every key, always.
    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        put(&mut d, status::USER, self.user.as_str());
        put(&mut d, status::ENROLLED, self.enrolled);
        put(&mut d, status::PENDING, self.pending);
        put(&mut d, status::METHOD, self.method.as_str());
        put(&mut d, status::BACKUP_CODES_LEFT, self.backup_codes_left);
        put(&mut d, status::LOCKED, self.locked);
        put(&mut d, status::LOCKED_UNTIL, self.locked_until);
        put(&mut d, status::FAILURES, self.failures);
        put(
            &mut d,
            status::BREAKGLASS_CODES_LEFT,
            self.breakglass_codes_left,
        );
        put(
            &mut d,
            status::BREAKGLASS_UNACKNOWLEDGED,
            self.breakglass_unacknowledged,
        );
        if self.clock_offset_seen_at != 0 {
            put(&mut d, status::CLOCK_OFFSET_SECS, self.clock_offset_secs);
            put(
                &mut d,
                status::CLOCK_OFFSET_SEEN_AT,
                self.clock_offset_seen_at,
            );
        }
        let devices: Vec<OwnedDict> = self.devices.iter().map(Device::to_dict).collect();
        let value = Variant::new(devices);
        d.insert(
            status::DEVICES.to_owned(),
            OwnedVariant::try_from(value).expect("a list of owned dictionaries is owned"),
        );
        d
    }

    /// `user` and `enrolled` must be there; anything else missing reads as
    /// "no" or 0.
    pub fn from_dict(d: &OwnedDict) -> Result<Status, DecodeError> {
        const W: &str = "status";
        Ok(Status {
            user: required(W, status::USER, text(W, d, status::USER)?)?,
            enrolled: required(W, status::ENROLLED, get(W, d, status::ENROLLED)?)?,
            pending: get(W, d, status::PENDING)?.unwrap_or(false),
            method: text(W, d, status::METHOD)?.unwrap_or_default(),
            backup_codes_left: get(W, d, status::BACKUP_CODES_LEFT)?.unwrap_or(0),
            locked: get(W, d, status::LOCKED)?.unwrap_or(false),
            locked_until: get(W, d, status::LOCKED_UNTIL)?.unwrap_or(0),
            failures: get(W, d, status::FAILURES)?.unwrap_or(0),
            breakglass_codes_left: get(W, d, status::BREAKGLASS_CODES_LEFT)?.unwrap_or(0),
            breakglass_unacknowledged: get(W, d, status::BREAKGLASS_UNACKNOWLEDGED)?.unwrap_or(0),
            clock_offset_secs: get(W, d, status::CLOCK_OFFSET_SECS)?.unwrap_or(0),
            clock_offset_seen_at: get(W, d, status::CLOCK_OFFSET_SEEN_AT)?.unwrap_or(0),
            devices: match d.get(status::DEVICES) {
                None => Vec::new(),
                Some(v) => {
                    let wrong =
                        || DecodeError(format!("{W} key {:?} has the wrong type", status::DEVICES));
                    let list = <Vec<OwnedDict>>::try_from(v.try_clone().map_err(|_| wrong())?)
                        .map_err(|_| wrong())?;
                    list.iter()
                        .map(Device::from_dict)
                        .collect::<Result<_, _>>()?
                }
            },
        })
    }
}

/// One `Admin.ListUsers` entry: a readable record, or one the daemon could
/// not read (listed, not hidden: an administrator must see it to fix it).
/// Serialised untagged: a status object, or `{"user", "error"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum UserEntry {
    Ok(Status),
    Unreadable { user: String, error: String },
}

impl UserEntry {
    pub fn user(&self) -> &str {
        match self {
            UserEntry::Ok(s) => &s.user,
            UserEntry::Unreadable { user, .. } => user,
        }
    }

    pub fn to_dict(&self) -> OwnedDict {
        match self {
            UserEntry::Ok(s) => s.to_dict(),
            UserEntry::Unreadable { user, error } => {
                let mut d = OwnedDict::new();
                put(&mut d, status::USER, user.as_str());
                put(&mut d, status::ERROR, error.as_str());
                d
            }
        }
    }

    pub fn from_dict(d: &OwnedDict) -> Result<UserEntry, DecodeError> {
        const W: &str = "a user list entry";
        let user = required(W, status::USER, text("status", d, status::USER)?)?;
        match text("status", d, status::ERROR)? {
            Some(error) => Ok(UserEntry::Unreadable { user, error }),
            None => Status::from_dict(d).map(UserEntry::Ok),
        }
    }
}

// ---- Manager.History -------------------------------------------------------

/// One event of a user's second factor. Serialised as is by
/// `otpgate history --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub at: u64,
    pub event: String,
    pub service: String,
    pub rhost: String,
    pub tty: String,
    pub detail: String,
}

impl HistoryEntry {
    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        put(&mut d, history::AT, self.at);
        put(&mut d, history::EVENT, self.event.as_str());
        put(&mut d, history::SERVICE, self.service.as_str());
        put(&mut d, history::RHOST, self.rhost.as_str());
        put(&mut d, history::TTY, self.tty.as_str());
        put(&mut d, history::DETAIL, self.detail.as_str());
        d
    }

    pub fn from_dict(d: &OwnedDict) -> Result<HistoryEntry, DecodeError> {
        const W: &str = "history entry";
        Ok(HistoryEntry {
            at: required(W, history::AT, get(W, d, history::AT)?)?,
            event: required(W, history::EVENT, text(W, d, history::EVENT)?)?,
            service: text(W, d, history::SERVICE)?.unwrap_or_default(),
            rhost: text(W, d, history::RHOST)?.unwrap_or_default(),
            tty: text(W, d, history::TTY)?.unwrap_or_default(),
            detail: text(W, d, history::DETAIL)?.unwrap_or_default(),
        })
    }
}

// ---- Admin.ExplainPolicy ---------------------------------------------------

/// `Admin.ExplainPolicy`: the rule that applies to one login, and why.
/// Serialised as is by `otpgate policy explain --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub user: String,
    pub service: String,
    /// Empty for a local login.
    pub rhost: String,
    /// `require` | `optional` | `skip`.
    pub mode: String,
    pub rule: String,
    pub reasons: Vec<String>,
    pub enrolled: bool,
    /// `YYYY-MM-DD`, or empty.
    pub enroll_by: String,
    pub remember_secs: u64,
    pub outcome: String,
}

impl Explanation {
    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        put(&mut d, explain::USER, self.user.as_str());
        put(&mut d, explain::SERVICE, self.service.as_str());
        put(&mut d, explain::RHOST, self.rhost.as_str());
        put(&mut d, explain::MODE, self.mode.as_str());
        put(&mut d, explain::RULE, self.rule.as_str());
        let reasons: Vec<&str> = self.reasons.iter().map(String::as_str).collect();
        put(&mut d, explain::REASONS, reasons);
        put(&mut d, explain::ENROLLED, self.enrolled);
        put(&mut d, explain::ENROLL_BY, self.enroll_by.as_str());
        put(&mut d, explain::REMEMBER_SECS, self.remember_secs);
        put(&mut d, explain::OUTCOME, self.outcome.as_str());
        d
    }

    pub fn from_dict(d: &OwnedDict) -> Result<Explanation, DecodeError> {
        const W: &str = "explanation";
        let reasons = match d.get(explain::REASONS) {
            None => Vec::new(),
            Some(v) => <Vec<String>>::try_from(v.try_clone().map_err(|_| {
                DecodeError(format!("{W} key {:?} has the wrong type", explain::REASONS))
            })?)
            .map_err(|_| {
                DecodeError(format!("{W} key {:?} has the wrong type", explain::REASONS))
            })?,
        };
        Ok(Explanation {
            user: required(W, explain::USER, text(W, d, explain::USER)?)?,
            service: text(W, d, explain::SERVICE)?.unwrap_or_default(),
            rhost: text(W, d, explain::RHOST)?.unwrap_or_default(),
            mode: required(W, explain::MODE, text(W, d, explain::MODE)?)?,
            rule: text(W, d, explain::RULE)?.unwrap_or_default(),
            reasons,
            enrolled: get(W, d, explain::ENROLLED)?.unwrap_or(false),
            enroll_by: text(W, d, explain::ENROLL_BY)?.unwrap_or_default(),
            remember_secs: get(W, d, explain::REMEMBER_SECS)?.unwrap_or(0),
            outcome: text(W, d, explain::OUTCOME)?.unwrap_or_default(),
        })
    }
}

// ---- Admin.Stats -----------------------------------------------------------

/// A daemon that does not say how many days its counters cover counts 30,
/// the only span there has been.
const STATS_DAYS_UNSAID: u32 = 30;

/// `Admin.Stats`: users now, and counters over the last `days` days.
/// Serialised as is by `otpgate stats --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub users_enrolled: u32,
    pub users_locked: u32,
    pub successes: u32,
    pub failures: u32,
    pub lockouts: u32,
    pub backup_codes_used: u32,
    /// Enrolments confirmed or imported, second factors disabled, records
    /// reset (a daemon that predates them sends none: 0).
    pub enrolments: u32,
    pub disabled: u32,
    pub resets: u32,
    pub days: u32,
}

impl Stats {
    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        put(&mut d, stats::USERS_ENROLLED, self.users_enrolled);
        put(&mut d, stats::USERS_LOCKED, self.users_locked);
        put(&mut d, stats::SUCCESSES, self.successes);
        put(&mut d, stats::FAILURES, self.failures);
        put(&mut d, stats::LOCKOUTS, self.lockouts);
        put(&mut d, stats::BACKUP_CODES_USED, self.backup_codes_used);
        put(&mut d, stats::ENROLMENTS, self.enrolments);
        put(&mut d, stats::DISABLED, self.disabled);
        put(&mut d, stats::RESETS, self.resets);
        put(&mut d, stats::DAYS, self.days);
        d
    }

    /// Every counter must be there, but for those newer than the others
    /// (`enrolments`, `disabled`, `resets`: 0) and `days`.
    pub fn from_dict(d: &OwnedDict) -> Result<Stats, DecodeError> {
        const W: &str = "stats";
        let count = |key: &str| required(W, key, get::<u32>(W, d, key)?);
        Ok(Stats {
            users_enrolled: count(stats::USERS_ENROLLED)?,
            users_locked: count(stats::USERS_LOCKED)?,
            successes: count(stats::SUCCESSES)?,
            failures: count(stats::FAILURES)?,
            lockouts: count(stats::LOCKOUTS)?,
            backup_codes_used: count(stats::BACKUP_CODES_USED)?,
            enrolments: get(W, d, stats::ENROLMENTS)?.unwrap_or(0),
            disabled: get(W, d, stats::DISABLED)?.unwrap_or(0),
            resets: get(W, d, stats::RESETS)?.unwrap_or(0),
            days: get(W, d, stats::DAYS)?.unwrap_or(STATS_DAYS_UNSAID),
        })
    }
}

// ---- Manager.Enroll --------------------------------------------------------

/// What `Manager.Enroll` hands back: for TOTP the URI and secret (the only
/// time they leave the daemon), for e-mail where the confirmation code went.
#[derive(Clone, PartialEq, Eq)]
pub enum Enrollment {
    Totp {
        uri: Zeroizing<String>,
        secret: Zeroizing<String>,
        expires: u64,
    },
    Email {
        sent_to: String,
        expires: u64,
    },
}

/// Without the secret or the URI that carries it: this may reach a log.
impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Enrollment::Totp { expires, .. } => f
                .debug_struct("Totp")
                .field("expires", expires)
                .finish_non_exhaustive(),
            Enrollment::Email { sent_to, expires } => f
                .debug_struct("Email")
                .field("sent_to", sent_to)
                .field("expires", expires)
                .finish(),
        }
    }
}

impl Enrollment {
    pub fn method(&self) -> Method {
        match self {
            Enrollment::Totp { .. } => Method::Totp,
            Enrollment::Email { .. } => Method::Email,
        }
    }

    /// When the pending enrolment lapses (Unix time); 0 if the daemon did
    /// not say.
    pub fn expires(&self) -> u64 {
        match self {
            Enrollment::Totp { expires, .. } | Enrollment::Email { expires, .. } => *expires,
        }
    }

    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        put(&mut d, enroll::METHOD, self.method().as_str());
        match self {
            Enrollment::Totp { uri, secret, .. } => {
                put(&mut d, enroll::URI, uri.as_str());
                put(&mut d, enroll::SECRET, secret.as_str());
            }
            Enrollment::Email { sent_to, .. } => put(&mut d, enroll::SENT_TO, sent_to.as_str()),
        }
        put(&mut d, enroll::EXPIRES, self.expires());
        d
    }

    pub fn from_dict(d: &OwnedDict) -> Result<Enrollment, DecodeError> {
        const W: &str = "an enrolment";
        let method = required(
            W,
            enroll::METHOD,
            word(W, d, enroll::METHOD, Method::parse)?,
        )?;
        let expires = get(W, d, enroll::EXPIRES)?.unwrap_or(0);
        let secret_text = |key: &str| -> Result<Zeroizing<String>, DecodeError> {
            Ok(Zeroizing::new(required(W, key, text(W, d, key)?)?))
        };
        Ok(match method {
            Method::Totp => Enrollment::Totp {
                uri: secret_text(enroll::URI)?,
                secret: secret_text(enroll::SECRET)?,
                expires,
            },
            Method::Email => Enrollment::Email {
                sent_to: required(W, enroll::SENT_TO, text(W, d, enroll::SENT_TO)?)?,
                expires,
            },
        })
    }
}

// ---- Admin.Import ----------------------------------------------------------

/// `Admin.Import`'s reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub backup_codes_imported: u32,
}

impl Imported {
    pub fn to_dict(&self) -> OwnedDict {
        let mut d = OwnedDict::new();
        put(
            &mut d,
            import::BACKUP_CODES_IMPORTED,
            self.backup_codes_imported,
        );
        d
    }

    /// A missing count reads as none imported.
    pub fn from_dict(d: &OwnedDict) -> Result<Imported, DecodeError> {
        Ok(Imported {
            backup_codes_imported: get("import", d, import::BACKUP_CODES_IMPORTED)?.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(entries: Vec<(&str, Variant<'static>)>) -> OwnedDict {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v).unwrap()))
            .collect()
    }

    fn with(mut d: OwnedDict, key: &str, v: Variant<'static>) -> OwnedDict {
        d.insert(key.to_owned(), OwnedVariant::try_from(v).unwrap());
        d
    }

    /// The D-Bus type letter of every value, to hold the wire types fixed.
    fn types(d: &OwnedDict) -> Vec<(String, String)> {
        let mut t: Vec<(String, String)> = d
            .iter()
            .map(|(k, v)| (k.clone(), v.value_signature().to_string()))
            .collect();
        t.sort();
        t
    }

    fn full_verify() -> VerifyAnswer {
        VerifyAnswer {
            result: VerifyResult::Ok,
            method_used: Some(MethodUsed::Backup),
            attempts_left: Some(4),
            locked_until: 1_800_000_000,
            backup_codes_left: Some(7),
            message: "hello".into(),
            notice: "no mail".into(),
            failures_since: 2,
            last_failure_at: 1_799_999_000,
            last_failure_from: "203.0.113.5".into(),
        }
    }

    fn status() -> Status {
        Status {
            user: "alice".into(),
            enrolled: true,
            pending: true,
            method: "totp".into(),
            backup_codes_left: 9,
            locked: true,
            locked_until: 1_800_000_000,
            failures: 5,
            breakglass_codes_left: 4,
            breakglass_unacknowledged: 1,
            clock_offset_secs: -210,
            clock_offset_seen_at: 1_800_000_000,
            devices: vec![
                Device {
                    name: "default".into(),
                    method: "totp".into(),
                    added: 1_700_000_000,
                    last_used: 1_800_000_000,
                    clock_offset_secs: -210,
                    clock_offset_seen_at: 1_800_000_000,
                },
                Device {
                    name: "spare".into(),
                    method: "totp".into(),
                    added: 1_750_000_000,
                    last_used: 0,
                    clock_offset_secs: 0,
                    clock_offset_seen_at: 0,
                },
            ],
        }
    }

    fn stats() -> Stats {
        Stats {
            users_enrolled: 12,
            users_locked: 1,
            successes: 3400,
            failures: 25,
            lockouts: 2,
            backup_codes_used: 3,
            enrolments: 4,
            disabled: 5,
            resets: 6,
            days: 30,
        }
    }

    fn totp() -> Enrollment {
        Enrollment::Totp {
            uri: Zeroizing::new("otpauth://totp/x?secret=ABC".into()),
            secret: Zeroizing::new("ABC".into()),
            expires: 1_800_000_600,
        }
    }

    fn email() -> Enrollment {
        Enrollment::Email {
            sent_to: "a***@example.org".into(),
            expires: 1_800_000_600,
        }
    }

    #[test]
    fn answers_round_trip() {
        let c = ChallengeAnswer {
            state: ChallengeState::CodeRequired,
            method: Some(Method::Email),
            locked_until: 1_800_000_000,
            message: "sent".into(),
            policy: Some(Policy::Grace),
            enroll_by: "2027-01-31".into(),
            digits: 6,
            rule: "rule 1".into(),
            alternatives: "email".into(),
        };
        assert!(c.offers(Method::Email) && !c.offers(Method::Totp));
        let (w, d) = c.encode();
        assert_eq!(ChallengeAnswer::decode(&w, &d).unwrap(), c);
        for state in AccountState::ALL {
            let a = AccountAnswer {
                state: *state,
                policy: Some(Policy::Require),
                enroll_by: String::new(),
                rule: "no rule matched".into(),
                message: "m".into(),
            };
            let (w, d) = a.encode();
            assert_eq!(AccountAnswer::decode(&w, &d).unwrap(), a);
        }
        let x = Explanation {
            user: "alice".into(),
            service: "sshd".into(),
            rhost: "10.0.0.1".into(),
            mode: "require".into(),
            rule: "rule 1".into(),
            reasons: vec!["a".into(), "b".into()],
            enrolled: true,
            enroll_by: "2027-01-31".into(),
            remember_secs: 300,
            outcome: "asked for a code".into(),
        };
        assert_eq!(Explanation::from_dict(&x.to_dict()).unwrap(), x);
        let h = HistoryEntry {
            at: 1_800_000_000,
            event: "failure".into(),
            service: "sshd".into(),
            rhost: "203.0.113.5".into(),
            tty: "ssh".into(),
            detail: "wrong code".into(),
        };
        assert_eq!(HistoryEntry::from_dict(&h.to_dict()).unwrap(), h);
        for state in ChallengeState::ALL {
            let c = ChallengeAnswer::plain(*state, "");
            let (w, d) = c.encode();
            assert!(d.is_empty(), "{d:?}");
            assert_eq!(ChallengeAnswer::decode(&w, &d).unwrap(), c);
        }
        let v = full_verify();
        let (w, d) = v.encode();
        assert_eq!(VerifyAnswer::decode(&w, &d).unwrap(), v);
        for result in VerifyResult::ALL {
            let v = VerifyAnswer::plain(*result, "");
            let (w, d) = v.encode();
            assert!(d.is_empty(), "{d:?}");
            assert_eq!(VerifyAnswer::decode(&w, &d).unwrap(), v);
        }
        let l = VerifyAnswer::locked("locked", 5);
        let (w, d) = l.encode();
        assert_eq!(VerifyAnswer::decode(&w, &d).unwrap(), l);
    }

    #[test]
    fn dictionaries_round_trip() {
        let s = status();
        assert_eq!(Status::from_dict(&s.to_dict()).unwrap(), s);
        let e = UserEntry::Ok(s);
        assert_eq!(UserEntry::from_dict(&e.to_dict()).unwrap(), e);
        let u = UserEntry::Unreadable {
            user: "carol".into(),
            error: "cannot decrypt".into(),
        };
        assert_eq!(UserEntry::from_dict(&u.to_dict()).unwrap(), u);
        assert_eq!(Stats::from_dict(&stats().to_dict()).unwrap(), stats());
        for e in [totp(), email()] {
            assert_eq!(Enrollment::from_dict(&e.to_dict()).unwrap(), e);
        }
        let i = Imported {
            backup_codes_imported: 5,
        };
        assert_eq!(Imported::from_dict(&i.to_dict()).unwrap(), i);
    }

    #[test]
    fn wire_types_are_fixed() {
        let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, t)| (k.to_string(), t.to_string()))
                .collect()
        };
        assert_eq!(
            types(&full_verify().to_dict()),
            owned(&[
                ("attempts_left", "u"),
                ("backup_codes_left", "u"),
                ("failures_since", "u"),
                ("last_failure_at", "t"),
                ("last_failure_from", "s"),
                ("locked_until", "t"),
                ("message", "s"),
                ("method_used", "s"),
                ("notice", "s"),
            ])
        );
        let c = ChallengeAnswer {
            method: Some(Method::Totp),
            locked_until: 1,
            ..ChallengeAnswer::plain(ChallengeState::Locked, "m")
        };
        assert_eq!(
            types(&c.to_dict()),
            owned(&[("locked_until", "t"), ("message", "s"), ("method", "s")])
        );
        assert_eq!(
            types(&status().to_dict()),
            owned(&[
                ("backup_codes_left", "u"),
                ("breakglass_codes_left", "u"),
                ("breakglass_unacknowledged", "u"),
                ("clock_offset_secs", "x"),
                ("clock_offset_seen_at", "t"),
                ("devices", "aa{sv}"),
                ("enrolled", "b"),
                ("failures", "u"),
                ("locked", "b"),
                ("locked_until", "t"),
                ("method", "s"),
                ("pending", "b"),
                ("user", "s"),
            ])
        );
        let c = ChallengeAnswer {
            method: Some(Method::Totp),
            digits: 6,
            policy: Some(Policy::Grace),
            enroll_by: "2027-01-31".into(),
            rule: "rule 1".into(),
            ..ChallengeAnswer::plain(ChallengeState::CodeRequired, "")
        };
        assert_eq!(
            types(&c.to_dict()),
            owned(&[
                ("digits", "u"),
                ("enroll_by", "s"),
                ("method", "s"),
                ("policy", "s"),
                ("rule", "s"),
            ])
        );
        assert_eq!(
            types(&stats().to_dict()),
            owned(&[
                ("backup_codes_used", "u"),
                ("days", "u"),
                ("disabled", "u"),
                ("enrolments", "u"),
                ("failures", "u"),
                ("lockouts", "u"),
                ("resets", "u"),
                ("successes", "u"),
                ("users_enrolled", "u"),
                ("users_locked", "u"),
            ])
        );
        assert_eq!(
            types(&totp().to_dict()),
            owned(&[
                ("expires", "t"),
                ("method", "s"),
                ("secret", "s"),
                ("uri", "s"),
            ])
        );
        assert_eq!(
            types(&email().to_dict()),
            owned(&[("expires", "t"), ("method", "s"), ("sent_to", "s")])
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let new = || Variant::from(1i32);
        let (w, d) = full_verify().encode();
        let d = with(d, "something_new", new());
        assert_eq!(VerifyAnswer::decode(&w, &d).unwrap(), full_verify());
        let (w, d) = ChallengeAnswer::plain(ChallengeState::CodeRequired, "x").encode();
        assert!(ChallengeAnswer::decode(&w, &with(d, "something_new", new())).is_ok());
        let d = with(status().to_dict(), "something_new", new());
        assert_eq!(Status::from_dict(&d).unwrap(), status());
        let d = with(stats().to_dict(), "something_new", new());
        assert_eq!(Stats::from_dict(&d).unwrap(), stats());
        let d = with(totp().to_dict(), "something_new", new());
        assert_eq!(Enrollment::from_dict(&d).unwrap(), totp());
    }

    #[test]
    fn wrong_types_are_refused() {
        for (k, v) in [
            ("attempts_left", Variant::from(3i32)),
            ("attempts_left", Variant::from("3")),
            ("locked_until", Variant::from(5u32)),
            ("backup_codes_left", Variant::from(5u64)),
            ("message", Variant::from(5u32)),
            ("notice", Variant::from(true)),
            ("method", Variant::from("carrier-pigeon")),
            ("method_used", Variant::from("TOTP")),
        ] {
            let d = dict(vec![(k, v)]);
            // Either answer: a garbled key is suspect wherever it comes.
            assert!(VerifyAnswer::decode("invalid", &d).is_err(), "{k}");
            assert!(ChallengeAnswer::decode("code-required", &d).is_err(), "{k}");
        }
        assert!(VerifyAnswer::decode("OK", &OwnedDict::new()).is_err());
        assert!(ChallengeAnswer::decode("", &OwnedDict::new()).is_err());

        for (k, v) in [
            ("user", Variant::from(1u32)),
            ("enrolled", Variant::from("yes")),
            ("pending", Variant::from(0u32)),
            ("method", Variant::from(true)),
            ("backup_codes_left", Variant::from(9u64)),
            ("locked", Variant::from(1i32)),
            ("locked_until", Variant::from(1u32)),
            ("failures", Variant::from(-1i32)),
        ] {
            let d = with(status().to_dict(), k, v);
            assert!(Status::from_dict(&d).is_err(), "status {k}");
            assert!(UserEntry::from_dict(&d).is_err(), "entry {k}");
        }
        let d = with(status().to_dict(), "devices", Variant::from("x"));
        assert!(Status::from_dict(&d).is_err(), "devices");
        let d = with(status().to_dict(), "error", Variant::from(1u32));
        assert!(UserEntry::from_dict(&d).is_err());

        for k in [
            "users_enrolled",
            "users_locked",
            "successes",
            "failures",
            "lockouts",
            "backup_codes_used",
            "enrolments",
            "disabled",
            "resets",
            "days",
        ] {
            let d = with(stats().to_dict(), k, Variant::from(1u64));
            assert!(Stats::from_dict(&d).is_err(), "stats {k}");
        }

        for (k, v) in [
            ("method", Variant::from("sms")),
            ("uri", Variant::from(1u32)),
            ("secret", Variant::from(1u32)),
            ("expires", Variant::from(1u32)),
        ] {
            assert!(
                Enrollment::from_dict(&with(totp().to_dict(), k, v)).is_err(),
                "{k}"
            );
        }
        let d = with(email().to_dict(), "sent_to", Variant::from(1u32));
        assert!(Enrollment::from_dict(&d).is_err());
        let d = dict(vec![("backup_codes_imported", Variant::from("5"))]);
        assert!(Imported::from_dict(&d).is_err());
    }

    #[test]
    fn missing_keys() {
        // Optional info reads as "none".
        let v = VerifyAnswer::decode("invalid", &OwnedDict::new()).unwrap();
        assert_eq!(v, VerifyAnswer::plain(VerifyResult::Invalid, ""));
        // What a status or stats answer cannot do without.
        for k in ["user", "enrolled"] {
            let mut d = status().to_dict();
            d.remove(k);
            let err = Status::from_dict(&d).unwrap_err();
            assert_eq!(err.to_string(), format!("status without `{k}`"));
        }
        let mut d = status().to_dict();
        for k in [
            "pending",
            "method",
            "backup_codes_left",
            "locked",
            "locked_until",
            "failures",
        ] {
            d.remove(k);
        }
        d.remove("devices");
        let s = Status::from_dict(&d).unwrap();
        assert_eq!((s.pending, s.method.as_str(), s.failures), (false, "", 0));
        // A daemon older than devices: none listed.
        assert!(s.devices.is_empty());
        let mut d = stats().to_dict();
        d.remove("successes");
        assert_eq!(
            Stats::from_dict(&d).unwrap_err().to_string(),
            "stats without `successes`"
        );
        let mut d = stats().to_dict();
        for k in ["days", "enrolments", "disabled", "resets"] {
            d.remove(k);
        }
        let s = Stats::from_dict(&d).unwrap();
        assert_eq!((s.days, s.enrolments, s.disabled, s.resets), (30, 0, 0, 0));
        let mut d = totp().to_dict();
        d.remove("uri");
        assert!(Enrollment::from_dict(&d).is_err());
        let mut d = email().to_dict();
        d.remove("method");
        assert!(Enrollment::from_dict(&d).is_err());
        assert_eq!(
            Imported::from_dict(&OwnedDict::new())
                .unwrap()
                .backup_codes_imported,
            0
        );
    }

    #[test]
    fn debug_keeps_the_secret_out() {
        let text = format!("{:?}", totp());
        assert!(!text.contains("ABC"), "{text}");
    }
}
