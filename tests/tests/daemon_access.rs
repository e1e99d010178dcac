//! The access table, method by method, through the real bus: each call is
//! made by `otpgate-testcall` running as the caller's uid (setpriv), so the
//! daemon sees the credentials the bus vouches for. Also the pending
//! enrolment's owner, Disable's code rule, and Admin.Import.
//!
//! Callers: root; a member of the admin group; the user the call is about;
//! another plain user; a uid with no passwd entry. The daemon lets an
//! admin-group member use Auth for its own user only (the access table's
//! "its own user only" in docs/protocol.md; authz.rs says why).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use otpgate_tests::*;
use serde_json::Value;

const PERIOD: u64 = 30;
/// A uid without a passwd entry (checked).
const NO_PASSWD_UID: u32 = 54321;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Root,
    Admin,
    Itself,
    Other,
    NoPasswd,
}

const EVERYONE: [Who; 5] = [
    Who::Root,
    Who::Admin,
    Who::Itself,
    Who::Other,
    Who::NoPasswd,
];
const AUTH: &[Who] = &[Who::Root, Who::Itself];
const MANAGER: &[Who] = &[Who::Root, Who::Admin, Who::Itself];
const ADMIN: &[Who] = &[Who::Root, Who::Admin];

struct Callers {
    admin: TestUser,
    other: TestUser,
}

impl Callers {
    fn new(admin: &str, other: &str) -> Callers {
        assert!(
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(NO_PASSWD_UID))
                .unwrap()
                .is_none(),
            "uid {NO_PASSWD_UID} must have no passwd entry"
        );
        Callers {
            admin: admin_group_member(admin),
            other: test_user(other),
        }
    }

    /// The uid for `who` when the call is about `target`.
    fn uid(&self, who: Who, target: &TestUser) -> Option<u32> {
        match who {
            Who::Root => None,
            Who::Admin => Some(self.admin.uid),
            Who::Itself => Some(target.uid),
            Who::Other => Some(self.other.uid),
            Who::NoPasswd => Some(NO_PASSWD_UID),
        }
    }
}

fn err_name(r: &CallResult) -> &str {
    r.err_name().unwrap_or("")
}

/// Asserts the table's verdict for one call and returns the result for
/// further checks of allowed calls.
fn expect(
    what: &str,
    who: Who,
    allowed: &[Who],
    r: CallResult,
) -> Option<Result<Value, (String, String)>> {
    if allowed.contains(&who) {
        assert!(
            !r.is_access_denied() && err_name(&r) != "transport",
            "{what} by {who:?} must be allowed: {r:?}"
        );
        Some(match r {
            CallResult::Ok(v) => Ok(v),
            CallResult::Err { name, message } => Err((name, message)),
        })
    } else {
        assert!(
            r.is_access_denied() || (who == Who::NoPasswd && bus_refused(&r)),
            "{what} by {who:?} must be AccessDenied: {r:?}"
        );
        None
    }
}

/// dbus-daemon (system type) drops a connection whose uid has no passwd
/// entry during authentication: such a caller never reaches otpgated.
fn bus_refused(r: &CallResult) -> bool {
    matches!(r, CallResult::Err { name, .. } if name == "transport")
}

fn expect_ok(what: &str, who: Who, allowed: &[Who], r: CallResult) -> Option<Value> {
    expect(what, who, allowed, r).map(|x| x.unwrap_or_else(|e| panic!("{what} by {who:?}: {e:?}")))
}

fn expect_err(what: &str, who: Who, allowed: &[Who], r: CallResult, name: &str) {
    if let Some(x) = expect(what, who, allowed, r) {
        match x {
            Err((n, _)) => assert_eq!(n, name, "{what} by {who:?}"),
            Ok(v) => panic!("{what} by {who:?} should fail with {name}, got {v}"),
        }
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    b
}

/// A `~/.google_authenticator` file as google-authenticator writes it for
/// TOTP: an 80-bit base32 secret, its options, 5 scratch codes.
struct GaFile {
    path: PathBuf,
    secret: String,
    scratch: Vec<String>,
}

fn write_ga_file(dir: &Path, name: &str, mode: u32) -> GaFile {
    const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    // 16 characters of 5 bits: exactly 10 bytes, no padding.
    let secret: String = random_bytes(16)
        .iter()
        .map(|b| B32[(b & 31) as usize] as char)
        .collect();
    let scratch: Vec<String> = random_bytes(20)
        .chunks(4)
        .map(|c| {
            let n = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            (10_000_000 + n % 90_000_000).to_string()
        })
        .collect();
    let text = format!(
        "{secret}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n{}\n",
        scratch.join("\n")
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write google-authenticator file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    GaFile {
        path,
        secret,
        scratch,
    }
}

#[test]
fn every_method_follows_the_access_table() {
    let bus = Bus::start();
    let d = Daemon::start(&bus, "");
    let c = Callers::new("otpgd-acc-adm", "otpgd-acc-other");
    let t = test_user("otpgd-acc-t");
    let x = test_user("otpgd-acc-x");
    let mut e = enroll(&bus, &t.name);
    let tn = t.name.as_str();
    let as_ = |who: Who, target: &TestUser, iface: &str, method: &str, args: &[&str]| {
        call_as(&bus, c.uid(who, target), iface, method, args)
    };

    // ---- Auth
    for who in EVERYONE {
        let r = as_(who, &t, "Auth", "Challenge", &[tn]);
        if let Some(v) = expect_ok("Challenge", who, AUTH, r) {
            assert_eq!(v[0], "code-required", "{v}");
        }
        let r = as_(who, &t, "Auth", "Verify", &[tn, "12345"]);
        if let Some(v) = expect_ok("Verify", who, AUTH, r) {
            assert_eq!(v[0], "invalid", "{v}");
        }
    }
    // Every uid with a name may verify its own codes, administrators too.
    for (uid, name) in [(c.admin.uid, &c.admin.name), (c.other.uid, &c.other.name)] {
        let r = call_as(&bus, Some(uid), "Auth", "Challenge", &[name]).ok();
        assert_eq!(r[0], "not-enrolled", "{name}: {r}");
        let r = call_as(&bus, Some(uid), "Auth", "Verify", &[name, "123456"]).ok();
        assert_eq!(r[0], "not-enrolled", "{name}: {r}");
    }
    // A uid without a name is nobody's own.
    for user in [tn, "54321", ""] {
        let r = call_as(&bus, Some(NO_PASSWD_UID), "Auth", "Challenge", &[user]);
        assert!(
            r.is_access_denied() || bus_refused(&r) || err_name(&r).ends_with(".InvalidUser"),
            "{user:?}: {r:?}"
        );
    }

    // ---- Manager, without side effects on T.
    for who in EVERYONE {
        let r = as_(who, &t, "Manager", "Enroll", &[tn]);
        expect_err(
            "Enroll",
            who,
            MANAGER,
            r,
            "org.otpgate.Otpgate1.Error.AlreadyEnrolled",
        );
        let r = as_(who, &t, "Manager", "Confirm", &[tn, "123456"]);
        expect_err(
            "Confirm",
            who,
            MANAGER,
            r,
            "org.otpgate.Otpgate1.Error.NoPendingEnrollment",
        );
        let r = as_(who, &t, "Manager", "Status", &[tn]);
        if let Some(v) = expect_ok("Status", who, MANAGER, r) {
            assert_eq!(v["enrolled"], true, "{v}");
            assert_eq!(v["user"], tn, "{v}");
        }
    }

    // RegenerateBackupCodes: administrators need no code, the user proves
    // itself with a backup code of the set in force.
    let mut codes = e.backup_codes.clone();
    for who in EVERYONE {
        let code = if who == Who::Itself {
            codes[0].clone()
        } else {
            String::new()
        };
        let r = as_(who, &t, "Manager", "RegenerateBackupCodes", &[tn, &code]);
        if let Some(v) = expect_ok("RegenerateBackupCodes", who, MANAGER, r) {
            let new: Vec<String> = v
                .as_array()
                .expect("codes")
                .iter()
                .map(|c| c.as_str().expect("code").to_string())
                .collect();
            assert_eq!(new.len(), 10, "{v}");
            assert!(new.iter().all(|n| !codes.contains(n)), "fresh codes");
            codes = new;
        }
    }
    e.backup_codes = codes;

    // Disable: every allowed caller really disables; T is enrolled again
    // after each.
    for who in EVERYONE {
        let code = if who == Who::Itself {
            e.backup_codes[0].clone()
        } else {
            String::new()
        };
        let r = as_(who, &t, "Manager", "Disable", &[tn, &code]);
        if expect_ok("Disable", who, MANAGER, r).is_some() {
            let st = call(&bus, "Manager", "Status", &[tn]).ok();
            assert_eq!(st["enrolled"], false, "disabled by {who:?}: {st}");
            e = enroll(&bus, tn);
        }
    }

    // ---- Admin
    for who in EVERYONE {
        let r = as_(who, &t, "Admin", "ListUsers", &[]);
        if let Some(v) = expect_ok("ListUsers", who, ADMIN, r) {
            let list = v.as_array().expect("list");
            assert!(list.iter().any(|u| u["user"] == tn), "{v}");
        }
        let r = as_(who, &t, "Admin", "Stats", &[]);
        if let Some(v) = expect_ok("Stats", who, ADMIN, r) {
            assert_eq!(v["users_enrolled"], 1, "{v}");
        }
        let r = as_(who, &t, "Admin", "Unlock", &[tn]);
        expect_ok("Unlock", who, ADMIN, r);
        let r = as_(who, &t, "Admin", "Reset", &[tn]);
        if expect_ok("Reset", who, ADMIN, r).is_some() {
            let st = call(&bus, "Manager", "Status", &[tn]).ok();
            assert_eq!(st["enrolled"], false, "reset by {who:?}: {st}");
            e = enroll(&bus, tn);
        }
    }

    // Import: the file must be readable by every caller's testcall, which
    // reads it before calling (a test secret, in the test's own dir).
    let dir = TestDir::new("access-import");
    let ga = write_ga_file(&dir.path, "google_authenticator", 0o644);
    let file = ga.path.display().to_string();
    for who in EVERYONE {
        let r = as_(who, &x, "Admin", "Import", &[&x.name, &file]);
        if let Some(v) = expect_ok("Import", who, ADMIN, r) {
            assert_eq!(v["backup_codes_imported"], 5, "{v}");
            call(&bus, "Admin", "Reset", &[&x.name]).ok();
        }
    }
    // After all the refusals T still works with its current enrolment.
    let (r, info) = verify(&bus, tn, &e.backup_codes[1]);
    assert_eq!(r, "ok", "{info}");

    // Whether the bus or the daemon refused it, the uid without a passwd
    // entry got nothing done: at most access-denied lines name it.
    let log = d.log();
    for line in log.lines().filter(|l| l.contains("caller_uid=54321")) {
        assert!(line.contains("event=access-denied"), "{line}");
    }
}

#[test]
fn a_pending_enrolment_is_confirmed_by_the_uid_that_began_it_or_root() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let admin = admin_group_member("otpgd-acc-adm2");
    let p1 = test_user("otpgd-acc-p1");
    let p2 = test_user("otpgd-acc-p2");
    let p3 = test_user("otpgd-acc-p3");
    let p4 = test_user("otpgd-acc-p4");
    let secret_of = |v: Value| v["secret"].as_str().expect("secret").to_string();

    // `otpgate enroll --json` then `otpgate confirm`: two processes of the
    // user.
    let s1 = secret_of(call_as(&bus, Some(p1.uid), "Manager", "Enroll", &[&p1.name]).ok());
    let code = oathtool_now(&s1);
    let codes = call_as(&bus, Some(p1.uid), "Manager", "Confirm", &[&p1.name, &code]).ok();
    assert_eq!(codes.as_array().map(Vec::len), Some(10), "{codes}");
    let st = call_as(&bus, Some(p1.uid), "Manager", "Status", &[&p1.name]).ok();
    assert_eq!(st["enrolled"], true, "{st}");
    let r = call_as(&bus, Some(p1.uid), "Auth", "Verify", &[&p1.name, &code]).ok();
    assert_eq!(r[0], "replayed", "the confirming code is used: {r}");

    // Started by an administrator for p2: p2 may not confirm it, the
    // administrator may.
    let s2 = secret_of(call_as(&bus, Some(admin.uid), "Manager", "Enroll", &[&p2.name]).ok());
    let code = oathtool_now(&s2);
    let r = call_as(&bus, Some(p2.uid), "Manager", "Confirm", &[&p2.name, &code]);
    assert!(r.is_access_denied(), "{r:?}");
    let st = call(&bus, "Manager", "Status", &[&p2.name]).ok();
    assert_eq!(st["pending"], true, "a refused confirmation keeps it: {st}");
    assert_eq!(st["enrolled"], false, "{st}");
    let codes = call_as(
        &bus,
        Some(admin.uid),
        "Manager",
        "Confirm",
        &[&p2.name, &code],
    )
    .ok();
    assert_eq!(codes.as_array().map(Vec::len), Some(10), "{codes}");

    // Started by an administrator for p3: root may confirm it.
    let s3 = secret_of(call_as(&bus, Some(admin.uid), "Manager", "Enroll", &[&p3.name]).ok());
    let code = oathtool_now(&s3);
    let r = call_as(&bus, Some(p3.uid), "Manager", "Confirm", &[&p3.name, &code]);
    assert!(r.is_access_denied(), "{r:?}");
    let codes = call(&bus, "Manager", "Confirm", &[&p3.name, &code]).ok();
    assert_eq!(codes.as_array().map(Vec::len), Some(10), "{codes}");

    // Started by p4 itself: another administrator may not confirm it.
    let s4 = secret_of(call_as(&bus, Some(p4.uid), "Manager", "Enroll", &[&p4.name]).ok());
    let code = oathtool_now(&s4);
    let r = call_as(
        &bus,
        Some(admin.uid),
        "Manager",
        "Confirm",
        &[&p4.name, &code],
    );
    assert!(r.is_access_denied(), "{r:?}");
    let codes = call_as(&bus, Some(p4.uid), "Manager", "Confirm", &[&p4.name, &code]).ok();
    assert_eq!(codes.as_array().map(Vec::len), Some(10), "{codes}");
}

#[test]
fn disable_by_the_user_needs_a_current_code_by_an_administrator_none() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let admin = admin_group_member("otpgd-acc-adm3");
    let d1 = test_user("otpgd-acc-d1");
    let d2 = test_user("otpgd-acc-d2");
    let e = enroll(&bus, &d1.name);
    let as_d1 = |args: &[&str]| call_as(&bus, Some(d1.uid), "Manager", "Disable", args);

    let r = as_d1(&[&d1.name, ""]);
    assert_eq!(
        err_name(&r),
        "org.otpgate.Otpgate1.Error.InvalidCode",
        "no code: {r:?}"
    );
    // A code of the wrong shape and a wrong code of the right shape.
    let near: Vec<String> = (0..7)
        .map(|k| oathtool_at(&e.secret, now() + k * PERIOD - 3 * PERIOD))
        .collect();
    let wrong = (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !near.contains(c))
        .expect("a wrong code");
    for code in ["12", wrong.as_str()] {
        let r = as_d1(&[&d1.name, code]);
        assert_eq!(
            err_name(&r),
            "org.otpgate.Otpgate1.Error.InvalidCode",
            "{code}: {r:?}"
        );
    }
    let st = call(&bus, "Manager", "Status", &[&d1.name]).ok();
    assert_eq!(st["enrolled"], true, "{st}");
    assert_eq!(st["failures"], 2, "wrong codes count: {st}");

    let right = oathtool_at(&e.secret, e.confirmed_at + PERIOD);
    assert_eq!(as_d1(&[&d1.name, &right]).ok(), Value::Null);
    let st = call(&bus, "Manager", "Status", &[&d1.name]).ok();
    assert_eq!(st["enrolled"], false, "{st}");

    enroll(&bus, &d2.name);
    let r = call_as(&bus, Some(admin.uid), "Manager", "Disable", &[&d2.name, ""]);
    assert_eq!(r.ok(), Value::Null);
    let st = call(&bus, "Manager", "Status", &[&d2.name]).ok();
    assert_eq!(st["enrolled"], false, "{st}");
}

#[test]
fn import_takes_over_a_google_authenticator_file() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpgd-acc-imp");
    let dir = TestDir::new("import");
    let ga = write_ga_file(&dir.path, "google_authenticator", 0o600);

    let r = call(
        &bus,
        "Admin",
        "Import",
        &[&user.name, &ga.path.display().to_string()],
    )
    .ok();
    assert_eq!(r["backup_codes_imported"], 5, "{r}");
    let st = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(st["enrolled"], true, "{st}");
    assert_eq!(st["backup_codes_left"], 5, "{st}");

    let code = oathtool_now(&ga.secret);
    let (r, info) = verify(&bus, &user.name, &code);
    assert_eq!(r, "ok", "{info}");
    assert_eq!(info["method_used"], "totp", "{info}");
    let (r, info) = verify(&bus, &user.name, &code);
    assert_eq!(r, "replayed", "{info}");

    let (r, info) = verify(&bus, &user.name, &ga.scratch[0]);
    assert_eq!(r, "ok", "{info}");
    assert_eq!(info["method_used"], "backup", "{info}");
    assert_eq!(info["backup_codes_left"], 4, "{info}");
    let (r, info) = verify(&bus, &user.name, &ga.scratch[0]);
    assert_eq!(r, "invalid", "a scratch code works once: {info}");

    // An enrolled user is not overwritten by a second import.
    let r = call(
        &bus,
        "Admin",
        "Import",
        &[&user.name, &ga.path.display().to_string()],
    );
    assert_eq!(
        err_name(&r),
        "org.otpgate.Otpgate1.Error.AlreadyEnrolled",
        "{r:?}"
    );
}
