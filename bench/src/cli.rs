//! The command line: subcommands, their arguments, and the modules and
//! code modes a row can be run with.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "otpgate-bench",
    about = "otpgate vs google-authenticator-libpam vs pam_oath through the real PAM library"
)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Adds or removes the bench's system users in one batch.
    Users {
        #[command(subcommand)]
        op: UsersOp,
    },
    /// Runs the benchmark and prints the table.
    Run(RunArgs),
    /// What one call costs otpgated over its direct socket and over the
    /// bus, apart from the rest of a login (bench/README.md).
    PerCall {
        /// PAM transactions (one call each) per path and round.
        #[arg(long, default_value_t = 1000)]
        calls: usize,
    },
    /// One load-generating process (started by `run`).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// A discarding syslog listener (started by `run` when the host has
    /// none): binds each PATH as a datagram socket, reads and drops what
    /// arrives, and removes what it created when stopped or orphaned.
    #[command(hide = true)]
    LogSink {
        #[arg(long = "path", required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum UsersOp {
    /// Appends COUNT users otpgbn000000… to /etc/passwd and /etc/shadow.
    Add {
        #[arg(long)]
        count: usize,
    },
    /// Removes every otpgbn* user from /etc/passwd and /etc/shadow.
    Remove,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Numbers of enrolled users, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub users: Vec<usize>,
    /// Concurrent worker processes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub workers: Vec<usize>,
    /// Length of one row, in seconds (a valid-code row ends earlier when
    /// every user has used the current time step's code).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Each row is run as this many slices, interleaved with the other
    /// modules' slices (the figures pool all slices).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Modules, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub modules: Vec<Module>,
    /// Threads enrolling users into otpgated.
    #[arg(long, default_value_t = 16)]
    pub enrol_threads: usize,
    /// Numbers of users (of --users) at which the fleet rows run: two
    /// otpgated sharing one private PostgreSQL cluster. Default: none,
    /// unless --modules names otpgate-fleet (then every N).
    #[arg(long, value_delimiter = ',')]
    pub fleet_users: Vec<usize>,
}

impl RunArgs {
    /// Whether the fleet rows run at `n` users.
    pub fn fleet_at(&self, n: usize) -> bool {
        if self.fleet_users.is_empty() {
            self.modules.contains(&Module::OtpgateFleet)
        } else {
            self.fleet_users.contains(&n)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Module {
    /// pam_otpgate over its direct socket to otpgated (the default setup).
    Otpgate,
    /// pam_otpgate with `bus_only`, through dbus-daemon.
    OtpgateBus,
    /// pam_otpgate with `bus_only`, through dbus-broker.
    OtpgateBroker,
    /// Two otpgated sharing one PostgreSQL database (`[storage] backend =
    /// "postgres"`), each reached over its own direct socket.
    OtpgateFleet,
    GoogleAuthenticator,
    PamOath,
    PamPermit,
}

impl Module {
    pub const OTPGATES: [Module; 4] = [
        Module::Otpgate,
        Module::OtpgateBus,
        Module::OtpgateBroker,
        Module::OtpgateFleet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Module::Otpgate => "otpgate (socket)",
            Module::OtpgateBus => "otpgate (dbus-daemon)",
            Module::OtpgateBroker => "otpgate (dbus-broker)",
            Module::OtpgateFleet => "otpgate fleet (socket)",
            Module::GoogleAuthenticator => "google-authenticator",
            Module::PamOath => "pam_oath",
            Module::PamPermit => "pam_permit",
        }
    }

    /// A name without spaces, for files.
    pub fn file_name(self) -> &'static str {
        match self {
            Module::Otpgate => "otpgate",
            Module::OtpgateBus => "otpgate-bus",
            Module::OtpgateBroker => "otpgate-broker",
            Module::OtpgateFleet => "otpgate-fleet",
            Module::GoogleAuthenticator => "google-authenticator",
            Module::PamOath => "pam_oath",
            Module::PamPermit => "pam_permit",
        }
    }

    pub fn is_otpgate(self) -> bool {
        Module::OTPGATES.contains(&self)
    }

    /// The PAM service of daemon `d` of the fleet (0 or 1).
    pub fn fleet_service(d: usize) -> String {
        format!("{}-{}", Module::OtpgateFleet.service(), d % 2)
    }

    pub fn service(self) -> &'static str {
        match self {
            Module::Otpgate => "bench-otpgate",
            Module::OtpgateBus => "bench-otpgate-bus",
            Module::OtpgateBroker => "bench-otpgate-broker",
            // The prefix: one service per daemon of the fleet.
            Module::OtpgateFleet => "bench-otpgate-fleet",
            Module::GoogleAuthenticator => "bench-ga",
            Module::PamOath => "bench-oath",
            Module::PamPermit => "bench-permit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Each user's code for the current time step, once per step.
    Valid,
    /// A wrong code, spread over the users.
    Wrong,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Valid => "valid",
            Mode::Wrong => "wrong",
        }
    }
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub confdir: PathBuf,
    #[arg(long, value_enum)]
    pub module: Module,
    #[arg(long, value_enum)]
    pub mode: Mode,
    #[arg(long)]
    pub secrets: PathBuf,
    #[arg(long)]
    pub state: PathBuf,
    #[arg(long)]
    pub index: usize,
    #[arg(long)]
    pub workers: usize,
    #[arg(long)]
    pub seconds: f64,
    #[arg(long)]
    pub out: PathBuf,
}
