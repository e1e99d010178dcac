//! Enrolment as a person does it: `otpgate enroll` on a (pseudo-)terminal
//! draws a QR code that decodes (zbarimg) to the very URI it prints, takes
//! typos and wrong codes, and prints the backup codes once. The `--qr-svg`
//! file decodes to the same URI.

mod cli_common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use cli_common::*;
use otpgate_tests::*;

const PROMPT: &str = "Code from the app";

/// The QR code, secret and URI shown by a terminal enrolment.
struct Shown {
    qr: Vec<String>,
    uri: String,
    grouped_secret: String,
}

fn shown(output: &str) -> Shown {
    let text = plain(output);
    let uri = text
        .lines()
        .find_map(|l| l.strip_prefix("URI: "))
        .unwrap_or_else(|| panic!("no URI line in:\n{text}"))
        .trim()
        .to_owned();
    let grouped_secret = text
        .lines()
        .find_map(|l| l.split_once("by hand (time-based): ").map(|(_, s)| s))
        .unwrap_or_else(|| panic!("no secret line in:\n{text}"))
        .trim()
        .to_owned();
    Shown {
        qr: qr_lines(&text),
        uri,
        grouped_secret,
    }
}

#[test]
fn cli_terminal_qr_decodes_to_the_uri_and_enrolment_completes() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let erin = test_user("otpgclie");
    let me = As::User(&erin);
    let dir = TestDir::new("cli-qr");

    let mut tty = TtySession::start(&bus, me, &["enroll"]);
    let out = tty.wait_for(PROMPT, 1);
    let s = shown(&out);

    // Fits 80 columns, is square (two modules per line), has colours.
    assert!(!s.qr.is_empty(), "no QR code in:\n{}", plain(&out));
    let width = s.qr[0].chars().count();
    assert!(width <= 80, "{width} columns");
    assert_eq!(s.qr.len(), width.div_ceil(2));
    assert!(
        out.contains("\x1b[30;107m"),
        "both colours are drawn explicitly"
    );

    // The drawn code decodes to the URI printed under it.
    let pbm = dir.join("terminal-qr.pbm");
    qr_to_pbm(&s.qr, 4, &pbm);
    assert_eq!(zbar_decode(&pbm), s.uri);
    let secret = uri_secret(&s.uri);
    assert!(s.uri.contains(&format!("{}@", erin.name)), "{}", s.uri);
    // The secret for manual entry: groups of four of the same secret.
    assert!(s.grouped_secret.split(' ').all(|g| g.len() <= 4));
    assert_eq!(s.grouped_secret.replace(' ', ""), secret);

    // A typo is asked again without bothering the daemon, a wrong code is
    // refused and asked again, the right one finishes.
    tty.type_line("12");
    tty.wait_for(PROMPT, 2);
    tty.type_line(&wrong_code(&secret));
    tty.wait_for(PROMPT, 3);
    tty.type_line(&oathtool_now(&secret));
    let (code, out) = tty.finish();
    let text = plain(&out);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("not a code"), "{text}");
    assert!(text.contains("not accepted"), "{text}");
    assert!(text.contains("confirmed"), "{text}");
    assert!(text.contains("Store these codes somewhere safe"), "{text}");
    let codes: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.len() == 12 && w.matches('-').count() == 2)
        .collect();
    assert_eq!(codes.len(), 10, "{text}");

    let st = otpgate(&bus, me, &["status", "--json"]).json();
    assert_eq!(st["enrolled"], true);
    assert_eq!(st["backup_codes_left"], 10);
    // The backup codes shown are the real ones.
    let (r, _) = verify(&bus, &erin.name, codes[3]);
    assert_eq!(r, "ok");
}

#[test]
fn cli_three_wrong_codes_leave_the_enrolment_for_confirm() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let fred = test_user("otpgclif");
    let me = As::User(&fred);

    let mut tty = TtySession::start(&bus, me, &["enroll"]);
    let s = shown(&tty.wait_for(PROMPT, 1));
    let secret = uri_secret(&s.uri);
    for i in 1..=3 {
        tty.wait_for(PROMPT, i);
        tty.type_line(&wrong_code(&secret));
    }
    let (code, out) = tty.finish();
    let text = plain(&out);
    assert_eq!(code, 1, "{text}");
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.starts_with("otpgate: 3 codes were not accepted"),
        "{text}"
    );
    assert!(last.contains("otpgate confirm CODE"), "{last}");

    // Without a terminal, `otpgate confirm` finishes the same enrolment.
    let c = otpgate(&bus, me, &["confirm", &oathtool_now(&secret), "--json"]).json();
    assert_eq!(strings(&c["backup_codes"]).len(), 10);
}

#[test]
fn cli_enter_at_the_prompt_defers_to_confirm() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let gina = test_user("otpgclig");
    let me = As::User(&gina);

    let mut tty = TtySession::start(&bus, me, &["enroll"]);
    let s = shown(&tty.wait_for(PROMPT, 1));
    tty.type_line("");
    let (code, out) = tty.finish();
    assert_eq!(code, 0, "{}", plain(&out));
    assert!(
        plain(&out).contains("otpgate confirm CODE"),
        "{}",
        plain(&out)
    );
    let st = otpgate(&bus, me, &["status", "--json"]).json();
    assert_eq!(st["pending"], true);
    let secret = uri_secret(&s.uri);
    let out = otpgate(&bus, me, &["confirm", &oathtool_now(&secret)]);
    assert!(out.ok().stdout.contains("Store these codes"), "{out:?}");
}

#[test]
fn cli_svg_qr_decodes_to_the_same_uri() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let admin = admin_group_member("otpgcliadm");
    let hank = test_user("otpgclih");
    let who = As::User(&admin);
    let dir = TestDir::new("cli-svg");
    let out_dir = writable_dir(&dir, "handout", who);
    let svg = out_dir.join("hank.svg");
    let svg_arg = svg.display().to_string();

    // An administrator onboarding hank (no terminal: JSON).
    let e = otpgate(
        &bus,
        who,
        &["enroll", "--user", &hank.name, "--qr-svg", &svg_arg],
    )
    .json();
    let uri = e["uri"].as_str().unwrap().to_owned();
    assert_eq!(e["qr_svg"], svg_arg);

    // Holds the secret: a new file of the administrator's, mode 0600.
    let meta = std::fs::metadata(&svg).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), admin.uid);
    assert_eq!(zbar_decode_svg(&svg, &dir), uri);

    // An existing file is never overwritten, and no new enrolment starts.
    otpgate(
        &bus,
        who,
        &["enroll", "--user", &hank.name, "--qr-svg", &svg_arg],
    )
    .fails_with("already exists");
    assert_eq!(zbar_decode_svg(&svg, &dir), uri);
    let secret = uri_secret(&uri);
    otpgate(
        &bus,
        who,
        &["confirm", "--user", &hank.name, &oathtool_now(&secret)],
    )
    .ok();
    assert_eq!(
        otpgate(&bus, As::Root, &["status", "--user", &hank.name, "--json"]).json()["enrolled"],
        true
    );

    // The terminal QR and the SVG of one enrolment carry the same URI.
    let ivy = test_user("otpgclii");
    let svg2 = dir.join("ivy.svg");
    let mut tty = TtySession::start(
        &bus,
        As::Root,
        &[
            "enroll",
            "--user",
            &ivy.name,
            "--qr-svg",
            &svg2.display().to_string(),
        ],
    );
    let s = shown(&tty.wait_for(PROMPT, 1));
    tty.type_line("");
    let (code, _) = tty.finish();
    assert_eq!(code, 0);
    let pbm = dir.join("ivy.pbm");
    qr_to_pbm(&s.qr, 4, &pbm);
    assert_eq!(zbar_decode(&pbm), s.uri);
    assert_eq!(zbar_decode_svg(&svg2, &dir), s.uri);
}

#[test]
fn cli_disable_asks_the_user_for_a_code_on_a_terminal() {
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let max = test_user("otpgclix");
    let me = As::User(&max);
    let e = enroll(&bus, &max.name);

    let mut tty = TtySession::start(&bus, me, &["disable"]);
    tty.wait_for("Current code", 1);
    tty.type_line(&e.backup_codes[0]);
    let (code, out) = tty.finish();
    assert_eq!(code, 0, "{}", plain(&out));
    assert!(plain(&out).contains("removed"), "{}", plain(&out));
    let st = otpgate(&bus, me, &["status", "--json"]).json();
    assert_eq!(st["enrolled"], false);
}
