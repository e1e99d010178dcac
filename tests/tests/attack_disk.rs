//! Disk full and read-only: the state directory on a
//! small tmpfs of its own, filled up or remounted read-only under the
//! running daemon. A change that cannot be made durable is not answered as
//! done: `Verify` answers `org.otpgate.Otpgate1.Error.Storage`, which the
//! PAM module turns into a refusal; the daemon logs `event=storage-error`;
//! what was stored stays byte-identical, no temporary file is left; when
//! space returns the same daemon process works again.

mod attack_common;
mod pam_common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use attack_common::*;
use otpgate_proto::{dict_u32, ServiceError};
use otpgate_tests::*;
use pam_common::*;

const MSG_STORAGE: &str =
    "otpgate cannot reach its records (disk or database): second factor unavailable.";

/// A tmpfs mounted on `path` for the test; unmounted when dropped (lazily
/// if something still holds it).
struct Tmpfs {
    path: PathBuf,
}

fn run(cmd: &mut Command) -> std::process::Output {
    output_within(cmd, Duration::from_secs(20))
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        let out = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "otpgate-test",
            ])
            .arg(path));
        assert!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    fn remount(&self, opt: &str) {
        let out = run(Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.path));
        assert!(
            out.status.success(),
            "remount {opt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = run(Command::new("umount").arg(&self.path)).status.success();
        if !ok {
            let _ = run(Command::new("umount").arg("-l").arg(&self.path));
        }
    }
}

/// A daemon whose state directory is a fresh tmpfs of `size`. The mount
/// guard is returned first so that it drops after the daemon.
fn daemon_on_tmpfs(bus: &Bus, size: &str, extra: &str) -> (Tmpfs, Daemon) {
    let mut d = Daemon::start(bus, extra);
    d.stop();
    // The first start made the (empty) state directory; the tmpfs hides it.
    let mnt = Tmpfs::mount(&d.state_dir, size);
    d.restart(bus);
    (mnt, d)
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).expect("create filler");
    let chunk = vec![0x5au8; 64 * 1024];
    let err = loop {
        if let Err(e) = f.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // Proof that nothing more fits: one byte in a new file.
    let probe = dir.join("probe");
    let r = fs::File::create(&probe).and_then(|mut f| f.write_all(b"x").and_then(|_| f.sync_all()));
    let _ = fs::remove_file(&probe);
    assert!(r.is_err(), "the file system still takes a byte");
    p
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    file_contents(dir)
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n != "filler"))
        .collect()
}

fn expect_storage(r: Reply<(String, otpgate_proto::OwnedDict)>, what: &str) -> String {
    match r {
        Reply::Refused(ServiceError::Storage(m)) => m,
        other => panic!("{what}: expected the Storage error, got {other:?}"),
    }
}

struct Setup {
    d: Daemon,
    mnt: Option<Tmpfs>,
    bus: Bus,
    a: Enrolled,
    b: Enrolled,
    svc: String,
    _svc_file: EtcFile,
}

impl Drop for Setup {
    fn drop(&mut self) {
        // The daemon first, then the mount, then (Daemon's own drop) the
        // directory the mount was on.
        self.d.kill();
        self.mnt.take();
    }
}

fn setup(label: &str) -> Setup {
    require_root();
    let bus = Bus::start();
    let (mnt, d) = daemon_on_tmpfs(&bus, "512k", "[totp]\nwindow = 3\n");
    let a = enroll(&bus, &test_user(&format!("otpga-{label}-a")).name);
    let b = enroll(&bus, &test_user(&format!("otpga-{label}-b")).name);
    // A success, so that a's record has a used step and a day's counters.
    let (r, info) = verify(
        &bus,
        &a.user,
        &oathtool_at(&a.secret, a.confirmed_at + PERIOD),
    );
    assert_eq!(r, "ok", "{info}");
    let (svc, svc_file) = etc_pam_service(label, &module_line(&bus.module_args()));
    Setup {
        d,
        mnt: Some(mnt),
        bus,
        a,
        b,
        svc,
        _svc_file: svc_file,
    }
}

/// Everything that must hold while the state cannot be written.
fn while_unwritable(s: &mut Setup, reason: &str) -> (String, String) {
    let client = Client::connect(&s.bus.address);
    let before = snapshot(&s.d.state_dir);
    let pid = s.d.pid;
    // Two steps ahead of the confirmation: unused, inside window 3.
    let right_a = oathtool_at(&s.a.secret, s.a.confirmed_at + 2 * PERIOD);
    let right_b = oathtool_at(&s.b.secret, s.b.confirmed_at + PERIOD);
    let wrong_a = wrong_code(&s.a.secret);

    let m = expect_storage(client.verify(&s.a.user, &right_a), "right code");
    assert!(m.contains("nothing was changed"), "{m}");
    assert!(!m.contains(&right_a), "the code is not echoed: {m}");
    // A wrong code that cannot be counted is not answered `invalid`.
    expect_storage(client.verify(&s.a.user, &wrong_a), "wrong code");
    expect_storage(client.verify(&s.a.user, &wrong_a), "wrong code again");
    // Another user, a backup code (argon2, then the save fails).
    expect_storage(client.verify(&s.b.user, &right_b), "other user");
    expect_storage(
        client.verify(&s.b.user, &s.b.backup_codes[0]),
        "backup code",
    );
    // Enrolment needs a write too.
    let c = test_user("otpga-disk-c");
    match client.enroll(&c.name) {
        Reply::Refused(ServiceError::Storage(_)) => {}
        other => panic!("Enroll on an unwritable disk: {other:?}"),
    }
    // Reads still work, and nothing was counted.
    let st = client.status(&s.a.user).answer();
    assert_eq!(dict_u32(&st, "failures"), Some(0), "{st:?}");

    // Through PAM: a refusal, with the line the module shows for it.
    let o = pamtester(&s.svc, &s.b.user, &right_b);
    assert!(!o.success, "{o:#?}");
    assert!(o.says(AUTHINFO_UNAVAIL) && o.says(MSG_STORAGE), "{o:#?}");

    // Why, in the log; the stored state untouched; no debris.
    let log = s.d.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("event=storage-error"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(reason)
            && l.contains(&format!("user={}", s.a.user))
            && l.contains(&s.d.record_path(&s.a.user).display().to_string())),
        "no storage-error line naming the user, the record and {reason:?}:\n{log}"
    );
    assert!(!log.contains(&right_a) && !log.contains(&wrong_a));
    let after = snapshot(&s.d.state_dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert!(before == after, "a stored record changed");
    assert!(temp_files(&s.d.state_dir).is_empty());
    assert!(
        s.d.alive() && s.d.pid == pid,
        "the daemon died or restarted"
    );
    eprintln!(
        "attack_disk ({reason}): {} storage-error log lines, {} files byte-identical, pamtester: {}",
        lines.len(),
        after.len(),
        o.all().lines().collect::<Vec<_>>().join(" | ")
    );
    (right_a, wrong_a)
}

/// After space (or write access) returns: the same process works again.
fn recovers(s: &mut Setup, right_a: &str, wrong_a: &str) {
    let pid = s.d.pid;
    let started_lines = s.d.log().matches("event=started").count();
    let client = Client::connect(&s.bus.address);
    // The code refused with Storage was never marked used: it works now,
    // once.
    let (r, info) = client.verify(&s.a.user, right_a).answer();
    assert_eq!(r, "ok", "{info:?}");
    let (r, _) = client.verify(&s.a.user, right_a).answer();
    assert_eq!(r, "replayed");
    let (r, info) = client.verify(&s.a.user, wrong_a).answer();
    assert_eq!(r, "invalid");
    assert_eq!(dict_u32(&info, "attempts_left"), Some(3), "{info:?}");
    let o = pamtester(
        &s.svc,
        &s.b.user,
        &oathtool_at(&s.b.secret, s.b.confirmed_at + PERIOD),
    );
    assert!(o.success && o.says(SUCCESS), "{o:#?}");
    let c = test_user("otpga-disk-c");
    let _ = client.reset(&c.name);
    client.enroll(&c.name).answer();
    assert!(s.d.alive() && s.d.pid == pid);
    assert_eq!(
        s.d.log().matches("event=started").count(),
        started_lines,
        "no restart"
    );
    assert!(temp_files(&s.d.state_dir).is_empty());
}

#[test]
fn a_full_disk_refuses_without_damage_and_recovers_by_itself() {
    let mut s = setup("full");
    let filler = fill(&s.d.state_dir);
    let (right_a, wrong_a) = while_unwritable(&mut s, "No space left on device");
    fs::remove_file(&filler).expect("remove filler");
    recovers(&mut s, &right_a, &wrong_a);
}

#[test]
fn a_read_only_state_directory_refuses_without_damage_and_recovers_by_itself() {
    let mut s = setup("ro");
    s.mnt.as_ref().expect("mounted").remount("ro");
    let (right_a, wrong_a) = while_unwritable(&mut s, "Read-only file system");
    s.mnt.as_ref().expect("mounted").remount("rw");
    recovers(&mut s, &right_a, &wrong_a);
}
