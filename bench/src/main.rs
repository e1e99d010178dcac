//! `otpgate-bench`: otpgate against google-authenticator-libpam and
//! pam_oath, side by side, through the real PAM library.
//!
//! ```text
//! otpgate-bench users add --count N      # N system users otpgbn000000…, one batch
//! otpgate-bench users remove             # every otpgbn* user, one batch
//! otpgate-bench run --users 1000,10000,100000 [--seconds 10] [--workers 1,4]
//! otpgate-bench per-call [--calls 1000]  # otpgated's CPU per call: socket vs bus
//! ```
//!
//! `run`, for each N: starts a private dbus-daemon with the real policy and
//! the real release `otpgated` on its own state directory (backup codes
//! off, lockout at 100), enrols the first N bench users through D-Bus
//! (Enroll + Confirm), gives google-authenticator one secret file per user
//! and pam_oath one usersfile with the same secrets, writes a private PAM
//! confdir, and then drives each module with W worker processes (this
//! binary's hidden `worker` command), each running pam_start_confdir /
//! pam_authenticate / pam_end per attempt with codes it computes itself.
//! It prints one table and whether each performance target holds
//! (bench/README.md lists them).

mod broker;
mod cli;
mod fleet;
mod logsink;
mod measure;
mod percall;
mod report;
mod setup;
mod worker;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Args, Cmd, Module, RunArgs};
use crate::measure::{load_avg, measure, overhead_on_tmpfs, Extra, Row};
use crate::report::{print_overhead, print_table, print_targets};
use crate::setup::{security_dir, setup, users, Setup};
use crate::worker::worker;
use otpgate_bench::procfs::rss_kib;

fn main() {
    let args = Args::parse();
    let r = match args.cmd {
        Cmd::Users { op } => users(op),
        Cmd::Run(a) => run(a),
        Cmd::Worker(a) => worker(a),
        Cmd::LogSink { paths } => logsink::sink(paths),
        Cmd::PerCall { calls } => percall::per_call(calls),
    };
    if let Err(e) = r {
        eprintln!("otpgate-bench: {e}");
        std::process::exit(1);
    }
}

fn run(a: RunArgs) -> Result<(), String> {
    let mut modules: Vec<Module> = if a.modules.is_empty() {
        vec![
            Module::Otpgate,
            Module::OtpgateBus,
            Module::OtpgateBroker,
            Module::GoogleAuthenticator,
            Module::PamOath,
            Module::PamPermit,
        ]
    } else {
        a.modules.clone()
    };
    if a.users.iter().any(|&n| a.fleet_at(n)) && !modules.contains(&Module::OtpgateFleet) {
        modules.push(Module::OtpgateFleet);
    }
    let sec = security_dir();
    for (m, so) in [
        (Module::GoogleAuthenticator, "pam_google_authenticator.so"),
        (Module::PamOath, "pam_oath.so"),
    ] {
        if modules.contains(&m) && !sec.join(so).exists() {
            return Err(format!(
                "{} is missing: install it (bench/run.sh does)",
                sec.join(so).display()
            ));
        }
    }
    logsink::record(&format!("pid {}", std::process::id()));
    // Log sockets first: otpgated connects to syslog when it starts.
    let mut log_paths = vec![Path::new(logsink::DEV_LOG)];
    if modules.contains(&Module::OtpgateBroker) {
        log_paths.push(Path::new(logsink::JOURNAL_SOCKET));
    }
    let log_sockets = logsink::LogSockets::ensure(&log_paths)?;
    let started = Instant::now();
    println!(
        "otpgate-bench: {} cores, load average {} at start, rows of {} s, users {:?}, workers {:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_avg(),
        a.seconds,
        a.users,
        a.workers
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut extra: Vec<(usize, Extra)> = Vec::new();
    let shm_users = a.users.iter().copied().min().unwrap_or(0).min(100);
    let on_tmpfs = if modules.iter().any(|m| m.is_otpgate()) && shm_users > 0 {
        println!("\n== The module's own cost, with otpgated's state on tmpfs ({shm_users} users, no disk flush)");
        Some(overhead_on_tmpfs(shm_users, a.seconds.clamp(3, 10))?)
    } else {
        None
    };
    // Every N is set up first and the rows then run interleaved across N
    // as well as across modules: "flat from 1,000 to 100,000 users" is a
    // comparison between N, and the disk drifts more in a quarter of an
    // hour than the number of users could move anything.
    let mut setups = Vec::new();
    for &n in &a.users {
        let t_n = Instant::now();
        println!(
            "\n== Setting up N = {n} users (load average {})",
            load_avg()
        );
        setups.push(setup(n, &modules, &sec, a.enrol_threads, a.fleet_at(n))?);
        println!("N = {n}: set up in {:.0} s", t_n.elapsed().as_secs_f64());
    }
    let env = environment(&setups, &modules, &log_sockets);
    println!("\n== Environment");
    for l in &env {
        println!("  {l}");
    }
    println!("\n== Rows (load average {})", load_avg());
    let (r, directs) = measure(&setups, &modules, &a)?;
    rows.extend(r);
    let mut trips = Vec::new();
    for s in setups
        .iter()
        .filter(|s| s.instance(Module::OtpgateFleet).is_some())
    {
        println!(
            "\n== The fleet's database round trips, N = {} (strace on both otpgated: counts only, no timings)",
            s.users
        );
        trips.extend(fleet::round_trips(s, a.seconds.clamp(3, 5) as f64)?);
    }
    std::thread::sleep(Duration::from_secs(2));
    for (s, d) in setups.iter().zip(directs) {
        // Memory of the default instance (the one the socket rows used).
        let pid = [Module::Otpgate, Module::OtpgateBus, Module::OtpgateBroker]
            .iter()
            .find_map(|&m| s.instance(m))
            .map_or(0, |i| i.daemon.pid);
        let (rss_idle, hwm) = rss_kib(pid);
        let e = Extra {
            rss_after_enrol_kib: s.rss_after_enrol_kib,
            rss_idle_after_load_kib: rss_idle,
            rss_peak_kib: hwm,
            direct: d,
        };
        println!(
            "N = {}: otpgated VmRSS {} KiB after enrolment, {} KiB idle after the load, peak (VmHWM) {} KiB",
            s.users, e.rss_after_enrol_kib, e.rss_idle_after_load_kib, e.rss_peak_kib,
        );
        extra.push((s.users, e));
    }
    drop(setups);
    println!(
        "\n== Results ({:.0} s in all; load average {} at the end)\n",
        started.elapsed().as_secs_f64(),
        load_avg()
    );
    println!("Environment (the same for every module unless said):");
    for l in &env {
        println!("- {l}");
    }
    println!();
    print_table(&rows);
    print_overhead(&extra, on_tmpfs.as_ref());
    print_targets(&rows, &extra, on_tmpfs.as_ref(), &a);
    if !trips.is_empty() {
        println!("\nThe fleet's database round trips per login (strace -f -yy on both otpgated: a round trip is a turn on one connection to the database's port, its sends up to the next receive with data; pg_stat_statements for the statements the server ran; PAM_RHOST unset, so no per-source check):");
        for t in &trips {
            println!("- {}", t.line());
        }
    }
    Ok(())
}

/// What every module ran with, and where they differ: printed above the
/// table, so that a reader sees what the comparison was.
fn environment(setups: &[Setup], modules: &[Module], logs: &logsink::LogSockets) -> Vec<String> {
    let mut env = Vec::new();
    for l in &logs.lines {
        env.push(format!("syslog: {l}"));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let lines = passwd.lines().count();
    let first = passwd
        .lines()
        .position(|l| l.starts_with(setup::PREFIX))
        .map_or(0, |p| p + 1);
    env.push(format!(
        "/etc/passwd: {lines} lines (NSS \"passwd: {}\"); bench user i is line {first} + i. otpgated (getpwnam + getpwuid per call, two calls per login) and google-authenticator (getpwnam + getpwuid per login: its secret file is the user's own, no `user=root`) look each user up; pam_oath and pam_permit do not",
        nsswitch_passwd()
    ));
    for s in setups {
        let mut fss = vec![format!("bench files {}", broker::fs_of(&s.private))];
        for i in &s.instances {
            let state = match &i.fleet {
                Some(f) => format!(
                    "state in PostgreSQL, its data directory {}",
                    broker::fs_of(f.pg.socket_dir())
                ),
                None => format!(
                    "state {}",
                    broker::fs_of(&setup::Otpgated::state_dir(&i.daemon.dir))
                ),
            };
            fss.push(format!(
                "{} {state}, bus socket {}",
                i.module.name(),
                broker::fs_of(i.bus.dir())
            ));
            if let Some(p) = &i.pam_socket {
                fss.push(format!("its direct socket {}", p.display()));
            }
        }
        if modules.contains(&Module::GoogleAuthenticator) {
            fss.push(format!(
                "google-authenticator files {}",
                broker::fs_of(&s.ga_dir())
            ));
        }
        if modules.contains(&Module::PamOath) {
            fss.push(format!("pam_oath usersfile {}", broker::fs_of(&s.private)));
        }
        env.push(format!("N = {}: {}", s.users, fss.join("; ")));
        if let Some(f) = s
            .instance(Module::OtpgateFleet)
            .and_then(|i| i.fleet.as_ref())
        {
            env.push(format!(
                "N = {}: otpgate fleet (socket): two otpgated, each with its own private dbus-daemon, direct socket and state directory, one key file, `[storage] backend = \"postgres\"` (pool_size 8, timeout_ms 2000) over loopback TCP without TLS to one private PostgreSQL {} cluster (127.0.0.1:{}, fsync on, synchronous_commit on, shared_buffers 16MB, pg_stat_statements loaded; data {}); users enrolled through the first daemon in {:.1} s, the second lists {}; with an even number of workers half of them log in through each daemon, with one worker it alternates login by login",
                s.users,
                pg_version(),
                f.pg.port(),
                broker::fs_of(f.pg.socket_dir()),
                f.enrol_secs,
                f.listed_by_second,
            ));
        }
        for (m, why) in &s.skipped {
            env.push(format!("N = {}: {} not measured: {why}", s.users, m.name()));
        }
    }
    env
}

/// The PostgreSQL the fleet rows ran on (the newest installed).
fn pg_version() -> String {
    let out = Command::new(otpgate_tests::pg::pg_bin_dir().join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        .and_then(|s| s.split_whitespace().nth(2).map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn nsswitch_passwd() -> String {
    std::fs::read_to_string("/etc/nsswitch.conf")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("passwd:")
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "?".into())
}
