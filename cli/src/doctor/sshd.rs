//! sshd's side of `otpgate doctor`: which ways into sshd never run PAM's
//! `auth` stack, and so never ask for otpgate's code.
//!
//! sshd runs PAM authentication only for keyboard-interactive, and for
//! password authentication when `UsePAM yes` (then PAM's conversation
//! answers every prompt with the password, so otpgate's code prompt gets
//! the password and the login cannot pass). Public keys, GSSAPI and
//! host-based authentication never touch PAM's `auth` stack: unless
//! `AuthenticationMethods` chains them with keyboard-interactive, they log
//! in without the code.
//!
//! The configuration is read the way sshd reads it: keywords in any case,
//! the first value of a keyword wins, `Include` globs relative to /etc/ssh,
//! and each `Match` block seen as its own effective configuration (the
//! global one with the block's settings on top), since which connections a
//! block catches is only known per connection.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::finding::{Finding, Severity};

const SERVICE: &str = "sshd";
const CONFIG: &str = "/etc/ssh/sshd_config";
/// sshd's own limit on nested `Include`s; a loop stops here as it does there.
const MAX_DEPTH: usize = 16;

const KBD: &str = "keyboard-interactive";
const PUBKEY: &str = "publickey";
const PASSWORD: &str = "password";
const GSSAPI: &str = "gssapi-with-mic";
const HOSTBASED: &str = "hostbased";

/// Where a setting was read: the path as it is on the checked system (not
/// prefixed with `--root`), and the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loc {
    file: String,
    line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone)]
struct Setting {
    /// Lower-cased, with old aliases mapped to the current name.
    keyword: String,
    args: Vec<String>,
    loc: Loc,
}

/// The settings outside any `Match` (index 0), or those of one `Match`
/// block, in the order sshd reads them.
#[derive(Debug)]
struct Block {
    /// `Match User backup`, as written; `None` for the global settings.
    label: Option<String>,
    loc: Option<Loc>,
    settings: Vec<Setting>,
}

struct Parser<'a> {
    root: &'a Path,
    blocks: Vec<Block>,
    /// Problems reading the configuration (unreadable include, loop).
    problems: Vec<Finding>,
}

/// Checks ROOT/etc/ssh/sshd_config. No file: sshd is not installed there,
/// and there is nothing to report.
pub fn check(root: &Path) -> Vec<Finding> {
    let mut parser = Parser {
        root,
        blocks: vec![Block {
            label: None,
            loc: None,
            settings: Vec::new(),
        }],
        problems: Vec::new(),
    };
    match std::fs::read_to_string(on_root(root, CONFIG)) {
        Ok(text) => {
            let mut current = 0;
            parser.parse(CONFIG, &text, 0, &mut current);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![Finding::new(
                Severity::Warning,
                Some(SERVICE),
                format!("{CONFIG}: cannot read it ({e}): sshd not checked"),
                "run otpgate doctor as root",
            )]
        }
    }
    let mut findings = parser.problems;
    findings.extend(analyse(&parser.blocks));
    // On the live system, sshd itself can say how it reads its file: a
    // difference means this reading is wrong somewhere, and the findings
    // above cannot be trusted.
    let sshd = Path::new(SSHD);
    if root == Path::new("/") && sshd.exists() {
        findings.extend(compare_with_sshd(&parser.blocks, sshd, Path::new(CONFIG)));
    }
    findings
}

const SSHD: &str = "/usr/sbin/sshd";
/// `sshd -T` answers in milliseconds; this is for a wedged binary.
const SSHD_T_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn compare_with_sshd(blocks: &[Block], sshd: &Path, config: &Path) -> Option<Finding> {
    match sshd_t(sshd, config) {
        Ok(reported) => {
            let differences = disagreements(&effective(blocks, 0), &reported);
            (!differences.is_empty()).then(|| {
                Finding::new(
                    Severity::Warning,
                    Some(SERVICE),
                    format!(
                        "{CONFIG}: doctor reads it differently from `sshd -T` ({}): the sshd findings may be wrong",
                        differences.join("; ")
                    ),
                    "check the sshd findings by hand against `sshd -T` and report the difference to otpgate",
                )
            })
        }
        Err(e) => Some(Finding::new(
            Severity::Warning,
            Some(SERVICE),
            format!("{CONFIG}: `sshd -T` refuses it ({e}): sshd will not start with it"),
            "fix what `sshd -t` names, then run otpgate doctor again",
        )),
    }
}

/// The global settings as sshd reports them (`keyword value` lines), or
/// sshd's complaint.
fn sshd_t(sshd: &Path, config: &Path) -> Result<Vec<(String, String)>, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(sshd)
        .arg("-T")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", sshd.display()))?;
    let deadline = std::time::Instant::now() + SSHD_T_DEADLINE;
    // Read while it runs: a full pipe would stall it.
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = out_pipe.read_to_string(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = err_pipe.read_to_string(&mut err);
        err
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", SSHD_T_DEADLINE.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let line = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(line.trim().to_owned());
    }
    Ok(out
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect())
}

/// `keyword: doctor read X, sshd says Y` for each setting this check
/// relies on where the two disagree.
fn disagreements(eff: &Effective, reported: &[(String, String)]) -> Vec<String> {
    let yn = |on: bool| if on { "yes" } else { "no" }.to_owned();
    let methods = match &eff.methods {
        None => "any".to_owned(),
        Some((lists, _)) => lists
            .iter()
            .map(|l| l.join(","))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let ours = [
        ("usepam", yn(eff.use_pam.on)),
        ("pubkeyauthentication", yn(eff.pubkey.on)),
        ("passwordauthentication", yn(eff.password.on)),
        ("kbdinteractiveauthentication", yn(eff.kbd.on)),
        ("gssapiauthentication", yn(eff.gssapi.on)),
        ("hostbasedauthentication", yn(eff.hostbased.on)),
        ("authenticationmethods", methods),
    ];
    ours.into_iter()
        .filter_map(|(key, mine)| {
            let theirs = reported.iter().find(|(k, _)| k == key)?;
            (!theirs.1.eq_ignore_ascii_case(&mine))
                .then(|| format!("{key}: doctor read {mine}, sshd says {}", theirs.1))
        })
        .collect()
}

fn on_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

impl Parser<'_> {
    fn parse(&mut self, file: &str, text: &str, depth: usize, current: &mut usize) {
        for (n, raw) in text.lines().enumerate() {
            let loc = Loc {
                file: file.to_owned(),
                line: n + 1,
            };
            let Some((keyword, args)) = split_line(raw) else {
                continue;
            };
            match keyword.as_str() {
                "match" => {
                    let label = format!("Match {}", args.join(" "));
                    self.blocks.push(Block {
                        label: Some(label),
                        loc: Some(loc),
                        settings: Vec::new(),
                    });
                    *current = self.blocks.len() - 1;
                }
                "include" => self.include(&args, &loc, depth, current),
                _ => self.blocks[*current]
                    .settings
                    .push(Setting { keyword, args, loc }),
            }
        }
    }

    fn include(&mut self, patterns: &[String], loc: &Loc, depth: usize, current: &mut usize) {
        if depth + 1 > MAX_DEPTH {
            self.problems.push(Finding::new(
                Severity::Warning,
                Some(SERVICE),
                format!("{loc}: Include nested more than {MAX_DEPTH} deep (a loop?): sshd refuses to start"),
                format!("remove the Include at {loc} that leads back to a file already included"),
            ));
            return;
        }
        for pattern in patterns {
            // sshd resolves relative Include paths against /etc/ssh.
            let pattern = if pattern.starts_with('/') {
                pattern.clone()
            } else {
                format!("/etc/ssh/{pattern}")
            };
            for path in glob(self.root, &pattern) {
                match std::fs::read_to_string(on_root(self.root, &path)) {
                    Ok(text) => {
                        // A Match inside an included file ends with that
                        // file: sshd restores the including file's state.
                        let mut inner = *current;
                        self.parse(&path, &text, depth + 1, &mut inner);
                    }
                    Err(e) => self.problems.push(Finding::new(
                        Severity::Warning,
                        Some(SERVICE),
                        format!(
                            "{loc}: Include {path}: cannot read it ({e}): sshd not fully checked"
                        ),
                        "run otpgate doctor as root",
                    )),
                }
            }
        }
    }
}

/// The lower-cased keyword (aliases mapped) and its arguments, or `None` for
/// a blank line or a comment. Follows sshd's tokenizer: the keyword ends at
/// white space or `=`, arguments may be double-quoted, and an unquoted
/// argument starting with `#` starts a comment.
fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut arg = String::new();
        if first == '"' {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                arg.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg);
    }
    let keyword = match keyword.as_str() {
        // The old name of the same option (one value for both: first wins).
        "challengeresponseauthentication" => "kbdinteractiveauthentication".to_owned(),
        _ => keyword,
    };
    Some((keyword, args))
}

/// Paths (on the checked system) matching an absolute glob inside ROOT,
/// sorted as glob(3) sorts them. `*`, `?` and `[...]` never match a
/// leading dot, as in glob(3).
fn glob(root: &Path, pattern: &str) -> Vec<String> {
    let mut found = vec![String::new()];
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if !part.contains(['*', '?', '[']) {
                next.push(format!("{base}/{part}"));
                continue;
            }
            let Ok(entries) = std::fs::read_dir(on_root(root, base)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| (!n.starts_with('.') || part.starts_with('.')) && wildmatch(part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| format!("{base}/{n}")));
        }
        found = next;
    }
    found
        .into_iter()
        .filter(|p| on_root(root, p).exists())
        .collect()
}

/// fnmatch(3) for one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
fn wildmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns whether `c` is in the class starting after '[' and the
        // index just past the closing ']'.
        let mut i = 0;
        let negate = matches!(p.first(), Some('!' | '^'));
        if negate {
            i += 1;
        }
        let mut hit = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((hit != negate, i + 1));
            }
            first = false;
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                hit |= p[i] <= c && c <= p[i + 2];
                i += 3;
            } else {
                hit |= p[i] == c;
                i += 1;
            }
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(&p[1..], *n.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, used))) => go(&p[1 + used..], &n[1..]),
                (Some(c), None) => *c == '[' && go(&p[1..], &n[1..]),
                _ => false,
            },
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// One yes/no option as it applies: its value and where it was set (`None`:
/// OpenSSH's default).
#[derive(Debug, Clone)]
struct Flag {
    on: bool,
    loc: Option<Loc>,
}

/// The settings that decide which ways in skip PAM, for one context.
struct Effective {
    use_pam: Flag,
    pubkey: Flag,
    password: Flag,
    kbd: Flag,
    gssapi: Flag,
    hostbased: Flag,
    /// `None`: `any` (unset or written so), each enabled method alone.
    methods: Option<(Vec<Vec<String>>, Loc)>,
    /// Where `AuthenticationMethods any` was written, if it was.
    any_at: Option<Loc>,
}

fn first<'a>(block: &'a Block, keyword: &str) -> Option<&'a Setting> {
    block.settings.iter().find(|s| s.keyword == keyword)
}

/// The effective value of `keyword`: the block's own first value, else the
/// global first value.
fn lookup<'a>(blocks: &'a [Block], idx: usize, keyword: &str) -> Option<&'a Setting> {
    (idx != 0)
        .then(|| first(&blocks[idx], keyword))
        .flatten()
        .or_else(|| first(&blocks[0], keyword))
}

fn flag(blocks: &[Block], idx: usize, keyword: &str, default: bool) -> Flag {
    match lookup(blocks, idx, keyword) {
        Some(s) => match s.args.first().map(|a| a.to_ascii_lowercase()).as_deref() {
            Some("yes") => Flag {
                on: true,
                loc: Some(s.loc.clone()),
            },
            Some("no") => Flag {
                on: false,
                loc: Some(s.loc.clone()),
            },
            // sshd refuses to start on anything else; judge by the default.
            _ => Flag {
                on: default,
                loc: None,
            },
        },
        None => Flag {
            on: default,
            loc: None,
        },
    }
}

fn effective(blocks: &[Block], idx: usize) -> Effective {
    let any_at = lookup(blocks, idx, "authenticationmethods")
        .filter(|s| s.args.len() == 1 && s.args[0].eq_ignore_ascii_case("any"))
        .map(|s| s.loc.clone());
    let methods = lookup(blocks, idx, "authenticationmethods").and_then(|s| {
        if s.args.len() == 1 && s.args[0].eq_ignore_ascii_case("any") {
            return None;
        }
        let lists = s
            .args
            .iter()
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect();
        Some((lists, s.loc.clone()))
    });
    Effective {
        // Not allowed inside Match: only the global value counts.
        use_pam: flag(blocks, 0, "usepam", false),
        pubkey: flag(blocks, idx, "pubkeyauthentication", true),
        password: flag(blocks, idx, "passwordauthentication", true),
        kbd: flag(blocks, idx, "kbdinteractiveauthentication", true),
        gssapi: flag(blocks, idx, "gssapiauthentication", false),
        hostbased: flag(blocks, idx, "hostbasedauthentication", false),
        methods,
        any_at,
    }
}

impl Effective {
    /// Whether sshd offers `method` (`name[:submethod]`) at all.
    fn enabled(&self, method: &str) -> bool {
        let (name, sub) = match method.split_once(':') {
            Some((n, s)) => (n, Some(s)),
            None => (method, None),
        };
        match name {
            PUBKEY => self.pubkey.on,
            PASSWORD => self.password.on,
            // Linux sshd has only the PAM device for keyboard-interactive.
            KBD => self.kbd.on && sub.is_none_or(|s| s == "pam"),
            GSSAPI => self.gssapi.on,
            HOSTBASED => self.hostbased.on,
            _ => false,
        }
    }

    fn lists(&self) -> Vec<Vec<String>> {
        match &self.methods {
            Some((lists, _)) => lists.clone(),
            None => [PUBKEY, PASSWORD, KBD, GSSAPI, HOSTBASED]
                .iter()
                .map(|m| vec![(*m).to_owned()])
                .collect(),
        }
    }
}

fn name(method: &str) -> &str {
    method.split(':').next().unwrap_or(method)
}

/// What one context lets through, before it is worded for a block.
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    severity: Severity,
    loc: Option<Loc>,
    what: String,
    fix: String,
}

fn analyse(blocks: &[Block]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let global = effective(blocks, 0);
    if !global.use_pam.on {
        let at = match &global.use_pam.loc {
            Some(l) => format!("{l}: UsePAM no"),
            None => format!("{CONFIG}: UsePAM is not set (OpenSSH's default is no)"),
        };
        findings.push(Finding::new(
            Severity::Bypass,
            Some(SERVICE),
            format!("{at}: sshd runs no PAM authentication, so no login through sshd asks for otpgate's code"),
            format!("set `UsePAM yes` in {CONFIG} (outside any Match block)"),
        ));
    }
    let global_problems = problems(&global);
    for p in &global_problems {
        findings.push(word(p, None));
    }
    for (idx, block) in blocks.iter().enumerate().skip(1) {
        let eff = effective(blocks, idx);
        for p in problems(&eff) {
            // Inherited unchanged from the global settings: already said.
            if global_problems.contains(&p) {
                continue;
            }
            findings.push(word(&p, Some(block)));
        }
    }
    findings
}

fn word(p: &Problem, block: Option<&Block>) -> Finding {
    let at = p
        .loc
        .as_ref()
        .map_or_else(|| CONFIG.to_owned(), |l| l.to_string());
    let (what, fix) = match block {
        None => (format!("{at}: {}", p.what), p.fix.clone()),
        Some(b) => {
            let label = b.label.as_deref().unwrap_or("Match");
            let where_ = b
                .loc
                .as_ref()
                .map_or_else(String::new, |l| format!(" ({l})"));
            (
                format!("{at}: for {label}: {}", p.what),
                format!("in the `{label}` block{where_}: {}", p.fix),
            )
        }
    };
    Finding::new(p.severity, Some(SERVICE), what, fix)
}

/// Methods that run PAM's `auth` stack (with UsePAM yes; without it, the
/// UsePAM finding already says everything bypasses).
fn runs_pam(method: &str) -> bool {
    matches!(name(method), KBD | PASSWORD)
}

fn problems(eff: &Effective) -> Vec<Problem> {
    let mut out = Vec::new();
    let lists = eff.lists();
    let usable: Vec<&Vec<String>> = lists
        .iter()
        .filter(|l| !l.is_empty() && l.iter().all(|m| eff.enabled(m)))
        .collect();
    let kbd_fix = if eff.kbd.on {
        String::new()
    } else {
        " and `KbdInteractiveAuthentication yes`".to_owned()
    };

    for list in usable.iter().filter(|l| !l.iter().any(|m| runs_pam(m))) {
        let joined = list.join(",");
        let problem = match &eff.methods {
            None => {
                let (option, alternative) = match name(&list[0]) {
                    GSSAPI => (&eff.gssapi, "set `GSSAPIAuthentication no`, or "),
                    HOSTBASED => (&eff.hostbased, "set `HostbasedAuthentication no`, or "),
                    _ => (&eff.pubkey, ""),
                };
                let default = if option.loc.is_some() {
                    ""
                } else {
                    " (the default)"
                };
                let (how, loc) = match &eff.any_at {
                    Some(at) => ("AuthenticationMethods is any", Some(at.clone())),
                    None => ("AuthenticationMethods is not set", option.loc.clone()),
                };
                let how = format!("{default} and {how}, so one method is enough");
                Problem {
                    severity: Severity::Bypass,
                    loc,
                    what: format!(
                        "{joined} is enabled{how}: {joined} alone logs in without otpgate's code"
                    ),
                    fix: format!(
                        "{alternative}set `AuthenticationMethods {joined},{KBD}`{kbd_fix}"
                    ),
                }
            }
            Some((all, loc)) => Problem {
                severity: Severity::Bypass,
                loc: Some(loc.clone()),
                what: format!(
                    "AuthenticationMethods lets `{joined}` log in without keyboard-interactive: no otpgate code is asked"
                ),
                fix: format!(
                    "set `AuthenticationMethods {}`{kbd_fix}",
                    suggested_methods(all)
                ),
            },
        };
        out.push(problem);
    }

    if let Some((all, loc)) = &eff.methods {
        let needs_kbd = all.iter().any(|l| l.iter().any(|m| name(m) == KBD));
        if needs_kbd && !eff.kbd.on {
            let (severity_note, loc) = if usable.is_empty() {
                ("nobody can log in", Some(loc.clone()))
            } else {
                (
                    "the method lists that need it can never be satisfied",
                    Some(loc.clone()),
                )
            };
            let off = match &eff.kbd.loc {
                Some(l) => format!("KbdInteractiveAuthentication no ({l})"),
                None => "keyboard-interactive is disabled".to_owned(),
            };
            out.push(Problem {
                severity: Severity::Warning,
                loc,
                what: format!(
                    "AuthenticationMethods requires keyboard-interactive but {off}: {severity_note}"
                ),
                fix: "set `KbdInteractiveAuthentication yes`".to_owned(),
            });
        }
    }

    let kbd_usable = usable.iter().any(|l| l.iter().any(|m| name(m) == KBD));
    let password_usable = usable.iter().any(|l| l.iter().any(|m| name(m) == PASSWORD));
    if password_usable && !kbd_usable && eff.use_pam.on {
        let (loc, cause) = match (&eff.methods, eff.kbd.on) {
            (_, false) => (
                eff.kbd.loc.clone(),
                "keyboard-interactive is disabled, so only password authentication runs PAM",
            ),
            (Some((_, loc)), true) => (
                Some(loc.clone()),
                "AuthenticationMethods offers password without keyboard-interactive",
            ),
            (None, true) => (None, "only password authentication runs PAM"),
        };
        let fix = match &eff.methods {
            Some((all, _)) => format!(
                "set `AuthenticationMethods {}`{kbd_fix}",
                suggested_methods(all)
            ),
            None => "set `KbdInteractiveAuthentication yes`".to_owned(),
        };
        out.push(Problem {
            severity: Severity::Warning,
            loc,
            what: format!(
                "{cause}: sshd answers otpgate's code prompt with the password, so nobody logs in by password"
            ),
            fix,
        });
    }
    out
}

/// The same lists, each made to run keyboard-interactive: `password`
/// becomes keyboard-interactive (which asks for the password itself), and a
/// list without either gets it appended.
fn suggested_methods(lists: &[Vec<String>]) -> String {
    let mut out: Vec<String> = Vec::new();
    for list in lists {
        let mut l: Vec<String> = Vec::new();
        for m in list {
            let m = if name(m) == PASSWORD {
                KBD.to_owned()
            } else {
                m.clone()
            };
            if !l.contains(&m) {
                l.push(m);
            }
        }
        if !l.iter().any(|m| name(m) == KBD) {
            l.push(KBD.to_owned());
        }
        let joined = l.join(",");
        if !out.contains(&joined) {
            out.push(joined);
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN12: &str = include_str!("testdata/debian12_sshd_config");

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = on_root(dir.path(), path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    fn run(files: &[(&str, &str)]) -> Vec<Finding> {
        let dir = tree(files);
        check(dir.path())
    }

    fn bypasses(f: &[Finding]) -> Vec<&Finding> {
        f.iter()
            .filter(|f| f.severity == Severity::Bypass)
            .collect()
    }

    fn warnings(f: &[Finding]) -> Vec<&Finding> {
        f.iter()
            .filter(|f| f.severity == Severity::Warning)
            .collect()
    }

    /// Debian 12's shipped file with the fix written into a drop-in, as an
    /// administrator would.
    const FIXED: &str = "AuthenticationMethods publickey,keyboard-interactive\n\
                         KbdInteractiveAuthentication yes\n";

    #[test]
    fn debian_stock_config_lets_a_key_in_without_the_code() {
        let f = run(&[(CONFIG, DEBIAN12)]);
        let b = bypasses(&f);
        assert_eq!(b.len(), 1, "{f:#?}");
        assert!(b[0].what.contains("publickey alone logs in"), "{f:#?}");
        assert!(b[0].what.starts_with("/etc/ssh/sshd_config: "), "{f:#?}");
        assert_eq!(
            b[0].fix,
            "set `AuthenticationMethods publickey,keyboard-interactive` and `KbdInteractiveAuthentication yes`"
        );
        assert_eq!(b[0].service.as_deref(), Some("sshd"));
        // Kbd is off in the stock file (line 62): password logins get the
        // code prompt answered with the password.
        let w = warnings(&f);
        assert_eq!(w.len(), 1, "{f:#?}");
        assert!(w[0].what.starts_with("/etc/ssh/sshd_config:62: "), "{w:#?}");
        assert!(w[0].what.contains("nobody logs in by password"), "{w:#?}");
        assert_eq!(w[0].fix, "set `KbdInteractiveAuthentication yes`");
    }

    #[test]
    fn the_fixed_config_has_no_finding() {
        // Debian's file includes sshd_config.d/*.conf first: the drop-in's
        // Kbd yes wins over the main file's later Kbd no.
        let f = run(&[
            (CONFIG, DEBIAN12),
            ("/etc/ssh/sshd_config.d/otpgate.conf", FIXED),
        ]);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn the_fix_written_after_the_stock_line_loses_first_value_wins() {
        let fixed_late = format!("{DEBIAN12}\n{FIXED}");
        let f = run(&[(CONFIG, &fixed_late)]);
        assert!(bypasses(&f).is_empty(), "{f:#?}");
        // Kbd no (line 62) came first: nobody can log in at all.
        let w = warnings(&f);
        assert_eq!(w.len(), 1, "{f:#?}");
        assert!(w[0].what.contains("nobody can log in"), "{w:#?}");
        assert!(w[0].what.contains("(/etc/ssh/sshd_config:62)"), "{w:#?}");
    }

    #[test]
    fn use_pam_no_is_a_bypass() {
        let text = DEBIAN12.replace("UsePAM yes", "UsePAM no");
        let f = run(&[
            (CONFIG, &text),
            ("/etc/ssh/sshd_config.d/otpgate.conf", FIXED),
        ]);
        let b = bypasses(&f);
        assert_eq!(b.len(), 1, "{f:#?}");
        assert!(
            b[0].what.starts_with("/etc/ssh/sshd_config:85: UsePAM no:"),
            "{b:#?}"
        );
        assert_eq!(
            b[0].fix,
            "set `UsePAM yes` in /etc/ssh/sshd_config (outside any Match block)"
        );
    }

    #[test]
    fn use_pam_unset_is_openssh_default_no() {
        let f = run(&[(CONFIG, FIXED)]);
        let b = bypasses(&f);
        assert_eq!(b.len(), 1, "{f:#?}");
        assert!(b[0].what.contains("UsePAM is not set"), "{b:#?}");
    }

    #[test]
    fn keywords_are_case_insensitive_and_take_equals() {
        let f = run(&[(
            CONFIG,
            "usepam YES\nAUTHENTICATIONMETHODS=publickey,keyboard-interactive # two factors\n\
             kbdinteractiveauthentication = yes\n",
        )]);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn challenge_response_is_the_old_name_of_kbd() {
        let f = run(&[(
            CONFIG,
            "UsePAM yes\nChallengeResponseAuthentication no\n\
             KbdInteractiveAuthentication yes\n\
             AuthenticationMethods publickey,keyboard-interactive\n",
        )]);
        let w = warnings(&f);
        assert_eq!(w.len(), 1, "{f:#?}");
        assert!(w[0].what.contains("(/etc/ssh/sshd_config:2)"), "{w:#?}");
    }

    #[test]
    fn an_included_drop_in_overrides_the_main_file() {
        // The drop-in comes first and takes the key path back out of the chain.
        let main = format!("Include sshd_config.d/*.conf\n{FIXED}UsePAM yes\n");
        let f = run(&[
            (CONFIG, &main),
            (
                "/etc/ssh/sshd_config.d/10-keys.conf",
                "AuthenticationMethods publickey\n",
            ),
            // Not matched by *.conf: ignored.
            ("/etc/ssh/sshd_config.d/20-old.conf.bak", "UsePAM no\n"),
        ]);
        let b = bypasses(&f);
        assert_eq!(b.len(), 1, "{f:#?}");
        assert!(
            b[0].what.starts_with(
                "/etc/ssh/sshd_config.d/10-keys.conf:1: AuthenticationMethods lets `publickey`"
            ),
            "{b:#?}"
        );
        assert_eq!(
            b[0].fix,
            "set `AuthenticationMethods publickey,keyboard-interactive`"
        );
    }

    #[test]
    fn a_match_block_reopening_publickey_alone_is_reported_for_that_block() {
        let text = format!(
            "UsePAM yes\n{FIXED}\nMatch User backup\n    AuthenticationMethods publickey\n"
        );
        let f = run(&[(CONFIG, &text)]);
        let b = bypasses(&f);
        assert_eq!(b.len(), 1, "{f:#?}");
        assert_eq!(
            b[0].what,
            "/etc/ssh/sshd_config:6: for Match User backup: AuthenticationMethods lets `publickey` log in without keyboard-interactive: no otpgate code is asked"
        );
        assert!(
            b[0].fix
                .starts_with("in the `Match User backup` block (/etc/ssh/sshd_config:5): "),
            "{b:#?}"
        );
    }

    #[test]
    fn a_match_block_setting_any_is_named_at_its_line() {
        let text =
            format!("UsePAM yes\n{FIXED}Match Address 10.0.0.0/8\nAuthenticationMethods any\n");
        let f = run(&[(CONFIG, &text)]);
        let b = bypasses(&f);
        assert_eq!(b.len(), 1, "{f:#?}");
        assert_eq!(
            b[0].what,
            "/etc/ssh/sshd_config:5: for Match Address 10.0.0.0/8: publickey is enabled (the default) and AuthenticationMethods is any, so one method is enough: publickey alone logs in without otpgate's code"
        );
    }

    #[test]
    fn a_match_block_in_an_included_file_ends_with_that_file() {
        let main = "Include /etc/ssh/sshd_config.d/*.conf\n\
                    AuthenticationMethods publickey\n\
                    UsePAM yes\nKbdInteractiveAuthentication yes\n";
        let f = run(&[
            (CONFIG, main),
            (
                "/etc/ssh/sshd_config.d/admins.conf",
                "Match Group admins\nAuthenticationMethods publickey,keyboard-interactive\n",
            ),
        ]);
        // Line 2 of the main file is global again, not part of the Match.
        let b = bypasses(&f);
        assert_eq!(b.len(), 1, "{f:#?}");
        assert!(
            b[0].what
                .starts_with("/etc/ssh/sshd_config:2: AuthenticationMethods"),
            "{b:#?}"
        );
    }

    #[test]
    fn a_match_block_inheriting_a_global_bypass_is_not_repeated() {
        let text = "UsePAM yes\nMatch User alice\n    X11Forwarding no\n";
        let f = run(&[(CONFIG, text)]);
        assert_eq!(bypasses(&f).len(), 1, "{f:#?}");
        assert!(!f.iter().any(|f| f.what.contains("Match")), "{f:#?}");
    }

    #[test]
    fn kbd_disabled_while_required_locks_everyone_out() {
        let f = run(&[(
            CONFIG,
            "UsePAM yes\nKbdInteractiveAuthentication no\n\
             AuthenticationMethods publickey,keyboard-interactive\n",
        )]);
        assert!(bypasses(&f).is_empty(), "{f:#?}");
        let w = warnings(&f);
        assert_eq!(w.len(), 1, "{f:#?}");
        assert!(w[0].what.contains("nobody can log in"), "{w:#?}");
        assert_eq!(w[0].fix, "set `KbdInteractiveAuthentication yes`");
    }

    #[test]
    fn kbd_disabled_with_password_only_warns() {
        let f = run(&[(
            CONFIG,
            "UsePAM yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication no\n",
        )]);
        assert!(bypasses(&f).is_empty(), "{f:#?}");
        let w = warnings(&f);
        assert_eq!(w.len(), 1, "{f:#?}");
        assert!(w[0].what.starts_with("/etc/ssh/sshd_config:2: "), "{w:#?}");
        assert!(w[0].what.contains("nobody logs in by password"), "{w:#?}");
    }

    #[test]
    fn gssapi_and_hostbased_are_bypasses_when_enabled() {
        let f = run(&[(
            CONFIG,
            "UsePAM yes\nPubkeyAuthentication no\nGSSAPIAuthentication yes\n\
             HostbasedAuthentication yes\n",
        )]);
        let b = bypasses(&f);
        assert_eq!(b.len(), 2, "{f:#?}");
        assert!(
            b[0].what
                .starts_with("/etc/ssh/sshd_config:3: gssapi-with-mic"),
            "{b:#?}"
        );
        assert!(
            b[0].fix.starts_with("set `GSSAPIAuthentication no`, or "),
            "{b:#?}"
        );
        assert!(
            b[1].what.starts_with("/etc/ssh/sshd_config:4: hostbased"),
            "{b:#?}"
        );
    }

    #[test]
    fn a_list_of_alternatives_names_the_one_without_the_code() {
        let f = run(&[(
            CONFIG,
            "UsePAM yes\nAuthenticationMethods publickey,keyboard-interactive publickey password\n",
        )]);
        let b = bypasses(&f);
        assert_eq!(b.len(), 1, "{f:#?}");
        assert!(b[0].what.contains("lets `publickey` log in"), "{b:#?}");
        assert_eq!(
            b[0].fix,
            "set `AuthenticationMethods publickey,keyboard-interactive keyboard-interactive`"
        );
    }

    /// sshd itself agrees with this reading of Debian's file plus a
    /// drop-in (only where sshd is installed and we are root: it reads the
    /// host keys).
    #[test]
    fn sshd_t_reads_the_file_as_doctor_does() {
        let sshd = Path::new(SSHD);
        if !sshd.exists() || !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs {SSHD} and root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let dropins = dir.path().join("etc/ssh/sshd_config.d");
        std::fs::create_dir_all(&dropins).unwrap();
        // sshd -T reads Include paths on the real system: point the stock
        // Include at the temp tree instead.
        let main = DEBIAN12.replace(
            "Include /etc/ssh/sshd_config.d/*.conf",
            &format!("Include {}/*.conf", dropins.display()),
        );
        std::fs::write(dir.path().join("etc/ssh/sshd_config"), &main).unwrap();
        std::fs::write(
            dropins.join("otpgate.conf"),
            "AuthenticationMethods publickey,keyboard-interactive publickey,password\n\
             passwordauthentication=no\nChallengeResponseAuthentication yes\n",
        )
        .unwrap();
        let mut parser = Parser {
            root: Path::new("/"),
            blocks: vec![Block {
                label: None,
                loc: None,
                settings: Vec::new(),
            }],
            problems: Vec::new(),
        };
        parser.parse(CONFIG, &main, 0, &mut 0);
        assert!(parser.problems.is_empty(), "{:#?}", parser.problems);
        let reported = sshd_t(sshd, &dir.path().join("etc/ssh/sshd_config")).unwrap();
        assert!(reported
            .iter()
            .any(|(k, v)| k == "passwordauthentication" && v == "no"));
        assert_eq!(
            disagreements(&effective(&parser.blocks, 0), &reported),
            Vec::<String>::new()
        );
        // And a difference is named.
        let mut wrong = reported.clone();
        for (k, v) in &mut wrong {
            if k == "usepam" {
                *v = "no".to_owned();
            }
        }
        assert_eq!(
            disagreements(&effective(&parser.blocks, 0), &wrong),
            vec!["usepam: doctor read yes, sshd says no".to_owned()]
        );
    }

    #[test]
    fn no_sshd_config_means_nothing_to_say() {
        assert!(run(&[]).is_empty());
    }

    #[test]
    fn wildmatch_follows_fnmatch() {
        assert!(wildmatch("*.conf", "a.conf"));
        assert!(!wildmatch("*.conf", "a.conf.bak"));
        assert!(wildmatch("[0-9]?-*", "10-x"));
        assert!(!wildmatch("[!0-9]*", "1a"));
    }
}
