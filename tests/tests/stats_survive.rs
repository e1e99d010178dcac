//! `Admin.Stats` keeps counting users who were disabled or reset, and
//! counts enrolments, disables and resets; such users are listed nowhere,
//! are not enrolled anywhere, and enrol again. Against the real otpgated.

use otpgate_tests::*;
use serde_json::Value;

const PERIOD: u64 = 30;
const NOT_ENROLLED: &str = "org.otpgate.Otpgate1.Error.NotEnrolled";

fn listed(bus: &Bus) -> Vec<String> {
    call(bus, "Admin", "ListUsers", &[])
        .ok()
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| u["user"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn stats(bus: &Bus) -> Value {
    call(bus, "Admin", "Stats", &[]).ok()
}

#[test]
fn disabled_and_reset_users_still_count() {
    require_root();
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let a = test_user("otpgss-disabled");
    let b = test_user("otpgss-reset");
    let ea = enroll(&bus, &a.name);
    let eb = enroll(&bus, &b.name);

    let (r, info) = verify(&bus, &a.name, &wrong_code(&ea.secret));
    assert_eq!(r, "invalid", "{info}");
    let (r, info) = verify(
        &bus,
        &a.name,
        &oathtool_at(&ea.secret, ea.confirmed_at + PERIOD),
    );
    assert_eq!(r, "ok", "{info}");
    let (r, info) = verify(
        &bus,
        &b.name,
        &oathtool_at(&eb.secret, eb.confirmed_at + PERIOD),
    );
    assert_eq!(r, "ok", "{info}");
    let s = stats(&bus);
    assert_eq!(s["users_enrolled"], 2, "{s}");
    assert_eq!(s["enrolments"], 2, "{s}");

    assert_eq!(
        call(&bus, "Manager", "Disable", &[&a.name, ""]).ok(),
        Value::Null
    );
    assert_eq!(call(&bus, "Admin", "Reset", &[&b.name]).ok(), Value::Null);
    // Kept across a restart (the counters are in the records).
    d.restart(&bus);

    let s = stats(&bus);
    assert_eq!(s["users_enrolled"], 0, "{s}");
    assert_eq!(s["successes"], 2, "{s}");
    assert_eq!(s["failures"], 1, "{s}");
    assert_eq!(s["enrolments"], 2, "{s}");
    assert_eq!(s["disabled"], 1, "{s}");
    assert_eq!(s["resets"], 1, "{s}");
    assert_eq!(s["days"], 30, "{s}");
    let list = listed(&bus);
    assert!(
        !list.contains(&a.name) && !list.contains(&b.name),
        "{list:?}"
    );

    // Not enrolled, whatever was kept: no code, no backup code, no unlock.
    for (u, e) in [(&a, &ea), (&b, &eb)] {
        let st = call(&bus, "Manager", "Status", &[&u.name]).ok();
        assert_eq!(st["enrolled"], false, "{st}");
        assert_eq!(st["pending"], false, "{st}");
        let (r, info) = verify(&bus, &u.name, &oathtool_now(&e.secret));
        assert_eq!(r, "not-enrolled", "{info}");
        let (r, info) = verify(&bus, &u.name, &e.backup_codes[0]);
        assert_eq!(r, "not-enrolled", "{info}");
        let r = call(&bus, "Admin", "Unlock", &[&u.name]);
        assert_eq!(r.err_name(), Some(NOT_ENROLLED), "{r:?}");
    }
    // Nothing left to disable or reset.
    let r = call(&bus, "Manager", "Disable", &[&a.name, ""]);
    assert_eq!(r.err_name(), Some(NOT_ENROLLED), "{r:?}");
    let r = call(&bus, "Admin", "Reset", &[&b.name]);
    assert_eq!(r.err_name(), Some(NOT_ENROLLED), "{r:?}");

    // Both enrol afresh, and the counting goes on.
    let ea2 = enroll(&bus, &a.name);
    enroll(&bus, &b.name);
    assert_ne!(ea2.secret, ea.secret);
    let (r, info) = verify(
        &bus,
        &a.name,
        &oathtool_at(&ea2.secret, ea2.confirmed_at + PERIOD),
    );
    assert_eq!(r, "ok", "{info}");
    let s = stats(&bus);
    assert_eq!(s["users_enrolled"], 2, "{s}");
    assert_eq!(s["successes"], 3, "{s}");
    assert_eq!(s["enrolments"], 4, "{s}");
    let list = listed(&bus);
    assert!(list.contains(&a.name) && list.contains(&b.name), "{list:?}");
}
