//! `otpgate`, the command line of otpgate. The binary's `main` calls
//! [`main`]; the docs generator uses [`args::command`] and [`docs`].

pub mod args;
pub mod client;
pub mod commands;
pub mod docs;
pub mod doctor;
pub mod error;
pub mod output;
pub mod qr;
pub mod term;

use clap::Parser;

use args::{AdminCommand, Cli, Command, MethodArg};
use commands::Ctx;
use error::CliError;

/// Parses the command line, runs the command, and returns the exit status:
/// 0 success, 1 failure (one line on stderr), 2 usage error (clap exits
/// with 2 itself).
pub fn main() -> i32 {
    let cli = Cli::parse();
    check_usage(&cli);
    // Reads files; only `/` asks the daemon, and then by itself.
    if let Command::Doctor(d) = &cli.command {
        return doctor::main(d, cli.json, cli.bus.as_deref());
    }
    // Works on the daemon's files with the daemon stopped: no bus.
    if let Command::Admin(admin) = &cli.command {
        let e = match admin {
            AdminCommand::MigrateStore(a) => {
                commands::admin::offline(&a.config, &["--migrate-store-to", &a.to])
            }
            AdminCommand::RotateKey(a) => commands::admin::offline(&a.config, &["--rotate-key"]),
        };
        eprintln!("otpgate: {}", e.line());
        return 2;
    }
    match zruntime::block_on(run(&cli)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("otpgate: {}", e.line());
            e.exit_code()
        }
    }
}

/// Combinations clap's derive cannot express; reported like clap's own
/// usage errors (exit 2).
fn check_usage(cli: &Cli) {
    if let Command::Enroll(e) = &cli.command {
        if e.email.is_some() && e.method != MethodArg::Email {
            args::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--email goes with --method email",
                )
                .exit();
        }
    }
}

fn invoker() -> (u32, Option<String>) {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    (uid.as_raw(), name)
}

async fn run(cli: &Cli) -> Result<(), CliError> {
    let address = client::bus_address(cli.bus.as_deref());
    let client = client::Client::connect(&address).await?;
    let (uid, invoker) = invoker();
    let ctx = Ctx {
        client,
        json: cli.json,
        uid,
        invoker,
    };
    match &cli.command {
        Command::Enroll(a) => commands::enroll::enroll(&ctx, a).await,
        Command::Confirm(a) => commands::enroll::confirm(&ctx, a).await,
        Command::Status(a) => commands::status::status(&ctx, a).await,
        Command::History(a) => commands::status::history(&ctx, a).await,
        Command::Disable(a) => commands::codes::disable(&ctx, a).await,
        Command::RemoveDevice(a) => commands::codes::remove_device(&ctx, a).await,
        Command::BackupCodes(a) => commands::codes::backup_codes(&ctx, a).await,
        Command::Unlock(a) => commands::admin::unlock(&ctx, a).await,
        Command::Reset(a) => commands::admin::reset(&ctx, a).await,
        Command::List => commands::admin::list(&ctx).await,
        Command::Stats => commands::admin::stats(&ctx).await,
        Command::Import(a) => commands::import::import(&ctx, a).await,
        Command::Policy(c) => commands::policy::policy(&ctx, c).await,
        Command::Breakglass(c) => commands::breakglass::breakglass(&ctx, c).await,
        Command::Admin(_) | Command::Doctor(_) => unreachable!("handled in main"),
    }
}
