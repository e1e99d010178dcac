use super::*;

const FILE: &str = "/etc/otpgate/otpgate.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("accepted {text:?} as {c:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line message: {msg:?}");
            msg
        }
    }
}

/// The documented example configuration, verbatim.
const DOCUMENTED_EXAMPLE: &str = r#"[storage]
backend = "local"                     # "local" (embedded, no server) | "postgres" (a fleet shares one database)
path = "/var/lib/otpgate"             # local state directory (root only, 0700)
key_file = "/etc/otpgate/master.key"  # 32-byte secret-encryption key; created 0400 root if missing
# url = "postgres://otpgate@db/otpgate"   # backend = "postgres"

[totp]
issuer = "otpgate"    # shown in authenticator apps; the account label is USER@HOSTNAME
digits = 6
period_secs = 30
algorithm = "SHA1"    # SHA1 | SHA256 | SHA512
window = 1            # accept codes this many steps before/after now

[lockout]
max_failures = 5      # consecutive failures before the account's second factor locks
duration_secs = 900   # how long a lock lasts

[backup_codes]
count = 10

[access]
admin_group = "otpgate-admin"   # members may manage other users; root always may

[email]                          # the e-mail factor; off unless smtp_url is set
# smtp_url = "smtp://127.0.0.1:25"
# from = "otpgate@example.org"
code_ttl_secs = 300
resend_cooldown_secs = 60
"#;

#[test]
fn empty_text_gives_the_documented_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.storage.backend, Backend::Local);
    assert_eq!(c.storage.path, Path::new("/var/lib/otpgate"));
    assert_eq!(c.storage.key_file, Path::new("/etc/otpgate/master.key"));
    assert_eq!(c.storage.url, None);
    assert_eq!(c.totp.issuer, "otpgate");
    assert_eq!(c.totp.digits, 6);
    assert_eq!(c.totp.period_secs, 30);
    assert_eq!(c.totp.algorithm, Algorithm::Sha1);
    assert_eq!(c.totp.window, 1);
    assert_eq!(c.lockout.max_failures, 5);
    assert_eq!(c.lockout.duration_secs, 900);
    assert_eq!(c.backup_codes.count, 10);
    assert_eq!(c.access.admin_group, "otpgate-admin");
    assert_eq!(c.email.smtp_url, None);
    assert_eq!(c.email.from, None);
    assert_eq!(c.email.code_ttl_secs, 300);
    assert_eq!(c.email.resend_cooldown_secs, 60);
    // Comments and empty sections are fine too.
    assert_eq!(
        parse("# nothing\n[totp]\n[email]\n").unwrap(),
        Config::default()
    );
}

#[test]
fn the_documented_example_parses_to_the_defaults() {
    assert_eq!(parse(DOCUMENTED_EXAMPLE).unwrap(), Config::default());
}

#[test]
fn every_value_is_taken() {
    let c = parse(
        r#"
[storage]
path = "/srv/otpgate/state"
key_file = "/srv/otpgate/key"
[totp]
issuer = "Example Corp"
digits = 8
period_secs = 60
algorithm = "SHA512"
window = 0
[lockout]
max_failures = 10
duration_secs = 3600
[backup_codes]
count = 0
[access]
admin_group = "wheel"
[email]
from = "otp@example.org"
code_ttl_secs = 600
resend_cooldown_secs = 0
"#,
    )
    .unwrap();
    assert_eq!(c.storage.path, Path::new("/srv/otpgate/state"));
    assert_eq!(c.storage.key_file, Path::new("/srv/otpgate/key"));
    assert_eq!(c.totp.issuer, "Example Corp");
    assert_eq!(c.totp.digits, 8);
    assert_eq!(c.totp.period_secs, 60);
    assert_eq!(c.totp.algorithm, Algorithm::Sha512);
    assert_eq!(c.totp.algorithm.to_totp(), totp_rs::Algorithm::SHA512);
    assert_eq!(c.totp.algorithm.as_str(), "SHA512");
    assert_eq!(c.totp.window, 0);
    assert_eq!(c.lockout.max_failures, 10);
    assert_eq!(c.lockout.duration_secs, 3600);
    assert_eq!(c.backup_codes.count, 0);
    assert_eq!(c.access.admin_group, "wheel");
    assert_eq!(c.email.from.as_deref(), Some("otp@example.org"));
    assert_eq!(c.email.code_ttl_secs, 600);
    assert_eq!(c.email.resend_cooldown_secs, 0);
    // Inline tables and dotted keys are the same TOML.
    let c = parse("totp = { digits = 7 }\nlockout.max_failures = 3\n").unwrap();
    assert_eq!(c.totp.digits, 7);
    assert_eq!(c.lockout.max_failures, 3);
}

#[test]
fn every_key_in_the_schema_is_accepted() {
    // Each key of the table, given a value of its type, must get past the
    // unknown-key check; what remains is at most a range refusal naming
    // that very key.
    for s in keys::SECTIONS {
        for k in s.keys {
            let (section, key) = (s.name, k.name);
            let value = match k.kind.expected() {
                "an integer" => "1",
                "an array" => "[\"x\"]",
                _ => "\"x\"",
            };
            let text = format!("[{section}]\n{key} = {value}\n");
            if let Err(e) = parse(&text) {
                assert!(
                    matches!(e, ConfigError::Invalid { .. }),
                    "{section}.{key}: {e}"
                );
                assert!(e.to_string().contains(&format!("[{section}] {key}")), "{e}");
                assert_eq!(e.line(), Some(2));
            }
        }
    }
}

#[test]
fn the_brief_examples_read_as_promised() {
    let text = "\n\n\n\n\n\n\n\n\n\n[lockout]\nmax_failures = 0\n";
    assert_eq!(
        err(text),
        "/etc/otpgate/otpgate.toml:12: [lockout] max_failures = 0: must be between 1 and 100"
    );
    assert_eq!(
        err("[totp]\ndigits = 6\nwindw = 1\n"),
        "/etc/otpgate/otpgate.toml:3: unknown key \"windw\" in [totp] \
         (known: issuer, digits, period_secs, algorithm, window, secret_bytes)"
    );
}

#[test]
fn out_of_range_numbers_name_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "totp",
            "digits = 4",
            "[totp] digits = 4: must be between 6 and 8",
        ),
        (
            "totp",
            "digits = 9",
            "[totp] digits = 9: must be between 6 and 8",
        ),
        (
            "totp",
            "period_secs = 5",
            "[totp] period_secs = 5: must be between 15 and 300",
        ),
        (
            "totp",
            "window = 50",
            "[totp] window = 50: must be between 0 and 10",
        ),
        (
            "totp",
            "window = -1",
            "[totp] window = -1: must be between 0 and 10",
        ),
        (
            "lockout",
            "max_failures = 0",
            "[lockout] max_failures = 0: must be between 1 and 100",
        ),
        (
            "lockout",
            "max_failures = 101",
            "[lockout] max_failures = 101: must be between 1 and 100",
        ),
        (
            "lockout",
            "duration_secs = 0",
            "[lockout] duration_secs = 0: must be between 1 and 604800",
        ),
        (
            "backup_codes",
            "count = 1000",
            "[backup_codes] count = 1000: must be between 0 and 100",
        ),
        (
            "email",
            "code_ttl_secs = 10",
            "[email] code_ttl_secs = 10: must be between 30 and 3600",
        ),
        (
            "email",
            "resend_cooldown_secs = 7200",
            "[email] resend_cooldown_secs = 7200: must be between 0 and 3600",
        ),
    ];
    for (section, line, want) in cases {
        let text = format!("# comment\n[{section}]\n\n{line}\n");
        assert_eq!(err(&text), format!("{FILE}:4: {want}"));
    }
}

#[test]
fn bad_strings_name_line_and_key() {
    let m = err("[totp]\nalgorithm = \"sha1\"\n");
    assert!(
        m.starts_with(&format!("{FILE}:2: [totp] algorithm = \"sha1\": ")),
        "{m}"
    );
    assert!(m.contains("upper case"), "{m}");
    assert!(err("[totp]\nalgorithm = \"MD5\"\n").contains("\"SHA1\", \"SHA256\" or \"SHA512\""));

    let m = err("[totp]\nissuer = \"a:b\"\n");
    assert!(
        m.starts_with(&format!(
            "{FILE}:2: [totp] issuer = \"a:b\": must not contain ':'"
        )),
        "{m}"
    );
    let m = err("[totp]\nissuer = \"\"\n");
    assert!(
        m.starts_with(&format!("{FILE}:2: [totp] issuer = \"\": must be 1 to 64")),
        "{m}"
    );

    let m = err("[access]\nadmin_group = \"\"\n");
    assert!(
        m.starts_with(&format!("{FILE}:2: [access] admin_group")),
        "{m}"
    );
    for bad in ["a:b", "1000", "-x", " x", "a,b"] {
        let m = err(&format!("[access]\nadmin_group = \"{bad}\"\n"));
        assert!(
            m.starts_with(&format!("{FILE}:2: [access] admin_group")),
            "{m}"
        );
    }
    for good in [
        "wheel",
        "otpgate-admin",
        "Domain Admins",
        "admins@example.com",
        "grp$",
    ] {
        let c = parse(&format!("[access]\nadmin_group = \"{good}\"\n")).unwrap();
        assert_eq!(c.access.admin_group, good);
    }

    let m = err("[storage]\npath = \"var/lib/otpgate\"\n");
    assert_eq!(
        m,
        format!("{FILE}:2: [storage] path = \"var/lib/otpgate\": must be an absolute path")
    );
    let m = err("[storage]\nkey_file = \"master.key\"\n");
    assert_eq!(
        m,
        format!("{FILE}:2: [storage] key_file = \"master.key\": must be an absolute path")
    );
    assert!(
        err("[storage]\nbackend = \"sqlite\"\n").starts_with(&format!(
            "{FILE}:2: [storage] backend = \"sqlite\": must be"
        ))
    );

    let m = err("[email]\nfrom = \"nobody\"\n");
    assert!(
        m.starts_with(&format!("{FILE}:2: [email] from = \"nobody\"")),
        "{m}"
    );
}

#[test]
fn postgres_needs_a_url_without_a_password() {
    let c = parse(
        "[storage]\nbackend = \"postgres\"\nurl = \"postgres://otpgate@db/otpgate?sslmode=verify-full\"\npassword_file = \"/etc/otpgate/db.password\"\n",
    )
    .unwrap();
    assert_eq!(c.storage.backend, Backend::Postgres);
    assert_eq!(c.storage.timeout_ms, 2000);
    let m = err("[storage]\nbackend = \"postgres\"\n");
    assert!(
        m.starts_with(&format!("{FILE}:2: [storage] url: is required")),
        "{m}"
    );
    let m = err("[storage]\nbackend = \"postgres\"\nurl = \"postgres://u:hunter2@db/otpgate\"\n");
    assert!(m.contains("password_file"), "{m}");
    assert!(!m.contains("hunter2"), "{m}");
    // Database settings with the local backend are a misunderstanding;
    // the password stays out of the message.
    let m = err("[storage]\nurl = \"postgres://u@db/otpgate\"\n");
    assert!(
        m.starts_with(&format!("{FILE}:2: [storage] url: only used with")),
        "{m}"
    );
    let m = err("[storage]\npassword_file = \"/etc/otpgate/db.password\"\n");
    assert!(
        m.starts_with(&format!(
            "{FILE}:2: [storage] password_file: only used with"
        )),
        "{m}"
    );
}

#[test]
fn smtp_urls_are_checked_without_echoing_them() {
    let m = err("[email]\nfrom = \"a@b.c\"\nsmtp_url = \"smtp://u:hunter2@127.0.0.1:25\"\n");
    assert!(
        m.starts_with(&format!(
            "{FILE}:3: [email] smtp_url: must not hold a password"
        )),
        "{m}"
    );
    assert!(!m.contains("hunter2"), "{m}");
    let m = err("[email]\nfrom = \"a@b.c\"\nsmtp_url = \"http://mx\"\n");
    assert!(m.contains("must start with smtp://"), "{m}");
    let m = err("[email]\nsmtp_url = \"smtp://mx\"\n");
    assert!(m.contains("[email] from: is required with smtp_url"), "{m}");
    let c = parse(
        "[email]\nsmtp_url = \"smtps://otp@mx.example.org:465\"\nfrom = \"otp@example.org\"\npassword_file = \"/etc/otpgate/smtp-password\"\n",
    )
    .unwrap();
    assert_eq!(
        c.email.smtp_url.as_deref(),
        Some("smtps://otp@mx.example.org:465")
    );
    assert_eq!(c.email.timeout_secs, 10);
}

#[test]
fn wrong_types_name_line_and_key() {
    assert_eq!(
        err("[totp]\ndigits = \"six\"\n"),
        format!("{FILE}:2: [totp] digits must be an integer, not a string")
    );
    assert_eq!(
        err("[totp]\nperiod_secs = 30.0\n"),
        format!("{FILE}:2: [totp] period_secs must be an integer, not a float")
    );
    assert_eq!(
        err("[access]\nadmin_group = 10\n"),
        format!("{FILE}:2: [access] admin_group must be a string, not an integer")
    );
    assert_eq!(
        err("[lockout]\nmax_failures = [1, 2]\n"),
        format!("{FILE}:2: [lockout] max_failures must be an integer, not an array")
    );
    assert_eq!(
        err("totp = 5\n"),
        format!("{FILE}:1: [totp] must be a table, not an integer")
    );
    assert_eq!(
        err("\n[[totp]]\ndigits = 6\n"),
        format!("{FILE}:2: [totp] must be a table, not an array")
    );
}

#[test]
fn unknown_sections_and_keys_are_refused() {
    assert_eq!(
        err("[totp]\ndigits = 6\n\n[smtp]\nhost = \"x\"\n"),
        format!(
            "{FILE}:4: unknown section [smtp] \
             (known: storage, totp, lockout, backup_codes, methods, access, pam, email, self_service, [[policy]])"
        )
    );
    assert_eq!(
        err("digits = 6\n"),
        format!(
            "{FILE}:1: key \"digits\" outside any section \
             (known sections: storage, totp, lockout, backup_codes, methods, access, pam, email, self_service, [[policy]])"
        )
    );
    // A table nested in a section is an unknown key of that section.
    assert_eq!(
        err("[totp]\n[totp.extra]\nx = 1\n"),
        format!(
            "{FILE}:2: unknown key \"extra\" in [totp] \
             (known: issuer, digits, period_secs, algorithm, window, secret_bytes)"
        )
    );
    // Of several problems, the first in the file is reported, whatever
    // the order sections are stored in.
    let m = err("[totp]\nwindw = 1\n[access]\nadmin_grup = \"x\"\n");
    assert!(
        m.starts_with(&format!("{FILE}:2: unknown key \"windw\"")),
        "{m}"
    );
    let m = err("[zzz]\n[aaa]\n");
    assert!(
        m.starts_with(&format!("{FILE}:1: unknown section [zzz]")),
        "{m}"
    );
    // Control characters in a key stay on one line.
    let m = err("[totp]\n\"a\\nb\" = 1\n");
    assert!(m.contains("unknown key \"a\\nb\""), "{m}");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let m = err("[totp]\ndigits = 6\nwindow = \n");
    assert!(m.starts_with(&format!("{FILE}:3: invalid TOML: ")), "{m}");
    let m = err("[totp]\ndigits = 6\ndigits = 7\n");
    assert!(m.starts_with(&format!("{FILE}:3: invalid TOML: ")), "{m}");
    let m = err("[totp\n");
    assert!(m.starts_with(&format!("{FILE}:1: invalid TOML: ")), "{m}");
    let m = err("[lockout]\nmax_failures = 99999999999999999999999\n");
    assert!(
        m.starts_with(&format!("{FILE}:2: [lockout] max_failures: ")),
        "{m}"
    );
}

#[test]
fn debug_hides_urls() {
    let mut c = Config::default();
    c.storage.url = Some("postgres://u:hunter2@db/x".into());
    c.email.smtp_url = Some("smtp://u:hunter2@mx".into());
    let d = format!("{c:?}");
    assert!(!d.contains("hunter2"), "{d}");
    assert!(d.contains("<redacted>"), "{d}");
}

#[test]
fn load_missing_file_is_defaults_and_unreadable_is_an_error() {
    let dir = std::env::temp_dir().join(format!("otpgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.toml");
    assert_eq!(Config::load(&missing).unwrap(), Config::default());

    // A directory cannot be read as a file: an error, not the defaults.
    let e = Config::load(&dir).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read {}", dir.display())),
        "{e}"
    );

    let good = dir.join("good.toml");
    std::fs::write(&good, "[totp]\ndigits = 8\n").unwrap();
    assert_eq!(Config::load(&good).unwrap().totp.digits, 8);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[totp]\ndigits = 4\n").unwrap();
    let m = Config::load(&bad).unwrap_err().to_string();
    assert_eq!(
        m,
        format!(
            "{}:2: [totp] digits = 4: must be between 6 and 8",
            bad.display()
        )
    );

    let binary = dir.join("binary.toml");
    std::fs::write(&binary, b"[totp]\n\xff\xfe\n").unwrap();
    assert!(matches!(
        Config::load(&binary),
        Err(ConfigError::NotUtf8 { .. })
    ));

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn algorithm_names_round_trip() {
    for a in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
        assert_eq!(Algorithm::from_name(a.as_str()), Some(a));
    }
    assert_eq!(Algorithm::from_name("sha256"), None);
    assert_eq!(
        totp_rs::Algorithm::from(Algorithm::Sha256),
        totp_rs::Algorithm::SHA256
    );
    assert_eq!(Backend::Local.as_str(), "local");
}

// The shipped files derived from the key table. To bring them back in step
// after changing keys.rs, run
//   OTPGATE_REGENERATE=1 cargo test -p otpgated config::
// which rewrites them (then review and commit the diff).

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn regenerate() -> bool {
    std::env::var_os("OTPGATE_REGENERATE").is_some_and(|v| v == "1")
}

const REGENERATE: &str = "regenerate with: OTPGATE_REGENERATE=1 cargo test -p otpgated config::";

#[test]
fn the_shipped_config_is_the_rendered_table() {
    let path = repo_file("packaging/otpgate.toml");
    let want = render_example();
    if regenerate() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(have.lines().count().min(want.lines().count()));
        panic!(
            "{} differs from the key table (first at line {}); {REGENERATE}",
            path.display(),
            line + 1
        );
    }
}

const BEGIN: &str = "<!-- BEGIN config table -->\n";
const END: &str = "<!-- END config table -->";

#[test]
fn the_documented_table_is_the_rendered_table() {
    let path = repo_file("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (before, rest) = doc
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("{}: no {BEGIN:?} marker", path.display()));
    let (table, after) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("{}: no {END:?} marker", path.display()));
    let want = render_markdown_table();
    if regenerate() {
        std::fs::write(&path, format!("{before}{BEGIN}{want}{END}{after}")).unwrap();
    } else {
        assert!(
            table == want,
            "{}: the table differs from the key table; {REGENERATE}",
            path.display()
        );
    }
}

/// The rendered example is all defaults, commented or not: every default
/// passes its own key's checks and means what `Config::default()` means.
#[test]
fn the_rendered_example_means_the_defaults() {
    let example = render_example();
    assert_eq!(parse(&example).unwrap(), Config::default());
    let mut uncommented = String::new();
    for s in keys::SECTIONS {
        uncommented.push_str(&format!("[{}]\n", s.name));
        for k in s.keys {
            if !matches!(k.preset, keys::Preset::Unset(_)) {
                let line = example
                    .lines()
                    .find(|l| l.starts_with(&format!("# {} = ", k.name)))
                    .unwrap_or_else(|| panic!("[{}] {} not shown", s.name, k.name));
                uncommented.push_str(&line[2..]);
                uncommented.push('\n');
            }
        }
    }
    assert_eq!(parse(&uncommented).unwrap(), Config::default());
}

/// Every key reaches the field of its name: a value other than its default
/// (the smallest or largest an integer key accepts, a string key's example)
/// shows up in that field.
#[test]
fn every_key_is_wired_to_its_field() {
    for s in keys::SECTIONS {
        for k in s.keys {
            let (value, shown) = match (&k.kind, &k.preset) {
                (keys::Kind::Int { min, max }, keys::Preset::Int(d)) => {
                    let n = if min == d { max } else { min };
                    (n.to_string(), n.to_string())
                }
                (keys::Kind::Text { .. } | keys::Kind::Path, keys::Preset::Unset(e)) => {
                    (format!("{e:?}"), format!("Some({e:?})"))
                }
                _ => continue,
            };
            // Database keys count only with the database backend.
            let text = if s.name == "storage" {
                format!("[storage]\nbackend = \"postgres\"\nurl = \"postgres://u@db/x\"\n{} = {value}\n", k.name)
            } else {
                format!("[{}]\n{} = {value}\n", s.name, k.name)
            };
            let c = parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let debug = format!("{c:?}");
            let field = format!(" {}: {shown}", k.name);
            assert!(
                debug.contains(&format!("{field},")) || debug.contains(&format!("{field} }}")),
                "{text:?} did not set its field: {debug}"
            );
        }
    }
    let c = parse("[lockout]\nmax_duration_secs = 900\n").unwrap();
    assert_eq!(c.lockout.max_duration_secs, 900);
    // Raising the first lock raises an unset cap with it.
    let c = parse("[lockout]\nduration_secs = 100000\n").unwrap();
    assert_eq!(c.lockout.max_duration_secs, 100_000);
    assert_eq!(
        err("[lockout]\nduration_secs = 1000\nmax_duration_secs = 999\n"),
        format!("{FILE}:3: [lockout] max_duration_secs = 999: must be between 1000 and 2592000")
    );
}

#[test]
fn methods_allowed_is_a_list_of_known_methods() {
    use otpgate_proto::Method;
    assert_eq!(
        parse("").unwrap().methods.allowed,
        [Method::Totp, Method::Email]
    );
    let c = parse("[methods]\nallowed = [\"totp\"]\n").unwrap();
    assert_eq!(c.methods.allowed, [Method::Totp]);
    assert_eq!(
        err("[methods]\nallowed = [\"totp\", \"sms\"]\n"),
        format!(
            "{FILE}:2: [methods] allowed = [... \"sms\" ...]: each must be \"totp\" or \"email\""
        )
    );
    assert_eq!(
        err("[methods]\nallowed = []\n"),
        format!("{FILE}:2: [methods] allowed: must list at least one of \"totp\" or \"email\"")
    );
    assert_eq!(
        err("[methods]\nallowed = [\"totp\", \"totp\"]\n"),
        format!("{FILE}:2: [methods] allowed: \"totp\" is listed twice")
    );
    assert_eq!(
        err("[methods]\nallowed = \"totp\"\n"),
        format!("{FILE}:2: [methods] allowed must be an array, not a string")
    );
    assert_eq!(
        err("[methods]\nallowed = [1]\n"),
        format!("{FILE}:2: [methods] allowed: must be a list of strings: \"totp\" or \"email\"")
    );
}

#[test]
fn the_pam_socket_is_on_by_default_and_can_be_turned_off() {
    let c = parse("").unwrap();
    assert_eq!(
        c.pam.socket.as_deref(),
        Some(std::path::Path::new("/run/otpgate/pam.socket"))
    );
    let c = parse("[pam]\nsocket = \"\"\n").unwrap();
    assert_eq!(c.pam.socket, None);
    let c = parse("[pam]\nsocket = \"/run/x-1/p_2.sock\"\n").unwrap();
    assert_eq!(
        c.pam.socket.as_deref(),
        Some(std::path::Path::new("/run/x-1/p_2.sock"))
    );
    let long = format!("/run/{}", "a".repeat(100));
    for bad in [
        "relative/pam.socket",
        "/pam.socket",
        "/run/otpgate/",
        "/run/../etc/pam.socket",
        "/run/./otpgate/pam.socket",
        "/run/otp gate/pam.socket",
        "/run/otpgate/pam.socket,guid=1",
        "/run/otpgate/pam%2esocket",
        long.as_str(),
    ] {
        let m = err(&format!("[pam]\nsocket = \"{bad}\"\n"));
        assert!(
            m.starts_with(&format!("{FILE}:2: [pam] socket")),
            "{bad}: {m}"
        );
    }
}

fn policy_err(text: &str) -> String {
    Config::parse(text, Path::new("/etc/otpgate/otpgate.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn policy_rules_are_read_in_order_with_their_lines() {
    let text = "[lockout]\nmax_failures = 3\n\n[[policy]]\nusers = [\"root\"]\nservices = [\"login\"]\nmode = \"optional\"\n\n[[policy]]\ngroups = [\"*\", \"!backup\"]\nservices = [\"sshd\", \"sudo\"]\nmode = \"require\"\nenroll_by = \"2027-01-31\"\nremember_secs = 300\n\n[[policy]]\nfrom = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nmode = \"require\"\n\n[[policy]]\nusers = [\"robot\"]\nmode = \"skip\"\nallow_skip_remote = true\n";
    let c = Config::parse(text, Path::new("/etc/otpgate/otpgate.toml")).unwrap();
    let r = &c.policy.rules;
    assert_eq!(r.len(), 4);
    assert_eq!((r[0].line, r[1].line, r[2].line, r[3].line), (4, 9, 16, 20));
    assert_eq!(r[1].mode, crate::policy::Mode::Require);
    assert_eq!(r[1].enroll_by.unwrap().to_string(), "2027-01-31");
    assert_eq!(r[1].remember_secs, 300);
    assert_eq!(r[1].groups.as_ref().unwrap().no, vec!["backup".to_string()]);
    assert_eq!(r[2].from.as_ref().unwrap().len(), 2);
    assert!(r[3].allow_skip_remote);
    assert_eq!(c.lockout.max_failures, 3);
    // A TOML date literal is a date too.
    let c = Config::parse(
        "[[policy]]\nusers = [\"root\"]\nservices = [\"login\"]\nmode = \"optional\"\n[[policy]]\nmode = \"require\"\nservices = [\"sshd\"]\nenroll_by = 2027-01-31\n",
        Path::new("x"),
    )
    .unwrap();
    assert_eq!(
        c.policy.rules[1].enroll_by.unwrap().to_string(),
        "2027-01-31"
    );
}

#[test]
fn bad_policy_rules_are_refused_with_file_line_and_reason() {
    let cases: &[(&str, &str)] = &[
        (
            "[policy]\nmode = \"require\"\n",
            ":1: [policy]: rules are an array of tables",
        ),
        (
            "[[policy]]\nusers = [\"a\"]\n",
            ":1: [[policy]] rule 1: mode: is required",
        ),
        (
            "[[policy]]\nmode = \"maybe\"\n",
            ":2: [[policy]] rule 1: mode = \"maybe\": must be",
        ),
        (
            "[[policy]]\nmode = \"skip\"\nuser = [\"a\"]\n",
            ":3: [[policy]] rule 1: unknown key \"user\"",
        ),
        (
            "[[policy]]\nmode = \"optional\"\nfrom = [\"10.0.0.0/8\"]\n",
            ":3: [[policy]] rule 1: from: may only make a second factor required",
        ),
        (
            "[[policy]]\nmode = \"require\"\nservices = [\"sshd\"]\nfrom = [\"!10.0.0.0/8\"]\n",
            "is not an address or network",
        ),
        (
            "[[policy]]\nmode = \"require\"\nservices = [\"sshd\"]\nfrom = [\"office.example\"]\n",
            "is not an address or network",
        ),
        (
            "[[policy]]\nmode = \"optional\"\ngroups = [\"!backup\"]\n",
            "only exclusions match nothing",
        ),
        (
            "[[policy]]\nmode = \"optional\"\nusers = []\n",
            "an empty list matches nothing",
        ),
        (
            "[[policy]]\nmode = \"optional\"\nusers = \"alice\"\n",
            "must be a list of strings",
        ),
        (
            "[[policy]]\nmode = \"optional\"\nenroll_by = \"2027-01-31\"\n",
            "only means something with mode = \"require\"",
        ),
        (
            "[[policy]]\nmode = \"require\"\nservices = [\"sshd\"]\nenroll_by = \"2027-02-30\"\n",
            "enroll_by = \"2027-02-30\": must be a date",
        ),
        (
            "[[policy]]\nmode = \"skip\"\nremember_secs = 60\n",
            "means nothing with mode = \"skip\"",
        ),
        (
            "[[policy]]\nmode = \"optional\"\nremember_secs = 90000\n",
            "between 0 and 86400",
        ),
        (
            "[[policy]]\nmode = \"optional\"\nallow_skip_remote = true\n",
            "only means something with mode = \"skip\"",
        ),
    ];
    for (text, want) in cases {
        let e = policy_err(text);
        assert!(e.contains(want), "{text:?}: {e}");
        assert!(e.starts_with("/etc/otpgate/otpgate.toml:"), "{e}");
    }
}

#[test]
fn rules_that_lock_out_root_everywhere_are_refused() {
    let e = policy_err("[[policy]]\ngroups = [\"*\"]\nmode = \"require\"\n");
    assert!(
        e.contains(":1: [[policy]]: these rules make root give a second factor on every service"),
        "{e}"
    );
    let ok = "[[policy]]\nusers = [\"root\"]\nservices = [\"login\"]\nmode = \"optional\"\n\n[[policy]]\ngroups = [\"*\"]\nmode = \"require\"\n";
    assert!(Config::parse(ok, Path::new("x")).is_ok());
}

#[test]
fn the_shipped_policy_example_is_a_valid_policy() {
    let keys: Vec<&str> = super::POLICY_KEYS.iter().map(|(k, _)| *k).collect();
    let text: String = render_example()
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        // The example starts at its first table ([email] has a `from` too).
        .skip_while(|l| !l.starts_with("[[policy]] "))
        .filter(|l| {
            *l == "[[policy]]"
                || l.starts_with("[[policy]] ")
                || keys
                    .iter()
                    .any(|k| l.strip_prefix(k).is_some_and(|r| r.starts_with(" =")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let c = Config::parse(&text, Path::new("example")).unwrap();
    assert_eq!(c.policy.rules.len(), 4, "{text}");
}

#[test]
fn every_policy_key_is_documented() {
    let doc = std::fs::read_to_string(repo_file("docs/configuration.md")).unwrap();
    for (key, _) in super::POLICY_KEYS {
        assert!(
            doc.contains(&format!("| `{key}` |")),
            "docs/configuration.md lacks {key}"
        );
    }
}
