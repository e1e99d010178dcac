//! `otpgate doctor` as the real binary: its verdict on a root directory
//! holding a PAM stack, checked against what the real libpam does with that
//! same stack (pamtester, the real otpgated on a private bus).

mod pam_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use otpgate_tests::*;
use pam_common::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// A root directory for `doctor --root`: files written under it.
struct Root(TestDir);

impl Root {
    fn new(label: &str) -> Root {
        let r = Root(TestDir::new(label));
        fs::create_dir_all(r.0.join("etc/pam.d")).expect("mkdir etc/pam.d");
        r
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, text).expect("write root file");
    }

    fn path(&self) -> &Path {
        &self.0.path
    }
}

/// `otpgate doctor ARGS`: exit status, stdout, stderr.
fn doctor(cmd: Command, args: &[&str]) -> (i32, String, String) {
    let mut cmd = cmd;
    cmd.arg("doctor").args(args);
    let f = Run::new(&mut cmd)
        .within(DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    (
        f.status.code().expect("exit status"),
        String::from_utf8_lossy(&f.stdout).into_owned(),
        String::from_utf8_lossy(&f.stderr).into_owned(),
    )
}

fn doctor_json(root: &Path, service: &str) -> (i32, serde_json::Value) {
    let (code, out, err) = doctor(
        Command::new(bin("otpgate")),
        &[
            "--root",
            &root.display().to_string(),
            "--service",
            service,
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {out}{err}"));
    (code, v)
}

/// pam_otpgate.so under its installed name (libpam and doctor go by the
/// file name; cargo builds libpam_otpgate.so), in a directory of its own.
fn installed_module(dir: &TestDir) -> PathBuf {
    let p = dir.join("pam_otpgate.so");
    std::os::unix::fs::symlink(pam_module(), &p).expect("symlink the module");
    p
}

/// Puts the same stack in /etc/pam.d (for pamtester) and in a doctor root
/// (with a stand-in for the module file at the same path, so that doctor
/// takes it as installed). The service name and the guards.
fn same_stack(label: &str, auth_lines: &str, module: &Path) -> (String, EtcFile, Root) {
    let (svc, etc) = etc_pam_service(label, auth_lines);
    let root = Root::new(label);
    root.write(&format!("etc/pam.d/{svc}"), &service_text(auth_lines));
    root.write(
        module.display().to_string().trim_start_matches('/'),
        "stand-in",
    );
    (svc, etc, root)
}

#[test]
fn a_stack_doctor_calls_enforced_refuses_a_login_without_the_code() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-doctor-safe");
    let e = enroll(&bus, &user.name);
    let dir = TestDir::new("doctor-mod");
    let module = installed_module(&dir);
    // pam_permit stands for the password check pamtester cannot make.
    let lines = format!(
        "auth required pam_permit.so\nauth [success=ok ignore=ignore default=die] {} {}",
        module.display(),
        bus.module_args()
    );
    let (svc, _etc, root) = same_stack("doctor-safe", &lines, &module);

    let (code, v) = doctor_json(root.path(), &svc);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["bypass"], false, "{v:#}");
    assert_eq!(v["services"][0]["service"], svc.as_str());
    assert_eq!(v["services"][0]["enforced"], true, "{v:#}");
    assert_eq!(v["services"][0]["paths"], serde_json::json!([]), "{v:#}");

    let o = pamtester(&svc, &user.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code.");
    let o = pamtester(&svc, &user.name, "");
    assert_outcome(&o, false, AUTH_ERR, "No code entered.");
    // The stack does let the right code in: the refusals are the code's.
    let o = pamtester(
        &svc,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert_outcome(&o, true, SUCCESS, PROMPT);
}

#[test]
fn a_stack_doctor_calls_bypass_lets_pamtester_in_without_a_code() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-doctor-bypass");
    let _e = enroll(&bus, &user.name);
    let dir = TestDir::new("doctor-mod");
    let module = installed_module(&dir);
    let lines = format!(
        "auth sufficient pam_permit.so\nauth required {} {}",
        module.display(),
        bus.module_args()
    );
    let (svc, _etc, root) = same_stack("doctor-bypass", &lines, &module);

    let (code, v) = doctor_json(root.path(), &svc);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["bypass"], true, "{v:#}");
    assert_eq!(v["services"][0]["enforced"], false, "{v:#}");
    assert_eq!(
        v["services"][0]["paths"][0]["steps"],
        serde_json::json!(["pam_permit.so success", "done", "success"]),
        "{v:#}"
    );
    let f = &v["findings"][0];
    assert_eq!(f["severity"], "bypass", "{v:#}");
    assert_eq!(f["service"], svc.as_str(), "{v:#}");
    // Line 1 of the file is the test's comment.
    let what = f["what"].as_str().expect("what");
    assert!(
        what.starts_with(&format!(
            "/etc/pam.d/{svc}:2: `auth sufficient pam_permit.so` ends the stack before pam_otpgate.so"
        )),
        "{what}"
    );
    assert!(
        f["fix"]
            .as_str()
            .expect("fix")
            .starts_with("move `auth sufficient pam_permit.so` below pam_otpgate.so or remove it"),
        "{v:#}"
    );

    // libpam agrees: in without a code (nothing is even asked).
    let o = pamtester(&svc, &user.name, "");
    assert_outcome(&o, true, SUCCESS, SUCCESS);
    assert!(!o.says(PROMPT), "{o:#?}");
}

/// Debian 12's common-auth before and after `pam-auth-update --enable
/// otpgate`, with sshd, sudo and su as Debian ships them (auth part).
fn debian_root(with_otpgate: bool) -> Root {
    let root = Root::new("doctor-debian");
    let otp = if with_otpgate {
        "auth\t[success=ok ignore=ignore default=die]\tpam_otpgate.so nullok\n"
    } else {
        ""
    };
    root.write(
        "etc/pam.d/common-auth",
        &format!(
            "# here are the per-package modules (the \"Primary\" block)\n\
             auth\t[success=1 default=ignore]\tpam_unix.so nullok\n\
             auth\trequisite\t\t\tpam_deny.so\n\
             auth\trequired\t\t\tpam_permit.so\n\
             # and here are more per-package modules (the \"Additional\" block)\n\
             {otp}auth\toptional\t\t\tpam_cap.so\n"
        ),
    );
    root.write("etc/pam.d/sshd", "@include common-auth\n");
    root.write("etc/pam.d/sudo", "#%PAM-1.0\n@include common-auth\n");
    root.write(
        "etc/pam.d/su",
        "auth       sufficient pam_rootok.so\n@include common-auth\n",
    );
    root
}

#[test]
fn stock_debian_is_a_bypass_and_the_profile_makes_it_enforced() {
    require_root();
    let root = debian_root(false);
    let dir = root.path().display().to_string();
    let (code, out, err) = doctor(Command::new(bin("otpgate")), &["--root", &dir]);
    assert_eq!(code, 1, "{out}{err}");
    for s in ["sshd", "sudo", "su"] {
        assert!(
            out.contains(&format!(
                "{s}: BYPASS: /etc/pam.d/{s}: no pam_otpgate.so in the auth stack"
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("fix: run `pam-auth-update --package --enable otpgate`"),
        "{out}"
    );

    let root = debian_root(true);
    let dir = root.path().display().to_string();
    let (code, out, err) = doctor(Command::new(bin("otpgate")), &["--root", &dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sshd: enforced, except when the user is not enrolled (nullok)"),
        "{out}"
    );
    assert!(
        out.contains("\nwarning:\n  [sshd] /etc/pam.d/common-auth:6: `nullok` on pam_otpgate.so"),
        "{out}"
    );
    assert!(!out.contains("bypass:"), "{out}");
}

#[test]
fn doctor_refuses_non_root_and_an_unreadable_root_with_status_2() {
    require_root();
    let user = test_user("otpg-doctor-nonroot");
    let root = debian_root(true);
    let dir = root.path().display().to_string();
    let (code, out, err) = doctor(
        as_user(&user, &bin("otpgate").display().to_string()),
        &["--root", &dir],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("doctor must run as root"), "{err}");
    assert!(out.is_empty(), "{out}");

    let (code, out, err) = doctor(
        Command::new(bin("otpgate")),
        &["--root", "/nonexistent/otpgate-doctor-root"],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cannot read /nonexistent/otpgate-doctor-root"),
        "{err}"
    );
}

/// On the live system, doctor asks the daemon whether root has a second
/// factor: a stack that asks for the code without `nullok` is named as
/// one root cannot log in through, until root enrols.
#[test]
fn root_without_a_factor_is_told_it_would_be_locked_out() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let dir = TestDir::new("doctor-root-module");
    let module = installed_module(&dir);
    let line = format!("auth required {} {}", module.display(), bus.module_args());
    let (svc, _f) = etc_pam_service("docroot", &line);
    let run = || {
        let mut cmd = Command::new(bin("otpgate"));
        cmd.args(["--bus", &bus.address])
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
        let (_, out, err) = doctor(cmd, &["--service", &svc, "--json"]);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        v["findings"].as_array().expect("findings").iter().any(|f| {
            f["service"] == svc.as_str()
                && f["severity"] == "warning"
                && f["what"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("root has no second factor")
        })
    };
    assert!(
        run(),
        "root is not enrolled on this daemon: doctor must say so"
    );
    enroll(&bus, "root");
    assert!(!run(), "root is enrolled now");
}

/// On the live system with no otpgated running (no system bus owner, no
/// direct socket), `failmode=open` is no longer a choice but a way in:
/// doctor reports it as a bypass and exits 1.
#[test]
fn failmode_open_with_the_daemon_down_is_a_bypass() {
    require_root();
    assert!(
        !Path::new("/run/otpgate/pam.socket").exists(),
        "a system otpgated is running here; this test needs none"
    );
    let dir = TestDir::new("doctor-failmode");
    let module = installed_module(&dir);
    // The password's module, then ours: with the daemon down it steps
    // aside and the password alone decides.
    let lines = format!(
        "auth required pam_permit.so\nauth required {} failmode=open",
        module.display()
    );
    let (svc, _f) = etc_pam_service("docopen", &lines);
    let mut cmd = Command::new(bin("otpgate"));
    // A bus with nobody on it: the daemon is down, as doctor must see.
    let bus = Bus::start();
    cmd.args(["--bus", &bus.address])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    let (code, out, err) = doctor(cmd, &["--service", &svc, "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let open = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| {
            f["service"] == svc.as_str()
                && f["what"].as_str().unwrap_or("").contains("failmode=open")
        })
        .unwrap_or_else(|| panic!("no failmode=open finding: {v:#}"));
    assert_eq!(open["severity"], "bypass", "{v:#}");
    assert_eq!(code, 1);
}

/// Findings of a `--json` report whose `what` contains `text`.
fn findings_with(v: &serde_json::Value, text: &str) -> Vec<serde_json::Value> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["what"].as_str().unwrap_or("").contains(text))
        .cloned()
        .collect()
}

/// The daemon's configuration under `--root` goes through the installed
/// otpgated's own `--check-config`: rules that would lock root out are
/// named at doctor's strongest severity, any other refusal is a warning,
/// a valid file or none is nothing.
#[test]
fn a_config_otpgated_refuses_is_named_and_one_that_locks_root_out_most_of_all() {
    require_root();
    const CONFIG: &str = "etc/otpgate/otpgate.toml";
    let root = debian_root(true);
    let run = |toml: Option<&str>| {
        let _ = fs::remove_file(root.0.join(CONFIG));
        if let Some(t) = toml {
            root.write(CONFIG, t);
        }
        let (code, out, err) = doctor(
            Command::new(bin("otpgate")),
            &["--root", &root.path().display().to_string(), "--json"],
        );
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        (code, findings_with(&v, "otpgated will not start"), v)
    };

    let (code, f, v) = run(Some("[[policy]]\ngroups = [\"*\"]\nmode = \"require\"\n"));
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "bypass", "{v:#}");
    assert_eq!(f[0]["service"], serde_json::Value::Null, "{v:#}");
    let what = f[0]["what"].as_str().expect("what");
    assert!(
        what.starts_with(
            "otpgated will not start with this config, and its policy would lock root out: \
             /etc/otpgate/otpgate.toml:1: [[policy]]: these rules make root give a second factor on every service"
        ),
        "{what}"
    );
    assert!(
        !what.contains(&root.path().display().to_string()),
        "the path as on the checked system: {what}"
    );
    assert_eq!(code, 1, "{v:#}");

    let (code, f, v) = run(Some("[[policy]]\nmode = \"sometimes\"\n"));
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "warning", "{v:#}");
    let what = f[0]["what"].as_str().expect("what");
    assert!(
        what.starts_with("otpgated will not start with this config: /etc/otpgate/otpgate.toml:2:"),
        "{what}"
    );
    assert_eq!(code, 0, "{v:#}");

    // Root's console first: the same rule is then accepted.
    let (_, f, v) = run(Some(
        "[[policy]]\nusers = [\"root\"]\nservices = [\"login\"]\nmode = \"optional\"\n\n\
         [[policy]]\ngroups = [\"*\"]\nmode = \"require\"\n",
    ));
    assert!(f.is_empty(), "{v:#}");
    let (_, f, v) = run(None);
    assert!(f.is_empty(), "{v:#}");
}

/// On the live system, every account in /etc/passwd is put to the
/// daemon's policy on each stack that asks for the code: those it requires
/// and would refuse for want of a factor are named, one finding per
/// service; where `nullok` lets them in anyway, that is a bypass, as
/// pamtester confirms.
#[test]
fn accounts_the_policy_requires_without_a_factor_are_named_and_nullok_for_them_is_a_bypass() {
    require_root();
    let bus = Bus::start();
    let required = test_user("otpgdoc-req");
    let graced = test_user("otpgdoc-grace");
    let enrolled = test_user("otpgdoc-enr");
    let dir = TestDir::new("doctor-policy-module");
    let module = installed_module(&dir);
    let stack = |extra: &str| {
        etc_pam_service(
            "docpol",
            &format!(
                "auth required {} {}{extra}\nauth required pam_permit.so",
                module.display(),
                bus.module_args()
            ),
        )
    };
    let (strict, _f1) = stack("");
    let (lenient, _f2) = stack(" nullok");
    let config = format!(
        "[[policy]]\nusers = [\"{}\", \"{}\"]\nmode = \"require\"\n\n\
         [[policy]]\nusers = [\"{}\"]\nmode = \"require\"\nenroll_by = \"2099-12-31\"\n\n\
         [[policy]]\nmode = \"optional\"\n",
        required.name, enrolled.name, graced.name
    );
    let _d = Daemon::start(&bus, &config);
    enroll(&bus, &enrolled.name);

    let mut cmd = Command::new(bin("otpgate"));
    cmd.args(["--bus", &bus.address])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    let (code, out, err) = doctor(
        cmd,
        &["--service", &strict, "--service", &lenient, "--json"],
    );
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));

    let warned = findings_with(&v, "must give a second factor on");
    assert_eq!(warned.len(), 1, "{v:#}");
    assert_eq!(warned[0]["service"], strict.as_str(), "{v:#}");
    assert_eq!(warned[0]["severity"], "warning", "{v:#}");
    assert_eq!(
        warned[0]["what"],
        format!(
            "1 account must give a second factor on {strict} but has not enrolled: {} — it cannot log in there",
            required.name
        ),
        "only the required account: not the enrolled one, not the one with a grace, not those the policy makes optional"
    );
    assert!(
        warned[0]["fix"]
            .as_str()
            .expect("fix")
            .contains("otpgate enroll --user"),
        "{v:#}"
    );

    let bypass = findings_with(&v, "that the policy requires in on");
    assert_eq!(bypass.len(), 1, "{v:#}");
    assert_eq!(bypass[0]["service"], lenient.as_str(), "{v:#}");
    assert_eq!(bypass[0]["severity"], "bypass", "{v:#}");
    // Line 1 of the file is the test's comment.
    assert_eq!(
        bypass[0]["what"],
        format!(
            "`nullok` at /etc/pam.d/{lenient}:2 lets 1 account that the policy requires in on {lenient} with the password alone: {}",
            required.name
        ),
        "{v:#}"
    );
    assert_eq!(code, 1, "{v:#}");

    // libpam agrees: refused where the policy holds, in where nullok wins.
    let o = pamtester(&strict, &required.name, "");
    assert!(!o.success, "{o:#?}");
    let o = pamtester(&lenient, &required.name, "");
    assert!(o.success && !o.says(PROMPT), "{o:#?}");
}
