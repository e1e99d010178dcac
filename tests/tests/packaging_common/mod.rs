//! Shared by the packaging tests that install otpgate system-wide
//! (`packaging/install.sh` and the Debian package): one at a time (a file
//! lock), only on a machine where otpgate is not installed, and undone
//! (uninstalled, purged, daemon stopped by pid, PAM files restored, a system
//! bus they caused to start stopped) when the test ends, also when it fails.
#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use otpgate_tests::*;

pub const PIDFILE: &str = "/run/otpgated.pid";
pub const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";
pub const BUS_PIDFILE: &str = "/run/dbus/pid";
/// A sysadmin's PATH: the tests call the installed programs by name.
pub const ADMIN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// Installing, building a package, dpkg: generous for a shared 2-core CI.
pub const STEP_DEADLINE: Duration = Duration::from_secs(180);

/// Serialises the tests that install into the system's paths, whichever
/// test binary or runner they are in.
pub struct SystemLock {
    _lock: Flock<fs::File>,
}

pub fn system_lock() -> SystemLock {
    fs::create_dir_all("/run/lock").expect("/run/lock");
    let path = "/run/lock/otpgate-packaging-tests.lock";
    let end = Instant::now() + Duration::from_secs(900);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .expect("open the packaging test lock");
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return SystemLock { _lock: lock },
            Err((f, _)) => {
                assert!(
                    Instant::now() < end,
                    "another packaging test held {path} for 15 minutes"
                );
                file = f;
                sleep(Duration::from_millis(200));
            }
        }
    }
}

pub const INSTALL_MANIFEST: &str = "/usr/share/otpgate/install-manifest";
/// Where an installation made by install.sh waits while a packaging test
/// runs (root only). A run that was killed leaves it there; the next run
/// refuses to start and says how to put it back.
pub const SET_ASIDE: &str = "/var/backups/otpgate-packaging-test";

/// An otpgate installed by `packaging/install.sh` (the README's quick
/// start, which comes before the test suite), moved out of the way while a
/// packaging test installs and purges otpgate, and put back byte for byte,
/// daemon restarted, when the guard drops.
pub struct SetAside {
    moved: Vec<(PathBuf, PathBuf)>,
    was_running: bool,
    was_enabled: bool,
}

fn mv(from: &Path, to: &Path) -> Result<(), String> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let r = try_run(
        Command::new("mv").arg("-T").arg(from).arg(to),
        "",
        STEP_DEADLINE,
    )?;
    if r.ok {
        Ok(())
    } else {
        Err(format!("mv {} {}: {}", from.display(), to.display(), r.out))
    }
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn quiet(cmd: &mut Command) -> bool {
    try_run(cmd, "", STEP_DEADLINE).is_ok_and(|r| r.ok)
}

impl SetAside {
    pub fn new() -> SetAside {
        let nothing = SetAside {
            moved: Vec::new(),
            was_running: false,
            was_enabled: false,
        };
        assert!(
            !Path::new(SET_ASIDE).exists(),
            "{SET_ASIDE} holds an otpgate installation set aside by a packaging test that did not \
             finish: put its files back where their paths under it say (e.g. \
             {SET_ASIDE}/usr/sbin/otpgated -> /usr/sbin/otpgated, {SET_ASIDE}/etc/otpgate -> \
             /etc/otpgate), remove {SET_ASIDE}, then run /usr/libexec/otpgate/otpgated-ctl start"
        );
        let pkg = dpkg_status("otpgate");
        assert!(
            pkg.is_none(),
            "the otpgate Debian package is installed ({pkg:?}); the packaging tests install and \
             purge otpgate and do not set a package installation aside: remove it first (dpkg -P \
             otpgate) or run the suite on another machine"
        );
        // An installation, or the configuration and state an uninstall
        // kept.
        let manifest = fs::read_to_string(INSTALL_MANIFEST).unwrap_or_default();
        let state = ["/etc/otpgate", "/var/lib/otpgate", "/var/log/otpgated.log"];
        if manifest.is_empty() && !state.iter().any(|p| Path::new(p).exists()) {
            return nothing;
        }
        // With the module enabled in a PAM stack, setting it aside would
        // fail every login through that stack for the test's duration.
        let users: Vec<String> = fs::read_dir("/etc/pam.d")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                fs::read_to_string(e.path()).is_ok_and(|t| {
                    t.lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .any(|l| {
                            l.split_whitespace().any(|w| {
                                w == "pam_otpgate.so" || w.ends_with("/security/pam_otpgate.so")
                            })
                        })
                })
            })
            .map(|e| e.path().display().to_string())
            .collect();
        assert!(
            users.is_empty(),
            "otpgate is installed and enabled in PAM ({users:?}); the packaging tests would have \
             to remove it while they run. Run them on a machine where otpgate is not in use."
        );

        let was_enabled = systemd_running()
            && quiet(admin("systemctl").args(["is-enabled", "--quiet", "otpgated.service"]));
        let was_running = if systemd_running() {
            let active =
                quiet(admin("systemctl").args(["is-active", "--quiet", "otpgated.service"]));
            quiet(admin("systemctl").args(["stop", "otpgated.service"]));
            active
        } else if let Some(pid) = daemon_pid() {
            assert!(
                quiet(admin("/usr/libexec/otpgate/otpgated-ctl").arg("stop")),
                "cannot stop the installed otpgated (pid {pid})"
            );
            true
        } else {
            false
        };

        let mut paths: Vec<PathBuf> = manifest
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(PathBuf::from)
            .collect();
        paths.extend(state.into_iter().map(PathBuf::from));
        let mut aside = SetAside {
            moved: Vec::new(),
            was_running,
            was_enabled,
        };
        fs::create_dir_all(SET_ASIDE).expect("create the set-aside directory");
        fs::set_permissions(SET_ASIDE, fs::Permissions::from_mode(0o700)).expect("chmod");
        for p in paths {
            if fs::symlink_metadata(&p).is_err() {
                continue;
            }
            let to = Path::new(SET_ASIDE).join(p.strip_prefix("/").expect("absolute"));
            if let Err(e) = mv(&p, &to) {
                // Put back what moved so far (the guard's drop) and stop.
                drop(aside);
                panic!("cannot set the installed otpgate aside: {e}");
            }
            aside.moved.push((p, to));
        }
        // The directories install.sh made and --uninstall would remove.
        for d in ["/usr/share/otpgate", "/usr/libexec/otpgate"] {
            let _ = fs::remove_dir(d);
        }
        if systemd_running() {
            quiet(admin("systemctl").arg("daemon-reload"));
        }
        aside
    }
}

impl Drop for SetAside {
    fn drop(&mut self) {
        if self.moved.is_empty() {
            return;
        }
        let mut failed = Vec::new();
        for (orig, aside) in self.moved.iter().rev() {
            if fs::symlink_metadata(orig).is_ok() {
                let _ = try_run(Command::new("rm").arg("-rf").arg(orig), "", STEP_DEADLINE);
            }
            if let Err(e) = mv(aside, orig) {
                failed.push(e);
            }
        }
        if !failed.is_empty() {
            eprintln!(
                "could not put the installed otpgate back from {SET_ASIDE}: {}",
                failed.join("; ")
            );
            return;
        }
        let _ = try_run(
            Command::new("rm").arg("-rf").arg(SET_ASIDE),
            "",
            STEP_DEADLINE,
        );
        if systemd_running() {
            quiet(admin("systemctl").arg("daemon-reload"));
            if self.was_enabled {
                quiet(admin("systemctl").args(["enable", "otpgated.service"]));
            }
        }
        // Also makes the system bus read the restored policy.
        quiet(admin("/usr/libexec/otpgate/otpgated-ctl").arg("reload-bus"));
        if self.was_running && !quiet(admin("/usr/libexec/otpgate/otpgated-ctl").arg("start")) {
            eprintln!("the installed otpgate is back but its daemon did not start: /usr/libexec/otpgate/otpgated-ctl start");
        }
    }
}

/// The tests install, uninstall and purge otpgate: after `SetAside`, nothing
/// of a real installation may be left for them to overwrite or delete.
pub fn require_clean_machine() {
    let leftovers: Vec<&str> = [
        "/usr/sbin/otpgated",
        "/usr/bin/otpgate",
        "/etc/otpgate",
        "/var/lib/otpgate",
        INSTALL_MANIFEST,
        PIDFILE,
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    let pkg = dpkg_status("otpgate");
    assert!(
        leftovers.is_empty() && pkg.is_none(),
        "otpgate files that packaging/install.sh did not record are on this machine \
         ({leftovers:?}, dpkg: {pkg:?}); the packaging tests install and purge otpgate and will \
         not touch them. Remove them first (`dpkg -P otpgate`, or by hand)."
    );
}

/// dpkg's status line of a package ("install ok installed", "deinstall ok
/// config-files"), None if dpkg does not know it.
pub fn dpkg_status(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stdin(Stdio::null())
        .output()
        .expect("dpkg-query");
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty() && !s.ends_with("not-installed")).then_some(s)
}

/// What a command printed (stdout and stderr together, in order) and how
/// it ended.
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    pub code: Option<i32>,
    pub out: String,
}

/// Runs `cmd` with `input` on stdin and its output going to a file, not a
/// pipe: install scripts start daemons that could otherwise hold a pipe
/// open. Killed (by pid) after `deadline`.
pub fn try_run(cmd: &mut Command, input: &str, deadline: Duration) -> Result<Ran, String> {
    let ran = otpgate_tests::Run::new(cmd)
        .input(input.as_bytes())
        .output_to_file()
        .within(deadline)
        .map_err(|e| e.to_string())?;
    Ok(Ran {
        ok: ran.status.success(),
        code: ran.status.code(),
        out: String::from_utf8_lossy(&ran.stdout).into_owned(),
    })
}

pub fn run(cmd: &mut Command) -> Ran {
    try_run(cmd, "", STEP_DEADLINE).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs and asserts success.
pub fn run_ok(cmd: &mut Command) -> String {
    let r = run(cmd);
    assert!(r.ok, "{cmd:?} failed ({:?}):\n{}", r.code, r.out);
    r.out
}

/// A command as an administrator types it: the real system bus (not a
/// test bus from the environment) and a plain PATH.
pub fn admin(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("PATH", ADMIN_PATH)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("OTPGATE_BIN_DIR");
    c
}

/// `runuser -u USER -- ARGS…` with an administrator's environment.
pub fn as_user(user: &str, args: &[&str]) -> Command {
    let mut c = admin("runuser");
    c.args(["-u", user, "--"]).args(args);
    c
}

// ---- processes and the system bus --------------------------------------------

pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether `pid` runs (a zombie does not count).
pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn pid_in(file: &str, name: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(file).ok()?.trim().parse().ok()?;
    (pid_alive(pid) && comm(pid).as_deref() == Some(name)).then_some(pid)
}

/// The otpgated named by /run/otpgated.pid, if it runs.
pub fn daemon_pid() -> Option<i32> {
    pid_in(PIDFILE, "otpgated")
}

/// The system bus named by /run/dbus/pid, if it runs.
pub fn system_bus_pid() -> Option<i32> {
    pid_in(BUS_PIDFILE, "dbus-daemon")
}

/// SIGTERM, then SIGKILL after `grace`; true once the process is gone.
pub fn stop_pid(pid: i32, grace: Duration) -> bool {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    if wait_until(grace, || !pid_alive(pid)) {
        return true;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_until(Duration::from_secs(5), || !pid_alive(pid))
}

/// The uid owning `name` on the system bus, None if nobody owns it.
pub fn system_name_owner_uid(name: &str) -> Option<u32> {
    let name = name.to_string();
    zruntime::block_on(async move {
        let conn = zbus::connection::Builder::address(SYSTEM_BUS)
            .build()
            .await
            .ok()?;
        let proxy = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
        let bus_name = zbus::names::BusName::try_from(name.as_str()).ok()?;
        let uid = proxy.get_connection_unix_user(bus_name).await.ok();
        let _ = conn.close().await;
        uid
    })
}

/// Stops, when dropped, a system bus that was not running when the guard
/// was made (the installers start one on machines without systemd).
pub struct SystemBusGuard {
    was_running: bool,
}

impl SystemBusGuard {
    pub fn new() -> SystemBusGuard {
        SystemBusGuard {
            was_running: system_bus_pid().is_some(),
        }
    }
}

impl Drop for SystemBusGuard {
    fn drop(&mut self) {
        if self.was_running {
            return;
        }
        if let Some(pid) = system_bus_pid() {
            if stop_pid(pid, Duration::from_secs(5)) {
                let _ = fs::remove_file(BUS_PIDFILE);
                let _ = fs::remove_file("/run/dbus/system_bus_socket");
            }
        }
    }
}

/// Stops (by the pid in /run/otpgated.pid) an otpgated left running when
/// the guard drops.
pub struct DaemonReaper;

impl Drop for DaemonReaper {
    fn drop(&mut self) {
        if let Some(pid) = daemon_pid() {
            stop_pid(pid, Duration::from_secs(15));
            let _ = fs::remove_file(PIDFILE);
        }
    }
}

/// Files restored byte for byte when the guard drops: /etc/pam.d/common-*
/// and pam-auth-update's state in /var/lib/pam.
pub struct PamBackup {
    files: Vec<(PathBuf, Vec<u8>, u32)>,
}

impl PamBackup {
    pub fn new() -> PamBackup {
        let mut files = Vec::new();
        for dir in ["/etc/pam.d", "/var/lib/pam"] {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                if dir == "/etc/pam.d" && !name.starts_with("common-") {
                    continue;
                }
                if let (Ok(bytes), Ok(meta)) = (fs::read(&p), fs::metadata(&p)) {
                    if meta.is_file() {
                        files.push((p, bytes, meta.mode() & 0o7777));
                    }
                }
            }
        }
        assert!(
            files
                .iter()
                .any(|(p, _, _)| p == Path::new("/etc/pam.d/common-auth")),
            "/etc/pam.d/common-auth is missing (libpam-runtime)"
        );
        PamBackup { files }
    }

    /// The files that are no longer as they were.
    pub fn changed(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(p, bytes, _)| fs::read(p).ok().as_ref() != Some(bytes))
            .map(|(p, _, _)| p.clone())
            .collect()
    }
}

impl Drop for PamBackup {
    fn drop(&mut self) {
        for (p, bytes, mode) in &self.files {
            if fs::read(p).ok().as_ref() != Some(bytes) {
                let _ = fs::write(p, bytes);
                let _ = fs::set_permissions(p, fs::Permissions::from_mode(*mode));
            }
        }
    }
}

/// A file of the test's own under /etc (a PAM service), removed on drop.
pub struct OwnFile(pub PathBuf);

impl OwnFile {
    pub fn write(path: impl Into<PathBuf>, text: &str) -> OwnFile {
        let path = path.into();
        assert!(!path.exists(), "{} exists already", path.display());
        fs::write(&path, text).expect("write own file");
        OwnFile(path)
    }
}

impl Drop for OwnFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

// ---- what is on disk -----------------------------------------------------------

/// The directory holding pam_unix.so, found by looking (independently of
/// packaging/pam-dir.sh, which the installers use).
pub fn pam_unix_dir() -> PathBuf {
    let mut candidates = Vec::new();
    for base in ["/lib", "/usr/lib", "/lib64", "/usr/lib64"] {
        candidates.push(PathBuf::from(base).join("security"));
        if let Ok(entries) = fs::read_dir(base) {
            for e in entries.flatten() {
                candidates.push(e.path().join("security"));
            }
        }
    }
    candidates
        .into_iter()
        .find(|d| d.join("pam_unix.so").exists())
        .expect("no directory with pam_unix.so")
}

/// Asserts a regular file owned by root with exactly `mode`.
pub fn assert_root_file(path: &str, mode: u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(meta.is_file(), "{path} is not a regular file");
    assert_eq!(meta.uid(), 0, "{path} is not owned by root");
    assert_eq!(
        meta.mode() & 0o7777,
        mode,
        "{path} has mode {:04o}, expected {mode:04o}",
        meta.mode() & 0o7777
    );
}

pub fn assert_root_dir(path: &str, mode: u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(meta.is_dir(), "{path} is not a directory");
    assert_eq!(meta.uid(), 0, "{path} is not owned by root");
    assert_eq!(
        meta.mode() & 0o7777,
        mode,
        "{path} has mode {:04o}, expected {mode:04o}",
        meta.mode() & 0o7777
    );
}

/// Every file and its mode that an installation puts outside /etc and /var
/// (the same set for install.sh and the .deb), plus the man pages and
/// completions that exist in packaging/.
pub fn installed_files() -> Vec<(String, u32)> {
    let pkg = repo_root().join("packaging");
    let pam = pam_unix_dir().join("pam_otpgate.so");
    let mut files: Vec<(String, u32)> = vec![
        ("/usr/sbin/otpgated".into(), 0o755),
        ("/usr/bin/otpgate".into(), 0o755),
        (pam.display().to_string(), 0o644),
        ("/usr/libexec/otpgate/otpgated-ctl".into(), 0o755),
        (
            "/usr/share/dbus-1/system.d/org.otpgate.Otpgate1.conf".into(),
            0o644,
        ),
        (
            "/usr/share/dbus-1/system-services/org.otpgate.Otpgate1.service".into(),
            0o644,
        ),
        ("/lib/systemd/system/otpgated.service".into(), 0o644),
        ("/usr/share/pam-configs/otpgate".into(), 0o644),
    ];
    for (src, dest) in [
        (
            "completions/otpgate.bash",
            "/usr/share/bash-completion/completions/otpgate",
        ),
        (
            "completions/_otpgate",
            "/usr/share/zsh/vendor-completions/_otpgate",
        ),
        (
            "completions/otpgate.fish",
            "/usr/share/fish/vendor_completions.d/otpgate.fish",
        ),
    ] {
        if pkg.join(src).exists() {
            files.push((dest.into(), 0o644));
        }
    }
    for page in man_pages() {
        files.push((format!("/usr/share/man/man1/{page}.gz"), 0o644));
    }
    files
}

/// The names of packaging/man/*.1.
pub fn man_pages() -> BTreeSet<String> {
    fs::read_dir(repo_root().join("packaging/man"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".1"))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the installed files, their modes, the man pages' contents (they
/// decompress to packaging/man's) and that the binaries are the ones given.
pub fn assert_installed_files() {
    for (path, mode) in installed_files() {
        assert_root_file(&path, mode);
    }
    for page in man_pages() {
        let gz = format!("/usr/share/man/man1/{page}.gz");
        let out = Command::new("gzip")
            .args(["-dc", &gz])
            .output()
            .expect("gzip");
        assert!(out.status.success(), "{gz} is not gzip");
        assert_eq!(
            out.stdout,
            fs::read(repo_root().join("packaging/man").join(&page)).expect("man page"),
            "{gz} differs from packaging/man/{page}"
        );
    }
    // The configuration directory, the key and the state directory.
    assert_root_dir("/etc/otpgate", 0o755);
    assert_root_file("/etc/otpgate/otpgate.toml", 0o644);
    assert_root_file("/etc/otpgate/master.key", 0o400);
    assert_eq!(
        fs::metadata("/etc/otpgate/master.key").expect("key").len(),
        32,
        "the master key is not 32 bytes"
    );
    assert_root_dir("/var/lib/otpgate", 0o700);
}

/// Asserts that nothing of `installed_files()` is left.
pub fn assert_files_gone() {
    let left: Vec<String> = installed_files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The daemon runs from /run/otpgated.pid, owns its name on the system bus
/// as root; returns its pid.
pub fn assert_daemon_serving() -> i32 {
    let pid = daemon_pid().unwrap_or_else(|| {
        panic!(
            "no otpgated from {PIDFILE}; its log:\n{}",
            fs::read_to_string("/var/log/otpgated.log").unwrap_or_default()
        )
    });
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/exe"))
            .expect("exe")
            .display()
            .to_string(),
        "/usr/sbin/otpgated",
        "the running otpgated is not the installed one"
    );
    assert_eq!(
        system_name_owner_uid(proto::BUS_NAME),
        Some(0),
        "{} is not owned by root on the system bus",
        proto::BUS_NAME
    );
    assert_root_file("/var/log/otpgated.log", 0o600);
    pid
}

/// The daemon is gone and nobody owns its name.
pub fn assert_daemon_stopped(old_pid: i32) {
    assert!(
        wait_until(Duration::from_secs(20), || !pid_alive(old_pid)),
        "otpgated (pid {old_pid}) still runs"
    );
    assert!(!Path::new(PIDFILE).exists(), "{PIDFILE} is left behind");
    assert!(
        wait_until(Duration::from_secs(10), || system_name_owner_uid(
            proto::BUS_NAME
        )
        .is_none()),
        "{} still has an owner",
        proto::BUS_NAME
    );
}

/// `otpgate enroll --json` as a normal user: {"uri", "secret", …}.
pub fn enroll_as(user: &str) -> serde_json::Value {
    let out = run_ok(&mut as_user(user, &["otpgate", "enroll", "--json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("enroll --json printed no JSON ({e}): {out}"));
    let uri = v["uri"].as_str().expect("uri");
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(user),
        "bad uri {uri}"
    );
    assert!(
        v["secret"].as_str().is_some_and(|s| s.len() >= 16),
        "no secret in {v}"
    );
    v
}

/// `otpgate status --json` as root for `user`.
pub fn status_of(user: &str) -> serde_json::Value {
    let out = run_ok(admin("otpgate").args(["status", "--user", user, "--json"]));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("status --json ({e}): {out}"))
}
