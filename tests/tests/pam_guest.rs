//! The module is a good guest: after 1,000 full PAM transactions in one
//! process (`pam_host`, which loads it through the real libpam), the process
//! has the same threads, the same open descriptors and the same signal
//! dispositions as before; a child forked after the module ran can
//! authenticate; a hung daemon leaves nothing behind either.

mod pam_common;

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

use otpgate_tests::*;
use pam_common::*;

/// `key=value` figures of one line of pam_host output.
fn figures(out: &str, label: &str) -> HashMap<String, String> {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{label} iterations=")))
        .unwrap_or_else(|| panic!("no {label} line in:\n{out}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn results(f: &HashMap<String, String>) -> HashMap<String, usize> {
    f["results"]
        .split(',')
        .filter_map(|kv| kv.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.parse().expect("count")))
        .collect()
}

fn assert_no_trace(f: &HashMap<String, String>, out: &str) {
    assert_eq!(
        f["threads_before"], f["threads_after"],
        "threads grew:\n{out}"
    );
    assert_eq!(
        f["threads_after"], "1",
        "pam_host is single-threaded:\n{out}"
    );
    assert_eq!(f["fds_before"], f["fds_after"], "descriptors grew:\n{out}");
    assert_eq!(
        f["signals_same"], "true",
        "a signal disposition changed:\n{out}"
    );
    assert_eq!(f["same"], "true", "{out}");
}

struct Host {
    dir: TestDir,
    service: String,
}

impl Host {
    fn new(module_args: &str) -> Host {
        let dir = TestDir::new("pamhost");
        let service = "otpgate-guest".to_string();
        fs::write(dir.join(&service), service_text(&module_line(module_args)))
            .expect("write service");
        Host { dir, service }
    }

    fn run(&self, user: &str, iterations: usize, codes: &[String], extra: &[&str]) -> String {
        let codes_file = self.dir.join("codes");
        fs::write(&codes_file, codes.join("\n") + "\n").expect("write codes");
        let mut cmd = Command::new(bin("pam_host"));
        cmd.arg("auth")
            .arg(&self.dir.path)
            .arg(&self.service)
            .arg(user)
            .arg(iterations.to_string())
            .arg(&codes_file)
            .args(extra)
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
        let o = run_with_input(cmd, "", Duration::from_secs(540));
        for line in o.stdout.lines().filter(|l| !l.contains(" message=")) {
            eprintln!("{line}");
        }
        assert!(
            o.success,
            "pam_host reported a difference or failed:\n{}\n{}",
            o.stdout, o.stderr
        );
        o.stdout
    }
}

#[test]
fn a_thousand_authentications_leave_no_thread_fd_or_signal_behind() {
    require_root();
    let bus = Bus::start();
    // Wide window: ten successive future steps are valid once each. The lock
    // engages after 100 straight failures and lasts a second, so the run
    // also goes through locked answers.
    let _d = Daemon::start(
        &bus,
        "[totp]\nwindow = 10\n\n[lockout]\nmax_failures = 100\nduration_secs = 1\n",
    );
    let user = test_user("otpg-pam-guest");
    let e = enroll(&bus, &user.name);
    let wrong = wrong_code(&e.secret);
    // One valid code every 50 prompts for the first 500, then only wrong ones.
    let codes: Vec<String> = (0..1000)
        .map(|i| {
            if i % 50 == 0 && i < 500 {
                oathtool_at(&e.secret, e.confirmed_at + 30 * (1 + i as u64 / 50))
            } else {
                wrong.clone()
            }
        })
        .collect();
    let host = Host::new(&bus.module_args());
    let out = host.run(&user.name, 1000, &codes, &[]);
    let f = figures(&out, "host");
    assert_no_trace(&f, &out);

    let r = results(&f);
    let total: usize = r.values().sum();
    assert_eq!(total, 1000, "{out}");
    assert_eq!(
        r.get("Success"),
        Some(&10),
        "ten valid codes, ten successes: {out}"
    );
    assert!(
        r.get("Authentication_failure").copied().unwrap_or(0) > 400,
        "{out}"
    );
    // Every transaction got a real answer from the daemon: nothing was
    // unavailable, no conversation or module error.
    for k in r.keys() {
        assert!(
            [
                "Success",
                "Authentication_failure",
                "Have_exhausted_maximum_number_of_retries_for_service"
            ]
            .contains(&k.as_str()),
            "unexpected result {k}: {out}"
        );
    }
}

#[test]
fn a_child_forked_after_the_module_ran_authenticates() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "[totp]\nwindow = 10\n");
    let user = test_user("otpg-pam-fork");
    let e = enroll(&bus, &user.name);
    // The parent uses the first code, the child the next ones (its first
    // answer is a replay of the parent's, then fresh steps, then wrong ones).
    let mut codes: Vec<String> = (1..=3)
        .map(|s| oathtool_at(&e.secret, e.confirmed_at + 30 * s))
        .collect();
    codes.push(wrong_code(&e.secret));
    let host = Host::new(&bus.module_args());
    let out = host.run(&user.name, 1, &codes, &["fork=20"]);
    let parent = figures(&out, "parent");
    let child = figures(&out, "child");
    assert_no_trace(&parent, &out);
    assert_no_trace(&child, &out);
    assert!(out.contains("parent child_exit_ok=true"), "{out}");
    assert_eq!(results(&parent).get("Success"), Some(&1), "{out}");
    let cr = results(&child);
    assert_eq!(cr.values().sum::<usize>(), 20, "{out}");
    assert!(cr.get("Success").copied().unwrap_or(0) >= 2, "{out}");
}

#[test]
fn a_hung_daemon_leaves_nothing_behind_either() {
    require_root();
    let bus = Bus::start();
    let d = Daemon::start(&bus, "");
    let user = test_user("otpg-pam-hung");
    let host = Host::new(&format!("{} timeout=1", bus.module_args()));
    let _stopped = Stopped::stop(d.pid);
    let out = host.run(&user.name, 3, &["123456".to_string()], &[]);
    let f = figures(&out, "host");
    assert_no_trace(&f, &out);
    assert_eq!(
        results(&f).get("Authentication_service_cannot_retrieve_authentication_info"),
        Some(&3),
        "{out}"
    );
    let slowest: u64 = f["slowest_ms"].parse().expect("ms");
    assert!((1000..2000).contains(&slowest), "{out}");
}
