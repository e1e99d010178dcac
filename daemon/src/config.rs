//! The daemon's configuration (`/etc/otpgate/otpgate.toml`), parsed once into
//! typed structs.
//!
//! Every key is optional; the defaults are the documented ones (README, packaging/otpgate.toml). Anything the
//! daemon would not understand is refused rather than ignored, with the file,
//! the line and the key named, because a typo in a security setting (say
//! `max_failure = 3`) silently falling back to a default is worse than not
//! starting.
//!
//! Parsing happens in three steps, all on toml's own parser:
//! 1. `DeTable::parse` turns the text into a table whose keys and values carry
//!    byte spans (syntax errors come with a span too);
//! 2. that table is checked against `SCHEMA`: unknown sections, unknown keys
//!    and values of the wrong TOML type are refused, naming the section's
//!    known keys;
//! 3. serde (`deny_unknown_fields`, values wrapped in `toml::Spanned`) turns
//!    it into raw structs, whose values are then range-checked into
//!    [`Config`], each refusal pointing at the value's line.

use std::fmt;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where `otpgated` looks for its configuration unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/otpgate/otpgate.toml";

/// The whole configuration; `Config::default()` is what a missing file means.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub storage: StorageConfig,
    pub totp: TotpConfig,
    pub lockout: LockoutConfig,
    pub backup_codes: BackupCodesConfig,
    pub access: AccessConfig,
    pub email: EmailConfig,
}

/// Which storage engine holds the per-user records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Embedded store under `storage.path`; no server.
    #[default]
    Local,
    /// A shared PostgreSQL database. Recognised so that the error can say so,
    /// but refused by [`Config::parse`] until an engine exists for it.
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Postgres => "postgres",
        }
    }
}

/// `[storage]`.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub backend: Backend,
    /// Local state directory. Absolute.
    pub path: PathBuf,
    /// The 32-byte secret-encryption key. Absolute.
    pub key_file: PathBuf,
    /// Database URL for `backend = "postgres"`; may hold a password, so
    /// `Debug` does not print it.
    pub url: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Local,
            path: PathBuf::from("/var/lib/otpgate"),
            key_file: PathBuf::from("/etc/otpgate/master.key"),
            url: None,
        }
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("key_file", &self.key_file)
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The TOTP hash function (`[totp] algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The spelling used in the config file and in otpauth URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Exactly `"SHA1"`, `"SHA256"` or `"SHA512"` (upper case, as in otpauth
    /// URIs); anything else is `None`.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub fn to_totp(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

impl From<Algorithm> for totp_rs::Algorithm {
    fn from(a: Algorithm) -> Self {
        a.to_totp()
    }
}

/// `[totp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpConfig {
    /// Shown in authenticator apps and used as the otpauth label prefix:
    /// 1 to 64 characters, no `:` (the label separator) and no control
    /// characters.
    pub issuer: String,
    /// 6 to 8. Fewer digits make guessing too cheap; authenticator apps show
    /// no more than 8.
    pub digits: usize,
    /// 15 to 300 seconds: shorter steps outrun people typing, longer ones keep
    /// a code valid for too long.
    pub period_secs: u64,
    pub algorithm: Algorithm,
    /// 0 to 10 steps accepted before and after now; more would make a guessed
    /// code many times likelier to hit.
    pub window: u64,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            issuer: "otpgate".to_owned(),
            digits: 6,
            period_secs: 30,
            algorithm: Algorithm::Sha1,
            window: 1,
        }
    }
}

/// `[lockout]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutConfig {
    /// 1 to 100 consecutive failures before the lock. 0 would lock on
    /// nothing; beyond 100 the lockout no longer limits guessing.
    pub max_failures: u32,
    /// 1 second to 604800 seconds (one week).
    pub duration_secs: u64,
    /// Each lock after the first in a row (no success in between) lasts
    /// twice as long as the one before, up to this cap: `duration_secs` to
    /// 2592000 (30 days). Equal to `duration_secs`, locks do not grow.
    pub max_duration_secs: u64,
    /// Failed codes from one remote host (PAM's rhost), across all users,
    /// within `source_window_secs` before that host is refused for the rest
    /// of the window: 0 (off) to 100000. Logins without a remote host are
    /// never limited this way.
    pub source_max_failures: u32,
    /// 1 to 86400 seconds.
    pub source_window_secs: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            max_failures: 5,
            duration_secs: 900,
            max_duration_secs: 86_400,
            source_max_failures: 50,
            source_window_secs: 900,
        }
    }
}

/// `[backup_codes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupCodesConfig {
    /// 0 (no backup codes) to 100.
    pub count: usize,
}

impl Default for BackupCodesConfig {
    fn default() -> Self {
        BackupCodesConfig { count: 10 }
    }
}

/// `[access]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// A name the group database could hold: 1 to 256 characters, no `:`,
    /// `,`, `/` or control characters, no surrounding white space, not
    /// starting with `-`, not all digits (that would read as a gid).
    /// Directory groups (sssd, winbind) may contain spaces, `@` or upper
    /// case, so those are allowed.
    pub admin_group: String,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            admin_group: "otpgate-admin".to_owned(),
        }
    }
}

/// `[email]`: the e-mail factor, on when `smtp_url` is set.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// `smtp://HOST[:PORT]` (add `?tls=required` for STARTTLS) or
    /// `smtps://HOST[:PORT]` (TLS from the start). A user name may be in
    /// the URL; a password may not (it goes in `password_file`). `Debug`
    /// does not print it all the same.
    pub smtp_url: Option<String>,
    /// SMTP user name, if the server wants authentication.
    pub username: Option<String>,
    /// Root-only file holding the SMTP password (absolute path).
    pub password_file: Option<PathBuf>,
    /// 1 to 60 seconds for one delivery to the SMTP server.
    pub timeout_secs: u64,
    /// Sender address: contains `@`, no white space or control characters.
    pub from: Option<String>,
    /// 30 to 3600 seconds.
    pub code_ttl_secs: u64,
    /// 0 to 3600 seconds.
    pub resend_cooldown_secs: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_url: None,
            username: None,
            password_file: None,
            timeout_secs: 10,
            from: None,
            code_ttl_secs: 300,
            resend_cooldown_secs: 60,
        }
    }
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("timeout_secs", &self.timeout_secs)
            .field("from", &self.from)
            .field("code_ttl_secs", &self.code_ttl_secs)
            .field("resend_cooldown_secs", &self.resend_cooldown_secs)
            .finish()
    }
}

/// Why a configuration was refused. Each message is one line naming the file
/// (and, for content errors, the line and the key).
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}:{line}: invalid TOML: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: unknown section [{name}] (known: {known})", file.display())]
    UnknownSection {
        file: PathBuf,
        line: usize,
        name: String,
        known: String,
    },
    #[error(
        "{}:{line}: key \"{key}\" outside any section (known sections: {known})",
        file.display()
    )]
    KeyOutsideSection {
        file: PathBuf,
        line: usize,
        key: String,
        known: String,
    },
    #[error("{}:{line}: unknown key \"{key}\" in [{section}] (known: {known})", file.display())]
    UnknownKey {
        file: PathBuf,
        line: usize,
        section: String,
        key: String,
        known: String,
    },
    #[error("{}:{line}: {setting} must be {expected}, not {found}", file.display())]
    WrongType {
        file: PathBuf,
        line: usize,
        /// `[section] key`, or `[section]` when the section itself is not a table.
        setting: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{}:{line}: {setting}: {reason}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        /// `[section] key = value`, or `[section] key` when the value is not
        /// shown (URLs may carry passwords).
        setting: String,
        reason: String,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, if it is about the file's content.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } | ConfigError::NotUtf8 { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::UnknownSection { line, .. }
            | ConfigError::KeyOutsideSection { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::WrongType { line, .. }
            | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Integer,
    String,
}

impl Kind {
    fn matches(self, v: &DeValue<'_>) -> bool {
        matches!(
            (self, v),
            (Kind::Integer, DeValue::Integer(_)) | (Kind::String, DeValue::String(_))
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Integer => "an integer",
            Kind::String => "a string",
        }
    }
}

/// Every section and key the daemon understands, in the order the documentation lists
/// them (the order error messages list them in). It must agree with the
/// `Raw*` structs below; the `every_key_in_the_schema_is_accepted` test keeps
/// the two in step.
const SCHEMA: &[(&str, &[(&str, Kind)])] = &[
    (
        "storage",
        &[
            ("backend", Kind::String),
            ("path", Kind::String),
            ("key_file", Kind::String),
            ("url", Kind::String),
        ],
    ),
    (
        "totp",
        &[
            ("issuer", Kind::String),
            ("digits", Kind::Integer),
            ("period_secs", Kind::Integer),
            ("algorithm", Kind::String),
            ("window", Kind::Integer),
        ],
    ),
    (
        "lockout",
        &[
            ("max_failures", Kind::Integer),
            ("duration_secs", Kind::Integer),
            ("max_duration_secs", Kind::Integer),
            ("source_max_failures", Kind::Integer),
            ("source_window_secs", Kind::Integer),
        ],
    ),
    ("backup_codes", &[("count", Kind::Integer)]),
    ("access", &[("admin_group", Kind::String)]),
    (
        "email",
        &[
            ("smtp_url", Kind::String),
            ("username", Kind::String),
            ("password_file", Kind::String),
            ("timeout_secs", Kind::Integer),
            ("from", Kind::String),
            ("code_ttl_secs", Kind::Integer),
            ("resend_cooldown_secs", Kind::Integer),
        ],
    ),
];

type SInt = Option<Spanned<i64>>;
type SStr = Option<Spanned<String>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    totp: RawTotp,
    #[serde(default)]
    lockout: RawLockout,
    #[serde(default)]
    backup_codes: RawBackupCodes,
    #[serde(default)]
    access: RawAccess,
    #[serde(default)]
    email: RawEmail,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    backend: SStr,
    path: SStr,
    key_file: SStr,
    url: SStr,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTotp {
    issuer: SStr,
    digits: SInt,
    period_secs: SInt,
    algorithm: SStr,
    window: SInt,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLockout {
    max_failures: SInt,
    duration_secs: SInt,
    max_duration_secs: SInt,
    source_max_failures: SInt,
    source_window_secs: SInt,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBackupCodes {
    count: SInt,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    admin_group: SStr,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp_url: SStr,
    username: SStr,
    password_file: SStr,
    timeout_secs: SInt,
    from: SStr,
    code_ttl_secs: SInt,
    resend_cooldown_secs: SInt,
}

/// The text being parsed and where it came from, for turning byte offsets
/// into `file:line` errors.
struct Source<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn invalid<T>(
        &self,
        span_start: usize,
        setting: String,
        reason: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(span_start),
            setting,
            reason: reason.into(),
        })
    }

    /// An integer setting: absent means `default`, present must lie in `range`.
    fn int<T: TryFrom<i64>>(
        &self,
        section: &str,
        key: &str,
        value: &SInt,
        range: RangeInclusive<i64>,
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(v) = value else {
            return Ok(default);
        };
        let n = *v.get_ref();
        let setting = format!("[{section}] {key} = {n}");
        if !range.contains(&n) {
            return self.invalid(
                v.span().start,
                setting,
                format!("must be between {} and {}", range.start(), range.end()),
            );
        }
        match T::try_from(n) {
            Ok(t) => Ok(t),
            Err(_) => self.invalid(v.span().start, setting, "out of range"),
        }
    }
}

/// Keeps file-supplied names printable on one line and short.
fn printable(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s
        .chars()
        .take(MAX)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Config {
    /// Parses and validates configuration text. `origin` is only used in
    /// error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let src = Source { text, file: origin };
        let root = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
            file: origin.to_owned(),
            line: e.span().map_or(1, |s| src.line_of(s.start)),
            message: one_line(e.message()),
        })?;
        check_schema(&src, root.get_ref())?;
        let raw = RawConfig::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| deserialize_error(&src, &e))?;
        build(&src, raw)
    }

    /// Reads and parses `path`. A file that does not exist means all defaults
    /// (the documented contract); any other failure to read it is an error, so that an
    /// unreadable file never silently becomes the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
            path: path.to_owned(),
        })?;
        Config::parse(&text, path)
    }
}

/// Refuses unknown sections and keys and wrongly typed values. Of several
/// problems, the one earliest in the file is reported (the table is not kept
/// in file order).
fn check_schema(src: &Source<'_>, root: &DeTable<'_>) -> Result<(), ConfigError> {
    let sections: Vec<&str> = SCHEMA.iter().map(|(s, _)| *s).collect();
    let known_sections = sections.join(", ");
    let mut found: Vec<(usize, ConfigError)> = Vec::new();
    for (name, value) in root.iter() {
        let name_str: &str = name.get_ref();
        let Some((section, keys)) = SCHEMA.iter().find(|(s, _)| *s == name_str) else {
            let line = src.line_of(name.span().start);
            let err = if value.get_ref().is_table() {
                ConfigError::UnknownSection {
                    file: src.file.to_owned(),
                    line,
                    name: printable(name_str),
                    known: known_sections.clone(),
                }
            } else {
                ConfigError::KeyOutsideSection {
                    file: src.file.to_owned(),
                    line,
                    key: printable(name_str),
                    known: known_sections.clone(),
                }
            };
            found.push((name.span().start, err));
            continue;
        };
        let Some(table) = value.get_ref().as_table() else {
            found.push((
                value.span().start,
                ConfigError::WrongType {
                    file: src.file.to_owned(),
                    line: src.line_of(value.span().start),
                    setting: format!("[{section}]"),
                    expected: "a table",
                    found: article(value.get_ref().type_str()),
                },
            ));
            continue;
        };
        let known_keys = keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
        for (key, v) in table.iter() {
            let key_str: &str = key.get_ref();
            match keys.iter().find(|(k, _)| *k == key_str) {
                None => found.push((
                    key.span().start,
                    ConfigError::UnknownKey {
                        file: src.file.to_owned(),
                        line: src.line_of(key.span().start),
                        section: section.to_string(),
                        key: printable(key_str),
                        known: known_keys.clone(),
                    },
                )),
                Some((k, kind)) if !kind.matches(v.get_ref()) => found.push((
                    v.span().start,
                    ConfigError::WrongType {
                        file: src.file.to_owned(),
                        line: src.line_of(v.span().start),
                        setting: format!("[{section}] {k}"),
                        expected: kind.describe(),
                        found: article(v.get_ref().type_str()),
                    },
                )),
                Some(_) => {}
            }
        }
    }
    match found.into_iter().min_by_key(|(offset, _)| *offset) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

fn article(type_str: &'static str) -> &'static str {
    match type_str {
        "string" => "a string",
        "integer" => "an integer",
        "float" => "a float",
        "boolean" => "a boolean",
        "datetime" => "a date-time",
        "array" => "an array",
        "table" => "a table",
        other => other,
    }
}

/// `check_schema` has already refused unknown keys and wrong types, so what
/// serde can still refuse is a value it cannot convert (an integer beyond
/// 64 bits). The error's span finds the key it belongs to.
fn deserialize_error(src: &Source<'_>, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map_or(1, |s| src.line_of(s.start));
    let reason = one_line(e.message());
    match e.span().and_then(|span| setting_at(src.text, span.start)) {
        Some(setting) => ConfigError::Invalid {
            file: src.file.to_owned(),
            line,
            setting,
            reason,
        },
        None => ConfigError::Syntax {
            file: src.file.to_owned(),
            line,
            message: reason,
        },
    }
}

/// `[section] key` whose value spans `offset`, from a fresh parse (the first
/// one was consumed by the deserializer).
fn setting_at(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    root.get_ref().iter().find_map(|(section, value)| {
        let table = value.get_ref().as_table()?;
        table.iter().find_map(|(key, v)| {
            v.span().contains(&offset).then(|| {
                format!(
                    "[{}] {}",
                    printable(section.get_ref()),
                    printable(key.get_ref())
                )
            })
        })
    })
}

fn build(src: &Source<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
    let d = Config::default();
    let storage = build_storage(src, raw.storage, d.storage)?;
    let totp = build_totp(src, raw.totp, d.totp)?;
    let duration_secs = src.int(
        "lockout",
        "duration_secs",
        &raw.lockout.duration_secs,
        1..=604_800,
        d.lockout.duration_secs,
    )?;
    let lockout = LockoutConfig {
        max_failures: src.int(
            "lockout",
            "max_failures",
            &raw.lockout.max_failures,
            1..=100,
            d.lockout.max_failures,
        )?,
        duration_secs,
        max_duration_secs: src.int(
            "lockout",
            "max_duration_secs",
            &raw.lockout.max_duration_secs,
            duration_secs as i64..=2_592_000,
            d.lockout.max_duration_secs.max(duration_secs),
        )?,
        source_max_failures: src.int(
            "lockout",
            "source_max_failures",
            &raw.lockout.source_max_failures,
            0..=100_000,
            d.lockout.source_max_failures,
        )?,
        source_window_secs: src.int(
            "lockout",
            "source_window_secs",
            &raw.lockout.source_window_secs,
            1..=86_400,
            d.lockout.source_window_secs,
        )?,
    };
    let backup_codes = BackupCodesConfig {
        count: src.int(
            "backup_codes",
            "count",
            &raw.backup_codes.count,
            0..=100,
            d.backup_codes.count,
        )?,
    };
    let access = AccessConfig {
        admin_group: match raw.access.admin_group {
            None => d.access.admin_group,
            Some(v) => {
                if let Err(reason) = check_group_name(v.get_ref()) {
                    return src.invalid(
                        v.span().start,
                        format!("[access] admin_group = {:?}", printable(v.get_ref())),
                        reason,
                    );
                }
                v.into_inner()
            }
        },
    };
    let email = build_email(src, raw.email, d.email)?;
    Ok(Config {
        storage,
        totp,
        lockout,
        backup_codes,
        access,
        email,
    })
}

fn build_storage(
    src: &Source<'_>,
    raw: RawStorage,
    d: StorageConfig,
) -> Result<StorageConfig, ConfigError> {
    let backend = match &raw.backend {
        None => d.backend,
        Some(v) => match v.get_ref().as_str() {
            "local" => Backend::Local,
            "postgres" => {
                return src.invalid(
                    v.span().start,
                    "[storage] backend = \"postgres\"".to_owned(),
                    "not available in this build; use \"local\"",
                )
            }
            other => {
                return src.invalid(
                    v.span().start,
                    format!("[storage] backend = \"{}\"", printable(other)),
                    "must be \"local\" or \"postgres\"",
                )
            }
        },
    };
    let path = absolute_path(src, "path", raw.path, d.path)?;
    let key_file = absolute_path(src, "key_file", raw.key_file, d.key_file)?;
    if let Some(v) = &raw.url {
        // Reached only with the local backend (postgres is refused above).
        // A URL there means the administrator believes a database is in use.
        return src.invalid(
            v.span().start,
            "[storage] url".to_owned(),
            "only used with backend = \"postgres\"; remove it or set the backend",
        );
    }
    Ok(StorageConfig {
        backend,
        path,
        key_file,
        url: raw.url.map(Spanned::into_inner),
    })
}

fn absolute_path(
    src: &Source<'_>,
    key: &str,
    value: SStr,
    default: PathBuf,
) -> Result<PathBuf, ConfigError> {
    let Some(v) = value else {
        return Ok(default);
    };
    let s = v.get_ref();
    let setting = format!("[storage] {key} = \"{}\"", printable(s));
    if s.contains('\0') {
        return src.invalid(v.span().start, setting, "must not contain a NUL character");
    }
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return src.invalid(v.span().start, setting, "must be an absolute path");
    }
    if p.parent().is_none() {
        return src.invalid(v.span().start, setting, "must not be the root directory");
    }
    Ok(p)
}

fn build_totp(src: &Source<'_>, raw: RawTotp, d: TotpConfig) -> Result<TotpConfig, ConfigError> {
    let issuer = match raw.issuer {
        None => d.issuer,
        Some(v) => {
            let s = v.get_ref();
            let setting = format!("[totp] issuer = \"{}\"", printable(s));
            if s.is_empty() || s.chars().count() > 64 {
                return src.invalid(v.span().start, setting, "must be 1 to 64 characters");
            }
            if s.contains(':') {
                return src.invalid(
                    v.span().start,
                    setting,
                    "must not contain ':' (it separates issuer and account in the authenticator label)",
                );
            }
            if s.chars().any(char::is_control) {
                return src.invalid(
                    v.span().start,
                    setting,
                    "must not contain control characters",
                );
            }
            v.into_inner()
        }
    };
    let algorithm = match &raw.algorithm {
        None => d.algorithm,
        Some(v) => match Algorithm::from_name(v.get_ref()) {
            Some(a) => a,
            None => {
                return src.invalid(
                    v.span().start,
                    format!("[totp] algorithm = \"{}\"", printable(v.get_ref())),
                    "must be \"SHA1\", \"SHA256\" or \"SHA512\" (exactly, in upper case)",
                )
            }
        },
    };
    Ok(TotpConfig {
        issuer,
        digits: src.int("totp", "digits", &raw.digits, 6..=8, d.digits)?,
        period_secs: src.int(
            "totp",
            "period_secs",
            &raw.period_secs,
            15..=300,
            d.period_secs,
        )?,
        algorithm,
        window: src.int("totp", "window", &raw.window, 0..=10, d.window)?,
    })
}

fn build_email(
    src: &Source<'_>,
    raw: RawEmail,
    d: EmailConfig,
) -> Result<EmailConfig, ConfigError> {
    let smtp_url = match &raw.smtp_url {
        None => None,
        Some(v) => {
            let u = v.get_ref();
            // Never echo the URL: it may carry credentials.
            let rest = u
                .strip_prefix("smtp://")
                .or_else(|| u.strip_prefix("smtps://"));
            let Some(rest) = rest else {
                return src.invalid(
                    v.span().start,
                    "[email] smtp_url".to_owned(),
                    "must start with smtp:// (STARTTLS with ?tls=required) or smtps://",
                );
            };
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if userinfo.contains(':') {
                    return src.invalid(
                        v.span().start,
                        "[email] smtp_url".to_owned(),
                        "must not hold a password: put it in a root-only file named by password_file",
                    );
                }
            }
            if authority.rsplit('@').next().unwrap_or("").is_empty()
                || u.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return src.invalid(
                    v.span().start,
                    "[email] smtp_url".to_owned(),
                    "must name a mail server: smtp://HOST[:PORT] or smtps://HOST[:PORT]",
                );
            }
            Some(u.clone())
        }
    };
    let password_file = match raw.password_file {
        None => None,
        Some(v) => {
            let p = PathBuf::from(v.get_ref());
            if !p.is_absolute() {
                return src.invalid(
                    v.span().start,
                    format!("[email] password_file = \"{}\"", printable(v.get_ref())),
                    "must be an absolute path",
                );
            }
            Some(p)
        }
    };
    let username = raw.username.map(|v| v.into_inner());
    let from_span = raw.from.as_ref().map(|v| v.span().start);
    let from = match raw.from {
        None => None,
        Some(v) => {
            let s = v.get_ref();
            if !s.contains('@') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return src.invalid(
                    v.span().start,
                    format!("[email] from = \"{}\"", printable(s)),
                    "must be an e-mail address like otpgate@example.org",
                );
            }
            Some(v.into_inner())
        }
    };
    if let (Some(_), None) = (&smtp_url, &from) {
        let at = raw
            .smtp_url
            .as_ref()
            .map(|v| v.span().start)
            .or(from_span)
            .unwrap_or(0);
        return src.invalid(
            at,
            "[email] from".to_owned(),
            "is required with smtp_url: the sender address of the codes",
        );
    }
    Ok(EmailConfig {
        smtp_url,
        username,
        password_file,
        timeout_secs: src.int(
            "email",
            "timeout_secs",
            &raw.timeout_secs,
            1..=60,
            d.timeout_secs,
        )?,
        from,
        code_ttl_secs: src.int(
            "email",
            "code_ttl_secs",
            &raw.code_ttl_secs,
            30..=3600,
            d.code_ttl_secs,
        )?,
        resend_cooldown_secs: src.int(
            "email",
            "resend_cooldown_secs",
            &raw.resend_cooldown_secs,
            0..=3600,
            d.resend_cooldown_secs,
        )?,
    })
}

fn check_group_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err("must be a group name of 1 to 256 characters");
    }
    if name.trim() != name {
        return Err("must not start or end with white space");
    }
    if name.starts_with('-') {
        return Err("must not start with '-'");
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err("must be a group name, not a number");
    }
    if name
        .chars()
        .any(|c| c == ':' || c == ',' || c == '/' || c.is_control())
    {
        return Err("must not contain ':', ',', '/' or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/otpgate/otpgate.toml";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(FILE))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("accepted {text:?} as {c:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line message: {msg:?}");
                msg
            }
        }
    }

    /// The documented example configuration, verbatim.
    const SPEC_EXAMPLE: &str = r#"[storage]
backend = "local"                     # "local" (embedded, no server) | "postgres" (a fleet shares one database)
path = "/var/lib/otpgate"             # local state directory (root only, 0700)
key_file = "/etc/otpgate/master.key"  # 32-byte secret-encryption key; created 0400 root if missing
# url = "postgres://otpgate@db/otpgate"   # backend = "postgres"

[totp]
issuer = "otpgate"    # shown in authenticator apps; the account label is USER@HOSTNAME
digits = 6
period_secs = 30
algorithm = "SHA1"    # SHA1 | SHA256 | SHA512
window = 1            # accept codes this many steps before/after now

[lockout]
max_failures = 5      # consecutive failures before the account's second factor locks
duration_secs = 900   # how long a lock lasts

[backup_codes]
count = 10

[access]
admin_group = "otpgate-admin"   # members may manage other users; root always may

[email]                          # the e-mail factor; off unless smtp_url is set
# smtp_url = "smtp://127.0.0.1:25"
# from = "otpgate@example.org"
code_ttl_secs = 300
resend_cooldown_secs = 60
"#;

    #[test]
    fn empty_text_gives_the_spec_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.storage.backend, Backend::Local);
        assert_eq!(c.storage.path, Path::new("/var/lib/otpgate"));
        assert_eq!(c.storage.key_file, Path::new("/etc/otpgate/master.key"));
        assert_eq!(c.storage.url, None);
        assert_eq!(c.totp.issuer, "otpgate");
        assert_eq!(c.totp.digits, 6);
        assert_eq!(c.totp.period_secs, 30);
        assert_eq!(c.totp.algorithm, Algorithm::Sha1);
        assert_eq!(c.totp.window, 1);
        assert_eq!(c.lockout.max_failures, 5);
        assert_eq!(c.lockout.duration_secs, 900);
        assert_eq!(c.backup_codes.count, 10);
        assert_eq!(c.access.admin_group, "otpgate-admin");
        assert_eq!(c.email.smtp_url, None);
        assert_eq!(c.email.from, None);
        assert_eq!(c.email.code_ttl_secs, 300);
        assert_eq!(c.email.resend_cooldown_secs, 60);
        // Comments and empty sections are fine too.
        assert_eq!(
            parse("# nothing\n[totp]\n[email]\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn the_spec_example_parses_to_the_defaults() {
        assert_eq!(parse(SPEC_EXAMPLE).unwrap(), Config::default());
    }

    #[test]
    fn every_value_is_taken() {
        let c = parse(
            r#"
[storage]
path = "/srv/otpgate/state"
key_file = "/srv/otpgate/key"
[totp]
issuer = "Example Corp"
digits = 8
period_secs = 60
algorithm = "SHA512"
window = 0
[lockout]
max_failures = 10
duration_secs = 3600
[backup_codes]
count = 0
[access]
admin_group = "wheel"
[email]
from = "otp@example.org"
code_ttl_secs = 600
resend_cooldown_secs = 0
"#,
        )
        .unwrap();
        assert_eq!(c.storage.path, Path::new("/srv/otpgate/state"));
        assert_eq!(c.storage.key_file, Path::new("/srv/otpgate/key"));
        assert_eq!(c.totp.issuer, "Example Corp");
        assert_eq!(c.totp.digits, 8);
        assert_eq!(c.totp.period_secs, 60);
        assert_eq!(c.totp.algorithm, Algorithm::Sha512);
        assert_eq!(c.totp.algorithm.to_totp(), totp_rs::Algorithm::SHA512);
        assert_eq!(c.totp.algorithm.as_str(), "SHA512");
        assert_eq!(c.totp.window, 0);
        assert_eq!(c.lockout.max_failures, 10);
        assert_eq!(c.lockout.duration_secs, 3600);
        assert_eq!(c.backup_codes.count, 0);
        assert_eq!(c.access.admin_group, "wheel");
        assert_eq!(c.email.from.as_deref(), Some("otp@example.org"));
        assert_eq!(c.email.code_ttl_secs, 600);
        assert_eq!(c.email.resend_cooldown_secs, 0);
        // Inline tables and dotted keys are the same TOML.
        let c = parse("totp = { digits = 7 }\nlockout.max_failures = 3\n").unwrap();
        assert_eq!(c.totp.digits, 7);
        assert_eq!(c.lockout.max_failures, 3);
    }

    #[test]
    fn every_key_in_the_schema_is_accepted() {
        // Each key of SCHEMA, given a value of its kind, must get past the
        // unknown-key check and serde's deny_unknown_fields; what remains is
        // at most a range refusal naming that very key.
        for (section, keys) in SCHEMA {
            for (key, kind) in *keys {
                let value = match kind {
                    Kind::Integer => "1",
                    Kind::String => "\"x\"",
                };
                let text = format!("[{section}]\n{key} = {value}\n");
                if let Err(e) = parse(&text) {
                    assert!(
                        matches!(e, ConfigError::Invalid { .. }),
                        "{section}.{key}: {e}"
                    );
                    assert!(e.to_string().contains(&format!("[{section}] {key}")), "{e}");
                    assert_eq!(e.line(), Some(2));
                }
            }
        }
    }

    #[test]
    fn the_brief_examples_read_as_promised() {
        let text = "\n\n\n\n\n\n\n\n\n\n[lockout]\nmax_failures = 0\n";
        assert_eq!(
            err(text),
            "/etc/otpgate/otpgate.toml:12: [lockout] max_failures = 0: must be between 1 and 100"
        );
        assert_eq!(
            err("[totp]\ndigits = 6\nwindw = 1\n"),
            "/etc/otpgate/otpgate.toml:3: unknown key \"windw\" in [totp] \
             (known: issuer, digits, period_secs, algorithm, window)"
        );
    }

    #[test]
    fn out_of_range_numbers_name_line_and_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "totp",
                "digits = 4",
                "[totp] digits = 4: must be between 6 and 8",
            ),
            (
                "totp",
                "digits = 9",
                "[totp] digits = 9: must be between 6 and 8",
            ),
            (
                "totp",
                "period_secs = 5",
                "[totp] period_secs = 5: must be between 15 and 300",
            ),
            (
                "totp",
                "window = 50",
                "[totp] window = 50: must be between 0 and 10",
            ),
            (
                "totp",
                "window = -1",
                "[totp] window = -1: must be between 0 and 10",
            ),
            (
                "lockout",
                "max_failures = 0",
                "[lockout] max_failures = 0: must be between 1 and 100",
            ),
            (
                "lockout",
                "max_failures = 101",
                "[lockout] max_failures = 101: must be between 1 and 100",
            ),
            (
                "lockout",
                "duration_secs = 0",
                "[lockout] duration_secs = 0: must be between 1 and 604800",
            ),
            (
                "backup_codes",
                "count = 1000",
                "[backup_codes] count = 1000: must be between 0 and 100",
            ),
            (
                "email",
                "code_ttl_secs = 10",
                "[email] code_ttl_secs = 10: must be between 30 and 3600",
            ),
            (
                "email",
                "resend_cooldown_secs = 7200",
                "[email] resend_cooldown_secs = 7200: must be between 0 and 3600",
            ),
        ];
        for (section, line, want) in cases {
            let text = format!("# comment\n[{section}]\n\n{line}\n");
            assert_eq!(err(&text), format!("{FILE}:4: {want}"));
        }
    }

    #[test]
    fn bad_strings_name_line_and_key() {
        let m = err("[totp]\nalgorithm = \"sha1\"\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: [totp] algorithm = \"sha1\": ")),
            "{m}"
        );
        assert!(m.contains("upper case"), "{m}");
        assert!(err("[totp]\nalgorithm = \"MD5\"\n").contains("\"SHA1\", \"SHA256\" or \"SHA512\""));

        let m = err("[totp]\nissuer = \"a:b\"\n");
        assert!(
            m.starts_with(&format!(
                "{FILE}:2: [totp] issuer = \"a:b\": must not contain ':'"
            )),
            "{m}"
        );
        let m = err("[totp]\nissuer = \"\"\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: [totp] issuer = \"\": must be 1 to 64")),
            "{m}"
        );

        let m = err("[access]\nadmin_group = \"\"\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: [access] admin_group")),
            "{m}"
        );
        for bad in ["a:b", "1000", "-x", " x", "a,b"] {
            let m = err(&format!("[access]\nadmin_group = \"{bad}\"\n"));
            assert!(
                m.starts_with(&format!("{FILE}:2: [access] admin_group")),
                "{m}"
            );
        }
        for good in [
            "wheel",
            "otpgate-admin",
            "Domain Admins",
            "admins@example.com",
            "grp$",
        ] {
            let c = parse(&format!("[access]\nadmin_group = \"{good}\"\n")).unwrap();
            assert_eq!(c.access.admin_group, good);
        }

        let m = err("[storage]\npath = \"var/lib/otpgate\"\n");
        assert_eq!(
            m,
            format!("{FILE}:2: [storage] path = \"var/lib/otpgate\": must be an absolute path")
        );
        let m = err("[storage]\nkey_file = \"master.key\"\n");
        assert_eq!(
            m,
            format!("{FILE}:2: [storage] key_file = \"master.key\": must be an absolute path")
        );
        assert!(
            err("[storage]\nbackend = \"sqlite\"\n").starts_with(&format!(
                "{FILE}:2: [storage] backend = \"sqlite\": must be"
            ))
        );

        let m = err("[email]\nfrom = \"nobody\"\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: [email] from = \"nobody\"")),
            "{m}"
        );
    }

    #[test]
    fn postgres_is_refused_for_now() {
        let m = err("[storage]\nbackend = \"postgres\"\nurl = \"postgres://u:pw@db/otpgate\"\n");
        assert_eq!(
            m,
            format!(
                "{FILE}:2: [storage] backend = \"postgres\": \
                 not available in this build; use \"local\""
            )
        );
        // A URL with the local backend is a misunderstanding; the password
        // stays out of the message.
        let m = err("[storage]\nurl = \"postgres://u:hunter2@db/otpgate\"\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: [storage] url: only used with")),
            "{m}"
        );
        assert!(!m.contains("hunter2"), "{m}");
    }

    #[test]
    fn smtp_urls_are_checked_without_echoing_them() {
        let m = err("[email]\nfrom = \"a@b.c\"\nsmtp_url = \"smtp://u:hunter2@127.0.0.1:25\"\n");
        assert!(
            m.starts_with(&format!(
                "{FILE}:3: [email] smtp_url: must not hold a password"
            )),
            "{m}"
        );
        assert!(!m.contains("hunter2"), "{m}");
        let m = err("[email]\nfrom = \"a@b.c\"\nsmtp_url = \"http://mx\"\n");
        assert!(m.contains("must start with smtp://"), "{m}");
        let m = err("[email]\nsmtp_url = \"smtp://mx\"\n");
        assert!(m.contains("[email] from: is required with smtp_url"), "{m}");
        let c = parse(
            "[email]\nsmtp_url = \"smtps://otp@mx.example.org:465\"\nfrom = \"otp@example.org\"\npassword_file = \"/etc/otpgate/smtp-password\"\n",
        )
        .unwrap();
        assert_eq!(
            c.email.smtp_url.as_deref(),
            Some("smtps://otp@mx.example.org:465")
        );
        assert_eq!(c.email.timeout_secs, 10);
    }

    #[test]
    fn wrong_types_name_line_and_key() {
        assert_eq!(
            err("[totp]\ndigits = \"six\"\n"),
            format!("{FILE}:2: [totp] digits must be an integer, not a string")
        );
        assert_eq!(
            err("[totp]\nperiod_secs = 30.0\n"),
            format!("{FILE}:2: [totp] period_secs must be an integer, not a float")
        );
        assert_eq!(
            err("[access]\nadmin_group = 10\n"),
            format!("{FILE}:2: [access] admin_group must be a string, not an integer")
        );
        assert_eq!(
            err("[lockout]\nmax_failures = [1, 2]\n"),
            format!("{FILE}:2: [lockout] max_failures must be an integer, not an array")
        );
        assert_eq!(
            err("totp = 5\n"),
            format!("{FILE}:1: [totp] must be a table, not an integer")
        );
        assert_eq!(
            err("\n[[totp]]\ndigits = 6\n"),
            format!("{FILE}:2: [totp] must be a table, not an array")
        );
    }

    #[test]
    fn unknown_sections_and_keys_are_refused() {
        assert_eq!(
            err("[totp]\ndigits = 6\n\n[smtp]\nhost = \"x\"\n"),
            format!(
                "{FILE}:4: unknown section [smtp] \
                 (known: storage, totp, lockout, backup_codes, access, email)"
            )
        );
        assert_eq!(
            err("digits = 6\n"),
            format!(
                "{FILE}:1: key \"digits\" outside any section \
                 (known sections: storage, totp, lockout, backup_codes, access, email)"
            )
        );
        // A table nested in a section is an unknown key of that section.
        assert_eq!(
            err("[totp]\n[totp.extra]\nx = 1\n"),
            format!(
                "{FILE}:2: unknown key \"extra\" in [totp] \
                 (known: issuer, digits, period_secs, algorithm, window)"
            )
        );
        // Of several problems, the first in the file is reported, whatever
        // the order sections are stored in.
        let m = err("[totp]\nwindw = 1\n[access]\nadmin_grup = \"x\"\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: unknown key \"windw\"")),
            "{m}"
        );
        let m = err("[zzz]\n[aaa]\n");
        assert!(
            m.starts_with(&format!("{FILE}:1: unknown section [zzz]")),
            "{m}"
        );
        // Control characters in a key stay on one line.
        let m = err("[totp]\n\"a\\nb\" = 1\n");
        assert!(m.contains("unknown key \"a\\nb\""), "{m}");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let m = err("[totp]\ndigits = 6\nwindow = \n");
        assert!(m.starts_with(&format!("{FILE}:3: invalid TOML: ")), "{m}");
        let m = err("[totp]\ndigits = 6\ndigits = 7\n");
        assert!(m.starts_with(&format!("{FILE}:3: invalid TOML: ")), "{m}");
        let m = err("[totp\n");
        assert!(m.starts_with(&format!("{FILE}:1: invalid TOML: ")), "{m}");
        let m = err("[lockout]\nmax_failures = 99999999999999999999999\n");
        assert!(
            m.starts_with(&format!("{FILE}:2: [lockout] max_failures: ")),
            "{m}"
        );
    }

    #[test]
    fn debug_hides_urls() {
        let mut c = Config::default();
        c.storage.url = Some("postgres://u:hunter2@db/x".into());
        c.email.smtp_url = Some("smtp://u:hunter2@mx".into());
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn load_missing_file_is_defaults_and_unreadable_is_an_error() {
        let dir = std::env::temp_dir().join(format!("otpgate-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        assert_eq!(Config::load(&missing).unwrap(), Config::default());

        // A directory cannot be read as a file: an error, not the defaults.
        let e = Config::load(&dir).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read {}", dir.display())),
            "{e}"
        );

        let good = dir.join("good.toml");
        std::fs::write(&good, "[totp]\ndigits = 8\n").unwrap();
        assert_eq!(Config::load(&good).unwrap().totp.digits, 8);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[totp]\ndigits = 4\n").unwrap();
        let m = Config::load(&bad).unwrap_err().to_string();
        assert_eq!(
            m,
            format!(
                "{}:2: [totp] digits = 4: must be between 6 and 8",
                bad.display()
            )
        );

        let binary = dir.join("binary.toml");
        std::fs::write(&binary, b"[totp]\n\xff\xfe\n").unwrap();
        assert!(matches!(
            Config::load(&binary),
            Err(ConfigError::NotUtf8 { .. })
        ));

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(Algorithm::from_name(a.as_str()), Some(a));
        }
        assert_eq!(Algorithm::from_name("sha256"), None);
        assert_eq!(
            totp_rs::Algorithm::from(Algorithm::Sha256),
            totp_rs::Algorithm::SHA256
        );
        assert_eq!(Backend::Local.as_str(), "local");
    }
}
