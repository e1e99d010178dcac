//! The e-mail factor end to end: the real otpgated mailing codes to a real
//! SMTP server (the test's own, on 127.0.0.1), logins through pamtester and
//! the real PAM module, and the expiry with a manual clock.

#[path = "pam_common/mod.rs"]
mod pam_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use otpgate_tests::smtp::{Mail, SmtpSink};
use otpgate_tests::*;
use pam_common::*;

const MAIL_DEADLINE: Duration = Duration::from_secs(30);
const ADDRESS: &str = "alice.example@example.org";

fn email_config(smtp_url: &str, extra: &str) -> String {
    format!("[email]\nsmtp_url = \"{smtp_url}\"\nfrom = \"otpgate@example.org\"\n{extra}\n")
}

/// Enrols `user` by e-mail as root: the confirmation code comes by mail.
fn enrol_by_mail(bus: &Bus, sink: &SmtpSink, user: &str) -> Vec<String> {
    let before = sink.mails().len();
    let e = call(bus, "Manager", "Enroll", &[user, "email", ADDRESS]).ok();
    assert_eq!(e["method"], "email");
    assert_eq!(e["sent_to"], "a***@example.org");
    assert!(e.get("secret").is_none() && e.get("uri").is_none());
    let mails = sink.wait_for(before + 1, MAIL_DEADLINE);
    let mail = &mails[before];
    assert!(mail.to.iter().any(|t| t.contains(ADDRESS)), "{mail:?}");
    let subject = mail.header("subject").unwrap_or_default();
    assert!(subject.starts_with("Confirm your e-mail"), "{subject}");
    let code = mail.code().expect("a code in the mail");
    let codes = call(bus, "Manager", "Confirm", &[user, &code]).ok();
    codes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// pamtester, answering the prompt with the code that arrives by mail
/// (or with `fixed`), as a user would.
fn login(
    service: &str,
    user: &str,
    sink: &SmtpSink,
    fixed: Option<&str>,
) -> (bool, String, Option<Mail>) {
    let before = sink.mails().len();
    let mut pamtester = LivePamtester::start(service, user);
    let mail = match fixed {
        Some(_) => None,
        None => sink
            .wait_for(before + 1, MAIL_DEADLINE)
            .get(before)
            .cloned(),
    };
    let code = match (fixed, &mail) {
        (Some(c), _) => c.to_string(),
        (None, Some(m)) => m.code().expect("code in mail"),
        (None, None) => String::new(),
    };
    pamtester.answer(&code);
    let (ok, text) = pamtester.finish();
    (ok, text, mail)
}

#[test]
fn a_mailed_code_logs_in_once_and_says_where_it_went() {
    require_root();
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let _d = Daemon::start(&bus, &email_config(&sink.url(), ""));
    let u = test_user("otpgmail1");
    let backup = enrol_by_mail(&bus, &sink, &u.name);
    assert_eq!(backup.len(), 10);
    let st = call(&bus, "Manager", "Status", &[&u.name]).ok();
    assert_eq!(st["method"], "email");
    assert_eq!(st["enrolled"], true);

    let (service, _f) = etc_pam_service("mail", &module_line(&bus.module_args()));
    let (ok, text, mail) = login(&service, &u.name, &sink, None);
    assert!(ok, "{text}");
    assert!(
        text.contains("A code was sent to a***@example.org."),
        "{text}"
    );
    let mail = mail.unwrap();
    let subject = mail.header("subject").unwrap();
    let host = otpgated::engine::hostname();
    assert_eq!(subject, format!("Your code for {service} on {host}"));
    let ctype = mail.header("content-type").unwrap_or_default();
    assert!(ctype.starts_with("multipart/alternative"), "{ctype}");
    assert!(mail.data.contains("text/plain") && mail.data.contains("text/html"));
    // The same code again: it was used up.
    let code = mail.code().unwrap();
    let (r, info) = verify(&bus, &u.name, &code);
    assert_eq!(r, "invalid", "{info}");
    // A backup code works for an e-mail user too.
    let (ok, text, _) = login(&service, &u.name, &sink, Some(&backup[0]));
    assert!(ok, "{text}");
}

#[test]
fn a_new_challenge_within_the_cooldown_mails_nothing() {
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let _d = Daemon::start(
        &bus,
        &email_config(&sink.url(), "resend_cooldown_secs = 600"),
    );
    let u = test_user("otpgmail2");
    enrol_by_mail(&bus, &sink, &u.name);
    let before = sink.mails().len();
    for _ in 0..5 {
        let v = call(&bus, "Auth", "Challenge", &[&u.name]).ok();
        assert_eq!(v[0], "code-required");
        assert_eq!(v[1]["method"], "email");
        assert_eq!(v[1]["message"], "A code was sent to a***@example.org.");
    }
    let mails = sink.wait_for(before + 1, MAIL_DEADLINE);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.mails().len(), before + 1, "{mails:?}");
    // That one code still works.
    let code = sink.mails()[before].code().unwrap();
    assert_eq!(verify(&bus, &u.name, &code).0, "ok");
}

#[test]
fn wrong_codes_lock_the_e_mail_factor_too() {
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let _d = Daemon::start(
        &bus,
        &format!(
            "{}\n[lockout]\nmax_failures = 3\n",
            email_config(&sink.url(), "")
        ),
    );
    let u = test_user("otpgmail3");
    enrol_by_mail(&bus, &sink, &u.name);
    let before = sink.mails().len();
    call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    let code = sink.wait_for(before + 1, MAIL_DEADLINE)[before]
        .code()
        .unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let answers: Vec<String> = (0..3).map(|_| verify(&bus, &u.name, wrong).0).collect();
    assert_eq!(answers, ["invalid", "invalid", "invalid"]);
    assert_eq!(verify(&bus, &u.name, &code).0, "locked");
    let v = call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    assert_eq!(v[0], "locked");
}

/// The text of a quoted-printable body with its soft line breaks joined.
fn unfolded(mail: &Mail) -> String {
    mail.data.replace("=\r\n", "").replace("=\n", "")
}

/// Whoever is at the keyboard, the owner of the address on file hears of a
/// lock and of every backup code used, with where it came from.
#[test]
fn the_owner_is_mailed_when_the_factor_locks_and_when_a_backup_code_is_used() {
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let _d = Daemon::start(
        &bus,
        &format!(
            "{}\n[lockout]\nmax_failures = 2\n",
            email_config(&sink.url(), "")
        ),
    );
    let u = test_user("otpgmail9");
    let backup = enrol_by_mail(&bus, &sink, &u.name);
    let ctx = r#"{"service":"sshd","rhost":"198.51.100.23"}"#;
    let before = sink.mails().len();
    for _ in 0..2 {
        let v = call(&bus, "Auth", "Verify", &[&u.name, "000000", ctx]).ok();
        assert_eq!(v[0], "invalid");
    }
    let mails = sink.wait_for(before + 1, MAIL_DEADLINE);
    let lock = &mails[before];
    assert!(lock.to.iter().any(|t| t.contains(ADDRESS)), "{lock:?}");
    let subject = lock.header("subject").unwrap_or_default();
    assert!(
        subject.starts_with(&format!("The second factor of {} is locked", u.name)),
        "{subject}"
    );
    assert!(
        unfolded(lock).contains("through sshd from 198.51.100.23"),
        "{}",
        lock.data
    );
    assert_eq!(lock.code(), None, "a notice carries no code");

    call(&bus, "Admin", "Unlock", &[&u.name]).ok();
    let before = sink.mails().len();
    assert_eq!(verify(&bus, &u.name, &backup[0]).0, "ok");
    let mails = sink.wait_for(before + 1, MAIL_DEADLINE);
    let used = &mails[before];
    let subject = used.header("subject").unwrap_or_default();
    assert!(
        subject.starts_with(&format!("A backup code of {} was used", u.name)),
        "{subject}"
    );
    assert!(
        unfolded(used).contains("9 backup code(s) are left"),
        "{}",
        used.data
    );
    // A right code from the mail is no news: nothing more is sent for it.
    let before = sink.mails().len();
    call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    let code = sink.wait_for(before + 1, MAIL_DEADLINE)[before]
        .code()
        .unwrap();
    assert_eq!(verify(&bus, &u.name, &code).0, "ok");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.mails().len(), before + 1, "{:?}", sink.mails());
}

/// The relay is down: the login still prompts, says why no code came,
/// takes a backup code, and refuses anything else; the code that could not
/// be mailed is withdrawn.
#[test]
fn a_mail_server_outage_still_prompts_and_takes_a_backup_code() {
    require_root();
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let url = sink.url();
    let mut d = Daemon::start(&bus, &email_config(&url, "timeout_secs = 3"));
    let u = test_user("otpgmail4");
    let backup = enrol_by_mail(&bus, &sink, &u.name);
    drop(sink); // the mail server goes away
    let v = call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    assert_eq!(v[0], "code-required", "{v}");
    // The send fails in the background; then the failure is reported.
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log()
            .contains("event=email-send-failed")),
        "{}",
        d.log()
    );
    // The file is written at a checkpoint, which a clean stop makes.
    d.restart(&bus);
    let record = std::fs::read_to_string(d.record_path(&u.name)).expect("record");
    let rec: serde_json::Value = serde_json::from_str(&record).expect("json");
    assert!(
        rec.get("email_code").is_none_or(|c| c.is_null()),
        "the unsent code was withdrawn: {rec}"
    );
    let (service, _f) = etc_pam_service("mailout", &module_line(&bus.module_args()));
    let out = pamtester(&service, &u.name, "123456");
    assert!(!out.success, "{}", out.all());
    assert!(
        out.says("No code could be mailed") && out.says("backup code"),
        "{}",
        out.all()
    );
    let out = pamtester(&service, &u.name, &backup[0]);
    assert!(out.success, "a backup code logs in: {}", out.all());
    // Other users are served meanwhile.
    let other = test_user("otpgmail5");
    let e = enroll(&bus, &other.name);
    assert_eq!(
        verify(
            &bus,
            &other.name,
            &oathtool_at(&e.secret, e.confirmed_at + 30)
        )
        .0,
        "ok"
    );
    assert!(d.alive());
}

/// A relay that takes 20 s to answer does not hold up the prompt: the
/// module's deadline is 5 s, and a deadline is a refusal.
#[test]
fn a_slow_mail_server_does_not_delay_the_prompt() {
    require_root();
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let d = Daemon::start(&bus, &email_config(&sink.url(), "timeout_secs = 30"));
    let u = test_user("otpgmail9");
    enrol_by_mail(&bus, &sink, &u.name);
    sink.set_delay(Duration::from_secs(20));
    let started = Instant::now();
    let v = call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    let took = started.elapsed();
    assert_eq!(v[0], "code-required", "{v}");
    assert!(
        took < Duration::from_secs(4),
        "Challenge waited for the relay: {took:?}"
    );
    // The mail still arrives, after the relay's delay, and logs in.
    let before = sink.mails().len();
    let mail = sink.wait_for(before + 1, Duration::from_secs(60))[before].clone();
    let code = mail.code().expect("a code");
    let (r, info) = verify(&bus, &u.name, &code);
    assert_eq!(r, "ok", "{info}");
    drop(d);
}

/// E-mail turned off after users enrolled by mail: no code is issued (none
/// left behind, no send counted), the user is told to use a backup code,
/// and one logs in.
#[test]
fn with_no_mail_server_no_code_is_issued_and_a_backup_code_works() {
    require_root();
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let mut d = Daemon::start(&bus, &email_config(&sink.url(), ""));
    let u = test_user("otpgmail10");
    let backup = enrol_by_mail(&bus, &sink, &u.name);
    // The file as a clean stop's checkpoint writes it.
    let record = |d: &mut Daemon| -> serde_json::Value {
        d.restart(&bus);
        serde_json::from_slice(&std::fs::read(d.record_path(&u.name)).expect("record"))
            .expect("json")
    };
    let sends_before = record(&mut d)["email_sends"].as_array().map_or(0, Vec::len);

    // The administrator removes [email] and restarts the daemon.
    let config = std::fs::read_to_string(&d.config).expect("config");
    let without_email = config.split("[email]").next().expect("head").to_string();
    std::fs::write(&d.config, without_email).expect("write config");
    d.restart(&bus);

    let v = call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    assert_eq!(v[0], "code-required", "{v}");
    assert!(
        v[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("use a backup code")),
        "{v}"
    );
    let rec = record(&mut d);
    assert!(
        rec.get("email_code").is_none_or(|c| c.is_null()),
        "no code left behind: {rec}"
    );
    assert_eq!(
        rec["email_sends"].as_array().map_or(0, Vec::len),
        sends_before,
        "no send counted: {rec}"
    );
    let (service, _f) = etc_pam_service("nomail", &module_line(&bus.module_args()));
    let out = pamtester(&service, &u.name, &backup[1]);
    assert!(out.success, "a backup code logs in: {}", out.all());
    assert!(out.says("use a backup code"), "{}", out.all());
}

#[test]
fn enrolling_by_mail_needs_the_factor_on_and_an_address() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let u = test_user("otpgmail6");
    let r = call(&bus, "Manager", "Enroll", &[&u.name, "email", ADDRESS]);
    assert_eq!(
        r.err_name(),
        Some("org.otpgate.Otpgate1.Error.InvalidArgument")
    );
    let sink = SmtpSink::start();
    let bus2 = Bus::start();
    let _d2 = Daemon::start(&bus2, &email_config(&sink.url(), ""));
    for bad in ["not-an-address", "a b@example.org"] {
        let r = call(&bus2, "Manager", "Enroll", &[&u.name, "email", bad]);
        assert_eq!(
            r.err_name(),
            Some("org.otpgate.Otpgate1.Error.InvalidArgument"),
            "{bad}"
        );
    }
}

/// Expiry and the per-user send limit, with a clock the test moves.
#[test]
fn codes_expire_and_sending_is_limited_per_user() {
    use otpgate_tests::inproc::InProcess;
    use otpgated::clock::Clock;

    let bus = Bus::start();
    let sink = SmtpSink::start();
    let svc = InProcess::builder(&email_config(
        &sink.url(),
        "code_ttl_secs = 60\nresend_cooldown_secs = 0",
    ))
    .clock_at(1_900_000_000)
    .with_mailer()
    .start(&bus);
    let clock = &svc.clock;
    let u = test_user("otpgmail7");
    let backup = enrol_by_mail(&bus, &sink, &u.name);

    let before = sink.mails().len();
    call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    let code = sink.wait_for(before + 1, MAIL_DEADLINE)[before]
        .code()
        .unwrap();
    clock.advance(61);
    let (r, info) = verify(&bus, &u.name, &code);
    assert_eq!(r, "expired", "{info}");
    assert_eq!(verify(&bus, &u.name, &code).0, "invalid");

    // 5 mails an hour at most, the enrolment's included: the 6th challenge
    // mails nothing, yet the user is still prompted and told why, and a
    // backup code logs in (nobody can lock the owner out by starting
    // logins).
    let enrolled_at = clock.now() - 61;
    for _ in 0..3 {
        call(&bus, "Auth", "Challenge", &[&u.name]).ok();
        clock.advance(61);
    }
    let sent = sink.wait_for(before + 4, MAIL_DEADLINE).len();
    assert_eq!(sent, before + 4, "enrolment + 5 login mails in all");
    let v = call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    assert_eq!(v[0], "code-required", "{v}");
    let said = v[1]["message"].as_str().unwrap_or_default().to_string();
    assert!(
        said.contains("Too many codes were mailed") && said.contains("backup code"),
        "{said}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.mails().len(), before + 4, "the 6th mail was not sent");
    let (r, info) = verify(&bus, &u.name, &backup[0]);
    assert_eq!(r, "ok", "a backup code works while mail is limited: {info}");
    assert_eq!(info["method_used"], "backup");
    // An hour after the first of them, mail flows again.
    clock.set(enrolled_at + 3600);
    call(&bus, "Auth", "Challenge", &[&u.name]).ok();
    assert_eq!(sink.wait_for(before + 5, MAIL_DEADLINE).len(), before + 5);
}

#[test]
fn the_cli_enrols_by_mail() {
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let _d = Daemon::start(&bus, &email_config(&sink.url(), ""));
    let u = test_user("otpgmail8");
    let run = |args: &[&str]| {
        let mut c = Command::new(bin("otpgate"));
        c.args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null());
        output_within(&mut c, Duration::from_secs(60))
    };
    let out = run(&[
        "enroll", "--user", &u.name, "--method", "email", "--email", ADDRESS, "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["method"], "email");
    assert_eq!(j["sent_to"], "a***@example.org");
    assert!(j.get("secret").is_none());
    let code = sink.wait_for(1, MAIL_DEADLINE)[0].code().unwrap();
    let out = run(&["confirm", "--user", &u.name, &code, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["backup_codes"].as_array().unwrap().len(), 10);
    let out = run(&["status", "--user", &u.name, "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["method"], "email");
}
