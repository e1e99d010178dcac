//! pam_otpgate.so through the real libpam, driven by `pamtester`, against
//! the real otpgated on a private system bus. Each test has its own bus,
//! daemon and /etc/pam.d service file (removed when the test ends).

mod pam_common;

use std::time::Duration;

use otpgate_tests::*;
use pam_common::*;

/// What libpam answers when the only module of a stack returns PAM_IGNORE.
const ONLY_IGNORED: &str = "Permission denied";

/// The two ways the module reaches the daemon: its direct socket (the
/// default: socket first, bus if the socket is not there) and `bus_only`.
/// Every scenario below runs on both.
#[derive(Debug, Clone, Copy)]
enum Path {
    Socket,
    Bus,
}

impl Path {
    fn args(self, bus: &Bus) -> String {
        match self {
            Path::Socket => bus.module_args(),
            Path::Bus => bus.bus_only_args(),
        }
    }

    /// A test user of its own per path: the two run in parallel.
    fn user(self, name: &str) -> String {
        match self {
            Path::Socket => format!("{name}-s"),
            Path::Bus => format!("{name}-b"),
        }
    }
}

/// `NAME::over_the_socket` and `NAME::over_the_bus`.
macro_rules! both_paths {
    ($name:ident) => {
        mod $name {
            #[test]
            fn over_the_socket() {
                super::$name(super::Path::Socket)
            }

            #[test]
            fn over_the_bus() {
                super::$name(super::Path::Bus)
            }
        }
    };
}

fn valid_code_passes_and_its_replay_is_refused(path: Path) {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user(&path.user("otpg-pam-ok"));
    let e = enroll(&bus, &user.name);
    let (svc, _f) = etc_pam_service("ok", &module_line(&path.args(&bus)));

    let code = oathtool_at(&e.secret, e.confirmed_at + 30);
    let o = pamtester(&svc, &user.name, &code);
    assert_outcome(&o, true, SUCCESS, PROMPT);

    let o = pamtester(&svc, &user.name, &code);
    assert_outcome(
        &o,
        false,
        AUTH_ERR,
        "That code was already used: wait for the next one.",
    );
}

both_paths!(valid_code_passes_and_its_replay_is_refused);

fn wrong_code_is_refused_with_attempts_left(path: Path) {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user(&path.user("otpg-pam-wrong"));
    let e = enroll(&bus, &user.name);
    let (svc, _f) = etc_pam_service("wrong", &module_line(&path.args(&bus)));

    let o = pamtester(&svc, &user.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code. 4 attempts left.");
    let o = pamtester(&svc, &user.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code. 3 attempts left.");
    // Nothing typed: refused without costing an attempt.
    let o = pamtester(&svc, &user.name, "");
    assert_outcome(&o, false, AUTH_ERR, "No code entered.");
    // A custom prompt.
    let (svc2, _f2) = etc_pam_service(
        "prompt",
        &module_line(&format!("{} [prompt=OTP please: ]", path.args(&bus))),
    );
    let o = pamtester(&svc2, &user.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "OTP please: ");
    assert!(!o.says(PROMPT), "{o:#?}");
}

both_paths!(wrong_code_is_refused_with_attempts_left);

fn too_many_wrong_codes_lock_without_prompting(path: Path) {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "[lockout]\nmax_failures = 2\nduration_secs = 600\n");
    let user = test_user(&path.user("otpg-pam-lock"));
    let e = enroll(&bus, &user.name);
    let (svc, _f) = etc_pam_service("lock", &module_line(&path.args(&bus)));

    let o = pamtester(&svc, &user.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code. 1 attempt left.");
    // The failure that engages the lock says so at once.
    let o = pamtester(&svc, &user.name, &wrong_code(&e.secret));
    assert_outcome(
        &o,
        false,
        AUTH_ERR,
        "Wrong code. Too many wrong codes: locked until ",
    );

    // Locked: even the right code is not asked for.
    let o = pamtester(
        &svc,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert_outcome(&o, false, MAXTRIES, "Too many wrong codes: locked until ");
    assert!(!o.says(PROMPT), "no prompt while locked: {o:#?}");
}

both_paths!(too_many_wrong_codes_lock_without_prompting);

fn not_enrolled_needs_nullok(path: Path) {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user(&path.user("otpg-pam-noenrol"));
    let plain = module_line(&path.args(&bus));
    let nullok = module_line(&format!("{} nullok", path.args(&bus)));

    let (svc, _f) = etc_pam_service("strict", &plain);
    let o = pamtester(&svc, &user.name, "");
    assert_outcome(
        &o,
        false,
        AUTH_ERR,
        "No second factor is set up for this account",
    );
    assert!(!o.says(PROMPT), "{o:#?}");

    // nullok: PAM_IGNORE. Alone in a stack that is libpam's "no verdict"...
    let (svc, _f2) = etc_pam_service("nullok", &nullok);
    let o = pamtester(&svc, &user.name, "");
    assert_outcome(&o, false, ONLY_IGNORED, "");
    assert!(!o.says(PROMPT) && !o.says("second factor"), "{o:#?}");
    // ...and in a real stack the other modules decide.
    let (svc, _f3) = etc_pam_service(
        "nullok-stack",
        &format!("{nullok}\nauth required pam_permit.so"),
    );
    let o = pamtester(&svc, &user.name, "");
    assert_outcome(&o, true, SUCCESS, "");

    // nullok does not excuse an enrolled user.
    let e = enroll(&bus, &user.name);
    let o = pamtester(&svc, &user.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code.");
}

both_paths!(not_enrolled_needs_nullok);

fn daemon_down_is_unavailable_fast_and_hung_daemon_within_timeout(path: Path) {
    require_root();
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let user = test_user(&path.user("otpg-pam-down"));
    let e = enroll(&bus, &user.name);
    let code = oathtool_at(&e.secret, e.confirmed_at + 30);
    let (svc, _f) = etc_pam_service(
        "down",
        &module_line(&format!("{} timeout=2", path.args(&bus))),
    );

    // Hung (SIGSTOP): the module waits `timeout`, then gives up.
    {
        let _stopped = Stopped::stop(d.pid);
        let o = pamtester(&svc, &user.name, &code);
        eprintln!("hung daemon, timeout=2: answered in {:?}", o.elapsed);
        assert_outcome(
            &o,
            false,
            AUTHINFO_UNAVAIL,
            "otpgate did not answer in time: second factor unavailable.",
        );
        assert!(
            o.elapsed >= Duration::from_secs(2) && o.elapsed < Duration::from_secs(3),
            "took {:?}",
            o.elapsed
        );
    }

    // Gone (the name has no owner): at once.
    d.kill();
    assert!(wait_until(Duration::from_secs(10), || !bus.has_owner(proto::BUS_NAME)));
    let o = pamtester(&svc, &user.name, &code);
    eprintln!("stopped daemon: answered in {:?}", o.elapsed);
    assert_outcome(
        &o,
        false,
        AUTHINFO_UNAVAIL,
        "otpgate is not running: second factor unavailable.",
    );
    assert!(!o.says(PROMPT), "{o:#?}");
    assert!(o.elapsed < Duration::from_secs(3), "took {:?}", o.elapsed);

    // No bus at all.
    let args = path.args(&bus);
    drop(bus);
    let (svc, _f2) = etc_pam_service("nobus", &module_line(&args));
    let o = pamtester(&svc, &user.name, &code);
    assert_outcome(
        &o,
        false,
        AUTHINFO_UNAVAIL,
        "otpgate is not running: second factor unavailable.",
    );
    assert!(o.elapsed < Duration::from_secs(3), "took {:?}", o.elapsed);
}

both_paths!(daemon_down_is_unavailable_fast_and_hung_daemon_within_timeout);

fn failmode_open_steps_aside_only_when_the_daemon_is_absent(path: Path) {
    require_root();
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let user = test_user(&path.user("otpg-pam-open"));
    let e = enroll(&bus, &user.name);
    let open = module_line(&format!("{} failmode=open timeout=2", path.args(&bus)));
    let (alone, _f) = etc_pam_service("open", &open);
    let (stack, _f2) = etc_pam_service(
        "open-stack",
        &format!("{open}\nauth required pam_permit.so"),
    );

    // Daemon there: failmode=open changes nothing.
    let o = pamtester(&stack, &user.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code.");

    // Found, then silent (SIGSTOP: the bus takes the call, the daemon never
    // answers): refused after the timeout even with failmode=open, and even
    // with a stack that would let the password alone through. A local user
    // can make a daemon slow; only absence may open.
    {
        let _stopped = Stopped::stop(d.pid);
        for svc in [&alone, &stack] {
            let o = pamtester(svc, &user.name, "");
            assert_outcome(
                &o,
                false,
                AUTHINFO_UNAVAIL,
                "otpgate did not answer in time: second factor unavailable.",
            );
            assert!(
                o.elapsed >= Duration::from_secs(2) && o.elapsed < Duration::from_secs(4),
                "took {:?}",
                o.elapsed
            );
        }
    }

    // Gone: ignored, the rest of the stack lets the user in.
    d.kill();
    assert!(wait_until(Duration::from_secs(10), || !bus.has_owner(proto::BUS_NAME)));
    let o = pamtester(&alone, &user.name, "");
    assert_outcome(&o, false, ONLY_IGNORED, "");
    assert!(!o.says("second factor unavailable"), "{o:#?}");
    let o = pamtester(&stack, &user.name, "");
    assert_outcome(&o, true, SUCCESS, "");
}

both_paths!(failmode_open_steps_aside_only_when_the_daemon_is_absent);

#[test]
fn a_name_owned_by_a_non_root_process_is_never_believed() {
    require_root();
    // A bus on which anyone may own org.otpgate.Otpgate1, and a user's own
    // service on it that answers "ok" to every code.
    let bus = Bus::start_open();
    let mallory = test_user("otpg-pam-mallory");
    let victim = test_user("otpg-pam-victim");
    let fake = FakeDaemon::start(&bus, Some(&mallory), "ok");

    for args in ["", "failmode=open", "nullok failmode=open"] {
        let (svc, _f) = etc_pam_service(
            "impostor",
            &format!(
                "{}\nauth required pam_permit.so",
                module_line(&format!("{} {args}", bus.module_args()))
            ),
        );
        let o = pamtester(&svc, &victim.name, "000000");
        assert_outcome(
            &o,
            false,
            AUTHINFO_UNAVAIL,
            "otpgate is not run by root on this bus: second factor unavailable.",
        );
        assert!(!o.says(PROMPT), "{o:#?}");
    }
    drop(fake);

    // Control: the same impostor run by root is believed, so it is the
    // owner check above that refused it.
    let _fake = FakeDaemon::start(&bus, None, "ok");
    let (svc, _f) = etc_pam_service("impostor-root", &module_line(&bus.module_args()));
    let o = pamtester(&svc, &victim.name, "000000");
    assert_outcome(&o, true, SUCCESS, PROMPT);
}

#[test]
fn answers_outside_the_contract_are_refusals() {
    require_root();
    let bus = Bus::start_open();
    let user = test_user("otpg-pam-garbled");
    for answer in ["unknown-word", "wrong-type"] {
        let _fake = FakeDaemon::start(&bus, None, answer);
        let (svc, _f) = etc_pam_service(
            "garbled",
            &format!(
                "{}\nauth required pam_permit.so",
                module_line(&format!("{} failmode=open nullok", bus.module_args()))
            ),
        );
        let o = pamtester(&svc, &user.name, "123456");
        assert_outcome(
            &o,
            false,
            AUTH_ERR,
            "otpgate gave an answer this login does not understand: refused.",
        );
    }
}

fn backup_code_passes_once_and_says_how_many_are_left(path: Path) {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user(&path.user("otpg-pam-backup"));
    let e = enroll(&bus, &user.name);
    let (svc, _f) = etc_pam_service("backup", &module_line(&path.args(&bus)));
    let left = e.backup_codes.len() - 1;

    let o = pamtester(&svc, &user.name, &e.backup_codes[0]);
    assert_outcome(
        &o,
        true,
        SUCCESS,
        &format!("Backup code accepted: {left} left."),
    );
    let o = pamtester(&svc, &user.name, &e.backup_codes[0]);
    assert!(!o.success, "a backup code works once: {o:#?}");
}

both_paths!(backup_code_passes_once_and_says_how_many_are_left);

fn unknown_options_are_ignored_and_bad_values_keep_safe_defaults(path: Path) {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user(&path.user("otpg-pam-opts"));
    let e = enroll(&bus, &user.name);
    let (svc, _f) = etc_pam_service(
        "opts",
        &module_line(&format!(
            "frobnicate failmode=maybe timeout=abc {} debug",
            path.args(&bus)
        )),
    );
    let o = pamtester(
        &svc,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert_outcome(&o, true, SUCCESS, PROMPT);
}

both_paths!(unknown_options_are_ignored_and_bad_values_keep_safe_defaults);
