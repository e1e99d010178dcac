//! Re-authentication before a destructive change (`[self_service] reauth
//! = "password+code"`): the real daemon checks the account's real
//! pam_unix password (set with chpasswd) through a PAM service file of
//! this test under /etc/pam.d, as well as the code; a wrong password counts
//! against the same lockout as a wrong code; "code" mode is unchanged;
//! administrators need neither. Through the bus (otpgate-testcall) and the
//! real CLI, on stdin and on a terminal.

mod cli_common;
mod pam_common;

use cli_common::{otpgate, otpgate_stdin, As, TtySession};
use otpgate_tests::*;
use pam_common::*;

const PASSWORD: &str = "Correct horse 7 battery";
const PASSWORD_REQUIRED: &str = "org.otpgate.Otpgate1.Error.PasswordRequired";
const INVALID_CODE: &str = "org.otpgate.Otpgate1.Error.InvalidCode";
const LOCKED: &str = "org.otpgate.Otpgate1.Error.Locked";

/// The shipped stack's two lines (packaging/pam.d/otpgate-reauth), with
/// `nodelay` so that the wrong passwords of the test do not wait 2 s each.
fn reauth_service() -> (String, EtcFile) {
    let name = unique("reauth");
    let f = EtcFile::write(
        format!("/etc/pam.d/{name}"),
        "# written by an otpgate test, removed when it ends\n\
         auth required pam_unix.so nodelay\n\
         account required pam_unix.so\n",
        0o644,
    );
    (name, f)
}

fn password_mode(service: &str) -> String {
    format!("[self_service]\nreauth = \"password+code\"\npam_service = \"{service}\"\n")
}

fn status(bus: &Bus, user: &str) -> std::collections::HashMap<String, serde_json::Value> {
    dict(&call(bus, "Manager", "Status", &[user]).ok())
}

fn failures(bus: &Bus, user: &str) -> u64 {
    status(bus, user)["failures"].as_u64().expect("failures")
}

fn enrolled(bus: &Bus, user: &str) -> bool {
    status(bus, user)["enrolled"].as_bool().expect("enrolled")
}

#[test]
fn disable_needs_the_password_and_the_code_and_a_wrong_password_counts_to_the_lock() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = reauth_service();
    let _d = Daemon::start(&bus, &password_mode(&svc));
    let user = test_user("otpgreauth1");
    set_password(&user, PASSWORD);
    let e = enroll(&bus, &user.name);
    let code = e.backup_codes[0].clone();
    let me = Some(user.uid);

    // The old method: the password is asked for, nothing is counted.
    let r = call_as(&bus, me, "Manager", "Disable", &[&user.name, &code]);
    assert_eq!(r.err_name(), Some(PASSWORD_REQUIRED), "{r:?}");
    let r = call_as(
        &bus,
        me,
        "Manager",
        "RegenerateBackupCodes",
        &[&user.name, &code],
    );
    assert_eq!(r.err_name(), Some(PASSWORD_REQUIRED), "{r:?}");
    assert_eq!(failures(&bus, &user.name), 0);

    // The right code and a wrong password: refused and counted, through
    // the CLI (password on stdin) and the bus.
    otpgate_stdin(
        &bus,
        As::User(&user),
        &["disable", "--code", &code, "--password-stdin"],
        "not the password\n",
    )
    .fails_with("Wrong password or code. 4 attempts left.");
    assert_eq!(failures(&bus, &user.name), 1);
    // The right password and a wrong code read the same, and count too.
    let r = call_as(
        &bus,
        me,
        "Manager",
        "DisableWithPassword",
        &[&user.name, &wrong_code(&e.secret), PASSWORD],
    );
    assert_eq!(r.err_name(), Some(INVALID_CODE), "{r:?}");
    assert!(
        matches!(&r, CallResult::Err { message, .. } if message == "Wrong password or code. 3 attempts left."),
        "{r:?}"
    );
    assert_eq!(failures(&bus, &user.name), 2);
    for n in 3..=4 {
        let r = call_as(
            &bus,
            me,
            "Manager",
            "RegenerateBackupCodesWithPassword",
            &[&user.name, &code, "wrong"],
        );
        assert_eq!(r.err_name(), Some(INVALID_CODE), "{r:?}");
        assert_eq!(failures(&bus, &user.name), n);
    }
    // The fifth failure ([lockout] max_failures = 5) locks.
    let r = call_as(
        &bus,
        me,
        "Manager",
        "DisableWithPassword",
        &[&user.name, &code, "wrong again"],
    );
    assert_eq!(r.err_name(), Some(LOCKED), "{r:?}");
    let st = status(&bus, &user.name);
    assert_eq!(st["locked"], serde_json::json!(true), "{st:?}");
    assert_eq!(st["failures"], serde_json::json!(5), "{st:?}");
    // Locked: even both right are refused, and not counted.
    let r = call_as(
        &bus,
        me,
        "Manager",
        "DisableWithPassword",
        &[&user.name, &code, PASSWORD],
    );
    assert_eq!(r.err_name(), Some(LOCKED), "{r:?}");
    assert!(enrolled(&bus, &user.name));
    // The history says what failed.
    let h = call(&bus, "Manager", "History", &[&user.name]).ok();
    assert!(h.to_string().contains("wrong password"), "{h}");

    // Unlocked by an administrator, the right password and code work; the
    // backup code was not used up by the refused calls.
    call(&bus, "Admin", "Unlock", &[&user.name]).ok();
    let out = otpgate_stdin(
        &bus,
        As::User(&user),
        &["backup-codes", "--code", "-", "--password-stdin", "--json"],
        &format!("{code}\n{PASSWORD}\n"),
    );
    let fresh = cli_common::strings(&out.json()["backup_codes"]);
    assert_eq!(fresh.len(), e.backup_codes.len());
    otpgate_stdin(
        &bus,
        As::User(&user),
        &["disable", "--code", &fresh[0], "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .ok();
    assert!(!enrolled(&bus, &user.name));
}

#[test]
fn on_a_terminal_the_cli_asks_for_the_password_without_echo() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = reauth_service();
    let _d = Daemon::start(&bus, &password_mode(&svc));
    let user = test_user("otpgreauth2");
    set_password(&user, PASSWORD);
    let e = enroll(&bus, &user.name);
    let mut t = TtySession::start(
        &bus,
        As::User(&user),
        &["disable", "--code", &e.backup_codes[0]],
    );
    t.wait_for(&format!("Password for {}: ", user.name), 1);
    t.type_line(PASSWORD);
    let (code, text) = t.finish();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("is removed"), "{text}");
    assert!(!text.contains(PASSWORD), "the password was echoed: {text}");
    assert!(!enrolled(&bus, &user.name));
}

#[test]
fn code_mode_is_unchanged_and_takes_no_password() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpgreauth3");
    let e = enroll(&bus, &user.name);
    // A password given is ignored, wrong as it is.
    let out = otpgate_stdin(
        &bus,
        As::User(&user),
        &[
            "backup-codes",
            "--code",
            &e.backup_codes[0],
            "--password-stdin",
            "--json",
        ],
        "anything\n",
    );
    let fresh = cli_common::strings(&out.json()["backup_codes"]);
    otpgate(&bus, As::User(&user), &["disable", "--code", &fresh[0]]).ok();
    assert!(!enrolled(&bus, &user.name));
    assert_eq!(failures(&bus, &user.name), 0);
}

#[test]
fn administrators_need_neither_password_nor_code() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = reauth_service();
    let _d = Daemon::start(&bus, &password_mode(&svc));
    let admin = admin_group_member("otpgreauthadm");
    let user = test_user("otpgreauth4");
    set_password(&user, PASSWORD);

    enroll(&bus, &user.name);
    otpgate(
        &bus,
        As::User(&admin),
        &["backup-codes", "--user", &user.name, "--json"],
    )
    .json();
    otpgate(&bus, As::User(&admin), &["disable", "--user", &user.name]).ok();
    assert!(!enrolled(&bus, &user.name));

    enroll(&bus, &user.name);
    otpgate(&bus, As::Root, &["disable", "--user", &user.name]).ok();
    assert!(!enrolled(&bus, &user.name));
    assert_eq!(failures(&bus, &user.name), 0);
}

#[test]
fn removing_a_device_needs_the_password_too() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = reauth_service();
    let _d = Daemon::start(&bus, &password_mode(&svc));
    let user = test_user("otpgreauth5");
    set_password(&user, PASSWORD);
    let e = enroll(&bus, &user.name);
    let spare = call(
        &bus,
        "Manager",
        "Enroll",
        &[&user.name, "totp", "", "spare"],
    )
    .ok();
    let secret = spare["secret"].as_str().unwrap().to_string();
    call(
        &bus,
        "Manager",
        "Confirm",
        &[&user.name, &oathtool_at(&secret, now())],
    )
    .ok();
    let me = Some(user.uid);
    let code = e.backup_codes[0].clone();
    let r = call_as(
        &bus,
        me,
        "Manager",
        "RemoveDevice",
        &[&user.name, "spare", &code],
    );
    assert_eq!(r.err_name(), Some(PASSWORD_REQUIRED), "{r:?}");
    assert_eq!(failures(&bus, &user.name), 0);
    let r = call_as(
        &bus,
        me,
        "Manager",
        "RemoveDeviceWithPassword",
        &[&user.name, "spare", &code, "not the password"],
    );
    assert_eq!(r.err_name(), Some(INVALID_CODE), "{r:?}");
    assert_eq!(failures(&bus, &user.name), 1);
    // Through the CLI: with no terminal to ask on, it says how to give the
    // password (and nothing is counted); a wrong one on stdin is counted;
    // the right one removes the device.
    otpgate(
        &bus,
        As::User(&user),
        &["remove-device", "spare", "--code", &code],
    )
    .fails_with("--password-stdin");
    assert_eq!(failures(&bus, &user.name), 1);
    let remove = ["remove-device", "spare", "--code", "-", "--password-stdin"];
    otpgate_stdin(
        &bus,
        As::User(&user),
        &remove,
        &format!("{code}\nnot the password\n"),
    )
    .fails_with("Wrong password or code.");
    assert_eq!(failures(&bus, &user.name), 2);
    otpgate_stdin(
        &bus,
        As::User(&user),
        &remove,
        &format!("{code}\n{PASSWORD}\n"),
    )
    .ok();
    let st = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(st["devices"].as_array().map(Vec::len), Some(1), "{st}");
}
