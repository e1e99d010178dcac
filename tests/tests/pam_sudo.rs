//! The module in the real `sudo` (setuid root, run by an ordinary user),
//! including the attack it must resist: the user points DBUS_SYSTEM_BUS_ADDRESS
//! at a bus where their own service says "ok".
//!
//! sudo is given a PAM service of its own through sudoers
//! (`Defaults:USER pam_service=NAME`), so /etc/pam.d/sudo is not touched.

mod pam_common;

use std::time::Duration;

use otpgate_tests::*;
use pam_common::*;

/// `sudo -S -k true` as `user` with `code` on stdin, and extra environment.
fn sudo_as(user: &TestUser, code: &str, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = as_user(user, "sudo");
    cmd.args(["-S", "-k", "true"])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_input(cmd, &format!("{code}\n"), Duration::from_secs(60))
}

#[test]
fn sudo_runs_with_a_valid_code_and_refuses_a_wrong_one() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-pam-sudo");
    let e = enroll(&bus, &user.name);
    let (svc, _pam) = etc_pam_service("sudo", &module_line(&bus.module_args()));
    let _rules = sudoers(&user, &svc);

    let o = sudo_as(&user, &wrong_code(&e.secret), &[]);
    assert!(!o.success, "{o:#?}");
    assert!(o.says("Verification code: "), "{o:#?}");
    assert!(o.says("Wrong code. 4 attempts left."), "{o:#?}");

    let o = sudo_as(&user, &oathtool_at(&e.secret, e.confirmed_at + 30), &[]);
    assert!(o.success, "{o:#?}");
}

#[test]
fn sudo_ignores_a_bus_address_from_the_callers_environment() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-pam-sudohijack");
    let e = enroll(&bus, &user.name);

    // The attacker's bus: anyone may own the name, and the attacker's own
    // service there answers "ok" to every code.
    let evil = Bus::start_open();
    let _fake = FakeDaemon::start(&evil, Some(&user), "ok");
    let hijack = [("DBUS_SYSTEM_BUS_ADDRESS", evil.address.as_str())];

    // The module's configured bus and socket have the real daemon: it
    // judges the code, on either path.
    for args in [bus.module_args(), bus.bus_only_args()] {
        let (svc, _pam) = etc_pam_service("sudohijack", &module_line(&args));
        let _rules = sudoers(&user, &svc);
        let o = sudo_as(&user, &wrong_code(&e.secret), &hijack);
        assert!(
            !o.success,
            "{args}: the fake service must not be asked: {o:#?}"
        );
        assert!(
            o.says("Wrong code."),
            "{args}: the real daemon answered: {o:#?}"
        );
    }
}

#[test]
fn sudo_without_bus_option_uses_only_the_compiled_default() {
    require_root();
    let user = test_user("otpg-pam-sudodefault");
    // Worst case for the module: the environment's bus has a root-owned
    // service that says "ok", so only ignoring the environment protects.
    let evil = Bus::start_open();
    let _fake = FakeDaemon::start(&evil, None, "ok");
    let (svc, _pam) = etc_pam_service("sudodefault", &module_line(""));
    let _rules = sudoers(&user, &svc);
    let o = sudo_as(
        &user,
        "000000",
        &[("DBUS_SYSTEM_BUS_ADDRESS", evil.address.as_str())],
    );
    assert!(!o.success, "{o:#?}");
    assert!(!o.says("Verification code: "), "{o:#?}");
}

#[test]
fn sudo_refuses_a_configured_bus_where_a_non_root_process_owns_the_name() {
    require_root();
    let user = test_user("otpg-pam-sudoimp");
    let evil = Bus::start_open();
    let _fake = FakeDaemon::start(&evil, Some(&user), "ok");
    let (svc, _pam) = etc_pam_service(
        "sudoimp",
        &module_line(&format!("{} failmode=open", evil.module_args())),
    );
    let _rules = sudoers(&user, &svc);
    let o = sudo_as(&user, "000000", &[]);
    assert!(!o.success, "{o:#?}");
    assert!(
        o.says("otpgate is not run by root on this bus: second factor unavailable."),
        "{o:#?}"
    );
}
