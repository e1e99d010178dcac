//! `otpgate status`.

use super::Ctx;
use crate::args::StatusArgs;
use crate::error::CliError;
use crate::output::{self, StatusText};

pub async fn status(ctx: &Ctx, args: &StatusArgs) -> Result<(), CliError> {
    let user = ctx.user(args.user.as_deref())?;
    let mut status = ctx.client.status(&user).await?;
    // The name asked about, as typed: the daemon answers with the account's
    // own name, which differs for a second name on the same uid.
    status.user = user;
    if ctx.json {
        output::print_json(&status)
    } else {
        output::print(&status.text(output::now()))
    }
}

pub async fn history(ctx: &Ctx, args: &StatusArgs) -> Result<(), CliError> {
    let user = ctx.user(args.user.as_deref())?;
    let entries = ctx.client.history(&user).await?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "user": user, "history": entries }))
    } else {
        output::print(&output::history_text(&user, &entries))
    }
}
