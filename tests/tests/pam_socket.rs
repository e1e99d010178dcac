//! The PAM module's direct socket (`[pam] socket`, module options `socket=`
//! and `bus_only`), through the real libpam (pamtester) and the real
//! otpgated. Where a test must show that the socket and not the bus carried
//! a login, it freezes the bus (SIGSTOP): then only the socket can answer.

mod pam_common;

use std::io::Read;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use otpgate_tests::*;
use pam_common::*;

const NOT_TRUSTED: &str = "otpgate's PAM socket is not trusted: second factor unavailable.";

#[test]
fn logins_go_over_the_socket_and_bus_only_skips_it() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-sock-direct");
    let e = enroll(&bus, &user.name);
    let (direct, _f) = etc_pam_service(
        "direct",
        &module_line(&format!("{} timeout=2", bus.module_args())),
    );
    let (bus_only, _f2) = etc_pam_service(
        "busonly",
        &module_line(&format!("{} timeout=2", bus.bus_only_args())),
    );

    // The bus frozen: only the direct socket can answer.
    let _frozen = Stopped::stop(bus.pid);
    let code = oathtool_at(&e.secret, e.confirmed_at + 30);
    let o = pamtester(&direct, &user.name, &code);
    assert_outcome(&o, true, SUCCESS, PROMPT);
    eprintln!("login over the socket: {:?}", o.elapsed);
    let o = pamtester(&direct, &user.name, &code);
    assert_outcome(
        &o,
        false,
        AUTH_ERR,
        "That code was already used: wait for the next one.",
    );
    let o = pamtester(&direct, &user.name, &wrong_code(&e.secret));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code.");

    // bus_only: the frozen bus is all it has.
    let o = pamtester(&bus_only, &user.name, &code);
    assert_outcome(
        &o,
        false,
        AUTHINFO_UNAVAIL,
        "otpgate did not answer in time: second factor unavailable.",
    );
}

/// A directory for one socket under the trusted test base, with `mode`.
fn socket_dir(base: &TestDir, label: &str, mode: u32) -> std::path::PathBuf {
    let dir = base.join(label);
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    dir
}

#[test]
fn a_socket_someone_else_could_have_made_is_refused_and_sent_nothing() {
    require_root();
    let base = TestDir::trusted("sock-trust");
    let mallory = test_user("otpg-sock-mallory");
    let victim = test_user("otpg-sock-victim");
    // No bus behind it: a refusal must come from the socket checks, and the
    // fallback would say "not running" instead.
    let no_bus = base.join("no-bus.sock");
    let service = |label: &str, socket: &std::path::Path| {
        etc_pam_service(
            label,
            &format!(
                "{}\nauth required pam_permit.so",
                module_line(&format!(
                    "bus=unix:path={} socket={} failmode=open nullok timeout=5",
                    no_bus.display(),
                    socket.display()
                ))
            ),
        )
    };
    let refused = |label: &str, socket: &std::path::Path, fake: Option<&FakeSocket>| {
        let (svc, _f) = service(label, socket);
        let o = pamtester(&svc, &victim.name, "000000");
        assert_outcome(&o, false, AUTHINFO_UNAVAIL, NOT_TRUSTED);
        assert!(!o.says(PROMPT), "{label}: asked for a code: {o:#?}");
        if let Some(fake) = fake {
            assert!(fake.calls().is_empty(), "{label}: {:?}", fake.calls());
        }
    };

    // A directory of another user's.
    let dir = socket_dir(&base, "userdir", 0o755);
    let path = dir.join("pam.socket");
    let fake = FakeSocket::start(&path, "ok", None);
    chown(&dir, Some(mallory.uid), None).expect("chown");
    refused("sock-userdir", &path, Some(&fake));
    drop(fake);

    // A directory anyone may write.
    let dir = socket_dir(&base, "opendir", 0o777);
    let path = dir.join("pam.socket");
    let fake = FakeSocket::start(&path, "ok", None);
    refused("sock-opendir", &path, Some(&fake));
    drop(fake);

    // A socket file of another user's.
    let dir = socket_dir(&base, "userfile", 0o755);
    let path = dir.join("pam.socket");
    let fake = FakeSocket::start(&path, "ok", None);
    chown(&path, Some(mallory.uid), None).expect("chown");
    refused("sock-userfile", &path, Some(&fake));
    drop(fake);

    // Everything on disk root's, but the process listening is not: the
    // kernel's word on the peer decides.
    let dir = socket_dir(&base, "userlistener", 0o755);
    let path = dir.join("pam.socket");
    let fake = FakeSocket::start(&path, "ok", Some(mallory.uid));
    refused("sock-listener", &path, Some(&fake));
    drop(fake);

    // Not a socket at all.
    let dir = socket_dir(&base, "file", 0o755);
    let path = dir.join("pam.socket");
    std::fs::write(&path, "").expect("write");
    refused("sock-file", &path, None);

    // Control: the same impostor, run and placed by root, is believed, so
    // it is the checks above that refused it...
    let dir = socket_dir(&base, "root", 0o755);
    let path = dir.join("pam.socket");
    let fake = FakeSocket::start(&path, "ok", None);
    let (svc, _f) = service("sock-root", &path);
    let o = pamtester(&svc, &victim.name, "000000");
    assert_outcome(&o, true, SUCCESS, PROMPT);
    assert_eq!(fake.calls(), ["Challenge", "Verify"]);
    drop(fake);

    // ...and an answer outside the contract is a refusal on this path too.
    let dir = socket_dir(&base, "garbled", 0o755);
    let path = dir.join("pam.socket");
    let _fake = FakeSocket::start(&path, "unknown-word", None);
    let (svc, _f) = service("sock-garbled", &path);
    let o = pamtester(&svc, &victim.name, "123456");
    assert_outcome(
        &o,
        false,
        AUTH_ERR,
        "otpgate gave an answer this login does not understand: refused.",
    );
}

#[test]
fn a_stale_socket_is_an_absent_daemon_and_restarts_are_picked_up() {
    require_root();
    let bus = Bus::start();
    // Window 3: the codes of the next three steps are all good now.
    let mut d = Daemon::start(&bus, "[totp]\nwindow = 3\n");
    let socket = bus.pam_socket();
    let user = test_user("otpg-sock-restart");
    let e = enroll(&bus, &user.name);
    let (secure, _f) = etc_pam_service(
        "stale",
        &module_line(&format!("{} timeout=2", bus.module_args())),
    );
    let (open, _f2) = etc_pam_service(
        "stale-open",
        &format!(
            "{}\nauth required pam_permit.so",
            module_line(&format!("{} failmode=open timeout=2", bus.module_args()))
        ),
    );
    let login_over_socket = |step: u64| {
        let _frozen = Stopped::stop(bus.pid);
        let o = pamtester(
            &secure,
            &user.name,
            &oathtool_at(&e.secret, e.confirmed_at + 30 * step),
        );
        assert_outcome(&o, true, SUCCESS, PROMPT);
    };
    login_over_socket(1);

    // Killed: its socket file stays behind, with nobody listening.
    d.kill();
    assert!(socket.exists(), "SIGKILL removed {}", socket.display());
    assert!(wait_until(Duration::from_secs(10), || !bus.has_owner(proto::BUS_NAME)));
    let o = pamtester(&secure, &user.name, "");
    assert_outcome(
        &o,
        false,
        AUTHINFO_UNAVAIL,
        "otpgate is not running: second factor unavailable.",
    );
    assert!(!o.says(PROMPT), "{o:#?}");
    assert!(o.elapsed < Duration::from_secs(3), "took {:?}", o.elapsed);
    // Absent is what failmode=open may step aside for.
    let o = pamtester(&open, &user.name, "");
    assert_outcome(&o, true, SUCCESS, "");
    assert!(!o.says(PROMPT), "{o:#?}");

    // A new daemon replaces the stale file, and the next login finds it.
    d.restart(&bus);
    login_over_socket(2);

    // A clean stop removes the file; the daemon after it listens anew.
    d.stop();
    assert!(!socket.exists(), "{} left after SIGTERM", socket.display());
    d.restart(&bus);
    login_over_socket(3);
}

#[test]
fn silent_and_idle_connections_are_closed_and_do_not_block_logins() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let socket = bus.pam_socket();
    let user = test_user("otpg-sock-idle");
    let e = enroll(&bus, &user.name);

    // More clients that never say a word than the daemon serves at once.
    let mut silent: Vec<UnixStream> = (0..otpgated::pam_socket::MAX_CONNECTIONS + 6)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();
    let (svc, _f) = etc_pam_service(
        "idle",
        &module_line(&format!("{} timeout=20", bus.module_args())),
    );
    let o = {
        let _frozen = Stopped::stop(bus.pid);
        pamtester(
            &svc,
            &user.name,
            &oathtool_at(&e.secret, e.confirmed_at + 30),
        )
    };
    eprintln!(
        "login behind {} silent clients: {:?}",
        silent.len(),
        o.elapsed
    );
    assert_outcome(&o, true, SUCCESS, PROMPT);
    let end = Instant::now() + Duration::from_secs(20);
    for s in &mut silent {
        let left = end.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buf = [0u8; 64];
        assert!(
            matches!(s.read(&mut buf), Ok(0)),
            "a silent client was not dropped within 20 s"
        );
    }

    // A client that completes the handshake and then asks nothing is
    // closed once idle.
    let address = format!("unix:path={}", socket.display());
    let closed_after = zruntime::block_on(async move {
        let conn = zbus::connection::Builder::address(address.as_str())
            .p2p()
            .build()
            .await
            .expect("p2p handshake with otpgated");
        let started = Instant::now();
        let runtime = zruntime::SharedRuntime::current().expect("runtime");
        runtime
            .timeout_at(Instant::now() + Duration::from_secs(20), conn.closed())
            .await
            .ok()
            .map(|_| started.elapsed())
    });
    let closed_after = closed_after.expect("an idle connection was not closed within 20 s");
    assert!(
        closed_after >= otpgated::pam_socket::IDLE - Duration::from_millis(500),
        "closed after {closed_after:?}, before it was idle"
    );
}

#[test]
fn a_second_daemon_never_takes_over_a_live_socket() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-sock-second");
    let e = enroll(&bus, &user.name);

    // Another daemon, on another bus and with state of its own, told to
    // listen on the first one's socket.
    let other_bus = Bus::start();
    let dir = TestDir::new("sock-second");
    let config = dir.join("otpgate.toml");
    std::fs::write(
        &config,
        format!(
            "[pam]\nsocket = \"{}\"\n\n[storage]\npath = \"{}\"\nkey_file = \"{}\"\n",
            bus.pam_socket().display(),
            dir.join("state").display(),
            dir.join("master.key").display()
        ),
    )
    .expect("config");
    let mut cmd = std::process::Command::new(bin("otpgated"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--bus")
        .arg(&other_bus.address)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    let out = output_within(&mut cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is listening on it: stop that otpgated first"),
        "{stderr}"
    );

    // The first daemon still has its socket and answers on it alone.
    let (svc, _f) = etc_pam_service(
        "second",
        &module_line(&format!("{} timeout=2", bus.module_args())),
    );
    let _frozen = Stopped::stop(bus.pid);
    let o = pamtester(
        &svc,
        &user.name,
        &oathtool_at(&e.secret, e.confirmed_at + 30),
    );
    assert_outcome(&o, true, SUCCESS, PROMPT);
}

#[test]
fn a_standard_peer_to_peer_client_can_ask_the_socket() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let user = test_user("otpg-sock-dbussend");
    enroll(&bus, &user.name);
    // libdbus's dbus-send, not zbus: the socket speaks plain D-Bus.
    let out = output_within(
        std::process::Command::new("dbus-send")
            .arg(format!("--peer=unix:path={}", bus.pam_socket().display()))
            .args([
                "--print-reply",
                "/org/otpgate/Otpgate1",
                "org.otpgate.Otpgate1.Manager.Status",
            ])
            .arg(format!("string:{}", user.name)),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\"pending\""), "{text}");
    assert!(!text.contains("secret"), "{text}");
}
