//! The runs: rows of worker processes per module, N, worker count and
//! code mode, interleaved so that the machine's drift weighs on all alike;
//! the module's own cost measured directly; what the processes cost.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use otpgate_bench::procfs::{cpu_time_us, cpu_tree_us};
use otpgate_bench::stats::pct;
use otpgate_bench::{now, pam, stats, totp, user_name, wrong_code, State, PERIOD};
use otpgate_tests::Bus;

use crate::cli::{Mode, Module, RunArgs};
use crate::setup::{enrol_otpgate, security_dir, Setup, DAEMON_TOML, NO_PAM_SOCKET, PREFIX};

#[derive(Debug, Clone)]
pub struct Row {
    pub module: Module,
    pub users: usize,
    pub workers: usize,
    /// None for pam_permit (no code is asked).
    pub mode: Option<Mode>,
    pub attempts: u64,
    pub ok: u64,
    pub rate: f64,
    pub p50: u32,
    pub p99: u32,
    pub exhausted: bool,
    pub results: BTreeMap<String, u64>,
    /// CPU time per attempt of otpgated and of the dbus-daemon, µs
    /// (otpgate rows only).
    pub cpu_us: Option<(f64, f64)>,
    /// CPU time per attempt of the worker processes (the PAM client), µs.
    pub client_cpu_us: f64,
    /// Raw figures, to merge the rounds of one row.
    pub client_cpu_total_us: u64,
    pub lat: Vec<u32>,
    pub active_us: u64,
    pub cpu_total_us: (u64, u64),
    /// CPU time per attempt of the PostgreSQL server, µs (fleet rows).
    pub db_cpu_us: Option<f64>,
    pub db_cpu_total_us: Option<u64>,
    pub rounds: usize,
}

impl Row {
    /// Attempts per second that got the expected answer (valid logins per
    /// second in valid mode): pam_oath refuses most valid codes under
    /// concurrency, and its fast refusals are not logins.
    pub fn ok_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.rate * self.ok as f64 / self.attempts as f64
        }
    }

    /// One row from its interleaved rounds: samples pooled, time added up.
    pub fn merge(parts: Vec<Row>) -> Row {
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
            r.db_cpu_total_us = match (r.db_cpu_total_us, p.db_cpu_total_us) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            r.rounds += p.rounds;
        }
        r.finish();
        r
    }

    /// Derived figures from the raw ones.
    pub fn finish(&mut self) {
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
        self.cpu_us = (self.module.is_otpgate() && self.attempts > 0).then(|| {
            (
                self.cpu_total_us.0 as f64 / self.attempts as f64,
                self.cpu_total_us.1 as f64 / self.attempts as f64,
            )
        });
        self.db_cpu_us = self
            .db_cpu_total_us
            .filter(|_| self.attempts > 0)
            .map(|t| t as f64 / self.attempts as f64);
    }

    pub fn print(&self, label: &str) {
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
        match (self.cpu_us, self.db_cpu_us) {
            (Some((d, b)), Some(p)) => println!(
                "  {label}  CPU per attempt: PAM client {:.0} µs, otpgated (both) {d:.0} µs, bus {b:.0} µs, postgres {p:.0} µs",
                self.client_cpu_us
            ),
            (Some((d, b)), None) => println!(
                "  {label}  CPU per attempt: PAM client {:.0} µs, otpgated {d:.0} µs, bus {b:.0} µs",
                self.client_cpu_us
            ),
            (None, _) => println!(
                "  {label}  CPU per attempt: PAM client {:.0} µs",
                self.client_cpu_us
            ),
        }
    }
}

pub fn load_avg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Per-N figures besides the rows.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub rss_after_enrol_kib: u64,
    pub rss_idle_after_load_kib: u64,
    pub rss_peak_kib: u64,
    pub direct: Direct,
}

/// Every row for every N, plus the direct bus timings per N.
pub fn measure(
    setups: &[Setup],
    modules: &[Module],
    a: &RunArgs,
) -> Result<(Vec<Row>, Vec<Direct>), String> {
    let peers: Vec<Module> = [
        Module::Otpgate,
        Module::OtpgateBus,
        Module::OtpgateBroker,
        Module::OtpgateFleet,
        Module::GoogleAuthenticator,
        Module::PamOath,
    ]
    .into_iter()
    .filter(|m| modules.contains(m))
    .collect();
    // An otpgate row kind runs where its instance could be started.
    let runs = |s: &Setup, m: Module| !m.is_otpgate() || s.instance(m).is_some();
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
                for &m in peers.iter().filter(|&&m| runs(s, m)) {
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
        directs.push(if s.instance(Module::OtpgateBus).is_some() {
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
pub fn wait_for_valid_codes(s: &Setup, m: Module) -> Result<(), String> {
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

pub struct Spawned {
    pub child: Child,
    pub out: PathBuf,
}

pub fn kill_child(c: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = c.wait();
}

pub fn row(
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
            .arg(s.secrets_path(m))
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
    // The daemon's and the bus's CPU: every thread of otpgated (both, for
    // the fleet), and for dbus-broker both the launcher and the broker;
    // the fleet's database server with all its processes.
    let inst = s.instance(m);
    let cpu = || {
        inst.map_or((0, 0), |i| {
            (
                i.daemon_pids().into_iter().map(cpu_time_us).sum::<u64>(),
                i.bus_pids().into_iter().map(cpu_time_us).sum::<u64>(),
            )
        })
    };
    let db_cpu = || {
        inst.and_then(|i| i.fleet.as_ref())
            .map(|f| cpu_tree_us(f.pg.pid()))
    };
    let db_before = db_cpu();
    let cpu_before = cpu();
    for w in spawned.iter_mut() {
        let _ = w.child.stdin.as_mut().expect("piped").write_all(b"go\n");
        let _ = w.child.stdin.take();
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 300.0);
    for w in spawned.iter_mut() {
        match otpgate_tests::wait_or_kill(
            &mut w.child,
            deadline.saturating_duration_since(Instant::now()),
        ) {
            Some(st) if st.success() => {}
            Some(st) => {
                kill_all(&mut spawned);
                return Err(format!("a worker of {} failed: {st}", m.name()));
            }
            None => {
                kill_all(&mut spawned);
                return Err(format!("a worker of {} overran its deadline", m.name()));
            }
        }
    }
    let cpu_after = cpu();
    let db_after = db_cpu();
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
        db_cpu_us: None,
        db_cpu_total_us: db_before.zip(db_after).map(|(b, a)| a.saturating_sub(b)),
        rounds: 1,
    };
    r.finish();
    Ok(r)
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
pub fn direct(s: &Setup, seconds: u64) -> Result<Direct, String> {
    let m = Module::OtpgateBus;
    let inst = s.instance(m).ok_or("no dbus-daemon instance")?;
    let mut st = State::load(&s.state_path(m))?;
    let d = direct_on(
        inst.bus.address(),
        &s.confdir(),
        &s.secrets,
        &mut st,
        seconds,
    );
    st.save(&s.state_path(m))?;
    d
}

/// `direct` against the daemon on `address`, whose users and secrets are
/// `secrets`, with `confdir`'s `bench-otpgate-bus` service pointing at it.
pub fn direct_on(
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
    let svc_otpgate = pam::cstring(Module::OtpgateBus.service());
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
pub struct ShmDaemon {
    pub child: Child,
    pub dir: PathBuf,
}

impl Drop for ShmDaemon {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn overhead_on_tmpfs(users: usize, seconds: u64) -> Result<Direct, String> {
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
            "[storage]\npath = \"{}\"\nkey_file = \"{}\"\n\n{DAEMON_TOML}\n{NO_PAM_SOCKET}",
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
        confdir.join(Module::OtpgateBus.service()),
        format!(
            "auth required {} bus={} bus_only\n",
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
pub struct Direct {
    pub kept: Option<stats::Summary>,
    pub client: Option<stats::Summary>,
    pub pam: Option<stats::Summary>,
    pub permit: Option<stats::Summary>,
}
