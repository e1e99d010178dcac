//! Accounts the `[[policy]]` rules require a second factor of, on a
//! service that asks for it, who have none and no grace left: the daemon
//! refuses them there, unless `nullok` on the line lets them through with
//! the password alone.

use std::path::Path;
use std::sync::Mutex;

use otpgate_proto::codec::Explanation;
use otpgate_proto::ServiceError;

use super::finding::{Finding, Severity};
use crate::client::Client;
use crate::error::CliError;

/// At most this many accounts are asked about (each on every service in
/// scope): a fleet host's passwd may list far more, and every question is
/// a call to the daemon and a line in its log.
pub const MAX_ACCOUNTS: usize = 2000;

/// Accounts named in a finding; the count says how many more.
const NAMED: usize = 10;

/// The first uid of people's accounts (login.defs' UID_MIN on Debian and
/// Fedora), and `nobody`, which is not one.
const UID_MIN: u32 = 1000;
const UID_NOBODY: u32 = 65534;

/// How the not-enrolled finding goes on after its count (tests look for it).
pub const MUST_GIVE: &str = "must give a second factor on";

/// What the daemon said, service by service, about the accounts asked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// For each service asked about: the accounts refused there for want
    /// of a factor, in passwd order.
    pub unenrolled: Vec<(String, Vec<String>)>,
    /// Accounts the daemon answered for, on every service.
    pub asked: usize,
    /// Accounts in passwd that people log in with.
    pub total: usize,
}

/// The accounts people log in with, in `root`'s /etc/passwd order: root,
/// and those with a uid from 1000 below nobody's and a shell that lets
/// them in.
pub fn accounts(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("etc/passwd"))
        .map(|t| parse_passwd(&t))
        .unwrap_or_default()
}

pub fn parse_passwd(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        // `+`/`-` lines pull in NIS entries, which are not in this file.
        if line.starts_with(['#', '+', '-']) {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        let [name, _, uid, _, _, _, shell] = f[..] else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        let person = (UID_MIN..UID_NOBODY).contains(&uid) && login_shell(shell);
        if (name == "root" || person) && !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// An empty shell field is /bin/sh to login(1) and sshd.
fn login_shell(shell: &str) -> bool {
    let base = shell.trim().rsplit('/').next().unwrap_or("");
    !matches!(base, "nologin" | "false")
}

/// Today's date in UTC, as `enroll_by` is written and as the daemon
/// counts a grace (through the end of that day, UTC).
pub fn today_utc() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Whether the daemon refuses this login for want of a factor: required,
/// not enrolled, and no grace left (`enroll_by` empty or before `today`).
pub fn refused_unenrolled(x: &Explanation, today: &str) -> bool {
    x.mode == "require" && !x.enrolled && (x.enroll_by.is_empty() || x.enroll_by.as_str() < today)
}

/// A refusal about the one account (unknown to the name service, its
/// record unreadable): the others can still be asked about.
fn about_the_account(e: &CliError) -> bool {
    matches!(
        e,
        CliError::Daemon {
            err: ServiceError::InvalidUser(_)
                | ServiceError::InvalidArgument(_)
                | ServiceError::CorruptRecord(_)
                | ServiceError::Unavailable(_),
            ..
        }
    )
}

/// Asks the daemon about each of `accounts` (the first `MAX_ACCOUNTS`) on
/// each of `services`, a local login, and keeps the answers in `into` as
/// they come: the caller takes what is there when its time runs out. A
/// daemon that stops answering (or never knew ExplainPolicy) ends it.
pub async fn sweep(
    client: &Client,
    services: &[String],
    accounts: &[String],
    into: &Mutex<Option<Sweep>>,
) {
    let today = today_utc();
    if let Ok(mut s) = into.lock() {
        *s = Some(Sweep {
            unenrolled: services.iter().map(|s| (s.clone(), Vec::new())).collect(),
            asked: 0,
            total: accounts.len(),
        });
    }
    for user in accounts.iter().take(MAX_ACCOUNTS) {
        let mut refused = Vec::new();
        for (i, service) in services.iter().enumerate() {
            match client.explain_policy(user, service, None).await {
                Ok(x) if refused_unenrolled(&x, &today) => refused.push(i),
                Ok(_) => {}
                Err(e) if about_the_account(&e) => {
                    refused.clear();
                    break;
                }
                Err(_) => return,
            }
        }
        // An account counts only once answered on every service, so that a
        // sweep cut short says the same about each service.
        if let Ok(mut s) = into.lock() {
            if let Some(s) = s.as_mut() {
                for i in refused {
                    s.unenrolled[i].1.push(user.clone());
                }
                s.asked += 1;
            }
        }
    }
}

/// One finding per service with accounts the daemon refuses for want of a
/// factor. `nullok_at(service)`: the `FILE:LINE` of a `nullok` that lets
/// them through there instead, a bypass of the policy.
pub fn findings(sweep: &Sweep, nullok_at: impl Fn(&str) -> Option<String>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (service, users) in &sweep.unenrolled {
        if users.is_empty() {
            continue;
        }
        let n = users.len();
        let accounts = if n == 1 { "account" } else { "accounts" };
        let mut names = users[..n.min(NAMED)].join(", ");
        if n > NAMED {
            names.push_str(", …");
        }
        let partial = partial(sweep);
        out.push(match nullok_at(service) {
            Some(at) => Finding::new(
                Severity::Bypass,
                Some(service),
                format!(
                    "`nullok` at {at} lets {n} {accounts} that the policy requires in on {service} with the password alone: {names}{partial}"
                ),
                format!(
                    "remove `nullok` from {at} (the policy's `mode = \"optional\"` and `enroll_by` say who may go without)"
                ),
            ),
            None => Finding::new(
                Severity::Warning,
                Some(service),
                format!(
                    "{n} {accounts} {MUST_GIVE} {service} but {} not enrolled: {names}{partial} — {} cannot log in there",
                    if n == 1 { "has" } else { "have" },
                    if n == 1 { "it" } else { "they" },
                ),
                "enrol them (`otpgate enroll --user U`), or give them a grace (`enroll_by` in their [[policy]] rule)",
            ),
        });
    }
    out
}

/// Said when not every account was asked about.
fn partial(sweep: &Sweep) -> String {
    if sweep.asked >= sweep.total {
        String::new()
    } else if sweep.asked == MAX_ACCOUNTS {
        format!(
            " (only the first {MAX_ACCOUNTS} of {} accounts in /etc/passwd were asked about)",
            sweep.total
        )
    } else {
        format!(
            " (the daemon answered for only {} of {} accounts in /etc/passwd in time)",
            sweep.asked, sweep.total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_are_root_and_the_login_accounts_from_uid_1000() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                      sync:x:4:65534:sync:/bin:/bin/sync\n\
                      # a comment\n\
                      alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
                      svc:x:1001:1001::/var/lib/svc:/usr/sbin/nologin\n\
                      git:x:1002:1002::/home/git:/usr/bin/git-shell\n\
                      locked:x:1003:1003::/home/locked:/bin/false\n\
                      bare:x:1004:1004::/home/bare:\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n\
                      big:x:70000:70000::/home/big:/bin/zsh\n\
                      short:x:1005\n\
                      bad:x:notanumber:1::/:/bin/sh\n\
                      +@netgroup::::::\n\
                      alice:x:1000:1000:again:/home/alice:/bin/bash\n";
        assert_eq!(
            parse_passwd(passwd),
            ["root", "alice", "git", "bare"],
            "git-shell is a way in with a key; nobody and uids past it are not people"
        );
        // Root is one whoever it is in the file's order.
        assert_eq!(
            parse_passwd(
                "bob:x:1000:1000::/home/bob:/bin/sh\nroot:x:0:0::/root:/usr/sbin/nologin\n"
            ),
            ["bob", "root"]
        );
    }

    #[test]
    fn accounts_come_from_the_roots_passwd() {
        let root = tempfile::tempdir().unwrap();
        assert!(accounts(root.path()).is_empty());
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nann:x:1500:1500::/home/ann:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(accounts(root.path()), ["root", "ann"]);
    }

    #[test]
    fn only_a_required_login_without_factor_or_grace_is_refused() {
        let x = |mode: &str, enrolled, enroll_by: &str| Explanation {
            user: "alice".into(),
            mode: mode.into(),
            enrolled,
            enroll_by: enroll_by.into(),
            ..Explanation::default()
        };
        let today = "2025-06-15";
        assert!(refused_unenrolled(&x("require", false, ""), today));
        assert!(refused_unenrolled(
            &x("require", false, "2025-06-14"),
            today
        ));
        // The grace runs through the end of its day.
        assert!(!refused_unenrolled(
            &x("require", false, "2025-06-15"),
            today
        ));
        assert!(!refused_unenrolled(
            &x("require", false, "2026-01-01"),
            today
        ));
        assert!(!refused_unenrolled(&x("require", true, ""), today));
        assert!(!refused_unenrolled(&x("optional", false, ""), today));
        assert!(!refused_unenrolled(&x("skip", false, ""), today));
    }

    #[test]
    fn today_is_written_as_enroll_by_is() {
        let t = today_utc();
        assert_eq!(t.len(), 10, "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[7..8], "-");
    }

    fn sweep(unenrolled: &[(&str, &[&str])], asked: usize, total: usize) -> Sweep {
        Sweep {
            unenrolled: unenrolled
                .iter()
                .map(|(s, u)| (s.to_string(), u.iter().map(|u| u.to_string()).collect()))
                .collect(),
            asked,
            total,
        }
    }

    #[test]
    fn one_warning_per_service_naming_the_accounts() {
        let s = sweep(
            &[
                ("sshd", &["alice", "bob"]),
                ("sudo", &[]),
                ("login", &["carol"]),
            ],
            40,
            40,
        );
        let f = findings(&s, |_| None);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].service.as_deref(), Some("sshd"));
        assert_eq!(
            f[0].what,
            "2 accounts must give a second factor on sshd but have not enrolled: alice, bob — they cannot log in there"
        );
        assert_eq!(
            f[0].fix,
            "enrol them (`otpgate enroll --user U`), or give them a grace (`enroll_by` in their [[policy]] rule)"
        );
        assert_eq!(
            f[1].what,
            "1 account must give a second factor on login but has not enrolled: carol — it cannot log in there"
        );
    }

    #[test]
    fn a_long_list_is_cut_at_ten_with_the_count() {
        let many: Vec<String> = (0..25).map(|i| format!("u{i}")).collect();
        let s = Sweep {
            unenrolled: vec![("sshd".into(), many)],
            asked: 30,
            total: 30,
        };
        let f = findings(&s, |_| None);
        assert!(
            f[0].what.starts_with(
                "25 accounts must give a second factor on sshd but have not enrolled: u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, … — "
            ),
            "{f:?}"
        );
    }

    #[test]
    fn nullok_where_the_policy_requires_is_a_bypass() {
        let s = sweep(&[("sshd", &["alice"]), ("sudo", &["alice", "bob"])], 2, 2);
        let f = findings(&s, |svc| {
            (svc == "sudo").then(|| "/etc/pam.d/common-auth:25".to_string())
        });
        assert_eq!(f[0].severity, Severity::Warning, "{f:?}");
        assert_eq!(f[1].severity, Severity::Bypass, "{f:?}");
        assert_eq!(f[1].service.as_deref(), Some("sudo"));
        assert_eq!(
            f[1].what,
            "`nullok` at /etc/pam.d/common-auth:25 lets 2 accounts that the policy requires in on sudo with the password alone: alice, bob"
        );
        assert!(
            f[1].fix
                .starts_with("remove `nullok` from /etc/pam.d/common-auth:25"),
            "{f:?}"
        );
    }

    #[test]
    fn a_sweep_cut_short_says_so() {
        let capped = sweep(&[("sshd", &["alice"])], MAX_ACCOUNTS, 5000);
        let f = findings(&capped, |_| None);
        assert!(
            f[0].what
                .contains("(only the first 2000 of 5000 accounts in /etc/passwd were asked about)"),
            "{f:?}"
        );
        let slow = sweep(&[("sshd", &["alice"])], 120, 300);
        let f = findings(&slow, |_| None);
        assert!(
            f[0].what.contains(
                "(the daemon answered for only 120 of 300 accounts in /etc/passwd in time)"
            ),
            "{f:?}"
        );
    }
}
