//! `packaging/install.sh` on this machine, the way the README's quick start
//! runs it (as root, no systemd as PID 1 here, so the daemon runs in the
//! background with a pid file and the installer starts a system bus), with
//! the test's debug binaries through OTPGATE_BIN_DIR instead of the slow
//! release build. Then: `otpgate enroll --json` as a normal user, a re-run
//! that upgrades in place, the Debian package refusing to install over it,
//! an uninstall that refuses while a PAM service still loads the module,
//! an uninstall that keeps the configuration, key and enrolments, a switch
//! to the Debian package and back that carries them over (and a purge of
//! the removed package that leaves them to install.sh), and a purge.

mod packaging_common;

use std::fs;
use std::path::Path;
use std::process::Command;

use otpgate_tests::*;
use packaging_common::*;

const MANIFEST: &str = "/usr/share/otpgate/install-manifest";
const CONF: &str = "/etc/otpgate/otpgate.toml";
const REAUTH_PAM: &str = "/etc/pam.d/otpgate-reauth";
const KEY: &str = "/etc/otpgate/master.key";

fn install_sh() -> Command {
    let mut c = admin(
        &repo_root()
            .join("packaging/install.sh")
            .display()
            .to_string(),
    );
    c.env("OTPGATE_BIN_DIR", bin_dir());
    c
}

/// Uninstalls and purges whatever the test left installed, also when it
/// fails (SetAside and require_clean_machine made sure none of it was
/// there before).
struct Uninstaller;

impl Drop for Uninstaller {
    fn drop(&mut self) {
        if Path::new(MANIFEST).exists() || Path::new("/usr/sbin/otpgated").exists() {
            let _ = try_run(
                install_sh().args(["--uninstall", "--purge"]),
                "",
                STEP_DEADLINE,
            );
        }
        for d in ["/etc/otpgate", "/var/lib/otpgate"] {
            let _ = fs::remove_dir_all(d);
        }
        let _ = fs::remove_file("/var/log/otpgated.log");
    }
}

#[test]
fn install_sh_quick_start_upgrade_uninstall_purge() {
    require_root();
    let _lock = system_lock();
    // An installation from the README's quick start waits aside and comes
    // back when the test ends (dropped last).
    let _aside = SetAside::new();
    require_clean_machine();
    // Dropped in reverse order: uninstall, then stop a leftover daemon by
    // pid, then stop the system bus if the installer started it.
    let _bus = SystemBusGuard::new();
    let _reaper = DaemonReaper;
    let _undo = Uninstaller;
    let user = test_user("otpgpkginst");

    // The quick start.
    let out = run_ok(&mut install_sh());
    assert!(
        out.contains("/usr/libexec/otpgate/otpgated-ctl stop") && out.contains("/run/otpgated.pid"),
        "install.sh did not say how to stop the daemon:\n{out}"
    );
    assert_installed_files();
    let manifest = fs::read_to_string(MANIFEST).expect("install manifest");
    for (path, _) in installed_files() {
        assert!(
            manifest.lines().any(|l| l == path),
            "{path} is missing from {MANIFEST}"
        );
    }
    let pid = assert_daemon_serving();
    let conf_text = fs::read_to_string(CONF).expect("config");
    assert_eq!(
        conf_text,
        fs::read_to_string(repo_root().join("packaging/otpgate.toml")).expect("packaging config"),
        "the installed configuration is not packaging/otpgate.toml"
    );
    assert_eq!(
        fs::read_to_string(REAUTH_PAM).expect("otpgate-reauth installed"),
        fs::read_to_string(repo_root().join("packaging/pam.d/otpgate-reauth")).expect("shipped"),
        "the installed {REAUTH_PAM} is not packaging/pam.d/otpgate-reauth"
    );

    // `otpgate enroll` works for a normal user.
    enroll_as(&user.name);
    assert_eq!(status_of(&user.name)["pending"], true);

    // The Debian package will not take over an install.sh installation.
    let debdir = TestDir::new("pkg-deb-over-install");
    run_ok(
        Command::new(repo_root().join("packaging/deb/build.sh"))
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--out-dir")
            .arg(&debdir.path)
            .args(["--compression", "gzip"]),
    );
    let deb = fs::read_dir(&debdir.path)
        .expect("deb dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let r = run(admin("dpkg").arg("-i").arg(&deb));
    assert!(
        !r.ok && r.out.contains("install.sh --uninstall"),
        "dpkg -i over an install.sh installation: {r:?}"
    );
    assert_eq!(dpkg_status("otpgate"), None);
    // Clearing dpkg's leftover selection must not run the package's purge
    // over install.sh's key and state.
    run_ok(admin("dpkg").args(["-P", "otpgate"]));
    assert_installed_files();
    assert_eq!(
        daemon_pid(),
        Some(pid),
        "the refused package touched the daemon"
    );

    // A re-run upgrades in place: new daemon process, same configuration
    // (with the administrator's edit), key and enrolments.
    fs::write(
        CONF,
        format!("{conf_text}\n# edited by the administrator\n"),
    )
    .expect("edit config");
    let key = fs::read(KEY).expect("key");
    let out = run_ok(&mut install_sh());
    assert!(out.contains("kept the existing"), "{out}");
    let pid2 = assert_daemon_serving();
    assert_ne!(pid, pid2, "the re-run did not restart the daemon");
    assert!(!pid_alive(pid), "the old daemon (pid {pid}) still runs");
    assert!(fs::read_to_string(CONF)
        .expect("config")
        .contains("# edited by the administrator"));
    assert_eq!(
        fs::read(KEY).expect("key"),
        key,
        "the re-run replaced the key"
    );
    assert_eq!(
        status_of(&user.name)["pending"],
        true,
        "the enrolment did not survive the upgrade"
    );
    run_ok(admin("otpgate").args(["reset", &user.name]));

    // Removing the module under a PAM service that loads it would make
    // every login through that service fail: uninstall refuses.
    let svc = OwnFile::write(
        format!("/etc/pam.d/otpgpkg-ref-{}", std::process::id()),
        "auth required pam_otpgate.so nullok\n",
    );
    let r = run(install_sh().arg("--uninstall"));
    assert!(
        !r.ok && r.out.contains(&svc.0.display().to_string()),
        "uninstall with a PAM service using the module: {r:?}"
    );
    assert_installed_files();
    assert_eq!(daemon_pid(), Some(pid2));
    drop(svc);

    // Uninstall keeps /etc/otpgate and /var/lib/otpgate.
    let out = run_ok(install_sh().arg("--uninstall"));
    assert!(out.contains("kept /etc/otpgate"), "{out}");
    assert_files_gone();
    assert_daemon_stopped(pid2);
    for gone in [MANIFEST, "/usr/share/otpgate", "/usr/libexec/otpgate"] {
        assert!(!Path::new(gone).exists(), "{gone} is left behind");
    }
    assert_eq!(fs::read(KEY).expect("kept key"), key);
    assert!(fs::read_to_string(CONF)
        .expect("kept config")
        .contains("# edited by the administrator"));
    assert_root_dir("/var/lib/otpgate", 0o700);

    // Switching to the Debian package keeps the configuration (dpkg asked
    // to keep the administrator's file), the key and the state.
    let r = run(admin("dpkg").args(["-i", "--force-confold"]).arg(&deb));
    assert!(r.ok, "dpkg -i after install.sh --uninstall: {r:?}");
    let pid3 = assert_daemon_serving();
    assert_installed_files();
    assert_eq!(fs::read(KEY).expect("key"), key);
    assert!(fs::read_to_string(CONF)
        .expect("config")
        .contains("# edited by the administrator"));
    enroll_as(&user.name);
    run_ok(admin("dpkg").args(["-r", "otpgate"]));
    assert_daemon_stopped(pid3);
    assert_files_gone();

    // And back to install.sh: the enrolment made under the package is there.
    run_ok(&mut install_sh());
    let pid4 = assert_daemon_serving();
    assert_eq!(fs::read(KEY).expect("key"), key);
    assert_eq!(status_of(&user.name)["pending"], true);
    // Purging the removed package now must leave install.sh's state alone.
    let r = run(admin("dpkg").args(["-P", "otpgate"]));
    assert!(r.ok, "{r:?}");
    assert_eq!(dpkg_status("otpgate"), None);
    assert_eq!(fs::read(KEY).expect("key kept"), key);
    assert_eq!(status_of(&user.name)["pending"], true);

    // --purge removes the rest.
    let out = run_ok(install_sh().args(["--uninstall", "--purge"]));
    assert!(out.contains("removed otpgate, its configuration"), "{out}");
    assert_files_gone();
    assert_daemon_stopped(pid4);
    for gone in [
        "/etc/otpgate",
        "/var/lib/otpgate",
        "/var/log/otpgated.log",
        REAUTH_PAM,
    ] {
        assert!(!Path::new(gone).exists(), "{gone} survived --purge");
    }
}
