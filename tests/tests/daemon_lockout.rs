//! Lockout against the real otpgated: the count, the lock, that a right
//! code is refused while locked, that the lock survives a restart, that an
//! administrator's Unlock lifts it and that a short lock runs out.

use std::time::Duration;

use otpgate_tests::*;
use serde_json::Value;

const PERIOD: u64 = 30;

fn u(info: &Value, key: &str) -> Option<u64> {
    info.get(key).and_then(Value::as_u64)
}

fn challenge_state(bus: &Bus, user: &str) -> String {
    call(bus, "Auth", "Challenge", &[user]).ok()[0]
        .as_str()
        .expect("state word")
        .to_string()
}

fn status(bus: &Bus, user: &str) -> Value {
    call(bus, "Manager", "Status", &[user]).ok()
}

/// Three wrong codes with max_failures = 3; returns the lock's end.
fn lock_with_three_wrong_codes(bus: &Bus, user: &str, wrong: &str, duration: u64) -> u64 {
    let before = now();
    for left in [2, 1] {
        let (r, info) = verify(bus, user, wrong);
        assert_eq!(r, "invalid", "{info}");
        assert_eq!(u(&info, "attempts_left"), Some(left), "{info}");
        assert_eq!(u(&info, "locked_until"), None, "not locked yet: {info}");
    }
    let (r, info) = verify(bus, user, wrong);
    assert_eq!(
        r, "invalid",
        "the failure that locks is still judged invalid: {info}"
    );
    assert_eq!(u(&info, "attempts_left"), Some(0), "{info}");
    let until = u(&info, "locked_until").unwrap_or_else(|| panic!("no locked_until: {info}"));
    assert!(
        until >= before + duration && until <= now() + duration,
        "locked_until {until} should be now + {duration} (now {})",
        now()
    );
    until
}

#[test]
fn a_lock_refuses_right_codes_survives_a_restart_and_unlock_lifts_it() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "[lockout]\nmax_failures = 3\nduration_secs = 600\n");
    let user = test_user("otpgd-lock1");
    let e = enroll(&bus, &user.name);
    let wrong = wrong_code(&e.secret);
    // Never accepted while locked, so still fresh for the final check.
    let right = oathtool_at(&e.secret, e.confirmed_at + PERIOD);

    let until = lock_with_three_wrong_codes(&bus, &user.name, &wrong, 600);

    let (r, info) = verify(&bus, &user.name, &wrong);
    assert_eq!(r, "locked", "{info}");
    assert_eq!(u(&info, "locked_until"), Some(until), "{info}");
    let (r, info) = verify(&bus, &user.name, &right);
    assert_eq!(r, "locked", "a right code while locked: {info}");
    // A backup code is no way around the lock either.
    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "locked", "a backup code while locked: {info}");
    assert_eq!(challenge_state(&bus, &user.name), "locked");

    let before = status(&bus, &user.name);
    assert_eq!(before["locked"], true, "{before}");
    assert_eq!(before["locked_until"], until, "{before}");
    assert_eq!(before["failures"], 3, "{before}");

    d.restart(&bus);
    let after = status(&bus, &user.name);
    assert_eq!(after, before, "the lock is on disk");
    let (r, info) = verify(&bus, &user.name, &right);
    assert_eq!(r, "locked", "after the restart: {info}");
    assert_eq!(challenge_state(&bus, &user.name), "locked");

    assert_eq!(
        call(&bus, "Admin", "Unlock", &[&user.name]).ok(),
        Value::Null
    );
    let st = status(&bus, &user.name);
    assert_eq!(st["locked"], false, "{st}");
    assert_eq!(st["failures"], 0, "{st}");
    assert_eq!(challenge_state(&bus, &user.name), "code-required");
    let (r, info) = verify(&bus, &user.name, &right);
    assert_eq!(r, "ok", "after Unlock: {info}");
    // The backup code tried while locked was not used up.
    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "ok", "{info}");
    assert_eq!(u(&info, "backup_codes_left"), Some(9), "{info}");
}

#[test]
fn a_short_lock_runs_out() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "[lockout]\nmax_failures = 3\nduration_secs = 2\n");
    let user = test_user("otpgd-lock2");
    let e = enroll(&bus, &user.name);
    let wrong = wrong_code(&e.secret);
    let right = oathtool_at(&e.secret, e.confirmed_at + PERIOD);

    let until = lock_with_three_wrong_codes(&bus, &user.name, &wrong, 2);
    let (r, info) = verify(&bus, &user.name, &right);
    assert_eq!(r, "locked", "{info}");

    assert!(
        wait_until(Duration::from_secs(10), || now() > until),
        "the clock did not pass {until}"
    );
    // One more second: the daemon's clock and ours may disagree on the
    // second boundary.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(challenge_state(&bus, &user.name), "code-required");
    let (r, info) = verify(&bus, &user.name, &right);
    assert_eq!(r, "ok", "after the lock ran out: {info}");
}

#[test]
fn a_crash_right_after_an_answer_loses_nothing() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "[lockout]\nmax_failures = 3\nduration_secs = 600\n");
    let user = test_user("otpgd-lock3");
    let e = enroll(&bus, &user.name);
    let wrong = wrong_code(&e.secret);
    let right = oathtool_at(&e.secret, e.confirmed_at + PERIOD);

    // Each answer is on disk before it is sent: SIGKILL just after it.
    let (r, info) = verify(&bus, &user.name, &right);
    assert_eq!(r, "ok", "{info}");
    d.kill();
    d.restart(&bus);
    let (r, info) = verify(&bus, &user.name, &right);
    assert_eq!(r, "replayed", "the accepted step survived a crash: {info}");

    let (r, info) = verify(&bus, &user.name, &wrong);
    assert_eq!(r, "invalid", "{info}");
    d.kill();
    d.restart(&bus);
    let st = status(&bus, &user.name);
    assert_eq!(st["failures"], 2, "the replay and the wrong code: {st}");

    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "ok", "{info}");
    d.kill();
    d.restart(&bus);
    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(
        r, "invalid",
        "the used backup code survived a crash: {info}"
    );
    let st = status(&bus, &user.name);
    assert_eq!(st["backup_codes_left"], 9, "{st}");
}
