//! One module per group of commands. Each takes the parsed arguments and a
//! `Ctx`, talks to the daemon and prints; errors come back as `CliError`.

pub mod admin;
pub mod breakglass;
pub mod codes;
pub mod enroll;
pub mod import;
pub mod policy;
pub mod status;

use crate::client::{BackupCodes, Client};
use crate::error::CliError;
use crate::output;

pub struct Ctx {
    pub client: Client,
    pub json: bool,
    pub uid: u32,
    /// The invoking user's name, from the passwd database (not `$USER`).
    pub invoker: Option<String>,
}

impl Ctx {
    /// `--user`, else the invoking user.
    pub fn user(&self, given: Option<&str>) -> Result<String, CliError> {
        match given {
            Some(u) => Ok(u.to_owned()),
            None => self.invoker.clone().ok_or(CliError::NoUserName(self.uid)),
        }
    }

    /// Whether the command is about the invoking user, which decides how
    /// follow-up hints are worded (`--user` needed or not).
    pub fn is_self(&self, user: &str) -> bool {
        self.invoker.as_deref() == Some(user)
    }

    pub fn user_flag(&self, user: &str) -> String {
        if self.is_self(user) {
            String::new()
        } else {
            format!(" --user {user}")
        }
    }
}

/// One-time codes in two columns, indented: short enough to copy by hand.
pub fn code_columns(codes: &BackupCodes) -> String {
    let mut out = String::new();
    for pair in codes.0.chunks(2) {
        let line: Vec<&str> = pair.iter().map(|c| c.as_str()).collect();
        out.push_str("    ");
        out.push_str(&line.join("    "));
        out.push('\n');
    }
    out
}

/// Backup codes for a person: two columns, then the line telling them to
/// store the codes, because they are never shown again.
pub fn backup_codes_text(user: &str, codes: &BackupCodes) -> String {
    let mut out = format!(
        "Backup codes for {user} (each works once, for when the phone is lost; \
         they are not shown again):\n\n"
    );
    out.push_str(&code_columns(codes));
    out.push_str(
        "\nStore these codes somewhere safe now (a password manager, or on paper): \
         otpgate keeps only their hashes.\n",
    );
    out
}

pub fn print_backup_codes(ctx: &Ctx, user: &str, codes: &BackupCodes) -> Result<(), CliError> {
    if ctx.json {
        let list: Vec<&str> = codes.0.iter().map(|c| c.as_str()).collect();
        output::print_json(&serde_json::json!({ "user": user, "backup_codes": list }))
    } else {
        output::print(&backup_codes_text(user, codes))
    }
}
