//! `otpgate breakglass generate` and `otpgate breakglass ack`: root's way
//! back in when its device is lost.

use otpgate_proto::ServiceError;

use super::{code_columns, Ctx};
use crate::args::{BreakglassArgs, BreakglassCommand};
use crate::client::BackupCodes;
use crate::error::CliError;
use crate::output;

pub async fn breakglass(ctx: &Ctx, command: &BreakglassCommand) -> Result<(), CliError> {
    match command {
        BreakglassCommand::Generate(a) => generate(ctx, a).await,
        BreakglassCommand::Ack(a) => ack(ctx, a).await,
    }
}

/// The daemon's generic refusal speaks of the administrator group, which
/// is no help here: these methods are root's alone, group or not.
fn root_only(err: CliError, command: &str) -> CliError {
    match err {
        CliError::Daemon {
            err: ServiceError::AccessDenied(_),
            user,
        } => CliError::Daemon {
            err: ServiceError::AccessDenied(format!(
                "break-glass codes are root's alone to manage: run `sudo otpgate breakglass {command}`"
            )),
            user,
        },
        other => other,
    }
}

async fn generate(ctx: &Ctx, args: &BreakglassArgs) -> Result<(), CliError> {
    let codes = ctx
        .client
        .generate_breakglass(&args.user)
        .await
        .map_err(|e| root_only(e, "generate"))?;
    if ctx.json {
        let list: Vec<&str> = codes.0.iter().map(|c| c.as_str()).collect();
        output::print_json(&serde_json::json!({ "user": args.user, "breakglass_codes": list }))
    } else {
        output::print(&generated_text(&args.user, &codes))
    }
}

/// The codes and what keeps them useful: where they work, what each use
/// leaves behind, and that this is the only time they are shown.
pub fn generated_text(user: &str, codes: &BackupCodes) -> String {
    format!(
        "Break-glass codes for {user} (each works once; the old ones no longer work; \
         they are not shown again):\n\n{}\n\
         Store them offline, in a safe: on paper, not on this machine or beside the device \
         they stand in for.\n\
         They are accepted only on a local console (a virtual or a serial console), never \
         over ssh.\n\
         Each use is logged at alert level and noted at every later login until \
         `otpgate breakglass ack{}`.\n",
        code_columns(codes),
        user_flag(user),
    )
}

fn user_flag(user: &str) -> String {
    if user == "root" {
        String::new()
    } else {
        format!(" --user {user}")
    }
}

async fn ack(ctx: &Ctx, args: &BreakglassArgs) -> Result<(), CliError> {
    let n = ctx
        .client
        .acknowledge_breakglass(&args.user)
        .await
        .map_err(|e| root_only(e, "ack"))?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "user": args.user, "acknowledged": n }))
    } else {
        output::print(&ack_text(n))
    }
}

pub fn ack_text(n: u32) -> String {
    match n {
        1 => "1 break-glass use acknowledged.\n".to_owned(),
        n => format!("{n} break-glass uses acknowledged.\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn codes() -> BackupCodes {
        BackupCodes(
            [
                "k7f2-9qxm-4t",
                "8t7t-e835-kk",
                "a1b2-c3d4-e5",
                "f6g7-h8j9-k0",
                "m1n2-p3q4-r5",
            ]
            .into_iter()
            .map(|c| Zeroizing::new(c.to_owned()))
            .collect(),
        )
    }

    #[test]
    fn generated_codes_come_with_the_rules_of_their_use() {
        let text = generated_text("root", &codes());
        for c in codes().0.iter() {
            assert_eq!(text.matches(c.as_str()).count(), 1, "{text}");
        }
        for needle in [
            "offline, in a safe",
            "only on a local console",
            "never over ssh",
            "alert level",
            "`otpgate breakglass ack`",
            "not shown again",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(generated_text("alice", &codes()).contains("`otpgate breakglass ack --user alice`"));
    }

    #[test]
    fn a_refusal_says_root_only() {
        let e = root_only(
            CliError::Daemon {
                err: ServiceError::AccessDenied(
                    "uid 1001 may not use administrator methods".into(),
                ),
                user: Some("root".into()),
            },
            "generate",
        );
        let line = e.line();
        assert!(line.starts_with("permission denied: "), "{line}");
        assert!(line.contains("root's alone"), "{line}");
        assert!(line.contains("sudo otpgate breakglass generate"), "{line}");
        let other = root_only(CliError::NoReply, "ack");
        assert!(matches!(other, CliError::NoReply));
    }

    #[test]
    fn ack_counts() {
        assert_eq!(ack_text(0), "0 break-glass uses acknowledged.\n");
        assert_eq!(ack_text(1), "1 break-glass use acknowledged.\n");
        assert_eq!(ack_text(3), "3 break-glass uses acknowledged.\n");
    }
}
