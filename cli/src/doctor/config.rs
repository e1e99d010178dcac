//! The daemon's configuration: would otpgated start with the one under the
//! root? Its own `--check-config` decides, so that doctor never disagrees
//! with the daemon about what a config means.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::finding::{Finding, Severity};

/// Where otpgated reads its configuration.
pub const CONFIG: &str = "/etc/otpgate/otpgate.toml";

/// The daemon's reason for refusing `[[policy]]` rules that would lock
/// root out everywhere (daemon/src/config/policy.rs).
pub const LOCKS_OUT_ROOT: &str = "these rules make root give a second factor on every service";

/// How the warning for any other refusal begins.
pub const WILL_NOT_START: &str = "otpgated will not start with this config";

/// `--check-config` only parses a file; one that takes longer is stuck
/// (a config on a hung network mount), and says nothing either way.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// The finding for the config under `root`, if otpgated refuses it. No
/// file means the defaults, which are valid; no otpgated installed means
/// nothing to ask.
pub fn check(root: &Path) -> Option<Finding> {
    let file = root.join(CONFIG.trim_start_matches('/'));
    if !file.exists() {
        return None;
    }
    let daemon = otpgated()?;
    let (code, stderr) = run(&daemon, &file)?;
    refusal(code, &stderr, &file)
}

/// The otpgated installed with this otpgate: beside it (a build tree), else
/// where the package puts it (as `otpgate admin` finds it).
fn otpgated() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("otpgated")))
        .filter(|p| p.is_file())
        .or_else(|| Some(PathBuf::from("/usr/sbin/otpgated")).filter(|p| p.is_file()))
}

/// `otpgated --check-config --config FILE`: its exit code and what it
/// wrote to stderr, or `None` if it could not be run or did not finish.
fn run(daemon: &Path, file: &Path) -> Option<(Option<i32>, String)> {
    let mut cmd = Command::new(daemon);
    cmd.arg("--check-config").arg("--config").arg(file);
    let ran = super::proc::bounded(cmd, CHECK_DEADLINE)?;
    Some((ran.code, ran.stderr))
}

/// The finding for what `otpgated --check-config --config FILE` said.
/// Only exit status 1 is a refusal: anything else is an otpgated that
/// could not tell (one without `--check-config` exits 2, from clap).
pub fn refusal(code: Option<i32>, stderr: &str, file: &Path) -> Option<Finding> {
    if code != Some(1) {
        return None;
    }
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let line = line.strip_prefix("otpgated: ").unwrap_or(line);
    // The path as it is on the system checked, not under --root.
    let line = line.replace(&file.display().to_string(), CONFIG);
    Some(if line.contains(LOCKS_OUT_ROOT) {
        // Not a way in, but doctor's strongest word: once this config is
        // in force root has no way back in without a rescue system.
        Finding::new(
            Severity::Bypass,
            None,
            format!("{WILL_NOT_START}, and its policy would lock root out: {line}"),
            "put a rule for root's console first (users = [\"root\"], services = [\"login\"], mode = \"optional\"), keep break-glass codes (`otpgate breakglass generate`), and check again with `otpgated --check-config`",
        )
    } else {
        Finding::new(
            Severity::Warning,
            None,
            format!("{WILL_NOT_START}: {line}"),
            format!(
                "correct the line it names in {CONFIG}; `otpgated --check-config` says when it is valid"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/srv/img/etc/otpgate/otpgate.toml";

    #[test]
    fn a_policy_that_locks_root_out_is_a_bypass_level_finding() {
        let stderr = format!(
            "otpgated: {FILE}:3: [[policy]]: {LOCKS_OUT_ROOT}, the console included: root could be locked out for good. Put a rule for root's console first\n"
        );
        let f = refusal(Some(1), &stderr, Path::new(FILE)).expect("a finding");
        assert_eq!(f.severity, Severity::Bypass);
        assert_eq!(f.service, None);
        assert!(
            f.what.starts_with(&format!(
                "{WILL_NOT_START}, and its policy would lock root out: /etc/otpgate/otpgate.toml:3: [[policy]]: {LOCKS_OUT_ROOT}"
            )),
            "{f:?}"
        );
        assert!(!f.what.contains("/srv/img"), "{f:?}");
        assert!(f.fix.contains("root's console first"), "{f:?}");
    }

    #[test]
    fn any_other_refusal_is_a_warning_quoting_the_daemon() {
        let stderr = format!(
            "otpgated: {FILE}:7: unknown key \"modes\" in [[policy]] (known: users, groups)\n"
        );
        let f = refusal(Some(1), &stderr, Path::new(FILE)).expect("a finding");
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(
            f.what,
            "otpgated will not start with this config: /etc/otpgate/otpgate.toml:7: unknown key \"modes\" in [[policy]] (known: users, groups)"
        );
    }

    #[test]
    fn a_valid_config_or_an_otpgated_that_cannot_tell_is_no_finding() {
        assert_eq!(refusal(Some(0), "", Path::new(FILE)), None);
        // An otpgated from before --check-config: clap's usage error.
        assert_eq!(
            refusal(
                Some(2),
                "error: unexpected argument '--check-config' found\n",
                Path::new(FILE)
            ),
            None
        );
        // Killed by a signal.
        assert_eq!(refusal(None, "", Path::new(FILE)), None);
        assert_eq!(refusal(Some(1), "\n", Path::new(FILE)), None);
    }

    #[test]
    fn no_config_file_is_the_defaults() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(check(root.path()), None);
    }
}
