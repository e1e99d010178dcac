//! A private dbus-broker, standalone, without systemd as PID 1.
//!
//! `dbus-broker` itself only speaks to a controller over a socketpair;
//! `dbus-broker-launch` is that controller, reads the same XML bus config
//! as dbus-daemon (so the real otpgate policy file is `<include>`d), and
//! forks the broker. Outside systemd it needs three things:
//! - the listening socket passed the way systemd passes it (`LISTEN_FDS`,
//!   `LISTEN_PID`, fd 3): `systemd-socket-activate -l PATH` binds PATH and
//!   execs the launcher with them (the config's `<listen>` is ignored);
//! - journald's socket, /run/systemd/journal/socket, to connect its log to
//!   (fatal if missing: the run provides a discarding listener, see
//!   logsink.rs);
//! - `DBUS_SYSTEM_BUS_ADDRESS` naming the broker's own socket: with
//!   `--scope system` the launcher connects to "the system bus" to
//!   subscribe to systemd's signals (the call fails without systemd, which
//!   only matters for bus activation, unused here).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use otpgate_tests::TestDir;

pub const LAUNCHER: &str = "dbus-broker-launch";
pub const ACTIVATOR: &str = "systemd-socket-activate";

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

pub struct Broker {
    pub dir: TestDir,
    pub address: String,
    pub socket: PathBuf,
    /// dbus-broker-launch (the process started) and dbus-broker (its child).
    pub launcher_pid: i32,
    pub broker_pid: i32,
    child: Child,
}

impl Broker {
    pub fn start() -> Result<Broker, String> {
        for p in [LAUNCHER, ACTIVATOR] {
            if !have(p) {
                return Err(format!(
                    "{p} is missing: apt-get install dbus-broker systemd (bench/run.sh does)"
                ));
            }
        }
        let dir = TestDir::trusted("broker");
        let socket = dir.join("bus.sock");
        let config = dir.join("bus.conf");
        fs::write(
            &config,
            otpgate_tests::bus_config(&socket, &otpgate_tests::otpgate_policy()),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let address = format!("unix:path={}", socket.display());
        let log_path = dir.join("broker.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(ACTIVATOR)
            .arg("-E")
            .arg(format!("DBUS_SYSTEM_BUS_ADDRESS={address}"))
            .arg("-l")
            .arg(&socket)
            .arg(LAUNCHER)
            .arg("--scope")
            .arg("system")
            .arg("--config-file")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {ACTIVATOR}: {e}"))?;
        let launcher_pid = child.id() as i32;
        let mut broker_pid = 0;
        let up = otpgate_tests::wait_until(Duration::from_secs(20), || {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return true;
            }
            // systemd-socket-activate execs the launcher at the first
            // connection: answering is what starts it.
            if !(socket.exists() && answers(&address)) {
                return false;
            }
            broker_pid = children_of(launcher_pid)
                .into_iter()
                .find(|&p| comm(p) == "dbus-broker")
                .unwrap_or(0);
            broker_pid != 0
        });
        let mut b = Broker {
            dir,
            address,
            socket,
            launcher_pid,
            broker_pid,
            child,
        };
        if !up || matches!(b.child.try_wait(), Ok(Some(_))) || broker_pid == 0 {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            b.stop();
            return Err(format!(
                "dbus-broker did not come up: {}",
                log.lines().rev().take(6).collect::<Vec<_>>().join(" | ")
            ));
        }
        let _ = fs::set_permissions(&b.socket, fs::Permissions::from_mode(0o666));
        Ok(b)
    }

    fn stop(&mut self) {
        let _ = kill(Pid::from_raw(self.launcher_pid), Signal::SIGTERM);
        if otpgate_tests::wait_or_kill(&mut self.child, Duration::from_secs(3)).is_none() {
            eprintln!("otpgate-bench: dbus-broker-launch ignored SIGTERM; killed");
        }
        // The broker exits when its controller (the launcher) is gone; a
        // broker that outlived it is stopped by its pid.
        if self.broker_pid != 0 && comm(self.broker_pid) == "dbus-broker" {
            let end = std::time::Instant::now() + Duration::from_secs(2);
            while comm(self.broker_pid) == "dbus-broker" && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            if comm(self.broker_pid) == "dbus-broker" {
                let _ = kill(Pid::from_raw(self.broker_pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answers(address: &str) -> bool {
    let address = address.to_string();
    zruntime::block_on(async move {
        let conn = zbus::connection::Builder::address(address.as_str())
            .build()
            .await
            .ok()?;
        let proxy = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
        proxy.get_id().await.ok()
    })
    .is_some()
}

/// The command name of a process ("" if it is gone).
pub fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// The pids whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| ppid(p) == Some(pid))
        .collect()
}

fn ppid(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The file system of `path`, as `statfs` names it, with its device.
pub fn fs_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(path).map(|m| m.dev()).unwrap_or(0);
    let kind = nix::sys::statfs::statfs(path)
        .map(|s| {
            let t = s.filesystem_type();
            if t == nix::sys::statfs::EXT4_SUPER_MAGIC {
                "ext4".to_string()
            } else if t == nix::sys::statfs::TMPFS_MAGIC {
                "tmpfs".to_string()
            } else if t == nix::sys::statfs::BTRFS_SUPER_MAGIC {
                "btrfs".to_string()
            } else if t == nix::sys::statfs::XFS_SUPER_MAGIC {
                "xfs".to_string()
            } else {
                format!("fs type {:#x}", t.0)
            }
        })
        .unwrap_or_else(|_| "?".into());
    format!(
        "{kind} (device {}:{})",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    )
}
