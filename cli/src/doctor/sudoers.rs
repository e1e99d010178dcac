//! sudo's side of `otpgate doctor`: the sudoers settings that decide whether
//! sudo runs PAM's `auth` stack, which stack, and how often.
//!
//! Read as sudo reads it: /etc/sudoers and every file it includes
//! (`@include`, `#include`, `@includedir`, `#includedir`; in a directory,
//! files whose name has a `.` or ends in `~` are skipped, as sudo skips
//! them), with backslash-continued lines.

use std::io;
use std::path::{Path, PathBuf};

use super::finding::{Finding, Severity};

const SERVICE: &str = "sudo";
const SUDOERS: &str = "/etc/sudoers";
/// Far more than any real tree nests; stops an include loop.
const MAX_DEPTH: usize = 32;

/// What the PAM check needs from sudoers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SudoFacts {
    /// `Defaults pam_service=X` (the last one outside any scope): sudo
    /// authenticates through /etc/pam.d/X instead of /etc/pam.d/sudo.
    pub pam_service: Option<String>,
}

#[derive(Debug, Clone)]
struct Loc {
    file: String,
    line: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

struct Reader<'a> {
    root: &'a Path,
    facts: SudoFacts,
    findings: Vec<Finding>,
    /// `!authenticate` per Defaults scope (`""` for none), dropped again
    /// when a later line of the same scope sets `authenticate`: sudo
    /// applies each scope's Defaults in order, the last one wins.
    no_auth: Vec<(String, Loc)>,
}

/// Checks ROOT/etc/sudoers and what it includes. No file: sudo is not
/// installed there, and there is nothing to report.
pub fn check(root: &Path) -> (SudoFacts, Vec<Finding>) {
    let mut reader = Reader {
        root,
        facts: SudoFacts::default(),
        findings: Vec::new(),
        no_auth: Vec::new(),
    };
    match std::fs::read_to_string(on_root(root, SUDOERS)) {
        Ok(text) => reader.parse(SUDOERS, &text, 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (SudoFacts::default(), Vec::new()),
        Err(e) => {
            return (
                SudoFacts::default(),
                vec![Finding::new(
                    Severity::Warning,
                    Some(SERVICE),
                    format!("{SUDOERS}: cannot read it ({e}): sudo not checked"),
                    "run otpgate doctor as root",
                )],
            )
        }
    }
    for (scope, loc) in std::mem::take(&mut reader.no_auth) {
        reader.findings.push(Finding::new(
            Severity::Bypass,
            Some(SERVICE),
            format!(
                "{loc}: Defaults{scope} !authenticate: sudo runs no PAM authentication{}, so it never asks for otpgate's code",
                scope_words(&scope)
            ),
            format!("remove `!authenticate` from {loc}"),
        ));
    }
    (reader.facts, reader.findings)
}

fn on_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// `:alice` → ` for alice`, for the sentence about a scoped Defaults.
fn scope_words(scope: &str) -> String {
    let mut chars = scope.chars();
    let what = match chars.next() {
        Some(':') => "user",
        Some('@') => "host",
        Some('>') => "run-as user",
        Some('!') => "command",
        _ => return String::new(),
    };
    format!(" for {what} {}", chars.as_str())
}

impl Reader<'_> {
    fn parse(&mut self, file: &str, text: &str, depth: usize) {
        for (line, content) in logical_lines(text) {
            let loc = Loc {
                file: file.to_owned(),
                line,
            };
            self.line(&content, &loc, depth);
        }
    }

    fn line(&mut self, content: &str, loc: &Loc, depth: usize) {
        let trimmed = content.trim();
        let (word, rest) = match trimmed.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (trimmed, ""),
        };
        match word {
            "#include" | "@include" => return self.include(rest, loc, depth, false),
            "#includedir" | "@includedir" => return self.include(rest, loc, depth, true),
            _ => {}
        }
        let content = strip_comment(trimmed);
        if content.is_empty() {
            return;
        }
        let (word, rest) = match content.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (content, ""),
        };
        if let Some(scope) = word.strip_prefix("Defaults") {
            if scope.is_empty() || scope.starts_with([':', '@', '>', '!']) {
                return self.defaults(scope, rest, loc);
            }
        }
        if matches!(
            word,
            "User_Alias" | "Runas_Alias" | "Host_Alias" | "Cmnd_Alias" | "Cmd_Alias"
        ) {
            return;
        }
        if has_tag(content, "NOPASSWD") {
            self.findings.push(Finding::new(
                Severity::Bypass,
                Some(SERVICE),
                format!(
                    "{loc}: `{content}`: NOPASSWD makes sudo run no PAM authentication for these commands, so they need no otpgate code"
                ),
                format!(
                    "remove `NOPASSWD:` from {loc} (or accept knowingly that these commands need neither password nor code)"
                ),
            ));
        }
    }

    fn include(&mut self, arg: &str, loc: &Loc, depth: usize, dir: bool) {
        let arg = arg.trim().trim_matches('"');
        if arg.is_empty() {
            return;
        }
        if depth + 1 > MAX_DEPTH {
            self.findings.push(Finding::new(
                Severity::Warning,
                Some(SERVICE),
                format!("{loc}: includes nested more than {MAX_DEPTH} deep (a loop?)"),
                format!("remove the include at {loc} that leads back to a file already included"),
            ));
            return;
        }
        // sudo 1.9 resolves a relative include against the including file's
        // directory.
        let path = if arg.starts_with('/') {
            arg.to_owned()
        } else {
            let parent = Path::new(&loc.file)
                .parent()
                .map_or_else(|| "/".to_owned(), |p| p.display().to_string());
            format!("{}/{arg}", parent.trim_end_matches('/'))
        };
        let files = if dir {
            let Ok(entries) = std::fs::read_dir(on_root(self.root, &path)) else {
                // sudo ignores a missing include directory.
                return;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.contains('.') && !n.ends_with('~'))
                .collect();
            names.sort();
            names
                .into_iter()
                .map(|n| format!("{}/{n}", path.trim_end_matches('/')))
                .collect()
        } else {
            vec![path]
        };
        for file in files {
            match std::fs::read_to_string(on_root(self.root, &file)) {
                Ok(text) => self.parse(&file, &text, depth + 1),
                Err(e) => self.findings.push(Finding::new(
                    Severity::Warning,
                    Some(SERVICE),
                    format!("{loc}: include {file}: cannot read it ({e}): sudo not fully checked"),
                    "run otpgate doctor as root",
                )),
            }
        }
    }

    fn defaults(&mut self, scope: &str, params: &str, loc: &Loc) {
        for param in split_params(params) {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (
                    n.trim_end_matches(['+', '-']).trim(),
                    Some(unquote(v.trim())),
                ),
                None => (param.as_str(), None),
            };
            let (negated, name) = match name.strip_prefix('!') {
                Some(n) => (true, n.trim()),
                None => (false, name),
            };
            match (name, value) {
                ("authenticate", None) => {
                    self.no_auth.retain(|(s, _)| s != scope);
                    if negated {
                        self.no_auth.push((scope.to_owned(), loc.clone()));
                    }
                }
                ("pam_service", Some(v)) => {
                    if scope.is_empty() {
                        self.facts.pam_service = Some(v.clone());
                    }
                    self.findings.push(Finding::new(
                        Severity::Info,
                        Some(SERVICE),
                        format!(
                            "{loc}: Defaults{scope} pam_service={v}: sudo{} authenticates through /etc/pam.d/{v}, not /etc/pam.d/sudo",
                            scope_words(scope)
                        ),
                        format!("none; /etc/pam.d/{v} is the stack that must run pam_otpgate.so"),
                    ));
                }
                ("pam_login_service", Some(v)) => self.findings.push(Finding::new(
                    Severity::Info,
                    Some(SERVICE),
                    format!(
                        "{loc}: Defaults{scope} pam_login_service={v}: sudo -i{} authenticates through /etc/pam.d/{v}, not /etc/pam.d/sudo-i",
                        scope_words(scope)
                    ),
                    format!("none; /etc/pam.d/{v} is the stack that must run pam_otpgate.so"),
                )),
                ("timestamp_timeout", Some(v)) => self.timestamp(scope, &v, loc),
                _ => {}
            }
        }
    }

    fn timestamp(&mut self, scope: &str, value: &str, loc: &Loc) {
        let Ok(minutes) = value.parse::<f64>() else {
            return;
        };
        let whom = scope_words(scope);
        let finding = if minutes < 0.0 {
            Finding::new(
                Severity::Warning,
                Some(SERVICE),
                format!(
                    "{loc}: Defaults{scope} timestamp_timeout={value}: sudo{whom} never asks again once a user has given the code in a terminal"
                ),
                format!("set `timestamp_timeout=15` (or 0 to ask every time) at {loc}"),
            )
        } else if minutes == 0.0 {
            Finding::new(
                Severity::Info,
                Some(SERVICE),
                format!("{loc}: Defaults{scope} timestamp_timeout={value}: sudo{whom} asks for the code every time"),
                "none",
            )
        } else {
            Finding::new(
                Severity::Info,
                Some(SERVICE),
                format!(
                    "{loc}: Defaults{scope} timestamp_timeout={value}: sudo{whom} does not ask again for {value} minutes after the code was given"
                ),
                "none; lower timestamp_timeout to be asked more often",
            )
        };
        self.findings.push(finding);
    }
}

/// Lines joined where they end in a backslash, each with the number of the
/// line it starts on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let (start, mut acc) = current.take().unwrap_or((n + 1, String::new()));
        match raw.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                acc.push(' ');
                current = Some((start, acc));
            }
            None => {
                acc.push_str(raw);
                out.push((start, acc));
            }
        }
    }
    out.extend(current);
    out
}

/// Drops a `#` comment; `#` followed by a digit is a uid or gid (`#1000`,
/// `%#1000`), not a comment. Quoted text is left alone.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut quoted = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'#' if !quoted && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                return line[..i].trim_end();
            }
            _ => {}
        }
    }
    line
}

/// Defaults parameters, split at commas outside double quotes.
fn split_params(params: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in params.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_owned());
    out.retain(|p| !p.is_empty());
    out
}

fn unquote(v: &str) -> String {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

/// Whether a user spec carries the tag (`NOPASSWD:`, possibly after other
/// tags such as `SETENV:`).
fn has_tag(spec: &str, tag: &str) -> bool {
    spec.match_indices(tag).any(|(i, _)| {
        let before = spec[..i].chars().next_back();
        let after = spec[i + tag.len()..].trim_start().starts_with(':');
        after && before.is_none_or(|c| c.is_whitespace() || c == ':' || c == ')' || c == ',')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12's shipped /etc/sudoers.
    const DEBIAN12: &str = include_str!("testdata/debian12_sudoers");

    fn run(files: &[(&str, &str)]) -> (SudoFacts, Vec<Finding>) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = on_root(dir.path(), path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        check(dir.path())
    }

    #[test]
    fn debian_stock_sudoers_has_no_finding() {
        let (facts, f) = run(&[
            (SUDOERS, DEBIAN12),
            ("/etc/sudoers.d/README", "# files here are included\n"),
        ]);
        assert_eq!(facts, SudoFacts::default());
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn pam_service_is_a_fact_and_an_info() {
        let (facts, f) = run(&[
            (SUDOERS, DEBIAN12),
            ("/etc/sudoers.d/otp", "Defaults pam_service=sudo-otp\n"),
        ]);
        assert_eq!(facts.pam_service.as_deref(), Some("sudo-otp"));
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Info);
        assert!(
            f[0].what
                .starts_with("/etc/sudoers.d/otp:1: Defaults pam_service=sudo-otp: "),
            "{f:#?}"
        );
    }

    #[test]
    fn a_scoped_pam_service_is_no_fact() {
        let (facts, f) = run(&[(SUDOERS, "Defaults:alice pam_service=\"alice-pam\"\n")]);
        assert_eq!(facts.pam_service, None);
        assert!(
            f[0].what
                .contains("sudo for user alice authenticates through /etc/pam.d/alice-pam"),
            "{f:#?}"
        );
    }

    #[test]
    fn timestamp_timeout_is_an_info_and_negative_a_warning() {
        let (_, f) = run(&[(SUDOERS, "Defaults env_reset, timestamp_timeout=30\n")]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Info);
        assert!(
            f[0].what.contains("does not ask again for 30 minutes"),
            "{f:#?}"
        );

        let (_, f) = run(&[(SUDOERS, "Defaults timestamp_timeout=-1\n")]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0].what.contains("never asks again"), "{f:#?}");
    }

    #[test]
    fn nopasswd_is_a_bypass_naming_file_line_and_rule() {
        let (_, f) = run(&[
            (SUDOERS, DEBIAN12),
            (
                "/etc/sudoers.d/backup",
                "# nightly job\nbackup ALL=(root) SETENV:NOPASSWD: /usr/bin/rsync\n",
            ),
        ]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Bypass);
        assert!(
            f[0].what.starts_with(
                "/etc/sudoers.d/backup:2: `backup ALL=(root) SETENV:NOPASSWD: /usr/bin/rsync`"
            ),
            "{f:#?}"
        );
        assert!(
            f[0].fix
                .starts_with("remove `NOPASSWD:` from /etc/sudoers.d/backup:2"),
            "{f:#?}"
        );
    }

    #[test]
    fn files_sudo_skips_are_skipped() {
        let (_, f) = run(&[
            (SUDOERS, DEBIAN12),
            ("/etc/sudoers.d/old.bak", "alice ALL=(ALL) NOPASSWD: ALL\n"),
            ("/etc/sudoers.d/alice~", "alice ALL=(ALL) NOPASSWD: ALL\n"),
        ]);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn includes_are_followed_and_lines_continued() {
        let (_, f) = run(&[
            (SUDOERS, "#include extra\n"),
            (
                "/etc/extra",
                "Cmnd_Alias NOPASSWD_ALIAS = /bin/true\nalice ALL = \\\n   NOPASSWD: ALL\n",
            ),
        ]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(f[0].what.starts_with("/etc/extra:2: "), "{f:#?}");
    }

    #[test]
    fn not_authenticate_is_a_bypass_unless_set_back() {
        let (_, f) = run(&[(SUDOERS, "Defaults:deploy !authenticate\n")]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].severity, Severity::Bypass);
        assert!(f[0].what.contains("for user deploy"), "{f:#?}");
        assert_eq!(f[0].fix, "remove `!authenticate` from /etc/sudoers:1");

        let (_, f) = run(&[(SUDOERS, "Defaults !authenticate\nDefaults authenticate\n")]);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn comments_and_uids() {
        assert_eq!(
            strip_comment("%#1000 ALL=(ALL) ALL # admins"),
            "%#1000 ALL=(ALL) ALL"
        );
        assert!(!has_tag("alice ALL=(ALL) PASSWD: ALL", "NOPASSWD"));
        assert!(has_tag("alice ALL=(ALL) NOPASSWD : ALL", "NOPASSWD"));
    }
}
