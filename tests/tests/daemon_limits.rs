//! What one local user can make the daemon do: a non-root caller gets a few
//! calls at once and a bounded number a minute, enrolment mails count
//! against the per-user mail limits, and no user name makes the store try
//! a file name the file system refuses. Root (every PAM login) is never
//! held back by another user's flood.

#[path = "pam_common/mod.rs"]
mod pam_common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otpgate_tests::smtp::SmtpSink;
use otpgate_tests::*;
use otpgated::lockout::{CALLER_MAX_INFLIGHT, CALLER_MAX_PER_MINUTE};
use pam_common::*;

const TOO_MANY: &str = "org.otpgate.Otpgate1.Error.TooManyRequests";
const INVALID_USER: &str = "org.otpgate.Otpgate1.Error.InvalidUser";
const ADDRESS: &str = "limits.example@example.org";
const MAIL_DEADLINE: Duration = Duration::from_secs(30);

fn email_config(smtp_url: &str, extra: &str) -> String {
    format!("[email]\nsmtp_url = \"{smtp_url}\"\nfrom = \"otpgate@example.org\"\n{extra}\n")
}

fn status_as(bus: &Bus, user: &TestUser) -> CallResult {
    call_as(bus, Some(user.uid), "Manager", "Status", &[&user.name])
}

fn message(r: &CallResult) -> &str {
    match r {
        CallResult::Err { message, .. } => message,
        CallResult::Ok(_) => "",
    }
}

#[test]
fn a_looping_local_user_gets_too_many_requests_and_root_still_logs_in() {
    require_root();
    let bus = Bus::start();
    // A window of 2 steps: root verifies the code of the step after the
    // confirming one over the bus, and the PAM login uses the step after
    // that, which the default window of 1 would take only 30 s later.
    let d = Daemon::start(&bus, "[totp]\nwindow = 2\n");
    let a = test_user("otpglim-a");
    let b = test_user("otpglim-b");
    let c = test_user("otpglim-c");
    let e = enroll(&bus, &a.name);
    let (svc, _f) = etc_pam_service("limits", &module_line(&bus.module_args()));

    // B asks about itself, one call after the other, ten more times than a
    // minute allows.
    let total = CALLER_MAX_PER_MINUTE as usize + 10;
    let started = Instant::now();
    let answers: Vec<CallResult> = (0..total).map(|_| status_as(&bus, &b)).collect();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(50),
        "{total} calls took {elapsed:?}: the machine is too slow for a per-minute limit test"
    );
    let allowed = CALLER_MAX_PER_MINUTE as usize;
    for (i, r) in answers[..allowed].iter().enumerate() {
        assert!(
            matches!(r, CallResult::Ok(_)),
            "call {} of the first {allowed} was refused: {r:?}",
            i + 1
        );
    }
    for r in &answers[allowed..] {
        assert_eq!(r.err_name(), Some(TOO_MANY), "{r:?}");
        let m = message(r);
        assert!(
            m.contains(&format!("uid {}", b.uid)) && m.contains("wait"),
            "the refusal should say whose calls and that waiting helps: {m}"
        );
    }
    // Ten refusals within the minute, one log line: a flood cannot fill
    // the log either.
    let log = d.log();
    let limited: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("event=caller-limited"))
        .collect();
    assert_eq!(limited.len(), 1, "{log}");
    assert!(
        limited[0].contains(&format!("caller_uid={}", b.uid)),
        "{}",
        limited[0]
    );

    // Another user is not held back by B's flood.
    assert!(matches!(status_as(&bus, &c), CallResult::Ok(_)));
    // Nor is root: a verification over the bus and a real PAM login.
    let (r, info) = verify(&bus, &a.name, &oathtool_at(&e.secret, e.confirmed_at + 30));
    assert_eq!(r, "ok", "{info}");
    // B's minute has not run out: it is still refused.
    assert_eq!(status_as(&bus, &b).err_name(), Some(TOO_MANY));
    let o = pamtester(&svc, &a.name, &oathtool_at(&e.secret, e.confirmed_at + 60));
    assert!(
        o.success && o.says("successfully authenticated"),
        "{o:#?}\n{}",
        d.log()
    );
}

/// Calls held in flight by a relay that does not answer: four enrolments
/// by mail wait on the silent SMTP server, and B's fifth call, whatever it
/// is, is refused until they end.
#[test]
fn a_local_user_gets_four_calls_at_once_and_no_more() {
    let bus = Bus::start();
    let sink = SmtpSink::start();
    sink.set_delay(Duration::from_secs(55));
    let d = Daemon::start(
        &bus,
        &email_config(&sink.url(), "resend_cooldown_secs = 0\ntimeout_secs = 60"),
    );
    let b = test_user("otpglim-d");
    let c = test_user("otpglim-e");
    let inflight = CALLER_MAX_INFLIGHT as usize;
    assert!(
        inflight < 5,
        "the calls held are enrolment mails, of which a user may ask 5 an hour"
    );
    let (started, fifth, other_user, root) = std::thread::scope(|s| {
        let held: Vec<_> = (0..inflight)
            .map(|_| {
                let (bus, b) = (&bus, &b);
                s.spawn(move || {
                    call_as(
                        bus,
                        Some(b.uid),
                        "Manager",
                        "Enroll",
                        &[&b.name, "email", ADDRESS],
                    )
                })
            })
            .collect();
        // Each enrolment logs its start once its code is on disk, then
        // waits for the relay's greeting.
        let started = wait_until(Duration::from_secs(30), || {
            d.log().matches("event=enroll-started").count() == inflight
        });
        let fifth = status_as(&bus, &b);
        let other_user = status_as(&bus, &c);
        let root = call(&bus, "Manager", "Status", &[&b.name]);
        // The relay goes away (also when the test is failing): the waiting
        // calls end, with or without their mail, and give their places back.
        drop(sink);
        for h in held {
            let _ = h.join().expect("caller thread");
        }
        (started, fifth, other_user, root)
    });
    assert!(started, "{inflight} enrolments did not start:\n{}", d.log());
    assert_eq!(fifth.err_name(), Some(TOO_MANY), "{fifth:?}");
    assert!(
        message(&fifth).contains(&format!("{inflight} calls already in progress")),
        "{fifth:?}"
    );
    assert!(matches!(other_user, CallResult::Ok(_)), "{other_user:?}");
    assert!(matches!(root, CallResult::Ok(_)), "{root:?}");
    let r = status_as(&bus, &b);
    assert!(matches!(r, CallResult::Ok(_)), "{r:?}");
    assert!(d.log().contains("event=caller-limited"), "{}", d.log());
}

fn enrol_by_mail_as(bus: &Bus, uid: Option<u32>, user: &str) -> CallResult {
    call_as(bus, uid, "Manager", "Enroll", &[user, "email", ADDRESS])
}

#[test]
fn enrolment_mails_are_limited_per_user() {
    // The resend cooldown (60 s by default): a second enrolment mail right
    // after the first is refused and not sent, whoever asks.
    {
        let bus = Bus::start();
        let sink = SmtpSink::start();
        let _d = Daemon::start(&bus, &email_config(&sink.url(), ""));
        let by_root = test_user("otpglim-m1");
        let itself = test_user("otpglim-m2");
        for (who, uid) in [(&by_root, None), (&itself, Some(itself.uid))] {
            let before = sink.mails().len();
            let first = enrol_by_mail_as(&bus, uid, &who.name);
            assert!(matches!(first, CallResult::Ok(_)), "{first:?}");
            assert_eq!(sink.wait_for(before + 1, MAIL_DEADLINE).len(), before + 1);
            let second = enrol_by_mail_as(&bus, uid, &who.name);
            assert_eq!(second.err_name(), Some(TOO_MANY), "{second:?}");
            assert!(message(&second).contains("wait"), "{second:?}");
            // An enrolment mail is sent before Enroll answers: had it been
            // sent, it would be here.
            assert_eq!(sink.mails().len(), before + 1, "{:?}", sink.mails());
        }
    }
    // No cooldown: five mails an hour per user, the sixth refused and not
    // sent, whoever asks.
    let bus = Bus::start();
    let sink = SmtpSink::start();
    let _d = Daemon::start(&bus, &email_config(&sink.url(), "resend_cooldown_secs = 0"));
    let by_root = test_user("otpglim-m3");
    let itself = test_user("otpglim-m4");
    for (who, uid) in [(&by_root, None), (&itself, Some(itself.uid))] {
        let before = sink.mails().len();
        for n in 1..=5 {
            let r = enrol_by_mail_as(&bus, uid, &who.name);
            assert!(matches!(r, CallResult::Ok(_)), "enrolment {n}: {r:?}");
        }
        assert_eq!(sink.wait_for(before + 5, MAIL_DEADLINE).len(), before + 5);
        let sixth = enrol_by_mail_as(&bus, uid, &who.name);
        assert_eq!(sixth.err_name(), Some(TOO_MANY), "{sixth:?}");
        assert!(message(&sixth).contains("last hour"), "{sixth:?}");
        assert_eq!(sink.mails().len(), before + 5, "{:?}", sink.mails());
        assert!(sink.mails()[before..]
            .iter()
            .all(|m| m.to.iter().any(|t| t.contains(ADDRESS))));
    }
}

/// A name of `len` bytes that no account has.
fn long_name(len: usize) -> String {
    let mut name = String::from("otpglimlong");
    while name.len() < len {
        name.push(char::from(b'a' + (name.len() % 26) as u8));
    }
    name
}

#[test]
fn long_names_nobody_has_are_invalid_users_and_nothing_is_written() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    for len in [237, 238, 255, 256, 257] {
        let name = long_name(len);
        assert_eq!(name.len(), len);
        let calls: [(&str, &str, Vec<&str>); 4] = [
            ("Auth", "Challenge", vec![&name]),
            ("Auth", "Verify", vec![&name, "123456"]),
            ("Manager", "Enroll", vec![&name]),
            ("Manager", "Status", vec![&name]),
        ];
        for (iface, method, args) in calls {
            let r = call(&bus, iface, method, &args);
            assert_eq!(
                r.err_name(),
                Some(INVALID_USER),
                "{iface}.{method} of a {len}-byte name: {r:?}"
            );
        }
    }
    assert!(d.alive(), "{}", d.log());
    let written: Vec<_> = fs::read_dir(d.state_dir.join("users"))
        .expect("the users directory")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(written.is_empty(), "{written:?}");
    assert!(!d.log().contains("storage-error"), "{}", d.log());
    // And it still serves a name it knows.
    let u = test_user("otpglim-n");
    assert_eq!(
        call(&bus, "Manager", "Status", &[&u.name]).ok()["enrolled"],
        false
    );
}

/// Names of 238 and 256 bytes (too long for a file name of their own in
/// the store) that the name service knows, served by the real service
/// in-process with a table for the name service: the store holds them
/// under their uids and every call works.
#[test]
fn an_account_with_a_name_too_long_for_a_file_is_stored_by_its_uid() {
    use otpgated::accounts::TableAccounts;
    use otpgated::audit::Audit;
    use otpgated::clock::ManualClock;
    use otpgated::config::Config;
    use otpgated::crypto::MasterKey;
    use otpgated::engine::Engine;
    use otpgated::store::LocalStore;

    const T0: u64 = 1_900_000_020;
    let accounts = [
        (long_name(238), 4_000_000_001u32),
        (long_name(256), 4_000_000_002u32),
    ];
    let bus = Bus::start();
    let dir = TestDir::new("limits-long");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let engine = Arc::new(
        Engine::new(
            Config::parse("", Path::new("test.toml")).unwrap(),
            Box::new(LocalStore::open(&dir.join("state")).unwrap()),
            MasterKey::generate().unwrap(),
            Arc::new(ManualClock::new(T0)),
            Audit::none(),
            rt.handle().clone(),
        )
        .with_accounts(Arc::new(TableAccounts(accounts.to_vec()))),
    );
    let _conn = rt
        .block_on(otpgated::serve(&bus.address, Arc::clone(&engine)))
        .unwrap();

    for (name, uid) in &accounts {
        let name = name.as_str();
        let e = call(&bus, "Manager", "Enroll", &[name]).ok();
        let secret = e["secret"].as_str().expect("secret").to_string();
        let codes = call(
            &bus,
            "Manager",
            "Confirm",
            &[name, &oathtool_at(&secret, T0)],
        )
        .ok();
        assert_eq!(codes.as_array().map(Vec::len), Some(10), "{codes}");
        let next = oathtool_at(&secret, T0 + 30);
        let (r, info) = verify(&bus, name, &next);
        assert_eq!(r, "ok", "{info}");
        assert_eq!(verify(&bus, name, &next).0, "replayed");
        let st = call(&bus, "Manager", "Status", &[name]).ok();
        assert_eq!(st["user"], name);
        assert_eq!(st["enrolled"], true);
        // The file is written at a checkpoint.
        rt.block_on(engine.checkpoint()).expect("checkpoint");
        let record = dir.join("state/users").join(format!("uid:{uid}.json"));
        assert!(record.is_file(), "{} missing", record.display());
    }
    let listed: Vec<String> = call(&bus, "Admin", "ListUsers", &[])
        .ok()
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| u["user"].as_str().unwrap_or_default().to_string())
        .collect();
    for (name, _) in &accounts {
        assert!(listed.contains(name), "{listed:?}");
    }
    let mut files: Vec<String> = fs::read_dir(dir.join("state/users"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["uid:4000000001.json", "uid:4000000002.json"]);
}
