//! An upgrade keeps every user: the state directory and key written by the
//! release before devices, history and retired records (a fixture made by
//! that release's otpgated, tests/fixtures/before-devices) are opened by
//! today's daemon, the user logs in with a code oathtool computes from the
//! fixture's secret and with one of its backup codes, and gains a second
//! device on the old record.

mod pam_common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use otpgate_tests::*;
use pam_common::*;

const USER: &str = "otpgupg1";
const UID: u32 = 61234;

fn fixture() -> serde_json::Value {
    let path = repo_root().join("tests/fixtures/before-devices/fixture.json");
    serde_json::from_str(&fs::read_to_string(path).expect("fixture.json")).expect("JSON")
}

/// The fixture's account, with the uid its record is filed under.
fn fixture_user() {
    match nix::unistd::User::from_name(USER).ok().flatten() {
        Some(u) => assert_eq!(u.uid.as_raw(), UID, "{USER} exists with another uid"),
        None => userdb(&[
            "useradd",
            "-m",
            "-u",
            &UID.to_string(),
            "-s",
            "/bin/bash",
            USER,
        ]),
    }
}

#[test]
fn records_written_before_devices_load_and_log_in() {
    require_root();
    fixture_user();
    let fx = fixture();
    let secret = fx["secret"].as_str().unwrap();
    let from = repo_root().join("tests/fixtures/before-devices");
    let dir = TestDir::new("upgrade");
    let users = dir.join("state/users");
    fs::create_dir_all(&users).unwrap();
    for p in [dir.join("state"), users.clone()] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let record = format!("uid:{UID}.json");
    fs::copy(from.join("users").join(&record), users.join(&record)).unwrap();
    fs::set_permissions(users.join(&record), fs::Permissions::from_mode(0o600)).unwrap();
    let key = dir.join("master.key");
    fs::copy(from.join("master.key"), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
    let storage = format!(
        "[storage]\npath = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("state").display(),
        key.display()
    );

    let bus = Bus::start();
    let _d = Daemon::start_with_storage(&bus, Some((&storage, &key)), "");
    let st = call(&bus, "Manager", "Status", &[USER]).ok();
    assert_eq!(st["enrolled"], true, "{st}");
    assert_eq!(st["failures"], fx["failures"], "{st}");
    assert_eq!(st["backup_codes_left"], 10, "{st}");
    assert_eq!(st["devices"][0]["name"], "default", "{st}");

    let (svc, _pam) = etc_pam_service("upgrade", &module_line(&bus.module_args()));
    let o = pamtester(&svc, USER, &oathtool_now(secret));
    assert_outcome(&o, true, SUCCESS, PROMPT);
    let backup = fx["backup_codes"][3].as_str().unwrap();
    let o = pamtester(&svc, USER, backup);
    assert_outcome(&o, true, SUCCESS, "Backup code accepted: 9 left.");

    // The old record takes a second device.
    let e = call(&bus, "Manager", "Enroll", &[USER, "totp", "", "spare"]).ok();
    let spare = e["secret"].as_str().unwrap().to_string();
    call(&bus, "Manager", "Confirm", &[USER, &oathtool_now(&spare)]).ok();
    let st = call(&bus, "Manager", "Status", &[USER]).ok();
    assert_eq!(st["devices"].as_array().map(Vec::len), Some(2), "{st}");
}
