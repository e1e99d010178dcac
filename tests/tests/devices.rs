//! Several devices and several methods end to end: the real otpgated,
//! logins through pamtester and the real PAM module, codes from oathtool,
//! mails through the test's own SMTP server.

#[path = "pam_common/mod.rs"]
mod pam_common;

use std::process::Command;
use std::time::Duration;

use otpgate_tests::smtp::SmtpSink;
use otpgate_tests::*;
use pam_common::*;

const MAIL_DEADLINE: Duration = Duration::from_secs(30);
const ADDRESS: &str = "dev.example@example.org";
/// Three steps either side: the tests use the next steps' codes at once.
const WINDOW: &str = "[totp]\nwindow = 3\n";

/// Adds the TOTP device `name` to an enrolled `user` as root, confirmed
/// with its code at `t`: its secret. No backup codes come with it.
fn add_device(bus: &Bus, user: &str, name: &str, t: u64) -> String {
    let e = call(bus, "Manager", "Enroll", &[user, "totp", "", name]).ok();
    let secret = e["secret"].as_str().expect("secret").to_string();
    let codes = call(bus, "Manager", "Confirm", &[user, &oathtool_at(&secret, t)]).ok();
    assert_eq!(codes, serde_json::json!([]), "no new backup codes");
    secret
}

fn devices(bus: &Bus, user: &str) -> Vec<serde_json::Value> {
    let st = call(bus, "Manager", "Status", &[user]).ok();
    st["devices"].as_array().cloned().unwrap_or_default()
}

#[test]
fn two_devices_either_logs_in_once_and_status_lists_them() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, WINDOW);
    let u = test_user("otpgdev1");
    let phone = enroll(&bus, &u.name);
    let t = phone.confirmed_at;
    // Enrolled, without a name: still AlreadyEnrolled.
    let r = call(&bus, "Manager", "Enroll", &[&u.name]);
    assert_eq!(
        r.err_name(),
        Some("org.otpgate.Otpgate1.Error.AlreadyEnrolled")
    );
    let spare = add_device(&bus, &u.name, "spare", t);
    let listed = devices(&bus, &u.name);
    let names: Vec<&str> = listed.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "spare"]);
    assert!(listed.iter().all(|d| d["last_used"] == 0), "{listed:?}");

    let (service, _f) = etc_pam_service("devices", &module_line(&bus.module_args()));
    // A code from either device logs in; the same code again is refused.
    let p1 = oathtool_at(&phone.secret, t + 30);
    let o = pamtester(&service, &u.name, &p1);
    assert_outcome(&o, true, SUCCESS, PROMPT);
    let o = pamtester(&service, &u.name, &p1);
    assert_outcome(&o, false, AUTH_ERR, "That code was already used");
    let s1 = oathtool_at(&spare, t + 30);
    let o = pamtester(&service, &u.name, &s1);
    assert_outcome(&o, true, SUCCESS, PROMPT);
    let o = pamtester(&service, &u.name, &s1);
    assert_outcome(&o, false, AUTH_ERR, "That code was already used");
    // Per device: the spare's step does not use up the phone's next one.
    let p2 = oathtool_at(&phone.secret, t + 60);
    assert_eq!(verify(&bus, &u.name, &p2).0, "ok");

    let listed = devices(&bus, &u.name);
    assert!(
        listed
            .iter()
            .all(|d| d["method"] == "totp" && d["last_used"].as_u64().unwrap() >= t),
        "{listed:?}"
    );
    // `otpgate status` shows them.
    let out = output_within(
        Command::new(bin("otpgate"))
            .args(["--bus", &bus.address, "status", "--user", &u.name])
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS"),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("devices:") && text.contains("spare"),
        "{text}"
    );
    assert!(!text.contains("never"), "{text}");

    // The user removes the spare with a code from the phone.
    let p3 = oathtool_at(&phone.secret, t + 90);
    call_as(
        &bus,
        Some(u.uid),
        "Manager",
        "RemoveDevice",
        &[&u.name, "spare", &p3],
    )
    .ok();
    let names: Vec<String> = devices(&bus, &u.name)
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default"]);
    let o = pamtester(&service, &u.name, &oathtool_at(&spare, t + 120));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code");
    let events: Vec<String> = call(&bus, "Manager", "History", &[&u.name])
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert!(
        events.contains(&"device-added".into()) && events.contains(&"device-removed".into()),
        "{events:?}"
    );
}

#[test]
fn the_last_device_stays_while_a_require_rule_names_the_user() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(
        &bus,
        &format!("{WINDOW}[[policy]]\nusers = [\"otpgdev2\"]\nservices = [\"sshd\"]\nmode = \"require\"\n"),
    );
    let held = test_user("otpgdev2");
    let e = enroll(&bus, &held.name);
    let c = oathtool_at(&e.secret, e.confirmed_at + 30);
    for (method, args) in [
        (
            "RemoveDevice",
            vec![held.name.as_str(), "default", c.as_str()],
        ),
        ("Disable", vec![held.name.as_str(), c.as_str()]),
    ] {
        let r = call_as(&bus, Some(held.uid), "Manager", method, &args);
        assert!(r.is_access_denied(), "{method}: {r:?}");
        let CallResult::Err { message, .. } = r else {
            unreachable!()
        };
        assert!(message.contains("rule 1"), "{message}");
    }
    // The code was not used up by those refusals.
    assert_eq!(verify(&bus, &held.name, &c).0, "ok");
    // An administrator may; so may a user no rule names.
    call(
        &bus,
        "Manager",
        "RemoveDevice",
        &[&held.name, "default", ""],
    )
    .ok();
    let free = test_user("otpgdev3");
    let e = enroll(&bus, &free.name);
    let c = oathtool_at(&e.secret, e.confirmed_at + 30);
    call_as(
        &bus,
        Some(free.uid),
        "Manager",
        "RemoveDevice",
        &[&free.name, "default", &c],
    )
    .ok();
    for u in [&held, &free] {
        let st = call(&bus, "Manager", "Status", &[&u.name]).ok();
        assert_eq!(st["enrolled"], false, "{}", u.name);
    }
}

/// pamtester answering "m" at the first prompt, then the code that
/// arrives by mail at the second.
fn login_asking_for_mail(service: &str, user: &str, sink: &SmtpSink) -> (bool, String) {
    let before = sink.mails().len();
    let mut pamtester = LivePamtester::start(service, user);
    pamtester.answer("m");
    let mails = sink.wait_for(before + 1, MAIL_DEADLINE);
    let code = mails[before].code().expect("a code in the mail");
    pamtester.answer(&code);
    pamtester.finish()
}

#[test]
fn an_app_user_with_email_too_may_ask_for_a_mail_at_the_prompt() {
    require_root();
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let _d = Daemon::start(
        &bus,
        &format!(
            "{WINDOW}[email]\nsmtp_url = \"{}\"\nfrom = \"otpgate@example.org\"\n",
            sink.url()
        ),
    );
    let u = test_user("otpgdev4");
    let e = enroll(&bus, &u.name);
    let r = call(
        &bus,
        "Manager",
        "Enroll",
        &[&u.name, "email", ADDRESS, "mail"],
    )
    .ok();
    assert_eq!(r["sent_to"], "d***@example.org");
    let code = sink.wait_for(1, MAIL_DEADLINE)[0].code().unwrap();
    assert_eq!(
        call(&bus, "Manager", "Confirm", &[&u.name, &code]).ok(),
        serde_json::json!([])
    );
    let methods: Vec<String> = devices(&bus, &u.name)
        .iter()
        .map(|d| d["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(methods, ["totp", "email"]);
    // The app first, e-mail offered; nothing mailed for that.
    let ch = call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    assert_eq!(ch[0], "code-required");
    assert_eq!(ch[1]["method"], "totp");
    assert_eq!(ch[1]["alternatives"], "email");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.mails().len(), 1);

    let (service, _f) = etc_pam_service("devmail", &module_line(&bus.module_args()));
    let (ok, text) = login_asking_for_mail(&service, &u.name, &sink);
    assert!(ok, "{text}");
    assert!(
        text.contains("Verification code (or m for a code by e-mail): "),
        "{text}"
    );
    assert!(
        text.contains("A code was sent to d***@example.org."),
        "{text}"
    );
    // The app's code, and the backup codes, still log in.
    let o = pamtester(
        &service,
        &u.name,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert_outcome(&o, true, SUCCESS, "(or m for a code by e-mail)");
    let o = pamtester(&service, &u.name, &e.backup_codes[0]);
    assert_outcome(&o, true, SUCCESS, "Backup code accepted");
    // With forward_pass no alternative is offered.
    let (fwd, _g) = etc_pam_service(
        "devfwd",
        &format!(
            "{}\nauth required pam_permit.so",
            module_line(&format!("{} forward_pass", bus.module_args()))
        ),
    );
    let o = pamtester(
        &fwd,
        &u.name,
        &format!("pw {}", oathtool_at(&e.secret, e.confirmed_at + 60)),
    );
    assert!(o.success, "{o:#?}");
    assert!(!o.says("(or m"), "{o:#?}");
}

#[test]
fn only_the_allowed_methods_are_enrolled() {
    require_root();
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let _d = Daemon::start(
        &bus,
        &format!(
            "[methods]\nallowed = [\"totp\"]\n[email]\nsmtp_url = \"{}\"\nfrom = \"otpgate@example.org\"\n",
            sink.url()
        ),
    );
    let u = test_user("otpgdev5");
    let r = call(&bus, "Manager", "Enroll", &[&u.name, "email", ADDRESS]);
    assert_eq!(
        r.err_name(),
        Some("org.otpgate.Otpgate1.Error.InvalidArgument"),
        "{r:?}"
    );
    let CallResult::Err { message, .. } = r else {
        unreachable!()
    };
    assert!(message.contains("[methods]"), "{message}");
    enroll(&bus, &u.name);
}
