//! One otpgated per state directory: a second one started by hand on the
//! same configuration leaves at once, says who holds the directory, and
//! changes nothing in it, even where the bus name would not have stopped it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use otpgate_tests::*;

const PERIOD: u64 = 30;

/// Every path under `dir` (and `dir` itself) with its mtime and, for
/// files, its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, i64, i64, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let m = fs::metadata(&d).expect("stat dir");
        out.push((d.clone(), m.mtime(), m.mtime_nsec(), None));
        for entry in fs::read_dir(&d).expect("read dir").flatten() {
            let m = entry.metadata().expect("stat");
            if m.is_dir() {
                todo.push(entry.path());
            } else {
                let bytes = fs::read(entry.path()).expect("read state file");
                out.push((entry.path(), m.mtime(), m.mtime_nsec(), Some(bytes)));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_daemon_on_the_same_state_leaves_at_once_and_touches_nothing() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let user = test_user("otpgd-single");
    let e = enroll(&bus, &user.name);
    // The journal holds the enrolment: a second daemon that got as far as
    // opening the store would replay it and raise the journal's generation.
    let before = snapshot(&d.state_dir);
    assert!(
        before.iter().any(|(p, ..)| p.ends_with("journal")),
        "{before:?}"
    );

    // Another private bus: the bus name cannot be what stops it.
    let other_bus = Bus::start();
    let err_path = d.dir.join("second.stderr");
    let mut second = Command::new(bin("otpgated"))
        .arg("--config")
        .arg(&d.config)
        .arg("--bus")
        .arg(&other_bus.address)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start a second otpgated");
    let second_pid = second.id() as i32;
    let mut status = None;
    wait_until(START_DEADLINE, || {
        status = second.try_wait().expect("wait");
        status.is_some()
    });
    let Some(status) = status else {
        let took_name = other_bus.has_owner(proto::BUS_NAME);
        let changed = before != snapshot(&d.state_dir);
        let _ = kill(Pid::from_raw(second_pid), Signal::SIGKILL);
        let _ = second.wait();
        panic!(
            "a second otpgated on {} was still running after {START_DEADLINE:?} \
             (took the name on the other bus: {took_name}, changed the state directory: {changed})",
            d.state_dir.display(),
        );
    };
    let stderr = fs::read_to_string(&err_path).expect("read stderr");
    assert!(!status.success(), "{status:?}: {stderr}");
    let expected = format!(
        "another otpgated (pid {}) is already using {}; stop it first",
        d.pid,
        d.state_dir.display()
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(&expected), "{stderr:?}");
    assert!(!other_bus.has_owner(proto::BUS_NAME));
    assert!(
        before == snapshot(&d.state_dir),
        "the refused daemon changed the state directory"
    );

    // Checking the configuration needs no lock.
    let check = output_within(
        Command::new(bin("otpgated"))
            .arg("--check-config")
            .arg("--config")
            .arg(&d.config),
        CALL_DEADLINE,
    );
    assert!(check.status.success(), "{check:?}");

    // The first daemon is unharmed.
    assert!(d.alive());
    let (r, info) = verify(
        &bus,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + PERIOD),
    );
    assert_eq!(r, "ok", "{info}");

    // A crash leaves no stale lock: the kernel drops the flock with it.
    d.kill();
    d.restart(&bus);
    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "ok", "{info}");
}
