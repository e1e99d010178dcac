//! `otpgate doctor`: is the second factor really enforced on this machine?
//! Reads the PAM stacks, sshd_config, sudoers and the module's files under a
//! root directory (and, for `/`, asks whether the daemon runs), and reports
//! every way to log in without otpgate's code, each with its fix.

pub mod finding;
pub mod host;
pub mod pam;
pub mod sshd;
pub mod sudoers;

use std::fmt::Write as _;
use std::path::Path;

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
#[derive(Debug, Default, Clone, Copy)]
pub struct Live {
    /// Whether root has a second factor; `None`: the daemon could not say.
    pub root_enrolled: Option<bool>,
}

/// Runs every check on `root`. `live`: also ask the running system (only
/// meaningful when `root` is `/`).
pub fn examine(root: &Path, given: &[String], live: Option<Live>) -> Result<Report, String> {
    let (live, facts) = (live.is_some(), live.unwrap_or_default());
    std::fs::read_dir(root).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let (sudo, sudo_findings) = sudoers::check(root);
    let services = scope(root, given, &sudo)?;
    let (reports, pam_findings) = pam::check(root, &services)?;
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
    if facts.root_enrolled == Some(false) {
        findings.extend(root_locked_out(&reports));
    }
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

/// Asks the daemon whether root is enrolled, within a deadline, on a
/// thread of its own (a daemon that accepts and never answers must not
/// hang doctor).
fn root_enrolled(bus: &str) -> Option<bool> {
    let bus = bus.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let asked = zruntime::block_on(async {
            let client = crate::client::Client::connect(&bus).await.ok()?;
            client.status("root").await.ok().map(|s| s.enrolled)
        });
        let _ = tx.send(asked);
    });
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .ok()
        .flatten()
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
    let live = live.then(|| Live {
        root_enrolled: root_enrolled(&crate::client::bus_address(bus)),
    });
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
            let r = examine(
                root.path(),
                &services,
                Some(Live {
                    root_enrolled: Some(enrolled),
                }),
            )
            .unwrap();
            r.findings
                .into_iter()
                .filter(|f| f.what.starts_with("root has no second factor"))
                .filter_map(|f| f.service)
                .collect::<Vec<_>>()
        };
        assert_eq!(locked(false), ["sudo"]);
        assert!(locked(true).is_empty());
    }
}
