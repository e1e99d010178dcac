//! The real service, in-process, on a private bus, with a clock the test
//! moves: pending enrolments expiring, locks running out, the TOTP window
//! and the 30-day statistics, without waiting for wall time.

use std::path::Path;
use std::sync::Arc;

use otpgate_tests::*;
use otpgated::audit::Audit;
use otpgated::clock::ManualClock;
use otpgated::config::Config;
use otpgated::crypto::MasterKey;
use otpgated::engine::Engine;
use otpgated::store::LocalStore;

/// A step boundary far from "now", so oathtool's codes are the test's alone.
const T0: u64 = 1_900_000_020;

struct Service {
    bus: Bus,
    clock: Arc<ManualClock>,
    _conn: zbus::Connection,
    _dir: TestDir,
    _rt: tokio::runtime::Runtime,
}

fn service(config: &str) -> Service {
    let bus = Bus::start();
    let dir = TestDir::new("clock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Arc::new(Engine::new(
        Config::parse(config, Path::new("test.toml")).unwrap(),
        Box::new(LocalStore::open(&dir.join("state")).unwrap()),
        MasterKey::generate().unwrap(),
        clock.clone(),
        Audit::none(),
        rt.handle().clone(),
    ));
    let conn = rt.block_on(otpgated::serve(&bus.address, engine)).unwrap();
    Service {
        bus,
        clock,
        _conn: conn,
        _dir: dir,
        _rt: rt,
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
    s.clock.advance(601);
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
    s.clock.advance(599);
    let code = oathtool_at(&secret, s.clock_now());
    call(&s.bus, "Manager", "Confirm", &[&u.name, &code]).ok();
    assert_eq!(
        call(&s.bus, "Manager", "Status", &[&u.name]).ok()["enrolled"],
        true
    );
}

impl Service {
    fn clock_now(&self) -> u64 {
        use otpgated::clock::Clock;
        self.clock.now()
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
    s.clock.advance(30);
    assert_eq!(verify(&s.bus, &u.name, "000000").0, "invalid");
    let (r, info) = verify(&s.bus, &u.name, "000001");
    assert_eq!(r, "invalid");
    assert_eq!(info["locked_until"], s.clock_now() + 60);
    s.clock.advance(59);
    let right = oathtool_at(&secret, s.clock_now());
    assert_eq!(verify(&s.bus, &u.name, &right).0, "locked");
    s.clock.advance(2);
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
    s.clock.advance(300);
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
    s.clock.advance(30);
    assert_eq!(
        verify(&s.bus, &u.name, &oathtool_at(&secret, s.clock_now())).0,
        "ok"
    );
    verify(&s.bus, &u.name, "111111");
    verify(&s.bus, &u.name, "222222");
    s.clock.advance(61);
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
    s.clock.advance(31 * 86_400);
    let st = call(&s.bus, "Admin", "Stats", &[]).ok();
    assert_eq!(st["successes"], 0);
    assert_eq!(st["failures"], 0);
}
