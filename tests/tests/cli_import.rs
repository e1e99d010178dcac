//! Migration from google-authenticator-libpam: a file made by Debian's
//! `google-authenticator` tool is imported with `otpgate import`, then the
//! user logs in through the real PAM stack (pamtester + pam_otpgate.so)
//! with a code computed by oathtool from that file's secret, and with one
//! of its scratch codes, once only.

mod cli_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli_common::*;
use otpgate_tests::*;

/// Makes a google-authenticator file non-interactively with the real tool.
fn google_authenticator_file(path: &Path, extra: &[&str]) {
    let mut cmd = Command::new("google-authenticator");
    cmd.args(["-f", "-q", "-C", "-w", "3", "-e", "5"])
        .args(extra)
        .arg("-s")
        .arg(path);
    let out = run_bounded(
        cmd,
        "",
        "google-authenticator (apt-get install libpam-google-authenticator)",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        path.exists(),
        "google-authenticator wrote no {}",
        path.display()
    );
}

struct GaFile {
    secret: String,
    scratch: Vec<String>,
}

fn read_ga(path: &Path) -> GaFile {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let secret = lines.next().unwrap().trim().to_owned();
    let scratch = lines
        .filter(|l| !l.starts_with('"') && !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect();
    GaFile { secret, scratch }
}

/// A PAM service file in /etc/pam.d (pamtester has no other way to be
/// told a stack), unique to the test and removed on drop.
struct PamService {
    name: String,
    path: PathBuf,
}

impl PamService {
    fn new(bus: &Bus) -> PamService {
        let name = format!("otpgate-clitest-{}-{}", std::process::id(), now());
        let path = PathBuf::from("/etc/pam.d").join(&name);
        fs::write(
            &path,
            format!(
                "auth required {} {}\naccount required pam_permit.so\n",
                pam_module().display(),
                bus.module_args()
            ),
        )
        .expect("write /etc/pam.d service (tests run as root)");
        PamService { name, path }
    }

    /// `pamtester SERVICE USER authenticate` with `code` as the answer.
    fn login(&self, user: &str, code: &str) -> Out {
        let mut cmd = Command::new("pamtester");
        cmd.args([&self.name, user, "authenticate"]);
        run_bounded(
            cmd,
            &format!("{code}\n"),
            "pamtester (apt-get install pamtester)",
        )
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[test]
fn cli_import_google_authenticator_then_log_in_with_pam() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let jane = test_user("otpgclij");
    let dir = TestDir::new("cli-import");
    let ga_path = dir.join("google_authenticator");
    google_authenticator_file(&ga_path, &["-t", "-d", "-r", "3", "-R", "30"]);
    let ga = read_ga(&ga_path);
    assert_eq!(ga.scratch.len(), 5);

    let out = otpgate(
        &bus,
        As::Root,
        &[
            "import",
            "--user",
            &jane.name,
            "--google-authenticator",
            &ga_path.display().to_string(),
        ],
    );
    out.ok();
    assert!(out.stdout.contains("5 scratch codes"), "{out:?}");
    // The secret is never shown, nor are the scratch codes.
    assert!(!out.stdout.contains(&ga.secret) && !out.stderr.contains(&ga.secret));
    assert!(ga.scratch.iter().all(|c| !out.stdout.contains(c.as_str())));

    let st = otpgate(&bus, As::Root, &["status", "--user", &jane.name, "--json"]).json();
    assert_eq!(st["enrolled"], true);
    assert_eq!(st["method"], "totp");
    assert_eq!(st["backup_codes_left"], 5);

    // Importing over an enrolment is refused.
    otpgate(
        &bus,
        As::Root,
        &[
            "import",
            "--user",
            &jane.name,
            "--google-authenticator",
            &ga_path.display().to_string(),
        ],
    )
    .fails_with("already enrolled");

    // Logins through the real PAM stack with the same app (oathtool here).
    let pam = PamService::new(&bus);
    let wrong = pam.login(&jane.name, &wrong_code(&ga.secret));
    assert_ne!(wrong.code, 0, "a wrong code is refused: {wrong:?}");
    let ok = pam.login(&jane.name, &oathtool_now(&ga.secret));
    assert_eq!(ok.code, 0, "TOTP login failed: {ok:?}");
    let ok = pam.login(&jane.name, &ga.scratch[2]);
    assert_eq!(ok.code, 0, "scratch-code login failed: {ok:?}");
    let again = pam.login(&jane.name, &ga.scratch[2]);
    assert_ne!(again.code, 0, "a scratch code works once only: {again:?}");
    let st = otpgate(&bus, As::Root, &["status", "--user", &jane.name, "--json"]).json();
    assert_eq!(st["backup_codes_left"], 4);
}

#[test]
fn cli_import_refuses_hotp_and_damaged_files_with_the_reason() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let kim = test_user("otpgclik");
    let dir = TestDir::new("cli-import-bad");
    let import = |path: &Path| {
        otpgate(
            &bus,
            As::Root,
            &[
                "import",
                "--user",
                &kim.name,
                "--google-authenticator",
                &path.display().to_string(),
            ],
        )
    };

    let hotp = dir.join("hotp");
    google_authenticator_file(&hotp, &["-c", "-u"]);
    let secret = read_ga(&hotp).secret;
    let out = import(&hotp);
    out.fails_with("cannot import").fails_with("HOTP");
    assert!(!out.stderr.contains(&secret));

    let damaged = dir.join("damaged");
    fs::write(&damaged, "not a secret!\n\" TOTP_AUTH\n").unwrap();
    import(&damaged).fails_with("cannot import");

    let binary = dir.join("binary");
    fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x41]).unwrap();
    import(&binary).fails_with("not a google-authenticator file");

    import(&dir.join("missing")).fails_with("cannot read");

    let st = otpgate(&bus, As::Root, &["status", "--user", &kim.name, "--json"]).json();
    assert_eq!(st["enrolled"], false);
}

#[test]
fn cli_import_as_admin_group_member() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let admin = admin_group_member("otpgcliadm");
    let lee = test_user("otpgclil");
    let who = As::User(&admin);
    let dir = TestDir::new("cli-import-admin");
    let own = writable_dir(&dir, "files", who);
    let ga_path = own.join("lee_google_authenticator");
    google_authenticator_file(&ga_path, &["-t", "-d", "-r", "3", "-R", "30"]);
    let ga = read_ga(&ga_path);

    // The file is root's (0400): the administrator cannot read it.
    otpgate(
        &bus,
        who,
        &[
            "import",
            "--user",
            &lee.name,
            "--google-authenticator",
            &ga_path.display().to_string(),
        ],
    )
    .fails_with("cannot read")
    .fails_with("Permission denied");

    std::os::unix::fs::chown(&ga_path, Some(admin.uid), Some(admin.gid)).unwrap();
    let j = otpgate(
        &bus,
        who,
        &[
            "import",
            "--user",
            &lee.name,
            "--google-authenticator",
            &ga_path.display().to_string(),
            "--json",
        ],
    )
    .json();
    assert_eq!(j["user"], lee.name);
    assert_eq!(j["backup_codes_imported"], 5);
    assert!(!j.to_string().contains(&ga.secret));
    let (r, _) = verify(&bus, &lee.name, &oathtool_now(&ga.secret));
    assert_eq!(r, "ok");
}

/// The recording impostor (`pam_host fake-daemon BUS record`) as `user`
/// (None: root): it owns `org.otpgate.Otpgate1` and keeps a line for every
/// call it gets. Killed by pid on drop.
struct Impostor {
    child: std::process::Child,
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    bus_address: String,
}

impl Impostor {
    fn start(bus: &Bus, user: Option<&TestUser>) -> Impostor {
        use std::io::BufRead;
        let host = bin("pam_host");
        let mut cmd = match user {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", u.uid))
                    .arg(format!("--regid={}", u.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(&host);
                c
            }
            None => Command::new(&host),
        };
        let mut child = cmd
            .args(["fake-daemon", &bus.address, "record"])
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start pam_host fake-daemon record");
        let out = child.stdout.take().expect("stdout");
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = calls.clone();
        // Reads until the impostor dies, so its output never blocks it.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                seen.lock().unwrap().push(line);
            }
        });
        let imp = Impostor {
            child,
            calls,
            bus_address: bus.address.clone(),
        };
        assert!(
            wait_until(START_DEADLINE, || imp
                .calls
                .lock()
                .unwrap()
                .iter()
                .any(|l| l == "ready")),
            "the impostor did not get the bus name"
        );
        imp
    }

    /// Every call it got, once a Ping sent now has arrived: calls made
    /// before this one cannot still be on their way.
    fn calls(&self) -> Vec<String> {
        let address = self.bus_address.clone();
        let pinged = zruntime::block_on(async move {
            let conn = zbus::connection::Builder::address(address.as_str())
                .build()
                .await
                .ok()?;
            conn.call_method(
                Some(proto::BUS_NAME),
                "/",
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                &(),
            )
            .await
            .ok()
        });
        assert!(pinged.is_some(), "the impostor did not answer a Ping");
        let ping = "call org.freedesktop.DBus.Peer.Ping";
        assert!(wait_until(CALL_DEADLINE, || self
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == ping)));
        let mut calls = self.calls.lock().unwrap().clone();
        calls.retain(|l| l != "ready" && l != ping);
        self.calls.lock().unwrap().retain(|l| l != ping);
        calls
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

#[test]
fn cli_sends_no_secret_and_no_code_to_a_name_root_does_not_own() {
    // A bus on which anyone may own org.otpgate.Otpgate1, and a user's
    // process that took it.
    let bus = Bus::start_open();
    let mallory = test_user("otpgclimal");
    let ann = test_user("otpgcliann");
    let dir = TestDir::new("cli-import-impostor");
    let ga_path = dir.join("google_authenticator");
    google_authenticator_file(&ga_path, &["-t", "-d", "-r", "3", "-R", "30"]);
    let ga = read_ga(&ga_path);
    let ga_arg = ga_path.display().to_string();
    let import = [
        "import",
        "--user",
        &ann.name,
        "--google-authenticator",
        &ga_arg,
    ];

    let imp = Impostor::start(&bus, Some(&mallory));
    let out = otpgate(&bus, As::Root, &import);
    out.fails_with(&format!(
        "otpgate: refusing to send the secret: org.otpgate.Otpgate1 is owned by uid {}, not root",
        mallory.uid
    ));
    assert!(!out.stderr.contains(&ga.secret));
    // The commands that carry a code are held back the same way.
    for args in [
        &["confirm", "--user", &ann.name, "123456"][..],
        &["disable", "--user", &ann.name, "--code", "123456"][..],
        &["backup-codes", "--user", &ann.name, "--code", "123456"][..],
    ] {
        otpgate(&bus, As::Root, args).fails_with(&format!(
            "refusing to send the code: org.otpgate.Otpgate1 is owned by uid {}, not root",
            mallory.uid
        ));
    }
    assert_eq!(imp.calls(), Vec::<String>::new(), "the impostor was called");
    drop(imp);

    // Control: the same impostor run by root does get the Import (and
    // refuses it), so it was the owner check that held the secret back.
    let imp = Impostor::start(&bus, None);
    let out = otpgate(&bus, As::Root, &import);
    out.fails_with("impostor");
    assert_eq!(imp.calls(), ["call org.otpgate.Otpgate1.Admin.Import"]);
}
