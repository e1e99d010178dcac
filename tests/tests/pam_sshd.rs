//! The module in a real sshd: public key first, then the code through
//! keyboard-interactive (PAM). The sshd and the client are
//! `pam_common::sshd`'s.

mod pam_common;

use otpgate_tests::*;
use pam_common::sshd::{authorize, keygen, Sshd, KEY_AND_CODE};
use pam_common::*;

#[test]
fn ssh_with_key_and_valid_code_logs_in_and_wrong_code_does_not() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-pam-ssh");
    let e = enroll(&bus, &user.name);

    let dir = TestDir::new("sshd");
    let key = dir.join("id_ed25519");
    keygen(&key);
    authorize(&user, &dir.join("id_ed25519.pub"));

    let service = unique("sshd");
    let _pam = EtcFile::write(
        format!("/etc/pam.d/{service}"),
        &service_text(&module_line(&bus.module_args())),
        0o644,
    );
    let sshd = Sshd::start(&dir, &user, &service, KEY_AND_CODE);
    let methods = "publickey,keyboard-interactive";

    let (o, prompts) = sshd.login(&dir, &user, Some(&key), methods, &wrong_code(&e.secret));
    assert!(
        !o.success,
        "a wrong code must not log in: {o:#?}\nsshd log:\n{}",
        sshd.log_text()
    );
    assert!(
        prompts.contains("Verification code:"),
        "prompts: {prompts:?} {o:#?}"
    );

    let (o, prompts) = sshd.login(
        &dir,
        &user,
        Some(&key),
        methods,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert!(
        o.success,
        "key + valid code must log in: {o:#?}\nprompts: {prompts:?}\nsshd log:\n{}",
        sshd.log_text()
    );
    assert!(
        prompts.contains("Verification code:"),
        "prompts: {prompts:?}"
    );
    let log = sshd.log_text();
    assert!(
        log.contains(&format!("Partial publickey for {}", user.name))
            && log.contains(&format!(
                "Failed keyboard-interactive/pam for {}",
                user.name
            ))
            && log.contains(&format!(
                "Accepted keyboard-interactive/pam for {}",
                user.name
            )),
        "sshd log:\n{log}"
    );
}
