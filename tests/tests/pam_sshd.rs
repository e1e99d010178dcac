//! The module in a real sshd: public key first, then the code through
//! keyboard-interactive (PAM). sshd runs on 127.0.0.1 on a free port,
//! started through a symlink so that its PAM service name is the symlink's
//! (a private /etc/pam.d file; /etc/pam.d/sshd is not touched). The client
//! answers the prompt through SSH_ASKPASS, without a terminal.

mod pam_common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, Gid, Pid, Uid};
use otpgate_tests::*;
use pam_common::*;

struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
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
    // An unusual range, away from the ports services and other tests use.
    for port in (42000..43000).step_by(7) {
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 42000..43000");
}

/// Puts the client's public key in `user`'s ~/.ssh/authorized_keys with the
/// ownership and modes StrictModes wants.
fn authorize(user: &TestUser, public_key: &Path) {
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

fn start_sshd(dir: &TestDir, user: &TestUser, program_name: &str) -> Sshd {
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
             KbdInteractiveAuthentication yes\n\
             PasswordAuthentication no\n\
             PubkeyAuthentication yes\n\
             AuthenticationMethods publickey,keyboard-interactive\n\
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
    let up = wait_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "sshd did not listen on {port}: {}",
        fs::read_to_string(&sshd.log).unwrap_or_default()
    );
    sshd
}

/// `ssh user@127.0.0.1 true` with the key, answering the keyboard-interactive
/// prompt with `code` through SSH_ASKPASS. Returns the outcome and the
/// prompts the askpass program was shown.
fn ssh_login(
    dir: &TestDir,
    sshd: &Sshd,
    user: &TestUser,
    key: &Path,
    code: &str,
) -> (Outcome, String) {
    let code_file = dir.join("code");
    let prompts = dir.join("prompts");
    fs::write(&code_file, format!("{code}\n")).expect("code file");
    let _ = fs::remove_file(&prompts);
    let askpass = dir.join("askpass");
    fs::write(
        &askpass,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\ncat '{}'\n",
            prompts.display(),
            code_file.display()
        ),
    )
    .expect("askpass");
    fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).expect("chmod askpass");

    let mut cmd = Command::new("setsid");
    cmd.arg("-w")
        .arg("ssh")
        .args(["-F", "/dev/null", "-p", &sshd.port.to_string(), "-i"])
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=no",
            "-o",
            "PreferredAuthentications=publickey,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
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

#[test]
fn ssh_with_key_and_valid_code_logs_in_and_wrong_code_does_not() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-pam-ssh");
    let e = enroll(&bus, &user.name);

    let dir = TestDir::new("sshd");
    let key = dir.join("id_ed25519");
    keygen(&key);
    authorize(&user, &dir.join("id_ed25519.pub"));

    let service = unique("sshd");
    let _pam = EtcFile::write(
        format!("/etc/pam.d/{service}"),
        &service_text(&module_line(&bus.module_args())),
        0o644,
    );
    let sshd = start_sshd(&dir, &user, &service);

    let (o, prompts) = ssh_login(&dir, &sshd, &user, &key, &wrong_code(&e.secret));
    assert!(
        !o.success,
        "a wrong code must not log in: {o:#?}\nsshd log:\n{}",
        fs::read_to_string(&sshd.log).unwrap_or_default()
    );
    assert!(
        prompts.contains("Verification code:"),
        "prompts: {prompts:?} {o:#?}"
    );

    let (o, prompts) = ssh_login(
        &dir,
        &sshd,
        &user,
        &key,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert!(
        o.success,
        "key + valid code must log in: {o:#?}\nprompts: {prompts:?}\nsshd log:\n{}",
        fs::read_to_string(&sshd.log).unwrap_or_default()
    );
    assert!(
        prompts.contains("Verification code:"),
        "prompts: {prompts:?}"
    );
    let log = fs::read_to_string(&sshd.log).unwrap_or_default();
    assert!(
        log.contains(&format!("Partial publickey for {}", user.name))
            && log.contains(&format!(
                "Failed keyboard-interactive/pam for {}",
                user.name
            ))
            && log.contains(&format!(
                "Accepted keyboard-interactive/pam for {}",
                user.name
            )),
        "sshd log:\n{log}"
    );
}
