//! The daemon's configuration (`/etc/otpgate/otpgate.toml`), parsed once into
//! typed structs.
//!
//! Every key is declared once, in `keys::SECTIONS`: name, type, default,
//! range and doc line. Everything else is derived from that table: the
//! checks, the error messages, the shipped `packaging/otpgate.toml` and the
//! table in `docs/configuration.md` (tests keep both files in step; see
//! `tests.rs` for the command that regenerates them).
//!
//! Anything the daemon would not understand is refused rather than ignored,
//! with the file, the line and the key named, because a typo in a security
//! setting (say `max_failure = 3`) silently falling back to a default is
//! worse than not starting.
//!
//! Parsing happens in three steps:
//! 1. `DeTable::parse` (toml's own parser) turns the text into a table whose
//!    keys and values carry byte spans (syntax errors come with a span too);
//! 2. `check::check` holds that table against `keys::SECTIONS` (unknown
//!    names, types, ranges, per-key rules) and returns every key's value or
//!    default;
//! 3. the rules that tie keys together run (`cross_checks`) and the typed
//!    structs are filled from those values.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

mod check;
mod keys;
mod policy;
#[cfg(test)]
mod tests;

use check::{one_line, Source, Values};
pub use keys::{render_example, render_markdown_table};
pub use policy::KEYS as POLICY_KEYS;

/// Where `otpgated` looks for its configuration unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/otpgate/otpgate.toml";

/// The whole configuration; `Config::default()` is what a missing file means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub storage: StorageConfig,
    pub totp: TotpConfig,
    pub lockout: LockoutConfig,
    pub backup_codes: BackupCodesConfig,
    pub access: AccessConfig,
    pub self_service: SelfServiceConfig,
    pub pam: PamConfig,
    pub email: EmailConfig,
    pub methods: MethodsConfig,
    /// `[[policy]]` rules, in file order.
    pub policy: crate::policy::Policy,
}

/// Which storage engine holds the per-user records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Embedded store under `storage.path`; no server.
    #[default]
    Local,
    /// A PostgreSQL database that every host of a fleet shares.
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
    pub path: PathBuf,
    pub key_file: PathBuf,
    /// Database URL for `backend = "postgres"`. The parser refuses a
    /// password in it; `Debug` still does not print it.
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub timeout_ms: u64,
    pub pool_size: usize,
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("key_file", &self.key_file)
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("timeout_ms", &self.timeout_ms)
            .field("pool_size", &self.pool_size)
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

// The fields of the structs below are documented, with their ranges and
// defaults, once: in `keys::SECTIONS`.

/// `[totp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpConfig {
    pub issuer: String,
    pub digits: usize,
    pub period_secs: u64,
    pub algorithm: Algorithm,
    pub window: u64,
    pub secret_bytes: usize,
}

/// `[lockout]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutConfig {
    pub max_failures: u32,
    pub duration_secs: u64,
    pub max_duration_secs: u64,
    pub source_max_failures: u32,
    pub source_window_secs: u64,
}

/// `[backup_codes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupCodesConfig {
    pub count: usize,
}

/// `[access]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    pub admin_group: String,
}

/// `[methods]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodsConfig {
    /// What users may enrol; never empty.
    pub allowed: Vec<otpgate_proto::Method>,
}

/// `[self_service]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfServiceConfig {
    pub reauth: ReauthMode,
    /// The PAM service (a file in /etc/pam.d) that checks the password.
    pub pam_service: String,
}

/// What a user proves to disable the second factor or replace backup codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReauthMode {
    /// A current code (or a backup code).
    #[default]
    Code,
    /// The account's password, checked through PAM, and a code.
    PasswordAndCode,
}

/// `[pam]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamConfig {
    /// `None`: no direct socket, the module uses the bus.
    pub socket: Option<PathBuf>,
}

/// `[email]`: the e-mail factor, on when `smtp_url` is set.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// Never holds a password (it goes in `password_file`); `Debug` does
    /// not print it all the same, as a user name may be in it.
    pub smtp_url: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub timeout_secs: u64,
    pub from: Option<String>,
    pub code_ttl_secs: u64,
    pub resend_cooldown_secs: u64,
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

impl Default for Config {
    fn default() -> Self {
        Config::parse("", Path::new("(defaults)"))
            .expect("every default passes its own key's checks (tested)")
    }
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
        let values = check::check(&src, root.get_ref())?;
        cross_checks(&src, &values)?;
        let rules = policy::parse(&src, root.get_ref())?;
        policy::check_root(&src, &rules)?;
        Ok(Config {
            policy: rules,
            ..Config::from_values(&values)
        })
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

    /// The checked values (defaults filled in) into the typed structs.
    fn from_values(v: &Values) -> Config {
        let path = |s: &str, k: &str| v.string(s, k).map(PathBuf::from);
        let text = |s: &str, k: &str| v.string(s, k).unwrap_or_default();
        Config {
            storage: StorageConfig {
                backend: match text("storage", "backend").as_str() {
                    "postgres" => Backend::Postgres,
                    _ => Backend::Local,
                },
                path: path("storage", "path").unwrap_or_default(),
                key_file: path("storage", "key_file").unwrap_or_default(),
                url: v.string("storage", "url"),
                password_file: path("storage", "password_file"),
                timeout_ms: v.int("storage", "timeout_ms"),
                pool_size: v.int("storage", "pool_size"),
            },
            totp: TotpConfig {
                issuer: text("totp", "issuer"),
                digits: v.int("totp", "digits"),
                period_secs: v.int("totp", "period_secs"),
                algorithm: Algorithm::from_name(&text("totp", "algorithm")).unwrap_or_default(),
                window: v.int("totp", "window"),
                secret_bytes: v.int("totp", "secret_bytes"),
            },
            lockout: LockoutConfig {
                max_failures: v.int("lockout", "max_failures"),
                duration_secs: v.int("lockout", "duration_secs"),
                max_duration_secs: v.int("lockout", "max_duration_secs"),
                source_max_failures: v.int("lockout", "source_max_failures"),
                source_window_secs: v.int("lockout", "source_window_secs"),
            },
            backup_codes: BackupCodesConfig {
                count: v.int("backup_codes", "count"),
            },
            access: AccessConfig {
                admin_group: text("access", "admin_group"),
            },
            self_service: SelfServiceConfig {
                reauth: match text("self_service", "reauth").as_str() {
                    "password+code" => ReauthMode::PasswordAndCode,
                    _ => ReauthMode::Code,
                },
                pam_service: text("self_service", "pam_service"),
            },
            pam: PamConfig {
                socket: v
                    .string("pam", "socket")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from),
            },
            email: EmailConfig {
                smtp_url: v.string("email", "smtp_url"),
                username: v.string("email", "username"),
                password_file: path("email", "password_file"),
                timeout_secs: v.int("email", "timeout_secs"),
                from: v.string("email", "from"),
                code_ttl_secs: v.int("email", "code_ttl_secs"),
                resend_cooldown_secs: v.int("email", "resend_cooldown_secs"),
            },
            methods: MethodsConfig {
                allowed: v
                    .list("methods", "allowed")
                    .iter()
                    .filter_map(|m| otpgate_proto::Method::parse(m))
                    .collect(),
            },
            policy: crate::policy::Policy::default(),
        }
    }
}

/// The rules no single key can state, after every key has passed its own.
fn cross_checks(src: &Source<'_>, v: &Values) -> Result<(), ConfigError> {
    let postgres = v.string("storage", "backend").as_deref() == Some("postgres");
    if !postgres {
        // A database setting with the local backend means the administrator
        // believes a database is in use.
        for k in ["url", "password_file"] {
            if let Some(at) = v.set_at("storage", k) {
                return Err(src.invalid(
                    at,
                    format!("[storage] {k}"),
                    "only used with backend = \"postgres\"; remove it or set the backend",
                ));
            }
        }
    } else if v.string("storage", "url").is_none() {
        let at = v.set_at("storage", "backend").unwrap_or(0);
        return Err(src.invalid(
            at,
            "[storage] url".to_owned(),
            "is required with backend = \"postgres\": postgres://USER@HOST/DATABASE",
        ));
    }
    if let (Some(at), None) = (v.set_at("email", "smtp_url"), v.set_at("email", "from")) {
        return Err(src.invalid(
            at,
            "[email] from".to_owned(),
            "is required with smtp_url: the sender address of the codes",
        ));
    }
    Ok(())
}
