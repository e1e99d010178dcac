//! A private PostgreSQL server per test, for fleet mode (`[storage] backend =
//! "postgres"`): its own cluster in a test directory, its own loopback port
//! and socket directory, TLS with a test CA, started as a direct child so
//! that the test can stop, restart, freeze and thaw it by pid.
//!
//! Debian's `postgresql` package provides the programs
//! (/usr/lib/postgresql/N/bin); `openssl` makes the certificates.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{output_within, wait_or_kill, wait_until, Run, TestDir};

/// A healthy cluster starts in about a second; a shared CI machine with
/// several at once can take much longer.
pub const PG_START_DEADLINE: Duration = Duration::from_secs(60);

/// How long a fast shutdown (SIGINT) may take before SIGKILL.
const PG_STOP_DEADLINE: Duration = Duration::from_secs(30);

/// One client program (psql, pg_dump, initdb, openssl) at most.
const TOOL_DEADLINE: Duration = Duration::from_secs(120);

/// The database role and database a fleet of daemons shares.
pub const FLEET_ROLE: &str = "otpgate";
pub const FLEET_DB: &str = "otpgate";

/// The newest PostgreSQL's program directory (/usr/lib/postgresql/N/bin).
pub fn pg_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql is missing: apt-get install postgresql (tests/run.sh does)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((n, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/N/bin/postgres: apt-get install postgresql")
}

/// The `postgres` system user the cluster runs as (initdb and postgres
/// refuse root).
fn postgres_ids() -> (u32, u32) {
    let u = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("no postgres user: apt-get install postgresql (tests/run.sh does)");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// A command run as the `postgres` user, with no supplementary groups, in
/// `cwd` (a directory it can enter: initdb complains otherwise).
fn as_postgres(program: &Path, cwd: &Path) -> Command {
    let (uid, gid) = postgres_ids();
    let mut c = Command::new(program);
    c.uid(uid)
        .gid(gid)
        .current_dir(cwd)
        .env("HOME", cwd)
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null());
    c
}

fn chown_postgres(path: &Path, mode: u32) {
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Runs `cmd` under the tool deadline; its stdout, or the test fails with
/// what it printed.
fn run_ok(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = output_within(cmd, TOOL_DEADLINE);
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null()),
        &format!("openssl {}", args.join(" ")),
    );
}

/// A self-signed test CA in `dir`: NAME.crt and NAME.key.
fn make_ca(dir: &Path, name: &str, subject: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let crt = dir.join(format!("{name}.crt"));
    fs::set_permissions(&crt, fs::Permissions::from_mode(0o644)).expect("chmod CA");
    crt
}

/// A server certificate signed by the CA `ca` (in `dir`) that names
/// `localhost` and nothing else: not 127.0.0.1, and its subject's CN is no
/// host name, so a verify-full client checks the SAN alone.
fn make_server_cert(dir: &Path, ca: &str) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=otpgate test database server",
        ],
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    (dir.join("server.crt"), dir.join("server.key"))
}

/// A loopback port nobody listens on right now (it may be taken before the
/// server binds it: [`PgServer`] then tries another).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// The direct children of `pid`, from /proc.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // The command name is in parentheses and may hold
                    // spaces: the fields after its last ')' are fixed.
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// A private PostgreSQL cluster, stopped by pid when dropped.
pub struct PgServer {
    /// Root's: the CA files, the password file, the server's log.
    dir: TestDir,
    /// The postgres user's, 0700: data, socket, the server's key.
    pg_dir: PathBuf,
    data: PathBuf,
    sock_dir: PathBuf,
    bin: PathBuf,
    port: u16,
    log: PathBuf,
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    child: Option<Child>,
    /// Processes stopped by [`PgServer::freeze`], continued by `thaw`.
    frozen: Vec<i32>,
}

impl PgServer {
    /// A new cluster (initdb), started and accepting connections.
    pub fn start() -> PgServer {
        let mut pg = PgServer::prepare("pg");
        let bin = pg.bin.clone();
        let mut initdb = as_postgres(&bin.join("initdb"), &pg.pg_dir);
        initdb
            .arg("-D")
            .arg(&pg.data)
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--username=postgres",
                "--no-instructions",
            ])
            // The data are thrown away with the test: no need to wait for
            // initdb's own fsync of every file.
            .arg("--no-sync");
        run_ok(&mut initdb, "initdb");
        // A standby copies the cluster over a socket connection as the
        // superuser (initdb's "local replication all trust" allows it); the
        // same over loopback TCP for anything that asks for it.
        let hba = pg.data.join("pg_hba.conf");
        let mut text = fs::read_to_string(&hba).expect("read pg_hba.conf");
        text.insert_str(0, "host replication postgres 127.0.0.1/32 trust\n");
        fs::write(&hba, text).expect("write pg_hba.conf");
        pg.start_on_free_port();
        pg
    }

    /// The directories and certificates; no cluster yet.
    fn prepare(label: &str) -> PgServer {
        let dir = TestDir::new(label);
        let pg_dir = dir.join("pg");
        fs::create_dir(&pg_dir).expect("create the cluster directory");
        chown_postgres(&pg_dir, 0o700);
        let sock_dir = pg_dir.join("sock");
        let data = pg_dir.join("data");
        let tls = pg_dir.join("tls");
        for d in [&sock_dir, &tls] {
            fs::create_dir(d).expect("create a cluster subdirectory");
        }
        let ca = make_ca(&dir.path, "ca", "/CN=otpgate test CA");
        let other_ca = make_ca(&dir.path, "other-ca", "/CN=otpgate unrelated test CA");
        fs::copy(&ca, tls.join("ca.crt")).expect("copy CA");
        fs::copy(dir.join("ca.key"), tls.join("ca.key")).expect("copy CA key");
        fs::remove_file(dir.join("ca.key")).expect("remove CA key");
        let (server_cert, server_key) = make_server_cert(&tls, "ca");
        for d in [&sock_dir, &tls] {
            chown_postgres(d, 0o700);
        }
        // The server refuses a key that others can read.
        chown_postgres(&server_key, 0o600);
        chown_postgres(&server_cert, 0o644);
        PgServer {
            log: dir.join("postgres.log"),
            dir,
            pg_dir,
            data,
            sock_dir,
            bin: pg_bin_dir(),
            port: 0,
            ca,
            other_ca,
            server_cert,
            server_key,
            child: None,
            frozen: Vec::new(),
        }
    }

    /// Starts on a fresh port, again on another if the port was taken
    /// between choosing and binding it.
    fn start_on_free_port(&mut self) {
        let mut last = String::new();
        for _ in 0..5 {
            self.port = free_port();
            match self.try_start() {
                Ok(()) => return,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("postgres found no free port in 5 tries: {last}");
    }

    /// Starts postgres on `self.port` and waits until it takes connections.
    fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "postgres is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the postgres log");
        let log_start = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let err = log.try_clone().expect("clone the log");
        let mut cmd = as_postgres(&self.bin.join("postgres"), &self.pg_dir);
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.sock_dir.display()
            ))
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", self.server_cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", self.server_key.display()))
            .args(["-c", "fsync=on", "-c", "max_connections=100"])
            // Several clusters run at once on a small machine.
            .args(["-c", "shared_buffers=16MB"])
            .stdout(log)
            .stderr(err);
        let child = cmd.spawn().expect("start postgres");
        self.child = Some(child);
        let ready = wait_until(PG_START_DEADLINE, || {
            !self.running_now() || self.accepts_connections()
        });
        if ready && self.running_now() {
            return Ok(());
        }
        let text = fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b[(log_start as usize).min(b.len())..]).into_owned())
            .unwrap_or_default();
        self.kill_now();
        Err(format!(
            "postgres did not take connections on 127.0.0.1:{} within {PG_START_DEADLINE:?}; its log:\n{text}",
            self.port
        ))
    }

    fn running_now(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether the server answers on its TCP port (pg_isready: accepting).
    pub fn accepts_connections(&self) -> bool {
        let mut c = Command::new(self.bin.join("pg_isready"));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-t",
            "2",
            "-q",
        ])
        .stdin(Stdio::null());
        Run::new(&mut c)
            .within(Duration::from_secs(10))
            .is_ok_and(|f| f.status.success())
    }

    fn kill_now(&mut self) {
        self.thaw();
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// The postmaster's pid (0 when stopped).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server's unix socket is (for clients of the superuser).
    pub fn socket_dir(&self) -> &Path {
        &self.sock_dir
    }

    /// The server's log so far (printed by tests that fail).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The CA that signed the server's certificate (root's, readable).
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// A CA that signed nothing the server has.
    pub fn other_ca_file(&self) -> &Path {
        &self.other_ca
    }

    /// Fast shutdown (SIGINT) by pid; SIGKILL if it has not ended by the
    /// deadline. A frozen server is thawed first, or it could not stop.
    pub fn stop(&mut self) {
        self.thaw();
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGINT);
            if wait_or_kill(&mut c, PG_STOP_DEADLINE).is_none() {
                eprintln!("postgres on port {} ignored SIGINT; killed", self.port);
            }
        }
    }

    /// Stopped and started again: same data, same port.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.try_start() {
            panic!("restart: {e}");
        }
    }

    /// Stops (SIGSTOP) the postmaster and every process it started: the
    /// server still holds its port, but answers nothing.
    pub fn freeze(&mut self) {
        let pid = self.pid();
        assert!(pid > 0, "freeze: postgres is not running");
        // The postmaster first, so that it forks nothing new meanwhile.
        kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP postgres");
        self.frozen.push(pid);
        for child in children_of(pid) {
            if kill(Pid::from_raw(child), Signal::SIGSTOP).is_ok() {
                self.frozen.push(child);
            }
        }
    }

    /// Continues (SIGCONT) what [`PgServer::freeze`] stopped.
    pub fn thaw(&mut self) {
        for pid in self.frozen.drain(..).rev() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }

    /// Runs `sql` in database `db` as the superuser over the unix socket;
    /// the unaligned, tuples-only output (`psql -At`). The SQL goes
    /// through stdin, so a password in it is in no process's arguments.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`PgServer::psql`] that reports a failure instead of failing.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        self.try_psql_within(db, sql, TOOL_DEADLINE)
    }

    /// [`PgServer::try_psql`] killed (an error) past `deadline`: for a
    /// server that may not answer.
    pub fn try_psql_within(
        &self,
        db: &str,
        sql: &str,
        deadline: Duration,
    ) -> Result<String, String> {
        let mut c = Command::new(self.bin.join("psql"));
        c.arg("-h")
            .arg(&self.sock_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
        let f = Run::new(&mut c)
            .input(sql.as_bytes())
            .within(deadline)
            .map_err(|e| e.to_string())?;
        if f.status.success() {
            Ok(String::from_utf8_lossy(&f.stdout).trim_end().to_string())
        } else {
            Err(format!(
                "psql in {db} failed ({}): {}",
                f.status,
                String::from_utf8_lossy(&f.stderr).trim()
            ))
        }
    }

    /// `pg_dump` of `db` in plain SQL: everything the database holds, as
    /// an attacker with a copy of it would see it.
    pub fn dump(&self, db: &str) -> Vec<u8> {
        let mut c = Command::new(self.bin.join("pg_dump"));
        c.arg("-h")
            .arg(&self.sock_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres"])
            .args(["--format=plain", "--no-password", db])
            .stdin(Stdio::null());
        run_ok(&mut c, "pg_dump")
    }

    /// The fleet's role and database, made the first time: role `otpgate`
    /// with a random password (in a root-owned 0600 file) owning database
    /// `otpgate`.
    pub fn fleet_db(&self) -> FleetDb {
        let password_file = self.dir.join("fleet.password");
        if !password_file.exists() {
            let password = random_hex(24);
            // Written before the role exists, so that no test can see a
            // role whose password it cannot read.
            write_secret_file(&password_file, &password);
            self.psql(
                "postgres",
                &format!(
                    "CREATE ROLE {FLEET_ROLE} LOGIN PASSWORD '{password}';\n\
                     CREATE DATABASE {FLEET_DB} OWNER {FLEET_ROLE};\n"
                ),
            );
        }
        FleetDb {
            port: self.port,
            password_file,
        }
    }

    /// A hot standby of this server: a copy (pg_basebackup -R) that follows
    /// it read-only on its own port (`SELECT pg_is_in_recovery()` is `t`).
    pub fn start_standby(&self) -> PgServer {
        let mut standby = PgServer::prepare("pg-standby");
        let mut c = as_postgres(&self.bin.join("pg_basebackup"), &standby.pg_dir);
        c.arg("-h")
            .arg(&self.sock_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-D"])
            .arg(&standby.data)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        run_ok(&mut c, "pg_basebackup");
        standby.start_on_free_port();
        let in_recovery = wait_until(PG_START_DEADLINE, || {
            standby
                .try_psql("postgres", "SELECT pg_is_in_recovery()")
                .as_deref()
                == Ok("t")
        });
        assert!(
            in_recovery,
            "the standby is not in recovery; its log:\n{}",
            standby.log()
        );
        standby
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The role and database of a fleet on one [`PgServer`]: what a daemon's
/// `[storage]` section points at.
#[derive(Debug, Clone)]
pub struct FleetDb {
    port: u16,
    password_file: PathBuf,
}

impl FleetDb {
    /// `postgres://otpgate@HOST:PORT/otpgate?sslmode=MODE`, no password.
    pub fn url(&self, host: &str, sslmode: &str) -> String {
        format!(
            "postgres://{FLEET_ROLE}@{host}:{}/{FLEET_DB}?sslmode={sslmode}",
            self.port
        )
    }

    /// [`FleetDb::url`] with `&sslrootcert=ROOT`.
    pub fn url_with_root(&self, host: &str, sslmode: &str, root: &Path) -> String {
        format!("{}&sslrootcert={}", self.url(host, sslmode), root.display())
    }

    /// The root-owned 0600 file with the role's password.
    pub fn password_file(&self) -> &Path {
        &self.password_file
    }

    /// The role's password (for a test's own client, through the
    /// environment, never arguments).
    pub fn password(&self) -> String {
        fs::read_to_string(&self.password_file)
            .expect("read the fleet password")
            .trim()
            .to_string()
    }

    /// The `[storage]` section of a daemon of this fleet, over plain TCP to
    /// 127.0.0.1.
    pub fn storage_toml(&self, key_file: &Path) -> String {
        self.storage_toml_with(&self.url("127.0.0.1", "disable"), key_file, "")
    }

    /// The `[storage]` section with this `url` and `extra` lines (e.g.
    /// `timeout_ms = 1000`, or `path = "…"` for migrate-store).
    pub fn storage_toml_with(&self, url: &str, key_file: &Path, extra: &str) -> String {
        format!(
            "[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\npassword_file = \"{}\"\n\
             key_file = \"{}\"\n{extra}\n",
            self.password_file.display(),
            key_file.display()
        )
    }
}

/// `n` random bytes as lowercase hex (from the kernel's generator).
fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A root-owned file only root can read.
fn write_secret_file(path: &Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents.as_bytes()).expect("write secret file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod secret file");
}

/// psql over TCP with a libpq connection string (`host=… sslmode=…`), the
/// password through the environment: what a client of the fleet's role
/// gets, TLS checks included. Its output, or libpq's complaint.
pub fn psql_conninfo(conninfo: &str, password: &str, sql: &str) -> Result<String, String> {
    let mut c = Command::new(pg_bin_dir().join("psql"));
    c.arg(conninfo)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10");
    let f = Run::new(&mut c)
        .input(sql.as_bytes())
        .within(TOOL_DEADLINE)
        .map_err(|e| e.to_string())?;
    if f.status.success() {
        Ok(String::from_utf8_lossy(&f.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&f.stderr).trim().to_string())
    }
}
