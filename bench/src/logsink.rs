//! The host's log sockets during a run. Every real server has a syslog
//! daemon on /dev/log; without one, glibc's syslog(3) (google-authenticator
//! logs every login through it) falls back to writing to /dev/console,
//! which costs far more than handing a datagram to a listener. So a run
//! uses the host's listener if there is one, and otherwise starts a
//! discarding one (`otpgate-bench log-sink`, a child process) that removes
//! the sockets it created when it stops: on SIGTERM, SIGINT (Ctrl-C
//! reaches the whole process group), SIGHUP, or when the orchestrator dies
//! (PR_SET_PDEATHSIG). The orchestrator's guard removes them as well if
//! the sink itself was killed. A socket is only ever removed if it is the
//! very one the sink bound (same inode): a /dev/log the bench did not
//! create is never touched.

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

/// Where syslog(3) and the Rust `syslog` crate send.
pub const DEV_LOG: &str = "/dev/log";
/// journald's native socket: dbus-broker-launch refuses to start without
/// it (it opens it unconditionally for its own log).
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// When set, the sink appends what it created to this file (`socket PATH
/// INODE`, `dir PATH`), and the orchestrator its pid (`pid N`), so that
/// run.sh can clean up after a run killed with SIGKILL.
pub const RECORD_ENV: &str = "OTPGATE_BENCH_RECORD";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Something accepts datagrams (or stream connections) there.
    Listening,
    /// The path exists but nobody listens: a stopped daemon's leftover.
    Stale,
    Absent,
}

pub fn state(path: &Path) -> State {
    if fs::symlink_metadata(path).is_err() {
        return State::Absent;
    }
    let dgram = UnixDatagram::unbound().and_then(|s| s.connect(path));
    match dgram {
        Ok(()) => State::Listening,
        // A stream socket (some syslog daemons): syslog(3) retries with
        // SOCK_STREAM, so does the Rust crate.
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
            if UnixStream::connect(path).is_ok() {
                State::Listening
            } else {
                State::Stale
            }
        }
        Err(_) => State::Stale,
    }
}

/// The log sockets a run relies on, and the sink that serves those the
/// host lacked. Dropping it stops the sink and removes what it created.
pub struct LogSockets {
    child: Option<Child>,
    created: Vec<(PathBuf, u64)>,
    created_dirs: Vec<PathBuf>,
    /// One line per socket, for the table's header.
    pub lines: Vec<String>,
}

impl LogSockets {
    /// Makes sure each of `paths` has a listener: the host's, or the
    /// bench's discarding sink. A socket that exists with nobody listening
    /// is an error (the bench neither uses nor removes it).
    pub fn ensure(paths: &[&Path]) -> Result<LogSockets, String> {
        let mut missing = Vec::new();
        let mut lines = Vec::new();
        for &p in paths {
            match state(p) {
                State::Listening => lines.push(format!(
                    "{}: the host's listener (a syslog daemon or journald)",
                    p.display()
                )),
                State::Stale => {
                    return Err(format!(
                        "{} exists but nobody listens on it (a stopped syslog daemon, or a bench run killed with SIGKILL): start the syslog daemon or remove the socket",
                        p.display()
                    ))
                }
                State::Absent => missing.push(p.to_path_buf()),
            }
        }
        let mut me = LogSockets {
            child: None,
            created: Vec::new(),
            created_dirs: Vec::new(),
            lines,
        };
        if missing.is_empty() {
            return Ok(me);
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("log-sink");
        for p in &missing {
            cmd.arg("--path").arg(p);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start the syslog sink: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        me.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let mut lines = Vec::new();
            // "created PATH INODE" / "dir PATH" lines, then "ready".
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let l = line.trim().to_string();
                line.clear();
                if l == "ready" {
                    let _ = tx.send(Ok(lines));
                    return;
                }
                lines.push(l);
            }
            let _ = tx.send(Err(()));
        });
        let created = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(l)) => l,
            _ => {
                // Drop stops the child and removes whatever it reported.
                return Err("the syslog sink did not start (see its error above)".into());
            }
        };
        for l in created {
            let mut it = l.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some("created"), Some(p), Some(ino)) => {
                    me.created
                        .push((PathBuf::from(p), ino.parse().unwrap_or(0)));
                    me.lines.push(format!(
                        "{p}: none on this host, so a discarding listener the bench started (removed at exit)"
                    ));
                }
                (Some("dir"), Some(p), None) => me.created_dirs.push(PathBuf::from(p)),
                _ => {}
            }
        }
        Ok(me)
    }
}

impl Drop for LogSockets {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            otpgate_tests::wait_or_kill(&mut c, Duration::from_secs(5));
        }
        // The sink removes its sockets itself; these are for a sink that
        // was killed before it could.
        remove_created(&self.created, &self.created_dirs);
    }
}

/// Removes each socket if it is still the one created (same inode), then
/// each created directory if it is empty.
fn remove_created(sockets: &[(PathBuf, u64)], dirs: &[PathBuf]) {
    for (p, ino) in sockets {
        if fs::symlink_metadata(p).is_ok_and(|m| m.ino() == *ino) {
            let _ = fs::remove_file(p);
        }
    }
    for d in dirs.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}

/// `otpgate-bench log-sink --path P…`: the discarding listener.
pub fn sink(paths: Vec<PathBuf>) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Some(Signal::SIGTERM)).map_err(|e| e.to_string())?;
    // Signals are taken with sigwait by the main thread only: blocked
    // before any thread starts, so the drain threads inherit the mask.
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().map_err(|e| e.to_string())?;
    if nix::unistd::getppid().as_raw() == 1 {
        return Err("the orchestrator is gone".into());
    }
    let record = std::env::var_os(RECORD_ENV).map(PathBuf::from);
    let mut created: Vec<(PathBuf, u64)> = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut out = std::io::stdout();
    let received = Arc::new(AtomicU64::new(0));
    let r = (|| -> Result<(), String> {
        for p in &paths {
            let parent = p
                .parent()
                .ok_or_else(|| format!("{}: no parent directory", p.display()))?;
            if !parent.exists() {
                // One level only (/run/systemd/journal under /run/systemd).
                fs::create_dir(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                dirs.push(parent.to_path_buf());
                note(&record, &format!("dir {}", parent.display()));
                writeln!(out, "dir {}", parent.display()).map_err(|e| e.to_string())?;
            }
            let sock = match UnixDatagram::bind(p) {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::AddrInUse => {
                    return Err(format!(
                        "{} appeared meanwhile: not touching it",
                        p.display()
                    ))
                }
                Err(e) => return Err(format!("bind {}: {e}", p.display())),
            };
            let ino = fs::symlink_metadata(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .ino();
            created.push((p.clone(), ino));
            note(&record, &format!("socket {} {ino}", p.display()));
            // Like /dev/log on a real host: anyone may log.
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o666));
            writeln!(out, "created {} {ino}", p.display()).map_err(|e| e.to_string())?;
            let received = received.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while sock.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        writeln!(out, "ready").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())
    })();
    if r.is_ok() {
        let _ = set.wait();
    }
    remove_created(&created, &dirs);
    if r.is_ok() {
        eprintln!(
            "otpgate-bench: the bench's syslog listener received {} messages and removed its sockets",
            received.load(Ordering::Relaxed)
        );
    }
    r
}

/// Appends `line` to the record file, if run.sh asked for one.
pub fn record(line: &str) {
    note(&std::env::var_os(RECORD_ENV).map(PathBuf::from), line);
}

fn note(record: &Option<PathBuf>, line: &str) {
    if let Some(f) = record {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(f) {
            let _ = writeln!(f, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "otpgate-bench-logsink-{label}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_socket_is_listening_stale_or_absent() {
        let d = temp_dir("state");
        let p = d.join("log");
        assert_eq!(state(&p), State::Absent);
        let s = UnixDatagram::bind(&p).unwrap();
        assert_eq!(state(&p), State::Listening);
        // The file stays when its listener is gone: a leftover nobody reads.
        drop(s);
        assert_eq!(state(&p), State::Stale);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_the_socket_the_sink_bound_is_removed() {
        let d = temp_dir("remove");
        let p = d.join("log");
        let mine = UnixDatagram::bind(&p).unwrap();
        let ino = fs::symlink_metadata(&p).unwrap().ino();
        // Someone else's socket took the path meanwhile: not touched. It is
        // bound elsewhere while ours still exists and then moved into place,
        // so the file system cannot hand it our freed inode number.
        let elsewhere = d.join("theirs");
        let _theirs = UnixDatagram::bind(&elsewhere).unwrap();
        drop(mine);
        fs::remove_file(&p).unwrap();
        fs::rename(&elsewhere, &p).unwrap();
        assert_ne!(fs::symlink_metadata(&p).unwrap().ino(), ino);
        let sub = d.join("made");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("keep"), b"").unwrap();
        remove_created(&[(p.clone(), ino)], std::slice::from_ref(&sub));
        assert!(p.exists(), "a socket the sink did not bind was removed");
        assert!(sub.exists(), "a directory that is not empty was removed");
        // The very socket it bound (same inode) goes, and its directory.
        let ino2 = fs::symlink_metadata(&p).unwrap().ino();
        fs::remove_file(sub.join("keep")).unwrap();
        remove_created(&[(p.clone(), ino2)], std::slice::from_ref(&sub));
        assert!(!p.exists() && !sub.exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
