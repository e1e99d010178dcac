//! The end-to-end harness: a private `dbus-daemon` with the real policy
//! file, the real `otpgated` binary, test users, codes from `oathtool`.
//!
//! Everything a test starts is stopped by process id when its guard drops,
//! every path is private to the test, every wait has a deadline.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use otpgate_proto as proto;

pub mod inproc;
pub mod leaks;
pub mod libpam;
pub mod pg;
pub mod smtp;

/// Generous: CI machines are shared and slow; a healthy start takes < 1 s.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// Where the workspace's binaries are: `$OTPGATE_BIN_DIR`, else the profile
/// directory the running test binary was built into (target/<profile>).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("OTPGATE_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe dir");
    // Test binaries live in target/<profile>/deps; bins in target/<profile>.
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first (tests/run.sh does)",
        p.display()
    );
    p
}

pub fn pam_module() -> PathBuf {
    bin("libpam_otpgate.so")
}

/// The repository root (for packaging files such as the D-Bus policy).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Waits until `f` is true or the deadline passes; false on timeout.
pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(20));
    }
    f()
}

/// Where the private buses live: pam_otpgate.so trusts a socket only in
/// directories that are root's and writable by root alone, which /tmp
/// (world-writable) is not. /run exists on any Debian, with or without
/// systemd.
pub const TRUSTED_BASE: &str = "/run/otpgate-tests";

/// A private directory under /tmp, world-traversable (0755) so that test
/// processes running as other users can reach a bus socket in it; removed
/// on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> TestDir {
        TestDir::new_in(&std::env::temp_dir(), label)
    }

    /// Under [`TRUSTED_BASE`] (made 0755 if missing): for bus sockets the
    /// module is to accept.
    pub fn trusted(label: &str) -> TestDir {
        let base = Path::new(TRUSTED_BASE);
        fs::create_dir_all(base).expect("create the trusted test base (tests run as root)");
        fs::set_permissions(base, fs::Permissions::from_mode(0o755))
            .expect("chmod the trusted test base");
        TestDir::new_in(base, label)
    }

    fn new_in(base: &Path, label: &str) -> TestDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = base.join(format!(
            "otpgate-test-{label}-{}-{n}-{}",
            std::process::id(),
            now()
        ));
        fs::create_dir_all(&path).expect("create test dir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod test dir");
        TestDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Stops a child by pid: SIGTERM, then SIGKILL after `grace`; reaps it.
fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    wait_or_kill(child, grace);
}

const BUS_BASE_POLICY: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=@SOCKET@</listen>
  <auth>EXTERNAL</auth>
  <!-- The default of Debian's system bus: deny owning and calling,
       allow replies and the bus driver. -->
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  @EXTRA@
</busconfig>
"#;

/// The config of a private system-type bus listening on `socket`, with
/// Debian's default policy and `extra_policy_xml` after it.
pub fn bus_config(socket: &Path, extra_policy_xml: &str) -> String {
    BUS_BASE_POLICY
        .replace("@SOCKET@", &socket.display().to_string())
        .replace("@EXTRA@", extra_policy_xml)
}

/// otpgate's real bus policy (packaging/dbus/), as an include: only root
/// may own org.otpgate.Otpgate1, anyone may call it.
pub fn otpgate_policy() -> String {
    let policy = repo_root().join("packaging/dbus/org.otpgate.Otpgate1.conf");
    assert!(policy.exists(), "{} missing", policy.display());
    format!("<include>{}</include>", policy.display())
}

/// A private system-type bus.
pub struct Bus {
    pub dir: TestDir,
    pub address: String,
    pub socket: PathBuf,
    pub pid: i32,
    child: Child,
}

impl Bus {
    /// With otpgate's real policy file (packaging/dbus/): only root may
    /// own org.otpgate.Otpgate1, anyone may call it.
    pub fn start() -> Bus {
        Bus::start_with(&otpgate_policy())
    }

    /// A bus where anyone may own any name and call anything: the kind a
    /// user could start to impersonate otpgated.
    pub fn start_open() -> Bus {
        Bus::start_with(
            r#"<policy context="default"><allow own="*"/><allow send_destination="*"/></policy>"#,
        )
    }

    pub fn start_with(extra_policy_xml: &str) -> Bus {
        let dir = TestDir::trusted("bus");
        let socket = dir.join("bus.sock");
        let config = dir.join("bus.conf");
        fs::write(&config, bus_config(&socket, extra_policy_xml)).expect("write bus config");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon (apt-get install dbus-daemon)");
        let pid = child.id() as i32;
        if !wait_until(START_DEADLINE, || socket.exists()) {
            stop_child(&mut child, Duration::from_secs(1));
            panic!("dbus-daemon did not create {} in time", socket.display());
        }
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o777)).ok();
        Bus {
            address: format!("unix:path={}", socket.display()),
            socket,
            pid,
            child,
            dir,
        }
    }

    /// Where a [`Daemon`] started on this bus listens for the PAM module
    /// (`[pam] socket`): in the bus's directory, so one test's module never
    /// reaches another test's daemon, nor an installed one.
    pub fn pam_socket(&self) -> PathBuf {
        self.dir.join("otpgate/pam.socket")
    }

    /// The module options that point `pam_otpgate.so` at this bus and at the
    /// direct socket of the daemon started on it: the default path (socket
    /// first, bus when the socket is not there).
    pub fn module_args(&self) -> String {
        format!(
            "bus={} socket={}",
            self.address,
            self.pam_socket().display()
        )
    }

    /// The module options for the bus alone (`bus_only`).
    pub fn bus_only_args(&self) -> String {
        format!("bus={} bus_only", self.address)
    }

    /// Whether `name` has an owner on this bus.
    pub fn has_owner(&self, name: &str) -> bool {
        let address = self.address.clone();
        let name = name.to_string();
        zruntime::block_on(async move {
            let conn = zbus::connection::Builder::address(address.as_str())
                .build()
                .await
                .ok()?;
            let proxy = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
            let name = zbus::names::BusName::try_from(name.as_str()).ok()?;
            proxy.name_has_owner(name).await.ok()
        })
        .unwrap_or(false)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(2));
    }
}

/// The real otpgated, on a private bus, with its own state and key.
pub struct Daemon {
    pub dir: TestDir,
    /// The direct socket it was told to listen on, if the test did not
    /// configure `[pam]` itself.
    pub pam_socket: Option<PathBuf>,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
    pub pid: i32,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// `extra_toml` is appended to a config that sets `[storage]`; it must
    /// not contain a `[storage]` section itself.
    ///
    /// Unless `extra_toml` has a `[pam]` section, the daemon's direct
    /// socket is [`Bus::pam_socket`].
    pub fn start(bus: &Bus, extra_toml: &str) -> Daemon {
        Daemon::start_with_storage(bus, None, extra_toml)
    }

    /// With `storage` = (the whole `[storage]` section, the key file it
    /// names): a daemon of a fleet, whose records are in a shared database
    /// (see [`pg::FleetDb::storage_toml`]). None: a local store in the
    /// daemon's own directory, as [`Daemon::start`].
    pub fn start_with_storage(
        bus: &Bus,
        storage: Option<(&str, &Path)>,
        extra_toml: &str,
    ) -> Daemon {
        let dir = TestDir::new("daemon");
        let state_dir = dir.join("state");
        let config = dir.join("otpgate.toml");
        let pam_socket = (!extra_toml.contains("[pam]")).then(|| bus.pam_socket());
        let pam_section = pam_socket
            .as_ref()
            .map(|p| format!("[pam]\nsocket = \"{}\"\n\n", p.display()))
            .unwrap_or_default();
        let (storage_section, key_file) = match storage {
            Some((section, key_file)) => (section.to_string(), key_file.to_path_buf()),
            None => {
                let key_file = dir.join("master.key");
                (
                    format!(
                        "[storage]\npath = \"{}\"\nkey_file = \"{}\"\n",
                        state_dir.display(),
                        key_file.display()
                    ),
                    key_file,
                )
            }
        };
        fs::write(
            &config,
            format!("{pam_section}{storage_section}\n{extra_toml}\n"),
        )
        .expect("write config");
        let log_path = dir.join("otpgated.log");
        let mut d = Daemon {
            dir,
            pam_socket,
            config,
            state_dir,
            key_file,
            pid: 0,
            log_path,
            child: None,
        };
        d.spawn(bus);
        d
    }

    fn spawn(&mut self, bus: &Bus) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open daemon log");
        let child = Command::new(bin("otpgated"))
            .arg("--config")
            .arg(&self.config)
            .arg("--bus")
            .arg(&bus.address)
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start otpgated");
        self.pid = child.id() as i32;
        self.child = Some(child);
        let started = wait_until(START_DEADLINE, || {
            bus.has_owner(proto::BUS_NAME)
                || self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                    .is_some()
        });
        if !started || !bus.has_owner(proto::BUS_NAME) {
            let log = self.log();
            self.kill();
            panic!("otpgated did not take its bus name in time; its log:\n{log}");
        }
        // The socket comes right after the name: wait for it too, so that
        // a test meaning the direct path gets it.
        if let Some(socket) = self.pam_socket.clone() {
            let listening = wait_until(START_DEADLINE, || {
                std::os::unix::net::UnixStream::connect(&socket).is_ok()
            });
            if !listening {
                let log = self.log();
                self.kill();
                panic!(
                    "otpgated did not listen on {} in time; its log:\n{log}",
                    socket.display()
                );
            }
        }
    }

    /// SIGTERM, then SIGKILL after a deadline.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(15));
        }
    }

    /// SIGKILL at once (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Same config, state and key.
    pub fn restart(&mut self, bus: &Bus) {
        self.stop();
        let end = Instant::now() + START_DEADLINE;
        while bus.has_owner(proto::BUS_NAME) && Instant::now() < end {
            sleep(Duration::from_millis(20));
        }
        self.spawn(bus);
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The record file of `user`: records are keyed by the account's uid
    /// (`uid:N.json`); a name the system does not know has none, and its
    /// path is where an earlier version would have filed it.
    pub fn record_path(&self, user: &str) -> PathBuf {
        let file = match nix::unistd::User::from_name(user).ok().flatten() {
            Some(u) => format!("uid:{}.json", u.uid.as_raw()),
            None => format!("{user}.json"),
        };
        self.state_dir.join("users").join(file)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- programs run under a deadline ----------------------------------------

/// Waits for `child` to end; past `deadline` kills it by pid (SIGKILL) and
/// reaps it. `None`: it had to be killed.
pub fn wait_or_kill(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() <= end => sleep(Duration::from_millis(5)),
            // Past the deadline, or no longer waitable: either way it must
            // not outlive the test.
            _ => {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// For a child the test spawned itself (to write its stdin as it goes, or
/// to look at it while it runs), with stdout and stderr piped: its output,
/// once it has ended. Past `deadline` it is killed by pid and the test fails
/// with what it printed on stderr.
pub fn child_output_within(
    mut child: Child,
    deadline: Duration,
    what: &str,
) -> std::process::Output {
    let ended = wait_or_kill(&mut child, deadline).is_some();
    let out = child.wait_with_output().expect("collect a child's output");
    assert!(
        ended,
        "{what} did not finish within {deadline:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A program run to its end under a deadline: [`Run::within`].
pub struct Run<'a> {
    cmd: &'a mut Command,
    input: Option<Vec<u8>>,
    to_file: bool,
}

/// What a [`Run`] that ended printed, and how long it took.
#[derive(Debug)]
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    /// Empty with [`Run::output_to_file`] (stderr is in `stdout`).
    pub stderr: Vec<u8>,
    /// From the start to its exit (not counting the collection of output).
    pub elapsed: Duration,
}

impl Finished {
    pub fn output(self) -> std::process::Output {
        std::process::Output {
            status: self.status,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// A [`Run`] that was killed at its deadline (or whose output stayed open
/// past it), with what it had printed by then.
#[derive(Debug)]
pub struct TimedOut(pub String);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> Run<'a> {
    /// stdin as `cmd` sets it, stdout and stderr each through a pipe read
    /// on a thread, so a full pipe cannot stall the program.
    pub fn new(cmd: &'a mut Command) -> Run<'a> {
        Run {
            cmd,
            input: None,
            to_file: false,
        }
    }

    /// `input` on stdin (a pipe, written on a thread and then closed; the
    /// program may exit without reading it).
    pub fn input(mut self, input: &[u8]) -> Run<'a> {
        self.input = Some(input.to_vec());
        self
    }

    /// stdout and stderr interleaved in one file of a private directory,
    /// not a pipe: for install scripts that start daemons, which would
    /// otherwise hold the pipe open after the script ends.
    pub fn output_to_file(mut self) -> Run<'a> {
        self.to_file = true;
        self
    }

    /// Starts the program and waits for it; past `deadline` it is killed by
    /// pid. Panics only if it cannot be started.
    pub fn within(self, deadline: Duration) -> Result<Finished, TimedOut> {
        let Run {
            cmd,
            input,
            to_file,
        } = self;
        let dir = to_file.then(|| TestDir::new("run"));
        let file = dir.as_ref().map(|d| d.join("out"));
        match &file {
            Some(path) => {
                let out = fs::File::create(path).expect("create the output file");
                let err = out.try_clone().expect("clone the output file");
                cmd.stdout(out).stderr(err);
            }
            None => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        // Each pipe is read on a thread into a buffer the test can still
        // show if the pipe never closes; the channel says it did.
        type Buffer = std::sync::Arc<Mutex<Vec<u8>>>;
        let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            let buf = Buffer::default();
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            if let Some(mut pipe) = pipe {
                let buf = buf.clone();
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 8192];
                    while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                        buf.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend_from_slice(&chunk[..n]);
                    }
                    let _ = tx.send(());
                });
            }
            (buf, rx)
        };
        let (out_buf, out_done) = reader(child.stdout.take().map(|p| Box::new(p) as _));
        let (err_buf, err_done) = reader(child.stderr.take().map(|p| Box::new(p) as _));
        let status = wait_or_kill(&mut child, deadline);
        let elapsed = started.elapsed();
        // The program has ended; its output ends with it unless something
        // it started still holds the pipe.
        let grace = deadline.saturating_sub(elapsed).max(Duration::from_secs(1));
        let collect = |buf: Buffer, done: std::sync::mpsc::Receiver<()>| {
            let closed = done.recv_timeout(grace).is_ok();
            let bytes = std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()));
            (bytes, closed)
        };
        let ((stdout, out_closed), (stderr, err_closed)) = match &file {
            Some(path) => (
                (fs::read(path).unwrap_or_default(), true),
                (Vec::new(), true),
            ),
            None => (collect(out_buf, out_done), collect(err_buf, err_done)),
        };
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
        match status {
            Some(status) if out_closed && err_closed => Ok(Finished {
                status,
                stdout,
                stderr,
                elapsed,
            }),
            Some(_) => Err(TimedOut(format!(
                "{cmd:?} ended, but something it started still held its output open {grace:?} \
                 later; it printed:\n{printed}"
            ))),
            None => Err(TimedOut(format!(
                "{cmd:?} did not finish within {deadline:?}; it printed:\n{printed}"
            ))),
        }
    }
}

/// Runs `cmd` to completion with stdout and stderr captured; the test fails
/// if it outlives `deadline` (it is killed by pid).
pub fn output_within(cmd: &mut Command, deadline: Duration) -> std::process::Output {
    Run::new(cmd)
        .within(deadline)
        .unwrap_or_else(|e| panic!("{e}"))
        .output()
}

/// The tests that install PAM services, sudoers rules, users, packages or
/// an sshd need root. CI runs as root; anywhere else say so plainly.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these end-to-end tests must run as root (they write /etc/pam.d and /etc/sudoers.d, \
         add users, install packages and start sshd); run them through tests/run.sh or sudo"
    );
}

/// How long one test client call may take before the test fails.
pub const CALL_DEADLINE: Duration = Duration::from_secs(60);

// ---- users -----------------------------------------------------------------

pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

static USERDB: Mutex<()> = Mutex::new(());

fn run_userdb(cmd: &mut Command) {
    // useradd and friends lock /etc/passwd; parallel tests (and binaries)
    // retry instead of failing.
    let _g = USERDB.lock().unwrap_or_else(|p| p.into_inner());
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cmd.output().expect("run user database tool");
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("already exists") {
            return;
        }
        if Instant::now() > end {
            panic!("{cmd:?} failed: {err}");
        }
        sleep(Duration::from_millis(100));
    }
}

fn lookup(name: &str) -> Option<TestUser> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| TestUser {
            name: name.to_string(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        })
}

/// A system user with a home and a shell, created if missing. Names start
/// with `otpg` so that they are recognisably the tests'.
pub fn test_user(name: &str) -> TestUser {
    assert!(name.starts_with("otpg"), "test users start with otpg");
    if let Some(u) = lookup(name) {
        return u;
    }
    run_userdb(Command::new("useradd").args(["-m", "-s", "/bin/bash", name]));
    lookup(name).expect("user just created")
}

/// Runs a user database tool (`useradd`, `usermod`, `userdel`) under the
/// tests' lock, retrying while another holds /etc/passwd's lock.
pub fn userdb(args: &[&str]) {
    let (tool, rest) = args.split_first().expect("a tool");
    run_userdb(Command::new(tool).args(rest));
}

/// Removes the named users (if they exist) when dropped: for tests that
/// make aliases or rename accounts, which must start from nothing again.
pub struct RemoveUsers(pub Vec<String>);

impl RemoveUsers {
    /// Removes any leftovers now, and again when dropped.
    pub fn now_and_later(names: &[&str]) -> RemoveUsers {
        let r = RemoveUsers(names.iter().map(|n| n.to_string()).collect());
        r.remove();
        r
    }

    fn remove(&self) {
        for name in &self.0 {
            if lookup(name).is_some() {
                let _g = USERDB.lock().unwrap_or_else(|p| p.into_inner());
                let _ = Command::new("userdel").args(["-f", name]).output();
            }
        }
    }
}

impl Drop for RemoveUsers {
    fn drop(&mut self) {
        self.remove();
    }
}

pub const ADMIN_GROUP: &str = "otpgate-admin";

/// A user in the `otpgate-admin` group (created if missing).
pub fn admin_group_member(name: &str) -> TestUser {
    run_userdb(Command::new("groupadd").args(["-f", ADMIN_GROUP]));
    let u = test_user(name);
    run_userdb(Command::new("usermod").args(["-aG", ADMIN_GROUP, name]));
    u
}

// ---- codes -----------------------------------------------------------------

/// The 6-digit SHA1 30 s code for `secret_b32` at `unix_time`, by oathtool
/// (the secret goes through stdin, not the command line).
pub fn oathtool_at(secret_b32: &str, unix_time: u64) -> String {
    oathtool(
        &["--totp", "-b", "-", "-N", &format!("@{unix_time}")],
        secret_b32,
    )
}

pub fn oathtool_now(secret_b32: &str) -> String {
    oathtool_at(secret_b32, now())
}

/// oathtool with extra arguments (e.g. `--totp=sha256`, `-d 8`, `-s 60`).
pub fn oathtool(args: &[&str], secret_b32: &str) -> String {
    let mut child = Command::new("oathtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oathtool (apt-get install oathtool)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{secret_b32}\n").as_bytes())
        .expect("write secret");
    let out = child_output_within(child, CALL_DEADLINE, "oathtool");
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// A 6-digit code that is none of the codes of the 25 time steps around
/// now (±12): wrong for any window up to 10, for the next few minutes.
pub fn wrong_code(secret_b32: &str) -> String {
    let from = now().saturating_sub(12 * 30);
    let near = oathtool(
        &["--totp", "-b", "-", "-N", &format!("@{from}"), "-w", "24"],
        secret_b32,
    );
    let near: Vec<&str> = near.lines().map(str::trim).collect();
    (0u32..)
        .map(|n| format!("{:06}", (n * 7919 + 13) % 1_000_000))
        .find(|c| !near.contains(&c.as_str()))
        .expect("25 codes cannot cover them all")
}

// ---- calls -----------------------------------------------------------------

/// What `otpgate-testcall` printed: the reply as JSON, or the D-Bus error.
#[derive(Debug, Clone, PartialEq)]
pub enum CallResult {
    Ok(serde_json::Value),
    Err { name: String, message: String },
}

impl CallResult {
    pub fn ok(self) -> serde_json::Value {
        match self {
            CallResult::Ok(v) => v,
            CallResult::Err { name, message } => panic!("call failed: {name}: {message}"),
        }
    }

    pub fn err_name(&self) -> Option<&str> {
        match self {
            CallResult::Ok(_) => None,
            CallResult::Err { name, .. } => Some(name),
        }
    }

    pub fn is_access_denied(&self) -> bool {
        self.err_name() == Some(proto::ACCESS_DENIED)
    }
}

/// Calls `iface.method(args…)` through the `otpgate-testcall` binary, as
/// `uid` (None: as the test, i.e. root). Supplementary groups are those of
/// the user, as `runuser` would set them.
pub fn call_as(
    bus: &Bus,
    uid: Option<u32>,
    iface: &str,
    method: &str,
    args: &[&str],
) -> CallResult {
    // setpriv (util-linux) drops to the uid with the user's groups, as a
    // login would, without unsafe pre_exec code in the tests.
    let mut cmd = match uid {
        None => Command::new(bin("otpgate-testcall")),
        Some(uid) => {
            let has_user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten();
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"));
            match has_user {
                Some(u) => c
                    .arg(format!("--regid={}", u.gid.as_raw()))
                    .arg("--init-groups"),
                None => c.arg(format!("--regid={uid}")).arg("--clear-groups"),
            };
            c.arg("--").arg(bin("otpgate-testcall"));
            c
        }
    };
    cmd.arg(&bus.address).arg(iface).arg(method).args(args);
    cmd.env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    let out = output_within(cmd.stdin(Stdio::null()), CALL_DEADLINE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "otpgate-testcall printed no JSON ({e}): {stdout} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if let Some(ok) = v.get("ok") {
        CallResult::Ok(ok.clone())
    } else {
        CallResult::Err {
            name: v["error"].as_str().unwrap_or_default().to_string(),
            message: v["message"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// As root.
pub fn call(bus: &Bus, iface: &str, method: &str, args: &[&str]) -> CallResult {
    call_as(bus, None, iface, method, args)
}

/// A user enrolled by root over D-Bus, confirmed with an oathtool code.
pub struct Enrolled {
    pub user: String,
    pub secret: String,
    pub uri: String,
    pub backup_codes: Vec<String>,
    /// The time whose code confirmed the enrolment (its step is used up).
    pub confirmed_at: u64,
}

/// Enrols `user` (which must exist) as root. The confirming code's time
/// step is used up; with the default window of 1 the next step's code
/// (`oathtool_at(secret, confirmed_at + 30)`) is still accepted once.
pub fn enroll(bus: &Bus, user: &str) -> Enrolled {
    let e = call(bus, "Manager", "Enroll", &[user]).ok();
    let secret = e["secret"].as_str().expect("secret").to_string();
    let uri = e["uri"].as_str().expect("uri").to_string();
    let t = now();
    let code = oathtool_at(&secret, t);
    let codes = call(bus, "Manager", "Confirm", &[user, &code]).ok();
    Enrolled {
        user: user.to_string(),
        secret,
        uri,
        backup_codes: codes
            .as_array()
            .expect("codes")
            .iter()
            .map(|c| c.as_str().expect("code").to_string())
            .collect(),
        confirmed_at: t,
    }
}

/// `Auth.Verify` as root: (result, info).
pub fn verify(bus: &Bus, user: &str, code: &str) -> (String, serde_json::Value) {
    let v = call(bus, "Auth", "Verify", &[user, code]).ok();
    (
        v[0].as_str().expect("result word").to_string(),
        v[1].clone(),
    )
}

/// Parses a JSON object of the form testcall prints for a{sv}.
pub fn dict(v: &serde_json::Value) -> HashMap<String, serde_json::Value> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}
