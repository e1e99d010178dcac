//! `otpgate enroll` and `otpgate confirm`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use otpgate_proto::codec::Enrollment;
use otpgate_proto::ServiceError;
use zeroize::Zeroizing;

use super::{print_backup_codes, Ctx};
use crate::args::{ConfirmArgs, EnrollArgs, MethodArg};
use crate::error::CliError;
use crate::output::{self, from_now, local_time};
use crate::qr;
use crate::term::{self, Typed};

/// Wrong codes tolerated at the prompt before giving up (the enrolment
/// stays pending; `otpgate confirm` can still finish it).
const ATTEMPTS: usize = 3;

pub async fn enroll(ctx: &Ctx, args: &EnrollArgs) -> Result<(), CliError> {
    let user = ctx.user(args.user.as_deref())?;
    if args.qr_svg.is_some() && args.method != MethodArg::Totp {
        return Err(CliError::Input(format!(
            "no QR code for --method {}: it has no otpauth URI",
            args.method.wire()
        )));
    }
    // The file is claimed before the enrolment starts, so that a name
    // already taken does not leave a new secret pending with no QR code.
    let svg_file = match &args.qr_svg {
        Some(path) => Some(SvgFile::create(path)?),
        None => None,
    };
    let reply = ctx
        .client
        .enroll(
            &user,
            args.method.wire(),
            args.email.as_deref(),
            args.name.as_deref(),
        )
        .await?;
    let expires = reply.expires();
    let method = reply.method();
    let (uri, secret, sent_to) = match reply {
        Enrollment::Totp { uri, secret, .. } => (Some(uri), Some(secret), None),
        Enrollment::Email { sent_to, .. } => (None, None, Some(sent_to)),
    };

    if let Some(file) = svg_file {
        let uri = uri
            .as_ref()
            .ok_or_else(|| CliError::Protocol("an enrolment without `uri`".to_owned()))?;
        file.write(uri)?;
    }

    if ctx.json || !term::interactive() {
        let mut obj = serde_json::Map::new();
        obj.insert("user".into(), user.clone().into());
        if let Some(u) = &uri {
            obj.insert("uri".into(), u.as_str().into());
        }
        if let Some(s) = &secret {
            obj.insert("secret".into(), s.as_str().into());
        }
        obj.insert("method".into(), method.as_str().into());
        if let Some(t) = sent_to {
            obj.insert("sent_to".into(), t.into());
        }
        obj.insert("expires".into(), expires.into());
        if let Some(p) = &args.qr_svg {
            obj.insert("qr_svg".into(), p.display().to_string().into());
        }
        return output::print_json(&obj);
    }

    let mut text = String::new();
    if let Some(uri) = &uri {
        match qr::terminal(uri) {
            Ok(code) => {
                text.push_str("Scan this QR code with your authenticator app:\n\n");
                text.push_str(&code);
            }
            Err(e) => text.push_str(&format!(
                "No QR code on the terminal: {e}. Use --qr-svg FILE or type the secret.\n"
            )),
        }
        text.push('\n');
    }
    if let Some(secret) = &secret {
        text.push_str(&format!(
            "Or add it by hand (time-based): {}\n",
            term::group_secret(secret)
        ));
    }
    if let Some(uri) = &uri {
        text.push_str(&format!("URI: {}\n", uri.as_str()));
    }
    if uri.is_none() {
        if let Some(addr) = &args.email {
            text.push_str(&format!("A code was sent to {addr}.\n"));
        }
    }
    if let Some(p) = &args.qr_svg {
        text.push_str(&format!(
            "QR code written to {} (mode 0600: it holds the secret; hand it over privately, then delete it).\n",
            p.display()
        ));
    }
    text.push('\n');
    output::print(&text)?;

    let later = || {
        let when = if expires > 0 {
            format!(
                " before {} ({})",
                local_time(expires),
                from_now(expires, output::now())
            )
        } else {
            String::new()
        };
        output::print(&format!(
            "Not confirmed yet: finish{when} with `otpgate confirm{} CODE`.\n",
            ctx.user_flag(&user)
        ))
    };

    let mut tries = 0;
    while tries < ATTEMPTS {
        let prompt = if uri.is_some() {
            "Code from the app (or Enter to confirm later): "
        } else {
            "Code from the mail (or Enter to confirm later): "
        };
        let Some(line) = term::prompt(prompt)? else {
            // End of input (Ctrl-D) leaves the cursor after the prompt.
            output::print("\n")?;
            return later();
        };
        let code = match term::parse_typed(&line) {
            Typed::Nothing => return later(),
            Typed::Garbage => {
                tries += 1;
                eprintln!("That is not a code: type the digits the app shows.");
                continue;
            }
            Typed::Code(c) => c,
        };
        match ctx.client.confirm(&user, &code).await {
            Ok(codes) if codes.0.is_empty() && args.name.is_some() => {
                let name = args.name.as_deref().unwrap_or_default();
                return output::print(&format!(
                    "\nDevice {name} of {user} confirmed; the backup codes stay as they were.\n"
                ));
            }
            Ok(codes) => {
                output::print(&format!("\nEnrolment of {user} confirmed.\n\n"))?;
                return print_backup_codes(ctx, &user, &codes);
            }
            Err(CliError::Daemon {
                err: ServiceError::InvalidCode(_),
                ..
            }) => {
                tries += 1;
                if tries < ATTEMPTS {
                    eprintln!(
                        "That code was not accepted ({} {} left): check the phone's clock \
                         and type the code shown now.",
                        ATTEMPTS - tries,
                        if ATTEMPTS - tries == 1 {
                            "try"
                        } else {
                            "tries"
                        }
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
    // The daemon drops a pending enrolment after its own limit of wrong
    // codes, which earlier `otpgate confirm` attempts count towards too.
    let still_pending = match ctx.client.status(&user).await {
        Ok(s) => s.pending,
        Err(_) => false,
    };
    Err(CliError::TooManyAttempts {
        self_service: ctx.is_self(&user),
        user,
        still_pending,
    })
}

/// The `--qr-svg` file: created new and readable by its owner only (it
/// holds the secret). An existing file, or a symlink planted in its place,
/// is never written through. Removed again if the enrolment fails.
struct SvgFile<'a> {
    path: &'a Path,
    file: Option<File>,
}

impl<'a> SvgFile<'a> {
    fn create(path: &'a Path) -> Result<SvgFile<'a>, CliError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    CliError::Input(format!(
                        "{} already exists: remove it or choose another file (it would hold the secret)",
                        path.display()
                    ))
                } else {
                    CliError::io(format!("cannot create {}", path.display()), &e)
                }
            })?;
        Ok(SvgFile {
            path,
            file: Some(file),
        })
    }

    fn write(mut self, uri: &str) -> Result<(), CliError> {
        let svg = Zeroizing::new(
            qr::svg(uri).map_err(|e| CliError::Input(format!("cannot draw the QR code: {e}")))?,
        );
        let mut file = self.file.take().expect("written once");
        let written = file
            .write_all(svg.as_bytes())
            .and_then(|()| file.sync_all());
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                self.file = Some(file);
                Err(CliError::io(
                    format!("cannot write {}", self.path.display()),
                    &e,
                ))
            }
        }
    }
}

impl Drop for SvgFile<'_> {
    fn drop(&mut self) {
        // Still holding the file means it was not (completely) written.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

pub async fn confirm(ctx: &Ctx, args: &ConfirmArgs) -> Result<(), CliError> {
    let user = ctx.user(args.user.as_deref())?;
    let code = term::code_argument(&args.code)?;
    let codes = ctx.client.confirm(&user, &code).await?;
    if !ctx.json && codes.0.is_empty() {
        // A device added to a user who had one: the codes they have stay.
        return output::print(&format!(
            "Enrolment of {user} confirmed; no new backup codes (the ones {user} has still work).\n"
        ));
    }
    if !ctx.json {
        output::print(&format!("Enrolment of {user} confirmed.\n\n"))?;
    }
    print_backup_codes(ctx, &user, &codes)
}
