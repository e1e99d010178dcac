//! Every failure the CLI reports, each as one line a person can act on.
//! Nothing here prints a Rust debug representation; `line()` is the only way
//! an error reaches the user.

use otpgate_proto::{ServiceError, BUS_NAME};

#[derive(Debug)]
pub enum CliError {
    /// The bus is there but nobody owns `org.otpgate.Otpgate1`.
    NotRunning { address: String },
    /// The bus itself cannot be reached.
    BusUnreachable { address: String, reason: String },
    /// `org.otpgate.Otpgate1` is owned by a process that is not root's:
    /// nothing that carries a secret or a code is sent to it.
    NotRoot { uid: u32, what: &'static str },
    /// The daemon took longer than the method timeout.
    NoReply,
    /// The daemon refused or failed, with the user the request was about.
    Daemon {
        err: ServiceError,
        user: Option<String>,
    },
    /// The daemon answered something this CLI does not understand.
    Protocol(String),
    /// A local file or terminal operation failed.
    Io { what: String, reason: String },
    /// Something the person typed or passed that only turns out wrong at run time.
    Input(String),
    /// The invoking uid has no passwd entry, so there is no default user.
    NoUserName(u32),
    /// Three wrong codes at the enrolment prompt.
    TooManyAttempts {
        user: String,
        self_service: bool,
        still_pending: bool,
    },
}

impl CliError {
    pub fn io(what: impl Into<String>, err: &std::io::Error) -> CliError {
        CliError::Io {
            what: what.into(),
            reason: io_reason(err),
        }
    }

    pub fn exit_code(&self) -> i32 {
        1
    }

    /// The one line printed on stderr (after `otpgate: `).
    pub fn line(&self) -> String {
        match self {
            CliError::NotRunning { address } => format!(
                "otpgated is not running (no {BUS_NAME} on the system bus at {address}): \
                 start it with `systemctl start otpgated`"
            ),
            CliError::BusUnreachable { address, reason } => format!(
                "cannot connect to the system bus at {address} ({reason}): \
                 is dbus running, or is --bus / DBUS_SYSTEM_BUS_ADDRESS wrong?"
            ),
            CliError::NotRoot { uid, what } => format!(
                "refusing to send the {what}: {BUS_NAME} is owned by uid {uid}, not root \
                 (is --bus or DBUS_SYSTEM_BUS_ADDRESS another bus than the system's?)"
            ),
            CliError::NoReply => "otpgated did not answer in time: \
                 check its log with `journalctl -u otpgated`"
                .to_owned(),
            CliError::Daemon { err, user } => daemon_line(err, user.as_deref()),
            CliError::Protocol(what) => format!(
                "unexpected answer from otpgated ({what}): \
                 are otpgate and otpgated the same version?"
            ),
            CliError::Io { what, reason } => format!("{what}: {reason}"),
            CliError::Input(what) => what.clone(),
            CliError::NoUserName(uid) => {
                format!("your uid {uid} has no user name in the passwd database: pass --user USER")
            }
            CliError::TooManyAttempts {
                user,
                self_service,
                still_pending: true,
            } => format!(
                "3 codes were not accepted; {user}'s enrolment is still pending: check the \
                 phone's clock, then finish with `otpgate confirm{} CODE` or start over \
                 with `otpgate enroll{}`",
                user_flag(user, *self_service),
                user_flag(user, *self_service),
            ),
            CliError::TooManyAttempts {
                user,
                self_service,
                still_pending: false,
            } => format!(
                "too many codes were not accepted and {user}'s enrolment was dropped: check \
                 the phone's clock, delete the entry from the app and start over with \
                 `otpgate enroll{}`",
                user_flag(user, *self_service),
            ),
        }
    }
}

fn user_flag(user: &str, self_service: bool) -> String {
    if self_service {
        String::new()
    } else {
        format!(" --user {user}")
    }
}

/// The daemon's own text, on one line, without control characters: it is
/// shown to a person and must not be able to move the cursor or forge lines.
pub(crate) fn clean(message: &str) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn with_detail(line: String, message: &str) -> String {
    let detail = clean(message);
    if detail.is_empty() {
        line
    } else {
        format!("{line} ({detail})")
    }
}

fn daemon_line(err: &ServiceError, user: Option<&str>) -> String {
    let who = user.unwrap_or("the user");
    let msg = err.message();
    match err {
        // The daemon says who may do what ("uid 1001 may not use
        // administrator methods: root or the administrator group only").
        ServiceError::AccessDenied(_) if !clean(msg).is_empty() => {
            format!("permission denied: {}", clean(msg))
        }
        ServiceError::AccessDenied(_) => "permission denied: managing other users and the \
             administrator commands need root or membership in otpgate's admin group"
            .to_owned(),
        ServiceError::NotEnrolled(_) => format!(
            "{who} has no second factor enrolled: set one up with `otpgate enroll{}`",
            user.map(|u| format!(" --user {u}")).unwrap_or_default()
        ),
        ServiceError::AlreadyEnrolled(_) => format!(
            "{who} is already enrolled: to start over, `otpgate disable` first \
             (or an administrator runs `otpgate reset {who}`)"
        ),
        ServiceError::NoPendingEnrollment(_) => {
            format!("no enrolment is pending for {who}: start one with `otpgate enroll`")
        }
        ServiceError::PendingExpired(_) => format!(
            "the enrolment for {who} expired before it was confirmed: \
             start again with `otpgate enroll`"
        ),
        // The daemon's text carries what only it knows: tries left, the
        // lock's end.
        ServiceError::InvalidCode(_) if !clean(msg).is_empty() => {
            format!("code not accepted for {who}: {}", clean(msg))
        }
        ServiceError::InvalidCode(_) => format!(
            "the code for {who} was not accepted: use the code the authenticator app \
             shows now (is the phone's clock right?)"
        ),
        ServiceError::Locked(_) => with_detail(
            format!(
                "{who}'s second factor is locked after too many wrong codes: wait until \
                 the lock expires, or an administrator runs `otpgate unlock {who}`"
            ),
            msg,
        ),
        ServiceError::InvalidUser(_) => with_detail(format!("invalid user {who}"), msg),
        ServiceError::InvalidArgument(_) => {
            with_detail("otpgated refused the request".to_owned(), msg)
        }
        ServiceError::CorruptRecord(_) => with_detail(
            format!(
                "{who}'s otpgate record cannot be read: an administrator can run \
                 `otpgate reset {who}` and {who} enrols again"
            ),
            msg,
        ),
        ServiceError::Storage(_) => with_detail(
            "otpgated cannot use its storage: see `journalctl -u otpgated`".to_owned(),
            msg,
        ),
        ServiceError::Unavailable(_) => with_detail("otpgated is unavailable".to_owned(), msg),
        ServiceError::TooManyRequests(_) => {
            with_detail("too many requests: wait a minute".to_owned(), msg)
        }
        ServiceError::PasswordRequired(_) => format!(
            "{who}'s password is needed as well as a code for this: run it on a terminal \
             to be asked, or pass --password-stdin"
        ),
        ServiceError::Failed(_) => with_detail("otpgated failed".to_owned(), msg),
    }
}

/// An I/O error's text without the "(os error N)" suffix.
pub fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Classifies a zbus error from a method call or connection attempt.
pub fn from_zbus(err: zbus::Error, address: &str, user: Option<&str>) -> CliError {
    use zbus::fdo::Error as Fdo;
    if let zbus::Error::FDO(fdo) = &err {
        match fdo.as_ref() {
            Fdo::ServiceUnknown(_) | Fdo::NameHasNoOwner(_) => {
                return CliError::NotRunning {
                    address: address.to_owned(),
                }
            }
            Fdo::NoReply(_) | Fdo::Timeout(_) | Fdo::TimedOut(_) => return CliError::NoReply,
            Fdo::UnknownMethod(m) | Fdo::UnknownInterface(m) | Fdo::UnknownObject(m) => {
                return CliError::Protocol(clean(m))
            }
            _ => {}
        }
    }
    if let Some(service) = ServiceError::from_zbus(&err) {
        return CliError::Daemon {
            err: service,
            user: user.map(str::to_owned),
        };
    }
    match err {
        zbus::Error::InputOutput(io) | zbus::Error::Connection(io, _) => CliError::BusUnreachable {
            address: address.to_owned(),
            reason: io_reason(&io),
        },
        zbus::Error::Address(reason) | zbus::Error::Handshake(reason) => CliError::BusUnreachable {
            address: address.to_owned(),
            reason: clean(&reason),
        },
        zbus::Error::FDO(fdo) => CliError::Daemon {
            err: ServiceError::Failed(fdo.to_string()),
            user: user.map(str::to_owned),
        },
        other => CliError::Protocol(clean(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(err: ServiceError) -> String {
        CliError::Daemon {
            err,
            user: Some("alice".into()),
        }
        .line()
    }

    #[test]
    fn every_line_is_one_line_without_debug_noise() {
        let m = || "detail".to_owned();
        let all = [
            CliError::NotRunning {
                address: "unix:path=/x".into(),
            },
            CliError::BusUnreachable {
                address: "unix:path=/x".into(),
                reason: "No such file or directory".into(),
            },
            CliError::NoReply,
            CliError::NotRoot {
                uid: 1001,
                what: "secret",
            },
            CliError::Protocol("x".into()),
            CliError::io("cannot read f", &std::io::Error::from_raw_os_error(13)),
            CliError::Input("x".into()),
            CliError::NoUserName(1234),
            CliError::TooManyAttempts {
                user: "alice".into(),
                self_service: true,
                still_pending: true,
            },
            CliError::TooManyAttempts {
                user: "alice".into(),
                self_service: false,
                still_pending: false,
            },
        ]
        .into_iter()
        .map(|e| e.line())
        .chain(
            [
                ServiceError::AccessDenied(m()),
                ServiceError::InvalidUser(m()),
                ServiceError::InvalidArgument(m()),
                ServiceError::NotEnrolled(m()),
                ServiceError::AlreadyEnrolled(m()),
                ServiceError::NoPendingEnrollment(m()),
                ServiceError::PendingExpired(m()),
                ServiceError::InvalidCode(m()),
                ServiceError::Locked(m()),
                ServiceError::CorruptRecord(m()),
                ServiceError::Storage(m()),
                ServiceError::Unavailable(m()),
                ServiceError::TooManyRequests(m()),
                ServiceError::PasswordRequired(m()),
                ServiceError::Failed(m()),
            ]
            .into_iter()
            .map(daemon),
        );
        for line in all {
            assert!(!line.contains('\n'), "{line}");
            assert!(!line.contains("Error {") && !line.contains("(\""), "{line}");
            assert!(!line.contains("os error"), "{line}");
            assert!(line.len() < 240, "too long: {line}");
        }
    }

    #[test]
    fn lines_say_what_to_do() {
        assert!(CliError::NotRunning {
            address: "unix:path=/run/dbus/system_bus_socket".into()
        }
        .line()
        .contains("systemctl start otpgated"));
        assert!(daemon(ServiceError::NotEnrolled(String::new())).contains("otpgate enroll"));
        assert!(
            daemon(ServiceError::AlreadyEnrolled(String::new())).contains("otpgate reset alice")
        );
        assert!(daemon(ServiceError::PendingExpired(String::new())).contains("expired"));
        assert!(daemon(ServiceError::Locked(String::new())).contains("otpgate unlock alice"));
        assert!(daemon(ServiceError::AccessDenied(String::new())).starts_with("permission denied"));
        assert!(daemon(ServiceError::NoPendingEnrollment(String::new())).contains("otpgate enroll"));
    }

    #[test]
    fn daemon_text_cannot_forge_lines_or_escape_sequences() {
        let line = daemon(ServiceError::Failed("a\nfake line\x1b[2J\r".into()));
        assert!(!line.contains('\n') && !line.contains('\x1b') && !line.contains('\r'));
        assert!(line.contains("a fake line [2J"), "{line}");
    }

    #[test]
    fn fdo_errors_are_classified() {
        let addr = "unix:path=/x";
        let unknown = zbus::Error::FDO(Box::new(zbus::fdo::Error::ServiceUnknown(
            "The name is not activatable".into(),
        )));
        assert!(matches!(
            from_zbus(unknown, addr, None),
            CliError::NotRunning { .. }
        ));
        let denied = zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("no".into())));
        assert!(matches!(
            from_zbus(denied, addr, Some("bob")),
            CliError::Daemon {
                err: ServiceError::AccessDenied(_),
                ..
            }
        ));
        let io = zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::from_raw_os_error(
            libc_enoent(),
        )));
        let line = from_zbus(io, addr, None).line();
        assert!(
            line.starts_with(
                "cannot connect to the system bus at unix:path=/x (No such file or directory)"
            ),
            "{line}"
        );
    }

    fn libc_enoent() -> i32 {
        2
    }
}
