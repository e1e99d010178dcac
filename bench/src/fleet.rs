//! What a fleet login costs the database: its round trips and
//! transactions, measured on the fleet's two otpgated and its server.
//!
//! - Round trips: `strace -f -yy` on both daemons (every thread) during a
//!   short row of its own, counting the calls that send to the database's
//!   port (`sendto`/`write`/`writev`/`sendmsg` on a socket connected to
//!   127.0.0.1:PORT) and those that received something from it. A round
//!   trip is a turn on one connection: the sends after the last receive
//!   with data, up to the next one (a pipelined pair that leaves in two
//!   writes is still one round trip, as the client waits once). strace
//!   slows the daemons down: this row's times are not reported, only its
//!   counts.
//! - Statements: `pg_stat_statements` of the fleet's database, reset
//!   before that row and read after it (the server counts what it ran,
//!   whoever sent it, at once: no wait for statistics to be flushed). Its
//!   `BEGIN` calls are the transactions of the login.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::{Mode, Module};
use crate::measure::{kill_child, row, wait_for_valid_codes};
use crate::setup::Setup;

/// How long strace may take to attach to both daemons, and to detach.
const STRACE_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct RoundTrips {
    pub users: usize,
    pub mode: Mode,
    pub attempts: u64,
    pub ok: u64,
    /// Turns on the daemons' connections to the database: sends after a
    /// receive, i.e. round trips.
    pub turns: u64,
    /// System calls of the daemons that sent to the database.
    pub sends: u64,
    /// System calls of the daemons that received something from it.
    pub receives: u64,
    /// Connections the daemons opened to it meanwhile.
    pub connects: u64,
    /// Statements the database ran for the fleet's role: (statement,
    /// calls), most called first.
    pub statements: Vec<(String, u64)>,
}

impl RoundTrips {
    pub fn per(&self, x: u64) -> f64 {
        x as f64 / self.attempts.max(1) as f64
    }

    pub fn line(&self) -> String {
        let stmts: Vec<String> = self
            .statements
            .iter()
            .map(|(q, c)| format!("{:.2} × {q}", self.per(*c)))
            .collect();
        format!(
            "N = {}, {} codes, 1 worker alternating between the two daemons: {} logins ({} as expected): {:.2} round trips to the database per login ({:.2} sends, {:.2} receives with data), {} new connections; statements per login (pg_stat_statements): {}",
            self.users,
            self.mode.name(),
            self.attempts,
            self.ok,
            self.per(self.turns),
            self.per(self.sends),
            self.per(self.receives),
            self.connects,
            stmts.join(", "),
        )
    }
}

/// Counts a short row of each mode on the fleet of `s` (1 worker, both
/// daemons in turn).
pub fn round_trips(s: &Setup, seconds: f64) -> Result<Vec<RoundTrips>, String> {
    let m = Module::OtpgateFleet;
    let inst = s.instance(m).ok_or("no fleet")?;
    let f = inst.fleet.as_ref().ok_or("no fleet")?;
    let port = f.pg.port();
    let reset = || {
        f.pg.try_psql("otpgate", "SELECT pg_stat_statements_reset()")
            .map(|_| ())
    };
    let statements = || -> Result<Vec<(String, u64)>, String> {
        let text = f.pg.try_psql(
            "otpgate",
            "SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'otpgate') \
             AND userid = (SELECT oid FROM pg_roles WHERE rolname = 'otpgate') ORDER BY calls DESC",
        )?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (c, q) = l.split_once('|')?;
                Some((q.to_string(), c.parse().ok()?))
            })
            .collect())
    };
    let mut out = Vec::new();
    for mode in [Mode::Valid, Mode::Wrong] {
        if mode == Mode::Valid {
            wait_for_valid_codes(s, m)?;
        }
        reset()?;
        let trace = s.private.join(format!("strace-{}.txt", mode.name()));
        let err_path = s.private.join(format!("strace-{}.err", mode.name()));
        let _ = fs::remove_file(&trace);
        let err = fs::File::create(&err_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-yy", "-s", "0", "-e", "signal=none", "-e"])
            .arg("trace=connect,sendto,sendmsg,write,writev,recvfrom,recvmsg,read,readv")
            .arg("-o")
            .arg(&trace);
        let pids = inst.daemon_pids();
        for p in &pids {
            cmd.arg("-p").arg(p.to_string());
        }
        let mut strace = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| {
                format!("start strace (apt-get install strace; bench/run.sh does): {e}")
            })?;
        let attached = otpgate_tests::wait_until(STRACE_DEADLINE, || {
            let t = fs::read_to_string(&err_path).unwrap_or_default();
            pids.iter()
                .all(|p| t.contains(&format!("Process {p} attached")))
                || matches!(strace.try_wait(), Ok(Some(_)))
        });
        if !attached || matches!(strace.try_wait(), Ok(Some(_))) {
            kill_child(&mut strace);
            return Err(format!(
                "strace did not attach to otpgated: {}",
                fs::read_to_string(&err_path).unwrap_or_default().trim()
            ));
        }
        let r = row(s, m, Some(mode), 1, seconds);
        // SIGINT: strace detaches and leaves the daemons running.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(strace.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        if otpgate_tests::wait_or_kill(&mut strace, STRACE_DEADLINE).is_none() {
            return Err("strace did not detach from otpgated".into());
        }
        let r = r?;
        let statements = statements()?;
        let (turns, sends, receives, connects) = count(&trace, port)?;
        let rt = RoundTrips {
            users: s.users,
            mode,
            attempts: r.attempts,
            ok: r.ok,
            turns,
            sends,
            receives,
            connects,
            statements,
        };
        println!("  fleet round trips: {}", rt.line());
        out.push(rt);
        if std::env::var_os("OTPGATE_BENCH_KEEP_TRACE").is_some() {
            let _ = fs::copy(&trace, format!("/tmp/fleet-trace-{}.txt", mode.name()));
        }
        let _ = fs::remove_file(&trace);
    }
    Ok(out)
}

/// (turns, sends, receives that got data, connects) on sockets connected
/// to 127.0.0.1:`port`, in an `strace -f -yy` output.
fn count(trace: &Path, port: u16) -> Result<(u64, u64, u64, u64), String> {
    let text = fs::read_to_string(trace).map_err(|e| format!("{}: {e}", trace.display()))?;
    let peer = format!("->127.0.0.1:{port}]");
    let target = format!("sin_port=htons({port})");
    let (mut turns, mut sends, mut receives, mut connects) = (0, 0, 0, 0);
    // Per connection (its fd decoration names both ends): whether the last
    // call on it was a send.
    let mut sending: std::collections::HashMap<String, bool> = Default::default();
    for l in text.lines() {
        // "PID call(fd<TCP:[a:b->127.0.0.1:PORT]>, …) = N"; a call that
        // blocked is split into "<unfinished ...>" and "resumed" lines,
        // of which only the first names the socket.
        let Some(call) = l.split_whitespace().nth(1) else {
            continue;
        };
        if call.starts_with("connect(") && l.contains(&target) {
            connects += 1;
            continue;
        }
        let name = call.split('(').next().unwrap_or("");
        let first_arg = call.split('(').nth(1).unwrap_or("");
        if !first_arg.contains(&peer) && !l.split(',').next().unwrap_or("").contains(&peer) {
            continue;
        }
        let conn = first_arg.split('>').next().unwrap_or("").to_string();
        match name {
            "sendto" | "sendmsg" | "write" | "writev" => {
                sends += 1;
                if !sending.insert(conn, true).unwrap_or(false) {
                    turns += 1;
                }
            }
            "recvfrom" | "recvmsg" | "read" | "readv" => {
                let ret = l.rsplit_once(" = ").map(|(_, r)| r.trim());
                if ret.is_some_and(|r| r.parse::<i64>().is_ok_and(|n| n > 0)) {
                    receives += 1;
                    sending.insert(conn, false);
                }
            }
            _ => {}
        }
    }
    Ok((turns, sends, receives, connects))
}
