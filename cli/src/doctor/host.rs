//! The host's side of `otpgate doctor`: the module file every stack loads,
//! the bus policy the daemon needs, and (on the live system) whether the
//! daemon answers.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use otpgate_proto::{BUS_NAME, PAM_SOCKET, SYSTEM_BUS_ADDRESS};

use super::finding::{Finding, Severity};

pub const MODULE: &str = "pam_otpgate.so";

/// How the finding that the daemon is down begins: `doctor` turns a
/// `failmode=open` warning into a bypass when it sees it.
pub const DAEMON_DOWN: &str = "otpgated is not running";

/// Where libpam looks for modules on Debian (x86_64 and aarch64, merged
/// /usr or not) and on distributions without multiarch.
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/security",
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/aarch64-linux-gnu/security",
    "/lib/aarch64-linux-gnu/security",
    "/usr/lib64/security",
    "/lib64/security",
    "/usr/lib/security",
    "/lib/security",
];

/// Where the packaging puts the bus policy (first), and where an
/// administrator may put their own.
const BUS_POLICIES: &[&str] = &[
    "/usr/share/dbus-1/system.d/org.otpgate.Otpgate1.conf",
    "/etc/dbus-1/system.d/org.otpgate.Otpgate1.conf",
];

/// How long the live check waits for the system bus.
const BUS_DEADLINE: Duration = Duration::from_secs(5);

pub fn check(root: &Path, live: bool) -> Vec<Finding> {
    let mut findings = module_file(root);
    findings.extend(bus_policy(root));
    if live {
        findings.extend(daemon(root));
        findings.push(clock_finding(clock_synchronised()));
    }
    findings
}

/// How long `timedatectl` or `chronyc` may take to answer.
const CLOCK_DEADLINE: Duration = Duration::from_secs(5);

/// Whether the host's clock is kept synchronised, and who said so:
/// systemd's `timedatectl` first, else chrony's `chronyc`; `None` when
/// neither answers.
fn clock_synchronised() -> Option<(bool, &'static str)> {
    let mut t = std::process::Command::new("timedatectl");
    t.args(["show", "--property=NTPSynchronized", "--value"]);
    if let Some(r) = super::proc::bounded(t, CLOCK_DEADLINE).filter(|r| r.code == Some(0)) {
        match r.stdout.trim() {
            "yes" => return Some((true, "timedatectl")),
            "no" => return Some((false, "timedatectl")),
            _ => {}
        }
    }
    let mut c = std::process::Command::new("chronyc");
    c.args(["-n", "tracking"]);
    let r = super::proc::bounded(c, CLOCK_DEADLINE).filter(|r| r.code == Some(0))?;
    chrony_synchronised(&r.stdout).map(|s| (s, "chronyc"))
}

/// `chronyc tracking`'s "Leap status : Normal" means synchronised; "Not
/// synchronised" means not.
fn chrony_synchronised(tracking: &str) -> Option<bool> {
    let status = tracking
        .lines()
        .find_map(|l| l.strip_prefix("Leap status"))?
        .trim_start_matches([' ', ':'])
        .trim();
    Some(status != "Not synchronised")
}

/// TOTP codes are checked against this host's clock: one that drifts
/// refuses good codes for everyone.
fn clock_finding(state: Option<(bool, &str)>) -> Finding {
    match state {
        Some((true, by)) => Finding::new(
            Severity::Info,
            None,
            format!("the host's clock is synchronised ({by} says so)"),
            "nothing to do",
        ),
        Some((false, by)) => Finding::new(
            Severity::Warning,
            None,
            format!("the host's clock is not synchronised ({by} says so): codes are checked against it, so a clock that drifts refuses good codes for everyone"),
            "turn on time synchronisation: timedatectl set-ntp true (or run chrony)",
        ),
        None => Finding::new(
            Severity::Info,
            None,
            "could not tell whether the host's clock is synchronised: neither timedatectl nor chronyc answered",
            "make sure the host keeps its time by NTP (systemd-timesyncd, chrony or ntpd)",
        ),
    }
}

fn on_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// `path` as it is on the checked system, without the `--root` prefix.
fn shown(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rest) => format!("/{}", rest.display()),
        Err(_) => path.display().to_string(),
    }
}

fn module_file(root: &Path) -> Vec<Finding> {
    let croot = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut findings = Vec::new();
    for dir in MODULE_DIRS {
        let path = on_root(root, &format!("{dir}/{MODULE}"));
        // Merged /usr: /lib/... and /usr/lib/... are the same file.
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        if seen.contains(&real) {
            continue;
        }
        seen.push(real.clone());
        findings.extend(ownership(&croot, &real, true));
        // Whoever can rename entries in a directory above it can swap the
        // file: check up to the root.
        let mut dir = real.parent();
        while let Some(d) = dir {
            if d == croot || !d.starts_with(&croot) {
                break;
            }
            findings.extend(ownership(&croot, d, false));
            dir = d.parent();
        }
    }
    if seen.is_empty() {
        findings.push(Finding::new(
            Severity::Warning,
            None,
            format!(
                "{MODULE} is not installed (looked in {}): every PAM stack naming it fails",
                MODULE_DIRS.join(", ")
            ),
            "install otpgate (packaging/install.sh or the otpgate .deb), which puts the module in the PAM module directory",
        ));
    }
    findings
}

/// A bypass if `path` is not root's or others than root can write it.
fn ownership(root: &Path, path: &Path, file: bool) -> Option<Finding> {
    let meta = std::fs::metadata(path).ok()?;
    let shown = shown(root, path);
    let mut wrong = Vec::new();
    if meta.uid() != 0 {
        wrong.push(format!("owned by uid {}", meta.uid()));
    }
    if meta.mode() & 0o020 != 0 {
        wrong.push(format!("writable by group {}", meta.gid()));
    }
    if meta.mode() & 0o002 != 0 {
        wrong.push("writable by everyone".to_owned());
    }
    if wrong.is_empty() {
        return None;
    }
    let (what, mode) = if file {
        (format!("{shown}: the PAM module is"), "0644")
    } else {
        (
            format!("{shown}: the directory holding {MODULE} is"),
            "0755",
        )
    };
    Some(Finding::new(
        Severity::Bypass,
        None,
        format!(
            "{what} {}: whoever can change it owns every login that loads it",
            wrong.join(" and ")
        ),
        format!("chown root:root {shown} && chmod {mode} {shown}"),
    ))
}

fn bus_policy(root: &Path) -> Option<Finding> {
    if BUS_POLICIES.iter().any(|p| on_root(root, p).is_file()) {
        return None;
    }
    Some(Finding::new(
        Severity::Warning,
        None,
        format!(
            "no D-Bus policy for {BUS_NAME} ({} or {}): the system bus does not let otpgated take its name, so logins through {MODULE} are refused",
            BUS_POLICIES[0], BUS_POLICIES[1]
        ),
        format!(
            "reinstall otpgate to put back {}, then reload the bus (/usr/libexec/otpgate/otpgated-ctl reload-bus)",
            BUS_POLICIES[0]
        ),
    ))
}

fn daemon(root: &Path) -> Option<Finding> {
    let socket = on_root(root, PAM_SOCKET);
    match daemon_running(SYSTEM_BUS_ADDRESS, &socket) {
        Some(true) => None,
        Some(false) => Some(Finding::new(
            Severity::Warning,
            None,
            format!(
                "{DAEMON_DOWN}: {BUS_NAME} has no owner on the system bus and {PAM_SOCKET} is not there; with failmode=secure every login through {MODULE} is refused"
            ),
            "start it: /usr/libexec/otpgate/otpgated-ctl start (or systemctl start otpgated)",
        )),
        None => Some(Finding::new(
            Severity::Warning,
            None,
            format!(
                "cannot tell whether otpgated is running (the system bus did not answer within {}s and {PAM_SOCKET} could not be looked at)",
                BUS_DEADLINE.as_secs()
            ),
            "run otpgate doctor as root, with the system bus running",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bus {
    Owned,
    NotOwned,
    /// No bus at that address (nothing listening, no such socket).
    Unreachable,
    /// It did not answer in time, or answered an error.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Present,
    Absent,
    Unknown,
}

/// Whether otpgated answers: `Some(true)` if it owns its bus name on the
/// bus at `bus_address` or its PAM socket `socket` is there, `Some(false)`
/// if neither, `None` if that cannot be told (the bus hangs, the socket's
/// directory cannot be read). The module reaches the daemon through
/// either, so either is enough.
pub fn daemon_running(bus_address: &str, socket: &Path) -> Option<bool> {
    let socket = match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => Socket::Present,
        Ok(_) => Socket::Absent,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Socket::Absent,
        Err(_) => Socket::Unknown,
    };
    if socket == Socket::Present {
        return Some(true);
    }
    match (bus_owner(bus_address), socket) {
        (Bus::Owned, _) => Some(true),
        (Bus::NotOwned | Bus::Unreachable, Socket::Absent) => Some(false),
        _ => None,
    }
}

fn bus_owner(address: &str) -> Bus {
    let address = address.to_owned();
    let (tx, rx) = mpsc::channel();
    // A thread of its own: the caller may already be inside an executor,
    // and a bus that accepts but never answers must not hang doctor (the
    // thread is left behind; the process exits soon after).
    std::thread::spawn(move || {
        let _ = tx.send(zruntime::block_on(ask_bus(&address)));
    });
    rx.recv_timeout(BUS_DEADLINE).unwrap_or(Bus::Unknown)
}

async fn ask_bus(address: &str) -> Bus {
    let conn = match zbus::connection::Builder::address(address)
        .method_timeout(BUS_DEADLINE)
        .build()
        .await
    {
        Ok(c) => c,
        // Nothing listens there: no bus, so no daemon on it.
        Err(zbus::Error::Connection(e, _))
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Bus::Unreachable
        }
        Err(_) => return Bus::Unknown,
    };
    let Ok(driver) = zbus::fdo::DBusProxy::new(&conn).await else {
        return Bus::Unknown;
    };
    let Ok(name) = zbus::names::BusName::try_from(BUS_NAME) else {
        return Bus::Unknown;
    };
    match driver.name_has_owner(name).await {
        Ok(true) => Bus::Owned,
        Ok(false) => Bus::NotOwned,
        Err(_) => Bus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const MODULE_PATH: &str = "/usr/lib/x86_64-linux-gnu/security/pam_otpgate.so";

    /// A tree with the module and the bus policy where the packaging puts
    /// them, root's and 0644 (the tests run as root; umask may differ).
    fn good_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for path in [MODULE_PATH, BUS_POLICIES[0]] {
            let p = on_root(dir.path(), path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "x").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut d = p.parent();
            while let Some(x) = d {
                if x == dir.path() {
                    break;
                }
                std::fs::set_permissions(x, std::fs::Permissions::from_mode(0o755)).unwrap();
                d = x.parent();
            }
        }
        dir
    }

    fn require_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_good_install_has_no_finding() {
        if !require_root() {
            eprintln!("skipped: needs root (files owned by root)");
            return;
        }
        let dir = good_tree();
        let f = check(dir.path(), false);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn merged_usr_is_checked_once() {
        if !require_root() {
            return;
        }
        let dir = good_tree();
        std::os::unix::fs::symlink("usr/lib", dir.path().join("lib")).unwrap();
        let m = on_root(dir.path(), MODULE_PATH);
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o666)).unwrap();
        let f = check(dir.path(), false);
        assert_eq!(f.len(), 1, "{f:#?}");
    }

    #[test]
    fn a_missing_module_is_a_warning() {
        let dir = good_tree();
        std::fs::remove_file(on_root(dir.path(), MODULE_PATH)).unwrap();
        let f = check(dir.path(), false);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(
            f[0].what.starts_with("pam_otpgate.so is not installed"),
            "{f:#?}"
        );
    }

    #[test]
    fn the_module_in_aarch64_lib_is_found() {
        let dir = good_tree();
        let from = on_root(dir.path(), MODULE_PATH);
        let to = on_root(dir.path(), "/lib/aarch64-linux-gnu/security/pam_otpgate.so");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(from, &to).unwrap();
        let f = check(dir.path(), false);
        assert!(
            !f.iter().any(|f| f.what.contains("not installed")),
            "{f:#?}"
        );
    }

    #[test]
    fn a_module_writable_by_others_is_a_bypass() {
        if !require_root() {
            return;
        }
        let dir = good_tree();
        let m = on_root(dir.path(), MODULE_PATH);
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o664)).unwrap();
        let f = check(dir.path(), false);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Bypass);
        assert!(
            f[0].what.starts_with(&format!(
                "{MODULE_PATH}: the PAM module is writable by group"
            )),
            "{f:#?}"
        );
        assert_eq!(
            f[0].fix,
            format!("chown root:root {MODULE_PATH} && chmod 0644 {MODULE_PATH}")
        );
    }

    #[test]
    fn a_module_not_owned_by_root_is_a_bypass() {
        if !require_root() {
            return;
        }
        let dir = good_tree();
        let m = on_root(dir.path(), MODULE_PATH);
        std::os::unix::fs::chown(&m, Some(1), Some(1)).unwrap();
        let f = check(dir.path(), false);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Bypass);
        assert!(f[0].what.contains("owned by uid 1"), "{f:#?}");
    }

    #[test]
    fn a_module_directory_writable_by_everyone_is_a_bypass() {
        if !require_root() {
            return;
        }
        let dir = good_tree();
        let d = on_root(dir.path(), "/usr/lib/x86_64-linux-gnu/security");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let f = check(dir.path(), false);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Bypass);
        assert!(
            f[0].what
                .starts_with("/usr/lib/x86_64-linux-gnu/security: the directory"),
            "{f:#?}"
        );
        assert!(
            f[0].fix
                .ends_with("chmod 0755 /usr/lib/x86_64-linux-gnu/security"),
            "{f:#?}"
        );
    }

    #[test]
    fn a_missing_bus_policy_is_a_warning_and_etc_counts() {
        let dir = good_tree();
        std::fs::remove_file(on_root(dir.path(), BUS_POLICIES[0])).unwrap();
        let f = check(dir.path(), false);
        assert!(
            f.iter().any(|f| f.severity == Severity::Warning
                && f.what
                    .starts_with("no D-Bus policy for org.otpgate.Otpgate1")),
            "{f:#?}"
        );

        let etc = on_root(dir.path(), BUS_POLICIES[1]);
        std::fs::create_dir_all(etc.parent().unwrap()).unwrap();
        std::fs::write(&etc, "x").unwrap();
        let f = check(dir.path(), false);
        assert!(!f.iter().any(|f| f.what.contains("D-Bus policy")), "{f:#?}");
    }

    #[test]
    fn the_clock_finding_says_who_told() {
        let ok = clock_finding(Some((true, "timedatectl")));
        assert_eq!(ok.severity, Severity::Info);
        let off = clock_finding(Some((false, "chronyc")));
        assert_eq!(off.severity, Severity::Warning);
        assert!(off.what.contains("chronyc says so"), "{}", off.what);
        assert_eq!(clock_finding(None).severity, Severity::Info);
        let tracking = "Reference ID    : C0A80001 (gw)\nLeap status     : Normal\n";
        assert_eq!(chrony_synchronised(tracking), Some(true));
        assert_eq!(
            chrony_synchronised("Leap status     : Not synchronised\n"),
            Some(false)
        );
        assert_eq!(chrony_synchronised("garbage"), None);
    }

    #[test]
    fn the_daemon_is_running_when_its_socket_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("pam.socket");
        let nobus = format!("unix:path={}", dir.path().join("no-bus").display());
        assert_eq!(daemon_running(&nobus, &socket), Some(false));
        // A plain file where the socket should be is no daemon either.
        std::fs::write(&socket, "").unwrap();
        assert_eq!(daemon_running(&nobus, &socket), Some(false));
        std::fs::remove_file(&socket).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert_eq!(daemon_running(&nobus, &socket), Some(true));
    }
}
