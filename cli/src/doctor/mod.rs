//! `otpgate doctor`: is the second factor really enforced on this machine?
//! Reads the PAM stacks, sshd_config, sudoers and the module's files under a
//! root directory (and, for `/`, asks whether the daemon runs), and reports
//! every way to log in without otpgate's code, each with its fix.

pub mod config;
pub mod finding;
pub mod host;
pub mod pam;
pub mod policy;
mod proc;
pub mod sshd;
pub mod sudoers;

use std::fmt::Write as _;
use std::path::Path;

use otpgate_proto::codec::Status;
use serde::Serialize;

use crate::args::DoctorArgs;
use finding::{Finding, Severity};

/// Everything `doctor` found, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub services: Vec<pam::ServiceReport>,
    pub findings: Vec<Finding>,
    pub bypass: bool,
}

impl Report {
    /// 0: every service in scope enforces the code; 1: some way around it.
    pub fn exit_code(&self) -> i32 {
        if self.bypass {
            1
        } else {
            0
        }
    }
}

/// The services to simulate: those given, else the login services in the
/// root's /etc/pam.d, with sudo's stack as sudoers names it.
fn scope(root: &Path, given: &[String], sudo: &sudoers::SudoFacts) -> Result<Vec<String>, String> {
    let mut services = pam::services_in_scope(root, given)?;
    if given.is_empty() {
        if let Some(s) = &sudo.pam_service {
            // sudo authenticates through that stack, not /etc/pam.d/sudo.
            services.retain(|x| x != "sudo");
            if !services.contains(s) {
                services.push(s.clone());
            }
        }
    }
    Ok(services)
}

/// What the running daemon says, for a check of `/`.
#[derive(Debug, Default, Clone)]
pub struct Live {
    /// Root's `Manager.Status`; `None`: the daemon could not say.
    pub root: Option<Status>,
    /// The `[[policy]]` mode (`require`, `optional`, `skip`) for root on
    /// each service in scope that the daemon explained; empty from a
    /// daemon that predates `ExplainPolicy`.
    pub root_modes: Vec<(String, String)>,
    /// Who the policy requires and the daemon would refuse, on the
    /// services whose stack asks for the code; `None` when it was not
    /// asked (no `ExplainPolicy`).
    pub sweep: Option<policy::Sweep>,
}

impl Live {
    fn root_enrolled(&self) -> Option<bool> {
        self.root.as_ref().map(|s| s.enrolled)
    }
}

/// What `examine` asks the running daemon.
#[derive(Debug, Clone, Copy)]
pub struct Questions<'a> {
    /// The services in scope: root's status and policy on each.
    pub services: &'a [String],
    /// The services whose stack asks for the code: the policy for each
    /// of `accounts` there.
    pub sweep: &'a [String],
    /// The accounts people log in with, from the root's /etc/passwd.
    pub accounts: &'a [String],
}

/// Asks the running daemon; what `examine` calls on the live system.
pub type AskDaemon<'a> = &'a dyn Fn(&Questions) -> Live;

/// Runs every check on `root`. `live`: also ask the running system (only
/// meaningful when `root` is `/`), about the services in scope.
pub fn examine(root: &Path, given: &[String], live: Option<AskDaemon>) -> Result<Report, String> {
    std::fs::read_dir(root).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let (sudo, sudo_findings) = sudoers::check(root);
    let services = scope(root, given, &sudo)?;
    let (reports, pam_findings) = pam::check(root, &services)?;
    let (live, facts) = match live {
        Some(ask) => {
            // A stack that lets people in some other way refuses no one
            // for want of a factor; its bypass is reported already.
            let sweep: Vec<String> = reports
                .iter()
                .filter(|r| r.enforced)
                .map(|r| r.service.clone())
                .collect();
            let accounts = policy::accounts(root);
            let q = Questions {
                services: &services,
                sweep: &sweep,
                accounts: &accounts,
            };
            (true, ask(&q))
        }
        None => (false, Live::default()),
    };
    let host_findings = host::check(root, live);
    let daemon_down = live
        && host_findings
            .iter()
            .any(|f| f.service.is_none() && f.what.starts_with(host::DAEMON_DOWN));

    let mut findings = Vec::new();
    for mut f in pam_findings {
        // failmode=open is a choice while the daemon runs, a way in once it
        // does not.
        if daemon_down
            && f.severity == Severity::Warning
            && f.what.contains(pam::FAILMODE_OPEN_WHAT)
        {
            f.severity = Severity::Bypass;
            f.what.push_str(", and otpgated is not running now");
        }
        findings.push(f);
    }
    if facts.root_enrolled() == Some(false) {
        findings.extend(root_locked_out(&reports));
    }
    if let Some(sweep) = &facts.sweep {
        let nullok = |service: &str| nullok_at(&findings, service);
        let policy_findings = policy::findings(sweep, nullok);
        findings.extend(policy_findings);
    }
    findings.extend(config::check(root));
    findings.extend(sshd::check(root));
    findings.extend(sudo_findings);
    findings.extend(host_findings);
    findings.sort_by_key(|f| f.severity);
    let bypass = findings.iter().any(|f| f.severity == Severity::Bypass);
    // A service is enforced only if nothing anywhere gets around it: its
    // stack, sshd_config or sudoers for it, or the host (a module file
    // anyone can replace).
    let mut reports = reports;
    for s in &mut reports {
        if findings.iter().any(|f| {
            f.severity == Severity::Bypass && f.service.as_deref().is_none_or(|x| x == s.service)
        }) {
            s.enforced = false;
        }
    }
    // After the bypasses are known: a service anyone gets through needs no
    // break-glass code.
    findings.extend(breakglass(&reports, &facts));
    findings.sort_by_key(|f| f.severity);
    Ok(Report {
        services: reports,
        findings,
        bypass,
    })
}

/// Root without a second factor, on a stack that asks for the code with
/// no `nullok` and no pam_rootok way around it: root cannot log in there.
fn root_locked_out(reports: &[pam::ServiceReport]) -> Vec<Finding> {
    let root_ways = [
        pam::Condition::NotEnrolled.text(),
        pam::Condition::CallerIsRoot.text(),
    ];
    reports
        .iter()
        .filter(|s| {
            !s.paths.iter().any(|p| {
                p.conditions
                    .iter()
                    .all(|c| root_ways.contains(&c.as_str()))
            })
        })
        .map(|s| {
            Finding::new(
                Severity::Warning,
                Some(&s.service),
                format!(
                    "root has no second factor and {} asks for the code without `nullok`: root cannot log in through {}",
                    s.service, s.service
                ),
                "enrol root (`otpgate enroll --user root`, backup codes kept offline), or keep a console way in that does not use pam_otpgate.so",
            )
        })
        .collect()
}

/// The `FILE:LINE` of the `nullok` that lets the not-enrolled through
/// `service`'s stack, from the stack's own finding about it.
fn nullok_at(findings: &[Finding], service: &str) -> Option<String> {
    let tail = format!(": {}", pam::NULLOK_WHAT);
    findings
        .iter()
        .filter(|f| f.service.as_deref() == Some(service))
        .find_map(|f| f.what.split_once(&tail).map(|(at, _)| at.to_owned()))
}

/// How the break-glass finding begins (tests look for it).
pub const NO_BREAKGLASS: &str = "root must give a second factor on";

/// Root's way back in when its device is lost, and the trace of its use.
/// Only for an enrolled root (one without a factor is told so by
/// `root_locked_out`, and a lost device is not its problem), and only on
/// services the policy puts root under `require` whose stack no one gets
/// around anyway.
fn breakglass(reports: &[pam::ServiceReport], facts: &Live) -> Vec<Finding> {
    let Some(root) = &facts.root else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    if root.enrolled && root.breakglass_codes_left == 0 {
        for (service, mode) in &facts.root_modes {
            let enforced = reports.iter().any(|r| &r.service == service && r.enforced);
            if mode == "require" && enforced {
                findings.push(Finding::new(
                    Severity::Warning,
                    Some(service),
                    format!(
                        "{NO_BREAKGLASS} {service} and has no break-glass codes: a lost device means booting a rescue system"
                    ),
                    "run `otpgate breakglass generate` and keep the codes offline",
                ));
            }
        }
    }
    if root.breakglass_unacknowledged > 0 {
        let n = root.breakglass_unacknowledged;
        findings.push(Finding::new(
            Severity::Warning,
            None,
            format!(
                "root's break-glass codes were used {n} time{} and not acknowledged: someone logged in as root on a console without root's device",
                if n == 1 { "" } else { "s" }
            ),
            "check each use in the log (`journalctl -p alert`), then run `otpgate breakglass ack`",
        ));
    }
    findings
}

/// How long the daemon has to answer doctor's questions about root.
const DAEMON_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// How much longer it has for the accounts in passwd (up to
/// `policy::MAX_ACCOUNTS` of them on each service).
const SWEEP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks the daemon about root (its status, and the policy for each
/// service in scope), then about every account on the services that ask
/// for the code, within deadlines, on a thread of its own (a daemon that
/// accepts and never answers must not hang doctor). What it cannot say in
/// time is left out, and gives no finding, except the accounts' answers
/// so far, whose findings say how many were asked.
fn ask_daemon(bus: &str, q: &Questions) -> Live {
    use std::sync::{Arc, Mutex};
    let bus = bus.to_owned();
    let services = q.services.to_vec();
    let sweep = q.sweep.to_vec();
    let accounts = q.accounts.to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let progress = Arc::new(Mutex::new(None));
    let into = Arc::clone(&progress);
    std::thread::spawn(move || {
        zruntime::block_on(async {
            let Ok(client) = crate::client::Client::connect(&bus).await else {
                let _ = tx.send(Live::default());
                return;
            };
            let root = client.status("root").await.ok();
            let mut root_modes = Vec::new();
            for s in &services {
                match client.explain_policy("root", s, None).await {
                    Ok(x) => root_modes.push((s.clone(), x.mode)),
                    // An otpgated from before [[policy]] has no
                    // ExplainPolicy (and no break-glass codes): asking
                    // again for every service would only repeat that.
                    Err(_) => break,
                }
            }
            let explains = root_modes.len() == services.len();
            let _ = tx.send(Live {
                root,
                root_modes,
                sweep: None,
            });
            if explains && !sweep.is_empty() {
                policy::sweep(&client, &sweep, &accounts, &into).await;
            }
        });
        let _ = done_tx.send(());
    });
    let Ok(mut live) = rx.recv_timeout(DAEMON_DEADLINE) else {
        return Live::default();
    };
    // Cut short, what was answered is still worth saying (with how much
    // that was).
    let _ = done_rx.recv_timeout(SWEEP_DEADLINE);
    live.sweep = progress.lock().ok().and_then(|s| s.clone());
    live
}

/// The text report: a line per service, then the findings by severity.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    for s in &r.services {
        let bypass = r
            .findings
            .iter()
            .find(|f| f.severity == Severity::Bypass && f.service.as_deref() == Some(&s.service));
        let _ = match bypass {
            Some(f) => writeln!(out, "{}: BYPASS: {}", s.service, f.what),
            None if s.paths.is_empty() => writeln!(out, "{}: enforced", s.service),
            None => {
                let conds: Vec<String> =
                    s.paths.iter().map(|p| p.conditions.join(" and ")).collect();
                writeln!(
                    out,
                    "{}: enforced, except when {}",
                    s.service,
                    conds.join("; or ")
                )
            }
        };
    }
    // A service outside the PAM scope (sshd_config, sudoers) can still
    // have a way in.
    let mut others: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Bypass)
        .filter_map(|f| f.service.as_deref())
        .filter(|s| !r.services.iter().any(|x| x.service == *s))
        .collect();
    others.dedup();
    for s in others {
        let _ = writeln!(out, "{s}: BYPASS (see below)");
    }
    if r.services.is_empty() {
        let _ = writeln!(
            out,
            "no login service found in /etc/pam.d (use --service NAME)"
        );
    }
    for sev in [Severity::Bypass, Severity::Warning, Severity::Info] {
        let fs: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if fs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}:", sev.as_str());
        for f in fs {
            let who = f.service.as_deref().unwrap_or("host");
            let _ = writeln!(out, "  [{who}] {}\n    fix: {}", f.what, f.fix);
        }
    }
    out
}

/// `otpgate doctor`: prints the report; the exit status (0 enforced, 1 a
/// bypass, 2 error).
pub fn main(args: &DoctorArgs, json: bool, bus: Option<&str>) -> i32 {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "otpgate: doctor must run as root (it reads sudoers and the PAM files): run `sudo otpgate doctor`"
        );
        return 2;
    }
    let live = args
        .root
        .canonicalize()
        .map(|p| p == Path::new("/"))
        .unwrap_or(false);
    let bus = crate::client::bus_address(bus);
    let ask = |q: &Questions| ask_daemon(&bus, q);
    let live = live.then_some(&ask as AskDaemon);
    let report = match examine(&args.root, &args.service, live) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otpgate: doctor: {e}");
            return 2;
        }
    };
    if json {
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("otpgate: doctor: cannot write the report: {e}");
                return 2;
            }
        }
    } else {
        print!("{}", text(&report));
    }
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` at `path` under `root`, making the directories.
    fn put(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A stack that asks for the code is not "enforced" when sshd lets a
    /// key in without running it.
    #[test]
    fn a_way_around_the_stack_makes_the_service_unenforced() {
        let root = tempfile::tempdir().unwrap();
        let put = |path: &str, text: &str| put(root.path(), path, text);
        put(
            "etc/pam.d/sshd",
            "auth required pam_unix.so\nauth required pam_otpgate.so\n",
        );
        put(
            "etc/ssh/sshd_config",
            "UsePAM yes\nKbdInteractiveAuthentication yes\n",
        );
        let r = examine(root.path(), &["sshd".into()], None).unwrap();
        assert!(r.bypass);
        assert!(!r.services[0].enforced, "{r:?}");
        assert!(r.services[0].paths.is_empty(), "the stack itself is fine");
        put(
            "etc/ssh/sshd_config",
            "UsePAM yes\nKbdInteractiveAuthentication yes\nAuthenticationMethods publickey,keyboard-interactive\n",
        );
        let r = examine(root.path(), &["sshd".into()], None).unwrap();
        assert!(r.services[0].enforced, "{r:?}");
    }

    /// Root without a factor is named where a stack asks for the code with
    /// no way around it for root (nullok, pam_rootok), and only there.
    #[test]
    fn root_without_a_factor_is_warned_where_it_is_locked_out() {
        let root = tempfile::tempdir().unwrap();
        let put = |path: &str, text: &str| put(root.path(), path, text);
        put(
            "etc/pam.d/sudo",
            "auth required pam_unix.so\nauth required pam_otpgate.so\n",
        );
        put(
            "etc/pam.d/login",
            "auth required pam_unix.so\nauth required pam_otpgate.so nullok\n",
        );
        put(
            "etc/pam.d/su",
            "auth sufficient pam_rootok.so\nauth required pam_unix.so\nauth required pam_otpgate.so\n",
        );
        let services: Vec<String> = ["sudo", "login", "su"].map(String::from).to_vec();
        let locked = |enrolled| {
            let ask = |_: &Questions| Live {
                root: Some(Status {
                    user: "root".into(),
                    enrolled,
                    ..Status::default()
                }),
                root_modes: Vec::new(),
                sweep: None,
            };
            let r = examine(root.path(), &services, Some(&ask)).unwrap();
            r.findings
                .into_iter()
                .filter(|f| f.what.starts_with("root has no second factor"))
                .filter_map(|f| f.service)
                .collect::<Vec<_>>()
        };
        assert_eq!(locked(false), ["sudo"]);
        assert!(locked(true).is_empty());
    }

    /// Enrolled root, where the policy requires the code: a lost device
    /// locks root out unless it has break-glass codes. Named on the
    /// services that require it and that nobody gets around anyway.
    #[test]
    fn root_without_break_glass_codes_is_warned_where_the_policy_requires_it() {
        let root = tempfile::tempdir().unwrap();
        let put = |path: &str, text: &str| put(root.path(), path, text);
        let enforced = "auth required pam_unix.so\nauth required pam_otpgate.so\n";
        put("etc/pam.d/sudo", enforced);
        put("etc/pam.d/login", enforced);
        put(
            "etc/pam.d/su",
            "auth sufficient pam_permit.so\nauth required pam_otpgate.so\n",
        );
        let services: Vec<String> = ["sudo", "login", "su"].map(String::from).to_vec();
        let asked = std::cell::RefCell::new(Vec::new());
        let run = |status: Status, modes: &[(&str, &str)]| {
            let ask = |q: &Questions| {
                asked.replace(q.services.to_vec());
                Live {
                    root: Some(status.clone()),
                    root_modes: modes
                        .iter()
                        .map(|(s, m)| (s.to_string(), m.to_string()))
                        .collect(),
                    sweep: None,
                }
            };
            examine(root.path(), &services, Some(&ask)).unwrap()
        };
        let named = |r: &Report| {
            r.findings
                .iter()
                .filter(|f| f.what.starts_with(NO_BREAKGLASS))
                .map(|f| (f.severity, f.service.clone().unwrap()))
                .collect::<Vec<_>>()
        };
        let enrolled = Status {
            user: "root".into(),
            enrolled: true,
            method: "totp".into(),
            ..Status::default()
        };
        let modes = [
            ("sudo", "require"),
            ("login", "optional"),
            ("su", "require"),
        ];

        let r = run(enrolled.clone(), &modes);
        assert_eq!(
            *asked.borrow(),
            services,
            "the daemon is asked about the services in scope"
        );
        // su: anyone gets through pam_permit, a bypass of its own.
        assert_eq!(named(&r), [(Severity::Warning, "sudo".to_owned())]);
        let f = r
            .findings
            .iter()
            .find(|f| f.what.starts_with(NO_BREAKGLASS))
            .unwrap();
        assert_eq!(
            f.what,
            "root must give a second factor on sudo and has no break-glass codes: a lost device means booting a rescue system"
        );
        assert!(f.fix.contains("otpgate breakglass generate"), "{f:?}");
        assert!(f.fix.contains("offline"), "{f:?}");

        let with_codes = Status {
            breakglass_codes_left: 5,
            ..enrolled.clone()
        };
        assert!(named(&run(with_codes, &modes)).is_empty());
        // An otpgated without ExplainPolicy: nothing to go on, no finding.
        assert!(named(&run(enrolled.clone(), &[])).is_empty());
        // Root without a factor is told that instead (root_locked_out).
        let r = run(
            Status {
                enrolled: false,
                ..enrolled.clone()
            },
            &modes,
        );
        assert!(named(&r).is_empty());
        assert!(r
            .findings
            .iter()
            .any(|f| f.what.starts_with("root has no second factor")));
    }

    /// The accounts the daemon would refuse for want of a factor: a
    /// warning per service, a bypass where `nullok` lets them in anyway.
    /// Only stacks that ask for the code are asked about.
    #[test]
    fn accounts_the_policy_requires_without_a_factor_are_named_per_service() {
        let root = tempfile::tempdir().unwrap();
        let put = |path: &str, text: &str| put(root.path(), path, text);
        put(
            "etc/pam.d/sshd",
            "auth required pam_unix.so\nauth required pam_otpgate.so\n",
        );
        put(
            "etc/pam.d/login",
            "auth required pam_unix.so\nauth required pam_otpgate.so nullok\n",
        );
        put("etc/pam.d/su", "auth sufficient pam_permit.so\n");
        put(
            "etc/passwd",
            "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\nsvc:x:1001:1001::/:/usr/sbin/nologin\n",
        );
        let services: Vec<String> = ["sshd", "login", "su"].map(String::from).to_vec();
        let asked = std::cell::RefCell::new((Vec::new(), Vec::new()));
        let ask = |q: &Questions| {
            asked.replace((q.sweep.to_vec(), q.accounts.to_vec()));
            Live {
                sweep: Some(policy::Sweep {
                    unenrolled: vec![
                        ("sshd".into(), vec!["alice".into()]),
                        ("login".into(), vec!["alice".into()]),
                    ],
                    asked: 2,
                    total: 2,
                }),
                ..Live::default()
            }
        };
        let r = examine(root.path(), &services, Some(&ask)).unwrap();
        assert_eq!(asked.borrow().0, ["sshd", "login"], "su lets anyone in");
        assert_eq!(asked.borrow().1, ["root", "alice"]);
        let of = |svc: &str| {
            r.findings
                .iter()
                .find(|f| {
                    f.service.as_deref() == Some(svc)
                        && (f.what.contains(policy::MUST_GIVE)
                            || f.what.contains("policy requires"))
                })
                .unwrap_or_else(|| panic!("no policy finding on {svc}: {r:?}"))
        };
        assert_eq!(of("sshd").severity, Severity::Warning);
        let login = of("login");
        assert_eq!(login.severity, Severity::Bypass);
        assert_eq!(
            login.what,
            "`nullok` at /etc/pam.d/login:2 lets 1 account that the policy requires in on login with the password alone: alice"
        );
        assert!(r.bypass);
        assert!(
            !r.services
                .iter()
                .find(|s| s.service == "login")
                .unwrap()
                .enforced
        );
        assert!(
            r.services
                .iter()
                .find(|s| s.service == "sshd")
                .unwrap()
                .enforced
        );

        // Without a sweep (a daemon without ExplainPolicy): nothing said.
        let ask = |_: &Questions| Live::default();
        let r = examine(root.path(), &services, Some(&ask)).unwrap();
        assert!(!r
            .findings
            .iter()
            .any(|f| f.what.contains(policy::MUST_GIVE) || f.what.contains("policy requires")));
    }

    #[test]
    fn unacknowledged_break_glass_uses_are_a_host_warning() {
        let root = tempfile::tempdir().unwrap();
        put(
            root.path(),
            "etc/pam.d/sudo",
            "auth required pam_unix.so\nauth required pam_otpgate.so\n",
        );
        let used = |n: u32| {
            let ask = |_: &Questions| Live {
                root: Some(Status {
                    user: "root".into(),
                    enrolled: true,
                    breakglass_codes_left: 3,
                    breakglass_unacknowledged: n,
                    ..Status::default()
                }),
                root_modes: Vec::new(),
                sweep: None,
            };
            let r = examine(root.path(), &["sudo".into()], Some(&ask)).unwrap();
            r.findings
                .into_iter()
                .filter(|f| f.what.contains("break-glass codes were used"))
                .collect::<Vec<_>>()
        };
        assert!(used(0).is_empty());
        let f = used(2);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].service, None);
        assert!(f[0].what.contains("used 2 times"), "{f:?}");
        assert!(f[0].fix.contains("otpgate breakglass ack"), "{f:?}");
        assert!(used(1)[0].what.contains("used 1 time and"));
    }
}
