//! The module in a real console locker: Debian's vlock, started by the
//! user on a pseudo-terminal (`vlock -c` locks the terminal it runs on). It
//! authenticates the user who started it through its own PAM service,
//! `vlock`; after the user's attempt fails it offers root's.
//!
//! Debian installs vlock-main setuid root and it keeps euid 0 while PAM runs,
//! so there the daemon sees root. A locker that runs entirely as the user is
//! the case the access table exists for (a user may verify only its own
//! codes): the same vlock started with no_new_privs, where the setuid bit
//! does not apply and every uid of the process is the user's. Both are
//! tested.
//!
//! vlock has a fixed PAM service name: /etc/pam.d/vlock is written for the
//! length of each test and restored by a guard; the tests take turns. The
//! stack asks only the second factor (then pam_permit), so only the code
//! decides.

mod pam_common;

use std::fs;
use std::sync::Mutex;
use std::time::Duration;

use otpgate_tests::*;
use pam_common::*;

/// Generous for a shared CI machine; each step takes well under a second.
const STEP: Duration = Duration::from_secs(20);

/// /etc/pam.d/vlock is one file: one test at a time writes it.
static PAM_VLOCK: Mutex<()> = Mutex::new(());

const LOCKED: &str = "Please press [ENTER] to unlock.";
const UNLOCKED: &str = "vlock-exit-status-0";

/// The daemon's audit lines for `event` and `user`.
fn audit_lines(log: &str, event: &str, user: &str) -> Vec<String> {
    let user = format!(" user={user} ");
    log.lines()
        .filter(|l| l.contains(&format!("event={event} ")) && l.contains(&user))
        .map(str::to_string)
        .collect()
}

/// The real, effective, saved and file-system uids of `pid`.
fn uids(pid: i32) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line")
        .split_whitespace()
        .map(|u| u.parse().expect("uid"))
        .collect()
}

/// The pid of vlock-main under the window's shell (setpriv and the vlock
/// script exec it, so it is the shell's only child).
fn vlock_main_pid(tmux: &Tmux, w: &Window) -> i32 {
    let shell = tmux.pane_pid(w);
    let children = fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .expect("read the shell's children");
    let pid: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no process under the window's shell: {children:?}"));
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "vlock-main", "pid {pid}");
    pid
}

/// Locks a new terminal as `user`, presses Enter and waits for the code
/// prompt; the window and the uids vlock-main runs PAM with.
fn lock(tmux: &mut Tmux, user: &TestUser, no_new_privs: bool) -> (Window, Vec<u32>) {
    let w = tmux.window(&format!(
        "setpriv --reuid={} --regid={} --init-groups --reset-env {} -- vlock -c; \
         echo vlock-exit-status-$?",
        user.uid,
        user.gid,
        if no_new_privs { "--no-new-privs" } else { "" }
    ));
    tmux.wait_for(&w, LOCKED, 1, STEP);
    tmux.type_line(&w, "");
    tmux.wait_for(&w, &format!("{}'s Verification code: ", user.name), 1, STEP);
    let uids = uids(vlock_main_pid(tmux, &w));
    (w, uids)
}

/// Wrong code, right code, the right code replayed: the terminal unlocks
/// only for the right one. The audit lines carry the caller's uid as the
/// daemon saw it; `caller_uid` is what it must be.
fn unlocks_with_a_right_code_once(label: &str, no_new_privs: bool) {
    require_root();
    let _turn = PAM_VLOCK.lock().unwrap_or_else(|p| p.into_inner());
    let bus = Bus::start();
    // A wider window than the default so that the code of the step after
    // the enrolment stays valid for minutes: the replay must be refused as
    // used, not as stale.
    let d = Daemon::start(&bus, "[totp]\nwindow = 3\n");
    let user = test_user(&format!("otpg-pam-{label}"));
    let e = enroll(&bus, &user.name);
    let _vlock = EtcFile::write(
        "/etc/pam.d/vlock",
        &service_text(&format!(
            "{}\nauth required pam_permit.so",
            module_line(&bus.module_args())
        )),
        0o644,
    );
    let mut tmux = Tmux::start(label);
    let expected_uids = if no_new_privs {
        vec![user.uid; 4]
    } else {
        vec![user.uid, 0, 0, 0]
    };

    // A wrong code, then root's turn (refused: root is not enrolled, and a
    // user's locker may not ask about root): still locked.
    let (w, seen) = lock(&mut tmux, &user, no_new_privs);
    assert_eq!(seen, expected_uids, "vlock-main's uids during PAM");
    tmux.type_line(&w, &wrong_code(&e.secret));
    let screen = tmux.wait_for(&w, "Wrong code. 4 attempts left.", 1, STEP);
    assert!(!screen.contains(UNLOCKED), "{screen}");
    let screen = tmux.wait_for(&w, LOCKED, 2, STEP);
    assert!(!tmux.finished(&w), "{screen}");

    // The right code unlocks.
    let code = oathtool_at(&e.secret, e.confirmed_at + 30);
    tmux.type_line(&w, "");
    tmux.wait_for(&w, "Verification code: ", 2, STEP);
    tmux.type_line(&w, &code);
    tmux.wait_for(&w, UNLOCKED, 1, STEP);

    // Locked again: the same code, still inside the window, is used.
    let (w, seen) = lock(&mut tmux, &user, no_new_privs);
    assert_eq!(seen, expected_uids, "vlock-main's uids during PAM");
    tmux.type_line(&w, &code);
    let screen = tmux.wait_for(
        &w,
        "That code was already used: wait for the next one.",
        1,
        STEP,
    );
    assert!(!screen.contains(UNLOCKED), "{screen}");
    let screen = tmux.wait_for(&w, LOCKED, 2, STEP);
    assert!(!tmux.finished(&w), "{screen}");

    let log = d.log();
    let caller_uid = format!(" caller_uid={}", expected_uids[1]);
    for event in ["verify-failed", "verify-ok", "verify-replayed"] {
        let lines = audit_lines(&log, event, &user.name);
        assert_eq!(lines.len(), 1, "{event}: {log}");
        let line = &lines[0];
        assert!(line.contains(" service=vlock "), "{line}");
        assert!(line.ends_with(&caller_uid), "{line}");
    }
    if no_new_privs {
        // The locker's turn for root, from the user's uid: the access table
        // refused it before any code was asked for.
        let denied = format!("event=access-denied caller_uid={} user=root ", user.uid);
        assert!(log.contains(&denied), "{log}");
    }
}

#[test]
fn vlock_as_installed_unlocks_with_a_right_code_once() {
    unlocks_with_a_right_code_once("vlock", false);
}

#[test]
fn vlock_running_as_the_user_unlocks_with_its_own_right_code_once() {
    unlocks_with_a_right_code_once("vlocknnp", true);
}
