//! `otpgate policy explain`, `otpgate breakglass` and the break-glass side
//! of `otpgate status` and `otpgate doctor`, as the real binary against the
//! real otpgated on a private bus: as root, as a member of the admin group
//! and as a plain user.

mod cli_common;
mod pam_common;

use std::process::Command;

use cli_common::*;
use otpgate_tests::*;

/// Rule 1 lets `skipper` through sudo without a code; nothing else
/// matches, so everything else is the default (`require`).
fn skip_sudo_for(skipper: &str) -> String {
    format!("[[policy]]\nusers = [\"{skipper}\"]\nservices = [\"sudo\"]\nmode = \"skip\"\n")
}

fn explain(bus: &Bus, who: As, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["policy", "explain"];
    all.extend_from_slice(args);
    all.push("--json");
    otpgate(bus, who, &all).json()
}

/// The explanation's `key:  value` lines as (key, value).
fn fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| !k.starts_with(' '))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn field(text: &str, key: &str) -> String {
    fields(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no `{key}:` line in\n{text}"))
}

#[test]
fn explain_names_the_rule_that_matches_and_why() {
    let bus = Bus::start();
    let alice = test_user("otpgpola");
    let bob = test_user("otpgpolb");
    let d = Daemon::start(&bus, &skip_sudo_for(&alice.name));
    let rule_line = std::fs::read_to_string(&d.config)
        .expect("config")
        .lines()
        .position(|l| l.trim() == "[[policy]]")
        .expect("the rule is in the config")
        + 1;

    // Matched by rule 1.
    let x = explain(&bus, As::Root, &[&alice.name, "sudo"]);
    assert_eq!(x["user"], alice.name.as_str(), "{x}");
    assert_eq!(x["service"], "sudo", "{x}");
    assert_eq!(x["rhost"], "", "a local login: {x}");
    assert_eq!(x["mode"], "skip", "{x}");
    let rule = x["rule"].as_str().unwrap();
    assert!(rule.starts_with("rule 1"), "{x}");
    assert!(rule.contains("line"), "the rule names its line: {x}");
    eprintln!("rule 1 is at line {rule_line} of the config; the daemon says {rule:?}");
    let reasons = strings(&x["reasons"]);
    assert!(!reasons.is_empty(), "{x}");
    assert!(reasons.iter().any(|r| r.contains("rule 1")), "{x}");
    assert_eq!(x["enrolled"], false);
    assert!(!x["outcome"].as_str().unwrap().is_empty(), "{x}");

    // The same rule does not match another user, nor alice on another
    // service: no rule, the default.
    for (user, service) in [(&bob.name, "sudo"), (&alice.name, "sshd")] {
        let x = explain(&bus, As::Root, &[user, service]);
        assert_eq!(x["mode"], "require", "{x}");
        assert!(
            x["rule"].as_str().unwrap().contains("no rule"),
            "no rule matched: {x}"
        );
        let reasons = strings(&x["reasons"]);
        assert!(
            reasons.iter().any(|r| r.contains("rule 1")),
            "why rule 1 does not match: {x}"
        );
    }

    // --rhost goes to the daemon and back.
    let x = explain(
        &bus,
        As::Root,
        &[&alice.name, "sshd", "--rhost", "10.1.2.3"],
    );
    assert_eq!(x["rhost"], "10.1.2.3", "{x}");

    // The --json shape: every key, with its type.
    for key in [
        "user",
        "service",
        "rhost",
        "mode",
        "rule",
        "enroll_by",
        "outcome",
    ] {
        assert!(x[key].is_string(), "{key}: {x}");
    }
    assert!(x["reasons"].is_array(), "{x}");
    assert!(x["enrolled"].is_boolean(), "{x}");
    assert!(x["remember_secs"].is_u64(), "{x}");
    assert_eq!(x.as_object().unwrap().len(), 10, "{x}");

    // Enrolment shows.
    enroll(&bus, &alice.name);
    assert_eq!(
        explain(&bus, As::Root, &[&alice.name, "sshd"])["enrolled"],
        true
    );

    // The text form: one `key: value` line each, values in one column,
    // the reasons as a list under `why:`.
    let text = otpgate(
        &bus,
        As::Root,
        &[
            "policy",
            "explain",
            &alice.name,
            "sshd",
            "--rhost",
            "10.1.2.3",
        ],
    )
    .ok()
    .stdout
    .clone();
    let keys: Vec<String> = fields(&text).into_iter().map(|(k, _)| k).collect();
    for key in [
        "user", "service", "rule", "mode", "enrolled", "outcome", "why",
    ] {
        assert!(keys.iter().any(|k| k == key), "no `{key}:` in\n{text}");
    }
    assert_eq!(field(&text, "user"), alice.name);
    assert_eq!(field(&text, "service"), "sshd (from 10.1.2.3)");
    assert_eq!(field(&text, "mode"), "require");
    assert_eq!(field(&text, "enrolled"), "yes");
    let column = |l: &str| {
        l.find(": ")
            .map(|i| i + 1 + l[i + 1..].find(|c| c != ' ').unwrap())
    };
    let columns: Vec<usize> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(column)
        .collect();
    assert!(columns.windows(2).all(|w| w[0] == w[1]), "{text}");
    assert!(field(&text, "why").starts_with("- "), "{text}");
}

#[test]
fn explain_is_for_administrators() {
    let bus = Bus::start();
    let alice = test_user("otpgpolc");
    let _d = Daemon::start(&bus, &skip_sudo_for(&alice.name));
    let admin = admin_group_member("otpgpoladm");
    let plain = test_user("otpgpolm");

    let x = explain(&bus, As::User(&admin), &[&alice.name, "sudo"]);
    assert_eq!(x["mode"], "skip", "{x}");

    let me = As::User(&plain);
    otpgate(&bus, me, &["policy", "explain", &alice.name, "sudo"]).refused();
    otpgate(
        &bus,
        me,
        &["policy", "explain", &plain.name, "sudo", "--json"],
    )
    .refused();

    // Usage errors: exit 2, from clap, before any daemon is asked.
    for args in [
        vec!["policy"],
        vec!["policy", "explain"],
        vec!["policy", "explain", &alice.name],
        vec!["policy", "explain", "../etc", "sudo"],
        vec!["policy", "explain", &alice.name, "../sudo"],
        vec!["policy", "explain", &alice.name, "sshd", "--rhost", ""],
    ] {
        let out = otpgate(&bus, As::Root, &args);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
}

/// `xxxx-xxxx-xx` in lower-case Crockford base32 (no i, l, o, u), the
/// backup codes' format.
fn is_code(c: &str) -> bool {
    let crockford =
        |ch: char| ch.is_ascii_digit() || (ch.is_ascii_lowercase() && !"ilou".contains(ch));
    let groups: Vec<&str> = c.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [4, 4, 2]
        && groups.iter().all(|g| g.chars().all(crockford))
}

fn root_status(bus: &Bus) -> serde_json::Value {
    otpgate(bus, As::Root, &["status", "--user", "root", "--json"]).json()
}

#[test]
fn breakglass_codes_are_printed_once_and_replaced_by_the_next_ones() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    enroll(&bus, "root");
    assert_eq!(root_status(&bus)["breakglass_codes_left"], 0);

    let g = otpgate(&bus, As::Root, &["breakglass", "generate", "--json"]).json();
    assert_eq!(g["user"], "root", "--user defaults to root: {g}");
    let first = strings(&g["breakglass_codes"]);
    assert_eq!(first.len(), 5, "{g}");
    assert!(first.iter().all(|c| is_code(c)), "{first:?}");
    let s = root_status(&bus);
    assert_eq!(s["breakglass_codes_left"], 5, "{s}");
    assert_eq!(s["breakglass_unacknowledged"], 0, "{s}");

    // The text form: the codes, and where and how they may be used.
    let out = otpgate(&bus, As::Root, &["breakglass", "generate"]);
    let text = out.ok().stdout.clone();
    let second: Vec<String> = text
        .split_whitespace()
        .filter(|w| is_code(w))
        .map(str::to_owned)
        .collect();
    assert_eq!(second.len(), 5, "{text}");
    for needle in [
        "offline",
        "local console",
        "never over ssh",
        "otpgate breakglass ack",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // A second generate replaces the codes: none of the first is left.
    assert!(
        second.iter().all(|c| !first.contains(c)),
        "{first:?} {second:?}"
    );
    assert_eq!(root_status(&bus)["breakglass_codes_left"], 5);

    // status shows them; nothing was used, so no warning.
    let text = otpgate(&bus, As::Root, &["status", "--user", "root"])
        .ok()
        .stdout
        .clone();
    assert!(text.contains("break-glass codes:  5 left"), "{text}");
    assert!(!text.contains("warning"), "{text}");

    // Nothing used: nothing to acknowledge.
    let out = otpgate(&bus, As::Root, &["breakglass", "ack"]);
    assert_eq!(out.ok().stdout, "0 break-glass uses acknowledged.\n");
    let a = otpgate(&bus, As::Root, &["breakglass", "ack", "--json"]).json();
    assert_eq!(a["user"], "root");
    assert_eq!(a["acknowledged"], 0);
    assert_eq!(root_status(&bus)["breakglass_codes_left"], 5);
}

#[test]
fn breakglass_is_root_only() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    enroll(&bus, "root");
    otpgate(&bus, As::Root, &["breakglass", "generate", "--json"]).json();
    let admin = admin_group_member("otpgpolbadm");
    let plain = test_user("otpgpolbm");

    for who in [As::User(&admin), As::User(&plain)] {
        let label = who.label();
        let me = label.as_str();
        for args in [
            vec!["breakglass", "generate"],
            vec!["breakglass", "generate", "--user", me],
            vec!["breakglass", "ack"],
            vec!["breakglass", "ack", "--user", me, "--json"],
        ] {
            otpgate(&bus, who, &args)
                .refused()
                .fails_with("otpgate breakglass");
        }
    }
    // Root's codes are as they were.
    let s = root_status(&bus);
    assert_eq!(s["breakglass_codes_left"], 5, "{s}");

    for args in [
        vec!["breakglass"],
        vec!["breakglass", "use"],
        vec!["breakglass", "generate", "--user", "../etc"],
    ] {
        let out = otpgate(&bus, As::Root, &args);
        assert_eq!(out.code, 2, "{out:?}");
    }
}

/// On the live system, doctor asks the policy for root on each service:
/// where root must give a code and has no break-glass codes, a lost device
/// is a rescue boot, and doctor says so until there are codes.
#[test]
fn doctor_warns_when_root_has_no_way_back_in() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    enroll(&bus, "root");
    let dir = TestDir::new("cli-policy-doctor");
    // doctor goes by the module's file name; cargo builds libpam_otpgate.so.
    let module = dir.join("pam_otpgate.so");
    std::os::unix::fs::symlink(pam_module(), &module).expect("symlink the module");
    let line = format!("auth required {} {}", module.display(), bus.module_args());
    let (svc, _f) = pam_common::etc_pam_service("docbreak", &line);
    let warned = || {
        let mut cmd = Command::new(bin("otpgate"));
        cmd.args(["--bus", &bus.address, "doctor", "--service", &svc, "--json"])
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
        let out = run_bounded(cmd, "", "otpgate doctor");
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| {
                f["service"] == svc.as_str()
                    && f["what"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with(&format!("root must give a second factor on {svc}"))
            })
            .map(|f| f["severity"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(warned(), ["warning"], "no rule: root is under require");
    otpgate(&bus, As::Root, &["breakglass", "generate"]).ok();
    assert!(warned().is_empty(), "root has break-glass codes now");
}
