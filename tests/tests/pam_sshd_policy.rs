//! The account line and the policy in a real sshd: with a public key alone
//! sshd runs only PAM's `account` stack, so `account required
//! pam_otpgate.so` is what holds out an account the policy requires and
//! that has not enrolled; the code itself is asked only when sshd runs the
//! `auth` stack (`AuthenticationMethods publickey,keyboard-interactive`).
//! And break-glass codes, console-only, do not open ssh. The sshd and the
//! client are `pam_common::sshd`'s; one sshd per user (its `AllowUsers`).

mod pam_common;

use std::path::PathBuf;

use otpgate_tests::*;
use pam_common::sshd::{authorize, keygen, Sshd, KEY_AND_CODE, KEY_ONLY};
use pam_common::*;

const REQUIRES: &str =
    "No second factor is set up for this account, and this host requires one: ask an administrator.";
const NOT_ENROLLED: &str = "No second factor is set up for this account";
const CODE_PROMPT: &str = "Verification code:";

/// A real sshd for one user, whose PAM service has the otpgate `auth` line
/// and `account required pam_otpgate.so`, both pointed at `bus`; the user's
/// key is authorised.
struct Host {
    dir: TestDir,
    key: PathBuf,
    sshd: Sshd,
    user: TestUser,
    _pam: EtcFile,
}

impl Host {
    fn start(bus: &Bus, user: TestUser, auth_config: &str) -> Host {
        let dir = TestDir::new("sshd-policy");
        let key = dir.join("id_ed25519");
        keygen(&key);
        authorize(&user, &dir.join("id_ed25519.pub"));
        let args = bus.module_args();
        let lines = format!(
            "{}\naccount required {} {args}",
            module_line(&args),
            pam_module().display()
        );
        let service = unique("sshdpol");
        let _pam = EtcFile::write(
            format!("/etc/pam.d/{service}"),
            &service_text(&lines),
            0o644,
        );
        let sshd = Sshd::start(&dir, &user, &service, auth_config);
        Host {
            dir,
            key,
            sshd,
            user,
            _pam,
        }
    }

    /// `ssh -i key user@… true` with `methods`, answering every prompt with
    /// `answer`; the client logs at INFO so that PAM's messages show.
    fn ssh(&self, methods: &str, answer: &str) -> (Outcome, String) {
        self.sshd.login_logging(
            &self.dir,
            &self.user,
            Some(&self.key),
            methods,
            answer,
            "INFO",
        )
    }

    fn log(&self) -> String {
        self.sshd.log_text()
    }
}

#[test]
fn key_only_ssh_refuses_an_unenrolled_account_at_the_account_stage() {
    require_root();
    // No rule: every account is required to have a second factor.
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpgpsp-new");
    let host = Host::start(&bus, user, KEY_ONLY);
    let name = host.user.name.clone();

    let (o, prompts) = host.ssh("publickey", "");
    let log = host.log();
    assert!(
        !o.success,
        "a key alone let in an account that must enrol: {o:#?}\nsshd log:\n{log}"
    );
    // The key was good; the account stage said no (sshd then logs the
    // publickey attempt as failed), and the user was told why.
    assert!(
        log.contains(&format!("{name}/.ssh/authorized_keys:1"))
            && log.contains(&format!(
                "Access denied for user {name} by PAM account configuration"
            )),
        "sshd log:\n{log}"
    );
    assert!(o.says(REQUIRES), "{o:#?}");
    assert!(prompts.is_empty(), "nothing is asked: {prompts:?}");
}

#[test]
fn key_only_ssh_lets_in_an_optional_account_and_an_enrolled_one_without_a_code() {
    require_root();
    let user = test_user("otpgpsp-opt");
    let bus = Bus::start();
    let _d = Daemon::start(
        &bus,
        &format!(
            "[[policy]]\nusers = [\"{}\"]\nmode = \"optional\"\n",
            user.name
        ),
    );
    let enrolled = test_user("otpgpsp-enr");
    let e = enroll(&bus, &enrolled.name);

    // Optional and not enrolled: the account stage steps aside.
    let host = Host::start(&bus, user, KEY_ONLY);
    let (o, prompts) = host.ssh("publickey", "");
    assert!(
        o.success,
        "optional must let a key in: {o:#?}\nsshd log:\n{}",
        host.log()
    );
    assert!(prompts.is_empty(), "{prompts:?}");
    assert!(!o.says(REQUIRES), "{o:#?}");

    // Enrolled (the default rule, require): the account stage passes, and
    // no code is asked, as the auth stack never runs with a key alone: the
    // documented limit of the account line.
    let host = Host::start(&bus, enrolled, KEY_ONLY);
    let (o, prompts) = host.ssh("publickey", "");
    let log = host.log();
    assert!(
        o.success,
        "an enrolled account with its key: {o:#?}\nsshd log:\n{log}"
    );
    assert!(prompts.is_empty(), "no code with a key alone: {prompts:?}");
    assert!(
        log.contains(&format!("Accepted publickey for {}", e.user))
            && !log.contains("keyboard-interactive"),
        "sshd log:\n{log}"
    );
}

#[test]
fn key_and_code_with_the_account_line_asks_the_code_and_it_decides() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpgpsp-both");
    let e = enroll(&bus, &user.name);
    let host = Host::start(&bus, user, KEY_AND_CODE);
    let methods = "publickey,keyboard-interactive";

    let (o, prompts) = host.ssh(methods, &wrong_code(&e.secret));
    assert!(
        !o.success,
        "key + wrong code must not log in: {o:#?}\nsshd log:\n{}",
        host.log()
    );
    assert!(prompts.contains(CODE_PROMPT), "{prompts:?} {o:#?}");

    let (o, prompts) = host.ssh(methods, &oathtool_at(&e.secret, e.confirmed_at + 30));
    let log = host.log();
    assert!(
        o.success,
        "key + right code must log in: {o:#?}\nprompts: {prompts:?}\nsshd log:\n{log}"
    );
    assert!(prompts.contains(CODE_PROMPT), "{prompts:?}");
    assert!(
        log.contains(&format!("Partial publickey for {}", e.user))
            && log.contains(&format!("Failed keyboard-interactive/pam for {}", e.user))
            && log.contains(&format!("Accepted keyboard-interactive/pam for {}", e.user)),
        "sshd log:\n{log}"
    );
}

/// Root's call: five break-glass codes for `user`.
fn breakglass_codes(bus: &Bus, user: &str) -> Vec<String> {
    let codes: Vec<String> = call(bus, "Admin", "GenerateBreakglass", &[user])
        .ok()
        .as_array()
        .expect("a list of codes")
        .iter()
        .map(|c| c.as_str().expect("a code").to_string())
        .collect();
    assert_eq!(codes.len(), 5);
    codes
}

fn codes_left(bus: &Bus, user: &str) -> serde_json::Value {
    call(bus, "Manager", "Status", &[user]).ok()["breakglass_codes_left"].clone()
}

#[test]
fn break_glass_codes_do_not_open_ssh() {
    require_root();
    let bus = Bus::start();
    let d = Daemon::start(&bus, "");
    let methods = "publickey,keyboard-interactive";

    // Not enrolled, with break-glass codes: over ssh (PAM_RHOST set,
    // PAM_TTY "ssh") no code is asked, and the account is not enrolled.
    let admin = admin_group_member("otpgpsp-admin");
    let codes = breakglass_codes(&bus, &admin.name);
    let host = Host::start(&bus, admin, KEY_AND_CODE);
    let (o, prompts) = host.ssh(methods, &codes[0]);
    assert!(
        !o.success,
        "a break-glass code opened ssh: {o:#?}\nsshd log:\n{}\ndaemon log:\n{}",
        host.log(),
        d.log()
    );
    assert!(
        !prompts.contains(CODE_PROMPT) && !prompts.contains("break-glass"),
        "asked for a code over ssh: {prompts:?}"
    );
    assert!(o.says(NOT_ENROLLED), "{o:#?}");
    assert!(
        !host.log().contains(&format!(
            "Accepted keyboard-interactive/pam for {}",
            host.user.name
        )),
        "sshd log:\n{}",
        host.log()
    );
    assert_eq!(codes_left(&bus, &host.user.name), 5);

    // Enrolled, with break-glass codes (at a console one would stand in
    // for the code): over ssh the code prompt does not take one.
    let admin2 = admin_group_member("otpgpsp-admin2");
    enroll(&bus, &admin2.name);
    let codes2 = breakglass_codes(&bus, &admin2.name);
    let host2 = Host::start(&bus, admin2, KEY_AND_CODE);
    let (o, prompts) = host2.ssh(methods, &codes2[0]);
    assert!(
        !o.success,
        "a break-glass code opened ssh: {o:#?}\nsshd log:\n{}\ndaemon log:\n{}",
        host2.log(),
        d.log()
    );
    assert!(prompts.contains(CODE_PROMPT), "{prompts:?} {o:#?}");
    assert_eq!(codes_left(&bus, &host2.user.name), 5);

    let log = d.log();
    assert!(!log.contains("event=breakglass-used"), "daemon log:\n{log}");
    assert!(log.contains("event=verify-failed"), "daemon log:\n{log}");
}
