//! The command line, as clap definitions. The shell completions and man
//! pages in `packaging/` are generated from these same definitions
//! (`otpgate-gen-docs`), so help text written here is what packagers ship.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

const MAIN_EXAMPLES: &str = "\
Examples:
  otpgate enroll                      set up your own second factor
  otpgate status                      show your enrolment
  otpgate enroll --user alice --qr-svg alice.svg
                                      (administrator) start alice's enrolment
  otpgate list                        (administrator) every user and their state

Exit status: 0 success, 1 failure (one line on stderr), 2 usage error.";

#[derive(Parser, Debug)]
#[command(
    name = "otpgate",
    version,
    about = "Manage otpgate second-factor enrolment (TOTP codes, backup codes)",
    long_about = "Manage otpgate second-factor enrolment (TOTP codes, backup codes).\n\n\
        otpgate talks to the otpgated daemon on the system bus. Every user can \
        enrol, inspect and manage their own second factor; root and members of \
        otpgate's admin group (`otpgate-admin` unless configured otherwise) can \
        manage every user and use the administrator commands.",
    after_help = MAIN_EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// System bus address [default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/run/dbus/system_bus_socket]
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub bus: Option<String>,

    /// Print one JSON object on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start enrolment: show a QR code and the secret, then confirm with a code
    #[command(
        long_about = "Start enrolment of a second factor.\n\n\
            On a terminal this shows a QR code of the otpauth:// URI (scan it with an \
            authenticator app), the secret in groups of four for manual entry and the \
            URI, then asks for the code the app shows and prints the backup codes once. \
            Press Enter at the prompt to finish later with `otpgate confirm CODE`.\n\n\
            Without a terminal, or with --json, it prints {\"uri\": ..., \"secret\": ...} \
            and stops; `otpgate confirm CODE` finishes the enrolment.",
        after_help = "Examples:\n  \
            otpgate enroll\n  \
            otpgate enroll --user alice --qr-svg alice.svg    (administrator onboarding alice)\n  \
            otpgate enroll --name spare                       (a second device)\n  \
            otpgate enroll --method email --email me@example.org --name mail\n  \
            otpgate enroll --json | jq -r .uri"
    )]
    Enroll(EnrollArgs),

    /// Confirm a pending enrolment with a code from the app; prints the backup codes once
    #[command(after_help = "Examples:\n  \
        otpgate confirm 123456\n  \
        otpgate confirm --user alice 123456\n  \
        read -r code; printf '%s\\n' \"$code\" | otpgate confirm -")]
    Confirm(ConfirmArgs),

    /// Show enrolment state: enrolled, pending, method, backup codes left, lock
    #[command(after_help = "Examples:\n  \
        otpgate status\n  \
        otpgate status --user alice --json")]
    Status(StatusArgs),

    /// Show the last events of a second factor: logins, wrong codes, locks, backup codes used
    #[command(after_help = "Examples:\n  \
        otpgate history\n  \
        otpgate history --user alice --json     (administrator)")]
    History(StatusArgs),

    /// Remove the second factor (a user needs a current code, and the password where the daemon says so; an administrator neither)
    #[command(after_help = "Examples:\n  \
        otpgate disable                      (asks for a current code, and the password if needed)\n  \
        otpgate disable --code 123456\n  \
        printf '%s\\n' \"$PW\" | otpgate disable --code 123456 --password-stdin\n  \
        otpgate disable --user alice         (administrator)")]
    Disable(CodeArgs),

    /// Remove one device (a user needs a current code from any device or a backup code, an administrator none)
    #[command(
        long_about = "Remove one of USER's devices, by the name `otpgate status` lists.\n\n\
            A user gives a current code from any of their devices (the one being removed \
            included) or a backup code, checked and counted like a login; an administrator \
            needs none. A user may not remove their last device while a [[policy]] rule \
            that names them (by user or group) requires a second factor.",
        after_help = "Examples:\n  \
        otpgate remove-device spare                (asks for a current code)\n  \
        otpgate remove-device spare --code 123456\n  \
        otpgate remove-device phone --user alice   (administrator)"
    )]
    RemoveDevice(RemoveDeviceArgs),

    /// Replace all backup codes with new ones, printed once
    #[command(after_help = "Examples:\n  \
        otpgate backup-codes                 (asks for a current code, and the password if needed)\n  \
        otpgate backup-codes --code 123456 --json\n  \
        otpgate backup-codes --user alice    (administrator)")]
    BackupCodes(CodeArgs),

    /// Administrator: clear USER's lock and failure count
    #[command(after_help = "Example:\n  otpgate unlock alice")]
    Unlock(TargetArgs),

    /// Administrator: remove USER's enrolment (they can log in without a second factor only with `nullok`)
    #[command(after_help = "Example:\n  otpgate reset alice")]
    Reset(TargetArgs),

    /// Administrator: every enrolled user with their state
    #[command(after_help = "Examples:\n  \
        otpgate list\n  \
        otpgate list --json | jq -r '.users[] | select(.locked) | .user'")]
    List,

    /// Administrator: logins, failures, lockouts, backup codes used, enrolments, disables and resets over the last 30 days
    #[command(after_help = "Examples:\n  \
        otpgate stats\n  \
        otpgate stats --json")]
    Stats,

    /// Administrator: take over a ~/.google_authenticator file (secret and scratch codes)
    #[command(
        long_about = "Administrator: take over a google-authenticator-libpam file.\n\n\
            The TOTP secret and the scratch codes (as backup codes) of USER's \
            ~/.google_authenticator file become USER's otpgate enrolment, so USER keeps \
            the same authenticator app. HOTP (counter-based) files and damaged files are \
            refused with the reason. The secret is never printed.",
        after_help = "Example:\n  \
            otpgate import --user alice --google-authenticator ~alice/.google_authenticator"
    )]
    Import(ImportArgs),

    /// Administrator: can a login succeed without the code? Checks PAM stacks, sshd and sudo
    #[command(
        long_about = "Administrator (root): can a login succeed without otpgate's code?\n\n\
            Reads the PAM stacks of the services people log in through (sshd, sudo, su, \
            login, display managers and screen lockers found in /etc/pam.d; or those given \
            with --service), following @include, include, substack and [value=action] \
            jumps, and walks every result of every module as libpam does. Also reads \
            sshd_config and sudoers, checks the module file and the bus policy, has the \
            installed otpgated check /etc/otpgate/otpgate.toml (--check-config), and, for \
            the root /, whether otpgated is running, whether root, where the policy \
            requires a second factor, has break-glass codes left, and which accounts in /etc/passwd \
            the policy requires a second factor of where they have none (refused there, \
            or let in with the password alone by nullok). Each way around the code \
            is printed with the file and line and the exact fix. Nothing is changed. With --root it \
            reads a copy of a system and does not use the bus.",
        after_help = "Examples:\n  \
            otpgate doctor\n  \
            otpgate doctor --service sshd --service sudo\n  \
            otpgate doctor --root /srv/images/web1 --json | jq '.findings[] | select(.severity == \"bypass\")'\n\n\
            Exit status: 0 every service enforces the code, 1 some way around it (a finding of \
            severity bypass), 2 error (not root, unreadable root)."
    )]
    Doctor(DoctorArgs),

    /// Administrator: which [[policy]] rule applies to a login, and why
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            otpgate policy explain alice sshd --rhost 10.1.2.3\n  \
            otpgate policy explain root login --json"
    )]
    Policy(PolicyCommand),

    /// Root: one-time codes for a lost device, accepted only on a local console
    #[command(
        subcommand,
        long_about = "Root: break-glass codes, for when root's device is lost.\n\n\
            Break-glass codes are one-time codes that otpgated accepts only on a local \
            console (a virtual or a serial console), never over ssh or from another host. \
            Each use is logged at alert level and noted at every later login until it is \
            acknowledged with `otpgate breakglass ack`. Only root may make or acknowledge \
            them.",
        after_help = "Examples:\n  \
            otpgate breakglass generate        (print them once; keep them offline, in a safe)\n  \
            otpgate breakglass ack             (after checking every use in the log)"
    )]
    Breakglass(BreakglassCommand),

    /// Administrator: operations on this host's otpgated itself
    #[command(
        subcommand,
        after_help = "Example:\n  otpgate admin migrate-store --to postgres"
    )]
    Admin(AdminCommand),
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Move this host's users into the fleet database ([storage] backend = "postgres")
    #[command(
        long_about = "Move this host's users into the fleet database.\n\n\
            Copies every record of the local state directory ([storage] path) into the \
            PostgreSQL database of [storage] url, with their locks, replay marks and \
            used backup codes. A record the fleet already holds in a newer state is never \
            overwritten: it is named and the exit status is 1. otpgated must be stopped \
            (it holds the state directory), and the config must already say \
            backend = \"postgres\" with the fleet's url and key_file; start otpgated \
            afterwards. The local directory is left as it was.",
        after_help = "Example:\n  \
            systemctl stop otpgated && otpgate admin migrate-store --to postgres && systemctl start otpgated\n\n\
            Exit status: 0 every record moved, 1 some kept back or unreadable (named), 2 error."
    )]
    MigrateStore(MigrateStoreArgs),

    /// Replace the master key: every TOTP secret re-sealed under a new key (backup codes are dropped)
    #[command(
        long_about = "Replace the master key.\n\n\
            Makes a new key (KEY_FILE.new), re-seals every user's TOTP secret under it (users \
            keep their authenticator apps), then puts it in place of key_file. Backup codes and \
            mailed codes exist only as hashes keyed with the old key, so they cannot be carried \
            over: they are dropped, each user is named, and needs new ones (`otpgate \
            backup-codes`). otpgated must be stopped; in a fleet, on every host, and the new \
            key file copied to every host before they start again. A rotation cut short is \
            finished by running it again.",
        after_help = "Example:\n  \
            systemctl stop otpgated && otpgate admin rotate-key && systemctl start otpgated\n\n\
            Exit status: 0 every record re-sealed, 1 some left as they were (named), 2 error."
    )]
    RotateKey(ConfigArgs),
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Which [[policy]] rule applies to USER logging in through SERVICE, and why
    #[command(
        long_about = "Which [[policy]] rule applies to USER logging in through the PAM \
            service SERVICE, and why.\n\n\
            otpgated evaluates its [[policy]] rules in order, as it would for a real login, \
            and says which rule decides (with the configuration file's line), the mode \
            (require, optional or skip), whether USER is enrolled, what the login would get \
            now, and why each rule before it does not match. Nothing is changed and no code \
            is asked. The PAM line's own options (nullok) still apply on top.",
        after_help = "Examples:\n  \
            otpgate policy explain alice sshd --rhost 10.1.2.3\n  \
            otpgate policy explain root login\n  \
            otpgate policy explain bob sudo --json | jq -r .mode\n\n\
            Exit status: 0 explained, 1 failure (one line on stderr), 2 usage error."
    )]
    Explain(ExplainArgs),
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The user who logs in
    #[arg(value_name = "USER", value_parser = parse_user)]
    pub user: String,

    /// The PAM service the login goes through (sshd, sudo, login, ...)
    #[arg(value_name = "SERVICE", value_parser = parse_service)]
    pub service: String,

    /// The remote host the login comes from (an address or a name) [default: a local login]
    #[arg(long, value_name = "HOST", value_parser = parse_host)]
    pub rhost: Option<String>,
}

/// What PAM_RHOST can hold: one word, nothing that could forge a line.
fn parse_host(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!("`{s}` is not a host name or address"))
    } else {
        Ok(s.to_owned())
    }
}

#[derive(Subcommand, Debug)]
pub enum BreakglassCommand {
    /// Replace the break-glass codes and print the new ones once
    #[command(
        long_about = "Replace USER's break-glass codes (root's unless --user says otherwise) \
            and print the new ones, once. The old codes stop working. Only root may run it.\n\n\
            Store the codes offline, in a safe: they are for when root's device is lost. \
            otpgated accepts them only on a local console (a virtual or a serial console), \
            never over ssh; each use is logged at alert level and noted at every later \
            login until `otpgate breakglass ack`.",
        after_help = "Examples:\n  \
            otpgate breakglass generate\n  \
            otpgate breakglass generate --user alice --json"
    )]
    Generate(BreakglassArgs),

    /// Acknowledge the break-glass codes used so far (stops the notice at every login)
    #[command(
        long_about = "Acknowledge USER's used break-glass codes (root's unless --user says \
            otherwise): otpgated stops noting them at every login. Check first, in the log \
            (`journalctl -p alert`), that every use was someone entitled to it. Only root \
            may run it.",
        after_help = "Examples:\n  \
            otpgate breakglass ack\n  \
            otpgate breakglass ack --user alice --json"
    )]
    Ack(BreakglassArgs),
}

#[derive(Args, Debug)]
pub struct BreakglassArgs {
    /// Whose break-glass codes [default: root]
    #[arg(long, value_name = "USER", value_parser = parse_user, default_value = "root")]
    pub user: String,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Check the system under DIR instead of this one (DIR/etc/pam.d, ...); no bus is used
    #[arg(long, value_name = "DIR", default_value = "/", value_hint = clap::ValueHint::DirPath)]
    pub root: PathBuf,

    /// Check this PAM service (repeatable) [default: the login services found in /etc/pam.d]
    #[arg(long = "service", value_name = "NAME", value_parser = parse_service)]
    pub service: Vec<String>,
}

/// A file name in /etc/pam.d, nothing that walks out of it.
fn parse_service(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('/') || s.starts_with('.') {
        Err(format!("`{s}` is not a PAM service name"))
    } else {
        Ok(s.to_owned())
    }
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// otpgated's configuration file
    #[arg(long, value_name = "FILE", default_value = "/etc/otpgate/otpgate.toml", value_hint = clap::ValueHint::FilePath)]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct MigrateStoreArgs {
    /// The engine to move to
    #[arg(long, value_name = "BACKEND", value_parser = ["postgres"])]
    pub to: String,

    /// otpgated's configuration file
    #[arg(long, value_name = "FILE", default_value = "/etc/otpgate/otpgate.toml", value_hint = clap::ValueHint::FilePath)]
    pub config: PathBuf,
}

/// The factor to enrol.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodArg {
    /// Codes from an authenticator app (RFC 6238)
    Totp,
    /// Codes sent by e-mail (needs [email] configured in otpgated)
    Email,
}

impl MethodArg {
    pub fn wire(self) -> otpgate_proto::Method {
        match self {
            MethodArg::Totp => otpgate_proto::Method::Totp,
            MethodArg::Email => otpgate_proto::Method::Email,
        }
    }
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// User to enrol [default: you]
    #[arg(long, value_name = "USER", value_parser = parse_user)]
    pub user: Option<String>,

    /// Second factor to enrol
    #[arg(long, value_enum, default_value_t = MethodArg::Totp)]
    pub method: MethodArg,

    /// E-mail address for --method email
    #[arg(long, value_name = "ADDR")]
    pub email: Option<String>,

    /// Name of the device (1-32 of a-z 0-9 . _ -); needed to add a device when already enrolled
    #[arg(long, value_name = "NAME", value_parser = parse_device)]
    pub name: Option<String>,

    /// Also write the QR code as an SVG image to FILE (created 0600: it holds the secret)
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub qr_svg: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ConfirmArgs {
    /// User whose enrolment to confirm [default: you]
    #[arg(long, value_name = "USER", value_parser = parse_user)]
    pub user: Option<String>,

    /// The code the authenticator app shows now (`-` reads it from stdin)
    #[arg(value_name = "CODE")]
    pub code: String,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// User to show [default: you]
    #[arg(long, value_name = "USER", value_parser = parse_user)]
    pub user: Option<String>,
}

#[derive(Args, Debug)]
pub struct CodeArgs {
    /// User to act on [default: you]
    #[arg(long, value_name = "USER", value_parser = parse_user)]
    pub user: Option<String>,

    /// A current code or a backup code (`-` reads it from stdin); asked for on a terminal when needed
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,

    /// Read the account's password from stdin (the line after the code with `--code -`) and always send it; without this it is asked for, without echo on the terminal, when otpgated needs it ([self_service] reauth = "password+code")
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct RemoveDeviceArgs {
    /// The device's name, as `otpgate status` lists it
    #[arg(value_name = "NAME", value_parser = parse_device)]
    pub name: String,

    #[command(flatten)]
    pub code: CodeArgs,
}

/// 1 to 32 of a-z, 0-9, '.', '_' and '-' (the daemon checks the same).
fn parse_device(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a device name: 1 to 32 of a-z, 0-9, '.', '_' and '-'"
        ))
    }
}

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// The user to act on
    #[arg(value_name = "USER", value_parser = parse_user)]
    pub user: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The user whose file it is
    #[arg(long, value_name = "USER", value_parser = parse_user)]
    pub user: String,

    /// Path of the user's ~/.google_authenticator file
    #[arg(
        long = "google-authenticator",
        value_name = "FILE",
        value_hint = clap::ValueHint::FilePath
    )]
    pub google_authenticator: PathBuf,
}

/// Refuses names the daemon would refuse anyway, as a usage error (exit 2)
/// rather than a round trip to the daemon.
fn parse_user(s: &str) -> Result<String, String> {
    if otpgate_proto::valid_user_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a valid user name"))
    }
}

/// The clap command, for the docs generator and for usage errors found after
/// parsing.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example() {
        for sub in command().get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("otpgate "),
                "`otpgate {}` has no example in its --help",
                sub.get_name()
            );
        }
    }

    #[test]
    fn user_names_are_checked_at_parse_time() {
        let err = Cli::try_parse_from(["otpgate", "status", "--user", "../etc"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let ok = Cli::try_parse_from(["otpgate", "status", "--user", "alice", "--json"]).unwrap();
        assert!(ok.json);
    }

    #[test]
    fn json_is_accepted_before_and_after_the_command() {
        assert!(
            Cli::try_parse_from(["otpgate", "--json", "list"])
                .unwrap()
                .json
        );
        assert!(
            Cli::try_parse_from(["otpgate", "stats", "--json"])
                .unwrap()
                .json
        );
    }

    #[test]
    fn policy_explain_takes_a_user_a_service_and_a_host() {
        let cli = Cli::try_parse_from([
            "otpgate", "policy", "explain", "alice", "sshd", "--rhost", "10.1.2.3", "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Policy(PolicyCommand::Explain(a)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!((a.user.as_str(), a.service.as_str()), ("alice", "sshd"));
        assert_eq!(a.rhost.as_deref(), Some("10.1.2.3"));
        let local = Cli::try_parse_from(["otpgate", "policy", "explain", "bob", "sudo"]).unwrap();
        let Command::Policy(PolicyCommand::Explain(a)) = local.command else {
            panic!()
        };
        assert_eq!(a.rhost, None);
        for bad in [
            vec!["otpgate", "policy", "explain", "alice"],
            vec!["otpgate", "policy", "explain", "../x", "sshd"],
            vec!["otpgate", "policy", "explain", "alice", "../sshd"],
            vec![
                "otpgate", "policy", "explain", "alice", "sshd", "--rhost", "a\nb",
            ],
            vec![
                "otpgate", "policy", "explain", "alice", "sshd", "--rhost", "",
            ],
            vec!["otpgate", "policy"],
        ] {
            let err = Cli::try_parse_from(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn breakglass_is_about_root_unless_told() {
        let cli = Cli::try_parse_from(["otpgate", "breakglass", "generate"]).unwrap();
        let Command::Breakglass(BreakglassCommand::Generate(a)) = cli.command else {
            panic!()
        };
        assert_eq!(a.user, "root");
        let cli =
            Cli::try_parse_from(["otpgate", "breakglass", "ack", "--user", "alice", "--json"])
                .unwrap();
        assert!(cli.json);
        let Command::Breakglass(BreakglassCommand::Ack(a)) = cli.command else {
            panic!()
        };
        assert_eq!(a.user, "alice");
        for bad in [
            vec!["otpgate", "breakglass"],
            vec!["otpgate", "breakglass", "use"],
            vec!["otpgate", "breakglass", "ack", "--user", "../etc"],
        ] {
            assert_eq!(Cli::try_parse_from(&bad).unwrap_err().exit_code(), 2);
        }
    }
}
