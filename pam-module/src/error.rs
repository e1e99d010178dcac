//! The one error type of the module. Which PAM code each error becomes is
//! decided in `flow`, in one place.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No bus there: its socket is missing or nobody listens on it. The
    /// only failure besides `NotRunning` that `failmode=open` may let by.
    #[error("cannot reach the bus at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// The bus is up but nobody owns the daemon's name.
    #[error("otpgated is not running: {0}")]
    NotRunning(String),
    /// The bus or the daemon was there and then failed: a handshake that
    /// broke, an owner that vanished or dropped the call. Never "absent":
    /// a local user may be able to cause it.
    #[error("otpgated was found but failed: {0}")]
    Failed(String),
    /// Nothing came back before the deadline.
    #[error("no answer from otpgated within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The daemon's name is owned by a connection that is not root's: an
    /// impostor, or a bus whose policy lets anyone own the name.
    #[error("org.otpgate.Otpgate1 is owned by uid {0}, not root: not trusted")]
    NotRoot(u32),
    /// The configured bus is one a user could run or replace: its address
    /// is not an absolute `unix:path=`, or a directory on the way to the
    /// socket is not root's alone. Never mistaken for an absent daemon.
    #[error("the bus at {address} is not trusted: {reason}")]
    UntrustedBus { address: String, reason: String },
    /// The direct socket is not there, or not for us (no file, nobody
    /// listening, a directory this process may not enter): the bus is
    /// asked instead. Never decides a login by itself.
    #[error("no direct socket at {path}: {reason}")]
    NoSocket { path: String, reason: String },
    /// The direct socket is one a user could have made or replaced, or the
    /// process behind it is not root's. Never mistaken for an absent daemon,
    /// and the bus is not asked instead: something is wrong on this host.
    #[error("the socket {path} is not trusted: {reason}")]
    UntrustedSocket { path: String, reason: String },
    /// The daemon answered with a D-Bus error.
    #[error("otpgated refused the request: {name}: {message}")]
    Service { name: String, message: String },
    /// An answer of the wrong shape, an unknown word or a value of the wrong type.
    #[error("unparseable answer from otpgated: {0}")]
    BadReply(String),
    /// Any other failure of the bus library.
    #[error("D-Bus failure: {0}")]
    Bus(String),
    /// The application's conversation function failed or gave no answer.
    #[error("conversation failed: {0}")]
    Conversation(String),
    /// libpam refused to set an item (`PAM_AUTHTOK`).
    #[error("{0}")]
    Item(String),
    /// PAM could not tell us who is logging in.
    #[error("no user name: {0}")]
    NoUser(String),
}
