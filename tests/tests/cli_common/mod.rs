//! Running the real `otpgate` binary in the end-to-end tests: as root or as
//! a test user, with the test bus in `DBUS_SYSTEM_BUS_ADDRESS`, every run
//! bounded by a deadline and killed by pid when it overruns. Shared by the
//! `cli_*.rs` test files (`mod cli_common;`).

#![allow(dead_code)] // each test file uses its own part of it

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use otpgate_tests::*;

/// Far above a healthy run (well under a second): CI machines are shared.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
pub enum As<'a> {
    Root,
    User(&'a TestUser),
}

impl As<'_> {
    pub fn label(&self) -> String {
        match self {
            As::Root => "root".into(),
            As::User(u) => u.name.clone(),
        }
    }

    /// `setpriv` in front of `program`: drops to the user with the user's
    /// own groups (as a login would), without unsafe `pre_exec` code.
    pub fn command(&self, program: &Path) -> Command {
        match self {
            As::Root => Command::new(program),
            As::User(u) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", u.uid))
                    .arg(format!("--regid={}", u.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                c
            }
        }
    }

    /// The same, as one shell word list for `script -c`.
    pub fn shell_prefix(&self) -> String {
        match self {
            As::Root => String::new(),
            As::User(u) => format!(
                "setpriv --reuid={} --regid={} --init-groups -- ",
                u.uid, u.gid
            ),
        }
    }
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Out {
    #[track_caller]
    pub fn ok(&self) -> &Out {
        assert_eq!(self.code, 0, "{} failed: {self:#?}", self.what);
        assert!(
            self.stderr.is_empty(),
            "{}: stderr {:?}",
            self.what,
            self.stderr
        );
        self
    }

    /// stdout is exactly one JSON object on one line.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        self.ok();
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: not one line: {:?}",
            self.what,
            self.stdout
        );
        let v: serde_json::Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.what, self.stdout));
        assert!(v.is_object(), "{}: not an object: {v}", self.what);
        v
    }

    /// Exit 1, nothing on stdout, one line on stderr of the form
    /// `otpgate: …` containing `needle`, and no Rust debug output.
    #[track_caller]
    pub fn fails_with(&self, needle: &str) -> &Out {
        assert_eq!(self.code, 1, "{}: expected exit 1: {self:#?}", self.what);
        assert!(
            self.stdout.is_empty(),
            "{}: stdout {:?}",
            self.what,
            self.stdout
        );
        assert_one_human_line(&self.stderr, &self.what);
        assert!(
            self.stderr.contains(needle),
            "{}: stderr {:?} lacks {needle:?}",
            self.what,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn refused(&self) -> &Out {
        self.fails_with("otpgate: permission denied")
    }
}

#[track_caller]
pub fn assert_one_human_line(stderr: &str, what: &str) {
    assert!(
        stderr.ends_with('\n') && stderr.matches('\n').count() == 1,
        "{what}: not one line: {stderr:?}"
    );
    assert!(stderr.starts_with("otpgate: "), "{what}: {stderr:?}");
    for debug in [
        "Error {", "Some(", "Err(", "Ok(", "\"org.", "panicked", "os error",
    ] {
        assert!(!stderr.contains(debug), "{what}: debug output {stderr:?}");
    }
}

/// Runs `cmd` to completion with a deadline, stdin from `input`.
pub fn run_bounded(mut cmd: Command, input: &str, what: &str) -> Out {
    let ran = Run::new(&mut cmd)
        .input(input.as_bytes())
        .within(RUN_DEADLINE)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    Out {
        code: ran.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&ran.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&ran.stderr).into_owned(),
        what: what.to_owned(),
    }
}

/// `otpgate ARGS` as `who` on `bus`, stdin `input` (not a terminal).
pub fn otpgate_in(bus_address: &str, who: As, args: &[&str], input: &str) -> Out {
    let mut cmd = who.command(&bin("otpgate"));
    cmd.args(args).env("DBUS_SYSTEM_BUS_ADDRESS", bus_address);
    run_bounded(
        cmd,
        input,
        &format!("`otpgate {}` as {}", args.join(" "), who.label()),
    )
}

pub fn otpgate(bus: &Bus, who: As, args: &[&str]) -> Out {
    otpgate_in(&bus.address, who, args, "")
}

pub fn otpgate_stdin(bus: &Bus, who: As, args: &[&str], input: &str) -> Out {
    otpgate_in(&bus.address, who, args, input)
}

/// A string array from a JSON value.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// A directory `who` may write to (for `--qr-svg` files and the like).
pub fn writable_dir(dir: &TestDir, name: &str, who: As) -> PathBuf {
    let p = dir.join(name);
    fs::create_dir_all(&p).expect("mkdir");
    if let As::User(u) = who {
        std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid)).expect("chown");
    }
    fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).expect("chmod");
    p
}

// ---- pseudo-terminal sessions ------------------------------------------

/// `otpgate` under `script(1)`, which gives it a pseudo-terminal for stdin
/// and stdout, as a person at a terminal would. Output is collected by a
/// reader thread; input is typed through `script`'s stdin.
pub struct TtySession {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    pub what: String,
}

impl TtySession {
    pub fn start(bus: &Bus, who: As, args: &[&str]) -> TtySession {
        let what = format!(
            "`otpgate {}` as {} on a terminal",
            args.join(" "),
            who.label()
        );
        // Every word is ours (paths and fixed options), never a secret.
        let line = format!(
            "{}{} {}",
            who.shell_prefix(),
            bin("otpgate").display(),
            args.join(" ")
        );
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run script (util-linux)");
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("stdout");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        TtySession {
            child,
            stdin,
            output,
            reader: Some(reader),
            what,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` has appeared `count` times in the output.
    pub fn wait_for(&mut self, needle: &str, count: usize) -> String {
        let end = Instant::now() + RUN_DEADLINE;
        loop {
            let text = self.text();
            if text.matches(needle).count() >= count {
                return text;
            }
            if Instant::now() > end {
                self.kill();
                panic!(
                    "{}: no {needle:?} (x{count}) within {RUN_DEADLINE:?}; output:\n{text}",
                    self.what
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("type into script");
    }

    /// Waits for the program to end; returns its exit status and output.
    pub fn finish(mut self) -> (i32, String) {
        let what = self.what.clone();
        let code = match wait_or_kill(&mut self.child, RUN_DEADLINE) {
            Some(status) => status.code().unwrap_or(-1),
            None => panic!("{what} did not finish within {RUN_DEADLINE:?}"),
        };
        self.stdin.take();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (code, self.text())
    }

    fn kill(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for TtySession {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Terminal output without colour escapes and carriage returns.
pub fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            // CSI: parameters up to a final byte in @..~
            for f in chars.by_ref() {
                if ('@'..='~').contains(&f) {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// The QR code drawn on the terminal: the longest run of lines made only
/// of half-block characters and spaces, all the same width.
pub fn qr_lines(plain_text: &str) -> Vec<String> {
    let is_qr = |l: &str| l.chars().count() >= 21 && l.chars().all(|c| " ▀▄█".contains(c));
    let mut best: Vec<String> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    for line in plain_text.lines() {
        if is_qr(line)
            && run
                .first()
                .is_none_or(|f| f.chars().count() == line.chars().count())
        {
            run.push(line.to_owned());
        } else {
            if run.len() > best.len() {
                best = std::mem::take(&mut run);
            }
            run.clear();
            if is_qr(line) {
                run.push(line.to_owned());
            }
        }
    }
    if run.len() > best.len() {
        best = run;
    }
    best
}

/// Draws half-block lines as a PBM image (black modules as black pixels,
/// `scale` pixels per module), for zbarimg.
pub fn qr_to_pbm(lines: &[String], scale: usize, path: &Path) {
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for l in lines {
        rows.push(l.chars().map(|c| c == '▀' || c == '█').collect());
        rows.push(l.chars().map(|c| c == '▄' || c == '█').collect());
    }
    let width = rows[0].len() * scale;
    let mut pbm = format!("P1\n{width} {}\n", rows.len() * scale);
    for row in &rows {
        let line: String = row
            .iter()
            .flat_map(|&dark| std::iter::repeat_n(if dark { "1 " } else { "0 " }, scale))
            .collect();
        for _ in 0..scale {
            pbm.push_str(line.trim_end());
            pbm.push('\n');
        }
    }
    fs::write(path, pbm).expect("write pbm");
}

/// What zbarimg reads in the image at `path` (one QR code expected).
pub fn zbar_decode(path: &Path) -> String {
    let mut cmd = Command::new("zbarimg");
    cmd.args(["--raw", "-q"]).arg(path);
    let out = run_bounded(cmd, "", "zbarimg (apt-get install zbar-tools)");
    assert_eq!(
        out.code,
        0,
        "zbarimg found no code in {}: {out:?}",
        path.display()
    );
    out.stdout.trim_end_matches('\n').to_owned()
}

/// SVG to PNG with rsvg-convert (librsvg2-bin), then zbarimg.
pub fn zbar_decode_svg(svg: &Path, dir: &TestDir) -> String {
    let png = dir.join("qr-from-svg.png");
    let mut cmd = Command::new("rsvg-convert");
    cmd.arg(svg).arg("-o").arg(&png);
    let out = run_bounded(cmd, "", "rsvg-convert (apt-get install librsvg2-bin)");
    assert_eq!(out.code, 0, "rsvg-convert failed: {out:?}");
    zbar_decode(&png)
}

/// The `secret=` parameter of an otpauth URI.
pub fn uri_secret(uri: &str) -> String {
    let query = uri.split_once('?').expect("query").1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("secret="))
        .expect("secret=")
        .to_owned()
}

/// `otpgate admin ARGS… --config CONFIG` as root (otpgated stopped: the
/// offline administrator commands).
fn admin(config: &std::path::Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(otpgate_tests::bin("otpgate"));
    cmd.arg("admin")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    run_bounded(cmd, "", &format!("otpgate admin {}", args.join(" ")))
}

/// `otpgate admin rotate-key --config CONFIG`.
pub fn rotate_key(config: &std::path::Path) -> Out {
    admin(config, &["rotate-key"])
}

/// `otpgate admin migrate-store --to postgres --config CONFIG`.
pub fn migrate_store(config: &std::path::Path) -> Out {
    admin(config, &["migrate-store", "--to", "postgres"])
}
