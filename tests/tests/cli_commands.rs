//! Every `otpgate` command, run as the real binary against the real
//! otpgated on a private bus: as root, as a member of the admin group, as
//! the user itself, and as another user (refused).

mod cli_common;

use cli_common::*;
use otpgate_tests::*;

/// Codes of several successive steps are needed in one test; each step
/// is used up once accepted.
const WIDE_WINDOW: &str = "[totp]\nwindow = 10\n";

fn status(bus: &Bus, who: As, user: &str) -> serde_json::Value {
    otpgate(bus, who, &["status", "--user", user, "--json"]).json()
}

/// Locks `user` with wrong codes through Auth.Verify (as the PAM module
/// would see them), default max_failures = 5.
fn lock(bus: &Bus, user: &str) {
    for _ in 0..5 {
        let (r, _) = verify(bus, user, "000000");
        if r == "locked" {
            break;
        }
    }
    let (r, _) = verify(bus, user, "000000");
    assert_eq!(r, "locked");
}

#[test]
fn cli_as_the_user_itself() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, WIDE_WINDOW);
    let alice = test_user("otpgclia");
    let me = As::User(&alice);

    // `--user` defaults to the invoking user (from the passwd database).
    let s = otpgate(&bus, me, &["status", "--json"]).json();
    assert_eq!(s["user"], alice.name);
    assert_eq!(s["enrolled"], false);
    for key in [
        "enrolled",
        "pending",
        "method",
        "backup_codes_left",
        "locked",
        "locked_until",
        "failures",
    ] {
        assert!(s.get(key).is_some(), "status lacks {key}: {s}");
    }
    let text = otpgate(&bus, me, &["status"]).ok().stdout.clone();
    assert!(
        text.contains(&format!("user:               {}", alice.name)),
        "{text}"
    );
    assert!(text.contains("enrolled:           no"), "{text}");

    // No terminal: enroll prints {uri, secret} and stops.
    let e = otpgate(&bus, me, &["enroll"]).json();
    let uri = e["uri"].as_str().unwrap().to_owned();
    let secret = e["secret"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert_eq!(uri_secret(&uri), secret);
    assert_eq!(status(&bus, me, &alice.name)["pending"], true);

    otpgate(&bus, me, &["confirm", &wrong_code(&secret)]).fails_with("code not accepted");

    let t = now();
    let c = otpgate(&bus, me, &["confirm", &oathtool_at(&secret, t), "--json"]).json();
    let first_codes = strings(&c["backup_codes"]);
    assert_eq!(first_codes.len(), 10);
    let s = status(&bus, me, &alice.name);
    assert_eq!(s["enrolled"], true);
    assert_eq!(s["pending"], false);
    assert_eq!(s["method"], "totp");
    assert_eq!(s["backup_codes_left"], 10);

    // Enrolling twice is refused with what to do instead.
    otpgate(&bus, me, &["enroll"]).fails_with("already enrolled");

    // A user needs a code for backup-codes and disable; without a terminal
    // and without --code, the CLI says how to give one.
    otpgate(&bus, me, &["backup-codes"]).fails_with("--code");
    otpgate(&bus, me, &["disable"]).fails_with("--code");
    // The code through stdin (`--code -`), not the process list.
    let b = otpgate_stdin(
        &bus,
        me,
        &["backup-codes", "--code", "-", "--json"],
        &format!("{}\n", oathtool_at(&secret, t + 30)),
    )
    .json();
    let new_codes = strings(&b["backup_codes"]);
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|c| !first_codes.contains(c)));
    let (r, _) = verify(&bus, &alice.name, &first_codes[0]);
    assert_eq!(r, "invalid", "old backup codes are gone");

    // Text output of backup-codes: the codes and the line to store them.
    let out = otpgate(
        &bus,
        me,
        &["backup-codes", "--code", &oathtool_at(&secret, t + 60)],
    );
    let text = out.ok().stdout.clone();
    assert!(text.contains("Store these codes somewhere safe"), "{text}");
    let third: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.len() == 12 && w.matches('-').count() == 2)
        .collect();
    assert_eq!(third.len(), 10, "{text}");

    // The administrator commands are refused to a plain user, even about
    // themselves.
    otpgate(&bus, me, &["list"]).refused();
    otpgate(&bus, me, &["stats"]).refused();
    otpgate(&bus, me, &["unlock", &alice.name]).refused();
    otpgate(&bus, me, &["reset", &alice.name]).refused();

    // Disable with a backup code.
    let out = otpgate(&bus, me, &["disable", "--code", third[0]]);
    assert!(out.ok().stdout.contains("removed"), "{out:?}");
    assert_eq!(status(&bus, me, &alice.name)["enrolled"], false);
    otpgate(&bus, me, &["disable", "--code", "123456"]).fails_with("has no second factor enrolled");
}

/// What root and an admin-group member can do to another user.
fn administer(bus: &Bus, admin: As, user: &TestUser) {
    let u = user.name.as_str();

    let e = otpgate(bus, admin, &["enroll", "--user", u]).json();
    assert_eq!(e["user"], u);
    let secret = e["secret"].as_str().unwrap().to_owned();
    otpgate(
        bus,
        admin,
        &["confirm", "--user", u, &oathtool_now(&secret)],
    )
    .ok();
    let s = status(bus, admin, u);
    assert_eq!(s["enrolled"], true);
    assert_eq!(s["user"], u);

    // list: table and JSON.
    let table = otpgate(bus, admin, &["list"]).ok().stdout.clone();
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("USER") && header.contains("STATE"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{u} ")))
        .unwrap_or_else(|| panic!("{u} not in {table}"));
    assert!(row.contains("enrolled") && row.contains("totp"), "{row}");
    let state_col = header.find("STATE").unwrap();
    assert_eq!(
        &row[state_col..state_col + 8],
        "enrolled",
        "aligned: {table}"
    );
    let list = otpgate(bus, admin, &["list", "--json"]).json();
    let entry = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["user"] == u)
        .unwrap_or_else(|| panic!("{u} not in {list}"));
    assert_eq!(entry["enrolled"], true);
    assert_eq!(entry["backup_codes_left"], 10);

    // stats: table and JSON.
    let stats = otpgate(bus, admin, &["stats", "--json"]).json();
    for key in [
        "users_enrolled",
        "users_locked",
        "successes",
        "failures",
        "lockouts",
        "backup_codes_used",
        "enrolments",
        "disabled",
        "resets",
    ] {
        assert!(stats[key].is_u64(), "stats lacks {key}: {stats}");
    }
    assert_eq!(stats["days"], 30);
    assert!(stats["users_enrolled"].as_u64().unwrap() >= 1);
    let text = otpgate(bus, admin, &["stats"]).ok().stdout.clone();
    assert!(text.starts_with("Last 30 days:"), "{text}");
    assert!(text.contains("lockouts"), "{text}");
    assert!(text.contains("resets"), "{text}");

    // backup-codes for another user: no code needed.
    let b = otpgate(bus, admin, &["backup-codes", "--user", u, "--json"]).json();
    assert_eq!(strings(&b["backup_codes"]).len(), 10);

    // A lock shows in status and list, and unlock clears it.
    lock(bus, u);
    let s = status(bus, admin, u);
    assert_eq!(s["locked"], true);
    assert!(s["locked_until"].as_u64().unwrap() > now());
    assert!(s["failures"].as_u64().unwrap() >= 5);
    let table = otpgate(bus, admin, &["list"]).ok().stdout.clone();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(u) && l.contains("locked until")),
        "{table}"
    );
    let text = otpgate(bus, admin, &["status", "--user", u])
        .ok()
        .stdout
        .clone();
    assert!(text.contains("locked:             yes, until"), "{text}");
    let out = otpgate(bus, admin, &["unlock", u]);
    assert!(out.ok().stdout.contains("unlocked"), "{out:?}");
    let s = status(bus, admin, u);
    assert_eq!(s["locked"], false);
    assert_eq!(s["failures"], 0);
    let j = otpgate(bus, admin, &["unlock", u, "--json"]).json();
    assert_eq!(j["unlocked"], true);

    // disable without a code.
    otpgate(bus, admin, &["disable", "--user", u]).ok();
    assert_eq!(status(bus, admin, u)["enrolled"], false);

    // reset removes an enrolment; a second reset says there is none.
    let e = otpgate(bus, admin, &["enroll", "--user", u]).json();
    let secret = e["secret"].as_str().unwrap().to_owned();
    otpgate(
        bus,
        admin,
        &["confirm", "--user", u, &oathtool_now(&secret), "--json"],
    )
    .json();
    let j = otpgate(bus, admin, &["reset", u, "--json"]).json();
    assert_eq!(j["reset"], true);
    assert_eq!(status(bus, admin, u)["enrolled"], false);
    otpgate(bus, admin, &["reset", u]).fails_with("has no second factor enrolled");
}

#[test]
fn cli_as_root() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let bob = test_user("otpgclib");
    administer(&bus, As::Root, &bob);
}

#[test]
fn cli_as_admin_group_member() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let admin = admin_group_member("otpgcliadm");
    let carol = test_user("otpgclic");
    administer(&bus, As::User(&admin), &carol);
}

#[test]
fn cli_as_another_user_is_refused() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let victim = test_user("otpgcliv");
    let mallory = test_user("otpgclim");
    let enrolled = enroll(&bus, &victim.name);
    let v = victim.name.as_str();
    let m = As::User(&mallory);

    let dir = TestDir::new("cli-refused");
    let ga = dir.join("google_authenticator");
    std::fs::write(&ga, "JBSWY3DPEHPK3PXPJBSWY3DPEH\n\" TOTP_AUTH\n12345678\n").unwrap();
    let ga = ga.display().to_string();

    for args in [
        vec!["status", "--user", v],
        vec!["enroll", "--user", v],
        vec!["confirm", "--user", v, "123456"],
        vec!["disable", "--user", v],
        vec!["disable", "--user", v, "--code", "123456"],
        vec!["backup-codes", "--user", v],
        vec!["unlock", v],
        vec!["reset", v],
        vec!["list"],
        vec!["stats"],
        vec!["import", "--user", v, "--google-authenticator", &ga],
    ] {
        otpgate(&bus, m, &args).refused();
        let mut json = args.clone();
        json.push("--json");
        otpgate(&bus, m, &json).refused();
    }

    // Nothing changed for the victim.
    let s = status(&bus, As::Root, v);
    assert_eq!(s["enrolled"], true);
    assert_eq!(s["backup_codes_left"], enrolled.backup_codes.len() as u64);
    assert_eq!(s["failures"], 0);
}

#[test]
fn cli_failures_are_one_line_a_person_can_act_on() {
    // No daemon on the bus.
    let bus = Bus::start();
    otpgate(&bus, As::Root, &["status"])
        .fails_with("otpgated is not running")
        .fails_with("systemctl start otpgated");
    otpgate(&bus, As::Root, &["list", "--json"]).fails_with("otpgated is not running");

    // No bus at all.
    let dir = TestDir::new("cli-nobus");
    let nowhere = format!("unix:path={}", dir.join("no-such-socket").display());
    otpgate_in(&nowhere, As::Root, &["status"], "").fails_with("cannot connect to the system bus");
    // --bus beats the environment.
    let out = otpgate(&bus, As::Root, &["--bus", &nowhere, "status"]);
    out.fails_with("cannot connect to the system bus");

    let _d = Daemon::start(&bus, "");
    let dave = test_user("otpgclid");
    let d = dave.name.as_str();

    otpgate(&bus, As::Root, &["disable", "--user", d]).fails_with("has no second factor enrolled");
    otpgate(&bus, As::Root, &["confirm", "--user", d, "123456"])
        .fails_with("no enrolment is pending");
    otpgate(&bus, As::Root, &["enroll", "--user", "otpgnosuchuser"]).fails_with("otpgnosuchuser");

    enroll(&bus, d);
    otpgate(&bus, As::Root, &["enroll", "--user", d]).fails_with("already enrolled");
    // A refused enrolment leaves no --qr-svg file behind.
    let svg = dir.join("dave.svg");
    otpgate(
        &bus,
        As::Root,
        &[
            "enroll",
            "--user",
            d,
            "--qr-svg",
            &svg.display().to_string(),
        ],
    )
    .fails_with("already enrolled");
    assert!(!svg.exists());

    // Usage errors: exit 2, from clap.
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["status", "--user", "../etc"],
        vec!["enroll", "--email", "a@example.org"],
        vec!["confirm"],
        vec!["unlock"],
        vec!["import", "--user", d],
        vec!["enroll", "--method", "sms"],
    ] {
        let out = otpgate(&bus, As::Root, &args);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(!out.stderr.is_empty(), "{out:?}");
    }

    // --help on every command, each with an example.
    for cmd in [
        "enroll",
        "confirm",
        "status",
        "disable",
        "backup-codes",
        "unlock",
        "reset",
        "list",
        "stats",
        "import",
    ] {
        let out = otpgate(&bus, As::Root, &[cmd, "--help"]);
        out.ok();
        assert!(
            out.stdout.contains("Example"),
            "{cmd} --help: {}",
            out.stdout
        );
        assert!(out.stdout.contains(&format!("otpgate {cmd}")), "{cmd}");
    }
}
