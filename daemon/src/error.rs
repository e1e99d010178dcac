//! The daemon's one error type. Every message names what failed and, where
//! a sysadmin can fix it, how; none ever carries a secret or a code.

use std::path::PathBuf;

use otpgate_proto::ServiceError;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("state directory {path}: {reason}")]
    StateDir { path: PathBuf, reason: String },
    #[error(
        "another otpgated{} is already using {}; stop it first",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        .path.display()
    )]
    InUse { path: PathBuf, pid: Option<u32> },
    #[error("{path}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
    #[error("e-mail: {0}")]
    Email(String),
    #[error("D-Bus: {0}")]
    Bus(String),
    #[error("otpgated must run as root (it owns the secrets and answers for every user)")]
    NotRoot,
    #[error("storage: {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the record of user {user} is unreadable: {reason}; the other users are not affected (inspect it, or `otpgate reset {user}` to start that user over)")]
    Corrupt { user: String, reason: String },
    #[error("{0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The fleet database refused or failed: a setting or the database
    /// itself needs an administrator.
    #[error("database: {0}")]
    Database(String),
    /// This host's key is not the one the fleet's records are sealed with.
    #[error("this host's key_file is not the key the fleet's records are sealed with: copy the fleet's key file here (docs/fleet.md)")]
    FleetKey,
    /// The fleet database is down, unreachable or too slow: it may come
    /// back by itself, and the daemon reconnects when it does.
    #[error("database: {0}")]
    DatabaseDown(String),
    /// Records filed by name could not be moved to their uid keys.
    #[error("cannot move the user records to their uid keys: {0}")]
    Migration(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<Error> for ServiceError {
    fn from(e: Error) -> ServiceError {
        match e {
            Error::Corrupt { .. } => ServiceError::CorruptRecord(e.to_string()),
            Error::Io { .. } | Error::StateDir { .. } => ServiceError::Storage(format!(
                "otpgated could not read or save its state ({e}); nothing was changed"
            )),
            Error::Database(_) | Error::DatabaseDown(_) | Error::FleetKey => ServiceError::Storage(
                format!("otpgated cannot use its {e}; no code is accepted until it answers"),
            ),
            other => ServiceError::Failed(other.to_string()),
        }
    }
}
