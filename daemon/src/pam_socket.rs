//! The PAM module's direct line: a peer-to-peer D-Bus socket
//! (`[pam] socket`, `/run/otpgate/pam.socket` by default) serving the same
//! three interfaces as the bus.
//!
//! Why a second way in: on the bus every login pays the broker twice
//! (two connections, each with its handshake, `Hello`, an owner lookup and
//! a uid lookup, and our own uid lookup of the caller). Here the kernel
//! vouches for both ends: `SO_PEERCRED` tells us the caller's uid at
//! accept, and tells the module that we are root. No message goes through
//! a third process.
//!
//! Who may connect is decided by the file system: the socket's directory is
//! root's and 0700, so only root (every PAM login) gets in; anyone else uses
//! the bus, where the same access table applies. A caller that does get in
//! is still judged by its uid, exactly as on the bus.
//!
//! Connections are bounded ([`MAX_CONNECTIONS`]; past it, accepting waits,
//! so a login queues under its own deadline instead of being refused) and
//! closed once idle for [`IDLE`] with no call under way: the module's own
//! default timeout, after which no module is waiting on them any more.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use otpgate_proto::OBJECT_PATH;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::audit::Level;
use crate::bus;
use crate::engine::Engine;
use crate::error::Error;

/// Open connections at most; the module holds one for a single call.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection with no call under way for this long is closed.
pub const IDLE: Duration = Duration::from_secs(5);
/// A client that has not finished the handshake by then is dropped.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// The listening socket; serving stops and the file goes when it is stopped.
pub struct PamSocket {
    path: PathBuf,
    accept: JoinHandle<()>,
}

impl PamSocket {
    /// Makes the directory (root's, 0700), replaces a stale socket file (one
    /// nobody listens on) and listens. A socket someone listens on is
    /// another daemon's: refused, never taken over.
    pub fn bind(path: &Path, engine: Arc<Engine>) -> Result<PamSocket, Error> {
        let listener = listen(path)?;
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let accept = tokio::spawn(accept_loop(listener, engine, slots));
        Ok(PamSocket {
            path: path.to_path_buf(),
            accept,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// No new connection from now on; calls already made are answered. The
    /// file is removed so that the module turns to the bus at once instead
    /// of finding a socket nobody serves.
    pub fn stop(self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn unsafe_path(path: &Path, reason: String) -> Error {
    Error::Unsafe {
        path: path.to_path_buf(),
        reason,
    }
}

/// Every directory above the socket's must be root's and writable by root
/// alone, or someone else could swap the socket's directory for their own.
fn check_ancestors(dir: &Path) -> Result<(), Error> {
    for ancestor in dir.ancestors().skip(1) {
        let meta = match std::fs::symlink_metadata(ancestor) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(ancestor, e)),
        };
        if meta.file_type().is_symlink() {
            // Followed by the kernel; its target is checked as `dir` is
            // created below only if root made the link.
            if meta.uid() != 0 {
                return Err(unsafe_path(
                    ancestor,
                    format!("is a symbolic link owned by uid {}, not root", meta.uid()),
                ));
            }
            continue;
        }
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(unsafe_path(
                ancestor,
                format!(
                    "holds the PAM socket's directory but is not root's alone (owner uid {}, mode {:04o}): fix it or set [pam] socket elsewhere",
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

fn listen(path: &Path) -> Result<UnixListener, Error> {
    let dir = path
        .parent()
        .ok_or_else(|| unsafe_path(path, "names no directory".into()))?;
    check_ancestors(dir)?;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(unsafe_path(dir, "is not a directory".into()));
    }
    if meta.uid() != 0 {
        return Err(unsafe_path(
            dir,
            format!(
                "must be root's (it holds the PAM socket) but is owned by uid {}: remove it and restart otpgated",
                meta.uid()
            ),
        ));
    }
    // Root-only whatever made it: the directory is what keeps everyone
    // but root off this socket.
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            // Someone answers: another otpgated (on another bus, or with
            // another state directory). Taking its socket would send its
            // logins here.
            Ok(live) => {
                let pid = nix::sys::socket::getsockopt(
                    &live,
                    nix::sys::socket::sockopt::PeerCredentials,
                )
                .map(|c| format!(" (pid {})", c.pid()))
                .unwrap_or_default();
                return Err(unsafe_path(
                    path,
                    format!("another process{pid} is listening on it: stop that otpgated first, or set [pam] socket elsewhere"),
                ));
            }
            // Left by a daemon that was killed: nobody listens.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            }
            Err(e) => return Err(Error::io(path, e)),
        },
        Ok(_) => {
            return Err(unsafe_path(
                path,
                "exists and is not a socket: otpgated will not replace it; remove it or set [pam] socket elsewhere".into(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(path, e))?;
    Ok(listener)
}

async fn accept_loop(listener: UnixListener, engine: Arc<Engine>, slots: Arc<Semaphore>) {
    loop {
        // A free slot first: past the bound, clients wait in the kernel's
        // queue under their own deadline.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                engine.audit().log(
                    Level::Error,
                    &format!("event=pam-socket-accept-failed error=\"{e}\""),
                );
                // EMFILE and the like: give the system a moment.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let engine = Arc::clone(&engine);
        tokio::spawn(async move {
            let _slot = slot;
            serve_one(stream, engine).await;
        });
    }
}

async fn serve_one(stream: tokio::net::UnixStream, engine: Arc<Engine>) {
    let (uid, pid) = match stream.peer_cred() {
        Ok(c) => (c.uid(), c.pid().and_then(|p| u32::try_from(p).ok())),
        Err(e) => {
            engine.audit().log(
                Level::Warning,
                &format!("event=pam-socket-no-credentials error=\"{e}\""),
            );
            return;
        }
    };
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let activity = bus::Activity::new();
    let shared = bus::Shared::peer(uid, pid, Arc::clone(&engine), Arc::clone(&activity));
    let guid = zbus::Guid::generate();
    let build = zbus::connection::Builder::unix_stream(stream)
        .server(guid)
        .p2p()
        .serve_at(OBJECT_PATH, bus::Auth(shared.clone()))
        .serve_at(OBJECT_PATH, bus::Manager(shared.clone()))
        .serve_at(OBJECT_PATH, bus::Admin(shared))
        .build();
    let conn = match tokio::time::timeout(HANDSHAKE_DEADLINE, build).await {
        Ok(Ok(conn)) => conn,
        // A client that goes away mid-handshake is no event worth a line.
        Ok(Err(_)) | Err(_) => return,
    };
    loop {
        let used = conn.monitor_activity();
        tokio::select! {
            // In this order: a message that arrived as the idle timer ran
            // out is activity, not idleness.
            biased;
            _ = conn.closed() => break,
            _ = used => continue,
            _ = tokio::time::sleep(IDLE) => {
                if activity.busy() == 0 {
                    break;
                }
            }
        }
    }
    let _ = conn.close().await;
}
