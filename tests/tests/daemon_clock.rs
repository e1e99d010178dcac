//! The real service, in-process, on a private bus, with a clock the test
//! moves: pending enrolments expiring, locks running out, the TOTP window
//! and the 30-day statistics, without waiting for wall time.

use otpgate_tests::inproc::{InProcess, T0};
use otpgate_tests::*;

/// The private bus and the service on it (dropped first).
struct Service {
    svc: InProcess,
    bus: Bus,
}

fn service(config: &str) -> Service {
    let bus = Bus::start();
    Service {
        svc: InProcess::start(&bus, config),
        bus,
    }
}

fn start_enrolment(s: &Service, user: &str) -> String {
    let e = call(&s.bus, "Manager", "Enroll", &[user]).ok();
    e["secret"].as_str().unwrap().to_string()
}

#[test]
fn a_pending_enrolment_expires_after_ten_minutes() {
    let s = service("");
    let u = test_user("otpgclock1");
    let secret = start_enrolment(&s, &u.name);
    s.svc.clock.advance(601);
    let code = oathtool_at(&secret, s.clock_now());
    let r = call(&s.bus, "Manager", "Confirm", &[&u.name, &code]);
    assert_eq!(
        r.err_name(),
        Some("org.otpgate.Otpgate1.Error.PendingExpired"),
        "{r:?}"
    );
    let st = call(&s.bus, "Manager", "Status", &[&u.name]).ok();
    assert_eq!(st["pending"], false);
    assert_eq!(st["enrolled"], false);
    // Just inside the ten minutes, it confirms.
    let secret = start_enrolment(&s, &u.name);
    s.svc.clock.advance(599);
    let code = oathtool_at(&secret, s.clock_now());
    call(&s.bus, "Manager", "Confirm", &[&u.name, &code]).ok();
    assert_eq!(
        call(&s.bus, "Manager", "Status", &[&u.name]).ok()["enrolled"],
        true
    );
}

impl Service {
    fn clock_now(&self) -> u64 {
        self.svc.now()
    }

    fn enrol(&self, user: &str) -> String {
        let secret = start_enrolment(self, user);
        let code = oathtool_at(&secret, self.clock_now());
        call(&self.bus, "Manager", "Confirm", &[user, &code]).ok();
        secret
    }
}

#[test]
fn a_lock_runs_out_after_its_duration_and_gives_a_fresh_set_of_tries() {
    let s = service("[lockout]\nmax_failures = 2\nduration_secs = 60\n");
    let u = test_user("otpgclock2");
    let secret = s.enrol(&u.name);
    s.svc.clock.advance(30);
    assert_eq!(verify(&s.bus, &u.name, "000000").0, "invalid");
    let (r, info) = verify(&s.bus, &u.name, "000001");
    assert_eq!(r, "invalid");
    assert_eq!(info["locked_until"], s.clock_now() + 60);
    s.svc.clock.advance(59);
    let right = oathtool_at(&secret, s.clock_now());
    assert_eq!(verify(&s.bus, &u.name, &right).0, "locked");
    s.svc.clock.advance(2);
    let right = oathtool_at(&secret, s.clock_now());
    let (r, info) = verify(&s.bus, &u.name, &right);
    assert_eq!(r, "ok", "{info}");
    assert_eq!(info["attempts_left"], 2);
}

#[test]
fn the_window_accepts_one_step_either_side_and_no_more() {
    let s = service("");
    let u = test_user("otpgclock3");
    let secret = s.enrol(&u.name);
    s.svc.clock.advance(300);
    let t = s.clock_now();
    assert_eq!(
        verify(&s.bus, &u.name, &oathtool_at(&secret, t - 60)).0,
        "invalid"
    );
    assert_eq!(
        verify(&s.bus, &u.name, &oathtool_at(&secret, t + 60)).0,
        "invalid"
    );
    assert_eq!(
        verify(&s.bus, &u.name, &oathtool_at(&secret, t - 30)).0,
        "ok"
    );
    // A newer step is still fine; the older one is now used up.
    assert_eq!(
        verify(&s.bus, &u.name, &oathtool_at(&secret, t + 30)).0,
        "ok"
    );
    assert_eq!(
        verify(&s.bus, &u.name, &oathtool_at(&secret, t)).0,
        "replayed"
    );
}

#[test]
fn stats_count_the_last_thirty_days() {
    let s = service("[lockout]\nmax_failures = 2\nduration_secs = 60\n");
    let u = test_user("otpgclock4");
    let secret = s.enrol(&u.name);
    s.svc.clock.advance(30);
    assert_eq!(
        verify(&s.bus, &u.name, &oathtool_at(&secret, s.clock_now())).0,
        "ok"
    );
    verify(&s.bus, &u.name, "111111");
    verify(&s.bus, &u.name, "222222");
    s.svc.clock.advance(61);
    let backup = call(&s.bus, "Manager", "RegenerateBackupCodes", &[&u.name, ""]).ok();
    let code = backup[0].as_str().unwrap();
    assert_eq!(verify(&s.bus, &u.name, code).0, "ok");
    let st = call(&s.bus, "Admin", "Stats", &[]).ok();
    assert!(st["users_enrolled"].as_u64().unwrap() >= 1);
    assert_eq!(st["successes"], 2);
    assert_eq!(st["failures"], 2);
    assert_eq!(st["lockouts"], 1);
    assert_eq!(st["backup_codes_used"], 1);
    assert_eq!(st["days"], 30);
    s.svc.clock.advance(31 * 86_400);
    let st = call(&s.bus, "Admin", "Stats", &[]).ok();
    assert_eq!(st["successes"], 0);
    assert_eq!(st["failures"], 0);
}

fn verify_from(s: &Service, user: &str, code: &str, rhost: &str) -> (String, serde_json::Value) {
    let ctx = format!(r#"{{"service":"sshd","rhost":"{rhost}"}}"#);
    let v = call(&s.bus, "Auth", "Verify", &[user, code, &ctx]).ok();
    (v[0].as_str().unwrap().to_string(), v[1].clone())
}

#[test]
fn each_lock_in_a_row_lasts_twice_as_long_up_to_the_cap() {
    let s = service("[lockout]\nmax_failures = 1\nduration_secs = 60\nmax_duration_secs = 200\n");
    let u = test_user("otpgclock5");
    let secret = s.enrol(&u.name);
    let mut lengths = Vec::new();
    for _ in 0..4 {
        s.svc.clock.advance(1);
        let (r, info) = verify(&s.bus, &u.name, "000000");
        assert_eq!(r, "invalid");
        let until = info["locked_until"].as_u64().unwrap();
        lengths.push(until - s.clock_now());
        s.svc.clock.set(until);
    }
    assert_eq!(lengths, [60, 120, 200, 200]);
    // A success ends the streak: the next lock is short again.
    s.svc.clock.advance(30);
    assert_eq!(
        verify(&s.bus, &u.name, &oathtool_at(&secret, s.clock_now())).0,
        "ok"
    );
    let (_, info) = verify(&s.bus, &u.name, "000000");
    assert_eq!(info["locked_until"].as_u64().unwrap() - s.clock_now(), 60);
}

#[test]
fn many_failures_from_one_host_slow_that_host_down_for_every_user() {
    let s =
        service("[lockout]\nmax_failures = 5\nsource_max_failures = 3\nsource_window_secs = 100\n");
    let users: Vec<_> = ["otpgclock6", "otpgclock7", "otpgclock8"]
        .iter()
        .map(|n| {
            let u = test_user(n);
            let secret = s.enrol(&u.name);
            (u.name, secret)
        })
        .collect();
    s.svc.clock.advance(30);
    let attacker = "198.51.100.9";
    for (name, _) in &users {
        assert_eq!(verify_from(&s, name, "000000", attacker).0, "invalid");
    }
    // The host is refused now, even with a right code, for every user...
    let (name, secret) = &users[0];
    let right = oathtool_at(secret, s.clock_now());
    let (r, info) = verify_from(&s, name, &right, attacker);
    assert_eq!(r, "locked", "{info}");
    assert_eq!(info["locked_until"], T0 + 30 + 100);
    // ...without costing the user a try, and other hosts are not affected.
    let st = call(&s.bus, "Manager", "Status", &[name]).ok();
    assert_eq!(st["failures"], 1);
    assert_eq!(verify_from(&s, name, &right, "203.0.113.5").0, "ok");
    // Local logins (no rhost) are never limited by source.
    let (name2, secret2) = &users[1];
    assert_eq!(
        verify(&s.bus, name2, &oathtool_at(secret2, s.clock_now())).0,
        "ok"
    );
    // The window ends.
    s.svc.clock.advance(100);
    let (name3, secret3) = &users[2];
    let right3 = oathtool_at(secret3, s.clock_now());
    assert_eq!(verify_from(&s, name3, &right3, attacker).0, "ok");
}
