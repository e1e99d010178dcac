//! The administrator commands: `unlock`, `reset`, `list`, `stats`,
//! `admin migrate-store`, `admin rotate-key`.

use otpgate_proto::codec::Stats;

use super::Ctx;
use crate::args::TargetArgs;
use crate::error::CliError;
use crate::output::{self, table, Align, StatusText};

/// One `ListUsers` entry: a readable record, or one the daemon could not
/// read (shown, not hidden: an administrator must see it to fix it).
pub type Row = otpgate_proto::codec::UserEntry;

pub async fn unlock(ctx: &Ctx, args: &TargetArgs) -> Result<(), CliError> {
    ctx.client.unlock(&args.user).await?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "user": args.user, "unlocked": true }))
    } else {
        output::print(&format!(
            "{} is unlocked and the failure count is cleared.\n",
            args.user
        ))
    }
}

pub async fn reset(ctx: &Ctx, args: &TargetArgs) -> Result<(), CliError> {
    ctx.client.reset(&args.user).await?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "user": args.user, "reset": true }))
    } else {
        output::print(&format!(
            "The enrolment of {} is removed (its counts stay in `otpgate stats`); they enrol again with `otpgate enroll`.\n",
            args.user
        ))
    }
}

pub fn list_table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| match r {
            Row::Ok(s) => vec![
                s.user.clone(),
                s.state(),
                if s.method.is_empty() {
                    "-".to_owned()
                } else {
                    s.method.clone()
                },
                s.backup_codes_left.to_string(),
                s.failures.to_string(),
            ],
            Row::Unreadable { user, error } => vec![
                user.clone(),
                format!("unreadable: {error}"),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ],
        })
        .collect();
    table(
        &["USER", "STATE", "METHOD", "BACKUP CODES", "FAILURES"],
        &[
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
        ],
        &cells,
    )
}

pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut rows = ctx.client.list_users().await?;
    rows.sort_by(|a, b| a.user().cmp(b.user()));
    if ctx.json {
        return output::print_json(&serde_json::json!({ "users": rows }));
    }
    if rows.is_empty() {
        return output::print("No users are enrolled.\n");
    }
    output::print(&list_table(&rows))
}

/// The block `otpgate stats` prints.
pub fn stats_text(s: &Stats) -> String {
    let rows = [
        ("users enrolled (now)", s.users_enrolled),
        ("users locked (now)", s.users_locked),
        ("successful codes", s.successes),
        ("failed codes", s.failures),
        ("lockouts", s.lockouts),
        ("backup codes used", s.backup_codes_used),
        ("enrolments", s.enrolments),
        ("disabled", s.disabled),
        ("resets", s.resets),
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(k, v)| vec![(*k).to_owned(), v.to_string()])
        .collect();
    let body = table(&["", ""], &[Align::Left, Align::Right], &cells);
    // The header row of blanks is dropped: a two-column list needs none.
    let body: String = body.lines().skip(1).map(|l| format!("{l}\n")).collect();
    format!("Last {} days:\n{body}", s.days)
}

pub async fn stats(ctx: &Ctx) -> Result<(), CliError> {
    let stats = ctx.client.stats().await?;
    if ctx.json {
        output::print_json(&stats)
    } else {
        output::print(&stats_text(&stats))
    }
}

/// `admin migrate-store` and `admin rotate-key`: the daemon's binary does
/// the work, offline (the daemon stopped), as it alone reads the key and
/// the records. This replaces the process with it and returns only if that
/// could not be started.
pub fn offline(config: &std::path::Path, args: &[&str]) -> CliError {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        return CliError::Input("otpgate admin commands must be run as root".into());
    }
    let daemon = otpgated_binary();
    let err = std::process::Command::new(&daemon)
        .arg("--config")
        .arg(config)
        .args(args)
        .exec();
    CliError::Io {
        what: format!("cannot run {}", daemon.display()),
        reason: err.to_string(),
    }
}

/// The otpgated installed with this otpgate: beside it (a build tree), else
/// where the package puts it.
fn otpgated_binary() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("otpgated")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "/usr/sbin/otpgated".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use otpgate_proto::codec::Status;

    fn status(user: &str, locked: bool) -> Status {
        Status {
            user: user.into(),
            enrolled: true,
            pending: false,
            method: "totp".into(),
            backup_codes_left: 10,
            locked,
            locked_until: 0,
            failures: if locked { 5 } else { 0 },
            ..Status::default()
        }
    }

    #[test]
    fn list_table_is_aligned_and_shows_unreadable_records() {
        let rows = vec![
            Row::Ok(status("alice", false)),
            Row::Ok(status("bob", true)),
            Row::Unreadable {
                user: "carol".into(),
                error: "cannot decrypt".into(),
            },
        ];
        let t = list_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        let method_col = lines[0].find("METHOD").unwrap();
        assert_eq!(&lines[1][method_col..method_col + 4], "totp");
        assert_eq!(&lines[2][method_col..method_col + 4], "totp");
        // Right-aligned numbers end in the same column.
        let end = lines[0].len();
        assert!(lines[1].ends_with(" 0") && lines[1].len() == end);
        assert!(lines[2].ends_with(" 5") && lines[2].len() == end);
        assert!(lines[3].contains("unreadable: cannot decrypt"));
    }

    #[test]
    fn list_json_rows() {
        let rows = vec![
            Row::Ok(status("alice", false)),
            Row::Unreadable {
                user: "carol".into(),
                error: "e".into(),
            },
        ];
        let v = serde_json::json!({ "users": rows });
        assert_eq!(v["users"][0]["user"], "alice");
        assert_eq!(v["users"][0]["backup_codes_left"], 10);
        assert_eq!(
            v["users"][1],
            serde_json::json!({"user": "carol", "error": "e"})
        );
    }

    #[test]
    fn stats_text_aligns_numbers() {
        let s = Stats {
            users_enrolled: 12,
            users_locked: 1,
            successes: 3400,
            failures: 25,
            lockouts: 2,
            backup_codes_used: 3,
            enrolments: 4,
            disabled: 1,
            resets: 2,
            days: 30,
        };
        let text = stats_text(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Last 30 days:");
        let width = lines[1].len();
        assert!(lines[1..].iter().all(|l| l.len() == width), "{text}");
        assert!(lines[3].ends_with("3400"));
        assert!(lines[7].starts_with("enrolments") && lines[7].ends_with(" 4"));
        assert!(lines[9].starts_with("resets") && lines[9].ends_with(" 2"));
    }
}
