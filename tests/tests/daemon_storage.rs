//! State at rest and what the daemon does with bad state, bad names and bad
//! configuration, against the real otpgated binary.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use otpgate_tests::*;
use serde_json::Value;

const PERIOD: u64 = 30;
const CORRUPT: &str = "org.otpgate.Otpgate1.Error.CorruptRecord";
const INVALID_USER: &str = "org.otpgate.Otpgate1.Error.InvalidUser";

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("read dir").flatten() {
            let ft = entry.file_type().expect("file type");
            if ft.is_dir() {
                todo.push(entry.path());
            } else if ft.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Every path under `dir` (files and directories), for before/after checks.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("read dir").flatten() {
            if entry.file_type().expect("file type").is_dir() {
                todo.push(entry.path());
            }
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs a coreutils filter with `input` on stdin.
fn filter(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let out = Run::new(Command::new(program).args(args))
        .input(input)
        .within(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn otpgated(args: &[&str]) -> Output {
    let child = Command::new(bin("otpgated"))
        .args(args)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start otpgated");
    child_output_within(child, Duration::from_secs(20), "otpgated")
}

fn write_config(dir: &TestDir, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write config");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod config");
    p
}

fn storage_section(dir: &TestDir) -> String {
    format!(
        "[storage]\npath = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("state").display(),
        dir.join("master.key").display()
    )
}

fn verify_err(bus: &Bus, user: &str, code: &str) -> CallResult {
    call(bus, "Auth", "Verify", &[user, code])
}

#[test]
fn state_at_rest_is_private_and_holds_no_secret_in_the_clear() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let user = test_user("otpgd-st-rest");
    let e = enroll(&bus, &user.name);
    let (r, info) = verify(
        &bus,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + PERIOD),
    );
    assert_eq!(r, "ok", "{info}");
    // A second user left pending: its sealed secret is on disk too.
    let pending_user = test_user("otpgd-st-rest2");
    let pending = call(&bus, "Manager", "Enroll", &[&pending_user.name]).ok();
    let pending_secret = pending["secret"].as_str().expect("secret").to_string();
    // A save is a journal entry; the records' files are written at a
    // checkpoint, which a clean stop makes.
    d.restart(&bus);

    assert_eq!(mode(&d.state_dir), 0o700);
    assert_eq!(mode(&d.state_dir.join("users")), 0o700);
    let key = fs::metadata(&d.key_file).expect("key file");
    assert_eq!(key.mode() & 0o7777, 0o400, "key file mode");
    assert_eq!(key.len(), 32, "key file length");
    assert_eq!(key.uid(), 0);
    let files = files_under(&d.state_dir);
    assert!(files.contains(&d.record_path(&user.name)), "{files:?}");
    assert!(
        files.contains(&d.record_path(&pending_user.name)),
        "{files:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
        assert_eq!(fs::metadata(f).unwrap().uid(), 0, "{}", f.display());
    }

    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for secret in [&e.secret, &pending_secret] {
        let padded = format!("{secret}{}", "=".repeat((8 - secret.len() % 8) % 8));
        let raw = filter("base32", &["-d"], padded.as_bytes());
        assert_eq!(raw.len(), 20, "a 160-bit secret");
        let b64 = filter("base64", &["-w0"], &raw);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        needles.push(("base32".into(), secret.as_bytes().to_vec()));
        needles.push(("base32 lower".into(), secret.to_lowercase().into_bytes()));
        needles.push(("raw".into(), raw));
        needles.push(("base64".into(), b64));
        needles.push(("hex".into(), hex.into_bytes()));
    }
    for c in &e.backup_codes {
        needles.push(("backup code".into(), c.as_bytes().to_vec()));
        needles.push(("backup code".into(), c.replace('-', "").into_bytes()));
    }
    let mut scanned = files.clone();
    scanned.push(d.key_file.clone());
    for f in &scanned {
        let bytes = fs::read(f).expect("read state file");
        for (what, needle) in &needles {
            assert!(
                !contains(&bytes, needle),
                "{} holds a secret ({what})",
                f.display()
            );
        }
    }
}

#[test]
fn a_record_copied_onto_another_user_does_not_open() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let x = test_user("otpgd-st-copyx");
    let y = test_user("otpgd-st-copyy");
    let e = enroll(&bus, &x.name);
    // x's file is written at a checkpoint, which a clean stop makes.
    d.restart(&bus);
    let x_next = oathtool_at(&e.secret, e.confirmed_at + PERIOD);
    let original = fs::read(d.record_path(&x.name)).expect("x's record");

    // (a) As is: the record names x.
    fs::write(d.record_path(&y.name), &original).expect("copy");
    fs::set_permissions(d.record_path(&y.name), fs::Permissions::from_mode(0o600)).unwrap();
    let r = verify_err(&bus, &y.name, &x_next);
    assert_eq!(r.err_name(), Some(CORRUPT), "{r:?}");
    let r = verify_err(&bus, &y.name, &e.backup_codes[0]);
    assert_eq!(r.err_name(), Some(CORRUPT), "{r:?}");
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("event=storage-error") && l.contains(&format!("user={}", y.name))),
        "the log names the user: {log}"
    );

    // (b) The key field edited to y's: the AEAD's associated data still
    // binds the sealed secret to x.
    let mut rec: Value = serde_json::from_slice(&original).expect("record is JSON");
    let y_key = d
        .record_path(&y.name)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("y's key")
        .to_string();
    rec["user"] = Value::from(y_key.as_str());
    fs::write(
        d.record_path(&y.name),
        serde_json::to_vec_pretty(&rec).unwrap(),
    )
    .expect("write edited copy");
    let r = verify_err(&bus, &y.name, &x_next);
    assert_eq!(r.err_name(), Some(CORRUPT), "{r:?}");
    // x's backup codes are bound to x as well: for y they are no codes.
    let (r, info) = verify(&bus, &y.name, &e.backup_codes[0]);
    assert_ne!(r, "ok", "x's backup code let y in: {info}");

    // x is untouched by all this.
    let (r, info) = verify(&bus, &x.name, &x_next);
    assert_eq!(r, "ok", "{info}");
    let (r, info) = verify(&bus, &x.name, &e.backup_codes[0]);
    assert_eq!(r, "ok", "{info}");
    assert_eq!(info["backup_codes_left"], 9, "{info}");
}

#[test]
fn a_corrupt_record_is_an_error_for_that_user_only() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let good = test_user("otpgd-st-good");
    let bad = test_user("otpgd-st-bad");
    let e = enroll(&bus, &good.name);
    enroll(&bus, &bad.name);
    // Written to its file by the checkpoint of a clean stop: with no newer
    // change held by the daemon, the file is what it reads.
    d.restart(&bus);
    fs::write(
        d.record_path(&bad.name),
        b"\x00\xffnot a record\x13\x37{\"user\":",
    )
    .expect("corrupt the record");

    let r = verify_err(&bus, &bad.name, "123456");
    assert_eq!(r.err_name(), Some(CORRUPT), "{r:?}");
    let r = call(&bus, "Auth", "Challenge", &[&bad.name]);
    assert_eq!(r.err_name(), Some(CORRUPT), "{r:?}");
    let r = call(&bus, "Manager", "Status", &[&bad.name]);
    assert_eq!(r.err_name(), Some(CORRUPT), "{r:?}");
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("event=storage-error")
            && l.contains(&format!("user={}", bad.name))),
        "the log names the user: {log}"
    );

    let (r, info) = verify(
        &bus,
        &good.name,
        &oathtool_at(&e.secret, e.confirmed_at + PERIOD),
    );
    assert_eq!(r, "ok", "the others keep working: {info}");

    let list = call(&bus, "Admin", "ListUsers", &[]).ok();
    let entry = |name: &str| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|u| u["user"] == name)
            .cloned()
    };
    let b = entry(&bad.name).unwrap_or_else(|| panic!("{} not listed: {list}", bad.name));
    assert!(b["error"].as_str().is_some_and(|s| !s.is_empty()), "{b}");
    let g = entry(&good.name).unwrap_or_else(|| panic!("{} not listed: {list}", good.name));
    assert_eq!(g["enrolled"], true, "{g}");
    assert!(g.get("error").is_none(), "{g}");
    let stats = call(&bus, "Admin", "Stats", &[]).ok();
    assert_eq!(stats["users_enrolled"], 1, "{stats}");

    assert_eq!(call(&bus, "Admin", "Reset", &[&bad.name]).ok(), Value::Null);
    assert!(!d.record_path(&bad.name).exists());
    let (r, info) = verify(&bus, &bad.name, "123456");
    assert_eq!(r, "not-enrolled", "{info}");
    let list = call(&bus, "Admin", "ListUsers", &[]).ok();
    assert!(
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["user"] == bad.name.as_str()),
        "{list}"
    );
    // And it can enrol afresh.
    enroll(&bus, &bad.name);
}

#[test]
fn bad_user_names_are_refused_and_touch_nothing() {
    let bus = Bus::start();
    let d = Daemon::start(&bus, "");
    let nosuch = "otpgd-st-nosuch";
    assert!(nix::unistd::User::from_name(nosuch).unwrap().is_none());
    let r = call(&bus, "Manager", "Enroll", &[nosuch]);
    assert_eq!(r.err_name(), Some(INVALID_USER), "{r:?}");
    assert!(!d.record_path(nosuch).exists());

    let outside = std::env::temp_dir();
    let evil_outside = || {
        fs::read_dir(&outside)
            .expect("read temp dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("otpgd-st-evil"))
            .count()
    };
    let before = tree(&d.dir.path);
    let tmp_before = evil_outside();
    let bad = [
        "",
        ".",
        "..",
        "a/b",
        "../otpgd-st-evil",
        "../../otpgd-st-evil",
        "/tmp/otpgd-st-evil",
        "otpgd/../../../../tmp/otpgd-st-evil",
        "users/../otpgd-st-evil",
    ];
    for name in bad {
        for (iface, method, args) in [
            ("Manager", "Enroll", vec![name]),
            ("Manager", "Status", vec![name]),
            ("Manager", "Disable", vec![name, ""]),
            ("Auth", "Challenge", vec![name]),
            ("Auth", "Verify", vec![name, "123456"]),
            ("Admin", "Reset", vec![name]),
            ("Admin", "Unlock", vec![name]),
        ] {
            let r = call(&bus, iface, method, &args);
            assert_eq!(
                r.err_name(),
                Some(INVALID_USER),
                "{iface}.{method}({name:?}): {r:?}"
            );
        }
    }
    assert_eq!(
        tree(&d.dir.path),
        before,
        "nothing created in the daemon's dir"
    );
    assert_eq!(
        evil_outside(),
        tmp_before,
        "nothing created under {outside:?}"
    );
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = TestDir::new("check-config");
    let storage = storage_section(&dir);
    let good = write_config(
        &dir,
        "good.toml",
        &format!("{storage}\n[totp]\ndigits = 8\nwindow = 2\n\n[lockout]\nmax_failures = 3\n"),
    );
    let out = otpgated(&["--check-config", "--config", &good.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (name, text, key) in [
        ("digits.toml", "[totp]\ndigits = 4\n", "digits"),
        (
            "failures.toml",
            "[lockout]\nmax_failures = 0\n",
            "max_failures",
        ),
        ("window.toml", "[totp]\nwindow = 50\n", "window"),
        ("unknown.toml", "[totp]\ncolour = \"blue\"\n", "colour"),
        (
            "type.toml",
            "[lockout]\nduration_secs = \"long\"\n",
            "duration_secs",
        ),
    ] {
        let p = write_config(&dir, name, text);
        let out = otpgated(&["--check-config", "--config", &p.display().to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        let place = format!("{}:2:", p.display());
        assert!(err.contains(&place), "{name}: {err} should name {place}");
        assert!(err.contains(key), "{name}: {err} should name {key}");
    }
    assert!(
        !dir.join("state").exists(),
        "--check-config creates no state"
    );
}

#[test]
fn the_daemon_refuses_to_start_half_configured() {
    let bus = Bus::start();
    let start = |dir: &TestDir, config: &Path| {
        let out = otpgated(&[
            "--config",
            &config.display().to_string(),
            "--bus",
            &bus.address,
        ]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "started with {}: {err}",
            dir.path.display()
        );
        assert!(!bus.has_owner(otpgate_tests::proto::BUS_NAME));
        err
    };

    // A bad config.
    let dir = TestDir::new("refuse-config");
    let text = format!("{}\n[totp]\ndigits = 4\n", storage_section(&dir));
    let line = 1 + text.lines().position(|l| l == "digits = 4").unwrap();
    let c = write_config(&dir, "otpgate.toml", &text);
    let err = start(&dir, &c);
    let place = format!("{}:{line}:", c.display());
    assert!(err.contains("digits") && err.contains(&place), "{err}");
    assert!(!dir.join("state").exists(), "nothing half-started");

    // A key file others may read.
    let dir = TestDir::new("refuse-key");
    let c = write_config(&dir, "otpgate.toml", &storage_section(&dir));
    fs::write(dir.join("master.key"), [7u8; 32]).unwrap();
    fs::set_permissions(dir.join("master.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = start(&dir, &c);
    assert!(err.contains("master.key") && err.contains("0644"), "{err}");

    // A state "directory" that is a regular file.
    let dir = TestDir::new("refuse-state");
    let c = write_config(&dir, "otpgate.toml", &storage_section(&dir));
    fs::write(dir.join("state"), b"not a directory").unwrap();
    let err = start(&dir, &c);
    assert!(
        err.contains("state directory") && err.contains(&dir.join("state").display().to_string()),
        "{err}"
    );
}

/// A power cut after the answer: the users' files are renamed into place
/// without a flush of their own, so they may come back older than what was
/// answered. The journal was flushed before every answer and puts them
/// right at the next start.
#[test]
fn what_was_answered_survives_files_lost_in_a_power_cut() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let user = test_user("otpgd-st-power");
    let e = enroll(&bus, &user.name);
    // The file as enrolled, written by the checkpoint of a clean stop.
    d.restart(&bus);
    let as_enrolled = fs::read(d.record_path(&user.name)).expect("record");

    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "ok", "{info}");
    let (r, info) = verify(&bus, &user.name, &wrong_code(&e.secret));
    assert_eq!(r, "invalid", "{info}");

    // The cut: the daemon dies and the record is as it was at enrolment,
    // as if neither save had reached the disk.
    d.kill();
    fs::write(d.record_path(&user.name), &as_enrolled).expect("roll back");
    d.restart(&bus);

    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("event=journal") && l.contains("applied")),
        "the start says it wrote changes back: {log}"
    );
    let st = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(st["failures"], 1, "the counted failure is back: {st}");
    assert_eq!(st["backup_codes_left"], 9, "the used code is spent: {st}");
    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_ne!(r, "ok", "a used backup code worked again: {info}");
}

/// A clean stop (SIGTERM) checkpoints: the users' files are flushed and the
/// journal emptied, so the next start has nothing to apply and an older
/// otpgated, which knows no journal, would read the whole state.
#[test]
fn a_clean_stop_leaves_nothing_to_replay() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let user = test_user("otpgd-st-clean");
    let e = enroll(&bus, &user.name);
    let (r, info) = verify(&bus, &user.name, &wrong_code(&e.secret));
    assert_eq!(r, "invalid", "{info}");

    d.restart(&bus);
    let log = d.log();
    assert!(log.contains("event=stopped"), "{log}");
    assert!(!log.contains("event=checkpoint-failed"), "{log}");
    assert!(
        !log.contains("event=journal"),
        "nothing to apply after a clean stop: {log}"
    );
    let st = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(st["failures"], 1, "{st}");

    // The contrast: the same after SIGKILL has something to apply.
    let (r, info) = verify(&bus, &user.name, &wrong_code(&e.secret));
    assert_eq!(r, "invalid", "{info}");
    d.kill();
    d.restart(&bus);
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("event=journal") && l.contains("applied")),
        "{log}"
    );
}
