//! The contract between `otpgated`, `pam_otpgate.so` and the `otpgate` CLI.
//!
//! Everything a caller and the daemon must agree on lives here: the bus name
//! and object, the interface names, the result words of the `Auth` interface,
//! the keys of the `a{sv}` dictionaries, the error names and the client-side
//! proxies, the method table ([`methods`]) and the one encoder and decoder of
//! the answer dictionaries ([`codec`]). Nothing here decides anything; the
//! daemon does.

use std::collections::HashMap;
use std::fmt;

use zbus::message::{Header, Message};
use zbus::names::ErrorName;
use zbus::{OwnedVariant, Variant};

pub mod codec;
pub mod methods;

pub const BUS_NAME: &str = "org.otpgate.Otpgate1";
pub const OBJECT_PATH: &str = "/org/otpgate/Otpgate1";
pub const AUTH_INTERFACE: &str = "org.otpgate.Otpgate1.Auth";
pub const MANAGER_INTERFACE: &str = "org.otpgate.Otpgate1.Manager";
pub const ADMIN_INTERFACE: &str = "org.otpgate.Otpgate1.Admin";

/// The system bus, as a D-Bus address. The PAM module uses only this or its
/// `bus=` option, never the environment.
pub const SYSTEM_BUS_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";
/// Where otpgated listens for the PAM module unless `[pam] socket` says
/// otherwise: peer-to-peer D-Bus, the same interfaces as on the bus, in a
/// directory only root may enter.
pub const PAM_SOCKET: &str = "/run/otpgate/pam.socket";

/// Longest code the daemon looks at. Anything longer is judged `invalid`
/// without being parsed (a 10 MB "code" costs nothing).
pub const MAX_CODE_LEN: usize = 64;

/// Longest user name accepted anywhere (Linux's LOGIN_NAME_MAX is 256).
pub const MAX_USER_LEN: usize = 256;

/// Keys of the `context` dictionary passed to `Challenge` and `Verify`.
pub mod context {
    pub const SERVICE: &str = "service";
    pub const RHOST: &str = "rhost";
    pub const RUSER: &str = "ruser";
    pub const TTY: &str = "tty";
    /// Challenge only: the method the user asked for instead of the one
    /// offered first (s, `email`): the daemon then mails a code.
    pub const METHOD: &str = "method";
}

/// Keys of the `info` dictionaries returned by the daemon.
pub mod info {
    pub const METHOD: &str = "method";
    pub const METHOD_USED: &str = "method_used";
    pub const ATTEMPTS_LEFT: &str = "attempts_left";
    pub const LOCKED_UNTIL: &str = "locked_until";
    pub const BACKUP_CODES_LEFT: &str = "backup_codes_left";
    pub const MESSAGE: &str = "message";
    /// Verify: a line to show besides the result (why no code came by
    /// mail). Clients that do not know it may ignore it.
    pub const NOTICE: &str = "notice";
    /// Challenge and Account: what the administrator's policy says for this
    /// login (s, a [`Policy`](crate::Policy) word). Absent: `require`.
    pub const POLICY: &str = "policy";
    /// With `policy` = `grace`: the last day an account may stay without
    /// a second factor (s, `YYYY-MM-DD`).
    pub const ENROLL_BY: &str = "enroll_by";
    /// Challenge, `code-required`: how many digits the code has (u), so
    /// that `forward_pass` can split a password from the code after it.
    pub const DIGITS: &str = "digits";
    /// Which policy rule decided (s), for the module's log.
    pub const RULE: &str = "rule";
    /// Verify `ok`: wrong codes since the last success (u), the last one's
    /// time (t) and remote host (s, empty for a local login).
    pub const FAILURES_SINCE: &str = "failures_since";
    pub const LAST_FAILURE_AT: &str = "last_failure_at";
    pub const LAST_FAILURE_FROM: &str = "last_failure_from";
    /// Challenge, `code-required`: the other methods the user may ask for
    /// instead, comma-separated (s, e.g. `email`); absent for none.
    pub const ALTERNATIVES: &str = "alternatives";
}

/// Keys of each `Manager.History` entry.
pub mod history {
    /// Unix time (t).
    pub const AT: &str = "at";
    /// `success` | `failure` | `replayed` | `expired` | `locked` |
    /// `backup-code-used` | `breakglass-used` | `enrolled` |
    /// `backup-codes-replaced` | `device-added` | `device-removed` (s).
    pub const EVENT: &str = "event";
    pub const SERVICE: &str = "service";
    pub const RHOST: &str = "rhost";
    pub const TTY: &str = "tty";
    /// What else there is to say (s): the method, codes left, a lock's end.
    pub const DETAIL: &str = "detail";
}

/// Keys of the `Manager.Status` and `Admin.ListUsers` dictionaries.
pub mod status {
    pub const USER: &str = "user";
    pub const ENROLLED: &str = "enrolled";
    pub const PENDING: &str = "pending";
    pub const METHOD: &str = "method";
    pub const BACKUP_CODES_LEFT: &str = "backup_codes_left";
    pub const LOCKED: &str = "locked";
    pub const LOCKED_UNTIL: &str = "locked_until";
    pub const FAILURES: &str = "failures";
    pub const ERROR: &str = "error";
    /// Break-glass codes not yet used (u).
    pub const BREAKGLASS_CODES_LEFT: &str = "breakglass_codes_left";
    /// Break-glass codes used and not yet acknowledged (u).
    pub const BREAKGLASS_UNACKNOWLEDGED: &str = "breakglass_unacknowledged";
    /// How far off the authenticator's clock was last seen, in seconds
    /// (x, + fast), and when (t); both absent if never.
    pub const CLOCK_OFFSET_SECS: &str = "clock_offset_secs";
    pub const CLOCK_OFFSET_SEEN_AT: &str = "clock_offset_seen_at";
    /// The enrolled devices (aa{sv}), each with the keys of [`device`].
    pub const DEVICES: &str = "devices";
}

/// Keys of each entry of a status's `devices`.
pub mod device {
    /// s; "default" for a device enrolled before devices had names.
    pub const NAME: &str = "name";
    /// s: `totp` | `email`.
    pub const METHOD: &str = "method";
    /// t: when it was added (Unix time).
    pub const ADDED: &str = "added";
    /// t: when a code of it was last accepted; 0 for never.
    pub const LAST_USED: &str = "last_used";
    /// x and t: how far off this device's clock was last seen (+ fast),
    /// and when; absent if never.
    pub const CLOCK_OFFSET_SECS: &str = "clock_offset_secs";
    pub const CLOCK_OFFSET_SEEN_AT: &str = "clock_offset_seen_at";
}

/// Keys of the `Manager.Enroll` options and reply.
pub mod enroll {
    pub const METHOD: &str = "method";
    pub const EMAIL: &str = "email";
    pub const URI: &str = "uri";
    pub const SECRET: &str = "secret";
    pub const EXPIRES: &str = "expires";
    /// The new device's name (s): required to add a device to a user who
    /// has one already.
    pub const NAME: &str = "name";
    /// For `method = "email"`: where the confirmation code went (masked).
    pub const SENT_TO: &str = "sent_to";
}

/// Keys of the `Admin.Stats` reply.
pub mod stats {
    pub const USERS_ENROLLED: &str = "users_enrolled";
    pub const USERS_LOCKED: &str = "users_locked";
    pub const SUCCESSES: &str = "successes";
    pub const FAILURES: &str = "failures";
    pub const LOCKOUTS: &str = "lockouts";
    pub const BACKUP_CODES_USED: &str = "backup_codes_used";
    /// Enrolments confirmed (or imported), disabled, reset: counted even
    /// for users no longer enrolled.
    pub const ENROLMENTS: &str = "enrolments";
    pub const DISABLED: &str = "disabled";
    pub const RESETS: &str = "resets";
    pub const DAYS: &str = "days";
}

/// Keys of the `Admin.ExplainPolicy` reply.
pub mod explain {
    pub const USER: &str = "user";
    pub const SERVICE: &str = "service";
    pub const RHOST: &str = "rhost";
    /// `require` | `optional` | `skip`.
    pub const MODE: &str = "mode";
    /// "rule 2 (otpgate.toml line 14)" or "no rule matched (default)".
    pub const RULE: &str = "rule";
    /// Why that rule, and why not the ones before it (as).
    pub const REASONS: &str = "reasons";
    pub const ENROLLED: &str = "enrolled";
    /// `YYYY-MM-DD`, or absent.
    pub const ENROLL_BY: &str = "enroll_by";
    pub const REMEMBER_SECS: &str = "remember_secs";
    /// What a login would get now, in words.
    pub const OUTCOME: &str = "outcome";
}

/// Keys of the `Admin.Import` reply.
pub mod import {
    pub const BACKUP_CODES_IMPORTED: &str = "backup_codes_imported";
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// Parses the wire word; an unknown word is `None`, which
            /// callers must treat as a refusal.
            pub fn parse(word: &str) -> Option<Self> {
                match word { $($word => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// `Auth.Challenge` state.
    ChallengeState {
        CodeRequired => "code-required",
        NotEnrolled => "not-enrolled",
        Locked => "locked",
        /// The policy asks no second factor for this login: the module
        /// steps aside (`PAM_IGNORE`), it does not vouch for the user.
        Skip => "skip",
        /// This login session passed the second factor for this rule
        /// within its `remember_secs`: no code is asked.
        Remembered => "remembered",
    }
);

wire_enum!(
    /// `Auth.Account` state.
    AccountState {
        /// Enrolled, or the policy does not require a second factor here.
        Ok => "ok",
        /// Not enrolled: `policy` in the info says whether that passes.
        NotEnrolled => "not-enrolled",
    }
);

wire_enum!(
    /// What the policy says about a login of an account that has no second
    /// factor (`info` key `policy`).
    Policy {
        /// Refused, unless the PAM line says `nullok`.
        Require => "require",
        /// Passes, as with `nullok`.
        Optional => "optional",
        /// Passes until `enroll_by`, with a notice naming the date.
        Grace => "grace",
        /// No second factor is asked on this login at all.
        Skip => "skip",
    }
);

wire_enum!(
    /// `Auth.Verify` result.
    VerifyResult {
        Ok => "ok",
        Invalid => "invalid",
        Replayed => "replayed",
        Locked => "locked",
        NotEnrolled => "not-enrolled",
        Expired => "expired",
    }
);

wire_enum!(
    /// A factor a user can enrol.
    Method {
        Totp => "totp",
        Email => "email",
    }
);

wire_enum!(
    /// What a successful `Verify` matched.
    MethodUsed {
        Totp => "totp",
        Backup => "backup",
        Email => "email",
        /// A root break-glass code, on a local console.
        Breakglass => "breakglass",
    }
);

/// Whether `name` is acceptable as a user name on the bus. The daemon also
/// uses it to name per-user records, so it must never allow a path
/// separator, a leading dot, NUL or control characters.
pub fn valid_user_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_USER_LEN
        && bytes[0] != b'.'
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'$'))
}

/// The errors the daemon answers with. Each maps to one D-Bus error name;
/// `AccessDenied` uses the standard freedesktop name, which every D-Bus
/// client already understands (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    AccessDenied(String),
    InvalidUser(String),
    InvalidArgument(String),
    NotEnrolled(String),
    AlreadyEnrolled(String),
    NoPendingEnrollment(String),
    PendingExpired(String),
    InvalidCode(String),
    Locked(String),
    CorruptRecord(String),
    Storage(String),
    Unavailable(String),
    /// A caller that is not root sent too many calls at once or per
    /// minute; it may try again shortly.
    TooManyRequests(String),
    /// `[self_service] reauth = "password+code"`: the call needs the
    /// account's password too (the `...WithPassword` method).
    PasswordRequired(String),
    Failed(String),
}

pub const ERROR_PREFIX: &str = "org.otpgate.Otpgate1.Error.";
pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

impl ServiceError {
    pub fn error_name(&self) -> &'static str {
        match self {
            ServiceError::AccessDenied(_) => ACCESS_DENIED,
            ServiceError::InvalidUser(_) => "org.otpgate.Otpgate1.Error.InvalidUser",
            ServiceError::InvalidArgument(_) => "org.otpgate.Otpgate1.Error.InvalidArgument",
            ServiceError::NotEnrolled(_) => "org.otpgate.Otpgate1.Error.NotEnrolled",
            ServiceError::AlreadyEnrolled(_) => "org.otpgate.Otpgate1.Error.AlreadyEnrolled",
            ServiceError::NoPendingEnrollment(_) => {
                "org.otpgate.Otpgate1.Error.NoPendingEnrollment"
            }
            ServiceError::PendingExpired(_) => "org.otpgate.Otpgate1.Error.PendingExpired",
            ServiceError::InvalidCode(_) => "org.otpgate.Otpgate1.Error.InvalidCode",
            ServiceError::Locked(_) => "org.otpgate.Otpgate1.Error.Locked",
            ServiceError::CorruptRecord(_) => "org.otpgate.Otpgate1.Error.CorruptRecord",
            ServiceError::Storage(_) => "org.otpgate.Otpgate1.Error.Storage",
            ServiceError::Unavailable(_) => "org.otpgate.Otpgate1.Error.Unavailable",
            ServiceError::TooManyRequests(_) => "org.otpgate.Otpgate1.Error.TooManyRequests",
            ServiceError::PasswordRequired(_) => "org.otpgate.Otpgate1.Error.PasswordRequired",
            ServiceError::Failed(_) => "org.otpgate.Otpgate1.Error.Failed",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ServiceError::AccessDenied(m)
            | ServiceError::InvalidUser(m)
            | ServiceError::InvalidArgument(m)
            | ServiceError::NotEnrolled(m)
            | ServiceError::AlreadyEnrolled(m)
            | ServiceError::NoPendingEnrollment(m)
            | ServiceError::PendingExpired(m)
            | ServiceError::InvalidCode(m)
            | ServiceError::Locked(m)
            | ServiceError::CorruptRecord(m)
            | ServiceError::Storage(m)
            | ServiceError::Unavailable(m)
            | ServiceError::TooManyRequests(m)
            | ServiceError::PasswordRequired(m)
            | ServiceError::Failed(m) => m,
        }
    }

    /// Rebuilds the error from a D-Bus error name and message, for clients.
    /// Unknown names become `Failed` with the name kept in the message.
    pub fn from_name(name: &str, message: &str) -> ServiceError {
        let m = message.to_string();
        match name {
            ACCESS_DENIED => ServiceError::AccessDenied(m),
            "org.otpgate.Otpgate1.Error.InvalidUser" => ServiceError::InvalidUser(m),
            "org.otpgate.Otpgate1.Error.InvalidArgument" => ServiceError::InvalidArgument(m),
            "org.otpgate.Otpgate1.Error.NotEnrolled" => ServiceError::NotEnrolled(m),
            "org.otpgate.Otpgate1.Error.AlreadyEnrolled" => ServiceError::AlreadyEnrolled(m),
            "org.otpgate.Otpgate1.Error.NoPendingEnrollment" => {
                ServiceError::NoPendingEnrollment(m)
            }
            "org.otpgate.Otpgate1.Error.PendingExpired" => ServiceError::PendingExpired(m),
            "org.otpgate.Otpgate1.Error.InvalidCode" => ServiceError::InvalidCode(m),
            "org.otpgate.Otpgate1.Error.Locked" => ServiceError::Locked(m),
            "org.otpgate.Otpgate1.Error.CorruptRecord" => ServiceError::CorruptRecord(m),
            "org.otpgate.Otpgate1.Error.Storage" => ServiceError::Storage(m),
            "org.otpgate.Otpgate1.Error.Unavailable" => ServiceError::Unavailable(m),
            "org.otpgate.Otpgate1.Error.TooManyRequests" => ServiceError::TooManyRequests(m),
            "org.otpgate.Otpgate1.Error.PasswordRequired" => ServiceError::PasswordRequired(m),
            "org.otpgate.Otpgate1.Error.Failed" => ServiceError::Failed(m),
            other => ServiceError::Failed(format!("{other}: {message}")),
        }
    }

    /// Extracts a service error from a zbus client error, if it is one.
    pub fn from_zbus(err: &zbus::Error) -> Option<ServiceError> {
        match err {
            zbus::Error::MethodError(name, desc, _) => Some(ServiceError::from_name(
                name.as_str(),
                desc.as_deref().unwrap_or(""),
            )),
            zbus::Error::FDO(fdo) => match fdo.as_ref() {
                zbus::fdo::Error::AccessDenied(m) => Some(ServiceError::AccessDenied(m.clone())),
                _ => None,
            },
            _ => None,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ServiceError {}

impl zbus::DBusError for ServiceError {
    fn create_reply(&self, msg: &Header<'_>) -> zbus::Result<Message> {
        Message::error(msg, self.error_name()).build(&(self.message(),))
    }

    fn name(&self) -> ErrorName<'_> {
        ErrorName::from_static_str_unchecked(self.error_name())
    }

    fn description(&self) -> Option<&str> {
        Some(self.message())
    }
}

/// An `a{sv}` dictionary as sent.
pub type Dict<'a> = HashMap<&'a str, Variant<'a>>;
/// An `a{sv}` dictionary as received.
pub type OwnedDict = HashMap<String, OwnedVariant>;

/// Reads a string out of a received dictionary.
pub fn dict_str(d: &OwnedDict, key: &str) -> Option<String> {
    d.get(key)
        .and_then(|v| <&str>::try_from(v).ok())
        .map(str::to_owned)
}

/// Reads a `u` out of a received dictionary.
pub fn dict_u32(d: &OwnedDict, key: &str) -> Option<u32> {
    d.get(key).and_then(|v| u32::try_from(v).ok())
}

/// Reads a `t` out of a received dictionary.
pub fn dict_u64(d: &OwnedDict, key: &str) -> Option<u64> {
    d.get(key).and_then(|v| u64::try_from(v).ok())
}

/// Reads a `b` out of a received dictionary.
pub fn dict_bool(d: &OwnedDict, key: &str) -> Option<bool> {
    d.get(key).and_then(|v| bool::try_from(v).ok())
}

/// `org.otpgate.Otpgate1.Auth`: what the PAM module calls.
#[zbus::proxy(
    interface = "org.otpgate.Otpgate1.Auth",
    default_service = "org.otpgate.Otpgate1",
    default_path = "/org/otpgate/Otpgate1"
)]
pub trait Auth {
    fn challenge(&self, user: &str, context: Dict<'_>) -> zbus::Result<(String, OwnedDict)>;
    fn verify(
        &self,
        user: &str,
        code: &str,
        context: Dict<'_>,
    ) -> zbus::Result<(String, OwnedDict)>;
    /// The account-time check: `ok`, or `not-enrolled` with `policy`.
    fn account(&self, user: &str, context: Dict<'_>) -> zbus::Result<(String, OwnedDict)>;
}

/// `org.otpgate.Otpgate1.Manager`: enrolment and self-service.
#[zbus::proxy(
    interface = "org.otpgate.Otpgate1.Manager",
    default_service = "org.otpgate.Otpgate1",
    default_path = "/org/otpgate/Otpgate1"
)]
pub trait Manager {
    /// options: `method` (s: `totp` | `email`), `email` (s, the address),
    /// `name` (s, the device's name; needed to add a device).
    /// Reply: `method`, `expires`, and `uri` + `secret` (TOTP) or
    /// `sent_to` (e-mail: the masked address the code went to).
    fn enroll(&self, user: &str, options: Dict<'_>) -> zbus::Result<OwnedDict>;
    /// Returns the backup codes, once (none for a device added to a user
    /// who had one: the codes they have stay).
    fn confirm(&self, user: &str, code: &str) -> zbus::Result<Vec<String>>;
    fn status(&self, user: &str) -> zbus::Result<OwnedDict>;
    /// `code` may be empty for administrators.
    fn disable(&self, user: &str, code: &str) -> zbus::Result<()>;
    /// Removes the device `name`; `code` (any device's, or a backup code)
    /// may be empty for administrators.
    fn remove_device(&self, user: &str, name: &str, code: &str) -> zbus::Result<()>;
    /// `RemoveDevice` with the account's password (as `disable_with_password`).
    fn remove_device_with_password(
        &self,
        user: &str,
        name: &str,
        code: &str,
        password: &str,
    ) -> zbus::Result<()>;
    /// `code` may be empty for administrators. Returns the new codes, once.
    fn regenerate_backup_codes(&self, user: &str, code: &str) -> zbus::Result<Vec<String>>;
    /// `Disable` with the account's password, for `[self_service] reauth =
    /// "password+code"` (ignored in "code" mode and for administrators).
    fn disable_with_password(&self, user: &str, code: &str, password: &str) -> zbus::Result<()>;
    /// `RegenerateBackupCodes` with the account's password (as above).
    fn regenerate_backup_codes_with_password(
        &self,
        user: &str,
        code: &str,
        password: &str,
    ) -> zbus::Result<Vec<String>>;
    /// The last events of the user's second factor, oldest first; keys in
    /// [`history`].
    fn history(&self, user: &str) -> zbus::Result<Vec<OwnedDict>>;
}

/// `org.otpgate.Otpgate1.Admin`: administrators only.
#[zbus::proxy(
    interface = "org.otpgate.Otpgate1.Admin",
    default_service = "org.otpgate.Otpgate1",
    default_path = "/org/otpgate/Otpgate1"
)]
pub trait Admin {
    fn list_users(&self) -> zbus::Result<Vec<OwnedDict>>;
    fn unlock(&self, user: &str) -> zbus::Result<()>;
    fn reset(&self, user: &str) -> zbus::Result<()>;
    fn stats(&self) -> zbus::Result<OwnedDict>;
    /// Takes over a `~/.google_authenticator` file: `contents` is the file's
    /// text, parsed by the daemon. Reply: `backup_codes_imported` (u).
    fn import(&self, user: &str, contents: &str) -> zbus::Result<OwnedDict>;
    /// Which `[[policy]]` rule applies to `user` logging in to `service`
    /// (context: `rhost`), and why. Keys in [`explain`].
    fn explain_policy(
        &self,
        user: &str,
        service: &str,
        context: Dict<'_>,
    ) -> zbus::Result<OwnedDict>;
    /// Root only: replaces `user`'s break-glass codes (root, or a member of
    /// the administrator group) and returns the new ones, once.
    fn generate_breakglass(&self, user: &str) -> zbus::Result<Vec<String>>;
    /// Root only: marks `user`'s used break-glass codes as seen; returns
    /// how many were acknowledged.
    fn acknowledge_breakglass(&self, user: &str) -> zbus::Result<u32>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for v in VerifyResult::ALL {
            assert_eq!(VerifyResult::parse(v.as_str()), Some(*v));
        }
        for s in ChallengeState::ALL {
            assert_eq!(ChallengeState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(VerifyResult::parse("OK"), None);
        assert_eq!(VerifyResult::parse(""), None);
    }

    #[test]
    fn user_names() {
        for good in [
            "alice",
            "bob.smith",
            "svc_backup",
            "a-b",
            "user@REALM",
            "host$",
        ] {
            assert!(valid_user_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            ".hidden",
            "-rf",
            "a\0b",
            "a b",
            "é",
            &"x".repeat(MAX_USER_LEN + 1),
        ] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn error_names_round_trip() {
        let all = [
            ServiceError::AccessDenied("m".into()),
            ServiceError::InvalidUser("m".into()),
            ServiceError::InvalidArgument("m".into()),
            ServiceError::NotEnrolled("m".into()),
            ServiceError::AlreadyEnrolled("m".into()),
            ServiceError::NoPendingEnrollment("m".into()),
            ServiceError::PendingExpired("m".into()),
            ServiceError::InvalidCode("m".into()),
            ServiceError::Locked("m".into()),
            ServiceError::CorruptRecord("m".into()),
            ServiceError::Storage("m".into()),
            ServiceError::Unavailable("m".into()),
            ServiceError::TooManyRequests("m".into()),
            ServiceError::PasswordRequired("m".into()),
            ServiceError::Failed("m".into()),
        ];
        for e in all {
            assert_eq!(ServiceError::from_name(e.error_name(), e.message()), e);
        }
    }
}
