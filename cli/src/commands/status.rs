//! `otpgate status`.

use super::Ctx;
use crate::args::StatusArgs;
use crate::error::CliError;
use crate::output::{self, Status};

pub async fn status(ctx: &Ctx, args: &StatusArgs) -> Result<(), CliError> {
    let user = ctx.user(args.user.as_deref())?;
    let dict = ctx.client.status(&user).await?;
    let status = Status::from_dict(&user, &dict)?;
    if ctx.json {
        output::print_json(&status)
    } else {
        output::print(&status.text(output::now()))
    }
}
