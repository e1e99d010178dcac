//! The Debian package: `packaging/deb/build.sh` packages the test's debug
//! binaries, `dpkg -i` installs it on this machine (no systemd as PID 1:
//! the maintainer scripts start the daemon in the background and a system
//! bus), its files and control data are checked, the pam-auth-update
//! profile is off by default and, once enabled, asks for a code after the
//! password in a real PAM stack built on /etc/pam.d/common-auth, a
//! reinstall restarts the daemon and keeps the configuration, `dpkg -r`
//! takes the module out of common-auth and keeps the state, `dpkg -P`
//! deletes it.

mod packaging_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use otpgate_tests::*;
use packaging_common::*;

const CONF: &str = "/etc/otpgate/otpgate.toml";
const KEY: &str = "/etc/otpgate/master.key";
/// The password check of `[self_service] reauth = "password+code"`.
const REAUTH_PAM: &str = "/etc/pam.d/otpgate-reauth";
const PROMPT: &str = "Verification code";

/// Purges the package (and what its scripts made) if the test left it
/// installed, also when it fails.
struct Purger;

impl Drop for Purger {
    fn drop(&mut self) {
        if dpkg_status("otpgate").is_some() {
            let _ = try_run(admin("dpkg").args(["-P", "otpgate"]), "", STEP_DEADLINE);
        }
        for d in ["/etc/otpgate", "/var/lib/otpgate"] {
            let _ = fs::remove_dir_all(d);
        }
        let _ = fs::remove_file("/var/log/otpgated.log");
    }
}

/// Locks the test user's password again when the test ends.
struct PasswordLock(String);

impl Drop for PasswordLock {
    fn drop(&mut self) {
        let _ = try_run(
            admin("usermod").args(["-p", "!", &self.0]),
            "",
            STEP_DEADLINE,
        );
    }
}

fn workspace_version() -> String {
    let toml = fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let mut in_section = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if in_section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "version" {
                    return v.trim().trim_matches('"').to_string();
                }
            }
        }
    }
    panic!("no [workspace.package] version in Cargo.toml");
}

fn build_deb(dir: &TestDir) -> PathBuf {
    run_ok(
        Command::new(repo_root().join("packaging/deb/build.sh"))
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--out-dir")
            .arg(&dir.path)
            .args(["--compression", "gzip"]),
    );
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let deb = dir.join(&format!(
        "otpgate_{}_{}.deb",
        workspace_version(),
        arch.trim()
    ));
    assert!(deb.exists(), "{} was not built", deb.display());
    deb
}

/// The non-comment lines of a PAM file.
fn pam_lines(path: &str) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn common_auth_loads_otpgate() -> bool {
    pam_lines("/etc/pam.d/common-auth")
        .iter()
        .any(|l| l.contains("pam_otpgate.so"))
}

fn pamtester(service: &str, user: &str, input: &str) -> Ran {
    try_run(
        admin("pamtester").args([service, user, "authenticate"]),
        input,
        STEP_DEADLINE,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn debian_package_install_pam_profile_remove_purge() {
    require_root();
    let _lock = system_lock();
    // An installation from the README's quick start waits aside and comes
    // back when the test ends (dropped last).
    let _aside = SetAside::new();
    require_clean_machine();
    // Dropped in reverse order: purge, restore the PAM files, stop a
    // leftover daemon by pid, stop the system bus if the package started it.
    let _bus = SystemBusGuard::new();
    let _reaper = DaemonReaper;
    let pam_backup = PamBackup::new();
    let _purge = Purger;

    let dir = TestDir::new("pkg-deb");
    let deb = build_deb(&dir);

    // Control data.
    let field = |name: &str| {
        run_ok(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(name))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "otpgate");
    assert_eq!(field("Version"), workspace_version());
    let depends = field("Depends");
    for dep in ["dbus", "libpam0g", "libpam-runtime"] {
        assert!(
            depends.split(',').any(|d| d.trim().starts_with(dep)),
            "Depends lacks {dep}: {depends}"
        );
    }
    let conffiles = run_ok(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert_eq!(conffiles.trim(), format!("{CONF}\n{REAUTH_PAM}"));

    // Install.
    let out = run_ok(admin("dpkg").arg("-i").arg(&deb));
    assert!(out.contains("otpgated-ctl stop"), "{out}");
    assert_eq!(
        dpkg_status("otpgate").as_deref(),
        Some("install ok installed")
    );
    assert_installed_files();
    assert_reauth_service_shipped();
    let owned = run_ok(admin("dpkg").args(["-L", "otpgate"]));
    for (path, _) in installed_files() {
        assert!(
            owned.lines().any(|l| l == path),
            "{path} is not in the package"
        );
    }
    assert!(
        fs::read_to_string("/usr/share/doc/otpgate/copyright")
            .expect("copyright")
            .contains("License: GPL-3.0-or-later"),
        "copyright does not name GPL-3.0-or-later"
    );
    let pid = assert_daemon_serving();

    // The PAM profile is registered but off.
    assert!(
        !common_auth_loads_otpgate(),
        "installing the package enabled the second factor"
    );
    run_ok(admin("pam-auth-update").args(["--package", "--enable", "otpgate"]));
    let auth = pam_lines("/etc/pam.d/common-auth");
    let at = |module: &str| {
        auth.iter()
            .position(|l| l.split_whitespace().any(|w| w == module))
            .unwrap_or_else(|| panic!("{module} not in common-auth: {auth:#?}"))
    };
    let (unix, permit, otpgate) = (at("pam_unix.so"), at("pam_permit.so"), at("pam_otpgate.so"));
    assert!(
        unix < permit && permit < otpgate,
        "pam_otpgate.so must come after the password check: {auth:#?}"
    );
    assert!(
        auth[otpgate].contains("nullok"),
        "no nullok: {}",
        auth[otpgate]
    );

    // A real PAM stack on common-auth: password, then the code.
    let user = test_user("otpgpkgdeb");
    let _pw_lock = PasswordLock(user.name.clone());
    let password = format!("pkg-{}-{}", std::process::id(), now());
    let r = try_run(
        &mut admin("chpasswd"),
        &format!("{}:{password}\n", user.name),
        STEP_DEADLINE,
    )
    .expect("chpasswd");
    assert!(r.ok, "chpasswd: {r:?}");
    let service = format!("otpgpkg-deb-{}", std::process::id());
    let _svc = OwnFile::write(
        format!("/etc/pam.d/{service}"),
        "# written by an otpgate packaging test, removed when it ends\n\
         @include common-auth\n\
         account required pam_permit.so\n",
    );

    // Not enrolled: nullok lets the password alone through.
    let r = pamtester(&service, &user.name, &format!("{password}\n"));
    assert!(r.ok && !r.out.contains(PROMPT), "not enrolled: {r:?}");

    let e = enroll_as(&user.name);
    let secret = e["secret"].as_str().expect("secret").to_string();
    let out = run_ok(&mut as_user(
        &user.name,
        &["otpgate", "confirm", &oathtool_now(&secret), "--json"],
    ));
    let confirmed: serde_json::Value = serde_json::from_str(out.trim()).expect("confirm JSON");
    let backup = confirmed["backup_codes"][0]
        .as_str()
        .expect("a backup code")
        .to_string();

    let r = pamtester(&service, &user.name, &format!("{password}\n{backup}\n"));
    assert!(
        r.ok && r.out.contains(PROMPT),
        "password + backup code: {r:?}"
    );
    let r = pamtester(
        &service,
        &user.name,
        &format!("{password}\n{}\n", wrong_code(&secret)),
    );
    assert!(
        !r.ok && r.out.contains(PROMPT),
        "password + wrong code: {r:?}"
    );
    let r = pamtester(&service, &user.name, "not-the-password\n");
    assert!(
        !r.ok && !r.out.contains(PROMPT),
        "a wrong password must fail before the code is asked: {r:?}"
    );

    // Off again: common-* exactly as before.
    run_ok(admin("pam-auth-update").args(["--package", "--disable", "otpgate"]));
    let changed: Vec<PathBuf> = pam_backup
        .changed()
        .into_iter()
        .filter(|p| p.starts_with("/etc/pam.d"))
        .collect();
    assert!(changed.is_empty(), "disabling left {changed:?} changed");

    // Reinstalling (an upgrade) restarts the daemon and keeps the
    // administrator's configuration.
    let conf_text = fs::read_to_string(CONF).expect("config");
    fs::write(
        CONF,
        format!("{conf_text}\n# edited by the administrator\n"),
    )
    .expect("edit config");
    let key = fs::read(KEY).expect("key");
    run_ok(admin("dpkg").args(["-i", "--force-confold"]).arg(&deb));
    let pid2 = assert_daemon_serving();
    assert_ne!(pid, pid2, "reinstalling did not restart the daemon");
    assert!(fs::read_to_string(CONF)
        .expect("config")
        .contains("# edited by the administrator"));
    assert_eq!(fs::read(KEY).expect("key"), key);
    assert_eq!(status_of(&user.name)["enrolled"], true);

    // Removing the package while the profile is on takes the module out of
    // common-auth first (a stack naming a missing module fails every login).
    run_ok(admin("pam-auth-update").args(["--package", "--enable", "otpgate"]));
    assert!(common_auth_loads_otpgate());
    run_ok(admin("dpkg").args(["-r", "otpgate"]));
    assert!(
        !common_auth_loads_otpgate(),
        "dpkg -r left pam_otpgate.so in common-auth"
    );
    assert_eq!(
        dpkg_status("otpgate").as_deref(),
        Some("deinstall ok config-files")
    );
    assert_files_gone();
    assert_daemon_stopped(pid2);
    assert_eq!(fs::read(KEY).expect("kept key"), key);
    assert!(Path::new(CONF).exists(), "dpkg -r removed the conffile");
    assert!(
        Path::new("/var/lib/otpgate/users")
            .read_dir()
            .expect("kept state")
            .next()
            .is_some(),
        "dpkg -r removed the enrolments"
    );

    assert!(
        Path::new(REAUTH_PAM).exists(),
        "dpkg -r removed the conffile"
    );

    // Purge deletes configuration, key, enrolments and log.
    run_ok(admin("dpkg").args(["-P", "otpgate"]));
    assert_eq!(dpkg_status("otpgate"), None);
    for gone in [
        "/etc/otpgate",
        "/var/lib/otpgate",
        "/var/log/otpgated.log",
        REAUTH_PAM,
    ] {
        assert!(!Path::new(gone).exists(), "{gone} survived dpkg -P");
    }
    let changed: Vec<PathBuf> = pam_backup
        .changed()
        .into_iter()
        .filter(|p| p.starts_with("/etc/pam.d"))
        .collect();
    assert!(changed.is_empty(), "the package left {changed:?} changed");
}

/// The shipped PAM service of the password check: the repository's file,
/// and never pam_otpgate (otpgated would be asked back in its own check).
fn assert_reauth_service_shipped() {
    let text = fs::read_to_string(REAUTH_PAM).expect("otpgate-reauth installed");
    assert_eq!(
        text,
        fs::read_to_string(repo_root().join("packaging/pam.d/otpgate-reauth")).expect("shipped")
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(lines.iter().any(|l| l.contains("pam_unix.so")), "{text}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("pam_otpgate") || l.contains("common-auth")),
        "{text}"
    );
}
