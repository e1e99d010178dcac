//! pam_otpgate.so asks only a bus that root alone controls: an absolute
//! `unix:path=` whose every directory is root's and writable by root alone.
//! One dbus-daemon with the real policy listens on several addresses at
//! once, the real otpgated on it; pamtester logs in through each address.
//! Only the good one reaches the daemon; the others are refused without a
//! prompt, whatever `failmode` says.

mod pam_common;

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use otpgate_tests::*;
use pam_common::*;

const NOT_TRUSTED: &str = "otpgate's configured bus is not trusted: second factor unavailable.";

/// pamtester with its working directory set (a relative socket path
/// resolves against it).
fn pamtester_in(cwd: &Path, service: &str, user: &str, input: &str) -> Outcome {
    let mut cmd = Command::new("pamtester");
    cmd.args([service, user, "authenticate"])
        .current_dir(cwd)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    run_with_input(cmd, &format!("{input}\n"), Duration::from_secs(60))
}

fn mkdir(path: &Path, mode: u32, uid: u32) {
    fs::create_dir_all(path).expect("mkdir");
    chown(path, Some(uid), None).expect("chown");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn only_a_socket_in_directories_root_alone_controls_is_asked() {
    require_root();
    let owner = test_user("otpg-pam-trustdir");
    let user = test_user("otpg-pam-trustme");

    // The extra sockets the same bus listens on.
    let socks = TestDir::trusted("trust");
    let good_dir = socks.join("good");
    mkdir(&good_dir, 0o755, 0);
    let users_dir = socks.join("users");
    mkdir(&users_dir, 0o755, owner.uid);
    let open_dir = socks.join("open");
    mkdir(&open_dir, 0o1777, 0);
    let rel_dir = socks.join("cwd");
    mkdir(&rel_dir.join("rel"), 0o755, 0);
    let abstract_name = format!("otpgate-test-trust-{}-{}", std::process::id(), now());
    let listen = |address: &str| format!("<listen>{address}</listen>");
    let good = format!("unix:path={}/bus.sock", good_dir.display());
    let in_users_dir = format!("unix:path={}/bus.sock", users_dir.display());
    let in_open_dir = format!("unix:path={}/bus.sock", open_dir.display());
    let policy = repo_root().join("packaging/dbus/org.otpgate.Otpgate1.conf");
    let bus = Bus::start_with(&format!(
        "<include>{}</include>{}{}{}{}{}",
        policy.display(),
        listen(&good),
        listen(&in_users_dir),
        listen(&in_open_dir),
        listen(&format!("unix:path={}/rel/bus.sock", rel_dir.display())),
        listen(&format!("unix:abstract={abstract_name}")),
    ));
    for dir in [&good_dir, &users_dir, &open_dir, &rel_dir.join("rel")] {
        let sock = dir.join("bus.sock");
        assert!(
            wait_until(START_DEADLINE, || sock.exists()),
            "dbus-daemon made no {}",
            sock.display()
        );
    }
    let _d = Daemon::start(&bus, "");
    let e = enroll(&bus, &user.name);

    let service = |label: &str, address: &str| {
        etc_pam_service(
            label,
            &format!(
                "{}\nauth required pam_permit.so",
                module_line(&format!(
                    "bus={address} bus_only failmode=open nullok timeout=5"
                ))
            ),
        )
    };

    // Every untrusted way to the same bus and daemon: refused, not skipped,
    // even with failmode=open and nullok, and before the code is asked for.
    let abstract_address = format!("unix:abstract={abstract_name}");
    for (label, address) in [
        ("trust-abstract", abstract_address.as_str()),
        ("trust-relative", "unix:path=rel/bus.sock"),
        ("trust-usersdir", in_users_dir.as_str()),
        ("trust-opendir", in_open_dir.as_str()),
    ] {
        let (svc, _f) = service(label, address);
        let o = pamtester_in(
            &rel_dir,
            &svc,
            &user.name,
            &oathtool_at(&e.secret, e.confirmed_at + 30),
        );
        assert!(!o.success, "{address}: {o:#?}");
        assert!(o.says(AUTHINFO_UNAVAIL), "{address}: {o:#?}");
        assert!(o.says(NOT_TRUSTED), "{address}: {o:#?}");
        assert!(!o.says(PROMPT), "{address}: {o:#?}");
    }

    // The same daemon through the good path: it judges the code.
    let (svc, _f) = service("trust-good", &good);
    let o = pamtester_in(
        &rel_dir,
        &svc,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert!(o.success && o.says(SUCCESS) && o.says(PROMPT), "{o:#?}");

    // Checked at every login, not once: a directory made writable by others
    // in between is refused, and accepted again once it is put back.
    fs::set_permissions(&good_dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let o = pamtester_in(&rel_dir, &svc, &user.name, &wrong_code(&e.secret));
    assert!(!o.success && o.says(NOT_TRUSTED), "{o:#?}");
    assert!(!o.says(PROMPT), "{o:#?}");
    fs::set_permissions(&good_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let o = pamtester_in(&rel_dir, &svc, &user.name, &wrong_code(&e.secret));
    assert!(!o.success && o.says(AUTH_ERR), "{o:#?}");
    assert!(o.says("Wrong code."), "the daemon answered: {o:#?}");
}
