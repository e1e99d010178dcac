//! What the user sees of their own second factor: the history (`otpgate
//! history`, kept in the record, so it survives a restart), the notice of
//! failed attempts at the next success, and the warning when backup codes
//! run low. The real daemon on a private bus, the real module through
//! pamtester, codes from oathtool, the real CLI.

mod cli_common;
mod pam_common;

use cli_common::{otpgate, As};
use otpgate_tests::*;
use pam_common::*;

#[test]
fn failures_are_reported_at_the_next_success_and_kept_in_the_history() {
    require_root();
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "[backup_codes]\ncount = 3\n");
    let (svc, _pam) = etc_pam_service("history", &module_line(&bus.module_args()));
    let user = test_user("otpghist1");
    let other = test_user("otpghist2");
    let e = enroll(&bus, &user.name);

    let o = pamtester_items(
        &svc,
        &user.name,
        &[("rhost", "203.0.113.5")],
        &wrong_code(&e.secret),
    );
    assert_outcome(&o, false, AUTH_ERR, "Wrong code. 4 attempts left.");
    let o = pamtester_items(
        &svc,
        &user.name,
        &[("rhost", "203.0.113.6")],
        &wrong_code(&e.secret),
    );
    assert!(!o.success, "{o:#?}");
    let o = pamtester(
        &svc,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert_outcome(
        &o,
        true,
        SUCCESS,
        "2 failed attempts since your last login, last from 203.0.113.6 at ",
    );
    // Said once: the next success has nothing to report.
    let o = pamtester(&svc, &user.name, &e.backup_codes[0]);
    assert!(o.success && !o.says("failed attempt"), "{o:#?}");
    assert!(
        o.says("Backup code accepted: only 2 left. Run `otpgate backup-codes` for new ones."),
        "{o:#?}"
    );

    // The history survives a restart: it is in the record.
    d.restart(&bus);
    let h = otpgate(&bus, As::User(&user), &["history", "--json"]).json();
    let events: Vec<(String, String, String)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["service"].as_str().unwrap().to_string(),
                e["rhost"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |ev: &str, service: &str, rhost: &str| {
        (ev.to_string(), service.to_string(), rhost.to_string())
    };
    assert_eq!(
        events,
        vec![
            want("enrolled", "", ""),
            want("failure", &svc, "203.0.113.5"),
            want("failure", &svc, "203.0.113.6"),
            want("success", &svc, ""),
            want("success", &svc, ""),
            want("backup-code-used", &svc, ""),
        ],
        "{h}"
    );
    let text = otpgate(&bus, As::Root, &["history", "--user", &user.name])
        .ok()
        .stdout
        .clone();
    assert!(text.starts_with("when"), "{text}");
    assert!(text.contains("203.0.113.5"), "{text}");
    // Another user may not read it; an administrator may.
    otpgate(&bus, As::User(&other), &["history", "--user", &user.name]).refused();
    let admin = admin_group_member("otpghist-admin");
    otpgate(&bus, As::User(&admin), &["history", "--user", &user.name]).ok();
}
