//! The module in the real login(1) (shadow), on a pseudo-terminal, as a
//! console or serial login runs it: login is started by root for the user,
//! asks the code through PAM on the terminal, and on success the user's
//! shell runs there.
//!
//! login has a fixed PAM service name: /etc/pam.d/login is replaced for the
//! length of the test and restored by a guard, also when the test fails.
//! Everything that needs the replaced file is in this one test so nothing
//! else runs with it. The stack asks only the second factor (then
//! pam_permit), so the test user needs no password and only the code
//! decides.

mod pam_common;

use std::time::Duration;

use otpgate_tests::*;
use pam_common::*;

/// Generous for a shared CI machine; each step takes well under a second
/// (the test stack has no pam_faildelay).
const STEP: Duration = Duration::from_secs(20);

/// The daemon's audit lines for `event` and `user`.
fn audit_lines(log: &str, event: &str, user: &str) -> Vec<String> {
    let user = format!(" user={user} ");
    log.lines()
        .filter(|l| l.contains(&format!("event={event} ")) && l.contains(&user))
        .map(str::to_string)
        .collect()
}

#[test]
fn login_on_a_terminal_takes_a_right_code_once_and_refuses_a_wrong_one() {
    require_root();
    let bus = Bus::start();
    // A wider window than the default so that the code of the step after
    // the enrolment stays valid for minutes: the replay must be refused as
    // used, not as stale.
    let d = Daemon::start(&bus, "[totp]\nwindow = 3\n");
    let user = test_user("otpg-pam-login");
    let e = enroll(&bus, &user.name);
    let _login = EtcFile::write(
        "/etc/pam.d/login",
        &service_text(&format!(
            "{}\nauth required pam_permit.so",
            module_line(&bus.module_args())
        )),
        0o644,
    );
    let mut tmux = Tmux::start("login");
    // What the user's shell prints once logged in; the typed command line
    // cannot contain it (the name comes from `id -un`).
    let logged_in = format!("logged-in-as-{}", user.name);
    let probe = "echo logged-in-as-$(id -un)";

    // A wrong code: refused, no shell.
    let w = tmux.window(&format!("exec login {}", user.name));
    tmux.wait_for(&w, "Verification code: ", 1, STEP);
    tmux.type_line(&w, &wrong_code(&e.secret));
    let screen = tmux.wait_for(&w, "Login incorrect", 1, STEP);
    assert!(screen.contains("Wrong code. 4 attempts left."), "{screen}");
    // No shell: login asks for a user name again.
    tmux.wait_for(&w, " login: ", 1, STEP);

    // The right code: the user's shell runs on the terminal.
    let code = oathtool_at(&e.secret, e.confirmed_at + 30);
    let w = tmux.window(&format!("exec login {}", user.name));
    tmux.wait_for(&w, "Verification code: ", 1, STEP);
    tmux.type_line(&w, &code);
    tmux.type_line(&w, probe);
    let screen = tmux.wait_for(&w, &logged_in, 1, STEP);
    assert!(!screen.contains("Login incorrect"), "{screen}");
    tmux.type_line(&w, "exit");
    assert!(
        wait_until(STEP, || tmux.finished(&w)),
        "login did not end with the shell: {}",
        tmux.screen(&w)
    );

    // The same code again, still inside the window: used, refused.
    let w = tmux.window(&format!("exec login {}", user.name));
    tmux.wait_for(&w, "Verification code: ", 1, STEP);
    tmux.type_line(&w, &code);
    let screen = tmux.wait_for(&w, "Login incorrect", 1, STEP);
    assert!(
        screen.contains("That code was already used: wait for the next one."),
        "{screen}"
    );
    tmux.wait_for(&w, " login: ", 1, STEP);

    // The daemon heard all three from login itself: root, the login
    // service, the terminal.
    let log = d.log();
    for event in ["verify-failed", "verify-ok", "verify-replayed"] {
        let lines = audit_lines(&log, event, &user.name);
        assert_eq!(lines.len(), 1, "{event}: {log}");
        let line = &lines[0];
        assert!(line.contains(" service=login "), "{line}");
        assert!(line.contains(" tty=/dev/pts/"), "{line}");
        assert!(line.ends_with(" caller_uid=0"), "{line}");
    }
}
