//! The module in the real `su` (util-linux), which has a fixed PAM service
//! name: /etc/pam.d/su is replaced for the length of the test and restored
//! by a guard, also when the test fails. Everything that needs the replaced
//! file is in this one test so nothing else runs with it.
//!
//! su is also where the environment attack is real: unlike sudo, it runs the
//! modules with the caller's environment, DBUS_SYSTEM_BUS_ADDRESS included.

mod pam_common;

use std::time::Duration;

use otpgate_tests::*;
use pam_common::*;

fn su_as(caller: &TestUser, target: &TestUser, code: &str, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = as_user(caller, "su");
    cmd.args([target.name.as_str(), "-c", "true"])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_input(cmd, &format!("{code}\n"), Duration::from_secs(60))
}

#[test]
fn su_to_an_enrolled_user_needs_that_users_code() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "[totp]\nwindow = 3\n");
    let caller = test_user("otpg-pam-sucaller");
    let target = test_user("otpg-pam-sutarget");
    let e = enroll(&bus, &target.name);
    // Another enrolled user: their code is no good for the target.
    let other = test_user("otpg-pam-suother");
    let o_e = enroll(&bus, &other.name);

    // The attacker's bus, with a root-owned service that says "ok": only
    // ignoring the environment keeps it out.
    let evil = Bus::start_open();
    let _fake = FakeDaemon::start(&evil, None, "ok");
    let hijack = [("DBUS_SYSTEM_BUS_ADDRESS", evil.address.as_str())];

    let _su = EtcFile::write(
        "/etc/pam.d/su",
        &service_text(&module_line(&bus.module_args())),
        0o644,
    );

    let o = su_as(&caller, &target, &wrong_code(&e.secret), &[]);
    assert!(!o.success, "{o:#?}");
    assert!(o.says("Wrong code. 4 attempts left."), "{o:#?}");

    let o = su_as(
        &caller,
        &target,
        &oathtool_at(&o_e.secret, o_e.confirmed_at + 30),
        &[],
    );
    assert!(!o.success, "another user's code: {o:#?}");

    let o = su_as(&caller, &target, &wrong_code(&e.secret), &hijack);
    assert!(
        !o.success,
        "the environment's bus must not be asked: {o:#?}"
    );
    assert!(o.says("Wrong code."), "the real daemon answered: {o:#?}");

    let o = su_as(
        &caller,
        &target,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
        &hijack,
    );
    assert!(o.success, "{o:#?}");

    // Without bus= the module uses only the compiled default, never the
    // environment's address.
    let _su2 = EtcFile::write("/etc/pam.d/su", &service_text(&module_line("")), 0o644);
    let o = su_as(&caller, &target, "000000", &hijack);
    assert!(!o.success, "{o:#?}");
    assert!(!o.says("Verification code: "), "{o:#?}");
}
