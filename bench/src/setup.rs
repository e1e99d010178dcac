//! What a run needs before it measures: the bench's system users, and
//! per N a private bus, the real otpgated with N users enrolled over D-Bus,
//! the peers' secret files, a PAM confdir and the per-user code states.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use otpgate_bench::procfs::rss_kib;
use otpgate_bench::{
    code_at_step, now, secret_hex, totp, user_name, userdb, write_private, State, PERIOD,
};
use otpgate_tests::pg::PgServer;
use otpgate_tests::{Bus, TestDir};

use crate::broker::Broker;
use crate::cli::{Module, UsersOp};

/// Bench users are `PREFIX` + six digits; no test suite uses this prefix.
pub const PREFIX: &str = "otpgbn";
/// Above any uid `useradd` hands out (UID_MAX 60000), so the bench users
/// never change which uid the next `useradd` picks.
pub const UID_BASE: u32 = 400_000;
/// nogroup: the bench users need no group of their own.
pub const GID: u32 = 65_534;

/// otpgated's config on top of the harness's `[storage]`: no backup codes
/// (10 argon2 hashes per enrolment would make 100,000 enrolments take
/// hours), and the lockout as high as the config allows.
pub const DAEMON_TOML: &str = "[backup_codes]\ncount = 0\n\n[lockout]\nmax_failures = 100\n";

/// For the instances the module reaches over a bus: no direct socket
/// (otpgated's default, /run/otpgate/pam.socket, is the host's).
pub const NO_PAM_SOCKET: &str = "[pam]\nsocket = \"\"\n";

pub fn users(op: UsersOp) -> Result<(), String> {
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

/// One otpgated and the bus it serves on.
pub struct Instance {
    pub module: Module,
    pub bus: BusKind,
    pub daemon: Otpgated,
    /// The direct socket the module uses (the socket rows only).
    pub pam_socket: Option<PathBuf>,
    /// The fleet row's second daemon and database (dropped last: the
    /// daemons stop before their database).
    pub fleet: Option<Fleet>,
}

impl Instance {
    /// Every otpgated of the row (two for the fleet).
    pub fn daemon_pids(&self) -> Vec<i32> {
        let mut p = vec![self.daemon.pid];
        if let Some(f) = &self.fleet {
            p.push(f.daemon.pid);
        }
        p
    }
    /// Every process doing a bus's work for the row.
    pub fn bus_pids(&self) -> Vec<i32> {
        let mut p = self.bus.pids();
        if let Some(f) = &self.fleet {
            p.extend(f.bus.pids());
        }
        p
    }
}

/// The fleet row's second otpgated, its bus and socket, and the private
/// PostgreSQL cluster both daemons keep their records in.
pub struct Fleet {
    pub bus: BusKind,
    pub daemon: Otpgated,
    pub pam_socket: PathBuf,
    /// Users enrolled through the first daemon, as the second lists them.
    pub listed_by_second: usize,
    pub enrol_secs: f64,
    pub pg: PgServer,
}

pub enum BusKind {
    DbusDaemon(Bus),
    Broker(Broker),
}

impl BusKind {
    pub fn address(&self) -> &str {
        match self {
            BusKind::DbusDaemon(b) => &b.address,
            BusKind::Broker(b) => &b.address,
        }
    }
    /// The processes that do the bus's work (their CPU is the bus's).
    pub fn pids(&self) -> Vec<i32> {
        match self {
            BusKind::DbusDaemon(b) => vec![b.pid],
            BusKind::Broker(b) => vec![b.launcher_pid, b.broker_pid],
        }
    }
    pub fn dir(&self) -> &Path {
        match self {
            BusKind::DbusDaemon(b) => &b.dir.path,
            BusKind::Broker(b) => &b.dir.path,
        }
    }
}

/// The real release otpgated with a state directory of the bench's.
pub struct Otpgated {
    pub dir: PathBuf,
    pub pid: i32,
    child: Option<std::process::Child>,
    log_path: PathBuf,
}

impl Otpgated {
    pub fn state_dir(dir: &Path) -> PathBuf {
        dir.join("state")
    }

    /// Starts otpgated on `bus` with `dir/state` and `dir/master.key`
    /// (created at first start) and `extra_toml` after the bench's config.
    pub fn start(dir: &Path, bus: &str, extra_toml: &str) -> Result<Otpgated, String> {
        let storage = format!(
            "[storage]\npath = \"{}\"\nkey_file = \"{}\"\n",
            Otpgated::state_dir(dir).display(),
            dir.join("master.key").display()
        );
        Otpgated::start_with(dir, bus, &storage, extra_toml)
    }

    /// [`Otpgated::start`] with this `[storage]` section.
    pub fn start_with(
        dir: &Path,
        bus: &str,
        storage_toml: &str,
        extra_toml: &str,
    ) -> Result<Otpgated, String> {
        let config = dir.join("otpgate.toml");
        fs::write(
            &config,
            format!("{storage_toml}\n{DAEMON_TOML}\n{extra_toml}\n"),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let log_path = dir.join("otpgated.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = Command::new(otpgate_tests::bin("otpgated"))
            .arg("--config")
            .arg(&config)
            .arg("--bus")
            .arg(bus)
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start otpgated: {e}"))?;
        let mut d = Otpgated {
            dir: dir.to_path_buf(),
            pid: child.id() as i32,
            child: Some(child),
            log_path,
        };
        let has_owner = |address: &str| {
            let address = address.to_string();
            zruntime::block_on(async move {
                let conn = zbus::connection::Builder::address(address.as_str())
                    .build()
                    .await
                    .ok()?;
                let proxy = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
                let name = zbus::names::BusName::try_from(otpgate_proto::BUS_NAME).ok()?;
                proxy.name_has_owner(name).await.ok()
            })
            .unwrap_or(false)
        };
        let mut exited = false;
        let up = otpgate_tests::wait_until(Duration::from_secs(120), || {
            exited = d
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            exited || has_owner(bus)
        });
        if !up || exited {
            let log = fs::read_to_string(&d.log_path).unwrap_or_default();
            d.stop();
            return Err(format!(
                "otpgated did not start: {}",
                log.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            ));
        }
        Ok(d)
    }

    /// SIGTERM (a clean stop: the journal is checkpointed), SIGKILL after
    /// 60 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            otpgate_tests::wait_or_kill(&mut c, Duration::from_secs(60));
        }
    }
}

impl Drop for Otpgated {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Everything one N needs: the otpgated instances, secrets, PAM confdir,
/// states.
pub struct Setup {
    pub users: usize,
    /// One per otpgate row kind that could be started.
    pub instances: Vec<Instance>,
    pub _dir: TestDir,
    pub _trusted: TestDir,
    pub private: PathBuf,
    pub secrets: Vec<(String, String)>,
    pub rss_after_enrol_kib: u64,
    /// Row kinds that could not be set up, and why.
    pub skipped: Vec<(Module, String)>,
}

impl Setup {
    pub fn confdir(&self) -> PathBuf {
        self.private.join("pam.d")
    }
    /// The secrets the workers of `m` log in with: the fleet enrolled its
    /// users itself, so its secrets are its own.
    pub fn secrets_path(&self, m: Module) -> PathBuf {
        if m == Module::OtpgateFleet {
            self.private.join(format!("secrets-{}", m.file_name()))
        } else {
            self.private.join("secrets")
        }
    }
    pub fn state_path(&self, m: Module) -> PathBuf {
        self.private.join(format!("state-{}", m.file_name()))
    }
    pub fn instance(&self, m: Module) -> Option<&Instance> {
        self.instances.iter().find(|i| i.module == m)
    }
    pub fn ga_dir(&self) -> PathBuf {
        self._dir.join("ga")
    }
}

pub fn security_dir() -> PathBuf {
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

/// `cp -a` of a daemon's state and key into another directory.
fn copy_state(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for f in ["state", "master.key"] {
        let st = Command::new("cp")
            .arg("-a")
            .arg(from.join(f))
            .arg(to.join(f))
            .status()
            .map_err(|e| format!("cp: {e}"))?;
        if !st.success() {
            return Err(format!("cp -a {} failed", from.join(f).display()));
        }
    }
    Ok(())
}

pub fn setup(
    n: usize,
    modules: &[Module],
    sec: &Path,
    threads: usize,
    fleet: bool,
) -> Result<Setup, String> {
    let dir = TestDir::new("bench");
    // The module accepts only sockets whose directories are root's alone
    // (not /tmp): bus and direct sockets live under /run/otpgate-tests.
    let trusted = TestDir::trusted("bench-sockets");
    let private = dir.join("private");
    fs::create_dir(&private).map_err(|e| e.to_string())?;
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..n).map(|i| user_name(PREFIX, i)).collect();

    // otpgate: Enroll + Confirm over D-Bus, as root, like `otpgate enroll`,
    // into the dbus-daemon instance; the other instances get a copy of its
    // state and key (enrolling 100,000 users takes minutes).
    let bus = Bus::start();
    let d_bus = dir.join(&format!("otpgated-{}", Module::OtpgateBus.file_name()));
    fs::create_dir(&d_bus).map_err(|e| e.to_string())?;
    let mut daemon = Otpgated::start(&d_bus, &bus.address, NO_PAM_SOCKET)?;
    let t = Instant::now();
    let enrolled = enrol_otpgate(&bus.address, &names, threads)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "setup: otpgate enrolled {n} users over D-Bus in {secs:.1} s ({:.0}/s, {threads} threads)",
        n as f64 / secs
    );
    std::thread::sleep(Duration::from_secs(1));
    let (rss, _) = rss_kib(daemon.pid);
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
    let wanted: Vec<Module> = Module::OTPGATES
        .into_iter()
        .filter(|m| modules.contains(m) && *m != Module::OtpgateFleet)
        .collect();
    let mut instances = Vec::new();
    let mut skipped = Vec::new();
    daemon.stop();
    let t = Instant::now();
    for m in [Module::Otpgate, Module::OtpgateBroker] {
        if wanted.contains(&m) {
            copy_state(&d_bus, &dir.join(&format!("otpgated-{}", m.file_name())))?;
        }
    }
    println!(
        "setup: copied otpgated's state for the other instances in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut bus = Some(bus);
    for m in wanted {
        let d = dir.join(&format!("otpgated-{}", m.file_name()));
        let started: Result<(BusKind, Otpgated, Option<PathBuf>), String> = match m {
            Module::OtpgateBus => {
                let b = bus.take().expect("one dbus-daemon instance");
                Otpgated::start(&d, &b.address, NO_PAM_SOCKET)
                    .map(|dm| (BusKind::DbusDaemon(b), dm, None))
            }
            Module::Otpgate => {
                // The direct socket's directory: root's, 0700.
                let sdir = trusted.join("pam");
                let sock = sdir.join("pam.socket");
                let b = Bus::start();
                fs::create_dir(&sdir)
                    .and_then(|_| fs::set_permissions(&sdir, fs::Permissions::from_mode(0o700)))
                    .map_err(|e| format!("{}: {e}", sdir.display()))
                    .and_then(|_| {
                        Otpgated::start(
                            &d,
                            &b.address,
                            &format!("[pam]\nsocket = \"{}\"\n", sock.display()),
                        )
                    })
                    .map(|dm| (BusKind::DbusDaemon(b), dm, Some(sock)))
            }
            Module::OtpgateBroker => Broker::start().and_then(|b| {
                Otpgated::start(&d, &b.address, NO_PAM_SOCKET)
                    .map(|dm| (BusKind::Broker(b), dm, None))
            }),
            _ => unreachable!("only otpgate instances"),
        };
        match started {
            Ok((bk, dm, sock)) => {
                st.save(&private.join(format!("state-{}", m.file_name())))?;
                instances.push(Instance {
                    module: m,
                    bus: bk,
                    daemon: dm,
                    pam_socket: sock,
                    fleet: None,
                });
            }
            Err(e) => {
                println!("setup: {}: not measured: {e}", m.name());
                skipped.push((m, e));
            }
        }
    }
    write_secrets(&private.join("secrets"), &secrets)?;
    if fleet {
        match setup_fleet(&dir, &trusted, &names, threads) {
            Ok((inst, fleet_secrets, fleet_state)) => {
                write_secrets(
                    &private.join(format!("secrets-{}", inst.module.file_name())),
                    &fleet_secrets,
                )?;
                fleet_state.save(&private.join(format!("state-{}", inst.module.file_name())))?;
                instances.push(inst);
            }
            Err(e) => {
                println!("setup: {}: not measured: {e}", Module::OtpgateFleet.name());
                skipped.push((Module::OtpgateFleet, e));
            }
        }
    }

    // google-authenticator as it is normally deployed: each user's own
    // secret file, owned by the user, in a directory of the user's (the
    // module writes a temporary file next to it as the user), found
    // through the user's passwd entry. So it looks the user up
    // (getpwnam + getpwuid) on every login, as otpgated does: `user=root`
    // would skip that and read root-owned files. TOTP, no reuse, ±1 step.
    let ga = dir.join("ga");
    if modules.contains(&Module::GoogleAuthenticator) {
        let t = Instant::now();
        fs::create_dir(&ga).map_err(|e| e.to_string())?;
        fs::set_permissions(&ga, fs::Permissions::from_mode(0o711)).map_err(|e| e.to_string())?;
        // The module opens the file as the user: every directory above
        // must let others through, or every login fails.
        for d in ga.ancestors().skip(1) {
            let mode = fs::metadata(d)
                .map_err(|e| e.to_string())?
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                return Err(format!(
                    "{} is mode {:o}: google-authenticator, reading its files as each user, could not get through (set TMPDIR to a directory others may traverse)",
                    d.display(),
                    mode & 0o7777
                ));
            }
        }
        for (i, (u, s)) in secrets.iter().enumerate() {
            let uid = nix::unistd::Uid::from_raw(UID_BASE + i as u32);
            let gid = nix::unistd::Gid::from_raw(GID);
            let home = ga.join(u);
            fs::create_dir(&home).map_err(|e| format!("{}: {e}", home.display()))?;
            fs::set_permissions(&home, fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
            let f = home.join(".google_authenticator");
            write_private(
                &f,
                format!("{s}\n\" TOTP_AUTH\n\" DISALLOW_REUSE\n\" WINDOW_SIZE 3\n").as_bytes(),
            )
            .map_err(|e| e.to_string())?;
            for p in [&home, &f] {
                nix::unistd::chown(p.as_path(), Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        State::new(n)
            .save(&private.join(format!("state-{}", Module::GoogleAuthenticator.file_name())))?;
        println!(
            "setup: google-authenticator: {n} users' own secret files in {:.1} s",
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
        State::new(n).save(&private.join(format!("state-{}", Module::PamOath.file_name())))?;
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
    let mut services = vec![
        (
            Module::GoogleAuthenticator,
            format!(
                "auth required {} secret={}/${{USER}}/.google_authenticator\n",
                sec.join("pam_google_authenticator.so").display(),
                ga.display()
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
    for i in &instances {
        if let Some(f) = &i.fleet {
            // One service per daemon: a worker logs in through one of them.
            for (d, (bus, sock)) in [
                (
                    i.bus.address(),
                    i.pam_socket.as_deref().unwrap_or(Path::new("")),
                ),
                (f.bus.address(), f.pam_socket.as_path()),
            ]
            .into_iter()
            .enumerate()
            {
                fs::write(
                    confdir.join(Module::fleet_service(d)),
                    format!(
                        "auth required {} bus={bus} socket={}\n",
                        module_so.display(),
                        sock.display()
                    ),
                )
                .map_err(|e| e.to_string())?;
            }
            continue;
        }
        let opts = match &i.pam_socket {
            Some(sock) => format!("socket={}", sock.display()),
            None => "bus_only".to_string(),
        };
        services.push((
            i.module,
            format!(
                "auth required {} bus={} {opts}\n",
                module_so.display(),
                i.bus.address()
            ),
        ));
    }
    for (m, text) in services {
        fs::write(confdir.join(m.service()), text).map_err(|e| e.to_string())?;
    }
    Ok(Setup {
        users: n,
        instances,
        _dir: dir,
        _trusted: trusted,
        private,
        secrets,
        rss_after_enrol_kib: rss,
        skipped,
    })
}

fn write_secrets(path: &Path, secrets: &[(String, String)]) -> Result<(), String> {
    let mut lines = String::with_capacity(secrets.len() * 48);
    for (u, s) in secrets {
        lines.push_str(&format!("{u} {s}\n"));
    }
    write_private(path, lines.as_bytes()).map_err(|e| e.to_string())
}

/// The fleet's instance, the secrets its daemons handed out, and the
/// generator's state of its users.
type FleetSetup = (Instance, Vec<(String, String)>, State);

/// The fleet: a private PostgreSQL cluster (its own initdb, loopback port,
/// `fsync=on`), and two otpgated, each with its own bus, direct socket and
/// state directory, both on that database with one key file. The users are
/// enrolled once, through the first; the second must list them all.
fn setup_fleet(
    dir: &TestDir,
    trusted: &TestDir,
    names: &[String],
    threads: usize,
) -> Result<FleetSetup, String> {
    let m = Module::OtpgateFleet;
    let t = Instant::now();
    // The harness fails by panicking; here that is a row not measured.
    // pg_stat_statements counts the statements of a login for the
    // round-trip figures (its cost per statement is in the server's CPU).
    let (pg, db) = std::panic::catch_unwind(|| {
        let mut pg = PgServer::start();
        pg.psql(
            "postgres",
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        );
        pg.restart();
        let db = pg.fleet_db();
        pg.psql("otpgate", "CREATE EXTENSION pg_stat_statements");
        (pg, db)
    })
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the PostgreSQL cluster did not start".into())
    })?;
    println!(
        "setup: {}: PostgreSQL cluster on 127.0.0.1:{} ready in {:.1} s",
        m.name(),
        pg.port(),
        t.elapsed().as_secs_f64()
    );
    // The first daemon creates the key; the second must start with the
    // same one.
    let key_file = dir.join("fleet.key");
    let mut started: Vec<(Bus, Otpgated, PathBuf)> = Vec::new();
    for d in 0..2 {
        let ddir = dir.join(&format!("otpgated-{}-{d}", m.file_name()));
        let sdir = trusted.join(&format!("pam-fleet-{d}"));
        let sock = sdir.join("pam.socket");
        for p in [&ddir, &sdir] {
            fs::create_dir(p)
                .and_then(|_| fs::set_permissions(p, fs::Permissions::from_mode(0o700)))
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let storage = db.storage_toml_with(
            &db.url("127.0.0.1", "disable"),
            &key_file,
            &format!(
                "path = \"{}\"\ntimeout_ms = 2000\npool_size = 8",
                Otpgated::state_dir(&ddir).display()
            ),
        );
        let b = Bus::start();
        let dm = Otpgated::start_with(
            &ddir,
            &b.address,
            &storage,
            &format!("[pam]\nsocket = \"{}\"\n", sock.display()),
        )
        .map_err(|e| format!("daemon {d}: {e}"))?;
        started.push((b, dm, sock));
    }
    let t = Instant::now();
    let enrolled = enrol_otpgate(&started[0].0.address, names, threads)?;
    let enrol_secs = t.elapsed().as_secs_f64();
    println!(
        "setup: {}: enrolled {} users through the first daemon in {enrol_secs:.1} s ({:.0}/s, {threads} threads)",
        m.name(),
        names.len(),
        names.len() as f64 / enrol_secs
    );
    let listed = list_users(&started[1].0.address)?;
    println!(
        "setup: {}: the second daemon lists {listed} enrolled users",
        m.name()
    );
    if listed != names.len() {
        return Err(format!(
            "the second daemon lists {listed} users, not the {} enrolled through the first",
            names.len()
        ));
    }
    let mut st = State::new(names.len());
    for (i, (_, step)) in enrolled.iter().enumerate() {
        st.last_step[i] = *step;
    }
    let secrets = names
        .iter()
        .cloned()
        .zip(enrolled.into_iter().map(|(s, _)| s))
        .collect();
    let (b1, d1, s1) = started.pop().expect("two daemons");
    let (b0, d0, s0) = started.pop().expect("two daemons");
    let inst = Instance {
        module: m,
        bus: BusKind::DbusDaemon(b0),
        daemon: d0,
        pam_socket: Some(s0),
        fleet: Some(Fleet {
            bus: BusKind::DbusDaemon(b1),
            daemon: d1,
            pam_socket: s1,
            listed_by_second: listed,
            enrol_secs,
            pg,
        }),
    };
    Ok((inst, secrets, st))
}

/// How many enrolled users otpgated on `address` lists.
fn list_users(address: &str) -> Result<usize, String> {
    zruntime::block_on(async {
        let conn = zbus::connection::Builder::address(address)
            .method_timeout(Duration::from_secs(120))
            .build()
            .await
            .map_err(|e| format!("connect {address}: {e}"))?;
        let admin = otpgate_proto::AdminProxy::new(&conn)
            .await
            .map_err(|e| e.to_string())?;
        let n = admin
            .list_users()
            .await
            .map_err(|e| format!("ListUsers: {e}"))?
            .len();
        let _ = conn.close().await;
        Ok(n)
    })
}

/// Enrols `names` into otpgated; returns (base32 secret, confirming step)
/// per user, in order.
pub fn enrol_otpgate(
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

pub fn enrol_chunk(address: &str, names: &[String]) -> Result<Vec<(String, u64)>, String> {
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
