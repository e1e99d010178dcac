//! A real sshd for the PAM tests: on 127.0.0.1 on a free port, started
//! through a symlink so that its PAM service name is the symlink's (a
//! private /etc/pam.d file; /etc/pam.d/sshd is not touched), and an ssh
//! client that answers every prompt through SSH_ASKPASS, without a terminal.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, Gid, Pid, Uid};
use otpgate_tests::*;

use super::{run_with_input, Outcome};

/// The authentication part of an sshd_config.
pub const KEY_AND_CODE: &str = "KbdInteractiveAuthentication yes\n\
     PasswordAuthentication no\n\
     PubkeyAuthentication yes\n\
     AuthenticationMethods publickey,keyboard-interactive\n";

/// A public key alone: sshd never runs the PAM `auth` stack, only the
/// `account` one (and the session).
pub const KEY_ONLY: &str = "KbdInteractiveAuthentication no\n\
     PasswordAuthentication no\n\
     PubkeyAuthentication yes\n";

/// One-prompt clients: sshd answers PAM's one echo-off prompt with the
/// client's password string.
pub const PASSWORD_ONLY: &str = "KbdInteractiveAuthentication no\n\
     PasswordAuthentication yes\n\
     PubkeyAuthentication no\n";

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Sshd {
    /// Starts sshd for `user` only, as `program_name` (its PAM service),
    /// with `auth_config` ([`KEY_AND_CODE`], [`PASSWORD_ONLY`]).
    pub fn start(dir: &TestDir, user: &TestUser, program_name: &str, auth_config: &str) -> Sshd {
        // Privilege separation needs this directory (normally made by the
        // service manager); it is the same for every sshd, so it stays.
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let host_key = dir.join("host_key");
        keygen(&host_key);
        let port = free_port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {}\n\
                 PidFile none\n\
                 UsePAM yes\n\
                 {auth_config}\
                 AuthorizedKeysFile .ssh/authorized_keys\n\
                 StrictModes yes\n\
                 PermitRootLogin no\n\
                 AllowUsers {}\n\
                 LogLevel VERBOSE\n",
                host_key.display(),
                user.name
            ),
        )
        .expect("write sshd_config");
        // sshd names its PAM service after the program it was started as.
        let link = dir.join(program_name);
        std::os::unix::fs::symlink("/usr/sbin/sshd", &link).expect("symlink sshd");
        let log = dir.join("sshd.log");
        let child = Command::new(&link)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("sshd log"))
            .spawn()
            .expect("start sshd (apt-get install openssh-server)");
        let sshd = Sshd { child, port, log };
        // Its own line, not only an open port: an sshd that lost the port
        // to another process says so and exits.
        let listening = format!("Server listening on 127.0.0.1 port {port}.");
        let up = wait_until(Duration::from_secs(20), || {
            sshd.log_text().contains(&listening) && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "sshd did not listen on {port}: {}", sshd.log_text());
        sshd
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ssh user@127.0.0.1 true` with the methods `preferred` (and the key,
    /// if given), answering each prompt with `answer` through SSH_ASKPASS.
    /// Returns the outcome and the prompts the askpass program was shown.
    pub fn login(
        &self,
        dir: &TestDir,
        user: &TestUser,
        key: Option<&Path>,
        preferred: &str,
        answer: &str,
    ) -> (Outcome, String) {
        self.login_logging(dir, user, key, preferred, answer, "ERROR")
    }

    /// [`Sshd::login`] with the client's `LogLevel`: at `INFO` it prints
    /// what sshd sends besides prompts (PAM's messages, as a banner or a
    /// keyboard-interactive instruction).
    pub fn login_logging(
        &self,
        dir: &TestDir,
        user: &TestUser,
        key: Option<&Path>,
        preferred: &str,
        answer: &str,
        client_log_level: &str,
    ) -> (Outcome, String) {
        let answer_file = dir.join("answer");
        let prompts = dir.join("prompts");
        fs::write(&answer_file, format!("{answer}\n")).expect("answer file");
        let _ = fs::remove_file(&prompts);
        let askpass = dir.join("askpass");
        fs::write(
            &askpass,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\ncat '{}'\n",
                prompts.display(),
                answer_file.display()
            ),
        )
        .expect("askpass");
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).expect("chmod askpass");

        let mut cmd = Command::new("setsid");
        cmd.arg("-w")
            .arg("ssh")
            .args(["-F", "/dev/null", "-p", &self.port.to_string()]);
        if let Some(key) = key {
            cmd.arg("-i").arg(key).args(["-o", "IdentitiesOnly=yes"]);
        }
        cmd.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=no",
            "-o",
            &format!("PreferredAuthentications={preferred}"),
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=10",
            "-o",
            &format!("LogLevel={client_log_level}"),
        ])
        .arg(format!("{}@127.0.0.1", user.name))
        .arg("true")
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", "none")
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .env_remove("SSH_AUTH_SOCK");
        let o = run_with_input(cmd, "", Duration::from_secs(60));
        (o, fs::read_to_string(&prompts).unwrap_or_default())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "otpgate-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen (apt-get install openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // An unusual range, away from the ports services and other tests use.
    // Each call starts past the ports this process handed out before, so
    // that two tests of one binary never both pick a port in the time
    // between this check and sshd's bind; the pid spreads processes apart.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SLOTS: u32 = 1000 / 7;
    let start = std::process::id() + NEXT.fetch_add(1, Ordering::SeqCst);
    for i in 0..SLOTS {
        let port = 42000 + ((start + i) % SLOTS) * 7;
        let port = u16::try_from(port).expect("in range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 42000..43000");
}

/// Puts the client's public key in `user`'s ~/.ssh/authorized_keys with the
/// ownership and modes StrictModes wants.
pub fn authorize(user: &TestUser, public_key: &Path) {
    let home = nix::unistd::User::from_name(&user.name)
        .expect("getpwnam")
        .expect("user exists")
        .dir;
    let ssh = home.join(".ssh");
    fs::create_dir_all(&ssh).expect("mkdir ~/.ssh");
    let keys = ssh.join("authorized_keys");
    fs::copy(public_key, &keys).expect("authorized_keys");
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    for (p, mode) in [(&home, 0o755), (&ssh, 0o700), (&keys, 0o600)] {
        chown(p.as_path(), Some(uid), Some(gid)).expect("chown");
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
}
