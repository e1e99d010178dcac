//! `[[policy]]` end to end: the real otpgated (or the real engine with a
//! clock the test moves) on a private bus, the real module in the real PAM
//! library through pamtester, and real sudo. Each stack is
//! `auth required pam_otpgate.so` then `pam_permit.so`, so that only the
//! second factor can refuse and "steps aside" (PAM_IGNORE) shows as a pass
//! without a prompt.

mod pam_common;

use std::process::Command;
use std::time::Duration;

use otpgate_tests::inproc::{InProcess, T0};
use otpgate_tests::*;
use pam_common::*;

const STEP: Duration = Duration::from_secs(20);
const NOT_ENROLLED: &str = "No second factor is set up for this account";

/// A PAM service whose only refusing module is ours, with `args`.
fn stack(args: &str) -> (String, EtcFile) {
    etc_pam_service(
        "policy",
        &format!("{}\nauth required pam_permit.so", module_line(args)),
    )
}

fn group(name: &str, members: &[&TestUser]) {
    userdb(&["groupadd", "-f", name]);
    for m in members {
        userdb(&["usermod", "-aG", name, &m.name]);
    }
}

#[test]
fn rules_decide_who_and_where_through_pam() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = stack(&bus.module_args());
    let (other, _pam2) = stack(&bus.module_args());
    let (lenient, _pam3) = stack(&format!("{} nullok", bus.module_args()));
    let staff = test_user("otpgpol-staff");
    let robot = test_user("otpgpol-robot");
    let tmp = test_user("otpgpol-tmp");
    let enrolled = test_user("otpgpol-enr");
    group("otpgpol-temps", &[&tmp, &enrolled]);
    let config = format!(
        r#"
[[policy]]
users = ["root"]
services = ["login"]
mode = "optional"

[[policy]]
users = ["{robot}"]
services = ["{svc}"]
mode = "skip"

[[policy]]
from = ["203.0.113.0/24"]
mode = "require"

[[policy]]
groups = ["*", "!otpgpol-temps"]
services = ["{svc}", "{lenient}"]
mode = "require"

[[policy]]
groups = ["otpgpol-temps"]
mode = "optional"
"#,
        robot = robot.name
    );
    let _d = Daemon::start(&bus, &config);
    let e = enroll(&bus, &enrolled.name);

    // Required, not enrolled: refused with the reason.
    let o = pamtester(&svc, &staff.name, "");
    assert_outcome(&o, false, AUTH_ERR, NOT_ENROLLED);
    // The same user where no rule names the service: the default, require.
    let o = pamtester(&other, &staff.name, "");
    assert_outcome(&o, false, AUTH_ERR, NOT_ENROLLED);
    // `nullok` in a stack overrides the policy's require, in that stack.
    let o = pamtester(&lenient, &staff.name, "");
    assert!(o.success && !o.says(PROMPT), "{o:#?}");

    // Skip: no prompt, whether enrolled or not, locally...
    let o = pamtester(&svc, &robot.name, "");
    assert!(o.success && !o.says(PROMPT), "{o:#?}");
    // ...but not from a remote host: the rule does not allow it, the next
    // ones decide (require by the group rule).
    let o = pamtester_items(&svc, &robot.name, &[("rhost", "198.51.100.7")], "");
    assert_outcome(&o, false, AUTH_ERR, NOT_ENROLLED);

    // Excluded from the require rule by "!otpgpol-temps", optional by the
    // next: not enrolled passes without a prompt.
    let o = pamtester(&svc, &tmp.name, "");
    assert!(o.success && !o.says(PROMPT), "{o:#?}");
    // From the listed network the same user is required.
    let o = pamtester_items(&svc, &tmp.name, &[("rhost", "203.0.113.9")], "");
    assert_outcome(&o, false, AUTH_ERR, NOT_ENROLLED);
    // From elsewhere, optional again: an address never exempts.
    let o = pamtester_items(&svc, &tmp.name, &[("rhost", "198.51.100.7")], "");
    assert!(o.success, "{o:#?}");

    // Optional and enrolled: the code is asked, and decides.
    let o = pamtester(&svc, &enrolled.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code.");
    let o = pamtester(
        &svc,
        &enrolled.name,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert_outcome(&o, true, SUCCESS, PROMPT);

    // The account stage says the same (public-key ssh runs no auth stack).
    let acct = |user: &str| {
        call(
            &bus,
            "Auth",
            "Account",
            &[user, &format!(r#"{{"service":"{svc}"}}"#)],
        )
        .ok()
    };
    assert_eq!(acct(&staff.name)[0], "not-enrolled");
    assert_eq!(acct(&staff.name)[1]["policy"], "require");
    assert_eq!(acct(&tmp.name)[1]["policy"], "optional");
    assert_eq!(acct(&robot.name)[0], "ok");
    assert_eq!(acct(&enrolled.name)[0], "ok");

    // And explain names the rule and why the ones before did not match.
    let x = call(
        &bus,
        "Admin",
        "ExplainPolicy",
        &[&tmp.name, &svc, r#"{"rhost":"203.0.113.9"}"#],
    )
    .ok();
    assert_eq!(x["mode"], "require");
    assert!(x["rule"].as_str().unwrap().starts_with("rule 3 ("), "{x}");
    let reasons = x["reasons"].to_string();
    assert!(
        reasons.contains(&format!(
            r#"rule 2 (line 14) does not match: user \"{}\" matches none of"#,
            tmp.name
        )),
        "{reasons}"
    );
    assert!(
        reasons.contains("203.0.113.9 is in 203.0.113.0/24"),
        "{reasons}"
    );
    assert!(
        x["outcome"]
            .as_str()
            .unwrap()
            .starts_with("refused: not enrolled"),
        "{x}"
    );
    // Only administrators may ask.
    let r = call_as(
        &bus,
        Some(staff.uid),
        "Admin",
        "ExplainPolicy",
        &[&tmp.name, &svc],
    );
    assert!(r.is_access_denied(), "{r:?}");
}

/// 2030-03-18, the day after the manual clock's start ([`T0`] is
/// 2030-03-17 14:00 UTC); the grace ends at 2030-03-19 00:00 UTC.
const ENROLL_BY: &str = "2030-03-18";
const GRACE_ENDS: u64 = 1_900_108_800;

#[test]
fn enroll_by_lets_an_unenrolled_user_in_with_a_notice_until_the_day_ends() {
    require_root();
    const { assert!(T0 < GRACE_ENDS && GRACE_ENDS - T0 < 2 * 86_400) };
    let bus = Bus::start();
    let (svc, _pam) = stack(&bus.bus_only_args());
    let user = test_user("otpgpol-new");
    let config = format!(
        "[[policy]]\nusers = [\"{}\"]\nservices = [\"{svc}\"]\nmode = \"require\"\nenroll_by = \"{ENROLL_BY}\"\n",
        user.name
    );
    let s = InProcess::start(&bus, &config);
    let o = pamtester(&svc, &user.name, "");
    assert!(o.success && !o.says(PROMPT), "{o:#?}");
    assert!(o.says(ENROLL_BY), "the notice names the day: {o:#?}");
    s.clock.set(GRACE_ENDS - 1);
    assert!(pamtester(&svc, &user.name, "").success);
    s.clock.set(GRACE_ENDS);
    let o = pamtester(&svc, &user.name, "");
    assert_outcome(&o, false, AUTH_ERR, NOT_ENROLLED);
}

/// A shell on a tmux pseudo-terminal is one login session; pamtester run
/// from it is a root process of that session, as sudo or su would be.
struct Session {
    w: Window,
    runs: usize,
}

impl Session {
    fn open(tmux: &mut Tmux) -> Session {
        Session::open_with(tmux, "exec bash --norc --noprofile")
    }

    /// A login shell of `user`'s (setpriv execs bash: it leads the session).
    fn open_as(tmux: &mut Tmux, user: &TestUser) -> Session {
        Session::open_with(
            tmux,
            &format!(
                "exec setpriv --reuid={} --regid={} --init-groups bash --norc --noprofile",
                user.uid, user.gid
            ),
        )
    }

    fn open_with(tmux: &mut Tmux, command: &str) -> Session {
        let w = tmux.window(command);
        tmux.type_line(&w, "echo otpg-ready");
        tmux.wait_for(&w, "otpg-ready\n", 1, STEP);
        Session { w, runs: 0 }
    }

    /// Runs `command` in the session's shell, answering `code` to the
    /// module's prompt if it comes; whether it prompted, its exit status
    /// and the screen after it.
    fn run(&mut self, tmux: &Tmux, command: &str, code: &str) -> (bool, bool, String) {
        self.runs += 1;
        let before = tmux.screen(&self.w).matches(PROMPT).count();
        // The quotes keep the typed line from showing the marker itself.
        tmux.type_line(&self.w, &format!("{command}; echo otpg-rc-$?-do''ne"));
        let mut prompted = false;
        let done = wait_until(STEP, || {
            let screen = tmux.screen(&self.w);
            if !prompted && screen.matches(PROMPT).count() > before {
                prompted = true;
                tmux.type_line(&self.w, code);
            }
            screen.matches("-done").count() >= self.runs
        });
        let screen = tmux.screen(&self.w);
        assert!(done, "{command} did not finish; the screen:\n{screen}");
        let ok = screen
            .rsplit("otpg-rc-")
            .next()
            .is_some_and(|l| l.starts_with("0-done"));
        (prompted, ok, screen)
    }

    /// pamtester from this session: (prompted, succeeded).
    fn pamtester(&mut self, tmux: &Tmux, service: &str, user: &str, code: &str) -> (bool, bool) {
        let (prompted, ok, _) = self.run(
            tmux,
            &format!("pamtester {service} {user} authenticate"),
            code,
        );
        (prompted, ok)
    }
}

#[test]
fn remember_secs_spares_the_same_session_only_until_it_runs_out() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = stack(&bus.bus_only_args());
    let (other, _pam2) = stack(&bus.bus_only_args());
    let alice = test_user("otpgpol-rem1");
    let bob = test_user("otpgpol-rem2");
    let config = format!(
        "[[policy]]\nusers = [\"{}\", \"{}\"]\nservices = [\"{svc}\"]\nmode = \"require\"\nremember_secs = 300\n",
        alice.name, bob.name
    );
    let s = InProcess::start(&bus, &config);
    let a = enroll_at(&bus, &s, &alice.name);
    let b = enroll_at(&bus, &s, &bob.name);
    let mut t = T0 + 30;
    s.clock.set(t);
    let mut tmux = Tmux::start("remember");
    let mut one = Session::open(&mut tmux);
    let mut two = Session::open(&mut tmux);

    // First login in session one: asked.
    assert_eq!(
        one.pamtester(&tmux, &svc, &alice.name, &oathtool_at(&a, t)),
        (true, true)
    );
    // Again in the same session: not asked.
    assert_eq!(one.pamtester(&tmux, &svc, &alice.name, ""), (false, true));
    // Another session, the same user and service: asked.
    t += 30;
    s.clock.set(t);
    assert_eq!(
        two.pamtester(&tmux, &svc, &alice.name, &oathtool_at(&a, t)),
        (true, true)
    );
    // The same session, a service the rule does not name: asked.
    t += 30;
    s.clock.set(t);
    let (asked, _) = one.pamtester(&tmux, &other, &alice.name, &wrong_code(&a));
    assert!(asked);
    // The same session, another user: asked.
    assert_eq!(
        one.pamtester(&tmux, &svc, &bob.name, &oathtool_at(&b, t)),
        (true, true)
    );
    // A caller that is not root, in the remembered session, with a session
    // id of its own making: still asked (only root's callers are the hosts
    // of logins, and nothing a caller says about its session is taken).
    let (_, ok, screen) = one.run(
        &tmux,
        &format!(
            "setpriv --reuid={} --regid={} --init-groups {} {} Auth Challenge {} '{{\"service\":\"{svc}\",\"session\":\"tty:1:leader:1:1\"}}'",
            alice.uid,
            alice.gid,
            bin("otpgate-testcall").display(),
            bus.address,
            alice.name
        ),
        "",
    );
    assert!(ok, "{screen}");
    let answer = screen.rsplit("{\"ok\":").next().unwrap_or("");
    assert!(answer.starts_with("[\"code-required\""), "{screen}");
    // Until remember_secs runs out...
    s.clock.set(T0 + 30 + 299);
    assert_eq!(one.pamtester(&tmux, &svc, &alice.name, ""), (false, true));
    // ...and not after.
    t = T0 + 30 + 300;
    s.clock.set(t);
    let (asked, _) = one.pamtester(&tmux, &svc, &alice.name, &wrong_code(&a));
    assert!(asked, "remembered past remember_secs");

    // After logout, a new session starts from nothing.
    t += 60;
    s.clock.set(t);
    assert_eq!(
        two.pamtester(&tmux, &svc, &bob.name, &oathtool_at(&b, t)),
        (true, true)
    );
    tmux.type_line(&two.w, "exit");
    let mut three = Session::open(&mut tmux);
    assert!(three.pamtester(&tmux, &svc, &bob.name, &wrong_code(&b)).0);
}

#[test]
fn remember_secs_spares_sudo_in_the_same_terminal_session() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = stack(&bus.module_args());
    let user = test_user("otpgpol-sudo");
    let config = format!(
        "[[policy]]\nusers = [\"{}\"]\nservices = [\"{svc}\"]\nmode = \"require\"\nremember_secs = 600\n",
        user.name
    );
    let _d = Daemon::start(&bus, &config);
    let e = enroll(&bus, &user.name);
    // sudo's own timestamp is off, so every sudo runs the PAM stack: what
    // spares the code is the daemon's remembered session alone.
    let _rules = sudoers(&user, &svc);
    let mut tmux = Tmux::start("remember-sudo");
    let mut one = Session::open_as(&mut tmux, &user);
    let mut two = Session::open_as(&mut tmux, &user);
    let code = oathtool_at(&e.secret, e.confirmed_at + 30);
    let (asked, ok, screen) = one.run(&tmux, "sudo true", &code);
    assert!(asked && ok, "{screen}");
    let (asked, ok, screen) = one.run(&tmux, "sudo true", "");
    assert!(!asked && ok, "{screen}");
    // The user's other terminal is another session: asked.
    let (asked, ok, screen) = two.run(&tmux, "sudo true", &wrong_code(&e.secret));
    assert!(asked && !ok, "{screen}");
}

/// Enrols `user` on the in-process service at its clock's time; the secret.
fn enroll_at(bus: &Bus, s: &InProcess, user: &str) -> String {
    let e = call(bus, "Manager", "Enroll", &[user]).ok();
    let secret = e["secret"].as_str().unwrap().to_string();
    call(
        bus,
        "Manager",
        "Confirm",
        &[user, &oathtool_at(&secret, s.now())],
    )
    .ok();
    secret
}

#[test]
fn break_glass_codes_open_the_console_once_and_nothing_else() {
    require_root();
    let bus = Bus::start();
    let (svc, _pam) = stack(&bus.module_args());
    let d = Daemon::start(&bus, "");
    let codes: Vec<String> = call(&bus, "Admin", "GenerateBreakglass", &["root"])
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 5);
    // Root alone mints them, not the administrator group.
    let admin = admin_group_member("otpgpol-admin");
    let r = call_as(
        &bus,
        Some(admin.uid),
        "Admin",
        "GenerateBreakglass",
        &["root"],
    );
    assert!(r.is_access_denied(), "{r:?}");

    // Over ssh (a remote host) and on a pseudo-terminal: refused.
    let o = pamtester_items(
        &svc,
        "root",
        &[("rhost", "192.0.2.1"), ("tty", "ssh")],
        &codes[0],
    );
    assert_outcome(&o, false, AUTH_ERR, NOT_ENROLLED);
    let o = pamtester_items(&svc, "root", &[("tty", "/dev/pts/0")], &codes[0]);
    assert_outcome(&o, false, AUTH_ERR, NOT_ENROLLED);
    // On a virtual console: accepted, once.
    let o = pamtester_items(&svc, "root", &[("tty", "tty1")], &codes[0]);
    assert_outcome(&o, true, SUCCESS, "Break-glass code accepted; 4 left.");
    let o = pamtester_items(&svc, "root", &[("tty", "tty1")], &codes[0]);
    assert!(!o.success, "{o:#?}");
    // Logged at alert level, and noted until acknowledged.
    assert!(d.log().contains("event=breakglass-used "), "{}", d.log());
    let st = call(&bus, "Manager", "Status", &["root"]).ok();
    assert_eq!(st["breakglass_unacknowledged"], 1);
    assert_eq!(st["breakglass_codes_left"], 4);
    let o = pamtester_items(&svc, "root", &[("tty", "ttyS0")], &codes[1]);
    assert!(o.success && o.says("2 use(s) unacknowledged"), "{o:#?}");
    assert_eq!(
        call(&bus, "Admin", "AcknowledgeBreakglass", &["root"]).ok(),
        2
    );
    let st = call(&bus, "Manager", "Status", &["root"]).ok();
    assert_eq!(st["breakglass_unacknowledged"], 0);
    // Not for an ordinary user.
    let plain = test_user("otpgpol-plain");
    let r = call(&bus, "Admin", "GenerateBreakglass", &[&plain.name]);
    assert_eq!(
        r.err_name(),
        Some("org.otpgate.Otpgate1.Error.InvalidArgument"),
        "{r:?}"
    );
}

#[test]
fn check_config_refuses_rules_that_lock_root_out_everywhere() {
    require_root();
    let dir = TestDir::new("policy-check");
    let path = dir.join("otpgate.toml");
    std::fs::write(&path, "[[policy]]\ngroups = [\"*\"]\nmode = \"require\"\n").unwrap();
    let out = output_within(
        Command::new(bin("otpgated"))
            .arg("--check-config")
            .arg("--config")
            .arg(&path),
        STEP,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":1: [[policy]]: these rules make root give a second factor on every service"),
        "{err}"
    );
    std::fs::write(
        &path,
        "[[policy]]\nusers = [\"root\"]\nservices = [\"login\"]\nmode = \"optional\"\n\n[[policy]]\ngroups = [\"*\"]\nmode = \"require\"\n",
    )
    .unwrap();
    let out = output_within(
        Command::new(bin("otpgated"))
            .arg("--check-config")
            .arg("--config")
            .arg(&path),
        STEP,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
