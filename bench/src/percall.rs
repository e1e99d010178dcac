//! `otpgate-bench per-call [--calls N]`: what one call costs otpgated over
//! the module's direct socket and over the bus, apart from the rest of a
//! login.
//!
//! One otpgated, one private dbus-daemon with the real policy. Each PAM
//! transaction is root logging in with no enrolment and no `nullok`: the
//! module asks `Challenge`, is told "not enrolled" and refuses without a
//! prompt, so a transaction is exactly one call — one new connection to
//! otpgated on the socket path, one connection to the bus and one call
//! through it on the other. otpgated's and the bus's CPU come from
//! /proc/PID/stat, two rounds per path, interleaved.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use otpgate_bench::pam;
use otpgate_bench::procfs::cpu_time_us;
use otpgate_tests::{Bus, TestDir};

use crate::logsink::{self, LogSockets};
use crate::setup::Otpgated;

pub fn per_call(calls: usize) -> Result<(), String> {
    if calls == 0 {
        return Err("--calls must be at least 1".into());
    }
    // As on a real host: otpgated logs through /dev/log.
    let logs = LogSockets::ensure(&[Path::new(logsink::DEV_LOG)])?;
    for line in &logs.lines {
        println!("per-call: {line}");
    }
    let dir = TestDir::new("bench-percall");
    let trusted = TestDir::trusted("bench-percall");
    let sdir = trusted.join("pam");
    let socket = sdir.join("pam.socket");
    fs::create_dir(&sdir)
        .and_then(|_| fs::set_permissions(&sdir, fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("{}: {e}", sdir.display()))?;
    let bus = Bus::start();
    let mut daemon = Otpgated::start(
        &dir.path,
        &bus.address,
        &format!("[pam]\nsocket = \"{}\"\n", socket.display()),
    )?;
    if !otpgate_tests::wait_until(Duration::from_secs(30), || socket.exists()) {
        return Err(format!("otpgated made no {}", socket.display()));
    }

    let confdir = dir.join("pam.d");
    fs::create_dir(&confdir).map_err(|e| e.to_string())?;
    let module = otpgate_tests::pam_module();
    let services = [
        (
            "socket",
            format!("bus={} socket={}", bus.address, socket.display()),
        ),
        ("bus-only", format!("bus={} bus_only", bus.address)),
    ];
    for (name, args) in &services {
        fs::write(
            confdir.join(name),
            format!("auth required {} {args}\n", module.display()),
        )
        .map_err(|e| e.to_string())?;
    }
    // Without it libpam logs a complaint per transaction.
    fs::write(confdir.join("other"), "auth required pam_deny.so\n").map_err(|e| e.to_string())?;

    let c = |s: &str| -> CString { pam::cstring(s) };
    let (confdir_c, user, code) = (c(&confdir.display().to_string()), c("root"), c("000000"));
    for round in 1..=2 {
        for (name, _) in &services {
            let service = c(name);
            let (d0, b0) = (cpu_time_us(daemon.pid), cpu_time_us(bus.pid));
            for _ in 0..calls {
                let o = pam::authenticate(&confdir_c, &service, &user, &code)?;
                if o.rc != pam::PAM_AUTH_ERR || o.prompts != 0 {
                    return Err(format!(
                        "{name}: expected a refusal without a prompt (not enrolled), got {} with {} prompts",
                        pam::strerror(o.rc),
                        o.prompts
                    ));
                }
            }
            let (d1, b1) = (cpu_time_us(daemon.pid), cpu_time_us(bus.pid));
            println!(
                "per-call: round {round} {name:<8} otpgated {:>5} µs/call, bus {:>5} µs/call ({calls} calls)",
                (d1 - d0) / calls as u64,
                (b1 - b0) / calls as u64
            );
        }
    }
    daemon.stop();
    Ok(())
}
