//! `forward_pass`: one prompt takes the password and the code, the code
//! last; the module checks the code and hands the password to
//! `pam_unix.so use_first_pass`. Through a real sshd with password
//! authentication only (what ansible, scp and sftp with sshpass or
//! SSH_ASKPASS do: one answer to one prompt), and through pamtester.

mod pam_common;

use otpgate_tests::*;
use pam_common::sshd::{Sshd, PASSWORD_ONLY};
use pam_common::*;

const PASSWORD: &str = "Corr3ct horse 42";

/// Room for several logins of the same test, each with a fresh code:
/// the steps after the enrolment's, in order (replay marks only move up).
const DAEMON_TOML: &str = "[totp]\nwindow = 5\n";

/// The auth stack documented for one-prompt clients.
fn forward_pass_stack(bus: &Bus) -> String {
    format!(
        "{}\nauth required pam_unix.so use_first_pass",
        module_line(&format!("{} forward_pass", bus.module_args()))
    )
}

#[test]
fn ssh_with_password_and_code_in_one_answer() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, DAEMON_TOML);
    let user = test_user("otpg-pam-fwd-ssh");
    set_password(&user, PASSWORD);
    let e = enroll(&bus, &user.name);
    let code = |n: u64| oathtool_at(&e.secret, e.confirmed_at + 30 * n);

    let dir = TestDir::new("sshd-fwd");
    let service = unique("sshd-fwd");
    let _pam = EtcFile::write(
        format!("/etc/pam.d/{service}"),
        &service_text(&forward_pass_stack(&bus)),
        0o644,
    );
    let sshd = Sshd::start(&dir, &user, &service, PASSWORD_ONLY);
    let login = |answer: &str| sshd.login(&dir, &user, None, "password", answer);

    // Password and code run together, then the same answer again.
    let together = format!("{PASSWORD}{}", code(1));
    let (o, prompts) = login(&together);
    assert!(
        o.success,
        "password+code must log in: {o:#?}\nprompts: {prompts:?}\nsshd log:\n{}",
        sshd.log_text()
    );
    let (o, _) = login(&together);
    assert!(
        !o.success,
        "a replayed password+code must not log in: {o:#?}"
    );

    // With a space between them.
    let (o, _) = login(&format!("{PASSWORD} {}", code(2)));
    assert!(
        o.success,
        "password, space, code must log in: {o:#?}\nsshd log:\n{}",
        sshd.log_text()
    );

    // Wrong code, right password.
    let (o, _) = login(&format!("{PASSWORD} {}", wrong_code(&e.secret)));
    assert!(!o.success, "a wrong code must not log in: {o:#?}");
    // Right (unused) code, wrong password.
    let (o, _) = login(&format!("{PASSWORD}x {}", code(3)));
    assert!(!o.success, "a wrong password must not log in: {o:#?}");
    // The password alone.
    let (o, _) = login(PASSWORD);
    assert!(!o.success, "the password alone must not log in: {o:#?}");

    let log = sshd.log_text();
    let accepted = format!("Accepted password for {}", user.name);
    let failed = format!("Failed password for {}", user.name);
    assert_eq!(log.matches(&accepted).count(), 2, "sshd log:\n{log}");
    assert_eq!(log.matches(&failed).count(), 4, "sshd log:\n{log}");
}

#[test]
fn pamtester_hands_the_password_to_pam_unix() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, DAEMON_TOML);
    let user = test_user("otpg-pam-fwd-pt");
    set_password(&user, PASSWORD);
    let e = enroll(&bus, &user.name);
    let code = |n: u64| oathtool_at(&e.secret, e.confirmed_at + 30 * n);
    let (svc, _f) = etc_pam_service("fwd", &forward_pass_stack(&bus));

    // pam_unix with use_first_pass never prompts: it can only succeed with
    // the password the module set as PAM_AUTHTOK.
    let o = pamtester(&svc, &user.name, &format!("{PASSWORD} {}", code(1)));
    assert_outcome(&o, true, SUCCESS, "Password and verification code: ");
    assert!(!o.says("Password: "), "{o:#?}");

    let o = pamtester(&svc, &user.name, &format!("not-{PASSWORD}{}", code(2)));
    assert_outcome(&o, false, AUTH_ERR, "Password and verification code: ");

    // A backup code after the last space.
    let backup = &e.backup_codes[0];
    let o = pamtester(&svc, &user.name, &format!("{PASSWORD} {backup}"));
    assert_outcome(&o, true, SUCCESS, "Backup code accepted");

    // No code: refused, and pam_unix still saw the password (it is the
    // module that refuses, with its own line).
    let o = pamtester(&svc, &user.name, PASSWORD);
    assert_outcome(&o, false, AUTH_ERR, "No code entered.");
}

#[test]
fn pamtester_asks_the_password_alone_of_a_user_let_in_without_a_code() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-pam-fwd-ne");
    set_password(&user, PASSWORD);
    let stack = format!(
        "{}\nauth required pam_unix.so use_first_pass",
        module_line(&format!("{} forward_pass nullok", bus.module_args()))
    );
    let (svc, _f) = etc_pam_service("fwd-ne", &stack);

    let o = pamtester(&svc, &user.name, PASSWORD);
    assert_outcome(&o, true, SUCCESS, "Password: ");
    let o = pamtester(&svc, &user.name, &format!("{PASSWORD}x"));
    assert_outcome(&o, false, AUTH_ERR, "Password: ");
}
