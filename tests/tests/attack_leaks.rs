//! Leaks: the TOTP secret, in any encoding, is in no
//! state file, no log line, no error text and no reply other than the
//! enrolment's; not in the arguments or environment of otpgated or the
//! otpgate CLI; the daemon writes no core dump; the key and the state are
//! root's alone; Status and ListUsers carry no secret and no hash.

mod attack_common;
mod cli_common;
mod pam_common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use attack_common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use otpgate_tests::leaks::{find_leaks, forms};
use otpgate_tests::*;
use serde_json::Value;

/// Keeps the text of an error reply.
fn note<T>(errors: &mut Vec<(String, String)>, what: &str, r: Reply<T>) {
    if let Reply::Refused(err) = r {
        errors.push((what.to_string(), format!("{}: {}", err.error_name(), err)));
    }
}

fn proc_file(pid: i32, name: &str) -> Vec<u8> {
    fs::read(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

/// A code that is a whole word of `text` (not a piece of a longer number).
fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .any(|w| w == word)
}

#[test]
fn the_secret_is_in_no_file_log_error_or_reply() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "[lockout]\nmax_failures = 3\n");
    let c = Client::connect(&bus.address);
    let alice = test_user("otpga-leak-alice");
    let bob = test_user("otpga-leak-bob");
    let carol = test_user("otpga-leak-carol");
    let e = enroll(&bus, &alice.name);
    let mut typed: Vec<String> = Vec::new();
    let mut errors: Vec<(String, String)> = Vec::new();

    // Everything that writes a record or a log line, and every error.
    let ok_code = oathtool_at(&e.secret, e.confirmed_at + PERIOD);
    typed.push(ok_code.clone());
    assert_eq!(c.verify(&alice.name, &ok_code).answer().0, "ok");
    note(&mut errors, "replay", c.verify(&alice.name, &ok_code));
    let wrong = otpgate_tests::wrong_code(&e.secret);
    typed.push(wrong.clone());
    for _ in 0..3 {
        c.verify(&alice.name, &wrong).answer();
    }
    assert_eq!(c.verify(&alice.name, &wrong).answer().0, "locked");
    c.unlock(&alice.name).answer();
    typed.push(e.backup_codes[0].clone());
    assert_eq!(c.verify(&alice.name, &e.backup_codes[0]).answer().0, "ok");
    let new_codes = c.regenerate(&alice.name).answer();
    match c.enroll(&alice.name) {
        Reply::Refused(err) => errors.push(("enroll again".into(), err.to_string())),
        other => panic!("{other:?}"),
    }
    // Bob: a pending enrolment, and a wrong confirmation.
    let pending = c.enroll(&bob.name).answer();
    let bob_secret = otpgate_proto::dict_str(&pending, "secret").expect("secret");
    let bob_wrong = otpgate_tests::wrong_code(&bob_secret);
    match c.confirm(&bob.name, &bob_wrong) {
        Reply::Refused(err) => errors.push(("confirm wrong".into(), err.to_string())),
        other => panic!("{other:?}"),
    }
    // Carol: imported from google-authenticator; then a damaged file whose
    // secret is refused.
    let carol_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEH";
    let ga = format!(
        "{carol_secret}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" TOTP_AUTH\n31415926\n27182818\n"
    );
    let imp = classify(zruntime::block_on(c.admin.import(&carol.name, &ga)));
    imp.answer();
    let damaged_secret = "KRSXG5CTMVRXEZLUKRSXG5CT";
    for (what, text) in [
        (
            "import: bad option",
            format!("{damaged_secret}\n\" FROBNICATE {damaged_secret}\n\" TOTP_AUTH\n"),
        ),
        (
            "import: secret on a later line",
            format!("\" TOTP_AUTH\n{damaged_secret}\n"),
        ),
        (
            "import: HOTP",
            format!("{damaged_secret}\n\" HOTP_COUNTER 1\n"),
        ),
        (
            "import: bad scratch",
            format!("{damaged_secret}\n\" TOTP_AUTH\n1234567{damaged_secret}\n"),
        ),
    ] {
        let r = classify(zruntime::block_on(c.admin.import(&bob.name, &text)));
        match r {
            Reply::Refused(err) => errors.push((what.into(), err.to_string())),
            other => panic!("{what}: {other:?}"),
        }
    }
    // Corrupt records: a copy of alice's under another name, a truncated one.
    let dave = "otpga-leak-dave";
    let erin = "otpga-leak-erin";
    // The records' files are written at a checkpoint, which a clean stop
    // makes; the files read below are then the whole state.
    d.restart(&bus);
    let alice_rec = fs::read(d.record_path(&alice.name)).expect("alice's record");
    fs::write(d.record_path(dave), &alice_rec).expect("copy");
    fs::write(d.record_path(erin), &alice_rec[..alice_rec.len() / 2]).expect("truncate");
    for u in [dave, erin] {
        note(&mut errors, "verify corrupt", c.verify(u, "123456"));
        match c.status(u) {
            Reply::Refused(err) => errors.push(("status corrupt".into(), err.to_string())),
            Reply::Answer(a) => errors.push(("status corrupt".into(), format!("{a:?}"))),
            other => panic!("{other:?}"),
        }
    }
    note(&mut errors, "bad name", c.verify("../x", "123456"));
    assert!(!errors.is_empty());

    // Replies of the read-only calls.
    let mut replies: Vec<(String, Vec<u8>)> = Vec::new();
    for u in [&alice.name, &bob.name, &carol.name] {
        replies.push((
            format!("Status({u})"),
            format!("{:?}", c.status(u).answer()).into_bytes(),
        ));
    }
    let list = c.list_users().answer();
    replies.push(("ListUsers".into(), format!("{list:?}").into_bytes()));
    let stats = zruntime::block_on(c.admin.stats()).expect("stats");
    replies.push(("Stats".into(), format!("{stats:?}").into_bytes()));

    // What to look for: three secrets, in every form.
    let secrets = vec![
        (alice.name.clone(), forms(&e.secret)),
        (bob.name.clone(), forms(&bob_secret)),
        (carol.name.clone(), forms(carol_secret)),
        ("the damaged import".to_string(), forms(damaged_secret)),
    ];
    let pid = d.pid;
    let mut haystacks: Vec<(String, Vec<u8>)> = file_contents(&d.dir.path)
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n != "otpgate.toml"))
        .map(|(p, b)| (p.display().to_string(), b))
        .collect();
    haystacks.extend(
        errors
            .iter()
            .map(|(w, m)| (format!("error text of {w}"), m.clone().into_bytes())),
    );
    haystacks.extend(replies.iter().cloned());
    haystacks.push(("otpgated's /proc cmdline".into(), proc_file(pid, "cmdline")));
    haystacks.push(("otpgated's /proc environ".into(), proc_file(pid, "environ")));
    let leaks = find_leaks(&secrets, &haystacks);
    assert!(leaks.is_empty(), "{leaks:#?}");

    // Backup codes (hashed at rest) and typed codes are not written either.
    let log = d.log();
    let mut files_text = String::new();
    for (p, b) in file_contents(&d.state_dir) {
        files_text.push_str(&format!(
            "{}\n{}\n",
            p.display(),
            String::from_utf8_lossy(&b)
        ));
    }
    let imported_scratch = ["31415926", "27182818"];
    for code in e
        .backup_codes
        .iter()
        .chain(new_codes.iter())
        .map(String::as_str)
        .chain(imported_scratch)
    {
        let plain = code.replace('-', "");
        for text in [&log, &files_text] {
            assert!(
                !text.contains(code) && !text.contains(&plain),
                "backup code {code} written"
            );
        }
        for (w, m) in &errors {
            assert!(!m.contains(code), "{w}: {m}");
        }
    }
    for code in &typed {
        assert!(!has_word(&log, code), "typed code {code} in the log");
        for (w, m) in &errors {
            assert!(!has_word(m, code), "{w}: {m}");
        }
    }
    assert!(!log.contains(&bob_wrong));

    // Status and ListUsers carry no hash and no sealed secret: none of the
    // records' base64 strings.
    let mut stored: Vec<String> = Vec::new();
    for u in [&alice.name, &bob.name, &carol.name] {
        let rec: Value =
            serde_json::from_slice(&fs::read(d.record_path(u)).expect("record")).expect("json");
        for f in rec["factors"].as_array().into_iter().flatten() {
            collect_strings(&f["secret"], &mut stored);
        }
        collect_strings(&rec["pending"]["factor"]["secret"], &mut stored);
        collect_strings(&rec["backup"], &mut stored);
    }
    stored.retain(|s| s.len() >= 16);
    assert!(stored.len() >= 10, "{stored:?}");
    for (what, bytes) in &replies {
        let text = String::from_utf8_lossy(bytes);
        for s in &stored {
            assert!(!text.contains(s.as_str()), "{what} carries {s}");
        }
    }

    let syslog = if Path::new("/dev/log").exists() {
        "/dev/log exists: the daemon also logged there (its stderr mirror was checked)"
    } else {
        "/dev/log does not exist here: syslog lines went to stderr only, which was checked"
    };
    eprintln!(
        "attack_leaks: {} secret forms of {} secrets looked for in {} places ({} files, {} error texts, \
         {} replies, otpgated's cmdline and environ): no leak; {} backup/scratch codes and {} typed \
         codes absent from the log, the state and the errors; {} stored base64 strings absent from \
         Status/ListUsers/Stats; {syslog}",
        secrets.iter().map(|(_, f)| f.len()).sum::<usize>(),
        secrets.len(),
        haystacks.len(),
        haystacks.len() - errors.len() - replies.len() - 2,
        errors.len(),
        replies.len(),
        e.backup_codes.len() + new_codes.len() + imported_scratch.len(),
        typed.len(),
        stored.len(),
    );
    for (w, m) in &errors {
        eprintln!("attack_leaks error text ({w}): {m}");
    }
    assert!(d.alive());
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// The pid of the running `otpgate` CLI whose arguments contain `needle`.
fn cli_pid(needle: &str) -> Option<i32> {
    let exe = fs::canonicalize(bin("otpgate")).ok()?;
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let this = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let args = proc_file(pid, "cmdline");
        (this == exe && contains(&args, needle.as_bytes())).then_some(pid)
    })
}

#[test]
fn the_cli_keeps_the_secret_out_of_its_arguments_and_environment() {
    let bus = Bus::start();
    let d = Daemon::start(&bus, "");
    let u = test_user("otpga-leak-cli");
    let v = test_user("otpga-leak-cli2");

    // Interactive enrolment: the CLI holds the secret while it waits for
    // the confirming code.
    let mut tty =
        cli_common::TtySession::start(&bus, cli_common::As::Root, &["enroll", "--user", &u.name]);
    let shown = tty.wait_for("Code from the app", 1);
    let secret = shown
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("the URI's secret")
        .to_string();
    let pid = poll(Duration::from_secs(10), || cli_pid(&u.name)).expect("the otpgate process");
    let secrets = vec![(u.name.clone(), forms(&secret))];
    let mut places = vec![
        (
            "otpgate enroll cmdline".to_string(),
            proc_file(pid, "cmdline"),
        ),
        (
            "otpgate enroll environ".to_string(),
            proc_file(pid, "environ"),
        ),
        ("otpgated cmdline".to_string(), proc_file(d.pid, "cmdline")),
        ("otpgated environ".to_string(), proc_file(d.pid, "environ")),
    ];
    tty.type_line(&oathtool_now(&secret));
    let (code, _) = tty.finish();
    assert_eq!(code, 0);

    // `otpgate confirm` caught while the daemon is stopped mid-call: its
    // arguments hold the one-time code (the CLI's documented syntax), never
    // the secret.
    let out = cli_common::otpgate(
        &bus,
        cli_common::As::Root,
        &["enroll", "--json", "--user", &v.name],
    );
    let v_secret = out.json()["secret"].as_str().expect("secret").to_string();
    let code = oathtool_now(&v_secret);
    let confirm = {
        let _stopped = pam_common::Stopped::stop(d.pid);
        let child = Command::new(bin("otpgate"))
            .args(["confirm", "--user", &v.name, &code])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("otpgate confirm");
        let guard = pam_common::ChildGuard(Some(child.id()));
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(300));
        places.push(("otpgate confirm cmdline".into(), proc_file(pid, "cmdline")));
        places.push(("otpgate confirm environ".into(), proc_file(pid, "environ")));
        (child, guard)
    };
    let (child, mut guard) = confirm;
    let out = child_output_within(child, Duration::from_secs(60), "otpgate confirm");
    guard.0 = None;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut secrets = secrets;
    secrets.push((v.name.clone(), forms(&v_secret)));
    let leaks = find_leaks(&secrets, &places);
    assert!(leaks.is_empty(), "{leaks:#?}");
    eprintln!(
        "attack_leaks cli: {} places (interactive enrol waiting for its code, confirm in flight, \
         otpgated) hold no form of either secret",
        places.len()
    );
}

/// Starts otpgated by hand with the core limit raised first, in `dir` as
/// its working directory, so that only the daemon's own hardening can keep
/// a core from being written there.
fn daemon_with_core_limit(bus: &Bus, dir: &TestDir) -> Child {
    let config = dir.join("otpgate.toml");
    fs::write(
        &config,
        format!(
            "[pam]\nsocket = \"\"\n\n[storage]\npath = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("state").display(),
            dir.join("master.key").display()
        ),
    )
    .expect("config");
    let child = Command::new("sh")
        .args(["-c", "ulimit -c unlimited && exec \"$0\" \"$@\""])
        .arg(bin("otpgated"))
        .arg("--config")
        .arg(&config)
        .arg("--bus")
        .arg(&bus.address)
        .current_dir(&dir.path)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start otpgated");
    if !wait_until(START_DEADLINE, || bus.has_owner(otpgate_proto::BUS_NAME)) {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        panic!("otpgated did not start");
    }
    child
}

fn cores_in(dir: &Path) -> Vec<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("core"))
        })
        .collect()
}

#[test]
fn the_daemon_writes_no_core_dump() {
    let pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let pattern = pattern.trim();
    let files_land_in_cwd = !pattern.starts_with('|') && !pattern.starts_with('/');

    // Control: an ordinary process started the same way dumps a core, so
    // the absence of the daemon's is the daemon's doing.
    let ctl = TestDir::new("core-control");
    let child = Command::new("sh")
        .args(["-c", "ulimit -c unlimited && exec sleep 60"])
        .current_dir(&ctl.path)
        .spawn()
        .expect("sleep");
    let guard = pam_common::ChildGuard(Some(child.id()));
    std::thread::sleep(Duration::from_millis(200));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGSEGV).expect("SIGSEGV");
    let st = child_output_within(child, Duration::from_secs(30), "the control process").status;
    drop(guard);
    let control_dumped = st.core_dumped();
    let control_files = cores_in(&ctl.path);

    let mut results = Vec::new();
    for sig in [Signal::SIGSEGV, Signal::SIGABRT] {
        let bus = Bus::start();
        let dir = TestDir::new("core-daemon");
        let child = daemon_with_core_limit(&bus, &dir);
        let pid = child.id() as i32;
        let guard = pam_common::ChildGuard(Some(child.id()));
        // Work that puts a secret in its memory.
        let u = test_user("otpga-leak-core");
        enroll(&bus, &u.name);
        let limits = String::from_utf8_lossy(&proc_file(pid, "limits")).into_owned();
        let core_line = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .expect("limits line")
            .to_string();
        let fields: Vec<&str> = core_line.split_whitespace().collect();
        assert_eq!(&fields[4..6], ["0", "0"], "{core_line}");
        // Rust's runtime catches the first SIGSEGV (its stack-overflow
        // check), finds no fault and restores the default action: a
        // second one, as a repeated fault would, ends the process.
        let mut child = child;
        let mut sent = 0;
        while sent < 5 && child.try_wait().expect("wait").is_none() {
            kill(Pid::from_raw(pid), sig).expect("signal");
            sent += 1;
            wait_until(Duration::from_secs(2), || {
                !Path::new(&format!("/proc/{pid}/stat")).exists()
                    || fs::read_to_string(format!("/proc/{pid}/stat"))
                        .unwrap_or_default()
                        .contains(") Z ")
            });
        }
        let st = child_output_within(child, Duration::from_secs(30), "otpgated").status;
        drop(guard);
        assert_eq!(st.signal(), Some(sig as i32), "{st:?}");
        assert!(
            !st.core_dumped(),
            "{sig}: the kernel dumped otpgated's core"
        );
        let cores = cores_in(&dir.path);
        assert!(cores.is_empty(), "{sig}: {cores:?}");
        results.push(format!("{sig} (sent {sent}x): no core ({core_line})"));
    }
    eprintln!(
        "attack_leaks core: core_pattern {pattern:?}; control `sleep` with ulimit -c unlimited: \
         core dumped = {control_dumped}, files {control_files:?}; otpgated started the same way: {results:?}"
    );
    if files_land_in_cwd {
        assert!(
            control_dumped && !control_files.is_empty(),
            "the control wrote no core: this machine cannot show the difference"
        );
    }
}

#[test]
fn the_key_and_the_state_are_root_only() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let u = test_user("otpga-leak-perm");
    enroll(&bus, &u.name);
    // The record's file is written at a checkpoint: a clean stop makes one,
    // so there is a record file to be refused.
    d.restart(&bus);
    assert!(d.record_path(&u.name).exists());
    let outsider = test_user("otpga-leak-outsider");

    let key = fs::metadata(&d.key_file).expect("key");
    assert_eq!((key.uid(), key.mode() & 0o7777), (0, 0o400), "key file");
    for dir in [d.state_dir.clone(), d.state_dir.join("users")] {
        let m = fs::metadata(&dir).expect("dir");
        assert_eq!(
            (m.uid(), m.mode() & 0o7777),
            (0, 0o700),
            "{}",
            dir.display()
        );
    }
    let mut tried = 0;
    let mut paths = tree(&d.state_dir);
    paths.push(d.state_dir.clone());
    paths.push(d.key_file.clone());
    for p in &paths {
        let m = fs::symlink_metadata(p).expect("meta");
        if m.is_file() {
            assert_eq!(m.mode() & 0o077, 0, "{} is open to others", p.display());
        }
        let (prog, args): (&str, Vec<&str>) = if m.is_dir() {
            ("ls", vec!["-a"])
        } else {
            ("cat", vec![])
        };
        let out = output_within(
            Command::new("setpriv")
                .arg(format!("--reuid={}", outsider.uid))
                .arg(format!("--regid={}", outsider.gid))
                .arg("--init-groups")
                .arg("--")
                .arg(prog)
                .args(&args)
                .arg(p),
            Duration::from_secs(20),
        );
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{} {} as {}: {:?}",
            prog,
            p.display(),
            outsider.name,
            out
        );
        tried += 1;
    }
    // Its own user is no better off.
    let out = output_within(
        Command::new("setpriv")
            .arg(format!("--reuid={}", u.uid))
            .arg(format!("--regid={}", u.gid))
            .arg("--init-groups")
            .arg("--")
            .arg("cat")
            .arg(d.record_path(&u.name)),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    eprintln!(
        "attack_leaks perms: key 0400 root, state and users 0700 root, records 0600; {tried} paths \
         refused to an ordinary user (and the record to its own user)"
    );
}
