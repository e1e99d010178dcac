//! `otpgate admin rotate-key` on the local store: users keep their apps
//! and their replay marks under the new key, backup codes are dropped (and
//! said so), and it refuses to run beside a live daemon.

mod cli_common;
mod pam_common;

use std::path::Path;

use cli_common::rotate_key;
use otpgate_tests::*;
use pam_common::*;

/// What the module says when a code was used before.
const REPLAYED: &str = "That code was already used: wait for the next one.";

#[test]
fn a_new_key_keeps_apps_and_marks_and_drops_backup_codes() {
    require_root();
    let extra = "[totp]\nwindow = 10\n[backup_codes]\ncount = 3\n";
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, extra);
    let (svc, _svc_file) = etc_pam_service("rotate", &module_line(&bus.module_args()));
    let u = test_user("otpgrot-u");
    let e = enroll(&bus, &u.name);
    let c1 = oathtool_at(&e.secret, e.confirmed_at + 30);
    assert_outcome(&pamtester(&svc, &u.name, &c1), true, SUCCESS, PROMPT);

    // Beside a running daemon: refused, and nothing made.
    let out = rotate_key(&d.config);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("stop it first"), "{out:#?}");
    let new_file = format!("{}.new", d.key_file.display());
    assert!(!Path::new(&new_file).exists());

    let old_key = std::fs::read(&d.key_file).unwrap();
    d.stop();
    let out = rotate_key(&d.config);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.lines().any(|l| l.contains(&u.name)
            && l.contains("3 backup codes dropped")
            && l.contains("otpgate backup-codes")),
        "{out:#?}"
    );
    let new_key = std::fs::read(&d.key_file).unwrap();
    assert_eq!(new_key.len(), 32);
    assert_ne!(new_key, old_key, "the key file was not replaced");
    assert!(!Path::new(&new_file).exists(), "the .new file was left");
    // The stored secret opens under the new key and no longer under the
    // old one (read with the daemon's own record and cipher code: this
    // checks what is on disk, not the TOTP).
    let key = format!("uid:{}", u.uid);
    let bytes = std::fs::read(d.state_dir.join("users").join(format!("{key}.json"))).unwrap();
    let rec = otpgated::record::UserRecord::from_bytes(&key, &bytes).unwrap();
    let t = rec.totp().expect("still enrolled");
    let as_key = |b: &[u8]| otpgated::crypto::MasterKey::from_bytes(b.try_into().unwrap());
    let bind = rec.bound_to();
    assert!(otpgated::crypto::open(&as_key(&new_key), bind, &t.id, &t.secret).is_ok());
    assert!(otpgated::crypto::open(&as_key(&old_key), bind, &t.id, &t.secret).is_err());
    assert!(rec.backup.is_none());

    d.restart(&bus);
    // The replay mark moved with the record; the app still works.
    assert_outcome(&pamtester(&svc, &u.name, &c1), false, AUTH_ERR, REPLAYED);
    let c2 = oathtool_at(&e.secret, e.confirmed_at + 60);
    assert_outcome(&pamtester(&svc, &u.name, &c2), true, SUCCESS, PROMPT);
    // The backup codes are gone, as the command said.
    let o = pamtester(&svc, &u.name, &e.backup_codes[0]);
    assert!(!o.success, "{o:#?}");
}
