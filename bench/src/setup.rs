//! What a run needs before it measures: the bench's system users, and
//! per N a private bus, the real otpgated with N users enrolled over D-Bus,
//! the peers' secret files, a PAM confdir and the per-user code states.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use otpgate_bench::procfs::rss_kib;
use otpgate_bench::{
    code_at_step, now, secret_hex, totp, user_name, userdb, write_private, State, PERIOD,
};
use otpgate_tests::{Bus, Daemon, TestDir};

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

/// Everything one N needs: bus, daemon, secrets, PAM confdir, states.
pub struct Setup {
    pub users: usize,
    pub bus: Bus,
    pub daemon: Daemon,
    pub _dir: TestDir,
    pub private: PathBuf,
    pub secrets: Vec<(String, String)>,
    pub rss_after_enrol_kib: u64,
}

impl Setup {
    pub fn confdir(&self) -> PathBuf {
        self.private.join("pam.d")
    }
    pub fn secrets_path(&self) -> PathBuf {
        self.private.join("secrets")
    }
    pub fn state_path(&self, m: Module) -> PathBuf {
        self.private.join(format!("state-{}", m.name()))
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

pub fn setup(n: usize, modules: &[Module], sec: &Path, threads: usize) -> Result<Setup, String> {
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
