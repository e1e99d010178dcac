//! Backup-code hashing (argon2id, 46 MiB a hash) must not stay resident:
//! with 19 MiB blocks glibc kept every freed block in the heap and the
//! daemon grew by ~100 MB per enrolment. Not a speed target: a bound far
//! above the daemon's normal size (~14 MB) and far below what the old
//! behaviour reached after a few enrolments (~600 MB).

use otpgate_tests::*;

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

#[test]
fn hashing_backup_codes_does_not_grow_the_daemon() {
    let bus = Bus::start();
    let d = Daemon::start(&bus, "");
    let u = test_user("otpgmem1");
    let e = enroll(&bus, &u.name);
    for _ in 0..5 {
        // 10 hashes each, on whatever blocking threads the daemon picks.
        call(&bus, "Manager", "RegenerateBackupCodes", &[&u.name, ""]).ok();
    }
    // And checks: one hash each.
    for _ in 0..5 {
        assert_eq!(verify(&bus, &u.name, "zzzz-zzzz-zz").0, "invalid");
    }
    let _ = e;
    let rss = rss_kib(d.pid);
    eprintln!("otpgated VmRSS after 60 argon2 hashes: {rss} KiB");
    assert!(rss < 64 * 1024, "otpgated holds {rss} KiB after hashing");
}
