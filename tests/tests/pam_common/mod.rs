//! Helpers shared by the PAM end-to-end tests (`tests/tests/pam_*.rs`):
//! guarded files under /etc, PAM service files, pamtester, the impostor
//! daemon, running a program as a test user.
#![allow(dead_code)] // each test file uses a different part

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use otpgate_tests::*;

pub mod sshd;

/// A file under /etc that the test writes and that is put back as it was
/// (removed, or the old contents restored) when the guard drops, also
/// when the test fails.
pub struct EtcFile {
    path: PathBuf,
    backup: Option<(Vec<u8>, u32)>,
}

impl EtcFile {
    pub fn write(path: impl Into<PathBuf>, contents: &str, mode: u32) -> EtcFile {
        let path = path.into();
        assert!(
            path.starts_with("/etc/"),
            "{} is not under /etc",
            path.display()
        );
        let backup = fs::read(&path).ok().map(|old| {
            let mode = fs::metadata(&path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0o644);
            (old, mode)
        });
        let guard = EtcFile { path, backup };
        // Written to a temporary name and renamed, so that a reader never
        // sees half a file.
        let tmp = guard.path.with_extension("otpgate-test-tmp");
        fs::write(&tmp, contents).expect("write /etc file");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).expect("chmod /etc file");
        fs::rename(&tmp, &guard.path).expect("install /etc file");
        guard
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EtcFile {
    fn drop(&mut self) {
        match &self.backup {
            Some((old, mode)) => {
                let _ = fs::write(&self.path, old);
                let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(*mode));
            }
            None => {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// A unique, valid name for a PAM service or sudoers file of this test.
pub fn unique(label: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "otpg-pam-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The `auth` line for the module under test, by absolute path.
pub fn module_line(args: &str) -> String {
    format!("auth required {} {args}", pam_module().display())
}

/// A full service file: our `auth` stack, and account/session/password
/// lines that let sudo, su and sshd finish a login.
pub fn service_text(auth_lines: &str) -> String {
    format!(
        "# written by an otpgate test, removed when it ends\n{auth_lines}\n\
         account required pam_permit.so\n\
         session required pam_permit.so\n\
         password required pam_deny.so\n"
    )
}

/// An /etc/pam.d service of its own (pamtester, sudo and sshd read only
/// /etc/pam.d).
pub fn etc_pam_service(label: &str, auth_lines: &str) -> (String, EtcFile) {
    let name = unique(label);
    let f = EtcFile::write(
        format!("/etc/pam.d/{name}"),
        &service_text(auth_lines),
        0o644,
    );
    (name, f)
}

/// What pamtester says for each PAM result, and the module's prompt.
pub const SUCCESS: &str = "successfully authenticated";
pub const AUTH_ERR: &str = "Authentication failure";
pub const MAXTRIES: &str = "Have exhausted maximum number of retries";
pub const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
pub const PROMPT: &str = "Verification code: ";

/// The outcome, libpam's word for it and the line the user was shown.
pub fn assert_outcome(o: &Outcome, success: bool, pam_text: &str, user_line: &str) {
    assert_eq!(o.success, success, "{o:#?}");
    assert!(o.says(pam_text), "expected {pam_text:?}: {o:#?}");
    assert!(o.says(user_line), "expected {user_line:?}: {o:#?}");
}

/// What a PAM client printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn says(&self, text: &str) -> bool {
        self.all().contains(text)
    }
}

/// Runs `cmd` with `input` on stdin, killing it by pid after `deadline`.
pub fn run_with_input(mut cmd: Command, input: &str, deadline: Duration) -> Outcome {
    let ran = Run::new(&mut cmd)
        .input(input.as_bytes())
        .within(deadline)
        .unwrap_or_else(|e| panic!("{e}"));
    Outcome {
        success: ran.status.success(),
        stdout: String::from_utf8_lossy(&ran.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&ran.stderr).into_owned(),
        elapsed: ran.elapsed,
    }
}

/// Kills a child by pid when dropped (for panics between spawn and wait).
pub struct ChildGuard(pub Option<u32>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// `pamtester SERVICE USER authenticate` with `input` on stdin.
pub fn pamtester(service: &str, user: &str, input: &str) -> Outcome {
    pamtester_op(service, user, "authenticate", input)
}

/// `pamtester SERVICE USER OPERATION` (`acct_mgmt`, ...) with `input` on stdin.
pub fn pamtester_op(service: &str, user: &str, operation: &str, input: &str) -> Outcome {
    let mut cmd = Command::new("pamtester");
    cmd.args([service, user, operation])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    run_with_input(cmd, &format!("{input}\n"), Duration::from_secs(60))
}

/// `pamtester SERVICE USER authenticate` answered one line at a time, for
/// answers that depend on what happened since it started (a mailed code).
pub struct LivePamtester {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    guard: ChildGuard,
}

impl LivePamtester {
    pub fn start(service: &str, user: &str) -> LivePamtester {
        let mut child = Command::new("pamtester")
            .args([service, user, "authenticate"])
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pamtester");
        let guard = ChildGuard(Some(child.id()));
        let stdin = child.stdin.take();
        LivePamtester {
            child,
            stdin,
            guard,
        }
    }

    /// One line to the prompt. A pamtester that has already ended (it
    /// refused) cannot read it: what it printed says why, at `finish`.
    pub fn answer(&mut self, line: &str) {
        use std::io::Write;
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }

    /// Closes stdin and waits (60 s at most): whether it succeeded, and
    /// all it printed.
    pub fn finish(mut self) -> (bool, String) {
        drop(self.stdin.take());
        let out = child_output_within(self.child, Duration::from_secs(60), "pamtester");
        self.guard.0 = None; // reaped: its pid is no longer ours to kill
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

/// Sets `user`'s password (chpasswd; the password goes through stdin).
pub fn set_password(user: &TestUser, password: &str) {
    let mut cmd = Command::new("chpasswd");
    cmd.env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    let o = run_with_input(
        cmd,
        &format!("{}:{password}\n", user.name),
        Duration::from_secs(30),
    );
    assert!(o.success, "chpasswd: {o:#?}");
}

/// A command that runs `program` as `user` (real and effective uid, gid and
/// supplementary groups), as a login would leave them.
pub fn as_user(user: &TestUser, program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg("--")
        .arg(program);
    c
}

/// The impostor daemon (`pam_host fake-daemon`) on `bus`, run as `user`
/// (None: root), answering as `answer` says; killed by pid on drop.
pub struct FakeDaemon {
    child: Child,
}

impl FakeDaemon {
    pub fn start(bus: &Bus, user: Option<&TestUser>, answer: &str) -> FakeDaemon {
        let host = bin("pam_host");
        let mut cmd = match user {
            Some(u) => as_user(u, &host.display().to_string()),
            None => Command::new(&host),
        };
        let mut child = cmd
            .args(["fake-daemon", &bus.address, answer])
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pam_host fake-daemon");
        let fake = FakeDaemon {
            child: {
                let out = child.stdout.take().expect("stdout");
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let mut r = std::io::BufReader::new(out);
                    let _ = std::io::BufRead::read_line(&mut r, &mut line);
                    let _ = tx.send(line);
                });
                let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
                if line.trim() != "ready" {
                    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    let _ = child.wait();
                    panic!("the fake daemon did not get the bus name: {line:?}");
                }
                child
            },
        };
        assert!(bus.has_owner(otpgate_tests::proto::BUS_NAME));
        fake
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Suspends a process (SIGSTOP) until the guard drops (SIGCONT): a daemon
/// that hangs.
pub struct Stopped(pub i32);

impl Stopped {
    pub fn stop(pid: i32) -> Stopped {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

/// A private tmux server (its own socket in a test directory): programs that
/// insist on a terminal (login, a screen locker) run in its windows on real
/// pseudo-terminals, and the test types into them and reads their screens.
/// The server and every pane's process are killed by pid when it drops.
pub struct Tmux {
    dir: TestDir,
    socket: PathBuf,
    server_pid: i32,
    pane_pids: Vec<i32>,
}

/// One tmux window: its unique id (`@N`) as the target of later commands.
#[derive(Debug, Clone)]
pub struct Window(String);

/// Wide enough that no prompt or message wraps.
const TMUX_COLUMNS: &str = "200";

impl Tmux {
    pub fn start(label: &str) -> Tmux {
        let dir = TestDir::new(label);
        let socket = dir.join("tmux.sock");
        // A finished program's last screen stays readable instead of the
        // window closing; a screen a locker clears goes to the history, where
        // the captures still see it; no status line in the captures.
        let conf = dir.join("tmux.conf");
        fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g status off\nset -g history-limit 5000\n\
             set -g scroll-on-clear on\n",
        )
        .expect("write tmux.conf");
        let mut t = Tmux {
            dir,
            socket,
            server_pid: 0,
            pane_pids: Vec::new(),
        };
        // The first window only keeps the session: `cat` waits on its
        // terminal until the pane is killed.
        let out = t.tmux(&[
            "-f",
            &conf.display().to_string(),
            "new-session",
            "-d",
            "-s",
            "otpgate",
            "-x",
            TMUX_COLUMNS,
            "-y",
            "50",
            "-P",
            "-F",
            "#{pid} #{pane_pid}",
            "cat",
        ]);
        let mut it = out.split_whitespace().map(|p| p.parse::<i32>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(server), Some(pane)) => {
                t.server_pid = server;
                t.pane_pids.push(pane);
            }
            _ => panic!("tmux printed no server and pane pid: {out:?}"),
        }
        t
    }

    /// Runs one tmux client command against this server; its stdout.
    fn tmux(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdin(Stdio::null());
        let out = output_within(&mut cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new window running `shell_command` (through /bin/sh) on its own
    /// pseudo-terminal.
    pub fn window(&mut self, shell_command: &str) -> Window {
        let out = self.tmux(&[
            "new-window",
            "-d",
            "-t",
            "otpgate",
            "-P",
            "-F",
            "#{window_id} #{pane_pid}",
            shell_command,
        ]);
        let mut it = out.split_whitespace();
        let (id, pid) = match (it.next(), it.next().and_then(|p| p.parse::<i32>().ok())) {
            (Some(id), Some(pid)) => (id.to_string(), pid),
            _ => panic!("tmux printed no window id and pane pid: {out:?}"),
        };
        self.pane_pids.push(pid);
        Window(id)
    }

    /// Everything the window has shown, scrollback included, wrapped lines
    /// joined.
    pub fn screen(&self, w: &Window) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", &w.0])
    }

    /// Types `text` literally (no key names), then Enter.
    pub fn type_line(&self, w: &Window, text: &str) {
        if !text.is_empty() {
            self.tmux(&["send-keys", "-t", &w.0, "-l", text]);
        }
        self.tmux(&["send-keys", "-t", &w.0, "Enter"]);
    }

    /// Waits until the window's screen shows `text` `times` times or more;
    /// the screen. Fails the test with the screen when the deadline passes.
    pub fn wait_for(&self, w: &Window, text: &str, times: usize, deadline: Duration) -> String {
        let mut screen = String::new();
        let seen = wait_until(deadline, || {
            screen = self.screen(w);
            screen.matches(text).count() >= times
        });
        assert!(
            seen,
            "{text:?} was not shown {times} time(s) within {deadline:?}; the screen:\n{screen}"
        );
        screen
    }

    /// The pid of the process the window was started with.
    pub fn pane_pid(&self, w: &Window) -> i32 {
        let out = self.tmux(&["display-message", "-p", "-t", &w.0, "#{pane_pid}"]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("tmux printed no pane pid: {out:?}"))
    }

    /// Whether the window's program has exited (its pane is dead).
    pub fn finished(&self, w: &Window) -> bool {
        self.tmux(&["display-message", "-p", "-t", &w.0, "#{pane_dead}"])
            .trim()
            == "1"
    }

    pub fn dir(&self) -> &TestDir {
        &self.dir
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Each pane's process leads its own process group (tmux makes it a
        // session leader): the group goes, with what it started (setpriv,
        // vlock-main, login). A login shell has a group of its own and gets
        // SIGHUP when its terminal goes away with the server.
        for pid in &self.pane_pids {
            let _ = kill(Pid::from_raw(-*pid), Signal::SIGKILL);
        }
        if self.server_pid > 0 {
            let _ = kill(Pid::from_raw(self.server_pid), Signal::SIGKILL);
        }
    }
}

/// The impostor on a direct socket (`pam_host fake-socket`): bound by root
/// at `path`, listening as `listen_uid` (None: root), answering as `answer`
/// says; it reports each call it takes (`calls`). Killed by pid on drop.
pub struct FakeSocket {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeSocket {
    pub fn start(path: &Path, answer: &str, listen_uid: Option<u32>) -> FakeSocket {
        let mut cmd = Command::new(bin("pam_host"));
        cmd.arg("fake-socket").arg(path).arg(answer);
        if let Some(uid) = listen_uid {
            cmd.arg(uid.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pam_host fake-socket");
        let out = child.stdout.take().expect("stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        let fake = FakeSocket { child, lines };
        let ready = wait_until(Duration::from_secs(30), || {
            fake.lines.lock().unwrap().iter().any(|l| l == "ready")
        });
        assert!(ready, "the fake socket did not start at {}", path.display());
        fake
    }

    /// The calls it has taken so far (`Challenge`, `Verify`).
    pub fn calls(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("call ").map(str::to_string))
            .collect()
    }
}

impl Drop for FakeSocket {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// sudoers rules for `user` with the PAM service `service`, checked with
/// `visudo -c` before they go live (a broken sudoers file would break sudo
/// for everyone). Removed when the guard drops.
pub fn sudoers(user: &TestUser, service: &str) -> EtcFile {
    let text = format!(
        "# written by an otpgate test, removed when it ends\n\
         Defaults:{u} pam_service={service}, timestamp_timeout=0, passwd_tries=1, lecture=never\n\
         {u} ALL=(ALL:ALL) ALL\n",
        u = user.name
    );
    let dir = TestDir::new("sudoers");
    let candidate = dir.join("candidate");
    fs::write(&candidate, &text).expect("write candidate");
    let check = Command::new("visudo")
        .arg("-c")
        .arg("-f")
        .arg(&candidate)
        .output()
        .expect("run visudo");
    assert!(
        check.status.success(),
        "visudo rejects the test rules: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // No dot in the name: sudo skips such files in /etc/sudoers.d.
    EtcFile::write(
        format!("/etc/sudoers.d/{}", unique("sudo").replace('.', "-")),
        &text,
        0o440,
    )
}

/// `pamtester [-I item=value]… SERVICE USER authenticate` (PAM items such
/// as `rhost` or `tty`), in a session of its own without a controlling
/// terminal: a test run from a terminal would otherwise hand it a
/// pseudo-terminal, which is never a console.
pub fn pamtester_items(service: &str, user: &str, items: &[(&str, &str)], input: &str) -> Outcome {
    let mut cmd = Command::new("setsid");
    cmd.args(["--wait", "pamtester"]);
    for (k, v) in items {
        cmd.arg("-I").arg(format!("{k}={v}"));
    }
    cmd.args([service, user, "authenticate"])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    run_with_input(cmd, &format!("{input}\n"), Duration::from_secs(60))
}
