//! `otpgate import`: hands a `~/.google_authenticator` file to the daemon,
//! which parses it. The contents hold the secret: read into wiped memory,
//! never printed, never put into an argument of another process.

use std::fs::File;
use std::io::Read;

use otpgate_proto::ServiceError;
use zeroize::Zeroizing;

use super::Ctx;
use crate::args::ImportArgs;
use crate::error::CliError;
use crate::output;

/// A google-authenticator file is a secret, a few option lines and at most
/// a handful of scratch codes: well under 1 KiB. Anything near this limit
/// is not such a file.
const MAX_FILE: u64 = 64 * 1024;

pub async fn import(ctx: &Ctx, args: &ImportArgs) -> Result<(), CliError> {
    let path = &args.google_authenticator;
    let what = || format!("cannot read {}", path.display());
    let file = File::open(path).map_err(|e| CliError::io(what(), &e))?;
    let meta = file.metadata().map_err(|e| CliError::io(what(), &e))?;
    if !meta.is_file() {
        return Err(CliError::Input(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::io(what(), &e))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(CliError::Input(format!(
            "{} is too large to be a google-authenticator file",
            path.display()
        )));
    }
    let contents = Zeroizing::new(String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
        // The bytes come back with the error: wipe them too.
        drop(Zeroizing::new(e.into_bytes()));
        CliError::Input(format!(
            "{} is not a google-authenticator file (not text)",
            path.display()
        ))
    })?);

    let reply = ctx
        .client
        .import(&args.user, &contents)
        .await
        .map_err(|e| match e {
            CliError::Daemon {
                err: ServiceError::InvalidArgument(m),
                ..
            } => {
                let reason = m.split_whitespace().collect::<Vec<_>>().join(" ");
                let reason = reason.strip_prefix("cannot import: ").unwrap_or(&reason);
                CliError::Input(format!("cannot import {}: {reason}", path.display()))
            }
            other => other,
        })?;
    let imported = reply.backup_codes_imported;
    if ctx.json {
        output::print_json(&serde_json::json!({
            "user": args.user,
            "backup_codes_imported": imported,
        }))
    } else {
        output::print(&format!(
            "Imported {user}'s google-authenticator secret and {imported} scratch code{s} \
             (now backup codes): {user} keeps using the same authenticator app.\n\
             Once PAM uses pam_otpgate.so instead of pam_google_authenticator.so, \
             remove {file}.\n",
            user = args.user,
            s = if imported == 1 { "" } else { "s" },
            file = path.display(),
        ))
    }
}
