//! `otpgate disable` and `otpgate backup-codes`: self-service commands that
//! need a current code from a user (and, where the daemon is set to
//! `[self_service] reauth = "password+code"`, the account's password) and
//! nothing from an administrator.

use otpgate_proto::ServiceError;
use zeroize::Zeroizing;

use super::{print_backup_codes, Ctx};
use crate::args::{CodeArgs, RemoveDeviceArgs};
use crate::error::CliError;
use crate::output;
use crate::term;

/// The code to send. Root and anyone acting on another user are
/// administrators (the daemon refuses them otherwise), so they send none.
/// A person acting on themselves at a terminal is asked; an administrator
/// acting on themselves just presses Enter.
fn code_for(ctx: &Ctx, user: &str, given: Option<&str>) -> Result<Zeroizing<String>, CliError> {
    if let Some(g) = given {
        return term::code_argument(g);
    }
    if ctx.uid == 0 || !ctx.is_self(user) || !term::stdin_is_terminal() {
        return Ok(Zeroizing::new(String::new()));
    }
    Ok(term::prompt(
        "Current code from your authenticator app, or a backup code \
         (Enter if you are an otpgate administrator): ",
    )?
    .unwrap_or_default())
}

/// An empty code refused by the daemon means "you are not an administrator,
/// so a code is needed", which deserves its own instruction.
fn explain_missing_code(
    ctx: &Ctx,
    err: CliError,
    code: &str,
    user: &str,
    command: &str,
) -> CliError {
    match err {
        CliError::Daemon {
            err:
                ServiceError::InvalidCode(_)
                | ServiceError::InvalidArgument(_)
                | ServiceError::AccessDenied(_),
            ..
        } if code.is_empty() && ctx.is_self(user) => CliError::Input(format!(
            "{user} needs a current code for this: `otpgate {command} --code CODE` \
             (or `--code -` to read it from stdin)"
        )),
        other => other,
    }
}

/// Runs `call` with the account's password where it is to be sent: read
/// from stdin with `--password-stdin` (always sent), else asked on the
/// terminal without echo only once otpgated has answered `PasswordRequired`.
async fn with_reauth<T>(
    args: &CodeArgs,
    user: &str,
    call: impl AsyncFn(Option<&str>) -> Result<T, CliError>,
) -> Result<T, CliError> {
    if args.password_stdin {
        let p = term::password_from_stdin()?;
        return call(Some(&p)).await;
    }
    match call(None).await {
        Err(e) if password_required(&e) => {
            let p = ask_password(user)?;
            call(Some(&p)).await
        }
        other => other,
    }
}

fn password_required(err: &CliError) -> bool {
    matches!(
        err,
        CliError::Daemon {
            err: ServiceError::PasswordRequired(_),
            ..
        }
    )
}

fn ask_password(user: &str) -> Result<Zeroizing<String>, CliError> {
    term::password_from_terminal(&format!("Password for {user}: "))
}

pub async fn disable(ctx: &Ctx, args: &CodeArgs) -> Result<(), CliError> {
    let user = ctx.user(args.user.as_deref())?;
    let code = code_for(ctx, &user, args.code.as_deref())?;
    let done = with_reauth(args, &user, async |p| {
        ctx.client.disable(&user, &code, p).await
    })
    .await;
    done.map_err(|e| explain_missing_code(ctx, e, &code, &user, "disable"))?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "user": user, "disabled": true }))
    } else {
        output::print(&format!(
            "The second factor of {user} is removed; enrol again with `otpgate enroll{}`.\n",
            ctx.user_flag(&user)
        ))
    }
}

pub async fn remove_device(ctx: &Ctx, args: &RemoveDeviceArgs) -> Result<(), CliError> {
    let user = ctx.user(args.code.user.as_deref())?;
    let code = code_for(ctx, &user, args.code.code.as_deref())?;
    let done = with_reauth(&args.code, &user, async |p| {
        ctx.client.remove_device(&user, &args.name, &code, p).await
    })
    .await;
    done.map_err(|e| match e {
        // Refusals by policy are AccessDenied; only a missing code
        // gets the instruction.
        e @ CliError::Daemon {
            err: ServiceError::InvalidCode(_),
            ..
        } => explain_missing_code(ctx, e, &code, &user, "remove-device NAME"),
        other => other,
    })?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "user": user, "removed": args.name }))
    } else {
        output::print(&format!(
            "Device {} of {user} is removed; `otpgate status{}` lists the rest.\n",
            args.name,
            ctx.user_flag(&user)
        ))
    }
}

pub async fn backup_codes(ctx: &Ctx, args: &CodeArgs) -> Result<(), CliError> {
    let user = ctx.user(args.user.as_deref())?;
    let code = code_for(ctx, &user, args.code.as_deref())?;
    let codes = with_reauth(args, &user, async |p| {
        ctx.client.regenerate_backup_codes(&user, &code, p).await
    })
    .await
    .map_err(|e| explain_missing_code(ctx, e, &code, &user, "backup-codes"))?;
    if !ctx.json {
        output::print("The old backup codes no longer work.\n\n")?;
    }
    print_backup_codes(ctx, &user, &codes)
}
