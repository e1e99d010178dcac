//! `Auth.Verify` and `Auth.Challenge` against the real otpgated on a private
//! bus: replay marks, failure counting, backup codes, code normalisation,
//! users who are not enrolled, and non-default TOTP parameters. Every code
//! comes from oathtool.
//!
//! Steps: the harness confirms an enrolment with the code of step S (the
//! step of `confirmed_at`), which marks S as used. With the default window
//! of 1, the code of step S+1 stays acceptable for a minute after that, so
//! each test that needs a success uses it, once.

use otpgate_tests::*;
use serde_json::Value;

const PERIOD: u64 = 30;

fn u(info: &Value, key: &str) -> Option<u64> {
    info.get(key).and_then(Value::as_u64)
}

fn s<'a>(info: &'a Value, key: &str) -> Option<&'a str> {
    info.get(key).and_then(Value::as_str)
}

fn challenge(bus: &Bus, user: &str) -> (String, Value) {
    let v = call(bus, "Auth", "Challenge", &[user]).ok();
    (v[0].as_str().expect("state word").to_string(), v[1].clone())
}

fn status(bus: &Bus, user: &str) -> Value {
    call(bus, "Manager", "Status", &[user]).ok()
}

#[test]
fn the_confirming_step_and_every_accepted_step_are_used_up() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpgd-replay1");
    let e = enroll(&bus, &user.name);

    // The code that confirmed the enrolment cannot log in.
    let (r, info) = verify(&bus, &user.name, &oathtool_at(&e.secret, e.confirmed_at));
    assert_eq!(r, "replayed", "{info}");

    let next = oathtool_at(&e.secret, e.confirmed_at + PERIOD);
    let (r, info) = verify(&bus, &user.name, &next);
    assert_eq!(r, "ok", "{info}");
    assert_eq!(s(&info, "method_used"), Some("totp"), "{info}");

    let (r, info) = verify(&bus, &user.name, &next);
    assert_eq!(r, "replayed", "{info}");

    // Three steps ahead of now is outside a window of 1 (even if the step
    // turns over before the daemon looks, it is still two ahead).
    let far = oathtool_at(&e.secret, now() + 3 * PERIOD);
    assert_ne!(far, next, "oathtool gave the same code for two steps");
    let (r, info) = verify(&bus, &user.name, &far);
    assert_eq!(r, "invalid", "{info}");
}

#[test]
fn wrong_codes_count_down_and_a_success_resets_the_count() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "[lockout]\nmax_failures = 5\n");
    let user = test_user("otpgd-count1");
    let e = enroll(&bus, &user.name);
    let wrong = wrong_code(&e.secret);

    for left in [4, 3, 2] {
        let (r, info) = verify(&bus, &user.name, &wrong);
        assert_eq!(r, "invalid", "{info}");
        assert_eq!(u(&info, "attempts_left"), Some(left), "{info}");
        assert_eq!(u(&info, "locked_until"), None, "{info}");
    }
    let st = status(&bus, &user.name);
    assert_eq!(st["failures"], 3, "{st}");
    assert_eq!(st["locked"], false, "{st}");

    let (r, info) = verify(
        &bus,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + PERIOD),
    );
    assert_eq!(r, "ok", "{info}");
    let st = status(&bus, &user.name);
    assert_eq!(st["failures"], 0, "{st}");

    let (r, info) = verify(&bus, &user.name, &wrong);
    assert_eq!(r, "invalid", "{info}");
    assert_eq!(
        u(&info, "attempts_left"),
        Some(4),
        "the count restarts after a success: {info}"
    );
}

#[test]
fn a_backup_code_works_once_however_it_is_typed() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpgd-backup1");
    let e = enroll(&bus, &user.name);
    assert_eq!(e.backup_codes.len(), 10, "{:?}", e.backup_codes);

    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "ok", "{info}");
    assert_eq!(s(&info, "method_used"), Some("backup"), "{info}");
    assert_eq!(u(&info, "backup_codes_left"), Some(9), "{info}");

    let (r, info) = verify(&bus, &user.name, &e.backup_codes[0]);
    assert_eq!(r, "invalid", "a backup code works once: {info}");

    // Upper case, dashes dropped.
    let typed = e.backup_codes[1].replace('-', "").to_uppercase();
    let (r, info) = verify(&bus, &user.name, &typed);
    assert_eq!(r, "ok", "{typed}: {info}");
    assert_eq!(s(&info, "method_used"), Some("backup"), "{info}");
    assert_eq!(u(&info, "backup_codes_left"), Some(8), "{info}");

    // Spaces where the dashes were.
    let typed = e.backup_codes[2].replace('-', " ");
    let (r, info) = verify(&bus, &user.name, &typed);
    assert_eq!(r, "ok", "{typed}: {info}");
    assert_eq!(u(&info, "backup_codes_left"), Some(7), "{info}");

    // The same code again in yet another spelling is still used up.
    let typed = e.backup_codes[2].to_uppercase();
    let (r, info) = verify(&bus, &user.name, &typed);
    assert_eq!(r, "invalid", "{typed}: {info}");

    let st = status(&bus, &user.name);
    assert_eq!(st["backup_codes_left"], 7, "{st}");
}

#[test]
fn a_totp_code_typed_with_a_space_is_accepted() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpgd-space1");
    let e = enroll(&bus, &user.name);
    let code = oathtool_at(&e.secret, e.confirmed_at + PERIOD);
    let typed = format!("{} {}", &code[..3], &code[3..]);
    let (r, info) = verify(&bus, &user.name, &typed);
    assert_eq!(r, "ok", "{typed}: {info}");
    assert_eq!(s(&info, "method_used"), Some("totp"), "{info}");
    // It was the same step as the plain code: now used.
    let (r, info) = verify(&bus, &user.name, &code);
    assert_eq!(r, "replayed", "{info}");
}

#[test]
fn users_without_a_confirmed_enrolment_are_not_enrolled() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let never = test_user("otpgd-never1");
    let pending = test_user("otpgd-pend1");
    let nosuch = "otpgd-nosuch1";
    assert!(
        nix::unistd::User::from_name(nosuch).unwrap().is_none(),
        "{nosuch} must not exist"
    );
    // Enrolment started, not confirmed.
    let en = call(&bus, "Manager", "Enroll", &[&pending.name]).ok();
    let secret = en["secret"].as_str().expect("secret").to_string();

    for user in [&never.name, &pending.name] {
        let (r, info) = verify(&bus, user, "123456");
        assert_eq!(r, "not-enrolled", "{user}: {info}");
        let (st, info) = challenge(&bus, user);
        assert_eq!(st, "not-enrolled", "{user}: {info}");
    }
    // A name the system does not know is no account at all: refused, not
    // "not enrolled" (which nullok would let through).
    for (iface, method, args) in [
        ("Auth", "Verify", vec![nosuch, "123456"]),
        ("Auth", "Challenge", vec![nosuch]),
    ] {
        let r = call(&bus, iface, method, &args);
        assert_eq!(
            r.err_name(),
            Some("org.otpgate.Otpgate1.Error.InvalidUser"),
            "{method}: {r:?}"
        );
    }
    // Not even the pending secret's own code logs in before confirmation.
    let (r, info) = verify(&bus, &pending.name, &oathtool_now(&secret));
    assert_eq!(r, "not-enrolled", "{info}");
}

#[test]
fn challenge_says_code_required_then_locked() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "[lockout]\nmax_failures = 5\nduration_secs = 900\n");
    let user = test_user("otpgd-chall1");
    let (st, info) = challenge(&bus, &user.name);
    assert_eq!(st, "not-enrolled", "{info}");

    let e = enroll(&bus, &user.name);
    let (st, info) = challenge(&bus, &user.name);
    assert_eq!(st, "code-required", "{info}");
    assert_eq!(s(&info, "method"), Some("totp"), "{info}");
    assert_eq!(u(&info, "locked_until"), None, "{info}");

    let wrong = wrong_code(&e.secret);
    let before = now();
    let mut locked_until = 0;
    for _ in 0..5 {
        let (r, info) = verify(&bus, &user.name, &wrong);
        assert_eq!(r, "invalid", "{info}");
        locked_until = u(&info, "locked_until").unwrap_or(0);
    }
    assert!(
        locked_until >= before + 900 && locked_until <= now() + 900,
        "the fifth failure locks for 900 s: {locked_until}"
    );
    let (st, info) = challenge(&bus, &user.name);
    assert_eq!(st, "locked", "{info}");
    assert_eq!(u(&info, "locked_until"), Some(locked_until), "{info}");
}

#[test]
fn sha256_eight_digits_sixty_seconds() {
    let bus = Bus::start();
    let _d = Daemon::start(
        &bus,
        "[totp]\nalgorithm = \"SHA256\"\ndigits = 8\nperiod_secs = 60\n",
    );
    let user = test_user("otpgd-sha256");
    let code_at = |secret: &str, t: u64| {
        oathtool(
            &[
                "--totp=sha256",
                "-d",
                "8",
                "-s",
                "60s",
                "-b",
                "-",
                "-N",
                &format!("@{t}"),
            ],
            secret,
        )
    };

    let en = call(&bus, "Manager", "Enroll", &[&user.name]).ok();
    let secret = en["secret"].as_str().expect("secret").to_string();
    let uri = en["uri"].as_str().expect("uri").to_string();
    let host = nix::unistd::gethostname()
        .expect("hostname")
        .into_string()
        .expect("utf8 hostname");
    let label = format!("otpauth://totp/otpgate:{}@{host}?", user.name);
    assert!(uri.starts_with(&label), "{uri} should start with {label}");
    assert!(uri.contains("algorithm=SHA256&digits=8&period=60"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains("issuer=otpgate"), "{uri}");

    let t = now();
    let confirm = code_at(&secret, t);
    assert_eq!(confirm.len(), 8);
    let codes = call(&bus, "Manager", "Confirm", &[&user.name, &confirm]).ok();
    assert_eq!(codes.as_array().map(Vec::len), Some(10), "{codes}");

    let (r, info) = verify(&bus, &user.name, &confirm);
    assert_eq!(r, "replayed", "{info}");
    // A SHA1 6-digit 30 s code of the same secret is not a code here.
    let (r, info) = verify(&bus, &user.name, &oathtool_at(&secret, t));
    assert_eq!(r, "invalid", "{info}");
    let (r, info) = verify(&bus, &user.name, &code_at(&secret, t + 60));
    assert_eq!(r, "ok", "{info}");
    assert_eq!(s(&info, "method_used"), Some("totp"), "{info}");
}
