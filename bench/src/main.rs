//! `otpgate-bench`: otpgate against google-authenticator-libpam and
//! pam_oath, side by side, through the real PAM library.
//!
//! ```text
//! otpgate-bench users add --count N      # N system users otpgbn000000…, one batch
//! otpgate-bench users remove             # every otpgbn* user, one batch
//! otpgate-bench run --users 1000,10000,100000 [--seconds 10] [--workers 1,4]
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

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use otpgate_bench::{
    code_at_step, now, pam, secret_hex, stats, totp, user_name, userdb, write_private, wrong_code,
    State, PERIOD,
};
use otpgate_tests::{Bus, Daemon, TestDir};

/// Bench users are `PREFIX` + six digits; no test suite uses this prefix.
const PREFIX: &str = "otpgbn";
/// Above any uid `useradd` hands out (UID_MAX 60000), so the bench users
/// never change which uid the next `useradd` picks.
const UID_BASE: u32 = 400_000;
/// nogroup: the bench users need no group of their own.
const GID: u32 = 65_534;

/// otpgated's config on top of the harness's `[storage]`: no backup codes
/// (10 argon2 hashes per enrolment would make 100,000 enrolments take
/// hours), and the lockout as high as the config allows.
const DAEMON_TOML: &str = "[backup_codes]\ncount = 0\n\n[lockout]\nmax_failures = 100\n";

#[derive(Parser)]
#[command(
    name = "otpgate-bench",
    about = "otpgate vs google-authenticator-libpam vs pam_oath through the real PAM library"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Adds or removes the bench's system users in one batch.
    Users {
        #[command(subcommand)]
        op: UsersOp,
    },
    /// Runs the benchmark and prints the table.
    Run(RunArgs),
    /// One load-generating process (started by `run`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Subcommand)]
enum UsersOp {
    /// Appends COUNT users otpgbn000000… to /etc/passwd and /etc/shadow.
    Add {
        #[arg(long)]
        count: usize,
    },
    /// Removes every otpgbn* user from /etc/passwd and /etc/shadow.
    Remove,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Numbers of enrolled users, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    users: Vec<usize>,
    /// Concurrent worker processes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    workers: Vec<usize>,
    /// Length of one row, in seconds (a valid-code row ends earlier when
    /// every user has used the current time step's code).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Each row is run as this many slices, interleaved with the other
    /// modules' slices (the figures pool all slices).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Modules, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    modules: Vec<Module>,
    /// Threads enrolling users into otpgated.
    #[arg(long, default_value_t = 16)]
    enrol_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Module {
    Otpgate,
    GoogleAuthenticator,
    PamOath,
    PamPermit,
}

impl Module {
    fn name(self) -> &'static str {
        match self {
            Module::Otpgate => "otpgate",
            Module::GoogleAuthenticator => "google-authenticator",
            Module::PamOath => "pam_oath",
            Module::PamPermit => "pam_permit",
        }
    }

    fn service(self) -> &'static str {
        match self {
            Module::Otpgate => "bench-otpgate",
            Module::GoogleAuthenticator => "bench-ga",
            Module::PamOath => "bench-oath",
            Module::PamPermit => "bench-permit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Each user's code for the current time step, once per step.
    Valid,
    /// A wrong code, spread over the users.
    Wrong,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Valid => "valid",
            Mode::Wrong => "wrong",
        }
    }
}

#[derive(clap::Args)]
struct WorkerArgs {
    #[arg(long)]
    confdir: PathBuf,
    #[arg(long, value_enum)]
    module: Module,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long)]
    secrets: PathBuf,
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    index: usize,
    #[arg(long)]
    workers: usize,
    #[arg(long)]
    seconds: f64,
    #[arg(long)]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    let r = match args.cmd {
        Cmd::Users { op } => users(op),
        Cmd::Run(a) => run(a),
        Cmd::Worker(a) => worker(a),
    };
    if let Err(e) = r {
        eprintln!("otpgate-bench: {e}");
        std::process::exit(1);
    }
}

fn users(op: UsersOp) -> Result<(), String> {
    let etc = Path::new("/etc");
    let t = Instant::now();
    match op {
        UsersOp::Add { count } => {
            userdb::add(etc, PREFIX, count, UID_BASE, GID)?;
            println!(
                "users: added {count} users {PREFIX}* in {:.2} s",
                t.elapsed().as_secs_f64()
            );
        }
        UsersOp::Remove => {
            let n = userdb::remove(etc, PREFIX)?;
            println!(
                "users: removed {n} users {PREFIX}* in {:.2} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

// ---- the worker ------------------------------------------------------------

/// `user base32secret` per line, user i on line i.
fn load_secrets(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(u, s)| (u.to_string(), s.to_string()))
                .ok_or_else(|| format!("{}: bad line", path.display()))
        })
        .collect()
}

fn worker(a: WorkerArgs) -> Result<(), String> {
    let secrets = load_secrets(&a.secrets)?;
    let n = secrets.len();
    let mut state = if a.module == Module::PamPermit {
        State::new(n)
    } else {
        State::load(&a.state)?
    };
    if state.last_step.len() != n {
        return Err("state and secrets disagree on the number of users".into());
    }
    let mine: Vec<usize> = (a.index..n).step_by(a.workers.max(1)).collect();
    if mine.is_empty() {
        return Err("no users for this worker".into());
    }
    let confdir = pam::cstring(&a.confdir.display().to_string());
    let service = pam::cstring(a.module.service());
    let users: Vec<CString> = secrets.iter().map(|(u, _)| pam::cstring(u)).collect();

    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .map_err(|e| e.to_string())?;
    if go.trim() != "go" {
        return Err("no go from the orchestrator".into());
    }

    let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 16);
    let mut results: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok = 0u64;
    let mut no_prompt = 0u64;
    let mut exhausted = false;
    let mut touched: Vec<usize> = Vec::new();
    let mut cursor = 0usize;
    let cpu0 = self_cpu_us();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    while Instant::now() < end {
        let step = now() / PERIOD;
        let mut picked = None;
        for k in 0..mine.len() {
            let i = mine[(cursor + k) % mine.len()];
            let free = match (a.module, a.mode) {
                (Module::PamPermit, _) => true,
                (_, Mode::Valid) => state.valid_available(i, step),
                // Only otpgate has a lockout to stay clear of.
                (Module::Otpgate, Mode::Wrong) => state.wrong_available(i),
                (_, Mode::Wrong) => true,
            };
            if free {
                picked = Some(i);
                cursor = (cursor + k + 1) % mine.len();
                break;
            }
        }
        let Some(i) = picked else {
            exhausted = true;
            break;
        };
        let code = if a.module == Module::PamPermit {
            "000000".to_string()
        } else {
            let t = totp(&secrets[i].1)?;
            match a.mode {
                Mode::Valid => code_at_step(&t, step),
                Mode::Wrong => wrong_code(&t, step),
            }
        };
        let code = pam::cstring(&code);
        let t0 = Instant::now();
        let o = pam::authenticate(&confdir, &service, &users[i], &code)?;
        lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        let expected = match (a.module, a.mode) {
            (Module::PamPermit, _) | (_, Mode::Valid) => pam::PAM_SUCCESS,
            (_, Mode::Wrong) => pam::PAM_AUTH_ERR,
        };
        if o.rc == expected {
            ok += 1;
        }
        if o.prompts == 0 && a.module != Module::PamPermit {
            no_prompt += 1;
        }
        *results.entry(pam::strerror(o.rc)).or_insert(0) += 1;
        match a.mode {
            Mode::Valid => {
                state.last_step[i] = step;
                if o.rc == pam::PAM_SUCCESS {
                    state.wrong[i] = 0;
                }
            }
            Mode::Wrong => state.wrong[i] += 1,
        }
        touched.push(i);
    }
    let active = start.elapsed();
    let cpu = self_cpu_us().saturating_sub(cpu0);
    touched.sort_unstable();
    touched.dedup();
    let updates: Vec<[u64; 3]> = touched
        .iter()
        .map(|&i| [i as u64, state.last_step[i], state.wrong[i] as u64])
        .collect();
    let out = serde_json::json!({
        "attempts": lat_us.len(),
        "ok": ok,
        "no_prompt": no_prompt,
        "exhausted": exhausted,
        "active_us": active.as_micros() as u64,
        "cpu_us": cpu,
        "results": results,
        "lat_us": lat_us,
        "updates": updates,
    });
    fs::write(&a.out, out.to_string()).map_err(|e| format!("{}: {e}", a.out.display()))
}

/// This process's user + system CPU time, µs (the PAM client side: libpam,
/// the module, and for the peers their whole work).
fn self_cpu_us() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as u64 * 1_000_000 + tv.tv_usec() as u64;
        t(u.user_time()) + t(u.system_time())
    })
}

// ---- the orchestrator ------------------------------------------------------

#[derive(Debug, Clone)]
struct Row {
    module: Module,
    users: usize,
    workers: usize,
    /// None for pam_permit (no code is asked).
    mode: Option<Mode>,
    attempts: u64,
    ok: u64,
    rate: f64,
    p50: u32,
    p99: u32,
    exhausted: bool,
    results: BTreeMap<String, u64>,
    /// CPU time per attempt of otpgated and of the dbus-daemon, µs
    /// (otpgate rows only).
    cpu_us: Option<(f64, f64)>,
    /// CPU time per attempt of the worker processes (the PAM client), µs.
    client_cpu_us: f64,
    /// Raw figures, to merge the rounds of one row.
    client_cpu_total_us: u64,
    lat: Vec<u32>,
    active_us: u64,
    cpu_total_us: (u64, u64),
    rounds: usize,
}

impl Row {
    /// Attempts per second that got the expected answer (valid logins per
    /// second in valid mode): pam_oath refuses most valid codes under
    /// concurrency, and its fast refusals are not logins.
    fn ok_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.rate * self.ok as f64 / self.attempts as f64
        }
    }

    /// One row from its interleaved rounds: samples pooled, time added up.
    fn merge(parts: Vec<Row>) -> Row {
        let mut it = parts.into_iter();
        let mut r = it.next().expect("at least one round");
        for p in it {
            r.ok += p.ok;
            r.exhausted |= p.exhausted;
            for (k, v) in p.results {
                *r.results.entry(k).or_insert(0) += v;
            }
            r.lat.extend(p.lat);
            r.active_us += p.active_us;
            r.cpu_total_us.0 += p.cpu_total_us.0;
            r.cpu_total_us.1 += p.cpu_total_us.1;
            r.client_cpu_total_us += p.client_cpu_total_us;
            r.rounds += p.rounds;
        }
        r.finish();
        r
    }

    /// Derived figures from the raw ones.
    fn finish(&mut self) {
        self.attempts = self.lat.len() as u64;
        let sum = stats::summarise(self.lat.clone());
        self.p50 = sum.map_or(0, |s| s.p50_us);
        self.p99 = sum.map_or(0, |s| s.p99_us);
        self.rate = if self.active_us > 0 {
            self.attempts as f64 / (self.active_us as f64 / 1e6)
        } else {
            0.0
        };
        self.client_cpu_us = self.client_cpu_total_us as f64 / self.attempts.max(1) as f64;
        self.cpu_us = (self.module == Module::Otpgate && self.attempts > 0).then(|| {
            (
                self.cpu_total_us.0 as f64 / self.attempts as f64,
                self.cpu_total_us.1 as f64 / self.attempts as f64,
            )
        });
    }

    fn print(&self, label: &str) {
        println!(
            "  {label}{:<21} N={:<6} W={} {:<5} {:>7} attempts  {:>6.1}% ok  {:>8.0}/s  p50 {:>6} µs  p99 {:>6} µs{}  {:?}",
            self.module.name(),
            self.users,
            self.workers,
            self.mode.map_or("-", |m| m.name()),
            self.attempts,
            pct(self.ok, self.attempts),
            self.rate,
            self.p50,
            self.p99,
            if self.exhausted { "  (every user used this step)" } else { "" },
            self.results
        );
        match self.cpu_us {
            Some((d, b)) => println!(
                "  {label}  CPU per attempt: PAM client {:.0} µs, otpgated {d:.0} µs, dbus-daemon {b:.0} µs",
                self.client_cpu_us
            ),
            None => println!(
                "  {label}  CPU per attempt: PAM client {:.0} µs",
                self.client_cpu_us
            ),
        }
    }
}

/// Everything one N needs: bus, daemon, secrets, PAM confdir, states.
struct Setup {
    users: usize,
    bus: Bus,
    daemon: Daemon,
    _dir: TestDir,
    private: PathBuf,
    secrets: Vec<(String, String)>,
    rss_after_enrol_kib: u64,
}

impl Setup {
    fn confdir(&self) -> PathBuf {
        self.private.join("pam.d")
    }
    fn secrets_path(&self) -> PathBuf {
        self.private.join("secrets")
    }
    fn state_path(&self, m: Module) -> PathBuf {
        self.private.join(format!("state-{}", m.name()))
    }
}

fn load_avg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// (VmRSS, VmHWM) in KiB of a process.
fn rss_kib(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of a process, in µs.
fn cpu_time_us(pid: i32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    ticks * 1_000_000 / hz.max(1)
}

fn security_dir() -> PathBuf {
    for d in [
        "/usr/lib/x86_64-linux-gnu/security",
        "/usr/lib/aarch64-linux-gnu/security",
        "/lib/security",
        "/usr/lib/security",
    ] {
        if Path::new(d).join("pam_permit.so").exists() {
            return PathBuf::from(d);
        }
    }
    PathBuf::from("/lib/security")
}

fn run(a: RunArgs) -> Result<(), String> {
    let modules: Vec<Module> = if a.modules.is_empty() {
        vec![
            Module::Otpgate,
            Module::GoogleAuthenticator,
            Module::PamOath,
            Module::PamPermit,
        ]
    } else {
        a.modules.clone()
    };
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
    let on_tmpfs = if modules.contains(&Module::Otpgate) && shm_users > 0 {
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
        setups.push(setup(n, &modules, &sec, a.enrol_threads)?);
        println!("N = {n}: set up in {:.0} s", t_n.elapsed().as_secs_f64());
    }
    println!("\n== Rows (load average {})", load_avg());
    let (r, directs) = measure(&setups, &modules, &a)?;
    rows.extend(r);
    std::thread::sleep(Duration::from_secs(2));
    for (s, d) in setups.iter().zip(directs) {
        let (rss_idle, hwm) = rss_kib(s.daemon.pid);
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
    print_table(&rows);
    print_overhead(&extra, on_tmpfs.as_ref());
    print_targets(&rows, &extra, on_tmpfs.as_ref(), &a);
    Ok(())
}

/// Per-N figures besides the rows.
#[derive(Debug, Clone, Default)]
struct Extra {
    rss_after_enrol_kib: u64,
    rss_idle_after_load_kib: u64,
    rss_peak_kib: u64,
    direct: Direct,
}

fn setup(n: usize, modules: &[Module], sec: &Path, threads: usize) -> Result<Setup, String> {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, DAEMON_TOML);
    let dir = TestDir::new("bench");
    let private = dir.join("private");
    fs::create_dir(&private).map_err(|e| e.to_string())?;
    fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..n).map(|i| user_name(PREFIX, i)).collect();

    // otpgate: Enroll + Confirm over D-Bus, as root, like `otpgate enroll`.
    let t = Instant::now();
    let enrolled = enrol_otpgate(&bus.address, &names, threads)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "setup: otpgate enrolled {n} users over D-Bus in {secs:.1} s ({:.0}/s, {threads} threads)",
        n as f64 / secs
    );
    let secrets: Vec<(String, String)> = names
        .iter()
        .cloned()
        .zip(enrolled.iter().map(|(s, _)| s.clone()))
        .collect();
    let mut st = State::new(n);
    for (i, (_, step)) in enrolled.iter().enumerate() {
        // The confirming code's step is used up.
        st.last_step[i] = *step;
    }
    st.save(&private.join(format!("state-{}", Module::Otpgate.name())))?;
    let mut lines = String::with_capacity(n * 48);
    for (u, s) in &secrets {
        lines.push_str(&format!("{u} {s}\n"));
    }
    write_private(&private.join("secrets"), lines.as_bytes()).map_err(|e| e.to_string())?;

    // google-authenticator: one file per user, TOTP, no reuse, ±1 step.
    if modules.contains(&Module::GoogleAuthenticator) {
        let t = Instant::now();
        let ga = private.join("ga");
        fs::create_dir(&ga).map_err(|e| e.to_string())?;
        for (u, s) in &secrets {
            write_private(
                &ga.join(u),
                format!("{s}\n\" TOTP_AUTH\n\" DISALLOW_REUSE\n\" WINDOW_SIZE 3\n").as_bytes(),
            )
            .map_err(|e| e.to_string())?;
        }
        State::new(n)
            .save(&private.join(format!("state-{}", Module::GoogleAuthenticator.name())))?;
        println!(
            "setup: google-authenticator: {n} secret files in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    // pam_oath: one usersfile.
    if modules.contains(&Module::PamOath) {
        let t = Instant::now();
        let mut text = String::with_capacity(n * 64);
        for (u, s) in &secrets {
            text.push_str(&format!("HOTP/T30/6\t{u}\t-\t{}\n", secret_hex(s)?));
        }
        write_private(&private.join("users.oath"), text.as_bytes()).map_err(|e| e.to_string())?;
        State::new(n).save(&private.join(format!("state-{}", Module::PamOath.name())))?;
        println!(
            "setup: pam_oath: one usersfile of {} KiB in {:.1} s",
            text.len() / 1024,
            t.elapsed().as_secs_f64()
        );
    }
    // The PAM confdir: one service file per module, nothing else.
    let confdir = private.join("pam.d");
    fs::create_dir(&confdir).map_err(|e| e.to_string())?;
    let module_so = otpgate_tests::pam_module();
    let services = [
        (
            Module::Otpgate,
            format!(
                "auth required {} bus={}\n",
                module_so.display(),
                bus.address
            ),
        ),
        (
            Module::GoogleAuthenticator,
            format!(
                "auth required {} secret={}/${{USER}} user=root\n",
                sec.join("pam_google_authenticator.so").display(),
                private.join("ga").display()
            ),
        ),
        (
            Module::PamOath,
            format!(
                "auth required {} usersfile={} window=1\n",
                sec.join("pam_oath.so").display(),
                private.join("users.oath").display()
            ),
        ),
        (
            Module::PamPermit,
            format!("auth required {}\n", sec.join("pam_permit.so").display()),
        ),
    ];
    for (m, text) in services {
        fs::write(confdir.join(m.service()), text).map_err(|e| e.to_string())?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let (rss, _) = rss_kib(daemon.pid);
    Ok(Setup {
        users: n,
        bus,
        daemon,
        _dir: dir,
        private,
        secrets,
        rss_after_enrol_kib: rss,
    })
}

/// Enrols `names` into otpgated; returns (base32 secret, confirming step)
/// per user, in order.
fn enrol_otpgate(
    address: &str,
    names: &[String],
    threads: usize,
) -> Result<Vec<(String, u64)>, String> {
    let threads = threads.clamp(1, 64);
    let chunk = names.len().div_ceil(threads).max(1);
    let handles: Vec<_> = names
        .chunks(chunk)
        .map(|c| {
            let c = c.to_vec();
            let address = address.to_string();
            std::thread::spawn(move || enrol_chunk(&address, &c))
        })
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for h in handles {
        out.extend(h.join().map_err(|_| "an enrolment thread panicked")??);
    }
    Ok(out)
}

fn enrol_chunk(address: &str, names: &[String]) -> Result<Vec<(String, u64)>, String> {
    zruntime::block_on(async {
        let conn = zbus::connection::Builder::address(address)
            .method_timeout(Duration::from_secs(120))
            .build()
            .await
            .map_err(|e| format!("connect {address}: {e}"))?;
        let mgr = otpgate_proto::ManagerProxy::new(&conn)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(names.len());
        for u in names {
            let d = mgr
                .enroll(u, otpgate_proto::Dict::new())
                .await
                .map_err(|e| format!("Enroll {u}: {e}"))?;
            let secret = otpgate_proto::dict_str(&d, otpgate_proto::enroll::SECRET)
                .ok_or_else(|| format!("Enroll {u}: no secret in the reply"))?;
            let step = now() / PERIOD;
            let code = code_at_step(&totp(&secret)?, step);
            mgr.confirm(u, &code)
                .await
                .map_err(|e| format!("Confirm {u}: {e}"))?;
            out.push((secret, step));
        }
        let _ = conn.close().await;
        Ok(out)
    })
}

/// Every row for every N, plus the direct bus timings per N.
fn measure(
    setups: &[Setup],
    modules: &[Module],
    a: &RunArgs,
) -> Result<(Vec<Row>, Vec<Direct>), String> {
    let peers: Vec<Module> = [
        Module::Otpgate,
        Module::GoogleAuthenticator,
        Module::PamOath,
    ]
    .into_iter()
    .filter(|m| modules.contains(m))
    .collect();
    let mut rows = Vec::new();
    let rounds = a.rounds.max(1);
    let slice = a.seconds as f64 / rounds as f64;
    // The machine is shared and its disk's flush time drifts by the
    // minute: each row is cut into `rounds` slices, run in turn with the
    // other modules' and the other N's slices, so that the drift weighs on
    // all alike.
    let interleaved = |mode: Mode, w: usize, rows: &mut Vec<Row>| -> Result<(), String> {
        let mut parts: BTreeMap<(usize, Module), Vec<Row>> = BTreeMap::new();
        for r in 0..rounds {
            for s in setups {
                for &m in &peers {
                    if mode == Mode::Valid {
                        wait_for_valid_codes(s, m)?;
                    }
                    let part = row(s, m, Some(mode), w, slice)?;
                    part.print(&format!("round {}/{rounds}: ", r + 1));
                    parts.entry((s.users, m)).or_default().push(part);
                }
            }
        }
        for (_, p) in parts {
            let merged = Row::merge(p);
            merged.print("all rounds: ");
            rows.push(merged);
        }
        Ok(())
    };
    for &w in &a.workers {
        if modules.contains(&Module::PamPermit) {
            for s in setups {
                let r = row(s, Module::PamPermit, None, w, slice)?;
                r.print("");
                rows.push(r);
            }
        }
        interleaved(Mode::Valid, w, &mut rows)?;
    }
    let mut directs = Vec::new();
    for s in setups {
        directs.push(if peers.contains(&Module::Otpgate) {
            direct(s, a.seconds.clamp(3, 10))?
        } else {
            Direct::default()
        });
    }
    for &w in &a.workers {
        interleaved(Mode::Wrong, w, &mut rows)?;
    }
    // Table order: by N, then workers, then mode, then module.
    rows.sort_by_key(|r| {
        (
            r.users,
            r.mode.is_some() && r.mode != Some(Mode::Valid),
            r.workers,
            r.module,
        )
    });
    Ok((rows, directs))
}

/// A valid-code row needs users whose code for the current step is unused:
/// if fewer than half of them are, wait for the next step.
fn wait_for_valid_codes(s: &Setup, m: Module) -> Result<(), String> {
    let st = State::load(&s.state_path(m))?;
    let step = now() / PERIOD;
    let free = (0..s.users)
        .filter(|&i| st.valid_available(i, step))
        .count();
    if free * 2 < s.users {
        let next = (step + 1) * PERIOD;
        let wait = next.saturating_sub(now()) + 1;
        println!(
            "  ({} of {} users have used this step's code on {}: waiting {wait} s for the next step)",
            s.users - free,
            s.users,
            m.name()
        );
        std::thread::sleep(Duration::from_secs(wait));
    }
    Ok(())
}

struct Spawned {
    child: Child,
    out: PathBuf,
}

fn kill_child(c: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = c.wait();
}

fn row(
    s: &Setup,
    m: Module,
    mode: Option<Mode>,
    workers: usize,
    seconds: f64,
) -> Result<Row, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut spawned: Vec<Spawned> = Vec::new();
    let kill_all = |sp: &mut Vec<Spawned>| {
        for w in sp.iter_mut() {
            kill_child(&mut w.child);
        }
    };
    let (tx, rx) = mpsc::channel::<Result<usize, String>>();
    for i in 0..workers {
        let out = s.private.join(format!("out-{i}.json"));
        let _ = fs::remove_file(&out);
        let child = Command::new(&exe)
            .arg("worker")
            .arg("--confdir")
            .arg(s.confdir())
            .arg("--module")
            .arg(m.to_possible_value().expect("a value").get_name())
            .arg("--mode")
            .arg(mode.unwrap_or(Mode::Valid).name())
            .arg("--secrets")
            .arg(s.secrets_path())
            .arg("--state")
            .arg(s.state_path(m))
            .arg("--index")
            .arg(i.to_string())
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--seconds")
            .arg(seconds.to_string())
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                kill_all(&mut spawned);
                return Err(format!("start a worker: {e}"));
            }
        };
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(match r {
                Ok(_) if line.trim() == "ready" => Ok(i),
                _ => Err(format!("worker {i} did not start")),
            });
        });
        spawned.push(Spawned { child, out });
    }
    // Every worker has loaded its secrets before any starts.
    for _ in 0..workers {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                kill_all(&mut spawned);
                return Err(e);
            }
            Err(_) => {
                kill_all(&mut spawned);
                return Err("a worker did not get ready within 120 s".into());
            }
        }
    }
    let cpu_before = (cpu_time_us(s.daemon.pid), cpu_time_us(s.bus.pid));
    for w in spawned.iter_mut() {
        let _ = w.child.stdin.as_mut().expect("piped").write_all(b"go\n");
        let _ = w.child.stdin.take();
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 300.0);
    for w in spawned.iter_mut() {
        loop {
            match w.child.try_wait() {
                Ok(Some(st)) if st.success() => break,
                Ok(Some(st)) => {
                    kill_all(&mut spawned);
                    return Err(format!("a worker of {} failed: {st}", m.name()));
                }
                Ok(None) if Instant::now() > deadline => {
                    kill_all(&mut spawned);
                    return Err(format!("a worker of {} overran its deadline", m.name()));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    kill_all(&mut spawned);
                    return Err(e.to_string());
                }
            }
        }
    }
    let cpu_after = (cpu_time_us(s.daemon.pid), cpu_time_us(s.bus.pid));
    // Merge: latencies, results, and the per-user state for the next row.
    let mut st = if m == Module::PamPermit {
        State::new(s.users)
    } else {
        State::load(&s.state_path(m))?
    };
    let mut lat: Vec<u32> = Vec::new();
    let mut results: BTreeMap<String, u64> = BTreeMap::new();
    let (mut ok, mut active_max, mut exhausted, mut no_prompt) = (0u64, 0u64, false, 0u64);
    let mut client_cpu = 0u64;
    for w in &spawned {
        let text = fs::read_to_string(&w.out).map_err(|e| format!("{}: {e}", w.out.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        ok += v["ok"].as_u64().unwrap_or(0);
        no_prompt += v["no_prompt"].as_u64().unwrap_or(0);
        client_cpu += v["cpu_us"].as_u64().unwrap_or(0);
        exhausted |= v["exhausted"].as_bool().unwrap_or(false);
        active_max = active_max.max(v["active_us"].as_u64().unwrap_or(0));
        if let Some(l) = v["lat_us"].as_array() {
            lat.extend(l.iter().filter_map(|x| x.as_u64()).map(|x| x as u32));
        }
        if let Some(r) = v["results"].as_object() {
            for (k, c) in r {
                *results.entry(k.clone()).or_insert(0) += c.as_u64().unwrap_or(0);
            }
        }
        if let Some(u) = v["updates"].as_array() {
            for e in u {
                let (Some(i), Some(l), Some(wr)) = (e[0].as_u64(), e[1].as_u64(), e[2].as_u64())
                else {
                    continue;
                };
                st.last_step[i as usize] = l;
                st.wrong[i as usize] = wr as u32;
            }
        }
    }
    if m != Module::PamPermit {
        st.save(&s.state_path(m))?;
    }
    if no_prompt > 0 {
        results.insert("(never prompted)".into(), no_prompt);
    }
    let mut r = Row {
        module: m,
        users: s.users,
        workers,
        mode,
        attempts: 0,
        ok,
        rate: 0.0,
        p50: 0,
        p99: 0,
        exhausted,
        results,
        cpu_us: None,
        client_cpu_us: 0.0,
        client_cpu_total_us: client_cpu,
        lat,
        active_us: active_max,
        cpu_total_us: (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1),
        rounds: 1,
    };
    r.finish();
    Ok(r)
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

/// The module's own cost, measured in one interleaved loop so that the
/// machine's load weighs on every variant alike: per round, four wrong-code
/// logins of four different users:
/// (a) Challenge + Verify on one kept connection: the daemon's own time
///     plus the least bus cost;
/// (b) the same through pam_otpgate's own client (two fresh connections,
///     owner checks), without libpam;
/// (c) a full PAM transaction with pam_otpgate.so, in this process;
/// (d) a full PAM transaction with pam_permit.so.
fn direct(s: &Setup, seconds: u64) -> Result<Direct, String> {
    let m = Module::Otpgate;
    let mut st = State::load(&s.state_path(m))?;
    let d = direct_on(&s.bus.address, &s.confdir(), &s.secrets, &mut st, seconds);
    st.save(&s.state_path(m))?;
    d
}

/// `direct` against the daemon on `address`, whose users and secrets are
/// `secrets`, with `confdir`'s `bench-otpgate` service pointing at it.
fn direct_on(
    address: &str,
    confdir: &Path,
    secrets: &[(String, String)],
    st: &mut State,
    seconds: u64,
) -> Result<Direct, String> {
    use pam_otpgate::client::Daemon as _;
    let users = secrets.len();
    let mut next = 0usize;
    let mut pick = |st: &mut State| -> Option<usize> {
        for _ in 0..users {
            let i = next;
            next = (next + 1) % users;
            if st.wrong_available(i) {
                st.wrong[i] += 1;
                return Some(i);
            }
        }
        None
    };
    let address = address.to_string();
    // The connection outlives this block_on; each call is its own block_on.
    let (conn, auth) = zruntime::block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let auth = otpgate_proto::AuthProxy::new(&conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, auth))
    })?;
    let client = pam_otpgate::client::BusDaemon::new(&address, Duration::from_secs(5));
    let ctx = pam_otpgate::client::Context::default();
    let confdir = pam::cstring(&confdir.display().to_string());
    let svc_otpgate = pam::cstring(Module::Otpgate.service());
    let svc_permit = pam::cstring(Module::PamPermit.service());
    let (mut kept, mut via_client, mut via_pam, mut permit) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut failure = None;
    while Instant::now() < end {
        let (Some(i), Some(j), Some(k)) = (pick(st), pick(st), pick(st)) else {
            break;
        };
        let step = now() / PERIOD;
        let wrong = |u: usize| totp(&secrets[u].1).map(|t| wrong_code(&t, step));
        let (ci, cj, ck) = (wrong(i)?, wrong(j)?, wrong(k)?);

        let t0 = Instant::now();
        let r = zruntime::block_on(async {
            auth.challenge(&secrets[i].0, otpgate_proto::Dict::new())
                .await?;
            auth.verify(&secrets[i].0, &ci, otpgate_proto::Dict::new())
                .await
        });
        kept.push(t0.elapsed().as_micros() as u32);
        match r {
            Ok((word, _)) if word == "invalid" => {}
            other => {
                failure = Some(format!(
                    "kept connection: Verify of a wrong code gave {other:?}"
                ));
                break;
            }
        }

        let t0 = Instant::now();
        let r = client
            .challenge(&secrets[j].0, &ctx)
            .and_then(|_| client.verify(&secrets[j].0, &cj, &ctx));
        via_client.push(t0.elapsed().as_micros() as u32);
        if let Err(e) = r {
            failure = Some(format!("pam_otpgate client: {e}"));
            break;
        }

        let user = pam::cstring(&secrets[k].0);
        let t0 = Instant::now();
        let o = pam::authenticate(&confdir, &svc_otpgate, &user, &pam::cstring(&ck))?;
        via_pam.push(t0.elapsed().as_micros() as u32);
        if o.rc != pam::PAM_AUTH_ERR {
            failure = Some(format!("pam_otpgate: {}", pam::strerror(o.rc)));
            break;
        }

        let t0 = Instant::now();
        pam::authenticate(&confdir, &svc_permit, &user, &pam::cstring("000000"))?;
        permit.push(t0.elapsed().as_micros() as u32);
    }
    drop(auth);
    zruntime::block_on(async {
        let _ = conn.close().await;
    });
    if let Some(f) = failure {
        return Err(f);
    }
    let d = Direct {
        kept: stats::summarise(kept),
        client: stats::summarise(via_client),
        pam: stats::summarise(via_pam),
        permit: stats::summarise(permit),
    };
    let show = |label: &str, x: &Option<stats::Summary>| {
        if let Some(x) = x {
            println!(
                "  direct, interleaved: {label:<48} {:>5} rounds  p50 {:>6} µs  p99 {:>6} µs",
                x.n, x.p50_us, x.p99_us
            );
        }
    };
    show("Challenge+Verify(wrong), one kept connection", &d.kept);
    show("the same through pam_otpgate's client", &d.client);
    show("PAM transaction, pam_otpgate.so (wrong code)", &d.pam);
    show("PAM transaction, pam_permit.so", &d.permit);
    Ok(d)
}

/// A second otpgated with its state on tmpfs (/dev/shm), on its own bus:
/// no disk flush, so what pam_otpgate.so adds stands out from the noise of
/// a shared disk. Killed by pid and its directory removed on drop.
struct ShmDaemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for ShmDaemon {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn overhead_on_tmpfs(users: usize, seconds: u64) -> Result<Direct, String> {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return Err("/dev/shm is missing".into());
    }
    let bus = Bus::start();
    let dir = shm.join(format!("otpgate-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let config = dir.join("otpgate.toml");
    fs::write(
        &config,
        format!(
            "[storage]\npath = \"{}\"\nkey_file = \"{}\"\n\n{DAEMON_TOML}",
            dir.join("state").display(),
            dir.join("master.key").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let log_path = dir.join("otpgated.log");
    let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let child = Command::new(otpgate_tests::bin("otpgated"))
        .arg("--config")
        .arg(&config)
        .arg("--bus")
        .arg(&bus.address)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start otpgated: {e}"))?;
    let guard = ShmDaemon {
        child,
        dir: dir.clone(),
    };
    if !otpgate_tests::wait_until(Duration::from_secs(30), || {
        bus.has_owner(otpgate_proto::BUS_NAME)
    }) {
        return Err(format!(
            "otpgated with state on tmpfs did not start: {}",
            fs::read_to_string(&log_path).unwrap_or_default()
        ));
    }
    let names: Vec<String> = (0..users).map(|i| user_name(PREFIX, i)).collect();
    let enrolled = enrol_otpgate(&bus.address, &names, 4)?;
    let secrets: Vec<(String, String)> = names
        .into_iter()
        .zip(enrolled.into_iter().map(|(s, _)| s))
        .collect();
    let confdir = dir.join("pam.d");
    fs::create_dir(&confdir).map_err(|e| e.to_string())?;
    fs::write(
        confdir.join(Module::Otpgate.service()),
        format!(
            "auth required {} bus={}\n",
            otpgate_tests::pam_module().display(),
            bus.address
        ),
    )
    .map_err(|e| e.to_string())?;
    fs::write(
        confdir.join(Module::PamPermit.service()),
        format!(
            "auth required {}\n",
            security_dir().join("pam_permit.so").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut st = State::new(secrets.len());
    let d = direct_on(&bus.address, &confdir, &secrets, &mut st, seconds);
    drop(guard);
    d
}

/// What `direct` measured.
#[derive(Debug, Clone, Default)]
struct Direct {
    kept: Option<stats::Summary>,
    client: Option<stats::Summary>,
    pam: Option<stats::Summary>,
    permit: Option<stats::Summary>,
}

fn find(rows: &[Row], m: Module, n: usize, w: usize, mode: Option<Mode>) -> Option<&Row> {
    rows.iter()
        .find(|r| r.module == m && r.users == n && r.workers == w && r.mode == mode)
}

fn print_table(rows: &[Row]) {
    println!(
        "| module | users | workers | mode | attempts | ok % | attempts/s | p50 µs | p99 µs | otpgate/peer | CPU µs/attempt: client + otpgated + dbus |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = match r.module {
            Module::Otpgate => "—".to_string(),
            Module::PamPermit => find(rows, Module::Otpgate, r.users, r.workers, Some(Mode::Valid))
                .map_or("—".into(), |o| {
                    format!("{:.2}× (valid)", o.ok_rate() / r.ok_rate())
                }),
            _ => {
                find(rows, Module::Otpgate, r.users, r.workers, r.mode).map_or("—".into(), |o| {
                    if r.ok == 0 {
                        "∞".into()
                    } else {
                        format!("{:.2}×", o.ok_rate() / r.ok_rate())
                    }
                })
            }
        };
        println!(
            "| {} | {} | {} | {} | {}{} | {:.1} | {:.0} | {} | {} | {} | {} |",
            r.module.name(),
            r.users,
            r.workers,
            r.mode.map_or("-", |m| m.name()),
            r.attempts,
            if r.exhausted { "*" } else { "" },
            pct(r.ok, r.attempts),
            r.rate,
            r.p50,
            r.p99,
            ratio,
            match r.cpu_us {
                Some((d, b)) => format!(
                    "{:.0} + {d:.0} + {b:.0} = {:.0}",
                    r.client_cpu_us,
                    r.client_cpu_us + d + b
                ),
                None => format!("{:.0}", r.client_cpu_us),
            }
        );
    }
    println!(
        "\n`*`: the row ended early: in valid mode every user had used the current step's code (one valid login per user per 30 s step); in wrong mode every otpgate user had had 90 wrong codes.\notpgate/peer: otpgate's attempts per second with the expected answer (valid logins/s, or refusals/s) over the peer's, same users, workers and mode."
    );
    let odd: Vec<String> = rows
        .iter()
        .filter(|r| r.ok < r.attempts)
        .map(|r| {
            format!(
                "  {} N={} W={} {}: {:?}",
                r.module.name(),
                r.users,
                r.workers,
                r.mode.map_or("-", |m| m.name()),
                r.results
            )
        })
        .collect();
    if !odd.is_empty() {
        println!("Rows with unexpected PAM results (valid codes refused, or wrong codes not answered PAM_AUTH_ERR):");
        for o in odd {
            println!("{o}");
        }
    }
}

fn print_overhead(extra: &[(usize, Extra)], on_tmpfs: Option<&Direct>) {
    println!("\nMemory, and the module's own cost (wrong codes, one at a time, the four measured in turn):");
    println!("| users | otpgated RSS after enrolment KiB | RSS idle after load KiB | peak RSS KiB | daemon: Challenge+Verify on a kept connection p50 µs | pam_otpgate client p50 µs | PAM with pam_otpgate.so p50 µs | PAM with pam_permit.so p50 µs | pam_otpgate.so adds µs (p50) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let o = |v: &Option<stats::Summary>| v.map_or("—".to_string(), |v| v.p50_us.to_string());
    for (n, e) in extra {
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
            e.rss_after_enrol_kib,
            e.rss_idle_after_load_kib,
            e.rss_peak_kib,
            o(&e.direct.kept),
            o(&e.direct.client),
            o(&e.direct.pam),
            o(&e.direct.permit),
            module_adds(&e.direct).map_or("—".to_string(), |v| v.to_string())
        );
    }
    if let Some(d) = on_tmpfs {
        println!(
            "| state on tmpfs | — | — | — | {} | {} | {} | {} | {} |",
            o(&d.kept),
            o(&d.client),
            o(&d.pam),
            o(&d.permit),
            module_adds(d).map_or("—".to_string(), |v| v.to_string())
        );
    }
}

/// PAM transaction with pam_otpgate.so minus the daemon's own exchange.
fn module_adds(d: &Direct) -> Option<i64> {
    Some(d.pam?.p50_us as i64 - d.kept?.p50_us as i64)
}

fn verdict(held: bool) -> &'static str {
    if held {
        "held  "
    } else {
        "MISSED"
    }
}

fn print_targets(rows: &[Row], extra: &[(usize, Extra)], on_tmpfs: Option<&Direct>, a: &RunArgs) {
    println!("\nTargets (issue 7):");
    if let Some(d) = on_tmpfs {
        if let (Some(adds), Some(p), Some(k)) = (module_adds(d), d.pam, d.kept) {
            println!(
                "  [{}] pam_otpgate.so adds < 2 ms to a PAM transaction beyond the daemon's own time (state on tmpfs): {adds} µs (PAM transaction p50 {} µs − daemon exchange p50 {} µs)",
                verdict(adds < 2000),
                p.p50_us,
                k.p50_us
            );
        }
    }
    let ns: Vec<usize> = a.users.clone();
    let o = Module::Otpgate;
    let ga = Module::GoogleAuthenticator;
    let v = Some(Mode::Valid);
    let wr = Some(Mode::Wrong);
    for &n in &ns {
        if let (Some(x), Some(g)) = (find(rows, o, n, 1, v), find(rows, ga, n, 1, v)) {
            println!(
                "  [{}] N={n}: valid-code throughput with 1 worker ≥ google-authenticator's: {:.0}/s vs {:.0}/s ({:.2}×)",
                verdict(x.ok_rate() >= g.ok_rate()),
                x.ok_rate(),
                g.ok_rate(),
                x.ok_rate() / g.ok_rate()
            );
        }
        if let (Some(x), Some(g)) = (find(rows, o, n, 4, v), find(rows, ga, n, 4, v)) {
            println!(
                "  [{}] N={n}: valid-code throughput with 4 workers ≥ 1.5× google-authenticator's: {:.0}/s vs {:.0}/s ({:.2}×)",
                verdict(x.ok_rate() >= 1.5 * g.ok_rate()),
                x.ok_rate(),
                g.ok_rate(),
                x.ok_rate() / g.ok_rate()
            );
        }
        for mode in [v, wr] {
            if let Some(x) = find(rows, o, n, 4, mode) {
                println!(
                    "  [{}] N={n}: p99 with 4 workers < 5 ms ({} codes): {} µs",
                    verdict(x.p99 < 5000),
                    mode.map_or("-", |m| m.name()),
                    x.p99
                );
            }
        }
        for &w in &a.workers {
            if let (Some(r), Some(x)) = (find(rows, o, n, w, v), find(rows, o, n, w, wr)) {
                // Both answers are one durable save; 5 % is left for the
                // noise of a shared disk.
                println!(
                    "  [{}] N={n}, {w} worker(s): a wrong code costs no more than a right one (p50, 5 % noise allowance): {} µs vs {} µs; {:.0}/s vs {:.0}/s; otpgated CPU {} vs {} µs",
                    verdict(x.p50 as f64 <= r.p50 as f64 * 1.05),
                    x.p50,
                    r.p50,
                    x.rate,
                    r.rate,
                    x.cpu_us.map_or("?".into(), |c| format!("{:.0}", c.0)),
                    r.cpu_us.map_or("?".into(), |c| format!("{:.0}", c.0)),
                );
            }
        }
        if let Some((_, e)) = extra.iter().find(|(m, _)| *m == n) {
            if n >= 100_000 {
                println!(
                    "  [{}] N={n}: otpgated RSS < 64 MiB: {} KiB idle after the load (peak {} KiB)",
                    verdict(e.rss_idle_after_load_kib.max(e.rss_after_enrol_kib) < 64 * 1024),
                    e.rss_idle_after_load_kib,
                    e.rss_peak_kib
                );
            }
            if n <= 1_000 {
                println!(
                    "  [{}] N={n}: otpgated idle RSS < 16 MiB: {} KiB after the load, {} KiB after enrolment",
                    verdict(e.rss_idle_after_load_kib.max(e.rss_after_enrol_kib) < 16 * 1024),
                    e.rss_idle_after_load_kib,
                    e.rss_after_enrol_kib
                );
            }
            if let (Some(adds), Some(p), Some(d)) =
                (module_adds(&e.direct), e.direct.pam, e.direct.kept)
            {
                println!(
                    "  [{}] N={n}: pam_otpgate.so adds < 2 ms to a PAM transaction beyond the daemon's own time (state on disk): {adds} µs (PAM transaction p50 {} µs − daemon exchange p50 {} µs)",
                    verdict(adds < 2000),
                    p.p50_us,
                    d.p50_us
                );
            }
        }
    }
    let (lo, hi) = (ns.iter().min(), ns.iter().max());
    if let (Some(&lo), Some(&hi)) = (lo, hi) {
        if lo != hi {
            if let (Some(a1), Some(b1)) = (find(rows, o, lo, 1, v), find(rows, o, hi, 1, v)) {
                // Cost per verification: the median time of one login and the
                // daemon's CPU per login (throughput with one worker is
                // printed too, but a few slow flushes of a shared disk move it
                // more than the number of users does).
                let lat = b1.p50 as f64 / a1.p50.max(1) as f64 - 1.0;
                let cpu = match (a1.cpu_us, b1.cpu_us) {
                    (Some(x), Some(y)) => y.0 / x.0.max(1.0) - 1.0,
                    _ => f64::NAN,
                };
                println!(
                    "  [{}] cost per verification flat from {lo} to {hi} users (within 20 %): p50 {} → {} µs ({:+.1} %), otpgated CPU per login {:+.1} %; throughput {:.0}/s → {:.0}/s",
                    verdict(lat.abs() <= 0.20 && cpu.abs() <= 0.20),
                    a1.p50,
                    b1.p50,
                    lat * 100.0,
                    cpu * 100.0,
                    a1.rate,
                    b1.rate
                );
            }
            if let (Some(a1), Some(b1)) = (
                find(rows, Module::PamOath, lo, 1, v),
                find(rows, Module::PamOath, hi, 1, v),
            ) {
                println!(
                    "  [info  ] pam_oath from {lo} to {hi} users (rewrites its whole usersfile per success): {:.0}/s → {:.0}/s, p50 {} → {} µs, client CPU {:.0} → {:.0} µs per login",
                    a1.rate, b1.rate, a1.p50, b1.p50, a1.client_cpu_us, b1.client_cpu_us
                );
            }
        }
    }
}
