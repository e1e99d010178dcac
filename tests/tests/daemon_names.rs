//! One account, one record, whatever name PAM is given: a second passwd
//! name on the enrolled user's uid, a renamed account, a name the system
//! does not know, and a record filed by name by an earlier version. Through
//! the real otpgated, the real module (pamtester, with `nullok`, as the
//! shipped profile sets it) and the real user database.

#[path = "pam_common/mod.rs"]
mod pam_common;

use std::fs;

use otpgate_tests::*;
use pam_common::*;

const PERIOD: u64 = 30;

/// The module with `nullok`, then a module that lets anything through (as
/// the password would): "not enrolled" here means "in".
fn nullok_service(bus: &Bus) -> (String, EtcFile) {
    etc_pam_service(
        "names",
        &format!(
            "{}\nauth required pam_permit.so",
            module_line(&format!("{} nullok", bus.module_args()))
        ),
    )
}

#[test]
fn a_second_name_on_the_enrolled_uid_is_asked_for_the_same_code() {
    require_root();
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let owner = test_user("otpgnm-owner");
    let _cleanup = RemoveUsers::now_and_later(&["otpgnm-alias"]);
    // Appended after the owner's line, so getpwuid still names the owner.
    userdb(&[
        "useradd",
        "-o",
        "-u",
        &owner.uid.to_string(),
        "-g",
        &owner.gid.to_string(),
        "-M",
        "-N",
        "-s",
        "/bin/bash",
        "otpgnm-alias",
    ]);
    let e = enroll(&bus, &owner.name);
    let (service, _f) = nullok_service(&bus);

    // Under the other name: not "not enrolled" (which nullok would let
    // through on the password alone), but the owner's second factor.
    let v = call(&bus, "Auth", "Challenge", &["otpgnm-alias"]).ok();
    assert_eq!(v[0], "code-required", "{v}");
    let status = call(&bus, "Manager", "Status", &["otpgnm-alias"]).ok();
    assert_eq!(status["enrolled"], true, "{status}");
    assert_eq!(status["user"], owner.name.as_str(), "{status}");

    let out = pamtester(&service, "otpgnm-alias", &wrong_code(&e.secret));
    assert!(
        !out.success,
        "the alias got in without a code: {}",
        out.all()
    );
    assert!(out.says("Wrong code"), "{}", out.all());

    let code = oathtool_at(&e.secret, e.confirmed_at + PERIOD);
    let out = pamtester(&service, "otpgnm-alias", &code);
    assert!(out.success, "{}", out.all());
    // The same record: the code the alias used is used for the owner too,
    // and the failure the alias made was counted against the owner.
    let out = pamtester(&service, &owner.name, &code);
    assert!(!out.success, "{}", out.all());
    assert!(out.says("already used"), "{}", out.all());
    // The files are written at a checkpoint, which a clean stop makes.
    d.restart(&bus);
    let files: Vec<_> = fs::read_dir(d.state_dir.join("users"))
        .expect("users dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    assert_eq!(files, [format!("uid:{}.json", owner.uid)], "one record");
}

#[test]
fn a_renamed_account_keeps_its_enrolment() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let _cleanup = RemoveUsers::now_and_later(&["otpgnm-ren-old", "otpgnm-ren-new"]);
    userdb(&[
        "useradd",
        "-M",
        "-N",
        "-g",
        "users",
        "-s",
        "/bin/bash",
        "otpgnm-ren-old",
    ]);
    let e = enroll(&bus, "otpgnm-ren-old");
    userdb(&["usermod", "-l", "otpgnm-ren-new", "otpgnm-ren-old"]);

    let status = call(&bus, "Manager", "Status", &["otpgnm-ren-new"]).ok();
    assert_eq!(status["enrolled"], true, "{status}");
    assert_eq!(status["user"], "otpgnm-ren-new", "{status}");
    let list = call(&bus, "Admin", "ListUsers", &[]).ok();
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|u| u["user"] == "otpgnm-ren-new" && u["enrolled"] == true),
        "{list}"
    );

    let (service, _f) = nullok_service(&bus);
    let out = pamtester(&service, "otpgnm-ren-new", &wrong_code(&e.secret));
    assert!(
        !out.success,
        "renamed, then in without a code: {}",
        out.all()
    );
    let out = pamtester(
        &service,
        "otpgnm-ren-new",
        &oathtool_at(&e.secret, e.confirmed_at + PERIOD),
    );
    assert!(out.success, "{}", out.all());
    // The old name means no one now.
    let r = call(&bus, "Auth", "Challenge", &["otpgnm-ren-old"]);
    assert_eq!(
        r.err_name(),
        Some("org.otpgate.Otpgate1.Error.InvalidUser"),
        "{r:?}"
    );
}

#[test]
fn a_name_the_system_does_not_know_is_refused_even_with_nullok() {
    require_root();
    let bus = Bus::start();
    let d = Daemon::start(&bus, "");
    let (service, _f) = nullok_service(&bus);
    let ghost = "otpgnm-nosuchuser";
    assert!(nix::unistd::User::from_name(ghost).unwrap().is_none());
    for (iface, method) in [("Auth", "Challenge"), ("Manager", "Status")] {
        let r = call(&bus, iface, method, &[ghost]);
        assert_eq!(
            r.err_name(),
            Some("org.otpgate.Otpgate1.Error.InvalidUser"),
            "{iface}.{method}: {r:?}"
        );
    }
    let r = call(&bus, "Auth", "Verify", &[ghost, "123456"]);
    assert_eq!(
        r.err_name(),
        Some("org.otpgate.Otpgate1.Error.InvalidUser"),
        "{r:?}"
    );
    let out = pamtester(&service, ghost, "123456");
    assert!(!out.success, "nullok let an unknown name in: {}", out.all());
    assert!(out.says("does not know this account"), "{}", out.all());
    assert!(
        fs::read_dir(d.state_dir.join("users"))
            .expect("users dir")
            .next()
            .is_none(),
        "nothing was written"
    );
}

/// A record an earlier version filed under the user's name, with its
/// secrets bound to that name, is moved to the uid key at start and keeps
/// working: the same app code and backup codes log in.
#[test]
fn a_record_filed_by_name_moves_to_the_uid_and_keeps_working() {
    use otpgated::crypto::{self, MasterKey};
    use otpgated::record::{Factor, TotpFactor, UserRecord};
    use otpgated::store::LocalStore;
    use otpgated::{backup, totp};

    require_root();
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "");
    let u = test_user("otpgnm-legacy");
    d.stop();

    // The record as an earlier otpgated wrote it: keyed and bound by name.
    let key = MasterKey::load_or_create(&d.key_file).expect("the daemon's key");
    let secret = crypto::random_bytes::<20>().expect("random");
    let secret_b32 = totp::base32(&secret).to_string();
    let now = now();
    let mut rec = UserRecord::new(&u.name, now - 3600);
    let sealed = crypto::seal(&key, &u.name, "f1", &secret).expect("seal");
    rec.factors = vec![Factor::Totp(TotpFactor {
        id: "f1".into(),
        secret: sealed,
        algorithm: "SHA1".into(),
        digits: 6,
        period: PERIOD,
        last_step: None,
        drift: None,
        burned_steps: Vec::new(),
        created_at: now - 3600,
        origin: "enrolled".into(),
        name: None,
        last_used_at: None,
    })];
    let codes = backup::generate(3).expect("codes");
    rec.backup = Some(backup::hash_set(&key, &u.name, &codes, now).expect("hash"));
    {
        let store = LocalStore::open(&d.state_dir).expect("the daemon's store");
        store.save(&rec).expect("save the old-style record");
        // Into the file now, as the earlier otpgated left it.
        otpgated::store::Store::checkpoint(&store).expect("checkpoint");
    }
    let legacy = d.state_dir.join("users").join(format!("{}.json", u.name));
    assert!(legacy.exists());

    d.restart(&bus);
    assert!(d.log().contains("event=record-moved"), "{}", d.log());
    assert!(!legacy.exists(), "the name-keyed file is gone");
    // The new file is written at a checkpoint, which a clean stop makes.
    d.restart(&bus);
    assert!(d.record_path(&u.name).exists(), "filed under the uid");

    let (r, info) = verify(&bus, &u.name, &oathtool_at(&secret_b32, now));
    assert_eq!(r, "ok", "the moved secret still opens: {info}");
    let (r, info) = verify(&bus, &u.name, codes[0].as_str());
    assert_eq!(r, "ok", "the moved backup codes still match: {info}");
    assert_eq!(info["backup_codes_left"], 2, "{info}");
}
