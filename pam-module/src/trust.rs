//! Only a bus that root alone controls is asked.
//!
//! The owner check (`client`) asks the bus driver for the uid behind
//! `org.otpgate.Otpgate1`; the answer is worth something only if root runs
//! that bus driver. Anyone can bind an abstract socket, a socket in a
//! directory they can write (sticky /tmp included: whoever comes first owns
//! the name), or a relative path, which resolves against the caller's
//! working directory (under sudo, the user's). So the address must be an
//! absolute `unix:path=`, and every directory on the way to the socket must
//! be root's and writable by root alone. The directories are checked before
//! every exchange, not when the options are read: they can change between
//! logins.

use std::ffi::OsString;
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::client::{AccountReply, ChallengeReply, Context, Daemon, VerifyReply};
use crate::error::Error;

/// Linux's own limit on symbolic links followed in one lookup.
const MAX_SYMLINKS: u32 = 40;

/// Why a bus address is not trusted: one line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted(pub String);

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The socket path of an address of the one accepted form: `unix:path=`
/// and an absolute path without `.` or `..` components, no other key
/// (`,`), no second address (`;`) and no percent escapes, which zbus would
/// decode into a path other than the one checked here.
pub fn socket_path(address: &str) -> Result<PathBuf, Untrusted> {
    let Some(path) = address.strip_prefix("unix:path=") else {
        return Err(Untrusted(
            "only a unix:path=/absolute/path address is accepted (no abstract socket, \
             no tcp:, no unix:dir= or tmpdir=)"
                .to_string(),
        ));
    };
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(Untrusted(format!(
            "the socket path may only hold letters, digits and - _ . / (found {:?}: \
             no other key, no second address, no escapes)",
            c
        )));
    }
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(Untrusted(
            "the socket path is relative: it would resolve against the caller's working \
             directory"
                .to_string(),
        ));
    }
    // `Path::components` hides `.` (but not `..`) except at the start, so
    // look at the raw text too.
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || path
            .to_str()
            .is_some_and(|s| s.split('/').any(|p| p == "."))
    {
        return Err(Untrusted(
            "the socket path has a . or .. component".to_string(),
        ));
    }
    if path.file_name().is_none() {
        return Err(Untrusted("the socket path names no socket".to_string()));
    }
    Ok(path.to_path_buf())
}

/// Checks the address's form and every directory from `/` down to the
/// socket's: each must be a directory owned by uid 0 and not writable by
/// group or others. A symbolic link on the way must be root's too, and its
/// target is checked the same way. A missing component ends the walk
/// successfully: under directories only root can write, only root can
/// create it, and connecting then fails as a bus that is not there.
pub fn check_address(address: &str) -> Result<(), Untrusted> {
    check_path(&socket_path(address)?)
}

pub fn check_path(socket: &Path) -> Result<(), Untrusted> {
    walk(socket, false)
}

/// What the direct socket's path holds, once it passed [`check_socket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketState {
    /// A socket of root's under directories of root's alone: connect to it.
    Ready,
    /// No socket there, or not one this process may reach (a caller that
    /// is not root cannot enter the daemon's 0700 directory): ask the bus.
    Absent(String),
}

/// The direct socket (`socket=`): its path must have the form accepted for
/// a bus address, every directory down to and including the socket's own
/// must be root's and writable by root alone, and the socket itself must
/// be a socket and root's. Whether the process listening on it is root's
/// is asked of the kernel once connected (`client::SocketDaemon`).
pub fn check_socket(path: &str) -> Result<SocketState, Untrusted> {
    let socket = socket_path(&format!("unix:path={path}"))?;
    let dir = socket
        .parent()
        .ok_or_else(|| Untrusted("the socket path names no directory".to_string()))?;
    walk(dir, true)?;
    let meta = match std::fs::symlink_metadata(&socket) {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
            return Ok(SocketState::Absent(io_reason(&e)))
        }
        Err(e) => {
            return Err(Untrusted(format!(
                "cannot check {}: {}",
                socket.display(),
                io_reason(&e)
            )))
        }
    };
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        return Err(Untrusted(format!("{} is not a socket", socket.display())));
    }
    if meta.uid() != 0 {
        return Err(Untrusted(format!(
            "{} is owned by uid {}, not root",
            socket.display(),
            meta.uid()
        )));
    }
    Ok(SocketState::Ready)
}

/// Walks from `/` down `path`, checking every directory on the way (with
/// `last_is_dir`, `path`'s last component too). A missing component ends
/// the walk successfully.
fn walk(socket: &Path, last_is_dir: bool) -> Result<(), Untrusted> {
    let root = Path::new("/");
    check_dir(root, &lstat(root)?)?;
    // Components still to walk, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, socket);
    let mut current = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == "." {
            continue;
        }
        if name == ".." {
            // Back to a directory already checked (or `/` itself).
            current.pop();
            continue;
        }
        let next = current.join(&name);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Untrusted(format!(
                    "cannot check {}: {}",
                    next.display(),
                    io_reason(&e)
                )))
            }
        };
        if meta.file_type().is_symlink() {
            if meta.uid() != 0 {
                return Err(Untrusted(format!(
                    "{} is a symbolic link owned by uid {}, not root",
                    next.display(),
                    meta.uid()
                )));
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Untrusted(format!(
                    "too many symbolic links on the way to {}",
                    socket.display()
                )));
            }
            let target = std::fs::read_link(&next).map_err(|e| {
                Untrusted(format!("cannot read {}: {}", next.display(), io_reason(&e)))
            })?;
            if target.is_absolute() {
                current = PathBuf::from("/");
            }
            push_components(&mut pending, &target);
            continue;
        }
        if pending.is_empty() && !last_is_dir {
            // The socket itself: its directory decides who could have made it.
            return Ok(());
        }
        check_dir(&next, &meta)?;
        current = next;
    }
    Ok(())
}

fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir => Some(OsString::from(".")),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(names.into_iter().rev());
}

fn lstat(path: &Path) -> Result<std::fs::Metadata, Untrusted> {
    std::fs::symlink_metadata(path).map_err(|e| {
        Untrusted(format!(
            "cannot check {}: {}",
            path.display(),
            io_reason(&e)
        ))
    })
}

fn check_dir(path: &Path, meta: &std::fs::Metadata) -> Result<(), Untrusted> {
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() {
        return Err(Untrusted(format!("{} is not a directory", path.display())));
    }
    if meta.uid() != 0 {
        return Err(Untrusted(format!(
            "{} is owned by uid {}, not root (mode {mode:04o})",
            path.display(),
            meta.uid()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(Untrusted(format!(
            "{} is writable by {} (owner uid 0, mode {mode:04o})",
            path.display(),
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            }
        )));
    }
    Ok(())
}

fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A daemon asked only after its address passes [`check_address`], before
/// each exchange (the code goes out in the second).
pub struct Checked<D> {
    address: String,
    inner: D,
}

impl<D: Daemon> Checked<D> {
    pub fn new(address: &str, inner: D) -> Checked<D> {
        Checked {
            address: address.to_string(),
            inner,
        }
    }

    fn check(&self) -> Result<(), Error> {
        check_address(&self.address).map_err(|reason| Error::UntrustedBus {
            address: self.address.clone(),
            reason: reason.0,
        })
    }
}

impl<D: Daemon> Daemon for Checked<D> {
    fn challenge(&self, user: &str, ctx: &Context) -> Result<ChallengeReply, Error> {
        self.check()?;
        self.inner.challenge(user, ctx)
    }

    fn verify(&self, user: &str, code: &str, ctx: &Context) -> Result<VerifyReply, Error> {
        self.check()?;
        self.inner.verify(user, code, ctx)
    }

    fn account(&self, user: &str, ctx: &Context) -> Result<AccountReply, Error> {
        self.check()?;
        self.inner.account(user, ctx)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{chown, symlink};
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const NOBODY: u32 = 65534;

    #[test]
    fn only_an_absolute_plain_unix_path_is_accepted() {
        assert_eq!(
            socket_path("unix:path=/run/dbus/system_bus_socket").unwrap(),
            Path::new("/run/dbus/system_bus_socket")
        );
        assert!(socket_path("unix:path=/run/otpgate-tests/b-1_2.x/bus.sock").is_ok());
        for bad in [
            "unix:abstract=otpgate",
            "unix:abstract=/run/dbus/system_bus_socket",
            "unix:path=relative/sock",
            "unix:path=./sock",
            "unix:path=sock",
            "unix:path=",
            "unix:path=/",
            "unix:path=/run/../tmp/sock",
            "unix:path=/run/dbus/../../tmp/sock",
            "unix:path=/run/./dbus/sock",
            "unix:path=/run/dbus/.",
            "unix:path=/run/dbus/..",
            "unix:path=/run/%2e%2e/tmp/sock",
            "unix:path=/run/dbus/system_bus_socket,guid=0123456789abcdef0123456789abcdef",
            "unix:path=/run/dbus/system_bus_socket;unix:abstract=evil",
            "unix:path=/run/dbus/sock\n",
            "unix:path=/run/db us/sock",
            "unix:dir=/run",
            "unix:tmpdir=/tmp",
            "unix:runtime=yes",
            "tcp:host=127.0.0.1,port=1",
            "nonce-tcp:host=127.0.0.1,port=1",
            "unixexec:path=/bin/sh",
            "autolaunch:",
            "launchd:env=X",
            "UNIX:path=/run/dbus/system_bus_socket",
            " unix:path=/run/dbus/system_bus_socket",
            "",
        ] {
            assert!(socket_path(bad).is_err(), "{bad:?} was accepted");
            assert!(check_address(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_default_address_is_checked_too_and_passes_on_a_standard_system() {
        let default = crate::options::Options::default().bus;
        assert_eq!(
            socket_path(&default).unwrap(),
            Path::new("/run/dbus/system_bus_socket")
        );
        // /, /run and /run/dbus (where it exists) are root's, 0755.
        check_address(&default).unwrap();
    }

    /// A fresh directory under /run (root's, 0755), removed on drop.
    struct Base(PathBuf);

    impl Base {
        fn new() -> Base {
            assert!(
                // SAFETY: geteuid has no preconditions and cannot fail.
                unsafe { libc::geteuid() } == 0,
                "these tests make root-owned directories and chown others: run them as root \
                 (tests/run.sh does)"
            );
            static N: AtomicU32 = AtomicU32::new(0);
            let p = PathBuf::from(format!(
                "/run/otpgate-pam-trust-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            Base(p)
        }

        fn dir(&self, rel: &str, mode: u32, uid: u32) -> PathBuf {
            let p = self.0.join(rel);
            fs::create_dir_all(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            chown(&p, Some(uid), None).unwrap();
            p
        }
    }

    impl Drop for Base {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn reason(socket: &Path) -> String {
        check_path(socket).unwrap_err().0
    }

    #[test]
    fn root_owned_directories_writable_by_root_alone_pass() {
        let b = Base::new();
        let d = b.dir("a/b", 0o755, 0);
        b.dir("a", 0o711, 0);
        let sock = d.join("bus.sock");
        check_path(&sock).unwrap();
        // The socket itself may be anything: only its directory says who made it.
        fs::write(&sock, "").unwrap();
        chown(&sock, Some(NOBODY), None).unwrap();
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o777)).unwrap();
        check_path(&sock).unwrap();
        // A missing directory under a trusted one: only root could make it.
        check_path(&d.join("not-yet/bus.sock")).unwrap();
        check_address(&format!("unix:path={}", sock.display())).unwrap();
    }

    #[test]
    fn a_directory_of_another_user_is_refused_at_any_depth() {
        let b = Base::new();
        b.dir("u/inner", 0o755, 0);
        b.dir("u", 0o755, NOBODY);
        let r = reason(&b.0.join("u/inner/bus.sock"));
        assert!(
            r.contains(&format!(
                "{}/u is owned by uid 65534, not root (mode 0755)",
                b.0.display()
            )),
            "{r}"
        );
        // Also the socket's own directory.
        b.dir("v", 0o700, NOBODY);
        let r = reason(&b.0.join("v/bus.sock"));
        assert!(r.contains("owned by uid 65534"), "{r}");
    }

    #[test]
    fn a_directory_writable_by_group_or_others_is_refused() {
        let b = Base::new();
        for (mode, who) in [
            (0o775, "writable by its group"),
            (0o757, "writable by others"),
            (0o777, "writable by group and others"),
            // Sticky does not help: before the socket exists, anyone may make it.
            (0o1777, "writable by group and others"),
            (0o1733, "writable by group and others"),
        ] {
            let d = b.dir(&format!("m{mode:o}"), mode, 0);
            let r = reason(&d.join("bus.sock"));
            assert!(r.contains(who), "{mode:o}: {r}");
            assert!(r.contains(&format!("mode {mode:04o}")), "{mode:o}: {r}");
            // A good directory below does not make up for it.
            let below = b.dir(&format!("m{mode:o}/ok"), 0o755, 0);
            assert!(check_path(&below.join("bus.sock")).is_err(), "{mode:o}");
        }
        assert!(reason(Path::new("/tmp/otpgate/bus.sock")).contains("/tmp is writable"));
    }

    #[test]
    fn symbolic_links_are_followed_only_when_root_made_them() {
        let b = Base::new();
        let good = b.dir("good", 0o755, 0);
        let open = b.dir("open", 0o1777, 0);
        // root's link to a good directory: the target is checked, and passes.
        symlink(&good, b.0.join("to-good")).unwrap();
        check_path(&b.0.join("to-good/bus.sock")).unwrap();
        // Relative targets resolve from the link's directory.
        symlink("good", b.0.join("rel-good")).unwrap();
        check_path(&b.0.join("rel-good/bus.sock")).unwrap();
        // root's link into a world-writable directory: the target fails.
        symlink(&open, b.0.join("to-open")).unwrap();
        assert!(reason(&b.0.join("to-open/bus.sock")).contains("writable by"));
        symlink("good/../open", b.0.join("rel-open")).unwrap();
        assert!(reason(&b.0.join("rel-open/bus.sock")).contains("writable by"));
        // The socket's name itself a link into an open directory.
        symlink(open.join("bus.sock"), good.join("linked.sock")).unwrap();
        assert!(reason(&good.join("linked.sock")).contains("writable by"));
        // A user's link is refused even when it points somewhere good.
        let users = b.0.join("users-link");
        symlink(&good, &users).unwrap();
        std::os::unix::fs::lchown(&users, Some(NOBODY), None).unwrap();
        let r = reason(&users.join("bus.sock"));
        assert!(r.contains("symbolic link owned by uid 65534"), "{r}");
        // A loop ends.
        symlink("loop", b.0.join("loop")).unwrap();
        assert!(reason(&b.0.join("loop/bus.sock")).contains("too many symbolic links"));
    }

    #[test]
    fn a_file_where_a_directory_belongs_is_refused() {
        let b = Base::new();
        fs::write(b.0.join("file"), "").unwrap();
        assert!(reason(&b.0.join("file/bus.sock")).contains("is not a directory"));
    }

    #[test]
    fn the_direct_socket_must_be_roots_under_directories_of_roots_alone() {
        let b = Base::new();
        let check = |p: &Path| check_socket(p.to_str().unwrap());
        let d = b.dir("otpgate", 0o700, 0);
        let sock = d.join("pam.socket");
        // Not there (yet): the bus is asked.
        assert!(matches!(check(&sock), Ok(SocketState::Absent(_))));
        assert!(matches!(
            check(&b.0.join("missing/pam.socket")),
            Ok(SocketState::Absent(_))
        ));
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(check(&sock), Ok(SocketState::Ready));

        // The socket's own directory counts, not only those above it.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check(&sock).unwrap_err().0.contains("writable by"));
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        chown(&d, Some(NOBODY), None).unwrap();
        assert!(check(&sock).unwrap_err().0.contains("owned by uid 65534"));
        chown(&d, Some(0), None).unwrap();

        // A socket of someone else's, or something that is not a socket.
        chown(&sock, Some(NOBODY), None).unwrap();
        assert!(check(&sock).unwrap_err().0.contains("owned by uid 65534"));
        let file = d.join("file");
        fs::write(&file, "").unwrap();
        assert!(check(&file).unwrap_err().0.contains("is not a socket"));
        let link = d.join("link");
        symlink(&sock, &link).unwrap();
        assert!(check(&link).unwrap_err().0.contains("is not a socket"));

        // The same form as a bus address: no escapes, nothing relative.
        for bad in ["relative/pam.socket", "/run/a,b", "/run/%2e", "/run/../x"] {
            assert!(check_socket(bad).is_err(), "{bad}");
        }
    }
}
