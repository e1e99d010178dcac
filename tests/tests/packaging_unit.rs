//! The packaging files on their own, without installing anything: the
//! systemd unit's exposure score and syntax, whether the unit's sandbox
//! leaves room for everything the real daemon does (traced with strace
//! through a whole session), the shipped configuration, the D-Bus
//! activation file, the pam-auth-update profile and the scripts' syntax.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use otpgate_tests::smtp::SmtpSink;
use otpgate_tests::*;

fn packaging(p: &str) -> PathBuf {
    repo_root().join("packaging").join(p)
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = output_within(cmd.stdin(Stdio::null()), CALL_DEADLINE);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The values of `key=` in the unit, in order.
fn unit_values(key: &str) -> Vec<String> {
    fs::read_to_string(packaging("otpgated.service"))
        .expect("unit")
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .map(String::from)
        .collect()
}

#[test]
fn unit_exposure_is_at_most_2_0() {
    let (ok, out, err) = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(packaging("otpgated.service")),
    );
    assert!(ok, "systemd-analyze security failed: {err}{out}");
    let line = out
        .lines()
        .chain(err.lines())
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in: {out}{err}"));
    // "→ Overall exposure level for otpgated.service: 0.9 SAFE 😀"
    let score: f64 = line
        .rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{out}");
}

/// `systemd-analyze verify` exits 0 even on unknown keys or bad values, so
/// any message at all fails the test. It also checks that the ExecStart
/// programs exist: the unit is verified with them pointing at the build.
#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = TestDir::new("pkg-verify");
    let unit = dir.join("otpgated.service");
    fs::write(
        &unit,
        fs::read_to_string(packaging("otpgated.service"))
            .expect("unit")
            .replace("/usr/sbin/otpgated", &bin("otpgated").display().to_string()),
    )
    .expect("write unit");
    let (ok, out, err) = output(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no", "--no-pager"])
            .arg(&unit),
    );
    assert!(
        ok && out.trim().is_empty() && err.trim().is_empty(),
        "{out}{err}"
    );
}

/// The system calls in `@group` (nested groups expanded), as
/// `systemd-analyze syscall-filter` lists them on this machine.
fn syscall_group(group: &str, memo: &mut BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    if let Some(s) = memo.get(group) {
        return s.clone();
    }
    let (ok, out, err) = output(
        Command::new("systemd-analyze")
            .args(["syscall-filter", "--no-pager"])
            .arg(group),
    );
    assert!(ok, "systemd-analyze syscall-filter {group}: {err}");
    let mut set = BTreeSet::new();
    for line in out.lines().filter(|l| l.starts_with(char::is_whitespace)) {
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if item.starts_with('@') {
            set.extend(syscall_group(item, memo));
        } else {
            set.insert(item.to_string());
        }
    }
    memo.insert(group.to_string(), set.clone());
    set
}

/// What the unit's SystemCallFilter= lines permit: the first (allow) list
/// minus every `~` (deny) list.
fn permitted_syscalls() -> BTreeSet<String> {
    let mut memo = BTreeMap::new();
    let mut allow = BTreeSet::new();
    let mut deny = BTreeSet::new();
    for value in unit_values("SystemCallFilter") {
        let (target, items) = match value.strip_prefix('~') {
            Some(rest) => (&mut deny, rest.to_string()),
            None => (&mut allow, value.clone()),
        };
        for item in items.split_whitespace() {
            if item.starts_with('@') {
                target.extend(syscall_group(item, &mut memo));
            } else {
                target.insert(item.to_string());
            }
        }
    }
    assert!(
        !allow.is_empty(),
        "the unit has no SystemCallFilter allow list"
    );
    allow.difference(&deny).cloned().collect()
}

/// One line of `strace -f` output: (syscall, its arguments and result).
fn trace_calls(trace: &str) -> Vec<(String, String)> {
    trace
        .lines()
        .filter_map(|line| {
            // "1234  name(args) = ret" or "1234  name(args <unfinished ...>"
            let rest = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let after = &rest[name.len()..];
            (!name.is_empty() && after.starts_with('(')).then(|| (name, after.to_string()))
        })
        .collect()
}

/// The absolute paths quoted in a syscall's arguments.
fn quoted_paths(args: &str) -> Vec<String> {
    args.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(String::from)
        .collect()
}

/// The first child of `pid` (strace's child is the traced daemon).
fn child_of(pid: u32) -> Option<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

struct Traced {
    child: Child,
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(d) = child_of(self.child.id()) {
            let _ = kill(Pid::from_raw(d), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The unit confines the daemon (seccomp allow list, no W+X memory, the
/// address families it lists, read-only file system except the state
/// directory, /proc limited to itself, a private /dev, no home
/// directories). This runs the real daemon under strace through
/// enrolment, confirmation, codes, the admin calls, an import, an
/// enrolment and a login by e-mail (SMTP to a local sink) and a graceful
/// stop, and checks that everything it did is something the unit allows.
#[test]
fn unit_sandbox_leaves_room_for_what_the_daemon_does() {
    let bus = Bus::start();
    let dir = TestDir::new("pkg-strace");
    let state = dir.join("state");
    let key = dir.join("master.key");
    // The installers create the key; under the unit /etc is read-only.
    fs::write(&key, [7u8; 32]).expect("key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).expect("chmod key");
    // The e-mail factor on, so that SMTP is part of the session.
    let sink = SmtpSink::start();
    // Stands in for the unit's RuntimeDirectory=otpgate (/run/otpgate),
    // where the PAM module's socket lives: private to this test.
    let run = TestDir::trusted("pkg-strace-run");
    let runtime_dir = run.join("otpgate");
    let pam_socket = runtime_dir.join("pam.socket");
    let config = dir.join("otpgate.toml");
    fs::write(
        &config,
        format!(
            "[pam]\nsocket = \"{}\"\n\n\
             [storage]\npath = \"{}\"\nkey_file = \"{}\"\n\n\
             [email]\nsmtp_url = \"{}\"\nfrom = \"otpgate@example.org\"\n",
            pam_socket.display(),
            state.display(),
            key.display(),
            sink.url()
        ),
    )
    .expect("config");
    let trace_path = dir.join("trace");
    let child = Command::new("strace")
        .args(["-f", "-qq", "-s", "512", "-o"])
        .arg(&trace_path)
        .arg(bin("otpgated"))
        .arg("--config")
        .arg(&config)
        .arg("--bus")
        .arg(&bus.address)
        // As systemd starts it: no LD_LIBRARY_PATH from cargo and the like.
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace (apt-get install strace)");
    let mut traced = Traced { child };
    assert!(
        wait_until(START_DEADLINE, || bus.has_owner(proto::BUS_NAME)),
        "otpgated under strace did not take its name"
    );

    let user = test_user("otpgpkgtrace");
    let e = enroll(&bus, &user.name);
    assert_eq!(
        call(&bus, "Auth", "Challenge", &[&user.name]).ok()[0],
        "code-required"
    );
    // The PAM module's way in: the same call on the direct socket.
    assert!(
        wait_until(START_DEADLINE, || pam_socket.exists()),
        "no socket at {}",
        pam_socket.display()
    );
    let address = format!("unix:path={}", pam_socket.display());
    let word = zruntime::block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .p2p()
            .build()
            .await
            .expect("connect to the PAM socket");
        let context: std::collections::HashMap<String, zbus::OwnedVariant> = Default::default();
        let reply = conn
            .call_method(
                None::<&str>,
                proto::OBJECT_PATH,
                Some("org.otpgate.Otpgate1.Auth"),
                "Challenge",
                &(user.name.as_str(), context),
            )
            .await
            .expect("Challenge on the PAM socket");
        let (word, _): (
            String,
            std::collections::HashMap<String, zbus::OwnedVariant>,
        ) = reply.body().deserialize().expect("a Challenge answer");
        word
    });
    assert_eq!(word, "code-required");
    let (r, _) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "ok");
    let (r, _) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_ne!(r, "ok", "a used backup code passed again");
    call_as(&bus, Some(user.uid), "Manager", "Status", &[&user.name]).ok();
    call(&bus, "Admin", "Stats", &[]).ok();
    call(&bus, "Admin", "ListUsers", &[]).ok();
    call(&bus, "Admin", "Unlock", &[&user.name]).ok();
    call(&bus, "Admin", "Reset", &[&user.name]).ok();
    let ga = dir.join("google_authenticator");
    fs::write(
        &ga,
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" TOTP_AUTH\n\
         12345678\n23456789\n",
    )
    .expect("ga file");
    let _ = call(
        &bus,
        "Admin",
        "Import",
        &[&user.name, &ga.display().to_string()],
    );
    call(&bus, "Admin", "Reset", &[&user.name]).ok();

    // Enrolment by e-mail and a login with a mailed code.
    let mail_deadline = Duration::from_secs(30);
    call(
        &bus,
        "Manager",
        "Enroll",
        &[&user.name, "email", "trace@example.org"],
    )
    .ok();
    let mails = sink.wait_for(1, mail_deadline);
    let code = mails.first().and_then(|m| m.code()).expect("a mailed code");
    call(&bus, "Manager", "Confirm", &[&user.name, &code]).ok();
    assert_eq!(
        call(&bus, "Auth", "Challenge", &[&user.name]).ok()[0],
        "code-required"
    );
    let mails = sink.wait_for(2, mail_deadline);
    let code = mails
        .get(1)
        .and_then(|m| m.code())
        .expect("a mailed login code");
    let (r, _) = verify(&bus, &user.name, &code);
    assert_eq!(r, "ok");
    call(&bus, "Admin", "Reset", &[&user.name]).ok();

    // Graceful stop, as systemd does it.
    let daemon = child_of(traced.child.id()).expect("the traced daemon");
    kill(Pid::from_raw(daemon), Signal::SIGTERM).expect("SIGTERM");
    assert!(
        wait_until(Duration::from_secs(20), || matches!(
            traced.child.try_wait(),
            Ok(Some(_))
        )),
        "otpgated did not stop on SIGTERM"
    );
    let trace = fs::read_to_string(&trace_path).expect("trace");
    let calls = trace_calls(&trace);
    assert!(calls.len() > 100, "the trace is too short:\n{trace}");

    // Seccomp: every system call is in the unit's allow list.
    let permitted = permitted_syscalls();
    let used: BTreeSet<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    let refused: Vec<&&str> = used.iter().filter(|n| !permitted.contains(**n)).collect();
    assert!(
        refused.is_empty(),
        "SystemCallFilter would refuse {refused:?} (used: {used:?})"
    );

    let mut problems = Vec::new();
    let own_pids: BTreeSet<String> = trace
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    for (name, args) in &calls {
        // MemoryDenyWriteExecute.
        let exec = args.contains("PROT_EXEC");
        if (name == "mprotect" || name == "pkey_mprotect") && exec
            || name == "mmap" && exec && args.contains("PROT_WRITE")
        {
            problems.push(format!("MemoryDenyWriteExecute: {name}{args}"));
        }
        // RestrictAddressFamilies.
        if name == "socket" || name == "socketpair" {
            let family = args
                .trim_start_matches('(')
                .split([',', ' '])
                .next()
                .unwrap_or_default();
            let allowed = unit_values("RestrictAddressFamilies").join(" ");
            if !allowed.split_whitespace().any(|f| f == family) {
                problems.push(format!("RestrictAddressFamilies: {name}{args}"));
            }
        }
        // ProtectSystem=strict: writes only under the state directory.
        let writes = match name.as_str() {
            "open" | "openat" | "openat2" => {
                args.contains("O_WRONLY") || args.contains("O_RDWR") || args.contains("O_CREAT")
            }
            "creat" | "mkdir" | "mkdirat" | "rename" | "renameat" | "renameat2" | "unlink"
            | "unlinkat" | "rmdir" | "chmod" | "fchmodat" | "link" | "linkat" | "symlink"
            | "symlinkat" | "truncate" | "chown" | "fchownat" | "lchown" | "utimensat" => true,
            _ => false,
        };
        if writes {
            for p in quoted_paths(args) {
                if !Path::new(&p).starts_with(&state)
                    && !Path::new(&p).starts_with(&runtime_dir)
                    && p != "/dev/null"
                {
                    problems.push(format!(
                        "writes outside the state and runtime directories: {name}{args}"
                    ));
                }
            }
        }
        if matches!(
            name.as_str(),
            "open"
                | "openat"
                | "openat2"
                | "newfstatat"
                | "statx"
                | "access"
                | "readlink"
                | "readlinkat"
        ) {
            for p in quoted_paths(args) {
                // ProcSubset=pid and ProtectProc=invisible: only its own
                // /proc entries, and files glibc reads with a fallback when
                // they are hidden: sysconf(_SC_NGROUPS_MAX) (65536) and
                // malloc's heap shrinking (madvise instead of remapping);
                // and the one libcap-ng's constructor reads at load (libpam,
                // for re-authentication, pulls it in through libaudit),
                // which falls back to the compiled-in last capability.
                if let Some(rest) = p.strip_prefix("/proc/") {
                    let first = rest.split('/').next().unwrap_or_default();
                    let fine = matches!(first, "self" | "thread-self")
                        || own_pids.contains(first)
                        || p == "/proc/sys/kernel/ngroups_max"
                        || p == "/proc/sys/vm/overcommit_memory"
                        || p == "/proc/sys/kernel/cap_last_cap";
                    if !fine {
                        problems.push(format!("/proc outside its own: {name}{args}"));
                    }
                }
                // PrivateDevices: only the pseudo devices.
                if let Some(dev) = p.strip_prefix("/dev/") {
                    if !matches!(
                        dev,
                        "null" | "zero" | "full" | "random" | "urandom" | "tty" | "log"
                    ) {
                        problems.push(format!("a device PrivateDevices hides: {name}{args}"));
                    }
                }
                // ProtectHome=yes.
                if p.starts_with("/home/") || p.starts_with("/root/") || p == "/root" {
                    problems.push(format!("home directories: {name}{args}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// packaging/otpgate.toml: valid as shipped (all commented), and valid
/// with every setting that has a default uncommented (so every shown
/// default is accepted); every key the daemon knows is shown.
#[test]
fn shipped_config_is_valid_and_shows_every_key() {
    let text = fs::read_to_string(packaging("otpgate.toml")).expect("otpgate.toml");
    let check = |text: &str| {
        let dir = TestDir::new("pkg-config");
        let path = dir.join("otpgate.toml");
        fs::write(&path, text).expect("write config");
        output(
            Command::new(bin("otpgated"))
                .arg("--check-config")
                .arg("--config")
                .arg(&path),
        )
    };
    let (ok, out, err) = check(&text);
    assert!(ok, "shipped config refused: {out}{err}");

    // Settings without a default (examples only): setting them turns a
    // feature on (e-mail) or needs another backend (url).
    let no_default = ["url", "smtp_url", "from", "username", "password_file"];
    let mut keys = BTreeSet::new();
    // The file ends with a commented [[policy]] example (its own tables,
    // checked by the daemon's config tests): left as it is here.
    let mut in_policy_example = false;
    let uncommented: String = text
        .lines()
        .map(|line| {
            in_policy_example |= line.starts_with("# [[policy]]");
            if in_policy_example {
                return line.to_string();
            }
            let Some(setting) = line.strip_prefix("# ") else {
                return line.to_string();
            };
            let Some((key, _)) = setting.split_once(" = ") else {
                return line.to_string();
            };
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                return line.to_string();
            }
            keys.insert(key.to_string());
            if no_default.contains(&key) {
                line.to_string()
            } else {
                setting.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (ok, out, err) = check(&uncommented);
    assert!(
        ok,
        "config with every default set refused: {out}{err}\n{uncommented}"
    );

    // Every section and key the daemon knows, as it lists them when it
    // refuses an unknown one.
    let known = |probe: &str| -> Vec<String> {
        let (ok, out, err) = check(probe);
        assert!(!ok, "{probe:?} was accepted");
        let msg = format!("{out}{err}");
        let list = msg
            .split_once("(known: ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(list, _)| list)
            .unwrap_or_else(|| panic!("no known list in {msg:?}"));
        list.split(", ").map(String::from).collect()
    };
    let sections = known("[no_such_section_probe]\n");
    assert!(sections.len() >= 6, "{sections:?}");
    for section in &sections {
        if let Some(array) = section
            .strip_prefix("[[")
            .and_then(|s| s.strip_suffix("]]"))
        {
            // An array of tables: shown as a commented example.
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# [[{array}]]"))),
                "otpgate.toml has no example of [[{array}]]"
            );
            for key in known(&format!("[[{array}]]\nno_such_key_probe = 1\n")) {
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("# {key} = "))),
                    "otpgate.toml's example does not show [[{array}]] {key}"
                );
            }
            continue;
        }
        assert!(
            text.lines().any(|l| l.starts_with(&format!("[{section}]"))),
            "otpgate.toml has no [{section}]"
        );
        for key in known(&format!("[{section}]\nno_such_key_probe = 1\n")) {
            assert!(
                keys.contains(&key),
                "otpgate.toml does not show [{section}] {key}"
            );
        }
    }
}

fn key_values(path: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn dbus_activation_names_the_unit() {
    let kv = key_values(&packaging("dbus/org.otpgate.Otpgate1.service"));
    assert_eq!(kv["Name"], proto::BUS_NAME);
    assert_eq!(kv["User"], "root");
    assert_eq!(kv["SystemdService"], "otpgated.service");
    assert_eq!(kv["Exec"], "/bin/false");
    let unit = unit_values("BusName");
    assert_eq!(unit, [proto::BUS_NAME]);
    assert_eq!(unit_values("Type"), ["notify"]);
}

#[test]
fn pam_profile_is_off_by_default_and_after_the_password() {
    let text = fs::read_to_string(packaging("pam-configs/otpgate")).expect("profile");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name}: in the profile"))
    };
    assert_eq!(field("Default"), "no");
    // "Additional" comes after pam_unix's Primary block and its
    // pam_deny/pam_permit: the code is asked only after a right password.
    assert_eq!(field("Auth-Type"), "Additional");
    let auth: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Auth:"))
        .skip(1)
        .take_while(|l| l.starts_with(char::is_whitespace))
        .map(str::trim)
        .collect();
    assert_eq!(auth.len(), 1, "{auth:?}");
    let words: Vec<&str> = auth[0].split_whitespace().collect();
    assert!(
        words.contains(&"pam_otpgate.so") && words.contains(&"nullok"),
        "{auth:?}"
    );
    // PAM_IGNORE (not enrolled, nullok) must not fail the stack.
    assert!(auth[0].contains("ignore=ignore"), "{auth:?}");
}

#[test]
fn scripts_parse() {
    for (shell, script) in [
        ("bash", "install.sh"),
        ("bash", "deb/build.sh"),
        ("sh", "otpgated-ctl"),
        ("sh", "pam-dir.sh"),
        ("sh", "deb/preinst"),
        ("sh", "deb/postinst"),
        ("sh", "deb/prerm"),
        ("sh", "deb/postrm"),
    ] {
        let path = packaging(script);
        let mode = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{script} is not executable");
        let (ok, out, err) = output(Command::new(shell).arg("-n").arg(&path));
        assert!(ok, "{script}: {out}{err}");
    }
    // The PAM directory is asked of the system, and holds pam_unix.so.
    let (ok, out, err) = output(&mut Command::new(packaging("pam-dir.sh")));
    assert!(ok, "{err}");
    assert!(Path::new(out.trim()).join("pam_unix.so").exists(), "{out}");
}

/// An otpgated of the test's own on `bus` with `config`, extra environment
/// `env`; stopped (SIGTERM, then SIGKILL) on drop.
struct OwnDaemon {
    child: Child,
}

impl OwnDaemon {
    fn start(bus: &Bus, config: &Path, env: &[(&str, &Path)]) -> OwnDaemon {
        let mut cmd = Command::new(bin("otpgated"));
        cmd.arg("--config")
            .arg(config)
            .arg("--bus")
            .arg(&bus.address)
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut d = OwnDaemon {
            child: cmd.spawn().expect("start otpgated"),
        };
        let up = wait_until(START_DEADLINE, || {
            bus.has_owner(proto::BUS_NAME) || !matches!(d.child.try_wait(), Ok(None))
        });
        assert!(
            up && bus.has_owner(proto::BUS_NAME),
            "otpgated did not take its name"
        );
        d
    }

    fn stop(mut self, bus: &Bus) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        assert!(
            wait_until(Duration::from_secs(20), || matches!(
                self.child.try_wait(),
                Ok(Some(_))
            )),
            "otpgated did not stop on SIGTERM"
        );
        assert!(wait_until(Duration::from_secs(10), || !bus.has_owner(proto::BUS_NAME)));
    }
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// docs/operations.md's way to seal the master key: `systemd-creds encrypt` of the
/// existing key file under the credential name the daemon looks for. What
/// systemd then hands the service (`LoadCredentialEncrypted=` decrypts into
/// $CREDENTIALS_DIRECTORY) is the key the daemon uses, without a key file,
/// and it is the same key: enrolments made with it open with the old file.
/// A private host secret (SYSTEMD_CREDENTIAL_SECRET) keeps the machine's own
/// untouched; that command lets systemd pick the TPM2 when present.
#[test]
fn key_sealed_with_systemd_creds_is_the_key_the_daemon_uses() {
    let dir = TestDir::new("pkg-creds");
    let key = dir.join("master.key");
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut fs::File::open("/dev/urandom").expect("urandom"),
        &mut bytes,
    )
    .expect("random key");
    fs::write(&key, bytes).expect("key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).expect("chmod key");
    let sealed = dir.join("master.key.cred");
    let secret = dir.join("host.secret");
    let creds = |args: &[&str]| {
        let (ok, out, err) = output(
            Command::new("systemd-creds")
                .args(args)
                .env("SYSTEMD_CREDENTIAL_SECRET", &secret),
        );
        assert!(ok, "systemd-creds {args:?}: {out}{err}");
    };
    creds(&[
        "encrypt",
        "--with-key=host",
        "--name=otpgate-master-key",
        &key.display().to_string(),
        &sealed.display().to_string(),
    ]);
    assert!(
        !fs::read(&sealed)
            .expect("sealed")
            .windows(32)
            .any(|w| w == bytes),
        "the credential holds the key in clear"
    );
    // What systemd does for LoadCredentialEncrypted= at service start.
    let cred_dir = dir.join("credentials");
    fs::create_dir(&cred_dir).expect("credentials dir");
    fs::set_permissions(&cred_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    creds(&[
        "decrypt",
        "--name=otpgate-master-key",
        &sealed.display().to_string(),
        &cred_dir.join("otpgate-master-key").display().to_string(),
    ]);

    let bus = Bus::start();
    let state = dir.join("state");
    let config_with = |key_file: &Path| {
        let c = dir.join("otpgate.toml");
        fs::write(
            &c,
            format!(
                "[pam]\nsocket = \"\"\n\n[storage]\npath = \"{}\"\nkey_file = \"{}\"\n",
                state.display(),
                key_file.display()
            ),
        )
        .expect("config");
        c
    };
    // The key file is gone (docs/operations.md removes it after sealing).
    let no_file = dir.join("removed.key");
    let d = OwnDaemon::start(
        &bus,
        &config_with(&no_file),
        &[("CREDENTIALS_DIRECTORY", &cred_dir)],
    );
    let user = test_user("otpgpkgcreds");
    let e = enroll(&bus, &user.name);
    assert!(
        !no_file.exists(),
        "with the credential the daemon still made a key file"
    );
    d.stop(&bus);

    // The same enrolment, read with the original key file.
    let d = OwnDaemon::start(&bus, &config_with(&key), &[]);
    let status = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(status["enrolled"], true, "{status}");
    let (r, _) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "ok");
    d.stop(&bus);
}
