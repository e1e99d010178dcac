//! TOTP secrets as configured, and clocks.
//!
//! A wrong code that is the right code of another time: the user is told
//! how far off the authenticator's clock looks, the failure still counts,
//! the event is logged with the offset, `status` shows it, and that other
//! time's code never passes. Codes from oathtool, the daemon's clock moved
//! by the test (the real engine in-process on a private bus), the real
//! module through pamtester.

mod pam_common;

use otpgate_tests::inproc::{InProcess, T0};
use otpgate_tests::*;
use pam_common::*;

const FAST: &str =
    "Your authenticator's clock looks about 90 seconds fast: set it to automatic time.";
const SLOW: &str =
    "Your authenticator's clock looks about 4 minutes slow: set it to automatic time.";

#[test]
fn a_drifted_code_is_refused_counted_and_explained() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = etc_pam_service("drift", &module_line(&bus.bus_only_args()));
    let user = test_user("otpgdrift1");
    let s = InProcess::builder("").clock_at(T0).start(&bus);
    let e = call(&bus, "Manager", "Enroll", &[&user.name]).ok();
    let secret = e["secret"].as_str().unwrap().to_string();
    call(
        &bus,
        "Manager",
        "Confirm",
        &[&user.name, &oathtool_at(&secret, T0)],
    )
    .ok();
    let now = T0 + 300;
    s.clock.set(now);

    // Three steps ahead (a phone 90 s fast): refused, counted, explained.
    let ahead = oathtool_at(&secret, now + 90);
    let o = pamtester(&svc, &user.name, &ahead);
    assert_outcome(&o, false, AUTH_ERR, FAST);
    assert!(o.says("Wrong code. 4 attempts left."), "{o:#?}");
    let st = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(st["clock_offset_secs"], 90);
    assert_eq!(st["clock_offset_seen_at"], now);
    let devices = call(&bus, "Manager", "Status", &[&user.name]).ok()["devices"].clone();
    assert_eq!(devices[0]["clock_offset_secs"], 90, "per device: {devices}");
    assert_eq!(st["failures"], 1);
    assert!(
        s.engine
            .audit()
            .lines()
            .iter()
            .any(|l| l.contains("event=clock-drift ") && l.contains("offset_secs=90")),
        "{:?}",
        s.engine.audit().lines()
    );

    // Seven steps behind (3.5 minutes slow).
    let behind = oathtool_at(&secret, now - 210);
    let o = pamtester(&svc, &user.name, &behind);
    assert_outcome(&o, false, AUTH_ERR, SLOW);
    let st = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(st["clock_offset_secs"], -210);

    // A wrong code that is no step's code: no hint, the last offset stays.
    let o = pamtester(&svc, &user.name, &wrong_far(&secret, now));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code. 2 attempts left.");
    assert!(!o.says("clock looks"), "{o:#?}");
    assert_eq!(
        call(&bus, "Manager", "Status", &[&user.name]).ok()["clock_offset_secs"],
        -210
    );

    // The code the hint revealed never passes when its time comes.
    s.clock.set(now + 90);
    let o = pamtester(&svc, &user.name, &ahead);
    assert!(!o.success, "{o:#?}");
    // The right code of now still does, and resets the count.
    let o = pamtester(&svc, &user.name, &oathtool_at(&secret, now + 120));
    assert!(o.success, "{o:#?}");
}

/// A code that matches no step within an hour either side of `now`.
fn wrong_far(secret: &str, now: u64) -> String {
    let near: Vec<String> = (0..=240u64)
        .map(|i| oathtool_at(secret, now - 3600 + i * 30))
        .collect();
    (0u32..)
        .map(|n| format!("{:06}", (n * 7919 + 13) % 1_000_000))
        .find(|c| !near.contains(c))
        .expect("241 codes cannot cover them all")
}

#[test]
fn secret_bytes_sets_the_length_of_new_secrets() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "[totp]\nsecret_bytes = 32\n");
    let user = test_user("otpgdrift2");
    let e = enroll(&bus, &user.name);
    // 32 bytes are 52 base32 characters without padding; oathtool, which
    // knows nothing of otpgate, computed the code that confirmed it.
    assert_eq!(e.secret.len(), 52, "{}", e.secret);
    let o = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(o["enrolled"], true);
}
