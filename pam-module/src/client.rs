//! The calls to otpgated (Challenge, Verify, Account), each one a complete, bounded exchange on a
//! connection of its own: on the daemon's direct socket ([`SocketDaemon`])
//! when it is there, else on the bus ([`BusDaemon`]); [`Route`] chooses.
//!
//! On the bus:
//! Every exchange connects to the configured address (never the
//! environment's), asks the bus who owns `org.otpgate.Otpgate1` and that
//! owner's uid, refuses anyone but root, calls the method on the owner's
//! unique name (a unique name is never reused, so the owner cannot be
//! swapped between the check and the call), and closes the connection.
//! All of it runs inside one `zruntime::block_on` under one deadline: zbus's
//! tasks run on the calling thread and end with the connection, so the host
//! is left with no thread and no descriptor of ours.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use otpgate_proto::codec::{AccountAnswer, ChallengeAnswer, DecodeError, VerifyAnswer};
use otpgate_proto::methods::{self, Call};
use otpgate_proto::{context, Dict, OwnedDict, BUS_NAME, OBJECT_PATH};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::sockopt::PeerCredentials;
use nix::sys::socket::{connect, getsockopt, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use zbus::connection::Builder;
use zbus::{Connection, Message, Variant};

use crate::error::Error;

/// Who is logging in from where, from the PAM items. Sent as `a{sv}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub service: Option<String>,
    pub rhost: Option<String>,
    pub ruser: Option<String>,
    pub tty: Option<String>,
    /// Challenge: the method asked for instead of the first (`email`).
    pub method: Option<String>,
}

impl Context {
    fn to_dict(&self) -> Dict<'_> {
        let mut d = HashMap::new();
        for (key, value) in [
            (context::SERVICE, &self.service),
            (context::RHOST, &self.rhost),
            (context::RUSER, &self.ruser),
            (context::TTY, &self.tty),
            (context::METHOD, &self.method),
        ] {
            if let Some(v) = value {
                d.insert(key, Variant::from(v.as_str()));
            }
        }
        d
    }
}

/// `Auth.Challenge`'s answer, read by the codec: a known `info` key with
/// a value of the wrong type makes the whole answer unparseable; unknown
/// keys are ignored so the daemon may add some.
pub type ChallengeReply = ChallengeAnswer;
/// `Auth.Verify`'s answer, read as strictly.
pub type VerifyReply = VerifyAnswer;
/// `Auth.Account`'s answer, read as strictly.
pub type AccountReply = AccountAnswer;

fn bad_reply(e: DecodeError) -> Error {
    Error::BadReply(e.0)
}

fn decode_challenge((word, dict): (String, OwnedDict)) -> Result<ChallengeReply, Error> {
    ChallengeAnswer::decode(&word, &dict).map_err(bad_reply)
}

fn decode_verify((word, dict): (String, OwnedDict)) -> Result<VerifyReply, Error> {
    VerifyAnswer::decode(&word, &dict).map_err(bad_reply)
}

fn decode_account((word, dict): (String, OwnedDict)) -> Result<AccountReply, Error> {
    AccountAnswer::decode(&word, &dict).map_err(bad_reply)
}

/// What the flow needs from the daemon; the real one is [`BusDaemon`],
/// tests use a scripted one.
pub trait Daemon {
    fn challenge(&self, user: &str, ctx: &Context) -> Result<ChallengeReply, Error>;
    fn verify(&self, user: &str, code: &str, ctx: &Context) -> Result<VerifyReply, Error>;
    /// The account phase: may this user log in without having enrolled?
    fn account(&self, user: &str, ctx: &Context) -> Result<AccountReply, Error>;
}

/// otpgated on a D-Bus bus at a fixed address.
pub struct BusDaemon {
    address: String,
    timeout: Duration,
}

impl BusDaemon {
    pub fn new(address: &str, timeout: Duration) -> BusDaemon {
        BusDaemon {
            address: address.to_string(),
            timeout,
        }
    }

    /// Runs one exchange: connect, check the owner, call `C`, close.
    fn exchange<C: Call>(&self, body: &C::Args<'_>) -> Result<C::Reply, Error> {
        let deadline = Instant::now() + self.timeout;
        within(deadline, self.timeout, async {
            let conn = Builder::address(self.address.as_str())
                .method_timeout(self.timeout)
                .build()
                .await
                .map_err(|e| connect_failed(&self.address, e))?;
            let result = call_owner::<C>(&conn, body).await;
            // Closing here, inside block_on, rather than leaving it to a
            // drop is what lets the reader task finish on this thread.
            let _ = conn.close().await;
            result
        })
    }
}

/// Runs one exchange inside one `zruntime::block_on`, given up at
/// `deadline`. A method timeout inside is the same deadline, so both read
/// as `TimedOut(timeout)`.
fn within<T>(
    deadline: Instant,
    timeout: Duration,
    exchange: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    zruntime::block_on(async {
        // The thread's runtime, held only for the deadline's timer; it is
        // gone again when this future is.
        let runtime = zruntime::SharedRuntime::current().map_err(|e| Error::Bus(e.to_string()))?;
        match runtime.timeout_at(deadline, exchange).await {
            Ok(Err(Error::TimedOut(_))) | Err(_) => Err(Error::TimedOut(timeout)),
            Ok(result) => result,
        }
    })
}

impl Daemon for BusDaemon {
    fn challenge(&self, user: &str, ctx: &Context) -> Result<ChallengeReply, Error> {
        decode_challenge(self.exchange::<methods::Challenge>(&(user, ctx.to_dict()))?)
    }

    fn verify(&self, user: &str, code: &str, ctx: &Context) -> Result<VerifyReply, Error> {
        decode_verify(self.exchange::<methods::Verify>(&(user, code, ctx.to_dict()))?)
    }

    fn account(&self, user: &str, ctx: &Context) -> Result<AccountReply, Error> {
        decode_account(self.exchange::<methods::Account>(&(user, ctx.to_dict()))?)
    }
}

/// otpgated's direct socket: peer-to-peer D-Bus, no broker in between.
/// The path is checked before every exchange (`trust::check_socket`), and
/// once connected the kernel is asked who listens: root, or nothing is
/// sent. Like [`BusDaemon`], each exchange is a connection of its own,
/// made and closed inside one `block_on`.
pub struct SocketDaemon {
    path: String,
    timeout: Duration,
}

impl SocketDaemon {
    pub fn new(path: &str, timeout: Duration) -> SocketDaemon {
        SocketDaemon {
            path: path.to_string(),
            timeout,
        }
    }

    fn untrusted(&self, reason: String) -> Error {
        Error::UntrustedSocket {
            path: self.path.clone(),
            reason,
        }
    }

    fn exchange<C: Call>(&self, body: &C::Args<'_>) -> Result<C::Reply, Error> {
        match crate::trust::check_socket(&self.path) {
            Ok(crate::trust::SocketState::Ready) => {}
            Ok(crate::trust::SocketState::Absent(reason)) => {
                return Err(Error::NoSocket {
                    path: self.path.clone(),
                    reason,
                })
            }
            Err(why) => return Err(self.untrusted(why.0)),
        }
        let deadline = Instant::now() + self.timeout;
        let stream = self.connect(deadline)?;
        // Who listens, from the kernel, before a byte is sent: only root's
        // daemon is told anything. (zbus's own peer_creds() would also look
        // up the peer's groups on a helper thread that outlives the call.)
        let creds = getsockopt(&stream, PeerCredentials)
            .map_err(|e| Error::Failed(format!("{}: no peer credentials: {e}", self.path)))?;
        if creds.uid() != 0 {
            return Err(self.untrusted(format!(
                "the process listening is uid {}, not root",
                creds.uid()
            )));
        }
        within(deadline, self.timeout, async {
            let conn = Builder::unix_stream(stream)
                .p2p()
                .method_timeout(self.timeout)
                .build()
                .await
                .map_err(|e| Error::Failed(format!("handshake on {}: {e}", self.path)))?;
            let result = self.call::<C>(&conn, body).await;
            let _ = conn.close().await;
            result
        })
    }

    /// Connects without waiting past `deadline`: on a daemon that stopped
    /// accepting, a blocking connect() waits with no end once the listen
    /// queue is full. Only "no file", "nobody listening" and "not allowed
    /// in" send the login to the bus; anything else on a socket that is
    /// there is a failure.
    fn connect(&self, deadline: Instant) -> Result<UnixStream, Error> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| Error::Failed(format!("socket: {e}")))?;
        let addr = UnixAddr::new(self.path.as_str())
            .map_err(|e| self.untrusted(format!("not a usable socket path: {e}")))?;
        loop {
            match connect(fd.as_raw_fd(), &addr) {
                Ok(()) => return Ok(UnixStream::from(fd)),
                Err(Errno::EAGAIN | Errno::EINTR) => {
                    if Instant::now() >= deadline {
                        return Err(Error::TimedOut(self.timeout));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e @ (Errno::ENOENT | Errno::ECONNREFUSED | Errno::EACCES)) => {
                    return Err(Error::NoSocket {
                        path: self.path.clone(),
                        reason: e.desc().to_string(),
                    })
                }
                Err(e) => return Err(Error::Failed(format!("connecting to {}: {e}", self.path))),
            }
        }
    }

    async fn call<C: Call>(
        &self,
        conn: &Connection,
        body: &C::Args<'_>,
    ) -> Result<C::Reply, Error> {
        let method = C::SPEC.name;
        let reply = conn
            .call_method(None::<&str>, OBJECT_PATH, Some(C::INTERFACE), method, body)
            .await
            .map_err(|e| match classify(e) {
                // The daemon was reached: nothing after this is an absence.
                Error::NotRunning(why) | Error::Unreachable { reason: why, .. } => {
                    Error::Failed(format!("{method}: {why}"))
                }
                other => other,
            })?;
        reply
            .body()
            .deserialize::<C::Reply>()
            .map_err(|e| Error::BadReply(format!("{method}: {e}")))
    }
}

impl Daemon for SocketDaemon {
    fn challenge(&self, user: &str, ctx: &Context) -> Result<ChallengeReply, Error> {
        decode_challenge(self.exchange::<methods::Challenge>(&(user, ctx.to_dict()))?)
    }

    fn verify(&self, user: &str, code: &str, ctx: &Context) -> Result<VerifyReply, Error> {
        decode_verify(self.exchange::<methods::Verify>(&(user, code, ctx.to_dict()))?)
    }

    fn account(&self, user: &str, ctx: &Context) -> Result<AccountReply, Error> {
        decode_account(self.exchange::<methods::Account>(&(user, ctx.to_dict()))?)
    }
}

/// The socket first, the bus when the socket is not there. Each call
/// chooses again: the daemon may have restarted in between, or a caller
/// that is not root may reach only the bus.
pub struct Route<S, B> {
    pub socket: Option<S>,
    pub bus: B,
}

impl<S: Daemon, B: Daemon> Route<S, B> {
    fn either<T>(
        &self,
        by_socket: impl FnOnce(&S) -> Result<T, Error>,
        by_bus: impl FnOnce(&B) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if let Some(socket) = &self.socket {
            match by_socket(socket) {
                Err(Error::NoSocket { .. }) => {}
                other => return other,
            }
        }
        by_bus(&self.bus)
    }
}

impl<S: Daemon, B: Daemon> Daemon for Route<S, B> {
    fn challenge(&self, user: &str, ctx: &Context) -> Result<ChallengeReply, Error> {
        self.either(|s| s.challenge(user, ctx), |b| b.challenge(user, ctx))
    }

    fn verify(&self, user: &str, code: &str, ctx: &Context) -> Result<VerifyReply, Error> {
        self.either(|s| s.verify(user, code, ctx), |b| b.verify(user, code, ctx))
    }

    fn account(&self, user: &str, ctx: &Context) -> Result<AccountReply, Error> {
        self.either(|s| s.account(user, ctx), |b| b.account(user, ctx))
    }
}

const DBUS_NAME: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";

async fn call_owner<C: Call>(conn: &Connection, body: &C::Args<'_>) -> Result<C::Reply, Error> {
    let method = C::SPEC.name;
    let reply = conn
        .call_method(
            Some(DBUS_NAME),
            DBUS_PATH,
            Some(DBUS_NAME),
            "GetNameOwner",
            &(BUS_NAME,),
        )
        .await
        .map_err(classify)?;
    let owner: String = reply
        .body()
        .deserialize()
        .map_err(|e| Error::Bus(format!("GetNameOwner: {e}")))?;

    let reply = conn
        .call_method(
            Some(DBUS_NAME),
            DBUS_PATH,
            Some(DBUS_NAME),
            "GetConnectionUnixUser",
            &(owner.as_str(),),
        )
        .await
        .map_err(classify)?;
    let uid: u32 = reply
        .body()
        .deserialize()
        .map_err(|e| Error::Bus(format!("GetConnectionUnixUser: {e}")))?;
    if uid != 0 {
        return Err(Error::NotRoot(uid));
    }

    // From here on the daemon was found: whatever goes wrong is a failure,
    // not an absence, even an owner that vanished mid-call.
    let reply = conn
        .call_method(
            Some(owner.as_str()),
            OBJECT_PATH,
            Some(C::INTERFACE),
            method,
            body,
        )
        .await
        .map_err(|e| match classify(e) {
            Error::NotRunning(why) | Error::Unreachable { reason: why, .. } => {
                Error::Failed(format!("{method}: {why}"))
            }
            other => other,
        })?;
    check_sender(&reply, &owner)?;
    reply
        .body()
        .deserialize::<C::Reply>()
        .map_err(|e| Error::BadReply(format!("{method}: {e}")))
}

/// The bus routes a reply only from the connection that got the call, but
/// the answer is trusted only if it says so too.
fn check_sender(reply: &Message, owner: &str) -> Result<(), Error> {
    let header = reply.header();
    match header.sender() {
        Some(sender) if sender.as_str() == owner => Ok(()),
        other => Err(Error::BadReply(format!(
            "answer from {:?}, expected {owner}",
            other.map(|s| s.as_str())
        ))),
    }
}

/// A connection that could not be made. Only "no socket file" and "nobody
/// listening" mean there is no bus; a handshake that fails on a socket that
/// answered is a failure of something that is there.
fn connect_failed(address: &str, e: zbus::Error) -> Error {
    let absent = match &e {
        zbus::Error::Connection(io, _) | zbus::Error::InputOutput(io) => matches!(
            io.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ),
        _ => false,
    };
    if absent {
        Error::Unreachable {
            address: address.to_string(),
            reason: e.to_string(),
        }
    } else {
        Error::Failed(format!("connecting to the bus at {address}: {e}"))
    }
}

/// Sorts a failed call into "not there" (the fail mode decides), "too slow",
/// and "answered with an error" (always a refusal).
fn classify(err: zbus::Error) -> Error {
    match &err {
        zbus::Error::MethodError(name, desc, _) => {
            error_from_name(name.as_str(), desc.as_deref().unwrap_or(""))
        }
        zbus::Error::FDO(fdo) => {
            let name = zbus::DBusError::name(fdo.as_ref()).to_string();
            let desc = zbus::DBusError::description(fdo.as_ref())
                .unwrap_or("")
                .to_string();
            error_from_name(&name, &desc)
        }
        zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            Error::TimedOut(Duration::ZERO)
        }
        zbus::Error::InputOutput(io) => Error::Failed(io.to_string()),
        _ => Error::Bus(err.to_string()),
    }
}

fn error_from_name(name: &str, message: &str) -> Error {
    match name {
        "org.freedesktop.DBus.Error.NameHasNoOwner"
        | "org.freedesktop.DBus.Error.ServiceUnknown" => Error::NotRunning(message.to_string()),
        "org.freedesktop.DBus.Error.Disconnected" | "org.freedesktop.DBus.Error.NoReply" => {
            Error::Failed(format!("{name}: {message}"))
        }
        "org.freedesktop.DBus.Error.Timeout" | "org.freedesktop.DBus.Error.TimedOut" => {
            Error::TimedOut(Duration::ZERO)
        }
        _ => Error::Service {
            name: name.to_string(),
            message: message.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otpgate_proto::{ChallengeState, Method, MethodUsed, VerifyResult};
    use zbus::OwnedVariant;

    fn dict(entries: Vec<(&str, Variant<'static>)>) -> OwnedDict {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), OwnedVariant::try_from(v).unwrap()))
            .collect()
    }

    #[test]
    fn info_reads_every_known_key() {
        let d = dict(vec![
            ("method", Variant::from("email")),
            ("method_used", Variant::from("backup")),
            ("attempts_left", Variant::from(3u32)),
            ("locked_until", Variant::from(1_800_000_000u64)),
            ("backup_codes_left", Variant::from(7u32)),
            ("message", Variant::from("hello")),
            ("something_new", Variant::from(1i32)),
        ]);
        let c = decode_challenge(("code-required".into(), d.clone())).unwrap();
        let v = decode_verify(("ok".into(), d)).unwrap();
        assert_eq!(c.method, Some(Method::Email));
        assert_eq!(v.method_used, Some(MethodUsed::Backup));
        assert_eq!(v.attempts_left, Some(3));
        assert_eq!(c.locked_until, 1_800_000_000);
        assert_eq!(v.locked_until, 1_800_000_000);
        assert_eq!(v.backup_codes_left, Some(7));
        assert_eq!(c.message, "hello");
        assert_eq!(v.message, "hello");
        assert_eq!(
            decode_verify(("ok".into(), OwnedDict::new())).unwrap(),
            VerifyReply::plain(VerifyResult::Ok, "")
        );
        assert_eq!(
            decode_challenge(("locked".into(), OwnedDict::new())).unwrap(),
            ChallengeReply::plain(ChallengeState::Locked, "")
        );
    }

    #[test]
    fn info_of_the_wrong_type_is_unparseable() {
        for (k, v) in [
            ("attempts_left", Variant::from(3i32)),
            ("attempts_left", Variant::from("3")),
            ("locked_until", Variant::from(5u32)),
            ("message", Variant::from(5u32)),
            ("method", Variant::from("carrier-pigeon")),
            ("method_used", Variant::from("TOTP")),
        ] {
            let d = dict(vec![(k, v)]);
            let err = decode_verify(("invalid".into(), d.clone())).unwrap_err();
            assert!(matches!(err, Error::BadReply(_)), "{k}: {err}");
            let err = decode_challenge(("code-required".into(), d)).unwrap_err();
            assert!(matches!(err, Error::BadReply(_)), "{k}: {err}");
        }
        for err in [
            decode_verify(("OK".into(), OwnedDict::new())).unwrap_err(),
            decode_challenge(("ok".into(), OwnedDict::new())).unwrap_err(),
        ] {
            assert!(matches!(err, Error::BadReply(_)), "{err}");
        }
    }

    #[test]
    fn account_answers_are_read_as_strictly() {
        use otpgate_proto::{AccountState, Policy};
        let d = dict(vec![
            ("policy", Variant::from("grace")),
            ("enroll_by", Variant::from("2027-01-31")),
            ("rule", Variant::from("policy[0]")),
        ]);
        let a = decode_account(("not-enrolled".into(), d)).unwrap();
        assert_eq!(a.state, AccountState::NotEnrolled);
        assert_eq!(a.policy, Some(Policy::Grace));
        assert_eq!(a.enroll_by, "2027-01-31");
        let ok = decode_account(("ok".into(), OwnedDict::new())).unwrap();
        assert_eq!((ok.state, ok.policy), (AccountState::Ok, None));
        for (word, d) in [
            ("OK", OwnedDict::new()),
            ("code-required", OwnedDict::new()),
            ("ok", dict(vec![("policy", Variant::from("maybe"))])),
            ("ok", dict(vec![("enroll_by", Variant::from(20270131u32))])),
        ] {
            let err = decode_account((word.into(), d)).unwrap_err();
            assert!(matches!(err, Error::BadReply(_)), "{word}: {err}");
        }
    }

    #[test]
    fn context_sends_only_what_is_known() {
        let c = Context {
            service: Some("sshd".into()),
            rhost: None,
            ruser: Some("bob".into()),
            tty: None,
            method: None,
        };
        let d = c.to_dict();
        assert_eq!(d.len(), 2);
        assert_eq!(<&str>::try_from(&d["service"]).unwrap(), "sshd");
        assert_eq!(<&str>::try_from(&d["ruser"]).unwrap(), "bob");
    }

    #[test]
    fn bus_errors_are_sorted() {
        assert!(matches!(
            error_from_name("org.freedesktop.DBus.Error.ServiceUnknown", "x"),
            Error::NotRunning(_)
        ));
        assert!(matches!(
            error_from_name("org.freedesktop.DBus.Error.NameHasNoOwner", "x"),
            Error::NotRunning(_)
        ));
        // A daemon that took the call and dropped it was there.
        assert!(matches!(
            error_from_name("org.freedesktop.DBus.Error.NoReply", "x"),
            Error::Failed(_)
        ));
        assert!(matches!(
            error_from_name("org.freedesktop.DBus.Error.Disconnected", "x"),
            Error::Failed(_)
        ));
        assert!(matches!(
            error_from_name("org.freedesktop.DBus.Error.AccessDenied", "x"),
            Error::Service { .. }
        ));
        assert!(matches!(
            error_from_name("org.otpgate.Otpgate1.Error.Storage", "disk"),
            Error::Service { .. }
        ));
    }

    #[test]
    fn missing_socket_is_unreachable_and_fast() {
        let dir = std::env::temp_dir().join(format!("otpgate-pam-unit-{}", std::process::id()));
        let address = format!("unix:path={}/no-such-socket", dir.display());
        let d = BusDaemon::new(&address, Duration::from_secs(5));
        let started = Instant::now();
        let err = d.challenge("alice", &Context::default()).unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn silent_socket_times_out_on_the_deadline() {
        // A listening socket nobody accepts on: the handshake never completes.
        let dir = std::env::temp_dir().join(format!("otpgate-pam-silent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bus");
        let _ = std::fs::remove_file(&path);
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let d = BusDaemon::new(
            &format!("unix:path={}", path.display()),
            Duration::from_secs(1),
        );
        let started = Instant::now();
        let err = d
            .verify("alice", "123456", &Context::default())
            .unwrap_err();
        let took = started.elapsed();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(err, Error::TimedOut(_)), "{err}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    /// Answers every call with what it was given, counting the calls.
    struct Scripted {
        answer: fn() -> Result<ChallengeReply, Error>,
        calls: std::cell::Cell<u32>,
    }

    impl Scripted {
        fn new(answer: fn() -> Result<ChallengeReply, Error>) -> Scripted {
            Scripted {
                answer,
                calls: std::cell::Cell::new(0),
            }
        }
    }

    impl Daemon for Scripted {
        fn challenge(&self, _: &str, _: &Context) -> Result<ChallengeReply, Error> {
            self.calls.set(self.calls.get() + 1);
            (self.answer)()
        }

        fn verify(&self, _: &str, _: &str, _: &Context) -> Result<VerifyReply, Error> {
            unreachable!("only challenge is scripted")
        }

        fn account(&self, _: &str, _: &Context) -> Result<AccountReply, Error> {
            unreachable!("only challenge is scripted")
        }
    }

    #[test]
    fn only_an_absent_socket_sends_the_call_to_the_bus() {
        use otpgate_proto::ChallengeState;
        let bus_answer = || Ok(ChallengeReply::plain(ChallengeState::CodeRequired, "bus"));
        let route = |socket: fn() -> Result<ChallengeReply, Error>| Route {
            socket: Some(Scripted::new(socket)),
            bus: Scripted::new(bus_answer),
        };
        let ctx = Context::default();

        let r = route(|| {
            Err(Error::NoSocket {
                path: "/run/otpgate/pam.socket".into(),
                reason: "no such file".into(),
            })
        });
        assert_eq!(r.challenge("alice", &ctx).unwrap().message, "bus");
        assert_eq!(r.bus.calls.get(), 1);

        // A socket that answered, or that is there but wrong, decides.
        for socket in [
            (|| {
                Ok(ChallengeReply::plain(
                    ChallengeState::CodeRequired,
                    "socket",
                ))
            }) as fn() -> Result<ChallengeReply, Error>,
            || {
                Err(Error::UntrustedSocket {
                    path: "/x".into(),
                    reason: "uid 1000".into(),
                })
            },
            || Err(Error::TimedOut(Duration::from_secs(5))),
            || Err(Error::Failed("handshake".into())),
            || Err(Error::NotRunning("no owner".into())),
        ] {
            let r = route(socket);
            let _ = r.challenge("alice", &ctx);
            assert_eq!(r.socket.as_ref().unwrap().calls.get(), 1);
            assert_eq!(r.bus.calls.get(), 0);
        }

        // bus_only: no socket at all.
        let r = Route::<Scripted, Scripted> {
            socket: None,
            bus: Scripted::new(bus_answer),
        };
        assert_eq!(r.challenge("alice", &ctx).unwrap().message, "bus");
    }
}
