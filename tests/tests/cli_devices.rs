//! A user's devices through the real `otpgate` CLI and the real daemon on
//! a private bus: `enroll --name` adds a device confirmed by its own code,
//! `status` lists it, `remove-device` takes a code from another device
//! (a wrong one is counted like a login's), another user may not, and an
//! administrator needs no code. Codes from oathtool.

mod cli_common;
mod pam_common;

use cli_common::{otpgate, otpgate_stdin, strings, As};
use otpgate_tests::*;
use pam_common::*;

/// Wide enough for codes of the next few steps.
const WINDOW: &str = "[totp]\nwindow = 10\n";

fn device_names(bus: &Bus, user: &str) -> Vec<String> {
    let s = otpgate(bus, As::Root, &["status", "--user", user, "--json"]).json();
    s["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["name"].as_str().expect("name").to_string())
        .collect()
}

fn failures(bus: &Bus, user: &str) -> u64 {
    let s = otpgate(bus, As::Root, &["status", "--user", user, "--json"]).json();
    s["failures"].as_u64().expect("failures")
}

#[test]
fn a_user_adds_a_spare_and_removes_it_with_a_code_of_the_phone() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, WINDOW);
    let user = test_user("otpgclidev1");
    let other = test_user("otpgclidev2");
    let me = As::User(&user);

    let phone = otpgate(&bus, me, &["enroll"]).json()["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let t = now();
    otpgate(&bus, me, &["confirm", &oathtool_at(&phone, t), "--json"]).json();

    // The spare: a secret of its own, confirmed by its own code, and no
    // new backup codes with it.
    let spare = otpgate(&bus, me, &["enroll", "--name", "spare"]).json()["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_ne!(spare, phone);
    assert_eq!(device_names(&bus, &user.name), ["default"], "unconfirmed");
    let c = otpgate(&bus, me, &["confirm", &oathtool_at(&spare, t), "--json"]).json();
    assert_eq!(strings(&c["backup_codes"]), Vec::<String>::new(), "{c}");
    assert_eq!(device_names(&bus, &user.name), ["default", "spare"]);
    let text = otpgate(&bus, me, &["status"]).ok().stdout.clone();
    assert!(
        text.contains("devices:") && text.contains("spare"),
        "{text}"
    );

    let (service, _f) = etc_pam_service("clidev", &module_line(&bus.module_args()));
    let o = pamtester(&service, &user.name, &oathtool_at(&spare, t + 30));
    assert_outcome(&o, true, SUCCESS, PROMPT);

    // Without a terminal and without --code: how to give one.
    otpgate(&bus, me, &["remove-device", "spare"]).fails_with("--code");
    // Another user, even with a right code, may not.
    otpgate(
        &bus,
        As::User(&other),
        &[
            "remove-device",
            "spare",
            "--user",
            &user.name,
            "--code",
            &oathtool_at(&phone, t + 30),
        ],
    )
    .refused();
    // A wrong code is refused and counted.
    otpgate(
        &bus,
        me,
        &["remove-device", "spare", "--code", &wrong_code(&phone)],
    )
    .fails_with("Wrong code");
    assert_eq!(failures(&bus, &user.name), 1);
    assert_eq!(device_names(&bus, &user.name), ["default", "spare"]);

    // The phone's code, on stdin (not in the process list), removes it.
    let out = otpgate_stdin(
        &bus,
        me,
        &["remove-device", "spare", "--code", "-"],
        &format!("{}\n", oathtool_at(&phone, t + 60)),
    );
    assert!(
        out.ok()
            .stdout
            .contains(&format!("Device spare of {} is removed", user.name)),
        "{out:#?}"
    );
    assert_eq!(device_names(&bus, &user.name), ["default"]);
    let o = pamtester(&service, &user.name, &oathtool_at(&spare, t + 90));
    assert_outcome(&o, false, AUTH_ERR, "Wrong code");
    let o = pamtester(&service, &user.name, &oathtool_at(&phone, t + 90));
    assert_outcome(&o, true, SUCCESS, PROMPT);

    // An administrator removes a device without a code.
    let tablet = otpgate(&bus, me, &["enroll", "--name", "tablet"]).json()["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    otpgate(&bus, me, &["confirm", &oathtool_at(&tablet, t + 120)]).ok();
    assert_eq!(device_names(&bus, &user.name), ["default", "tablet"]);
    otpgate(
        &bus,
        As::Root,
        &["remove-device", "tablet", "--user", &user.name],
    )
    .ok();
    assert_eq!(device_names(&bus, &user.name), ["default"]);
    let events = otpgate(&bus, me, &["history", "--json"]).json().to_string();
    assert!(
        events.contains("device-added") && events.contains("device-removed"),
        "{events}"
    );
}

/// TOTP and e-mail together, enrolled through the CLI: the mailed code
/// confirms the second method, `status` lists both, and `[methods]
/// allowed` without e-mail refuses it with a line that says so.
#[test]
fn a_user_with_an_app_adds_email_through_the_cli() {
    require_root();
    let bus = Bus::start();
    let sink = otpgate_tests::smtp::SmtpSink::start();
    let email = format!(
        "[email]\nsmtp_url = \"{}\"\nfrom = \"otpgate@example.org\"\n",
        sink.url()
    );
    let mut d = Daemon::start(&bus, &format!("{WINDOW}{email}"));
    let user = test_user("otpgclidev3");
    let me = As::User(&user);
    let phone = otpgate(&bus, me, &["enroll"]).json()["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    otpgate(&bus, me, &["confirm", &oathtool_at(&phone, now())]).ok();

    let add = [
        "enroll",
        "--method",
        "email",
        "--email",
        "dev@example.org",
        "--name",
        "mail",
    ];
    otpgate(&bus, me, &add).ok();
    let mail = &sink.wait_for(1, std::time::Duration::from_secs(30))[0];
    assert!(
        mail.to.iter().any(|t| t.contains("dev@example.org")),
        "{mail:?}"
    );
    let code = mail.code().expect("a code in the mail");
    otpgate(&bus, me, &["confirm", &code]).ok();
    let s = otpgate(&bus, me, &["status", "--json"]).json();
    let methods: Vec<&str> = s["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["method"].as_str().expect("method"))
        .collect();
    assert_eq!(methods, ["totp", "email"], "{s}");

    d.stop();
    let _d = Daemon::start(
        &bus,
        &format!("{WINDOW}{email}[methods]\nallowed = [\"totp\"]\n"),
    );
    let other = test_user("otpgclidev4");
    let o = As::User(&other);
    let secret = otpgate(&bus, o, &["enroll"]).json()["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    otpgate(&bus, o, &["confirm", &oathtool_at(&secret, now())]).ok();
    let add = [
        "enroll",
        "--method",
        "email",
        "--email",
        "x@example.org",
        "--name",
        "mail",
    ];
    otpgate(&bus, o, &add).fails_with("the email method may not be enrolled on this host");
}
