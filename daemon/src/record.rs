//! What the daemon remembers about one user: one record, stored whole.
//!
//! A record holds a list of factors (named TOTP devices and e-mail
//! addresses; any of them verifies), a pending enrolment, the
//! backup-code hashes, the lockout state and per-day counters for `Stats`.
//! Secrets are only ever present sealed (`crypto::Sealed`).
//!
//! Disable and Reset leave a *retired* record: the day counters and
//! nothing that could authenticate (`UserRecord::retire`), so `Stats` keeps
//! counting what happened. A retired record is no enrolment anywhere, and
//! is deleted once its counters are older than `DAYS_KEPT`.

use serde::{Deserialize, Serialize};

use crate::crypto::{b64, Sealed};

pub const RECORD_VERSION: u32 = 1;
/// Per-day counters are kept this many days (Stats reports 30).
pub const DAYS_KEPT: u64 = 31;
pub const SECS_PER_DAY: u64 = 86_400;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub version: u32,
    /// The store key: `uid:N` (see `accounts`), or a user name for a
    /// record filed before records were keyed by uid.
    pub user: String,
    /// The account's name when the record was last written, to show a
    /// record whose uid the name service no longer knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What sealed secrets, backup-code hashes and mailed codes are bound
    /// to, when that is not `user`: a record moved from a name key to its
    /// uid key keeps the binding it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    #[serde(default)]
    pub factors: Vec<Factor>,
    #[serde(default)]
    pub pending: Option<Pending>,
    #[serde(default)]
    pub backup: Option<BackupCodes>,
    /// Consecutive failed codes since the last success or lock.
    #[serde(default)]
    pub failures: u32,
    /// Unix seconds until which the second factor is locked; 0 = not locked.
    #[serde(default)]
    pub locked_until: u64,
    /// Locks in a row without a success in between.
    #[serde(default)]
    pub lock_streak: u32,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default)]
    pub days: Vec<DayStats>,
    /// The login code mailed last, while it may still be used.
    #[serde(default)]
    pub email_code: Option<EmailCode>,
    /// When codes were mailed in the last hour (the per-user send limit).
    #[serde(default)]
    pub email_sends: Vec<u64>,
    /// Root's (or an administrator's) break-glass codes: hashed like backup
    /// codes, bound to `bound_to()` + [`BREAKGLASS_BINDING`], accepted only
    /// on a local console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<BackupCodes>,
    /// Break-glass codes used and not yet acknowledged: noted at every
    /// later login until `otpgate breakglass ack`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakglass_uses: Vec<BreakglassUse>,
    /// The last [`HISTORY_KEPT`] events of this second factor, oldest
    /// first: what `otpgate history` shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Keyed hashes of TOTP codes accepted while they are still within
    /// the window: a code accepted on one device is not a second success
    /// on another (each device also keeps its own `last_step`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<AcceptedCode>,
}

/// A TOTP code accepted recently: only its keyed hash is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AcceptedCode {
    /// The time step it was accepted for.
    pub step: u64,
    /// Until when (Unix time) it could still be typed within the window.
    pub until: u64,
    #[serde(with = "b64")]
    pub hash: Vec<u8>,
}

/// What accepted-code hashes are bound to, after the record's binding.
pub const ACCEPTED_BINDING: &str = "/accepted";

/// What a device without a name (enrolled before devices had names) is
/// called.
pub const DEFAULT_DEVICE_NAME: &str = "default";

/// Longest device name.
pub const MAX_DEVICE_NAME: usize = 32;

/// A device name: 1 to 32 of `a-z 0-9 . _ -`.
pub fn valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DEVICE_NAME
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Events kept per user.
pub const HISTORY_KEPT: usize = 50;

/// One event of a user's second factor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    pub at: u64,
    pub event: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rhost: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tty: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What break-glass code hashes are bound to, after the record's binding:
/// a backup code can never pass as a break-glass code, nor the reverse.
pub const BREAKGLASS_BINDING: &str = "/breakglass";

/// One use of a break-glass code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BreakglassUse {
    pub at: u64,
    pub tty: String,
    pub service: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Factor {
    Totp(TotpFactor),
    Email(EmailFactor),
}

impl Factor {
    /// The device's name; [`DEFAULT_DEVICE_NAME`] for one that has none.
    pub fn name(&self) -> &str {
        let n = match self {
            Factor::Totp(t) => &t.name,
            Factor::Email(e) => &e.name,
        };
        n.as_deref().unwrap_or(DEFAULT_DEVICE_NAME)
    }

    pub fn set_name(&mut self, name: Option<String>) {
        match self {
            Factor::Totp(t) => t.name = name,
            Factor::Email(e) => e.name = name,
        }
    }

    pub fn method(&self) -> otpgate_proto::Method {
        match self {
            Factor::Totp(_) => otpgate_proto::Method::Totp,
            Factor::Email(_) => otpgate_proto::Method::Email,
        }
    }

    pub fn created_at(&self) -> u64 {
        match self {
            Factor::Totp(t) => t.created_at,
            Factor::Email(e) => e.created_at,
        }
    }

    /// How far off this device's clock was last seen (TOTP only).
    pub fn drift(&self) -> Option<Drift> {
        match self {
            Factor::Totp(t) => t.drift,
            Factor::Email(_) => None,
        }
    }

    /// When it last logged someone in (or proved a code); 0 for never.
    pub fn last_used_at(&self) -> u64 {
        match self {
            Factor::Totp(t) => t.last_used_at,
            Factor::Email(e) => e.last_used_at,
        }
        .unwrap_or(0)
    }

    pub fn mark_used(&mut self, now: u64) {
        match self {
            Factor::Totp(t) => t.last_used_at = Some(now),
            Factor::Email(e) => e.last_used_at = Some(now),
        }
    }
}

/// Codes sent by mail to a confirmed address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailFactor {
    pub id: String,
    pub address: String,
    pub created_at: u64,
    /// The device's name (`otpgate enroll --name`); `None`: "default".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<u64>,
}

/// A code that was mailed: only its keyed hash is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailCode {
    #[serde(with = "b64")]
    pub hash: Vec<u8>,
    pub expires_at: u64,
    pub sent_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpFactor {
    /// Random, not secret: names the factor in the AEAD's associated data.
    pub id: String,
    pub secret: Sealed,
    /// "SHA1" | "SHA256" | "SHA512"; per factor, because an imported
    /// google-authenticator secret keeps its own parameters.
    pub algorithm: String,
    pub digits: usize,
    pub period: u64,
    /// The newest time step accepted; a code must be for a later step.
    #[serde(default)]
    pub last_step: Option<u64>,
    /// How far off this device's clock was last seen (a wrong code that
    /// was the code of another step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// Steps whose codes a clock-drift hint revealed to whoever typed them:
    /// never accepted, so a guessed code of a later step cannot be kept for
    /// its time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub burned_steps: Vec<u64>,
    pub created_at: u64,
    /// "enrolled" or "imported".
    pub origin: String,
    /// The device's name (`otpgate enroll --name`); `None`: "default".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When a code of this device was last accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<u64>,
}

impl TotpFactor {
    /// A device that has accepted no code yet, with RFC 6238's parameters
    /// (SHA1, 6 digits, 30 s): callers whose differ set them over these.
    pub fn new(id: &str, secret: Sealed, created_at: u64, origin: &str) -> TotpFactor {
        TotpFactor {
            id: id.to_string(),
            secret,
            algorithm: "SHA1".into(),
            digits: 6,
            period: 30,
            last_step: None,
            drift: None,
            burned_steps: Vec::new(),
            created_at,
            origin: origin.to_string(),
            name: None,
            last_used_at: None,
        }
    }
}

/// An authenticator's clock as seen off.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    /// + fast, - slow.
    pub offset_secs: i64,
    pub seen_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub factor: Factor,
    /// Only this uid (or root) may confirm it.
    pub started_by: u32,
    pub expires_at: u64,
    /// Wrong confirmation codes so far.
    #[serde(default)]
    pub attempts: u32,
    /// For an e-mail factor: the confirmation code that was mailed.
    #[serde(default)]
    pub code: Option<EmailCode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupCodes {
    /// One salt for the whole set, so that checking a code costs one argon2
    /// evaluation whatever the number of codes (see `backup`).
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    /// Hashes of the codes still unused.
    pub hashes: Vec<BackupHash>,
    pub generated_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct BackupHash(#[serde(with = "b64")] pub Vec<u8>);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayStats {
    /// Days since the Unix epoch.
    pub day: u64,
    #[serde(default)]
    pub successes: u32,
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub lockouts: u32,
    #[serde(default)]
    pub backup_used: u32,
    /// Enrolments confirmed (or imported). Like the next two, left out
    /// while 0, so that a record without them reads as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub enrolled: u32,
    /// Second factors disabled (`otpgate disable`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disabled: u32,
    /// Records reset by an administrator (`otpgate reset`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reset: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a record is retired (counted on the day it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    Disabled,
    Reset,
}

impl UserRecord {
    pub fn new(user: &str, now: u64) -> UserRecord {
        UserRecord {
            version: RECORD_VERSION,
            user: user.to_string(),
            name: None,
            binding: None,
            factors: Vec::new(),
            pending: None,
            backup: None,
            failures: 0,
            locked_until: 0,
            lock_streak: 0,
            created_at: now,
            updated_at: now,
            days: Vec::new(),
            email_code: None,
            email_sends: Vec::new(),
            breakglass: None,
            breakglass_uses: Vec::new(),
            history: Vec::new(),
            accepted: Vec::new(),
        }
    }

    /// Adds an event to the history, dropping the oldest past
    /// [`HISTORY_KEPT`]. Caller-supplied values are kept short and on one
    /// line.
    pub fn note(&mut self, at: u64, event: &str, ctx: &crate::context::Context, detail: String) {
        let short = |s: &str| crate::audit::clean(s);
        self.history.push(HistoryEntry {
            at,
            event: event.to_string(),
            service: short(&ctx.service),
            rhost: short(&ctx.rhost),
            tty: short(&ctx.tty),
            detail,
        });
        if self.history.len() > HISTORY_KEPT {
            let extra = self.history.len() - HISTORY_KEPT;
            self.history.drain(..extra);
        }
    }

    /// The string every secret of this record is bound to.
    pub fn bound_to(&self) -> &str {
        self.binding.as_deref().unwrap_or(&self.user)
    }

    /// The name to show for this record.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.user)
    }

    pub fn enrolled(&self) -> bool {
        !self.factors.is_empty()
    }

    pub fn totp(&self) -> Option<&TotpFactor> {
        self.factors.iter().find_map(|f| match f {
            Factor::Totp(t) => Some(t),
            _ => None,
        })
    }

    pub fn totp_mut(&mut self) -> Option<&mut TotpFactor> {
        self.factors.iter_mut().find_map(|f| match f {
            Factor::Totp(t) => Some(t),
            _ => None,
        })
    }

    pub fn email(&self) -> Option<&EmailFactor> {
        self.factors.iter().find_map(|f| match f {
            Factor::Email(e) => Some(e),
            _ => None,
        })
    }

    /// The method a login asks for first: an app's code if there is a
    /// TOTP device, else a mailed code.
    pub fn method(&self) -> Option<otpgate_proto::Method> {
        if self.totp().is_some() {
            Some(otpgate_proto::Method::Totp)
        } else {
            self.factors.first().map(Factor::method)
        }
    }

    /// The device named `name` ("default" finds one without a name).
    pub fn device(&self, name: &str) -> Option<usize> {
        self.factors.iter().position(|f| f.name() == name)
    }

    pub fn pending_live(&self, now: u64) -> Option<&Pending> {
        self.pending.as_ref().filter(|p| p.expires_at > now)
    }

    /// Nothing here can authenticate or waits to be confirmed: what
    /// Disable and Reset leave (an enrolment never confirmed reads the
    /// same). Treated as no enrolment everywhere, and not listed.
    pub fn retired(&self, now: u64) -> bool {
        self.factors.is_empty()
            && self.pending_live(now).is_none()
            && self.breakglass.is_none()
            && self.breakglass_uses.is_empty()
    }

    /// What Disable and Reset leave of this record: who it was and its day
    /// counters, `why` counted today. No factor, pending enrolment, backup
    /// or break-glass code, lock or mailed code: nothing that could
    /// authenticate, and no secret bound to anything.
    pub fn retire(&self, why: Retired, now: u64) -> UserRecord {
        let mut rec = UserRecord::new(&self.user, self.created_at);
        rec.name = self.name.clone();
        rec.updated_at = now;
        rec.days = self.days.clone();
        let today = rec.today(now);
        match why {
            Retired::Disabled => today.disabled += 1,
            Retired::Reset => today.reset += 1,
        }
        rec
    }

    /// Retired with nothing left worth keeping: no day counter within
    /// `DAYS_KEPT`, no mail counted against the hourly limit. Deleted
    /// instead of written.
    pub fn forgettable(&self, now: u64) -> bool {
        let day = now / SECS_PER_DAY;
        self.retired(now)
            && self.backup.is_none()
            && self.email_code.is_none()
            && self.locked_until <= now
            && self.email_sends.iter().all(|&t| t + 3600 <= now)
            && self.days.iter().all(|d| d.day + DAYS_KEPT <= day)
    }

    /// Adds another record's day counters to this one's (a record moved
    /// over a retired one keeps both).
    pub fn add_days(&mut self, other: &[DayStats]) {
        for d in other {
            match self.days.iter_mut().find(|m| m.day == d.day) {
                Some(m) => {
                    m.successes += d.successes;
                    m.failures += d.failures;
                    m.lockouts += d.lockouts;
                    m.backup_used += d.backup_used;
                    m.enrolled += d.enrolled;
                    m.disabled += d.disabled;
                    m.reset += d.reset;
                }
                None => self.days.push(d.clone()),
            }
        }
    }

    pub fn backup_codes_left(&self) -> usize {
        self.backup.as_ref().map_or(0, |b| b.hashes.len())
    }

    /// Today's counters, created on first use; older than `DAYS_KEPT` dropped.
    pub fn today(&mut self, now: u64) -> &mut DayStats {
        let day = now / SECS_PER_DAY;
        self.days.retain(|d| d.day + DAYS_KEPT > day);
        if let Some(i) = self.days.iter().position(|d| d.day == day) {
            &mut self.days[i]
        } else {
            self.days.push(DayStats {
                day,
                ..DayStats::default()
            });
            self.days.last_mut().expect("just pushed")
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a record always serialises");
        v.push(b'\n');
        v
    }

    /// Parses a stored record. Any defect is an error naming what is wrong,
    /// never a partial record.
    pub fn from_bytes(user: &str, bytes: &[u8]) -> Result<UserRecord, String> {
        let rec: UserRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if rec.version != RECORD_VERSION {
            return Err(format!(
                "record version {} is not one this otpgated understands ({RECORD_VERSION})",
                rec.version
            ));
        }
        if rec.user != user {
            return Err(format!(
                "the file holds the record of {:?}, not of {user:?} (copied or renamed?)",
                rec.user
            ));
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counters_read_and_write_as_before_until_used() {
        let old = br#"{"version":1,"user":"uid:5","created_at":1,"updated_at":2,
            "days":[{"day":3,"successes":4,"failures":1,"lockouts":0,"backup_used":0}]}"#;
        let mut rec = UserRecord::from_bytes("uid:5", old).unwrap();
        assert_eq!((rec.days[0].successes, rec.days[0].enrolled), (4, 0));
        let text = String::from_utf8(rec.to_bytes()).unwrap();
        assert!(
            !text.contains("enrolled") && !text.contains("reset"),
            "{text}"
        );
        let now = 3 * SECS_PER_DAY + 10;
        rec.factors.push(Factor::Email(EmailFactor {
            id: "e".into(),
            address: "a@b".into(),
            created_at: 1,
            name: None,
            last_used_at: None,
        }));
        rec.backup = Some(BackupCodes {
            salt: vec![1],
            hashes: vec![BackupHash(vec![2])],
            generated_at: 1,
        });
        rec.locked_until = now + 100;
        let gone = rec.retire(Retired::Reset, now);
        assert!(gone.retired(now) && gone.backup.is_none() && gone.locked_until == 0);
        assert_eq!((gone.days[0].successes, gone.days[0].reset), (4, 1));
        assert!(!gone.forgettable(now));
        assert!(gone.forgettable(now + DAYS_KEPT * SECS_PER_DAY));
        let back = UserRecord::from_bytes("uid:5", &gone.to_bytes()).unwrap();
        assert_eq!(back.days[0].reset, 1);
    }
}
