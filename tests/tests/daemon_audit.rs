//! The audit trail, as otpgated writes it to stderr (the same lines go to
//! syslog authpriv): one line per event that matters, naming the user and
//! the login's service and remote host, and never a code or a secret.

use otpgate_tests::*;

const PERIOD: u64 = 30;
const CONTEXT: &str =
    r#"{"service":"sshd","rhost":"192.0.2.7","ruser":"otpgd-remote","tty":"ssh"}"#;

fn verify_ctx(bus: &Bus, user: &str, code: &str) -> String {
    let v = call(bus, "Auth", "Verify", &[user, code, CONTEXT]).ok();
    v[0].as_str().expect("result word").to_string()
}

/// The log's lines for `event` about `user`.
fn lines<'a>(log: &'a str, event: &str, user: &str) -> Vec<&'a str> {
    let ev = format!("event={event} ");
    let who = format!(" user={user} ");
    log.lines()
        .filter(|l| l.contains(&ev) && format!("{l} ").contains(&who))
        .collect()
}

fn one_line<'a>(log: &'a str, event: &str, user: &str) -> &'a str {
    let found = lines(log, event, user);
    assert!(
        !found.is_empty(),
        "no event={event} for {user} in the log:\n{log}"
    );
    found[0]
}

fn with_context(line: &str) {
    assert!(
        line.contains(" service=sshd")
            && line.contains(" rhost=192.0.2.7")
            && line.contains(" ruser=otpgd-remote")
            && line.contains(" tty=ssh"),
        "the context is missing: {line}"
    );
}

#[test]
fn every_event_is_logged_with_user_and_context_and_no_secret() {
    let bus = Bus::start();
    let d = Daemon::start(&bus, "[lockout]\nmax_failures = 3\nduration_secs = 600\n");
    let user = test_user("otpgd-audit1");
    let name = user.name.as_str();
    let e = enroll(&bus, name);
    let confirm_code = oathtool_at(&e.secret, e.confirmed_at);
    let next = oathtool_at(&e.secret, e.confirmed_at + PERIOD);
    let near: Vec<String> = (0..7)
        .map(|k| oathtool_at(&e.secret, now() + k * PERIOD - 3 * PERIOD))
        .collect();
    let wrong = (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !near.contains(c))
        .expect("a wrong code");

    assert_eq!(verify_ctx(&bus, name, &next), "ok");
    assert_eq!(verify_ctx(&bus, name, &next), "replayed");
    assert_eq!(verify_ctx(&bus, name, &wrong), "invalid");
    assert_eq!(verify_ctx(&bus, name, &e.backup_codes[0]), "ok");
    for _ in 0..3 {
        assert_eq!(verify_ctx(&bus, name, &wrong), "invalid");
    }
    assert_eq!(verify_ctx(&bus, name, &wrong), "locked");
    call(&bus, "Admin", "Unlock", &[name]).ok();
    call(&bus, "Admin", "Reset", &[name]).ok();

    let log = d.log();
    one_line(&log, "enroll-started", name);
    one_line(&log, "enroll-confirmed", name);
    let ok = one_line(&log, "verify-ok", name);
    assert!(ok.contains(" method=totp"), "{ok}");
    with_context(ok);
    let ok_backup = lines(&log, "verify-ok", name);
    assert!(
        ok_backup.iter().any(|l| l.contains(" method=backup")),
        "{ok_backup:?}"
    );
    for event in [
        "verify-replayed",
        "verify-failed",
        "backup-code-used",
        "locked",
    ] {
        with_context(one_line(&log, event, name));
    }
    one_line(&log, "unlocked", name);
    one_line(&log, "reset", name);

    // Never a code or the secret. Codes are digits, so look for them as
    // whole tokens (a timestamp may contain any six digits).
    let tokens: Vec<&str> = log
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    for code in [&confirm_code, &next, &wrong] {
        assert!(!tokens.contains(&code.as_str()), "code {code} in the log");
    }
    let lower = log.to_lowercase();
    assert!(
        !lower.contains(&e.secret.to_lowercase()),
        "the secret is in the log"
    );
    for c in &e.backup_codes {
        assert!(!lower.contains(c.as_str()), "backup code {c} in the log");
        assert!(
            !lower.contains(&c.replace('-', "")),
            "backup code {c} in the log"
        );
    }
}
