//! Every configuration key, declared once: its section, type, default,
//! accepted range and one line of documentation. The parser and its range
//! checks (`check.rs`), `--check-config`'s messages, the shipped
//! `packaging/otpgate.toml` ([`render_example`]) and the key table of
//! `docs/configuration.md` ([`render_markdown_table`]) are all read off
//! [`SECTIONS`]; the tests in `tests.rs` fail when either file drifts from
//! the rendering.

/// What a key's value must be. The TOML type follows from the kind
/// (integers for `Int`/`IntFrom`, strings for the rest).
pub(crate) enum Kind {
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// An integer from the value of `key` (same section, declared earlier)
    /// up to `max`. Unset, it is its default or `key`'s value, whichever is
    /// larger, so that raising `key` alone never makes the file invalid.
    IntFrom { key: &'static str, max: i64 },
    /// A string `check` accepts (`allowed` says what that is, for the
    /// documentation); refusals quote the value.
    Text {
        check: fn(&str) -> Result<(), &'static str>,
        allowed: &'static str,
    },
    /// Like `Text`, but the value is never quoted back: it may carry a
    /// credential.
    Secret {
        check: fn(&str) -> Result<(), &'static str>,
        allowed: &'static str,
    },
    /// An absolute path other than `/`.
    Path,
    /// Exactly one of `values`; `hint` ends the refusal.
    Choice {
        values: &'static [&'static str],
        hint: &'static str,
    },
    /// A non-empty list of distinct strings, each one of `values`.
    List { values: &'static [&'static str] },
}

impl Kind {
    /// The TOML type, as error messages name it.
    pub(crate) fn expected(&self) -> &'static str {
        match self {
            Kind::Int { .. } | Kind::IntFrom { .. } => "an integer",
            Kind::List { .. } => "an array",
            _ => "a string",
        }
    }

    /// What is accepted, for the documentation.
    fn allowed(&self) -> String {
        match self {
            Kind::Int { min, max } => format!("{min} to {max}"),
            Kind::IntFrom { key, max } => format!("{key} to {max}"),
            Kind::Path => "absolute path".to_owned(),
            Kind::Choice { values, .. } => values.join(" | "),
            Kind::List { values } => format!("a list of {}", values.join(", ")),
            Kind::Text { allowed, .. } | Kind::Secret { allowed, .. } => (*allowed).to_owned(),
        }
    }
}

/// A key's value when the file does not set it.
pub(crate) enum Preset {
    Int(i64),
    Str(&'static str),
    List(&'static [&'static str]),
    /// No default: the feature it configures is off. The string is the
    /// example shown, commented out, in the shipped file.
    Unset(&'static str),
}

pub(crate) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub preset: Preset,
    /// One line: what the key does (the accepted range is added from `kind`).
    pub doc: &'static str,
}

pub(crate) struct Section {
    pub name: &'static str,
    /// Shown after the section header in the shipped file ("" for none).
    pub doc: &'static str,
    /// A paragraph after the section's keys in the shipped file ("" for none).
    pub note: &'static str,
    /// In the order the documentation and error messages list them.
    pub keys: &'static [Key],
}

const fn int(name: &'static str, min: i64, max: i64, default: i64, doc: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Int { min, max },
        preset: Preset::Int(default),
        doc,
    }
}

const fn key(name: &'static str, kind: Kind, preset: Preset, doc: &'static str) -> Key {
    Key {
        name,
        kind,
        preset,
        doc,
    }
}

const fn text(check: fn(&str) -> Result<(), &'static str>, allowed: &'static str) -> Kind {
    Kind::Text { check, allowed }
}

fn anything(_: &str) -> Result<(), &'static str> {
    Ok(())
}

use Preset::{Str, Unset};

/// Every section and key the daemon understands, one key a line.
#[rustfmt::skip]
pub(crate) static SECTIONS: &[Section] = &[
    Section { name: "storage", doc: "", keys: &[
        key("backend", Kind::Choice { values: &["local", "postgres"], hint: "" }, Str("local"), "where records live: \"local\" is the embedded store under path; \"postgres\" a database every host of a fleet shares"),
        key("path", Kind::Path, Str("/var/lib/otpgate"), "local state directory (root only, forced to 0700)"),
        key("key_file", Kind::Path, Str("/etc/otpgate/master.key"), "32-byte secret-encryption key; created 0400 root if missing"),
        key("url", Kind::Secret { check: check_db_url, allowed: "postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…&sslrootcert=…]" }, Unset("postgres://otpgate@db.example/otpgate?sslmode=verify-full"), "database, for backend = \"postgres\" (required there); no password in it"),
        key("password_file", Kind::Path, Unset("/etc/otpgate/db.password"), "the database password, in a file root alone may read; unset for peer or certificate login"),
        // Below the module's 5 s default, so the daemon's "database unreachable" answer arrives before the module gives up.
        int("timeout_ms", 100, 60_000, 2_000, "longest wait for the database in one call; the call then fails closed"),
        int("pool_size", 1, 64, 8, "database connections each otpgated keeps at most"),
    ], note: "\
Instead of the key file, systemd can hand the key over as the encrypted
credential \"otpgate-master-key\" (LoadCredentialEncrypted= in the unit);
when present it is preferred over key_file." },

    Section { name: "totp", doc: "for new enrolments; each keeps the parameters it was made with", note: "", keys: &[
        key("issuer", text(check_issuer, "1 to 64 characters, no ':'"), Str("otpgate"), "shown in authenticator apps; the account label is USER@HOSTNAME"),
        // Fewer digits make guessing too cheap; apps show no more than 8.
        int("digits", 6, 8, 6, "digits in a code"),
        // Shorter steps outrun people typing; longer ones keep a code valid too long.
        int("period_secs", 15, 300, 30, "seconds each code lasts"),
        key("algorithm", Kind::Choice { values: &["SHA1", "SHA256", "SHA512"], hint: " (exactly, in upper case)" }, Str("SHA1"), "hash function (many apps only do SHA1)"),
        // More steps would make a guessed code many times likelier to hit.
        int("window", 0, 10, 1, "accept codes this many steps before/after now"),
        // Below 128 bits is weak; 64 bytes is HMAC-SHA512's block size.
        int("secret_bytes", 16, 64, 20, "length of a new secret in bytes (20 = 160 bits, RFC 4226's advice for SHA1)"),
    ] },

    Section { name: "lockout", doc: "", note: "", keys: &[
        // 0 would lock on nothing; beyond 100 the lockout no longer limits guessing.
        int("max_failures", 1, 100, 5, "consecutive wrong codes before the account's second factor locks"),
        int("duration_secs", 1, 604_800, 900, "how long the first lock lasts"),
        key("max_duration_secs", Kind::IntFrom { key: "duration_secs", max: 2_592_000 }, Preset::Int(86_400), "each further lock in a row (no success between) lasts twice as long, up to this"),
        // Counted on PAM's rhost; logins without one are never limited this way.
        int("source_max_failures", 0, 100_000, 50, "wrong codes from one remote host (all users) before it is refused; 0 = off"),
        int("source_window_secs", 1, 86_400, 900, "... within this many seconds; the host is refused until the window ends"),
    ] },

    Section { name: "backup_codes", doc: "", note: "", keys: &[
        int("count", 0, 100, 10, "one-time codes handed out at enrolment"),
    ] },

    Section { name: "methods", doc: "", note: "", keys: &[
        // Users already enrolled with a method no longer listed keep it; only new enrolments are refused.
        key("allowed", Kind::List { values: &["totp", "email"] }, Preset::List(&["totp", "email"]), "the second factors users may enrol (e-mail needs [email] smtp_url too)"),
    ] },

    Section { name: "access", doc: "", note: "", keys: &[
        key("admin_group", text(check_group_name, "a group name, not a gid"), Str("otpgate-admin"), "members may manage other users; root always may"),
    ] },

    Section { name: "pam", doc: "the PAM module's direct line to the daemon", note: "\
The system bus stays the public interface (the CLI, other clients) and the
module's fallback when the socket is not there; module option bus_only
skips the socket.", keys: &[
        key("socket", text(check_socket_path, "an absolute path of letters, digits, - _ . /; \"\" turns it off"), Str(otpgate_proto::PAM_SOCKET), "peer-to-peer D-Bus socket for pam_otpgate.so; its directory is made root-only (0700)"),
    ] },

    Section { name: "email", doc: "the e-mail factor; off unless smtp_url is set", note: "", keys: &[
        key("smtp_url", Kind::Secret { check: check_smtp_url, allowed: "smtp://HOST[:PORT] (?tls=required for STARTTLS) or smtps://HOST[:PORT]" }, Unset("smtp://127.0.0.1:25"), "the mail server; setting it turns the e-mail factor on; never a password in it"),
        key("username", text(anything, ""), Unset("otpgate"), "SMTP user name, if the server asks for one"),
        key("password_file", Kind::Path, Unset("/etc/otpgate/smtp-password"), "root-only (0400) file holding the SMTP password"),
        int("timeout_secs", 1, 60, 10, "for one delivery to the SMTP server"),
        key("from", text(check_address, "an e-mail address"), Unset("otpgate@example.org"), "sender address of the codes; required with smtp_url"),
        int("code_ttl_secs", 30, 3600, 300, "how long an e-mailed code is valid"),
        int("resend_cooldown_secs", 0, 3600, 60, "a new login within this reuses the code already sent"),
    ] },

    Section { name: "self_service", doc: "what a user (not an administrator) proves to change their own second factor", note: "\
With \"password+code\", Disable, RegenerateBackupCodes and removing a
device also check the account's password through the PAM service
pam_service (/etc/pam.d/otpgate-reauth as shipped: pam_unix, never
pam_otpgate). A wrong password counts against [lockout] like a wrong code.
Administrators need neither.", keys: &[
        key("reauth", Kind::Choice { values: &["code", "password+code"], hint: "" }, Str("code"), "what a user proves to disable the second factor or replace backup codes: a current code, or the account's password and a code"),
        key("pam_service", text(check_pam_service, "a file name in /etc/pam.d: letters, digits, - _ ."), Str("otpgate-reauth"), "PAM service that checks the password for \"password+code\"; it must not include pam_otpgate"),
    ] },
];

/// The module checks the same form (it connects by a `unix:path=`
/// address, which may hold no escapes), and a socket path must fit the
/// kernel's 108 bytes.
fn check_socket_path(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Ok(());
    }
    if !s.starts_with('/') || s.ends_with('/') {
        return Err("must be an absolute path to a file, or \"\" for no socket");
    }
    if s.len() > 100 {
        return Err("must be at most 100 bytes (the kernel's limit for a socket path)");
    }
    if s.chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err("may only hold letters, digits and - _ . /");
    }
    if s.split('/').any(|part| part == "." || part == "..") {
        return Err("must not have a . or .. component");
    }
    if s.matches('/').count() < 2 {
        return Err("must be in a directory of its own, not directly under /");
    }
    Ok(())
}

/// A file directly in /etc/pam.d, the way libpam looks services up.
fn check_pam_service(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if s.starts_with('.')
        || s.chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err("must be a file name in /etc/pam.d: letters, digits and - _ . (not first)");
    }
    Ok(())
}

/// "postgres" is recognised so that the refusal can say why.
fn check_db_url(s: &str) -> Result<(), &'static str> {
    crate::store::DbUrl::parse(s).map(drop)
}

fn check_issuer(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.chars().count() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if s.contains(':') {
        return Err(
            "must not contain ':' (it separates issuer and account in the authenticator label)",
        );
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

/// A name the group database could hold. Directory groups (sssd, winbind)
/// may contain spaces, `@` or upper case, so those are allowed; all digits
/// would read as a gid.
fn check_group_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err("must be a group name of 1 to 256 characters");
    }
    if name.trim() != name {
        return Err("must not start or end with white space");
    }
    if name.starts_with('-') {
        return Err("must not start with '-'");
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err("must be a group name, not a number");
    }
    if name
        .chars()
        .any(|c| c == ':' || c == ',' || c == '/' || c.is_control())
    {
        return Err("must not contain ':', ',', '/' or control characters");
    }
    Ok(())
}

fn check_address(s: &str) -> Result<(), &'static str> {
    if !s.contains('@') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be an e-mail address like otpgate@example.org");
    }
    Ok(())
}

fn check_smtp_url(u: &str) -> Result<(), &'static str> {
    let rest = u
        .strip_prefix("smtp://")
        .or_else(|| u.strip_prefix("smtps://"))
        .ok_or("must start with smtp:// (STARTTLS with ?tls=required) or smtps://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if userinfo.contains(':') {
            return Err(
                "must not hold a password: put it in a root-only file named by password_file",
            );
        }
    }
    if authority.rsplit('@').next().unwrap_or("").is_empty()
        || u.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("must name a mail server: smtp://HOST[:PORT] or smtps://HOST[:PORT]");
    }
    Ok(())
}

/// The value as it would be written in the file.
fn literal(preset: &Preset) -> String {
    match preset {
        Preset::Int(n) => n.to_string(),
        Preset::Str(s) | Preset::Unset(s) => format!("\"{s}\""),
        Preset::List(items) => {
            let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
            format!("[{}]", quoted.join(", "))
        }
    }
}

/// The doc line followed by what is accepted.
fn doc_line(key: &Key) -> String {
    match key.kind.allowed() {
        a if a.is_empty() => key.doc.to_owned(),
        a => format!("{}; {a}", key.doc),
    }
}

const HEADER: &str = "\
# /etc/otpgate/otpgate.toml: configuration of otpgated, otpgate's daemon.
#
# Every key is optional; each line below shows a key with its default,
# commented out (keys without a default show an example). Uncomment and
# change what you need, check the file with
#   otpgated --check-config
# and restart the daemon (the file is read at start only; SIGHUP does not
# reload it):
#   systemctl restart otpgated          (with systemd)
#   /usr/libexec/otpgate/otpgated-ctl restart   (without systemd)
#
# This file must be owned by root and writable by root only: whoever can
# write it decides who administers otpgate.
#
# Generated from daemon/src/config/keys.rs; see docs/configuration.md.
";

/// Closes the shipped file: `[[policy]]` rules are tables of their own
/// (none by default), shown as a commented example.
const POLICY_EXAMPLE: &str = "
# [[policy]]: who must give a second factor, where, from when. Rules are
# tried in order and the FIRST that matches decides; no rule matching means
# \"require\" (the PAM line's nullok may still let an account without a
# second factor through). Check with: otpgate policy explain USER SERVICE
#
# [[policy]]                      # root's console stays open to recover
# users = [\"root\"]
# services = [\"login\"]
# mode = \"optional\"
#
# [[policy]]
# users = [\"backup-robot\"]        # patterns: * and ?, \"!name\" excludes
# services = [\"sshd\"]
# mode = \"skip\"                     # \"require\" | \"optional\" | \"skip\"
# allow_skip_remote = true          # skip applies to remote logins only with this
#
# [[policy]]
# groups = [\"*\", \"!contractors\"]
# services = [\"sshd\", \"sudo\"]
# mode = \"require\"
# enroll_by = \"2027-01-31\"          # not enrolled passes, with a notice, through that day (UTC)
# remember_secs = 300               # sudo again in the same login session: not asked for 5 min
#
# [[policy]]
# from = [\"0.0.0.0/0\", \"::/0\"]     # from: only ever makes a factor required
# mode = \"require\"
";

/// The shipped, all-commented `packaging/otpgate.toml`.
pub fn render_example() -> String {
    let mut out = String::from(HEADER);
    for section in SECTIONS {
        out.push('\n');
        let header = format!("[{}]", section.name);
        if section.doc.is_empty() {
            out.push_str(&header);
        } else {
            out.push_str(&format!("{header:<10}  # {}", section.doc));
        }
        out.push('\n');
        let lines: Vec<String> = section
            .keys
            .iter()
            .map(|k| format!("# {} = {}", k.name, literal(&k.preset)))
            .collect();
        let width = lines.iter().map(String::len).max().unwrap_or(0);
        for (line, key) in lines.iter().zip(section.keys) {
            out.push_str(&format!("{line:<width$}  # {}\n", doc_line(key)));
        }
        if !section.note.is_empty() {
            out.push_str("#\n");
            for l in section.note.lines() {
                out.push_str(&format!("# {l}\n"));
            }
        }
    }
    out.push_str(POLICY_EXAMPLE);
    out
}

/// The key table of `docs/configuration.md`.
pub fn render_markdown_table() -> String {
    let mut out = String::from(
        "| Section | Key | Default | Allowed | What it does |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for section in SECTIONS {
        for k in section.keys {
            let default = match &k.preset {
                Preset::Unset(_) => "unset".to_owned(),
                p => format!("`{}`", literal(p)),
            };
            out.push_str(&format!(
                "| `[{}]` | `{}` | {default} | {} | {} |\n",
                section.name,
                k.name,
                k.kind.allowed().replace('|', "\\|"),
                k.doc.replace('|', "\\|")
            ));
        }
    }
    out
}
