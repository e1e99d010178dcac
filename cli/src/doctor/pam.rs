//! PAM stacks: parse `/etc/pam.d`, flatten includes and substacks, and
//! simulate the `auth` stack the way libpam's dispatcher walks it
//! (libpam/pam_dispatch.c), for every result each module can return, to find
//! the paths that end in success without pam_otpgate.so having accepted a
//! code.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path as FsPath, PathBuf};

use serde::Serialize;

use super::finding::{Finding, Severity};

/// The module this tool is about, as PAM files name it.
pub const MODULE: &str = "pam_otpgate.so";

/// Services people log in through, checked when no `--service` is given
/// (those present in /etc/pam.d).
pub const LOGIN_SERVICES: &[&str] = &[
    "sshd",
    "sudo",
    "sudo-i",
    "su",
    "su-l",
    "login",
    "cockpit",
    // display managers
    "gdm-password",
    "gdm-autologin",
    "lightdm",
    "lightdm-autologin",
    "sddm",
    "sddm-autologin",
    "xdm",
    "lxdm",
    "slim",
    "kdm",
    "greetd",
    // screen lockers
    "vlock",
    "xscreensaver",
    "gnome-screensaver",
    "kde",
    "kscreenlocker",
    "i3lock",
    "swaylock",
    "xlock",
    "xsecurelock",
    "physlock",
    "cinnamon-screensaver",
    "mate-screensaver",
    "xfce4-screensaver",
    "light-locker",
];

/// What one service's `auth` stack allows.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub service: String,
    /// No path to success without otpgate's code, except under conditions
    /// an administrator chose (`nullok`, `failmode=open`, root via
    /// pam_rootok).
    pub enforced: bool,
    /// The paths to success without the code: the first one found for each
    /// set of conditions.
    pub paths: Vec<Path>,
}

/// One way through the stack, as the modules' results and the jumps taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Path {
    pub steps: Vec<String>,
    /// What must hold for this path to be taken; empty: any login.
    pub conditions: Vec<String>,
}

impl Path {
    pub fn describe(&self) -> String {
        self.steps.join(" → ")
    }
}

/// Why a module may give up its say (PAM_IGNORE) or succeed without a
/// code: circumstances, not a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    NotEnrolled,
    DaemonDown,
    CallerIsRoot,
}

impl Condition {
    fn bit(self) -> u8 {
        match self {
            Condition::NotEnrolled => 1,
            Condition::DaemonDown => 2,
            Condition::CallerIsRoot => 4,
        }
    }

    fn all() -> [Condition; 3] {
        [
            Condition::NotEnrolled,
            Condition::DaemonDown,
            Condition::CallerIsRoot,
        ]
    }

    pub fn text(self) -> &'static str {
        match self {
            Condition::NotEnrolled => "the user is not enrolled (nullok)",
            Condition::DaemonDown => "otpgated is not running (failmode=open)",
            Condition::CallerIsRoot => "the caller is root (pam_rootok.so)",
        }
    }
}

/// The text of the failmode=open finding, which the command raises to a
/// bypass when the daemon is down now.
pub const FAILMODE_OPEN_WHAT: &str = "`failmode=open` on pam_otpgate.so";

/// The text of the nullok finding, after its `FILE:LINE: `: `doctor` finds
/// the line by it when the policy requires a code of accounts it lets in.
pub const NULLOK_WHAT: &str = "`nullok` on pam_otpgate.so";

// ---- parsing ---------------------------------------------------------------

/// What libpam does with one module's return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    Jump(u32),
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s.to_ascii_lowercase().as_str() {
            "ignore" => Action::Ignore,
            "ok" => Action::Ok,
            "done" => Action::Done,
            "bad" => Action::Bad,
            "die" => Action::Die,
            "reset" => Action::Reset,
            n => Action::Jump(n.parse().ok().filter(|n| *n > 0)?),
        })
    }
}

/// A control: an action per return value name, and the default for the
/// others.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Control {
    actions: BTreeMap<String, Action>,
    default: Action,
    /// As written (`required`, `[success=1 default=ignore]`).
    text: String,
}

/// Return value names libpam's `[value=action]` syntax knows.
const RETURN_NAMES: &[&str] = &[
    "success",
    "open_err",
    "symbol_err",
    "service_err",
    "system_err",
    "buf_err",
    "perm_denied",
    "auth_err",
    "cred_insufficient",
    "authinfo_unavail",
    "user_unknown",
    "maxtries",
    "new_authtok_reqd",
    "acct_expired",
    "session_err",
    "cred_unavail",
    "cred_expired",
    "cred_err",
    "no_module_data",
    "conv_err",
    "authtok_err",
    "authtok_recover_err",
    "authtok_lock_busy",
    "authtok_disable_aging",
    "try_again",
    "ignore",
    "abort",
    "authtok_expired",
    "module_unknown",
    "bad_item",
    "conv_again",
    "incomplete",
    "default",
];

impl Control {
    fn simple(text: &str, pairs: &[(&str, Action)], default: Action) -> Control {
        Control {
            actions: pairs.iter().map(|(k, a)| (k.to_string(), *a)).collect(),
            default,
            text: text.to_string(),
        }
    }

    /// libpam's meanings of the keywords (pam_handlers.c), or the bracket
    /// syntax; `Err` with why for what libpam would refuse.
    fn parse(tok: &str) -> Result<Control, String> {
        use Action::{Bad, Die, Done, Ignore, Ok as Okay};
        let lower = tok.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "required" => Control::simple(
                tok,
                &[
                    ("success", Okay),
                    ("new_authtok_reqd", Okay),
                    ("ignore", Ignore),
                ],
                Bad,
            ),
            "requisite" => Control::simple(
                tok,
                &[
                    ("success", Okay),
                    ("new_authtok_reqd", Okay),
                    ("ignore", Ignore),
                ],
                Die,
            ),
            "optional" => Control::simple(
                tok,
                &[("success", Okay), ("new_authtok_reqd", Okay)],
                Ignore,
            ),
            "sufficient" => Control::simple(
                tok,
                &[("success", Done), ("new_authtok_reqd", Done)],
                Ignore,
            ),
            _ if lower.starts_with('[') && lower.ends_with(']') => {
                let mut actions = BTreeMap::new();
                let mut default = None;
                for pair in lower[1..lower.len() - 1].split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("`{pair}` is not value=action"))?;
                    if !RETURN_NAMES.contains(&k) {
                        return Err(format!("unknown return value `{k}`"));
                    }
                    let a = Action::parse(v).ok_or_else(|| format!("unknown action `{v}`"))?;
                    if k == "default" {
                        default = Some(a);
                    } else {
                        actions.insert(k.to_string(), a);
                    }
                }
                Control {
                    actions,
                    // libpam: without `default=`, anything unnamed is a failure.
                    default: default.unwrap_or(Bad),
                    text: tok.to_string(),
                }
            }
            _ => return Err(format!("unknown control `{tok}`")),
        })
    }

    fn action(&self, ret: &str) -> Action {
        self.actions.get(ret).copied().unwrap_or(self.default)
    }
}

/// Where a line is, as the administrator sees it (the path inside the root).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    file: String,
    line: usize,
    /// The line, whitespace collapsed.
    text: String,
}

impl Origin {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Module {
        /// The file name (`pam_unix.so`), for matching and display.
        name: String,
        args: Vec<String>,
        /// The module file is not in the root (libpam: PAM_MODULE_UNKNOWN).
        missing: bool,
    },
    /// A `substack` line: libpam skips it; its modules follow one level
    /// deeper.
    Substack,
    /// A line libpam cannot use (a missing or cyclic include, a bad
    /// control): it fails with PAM_PERM_DENIED.
    MustFail,
}

#[derive(Debug, Clone)]
struct Entry {
    level: usize,
    kind: Kind,
    control: Control,
    origin: Origin,
}

impl Entry {
    fn is_otpgate(&self) -> bool {
        matches!(&self.kind, Kind::Module { name, .. } if name == MODULE)
    }

    fn label(&self) -> String {
        match &self.kind {
            Kind::Module { name, .. } => name.clone(),
            Kind::Substack => format!("substack {}", self.origin.text),
            Kind::MustFail => format!("`{}`", self.origin.text),
        }
    }
}

/// One logical line: its first physical line number and its tokens.
fn logical_lines(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if buf.is_empty() {
            start = i + 1;
        }
        // A comment runs to the end of the physical line.
        let line = raw.split('#').next().unwrap_or("");
        if let Some(cont) = raw.strip_suffix('\\') {
            if !raw.contains('#') {
                buf.push_str(cont);
                buf.push(' ');
                continue;
            }
        }
        buf.push_str(line);
        let toks = tokenize(&buf);
        if !toks.is_empty() {
            out.push((start, toks));
        }
        buf.clear();
    }
    if !buf.is_empty() {
        let toks = tokenize(&buf);
        if !toks.is_empty() {
            out.push((start, toks));
        }
    }
    out
}

/// Whitespace-separated, except that `[...]` is one token (controls and
/// module arguments such as `[prompt=OTP code: ]`).
fn tokenize(line: &str) -> Vec<String> {
    let mut toks = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut tok = String::new();
        if c == '[' {
            for c in chars.by_ref() {
                tok.push(c);
                if c == ']' && !tok.ends_with("\\]") {
                    break;
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                tok.push(c);
                chars.next();
            }
        }
        toks.push(tok);
    }
    toks
}

/// Where libpam looks for modules named without a path.
const MODULE_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/x86_64-linux-gnu/security",
    "/lib/aarch64-linux-gnu/security",
    "/usr/lib/aarch64-linux-gnu/security",
    "/lib/security",
    "/usr/lib/security",
    "/lib64/security",
    "/usr/lib64/security",
];

fn inside(root: &FsPath, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Whether the module file is known to be absent from the root. A root
/// with no module directory at all (a tree of PAM files only) says nothing
/// about modules, so they are taken as installed.
fn module_missing(root: &FsPath, path: &str) -> bool {
    if path.starts_with('/') {
        return !inside(root, path).exists();
    }
    let dirs: Vec<PathBuf> = MODULE_DIRS
        .iter()
        .map(|d| inside(root, d))
        .filter(|d| d.is_dir())
        .collect();
    !dirs.is_empty() && !dirs.iter().any(|d| d.join(path).exists())
}

struct Flattener<'a> {
    root: &'a FsPath,
    entries: Vec<Entry>,
    findings: Vec<Finding>,
    service: String,
    /// The files being read, outermost first (cycle detection).
    chain: Vec<String>,
}

/// libpam's limit on nested includes and substacks.
const MAX_DEPTH: usize = 16;

impl Flattener<'_> {
    fn pam_d_path(name: &str) -> String {
        if name.starts_with('/') {
            name.to_string()
        } else {
            format!("/etc/pam.d/{name}")
        }
    }

    fn must_fail(&mut self, level: usize, origin: Origin) {
        self.entries.push(Entry {
            level,
            kind: Kind::MustFail,
            control: Control::simple("", &[], Action::Bad),
            origin,
        });
    }

    fn error(&mut self, origin: &Origin, what: String, fix: String) {
        self.findings.push(Finding::new(
            Severity::Warning,
            Some(&self.service),
            format!(
                "{}: {what}: libpam fails every login through this line",
                origin.at()
            ),
            fix,
        ));
    }

    /// Reads `file` (a path inside the root) and appends its `auth` lines at
    /// `level`; `Err` with why when it cannot be read.
    fn load(&mut self, file: &str, level: usize) -> Result<(), String> {
        if self.chain.iter().any(|f| f == file) {
            return Err(format!(
                "includes itself ({} → {file})",
                self.chain.join(" → ")
            ));
        }
        if self.chain.len() >= MAX_DEPTH {
            return Err(format!("more than {MAX_DEPTH} nested includes"));
        }
        let text = fs::read_to_string(inside(self.root, file))
            .map_err(|e| format!("cannot read {file}: {e}"))?;
        self.chain.push(file.to_string());
        for (line, toks) in logical_lines(&text) {
            let origin = Origin {
                file: file.to_string(),
                line,
                text: toks.join(" "),
            };
            self.line(level, origin, &toks);
        }
        self.chain.pop();
        Ok(())
    }

    fn include(&mut self, level: usize, origin: &Origin, target: &str) {
        let path = Self::pam_d_path(target);
        if let Err(why) = self.load(&path, level) {
            self.error(
                origin,
                why,
                format!(
                    "make {path} exist and not include {} again, or remove the line",
                    origin.file
                ),
            );
            self.must_fail(level, origin.clone());
        }
    }

    fn line(&mut self, level: usize, origin: Origin, toks: &[String]) {
        if toks[0].eq_ignore_ascii_case("@include") {
            match toks.get(1) {
                Some(t) => self.include(level, &origin, &t.clone()),
                None => {
                    self.error(
                        &origin,
                        "`@include` without a file".into(),
                        "name the file".into(),
                    );
                    self.must_fail(level, origin);
                }
            }
            return;
        }
        let ty = toks[0].trim_start_matches('-');
        if !ty.eq_ignore_ascii_case("auth") {
            return;
        }
        let Some(control_tok) = toks.get(1) else {
            self.error(
                &origin,
                "no control".into(),
                "complete the line: `auth CONTROL MODULE [ARGS]`".into(),
            );
            self.must_fail(level, origin);
            return;
        };
        let lower = control_tok.to_ascii_lowercase();
        if lower == "include" || lower == "substack" {
            let Some(target) = toks.get(2).cloned() else {
                self.error(
                    &origin,
                    format!("`{lower}` without a file"),
                    "name the file".into(),
                );
                self.must_fail(level, origin);
                return;
            };
            if lower == "include" {
                self.include(level, &origin, &target);
            } else {
                self.entries.push(Entry {
                    level,
                    kind: Kind::Substack,
                    control: Control::simple(control_tok, &[], Action::Ignore),
                    origin: origin.clone(),
                });
                self.include(level + 1, &origin, &target);
            }
            return;
        }
        let control = match Control::parse(control_tok) {
            Ok(c) => c,
            Err(why) => {
                self.error(
                    &origin,
                    why,
                    "use required, requisite, sufficient, optional or [value=action ...]".into(),
                );
                self.must_fail(level, origin);
                return;
            }
        };
        let Some(path) = toks.get(2) else {
            self.error(
                &origin,
                "no module".into(),
                "name the module: `auth CONTROL MODULE [ARGS]`".into(),
            );
            self.must_fail(level, origin);
            return;
        };
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        self.entries.push(Entry {
            level,
            kind: Kind::Module {
                missing: module_missing(self.root, path),
                name,
                args: toks[3..].to_vec(),
            },
            control,
            origin,
        });
    }
}

/// The flattened `auth` stack of a service file, and the problems found
/// reading it.
fn flatten(root: &FsPath, service: &str, file: &str) -> (Vec<Entry>, Vec<Finding>) {
    let mut f = Flattener {
        root,
        entries: Vec::new(),
        findings: Vec::new(),
        service: service.to_string(),
        chain: Vec::new(),
    };
    if let Err(why) = f.load(file, 0) {
        let origin = Origin {
            file: file.to_string(),
            line: 0,
            text: String::new(),
        };
        f.findings.push(Finding::new(
            Severity::Warning,
            Some(service),
            format!("{file}: {why}: libpam refuses every login through {service}"),
            format!("restore {file}"),
        ));
        f.must_fail(0, origin);
    }
    (f.entries, f.findings)
}

// ---- what modules return ---------------------------------------------------

/// One result a module can return, and what must hold for it.
struct Outcome {
    ret: &'static str,
    condition: Option<Condition>,
}

fn outcomes(e: &Entry) -> Vec<Outcome> {
    let o = |ret, condition| Outcome { ret, condition };
    let Kind::Module {
        name,
        args,
        missing,
    } = &e.kind
    else {
        return vec![o("perm_denied", None)];
    };
    if *missing {
        return vec![o("module_unknown", None)];
    }
    match name.as_str() {
        "pam_permit.so" => vec![o("success", None)],
        "pam_deny.so" => vec![o("auth_err", None)],
        "pam_rootok.so" => vec![
            o("success", Some(Condition::CallerIsRoot)),
            o("auth_err", None),
        ],
        MODULE => {
            let mut v = vec![
                o("success", None),
                o("auth_err", None),
                o("authinfo_unavail", None),
                o("maxtries", None),
                o("user_unknown", None),
            ];
            if args.iter().any(|a| a == "nullok") {
                v.push(o("ignore", Some(Condition::NotEnrolled)));
            }
            if args.iter().any(|a| a == "failmode=open") {
                v.push(o("ignore", Some(Condition::DaemonDown)));
            }
            v
        }
        "pam_sss.so" | "pam_ldap.so" | "pam_winbind.so" | "pam_krb5.so" => vec![
            o("success", None),
            o("auth_err", None),
            o("ignore", None),
            o("authinfo_unavail", None),
            o("user_unknown", None),
        ],
        _ => vec![o("success", None), o("auth_err", None), o("ignore", None)],
    }
}

// ---- the simulation --------------------------------------------------------

/// libpam's "impression" of the stack so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Impression {
    Undef,
    Positive,
    Negative,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    pos: usize,
    prev_level: usize,
    impression: Impression,
    /// Whether the stack's status is PAM_SUCCESS.
    success: bool,
    /// pam_otpgate.so returned success on this path.
    otp: bool,
    conditions: u8,
    /// The (impression, success) saved on entering each substack level, for
    /// `reset`.
    saved: Vec<(Impression, bool)>,
}

#[derive(Debug, Clone)]
struct Step {
    entry: usize,
    ret: &'static str,
    action: Action,
    /// Where the walk went on (after a jump or a decision), if not the next
    /// entry.
    next: usize,
    /// `done` or `die` ended the (sub)stack.
    decided: bool,
    condition: Option<Condition>,
}

/// A path to success without the code, as entries and results.
#[derive(Debug, Clone)]
struct Found {
    steps: Vec<Step>,
    conditions: u8,
}

/// Walks every way through the stack; the first path to success without
/// the code for each set of conditions, and whether any path succeeds with
/// it.
fn simulate(entries: &[Entry]) -> (Vec<Found>, bool) {
    let n = entries.len();
    let levels = entries.iter().map(|e| e.level).max().unwrap_or(0) + 1;
    let start = State {
        pos: 0,
        prev_level: 0,
        impression: Impression::Undef,
        success: false,
        otp: false,
        conditions: 0,
        saved: vec![(Impression::Undef, false); levels],
    };
    let mut visited: HashSet<State> = HashSet::new();
    let mut todo: Vec<(State, Vec<Step>)> = vec![(start, Vec::new())];
    let mut found: Vec<Found> = Vec::new();
    let mut with_code = false;
    while let Some((mut s, steps)) = todo.pop() {
        if !visited.insert(s.clone()) {
            continue;
        }
        if s.pos >= n {
            if s.success && s.impression == Impression::Positive {
                if s.otp {
                    with_code = true;
                } else if !found.iter().any(|f| f.conditions == s.conditions) {
                    found.push(Found {
                        steps,
                        conditions: s.conditions,
                    });
                }
            }
            continue;
        }
        let e = &entries[s.pos];
        let level = e.level;
        if s.prev_level < level {
            s.saved[level] = (s.impression, s.success);
        }
        s.prev_level = level;
        if matches!(e.kind, Kind::Substack) {
            s.pos += 1;
            todo.push((s, steps));
            continue;
        }
        // Pushed in reverse so that the first result (success) is walked
        // first and gives the shortest explanation.
        for out in outcomes(e).into_iter().rev() {
            let mut t = s.clone();
            let action = e.control.action(out.ret);
            let mut next = s.pos + 1;
            let mut decided = false;
            let is_success = out.ret == "success";
            match action {
                Action::Reset => (t.impression, t.success) = t.saved[level],
                Action::Ok | Action::Done => {
                    if t.impression == Impression::Undef
                        || (t.impression == Impression::Positive && t.success)
                    {
                        t.impression = Impression::Positive;
                        t.success = is_success;
                    }
                    if action == Action::Done && t.impression == Impression::Positive {
                        decided = true;
                        next = end_of_level(entries, s.pos, level);
                    }
                }
                Action::Bad | Action::Die => {
                    if t.impression != Impression::Negative {
                        t.impression = Impression::Negative;
                        t.success = false;
                    }
                    if action == Action::Die {
                        decided = true;
                        next = end_of_level(entries, s.pos, level);
                    }
                }
                Action::Ignore => {}
                Action::Jump(k) => {
                    let (to, left) = jump(entries, s.pos, k);
                    next = to;
                    if left > 0 {
                        // libpam: "bad jump in stack".
                        t.impression = Impression::Negative;
                        t.success = false;
                    }
                }
            }
            if is_success && e.is_otpgate() {
                t.otp = true;
            }
            if let Some(c) = out.condition {
                t.conditions |= c.bit();
            }
            t.pos = next;
            let mut st = steps.clone();
            st.push(Step {
                entry: s.pos,
                ret: out.ret,
                action,
                next,
                decided,
                condition: out.condition,
            });
            todo.push((t, st));
        }
    }
    (found, with_code)
}

/// After `done` or `die` at `level`: the rest of this substack (or stack)
/// is skipped.
fn end_of_level(entries: &[Entry], pos: usize, level: usize) -> usize {
    let mut j = pos + 1;
    while j < entries.len() && entries[j].level >= level {
        j += 1;
    }
    j
}

/// A jump over `k` entries of the same level (a substack counts as one);
/// where it lands and how much of the jump was left when the level ended.
fn jump(entries: &[Entry], pos: usize, k: u32) -> (usize, u32) {
    let level = entries[pos].level;
    let mut h = pos;
    let mut left = k;
    while h + 1 < entries.len() && entries[h + 1].level >= level && left > 0 {
        loop {
            h += 1;
            if !(h + 1 < entries.len() && entries[h + 1].level > level) {
                break;
            }
        }
        left -= 1;
    }
    (h + 1, left)
}

fn render(entries: &[Entry], f: &Found) -> Path {
    let mut steps = Vec::new();
    for st in &f.steps {
        let e = &entries[st.entry];
        steps.push(format!("{} {}", e.label(), st.ret));
        match st.action {
            Action::Jump(k) => steps.push(format!("jump over {k}")),
            Action::Done | Action::Die if st.decided => {
                let word = if st.action == Action::Done {
                    "done"
                } else {
                    "die"
                };
                if e.level == 0 {
                    steps.push(word.into());
                } else {
                    steps.push(format!("{word} (ends the substack only)"));
                }
            }
            Action::Reset => steps.push("reset".into()),
            _ => {}
        }
    }
    steps.push("success".into());
    let conditions = Condition::all()
        .into_iter()
        .filter(|c| f.conditions & c.bit() != 0)
        .map(|c| c.text().to_string())
        .collect();
    Path { steps, conditions }
}

// ---- findings --------------------------------------------------------------

fn quote(o: &Origin) -> String {
    format!("`{}`", o.text)
}

/// Why an unconditional path gets through without the code, and the fix.
fn explain_bypass(
    root: &FsPath,
    service: &str,
    file: &str,
    entries: &[Entry],
    f: &Found,
    path: &Path,
) -> Finding {
    let how = path.describe();
    let mk = |what: String, fix: String| Finding::new(Severity::Bypass, Some(service), what, fix);
    let otp_entries: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].is_otpgate())
        .collect();
    if otp_entries.is_empty() {
        let common_has_it = {
            let (ce, _) = flatten(root, service, "/etc/pam.d/common-auth");
            ce.iter().any(Entry::is_otpgate)
        };
        let includes_common = entries
            .iter()
            .any(|e| e.origin.file == "/etc/pam.d/common-auth");
        let fix = if includes_common {
            format!(
                "run `pam-auth-update --package --enable otpgate` (it adds `auth [success=ok ignore=ignore default=die] pam_otpgate.so nullok` to /etc/pam.d/common-auth), or add `auth required pam_otpgate.so` to {file} after `@include common-auth`"
            )
        } else if common_has_it {
            format!(
                "add `@include common-auth` to {file} in place of its own password lines, or add `auth required pam_otpgate.so` after its password check"
            )
        } else {
            format!("add `auth required pam_otpgate.so` to {file} after its password check")
        };
        return mk(
            format!("{file}: no pam_otpgate.so in the auth stack of {service}: a login succeeds without a code ({how})"),
            fix,
        );
    }
    // pam_otpgate.so ran and failed, and the login still succeeded.
    for (i, st) in f.steps.iter().enumerate() {
        let e = &entries[st.entry];
        if !e.is_otpgate() || st.ret == "success" {
            continue;
        }
        if matches!(st.action, Action::Bad | Action::Die) {
            // Only a later `reset` can undo that failure.
            if let Some(r) = f.steps[i + 1..].iter().find(|s| s.action == Action::Reset) {
                let re = &entries[r.entry];
                return mk(
                    format!(
                        "{}: {} resets the stack after pam_otpgate.so failed: a wrong code is forgotten ({how})",
                        re.origin.at(),
                        quote(&re.origin)
                    ),
                    format!(
                        "remove `reset` from {} or move it above pam_otpgate.so",
                        re.origin.at()
                    ),
                );
            }
            continue;
        }
        let what = format!(
            "{}: `{}` on pam_otpgate.so lets a failed code through ({} → {:?}) ({how})",
            e.origin.at(),
            e.control.text,
            st.ret,
            st.action
        );
        let fix = if e.control.text.starts_with('[') {
            format!(
                "use `[success=ok ignore=ignore default=die]` instead of `{}` for pam_otpgate.so at {}",
                e.control.text,
                e.origin.at()
            )
        } else {
            format!(
                "use `required` instead of `{}` for pam_otpgate.so at {}",
                e.control.text,
                e.origin.at()
            )
        };
        return mk(what, fix);
    }
    // pam_otpgate.so was not reached: something ended the stack or jumped
    // over it.
    for st in &f.steps {
        let e = &entries[st.entry];
        let skipped = |from: usize, to: usize| otp_entries.iter().any(|&o| o > from && o < to);
        match st.action {
            Action::Done if skipped(st.entry, st.next) => {
                let what = format!(
                    "{}: {} ends the stack before pam_otpgate.so when {} returns {} ({how})",
                    e.origin.at(),
                    quote(&e.origin),
                    e.label(),
                    st.ret
                );
                let fix = if e.label() == "pam_permit.so" {
                    format!(
                        "move {} below pam_otpgate.so or remove it ({})",
                        quote(&e.origin),
                        e.origin.at()
                    )
                } else {
                    format!(
                        "move {} below pam_otpgate.so, or use `required` instead of `{}` ({})",
                        quote(&e.origin),
                        e.control.text,
                        e.origin.at()
                    )
                };
                return mk(what, fix);
            }
            Action::Jump(k) if skipped(st.entry, st.next) => {
                let target = otp_entries
                    .iter()
                    .copied()
                    .find(|&o| o > st.entry && o < st.next)
                    .unwrap_or(st.next);
                // The number of entries (a substack counts as one) between
                // the jump and the module: a jump over that many lands on it.
                let mut land = 0;
                let mut after = st.entry + 1;
                while after < target {
                    let (to, left) = jump(entries, st.entry, land + 1);
                    if left > 0 || to > target {
                        break;
                    }
                    after = to;
                    land += 1;
                }
                let what = format!(
                    "{}: `{}` on {} jumps over pam_otpgate.so when it returns {} ({how})",
                    e.origin.at(),
                    e.control.text,
                    e.label(),
                    st.ret
                );
                let fix = format!(
                    "change `{}={k}` to `{}={land}` at {} so that the jump lands on pam_otpgate.so, or move pam_otpgate.so above it",
                    st.ret,
                    st.ret,
                    e.origin.at()
                );
                return mk(what, fix);
            }
            _ => {}
        }
    }
    mk(
        format!("{file}: a login through {service} succeeds without pam_otpgate.so's code ({how})"),
        format!(
            "put `auth required pam_otpgate.so` where every successful path of {file} passes it"
        ),
    )
}

/// The findings for the conditions a path needs (nullok, failmode=open,
/// pam_rootok), once per line.
fn condition_findings(
    service: &str,
    entries: &[Entry],
    found: &[Found],
    paths: &[Path],
) -> Vec<Finding> {
    let mut seen: HashSet<(Condition, usize)> = HashSet::new();
    let mut out = Vec::new();
    for (f, p) in found.iter().zip(paths) {
        for st in &f.steps {
            let Some(c) = st.condition else { continue };
            if !seen.insert((c, st.entry)) {
                continue;
            }
            let o = &entries[st.entry].origin;
            let how = p.describe();
            out.push(match c {
                Condition::NotEnrolled => Finding::new(
                    Severity::Warning,
                    Some(service),
                    format!(
                        "{}: {NULLOK_WHAT}: users who are not enrolled log in without a code ({how})",
                        o.at()
                    ),
                    format!(
                        "remove `nullok` from {} once every user has enrolled (`otpgate list`)",
                        o.at()
                    ),
                ),
                Condition::DaemonDown => Finding::new(
                    Severity::Warning,
                    Some(service),
                    format!(
                        "{}: {FAILMODE_OPEN_WHAT}: a stopped daemon lets everyone in ({how})",
                        o.at()
                    ),
                    format!(
                        "remove `failmode=open` from {} (the default, failmode=secure, refuses logins while otpgated is down)",
                        o.at()
                    ),
                ),
                Condition::CallerIsRoot => Finding::new(
                    Severity::Info,
                    Some(service),
                    format!(
                        "{}: {}: root is let in without a code ({how})",
                        o.at(),
                        quote(o)
                    ),
                    "nothing to fix: only root gets this way".to_string(),
                ),
            });
        }
    }
    out
}

/// One service: its report and findings.
fn check_service(root: &FsPath, service: &str) -> (ServiceReport, Vec<Finding>) {
    let mut findings = Vec::new();
    let own = format!("/etc/pam.d/{service}");
    let file = if inside(root, &own).exists() {
        own
    } else {
        findings.push(Finding::new(
            Severity::Info,
            Some(service),
            format!("{own} does not exist: libpam uses /etc/pam.d/other for {service}"),
            "nothing to fix if that is meant".to_string(),
        ));
        "/etc/pam.d/other".to_string()
    };
    let (mut entries, read) = flatten(root, service, &file);
    findings.extend(read);
    if entries.is_empty() && file != "/etc/pam.d/other" {
        // libpam falls back to `other` for a type the service leaves empty.
        let (other, read) = flatten(root, service, "/etc/pam.d/other");
        entries = other;
        findings.extend(read);
    }
    let (found, _with_code) = simulate(&entries);
    let paths: Vec<Path> = found.iter().map(|f| render(&entries, f)).collect();
    let mut enforced = true;
    for (f, p) in found.iter().zip(&paths) {
        if f.conditions == 0 {
            enforced = false;
            findings.push(explain_bypass(root, service, &file, &entries, f, p));
        }
    }
    findings.extend(condition_findings(service, &entries, &found, &paths));
    (
        ServiceReport {
            service: service.to_string(),
            enforced,
            paths,
        },
        findings,
    )
}

/// The services to look at: those given, else the login services present
/// in the root's /etc/pam.d.
pub fn services_in_scope(root: &FsPath, given: &[String]) -> Result<Vec<String>, String> {
    let dir = inside(root, "/etc/pam.d");
    fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    Ok(LOGIN_SERVICES
        .iter()
        .filter(|s| dir.join(s).is_file())
        .map(|s| s.to_string())
        .collect())
}

/// Every service in scope (`services`, else the login services found in the
/// root's /etc/pam.d): whether the code is enforced, the paths around it,
/// and the findings with their fixes. `Err` when /etc/pam.d cannot be read.
pub fn check(
    root: &FsPath,
    services: &[String],
) -> Result<(Vec<ServiceReport>, Vec<Finding>), String> {
    let mut reports = Vec::new();
    let mut findings = Vec::new();
    for s in services_in_scope(root, services)? {
        if s.is_empty() || s.contains('/') || s.starts_with('.') {
            return Err(format!("`{s}` is not a PAM service name"));
        }
        let (r, f) = check_service(root, &s);
        reports.push(r);
        findings.extend(f);
    }
    Ok((reports, findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12's /etc/pam.d/common-auth as installed (no otpgate).
    pub const DEBIAN_COMMON_AUTH: &str = "#
# /etc/pam.d/common-auth - authentication settings common to all services
#
# This file is included from other service-specific PAM config files,
# and should contain a list of the authentication modules that define
# the central authentication scheme for use on the system
# (e.g., /etc/shadow, LDAP, Kerberos, etc.).  The default is to use the
# traditional Unix authentication mechanisms.
#
# As of pam 1.0.1-6, this file is managed by pam-auth-update by default.
# To take advantage of this, it is recommended that you configure any
# local modules either before or after the default block, and use
# pam-auth-update to manage selection of other modules.  See
# pam-auth-update(8) for details.

# here are the per-package modules (the \"Primary\" block)
auth\t[success=1 default=ignore]\tpam_unix.so nullok
# here's the fallback if no module succeeds
auth\trequisite\t\t\tpam_deny.so
# prime the stack with a positive return value if there isn't one already;
# this avoids us returning an error just because nothing sets a success code
# since the modules above will each just jump around
auth\trequired\t\t\tpam_permit.so
# and here are more per-package modules (the \"Additional\" block)
auth\toptional\t\t\tpam_cap.so 
# end of pam-auth-update config
";

    /// The same after `pam-auth-update --enable otpgate`: our line is 25.
    fn debian_with_otpgate() -> String {
        DEBIAN_COMMON_AUTH.replace(
            "auth\toptional\t\t\tpam_cap.so",
            "auth\t[success=ok ignore=ignore default=die]\tpam_otpgate.so nullok\n\
             auth\toptional\t\t\tpam_cap.so",
        )
    }

    const SSHD: &str = "# PAM configuration for the Secure Shell service\n\n\
                        # Standard Un*x authentication.\n@include common-auth\n\
                        account required pam_nologin.so\n@include common-account\n";
    const SUDO: &str = "#%PAM-1.0\n\nsession required pam_limits.so\n\n\
                        @include common-auth\n@include common-account\n";
    const SU: &str = "auth       sufficient pam_rootok.so\n@include common-auth\n";

    struct Root(tempfile::TempDir);

    impl Root {
        fn new(files: &[(&str, &str)]) -> Root {
            let d = tempfile::tempdir().unwrap();
            fs::create_dir_all(d.path().join("etc/pam.d")).unwrap();
            let r = Root(d);
            for (name, text) in files {
                r.write(name, text);
            }
            r
        }

        fn write(&self, name: &str, text: &str) {
            fs::write(self.0.path().join("etc/pam.d").join(name), text).unwrap();
        }

        fn check(&self, services: &[&str]) -> (Vec<ServiceReport>, Vec<Finding>) {
            let s: Vec<String> = services.iter().map(|s| s.to_string()).collect();
            check(self.0.path(), &s).unwrap()
        }

        fn one(&self, service: &str) -> (ServiceReport, Vec<Finding>) {
            let (mut r, f) = self.check(&[service]);
            (r.remove(0), f)
        }
    }

    fn of(fs: &[Finding], sev: Severity) -> Vec<&Finding> {
        fs.iter().filter(|f| f.severity == sev).collect()
    }

    fn debian(common_auth: &str) -> Root {
        Root::new(&[
            ("common-auth", common_auth),
            ("common-account", "account required pam_unix.so\n"),
            ("sshd", SSHD),
            ("sudo", SUDO),
            ("su", SU),
        ])
    }

    #[test]
    fn stock_debian_without_otpgate_is_a_bypass_everywhere() {
        let root = debian(DEBIAN_COMMON_AUTH);
        // No --service: the login services present are found.
        let (reports, findings) = root.check(&[]);
        let names: Vec<&str> = reports.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(names, ["sshd", "sudo", "su"]);
        for r in &reports {
            assert!(!r.enforced, "{r:?}");
            let unconditional = r.paths.iter().find(|p| p.conditions.is_empty()).unwrap();
            assert_eq!(
                unconditional.describe(),
                if r.service == "su" {
                    "pam_rootok.so auth_err → pam_unix.so success → jump over 1 → pam_permit.so success → pam_cap.so success → success"
                } else {
                    "pam_unix.so success → jump over 1 → pam_permit.so success → pam_cap.so success → success"
                }
            );
        }
        let bypass = of(&findings, Severity::Bypass);
        assert_eq!(bypass.len(), 3, "{findings:#?}");
        for f in bypass {
            let s = f.service.as_deref().unwrap();
            assert!(
                f.what
                    .starts_with(&format!("/etc/pam.d/{s}: no pam_otpgate.so")),
                "{f:?}"
            );
            assert!(
                f.fix.contains("pam-auth-update --package --enable otpgate"),
                "{f:?}"
            );
        }
    }

    #[test]
    fn debian_with_the_profile_is_enforced_with_a_nullok_warning() {
        let root = debian(&debian_with_otpgate());
        let (reports, findings) = root.check(&["sshd", "sudo", "su"]);
        assert!(reports.iter().all(|r| r.enforced), "{reports:#?}");
        assert!(of(&findings, Severity::Bypass).is_empty(), "{findings:#?}");
        let warnings = of(&findings, Severity::Warning);
        assert_eq!(warnings.len(), 3, "{findings:#?}");
        for w in warnings {
            assert!(
                w.what
                    .starts_with("/etc/pam.d/common-auth:25: `nullok` on pam_otpgate.so"),
                "{w:?}"
            );
            assert!(w.fix.contains("remove `nullok`"), "{w:?}");
        }
        // su: root by pam_rootok, noted and nothing more.
        let info = of(&findings, Severity::Info);
        assert_eq!(info.len(), 1, "{findings:#?}");
        assert!(info[0]
            .what
            .starts_with("/etc/pam.d/su:1: `auth sufficient pam_rootok.so`"));
        let su = &reports[2];
        assert!(su
            .paths
            .iter()
            .any(|p| p.conditions == ["the caller is root (pam_rootok.so)"]));
    }

    #[test]
    fn without_nullok_there_is_no_path_around_the_code() {
        let root =
            debian(&debian_with_otpgate().replace("pam_otpgate.so nullok", "pam_otpgate.so"));
        let (r, findings) = root.one("sshd");
        assert!(r.enforced && r.paths.is_empty(), "{r:#?}");
        assert!(findings.is_empty(), "{findings:#?}");
    }

    #[test]
    fn sufficient_pam_permit_before_the_module_is_a_bypass_at_its_line() {
        let root = Root::new(&[(
            "sshd",
            "# test\nauth sufficient pam_permit.so\nauth required pam_unix.so\n\
             auth required pam_otpgate.so\n",
        )]);
        let (r, findings) = root.one("sshd");
        assert!(!r.enforced);
        let b = of(&findings, Severity::Bypass);
        assert_eq!(b.len(), 1, "{findings:#?}");
        assert!(
            b[0].what.starts_with(
                "/etc/pam.d/sshd:2: `auth sufficient pam_permit.so` ends the stack before pam_otpgate.so"
            ),
            "{b:?}"
        );
        assert_eq!(
            b[0].fix,
            "move `auth sufficient pam_permit.so` below pam_otpgate.so or remove it (/etc/pam.d/sshd:2)"
        );
        // Below it, the same line is harmless.
        root.write(
            "sshd",
            "auth required pam_unix.so\nauth required pam_otpgate.so\nauth sufficient pam_permit.so\n",
        );
        let (r, findings) = root.one("sshd");
        assert!(r.enforced && findings.is_empty(), "{r:#?} {findings:#?}");
    }

    #[test]
    fn optional_on_the_module_is_a_bypass() {
        let root = Root::new(&[(
            "sudo",
            "auth required pam_unix.so\nauth optional pam_otpgate.so\n",
        )]);
        let (r, findings) = root.one("sudo");
        assert!(!r.enforced);
        let b = of(&findings, Severity::Bypass);
        assert_eq!(b.len(), 1, "{findings:#?}");
        assert!(
            b[0].what.starts_with(
                "/etc/pam.d/sudo:2: `optional` on pam_otpgate.so lets a failed code through"
            ),
            "{b:?}"
        );
        assert_eq!(
            b[0].fix,
            "use `required` instead of `optional` for pam_otpgate.so at /etc/pam.d/sudo:2"
        );
    }

    #[test]
    fn a_jump_over_the_module_is_a_bypass_with_the_right_count() {
        let root = Root::new(&[(
            "login",
            "auth [success=2 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n\
             auth [success=ok ignore=ignore default=die] pam_otpgate.so\nauth required pam_permit.so\n",
        )]);
        let (r, findings) = root.one("login");
        assert!(!r.enforced);
        let b = of(&findings, Severity::Bypass);
        assert_eq!(b.len(), 1, "{findings:#?}");
        assert!(
            b[0].what.starts_with(
                "/etc/pam.d/login:1: `[success=2 default=ignore]` on pam_unix.so jumps over pam_otpgate.so"
            ),
            "{b:?}"
        );
        assert!(b[0]
            .fix
            .starts_with("change `success=2` to `success=1` at /etc/pam.d/login:1"));
        // With the count the fix gives, the module is reached on every path.
        root.write(
            "login",
            "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n\
             auth [success=ok ignore=ignore default=die] pam_otpgate.so\nauth required pam_permit.so\n",
        );
        let (r, findings) = root.one("login");
        assert!(r.enforced && findings.is_empty(), "{r:#?} {findings:#?}");
    }

    #[test]
    fn a_service_that_does_not_include_common_auth_is_a_bypass() {
        let root = Root::new(&[
            ("common-auth", &debian_with_otpgate()),
            ("sshd", "@include common-auth\n"),
            ("xscreensaver", "auth required pam_unix.so\n"),
        ]);
        let (reports, findings) = root.check(&[]);
        assert_eq!(reports.len(), 2);
        assert!(reports[0].enforced && !reports[1].enforced, "{reports:#?}");
        let b = of(&findings, Severity::Bypass);
        assert_eq!(b.len(), 1, "{findings:#?}");
        assert_eq!(b[0].service.as_deref(), Some("xscreensaver"));
        assert!(b[0]
            .what
            .starts_with("/etc/pam.d/xscreensaver: no pam_otpgate.so"));
        assert!(b[0]
            .fix
            .starts_with("add `@include common-auth` to /etc/pam.d/xscreensaver"));
    }

    #[test]
    fn done_inside_a_substack_ends_only_the_substack() {
        let sub = "auth sufficient pam_permit.so\nauth required pam_deny.so\n";
        let parent = |how: &str| format!("auth {how} pre\nauth required pam_otpgate.so\n");
        let root = Root::new(&[("pre", sub), ("su", &parent("substack"))]);
        let (r, findings) = root.one("su");
        assert!(r.enforced && findings.is_empty(), "{r:#?} {findings:#?}");
        // The same file included: `done` ends the whole stack.
        root.write("su", &parent("include"));
        let (r, findings) = root.one("su");
        assert!(!r.enforced);
        let b = of(&findings, Severity::Bypass);
        assert!(
            b[0].what
                .starts_with("/etc/pam.d/pre:1: `auth sufficient pam_permit.so` ends the stack"),
            "{b:?}"
        );
    }

    #[test]
    fn a_substack_counts_as_one_in_a_jump_and_a_jump_cannot_leave_it() {
        let root = Root::new(&[
            (
                "inner",
                "auth [success=5 default=ignore] pam_unix.so\nauth required pam_permit.so\n",
            ),
            (
                "sshd",
                "auth [success=1 default=ignore] pam_unix.so\nauth substack inner\n\
                 auth required pam_otpgate.so\n",
            ),
        ]);
        // Jump 1 skips the whole substack and lands on the module; inside
        // it, a jump past its end is libpam's "bad jump": a failure.
        let (r, findings) = root.one("sshd");
        assert!(r.enforced && findings.is_empty(), "{r:#?} {findings:#?}");
    }

    #[test]
    fn an_include_cycle_or_missing_file_is_reported_not_a_panic() {
        let root = Root::new(&[
            ("a", "auth required pam_unix.so\n@include b\n"),
            ("b", "# b\nauth include a\n"),
            ("sudo", "@include a\nauth required pam_otpgate.so\n"),
            (
                "sshd",
                "auth include nowhere\nauth required pam_otpgate.so\n",
            ),
        ]);
        let (reports, findings) = root.check(&["sudo", "sshd"]);
        assert!(reports.iter().all(|r| r.enforced), "{reports:#?}");
        let w = of(&findings, Severity::Warning);
        assert_eq!(w.len(), 2, "{findings:#?}");
        assert!(
            w[0].what.starts_with(
                "/etc/pam.d/b:2: includes itself (/etc/pam.d/sudo → /etc/pam.d/a → /etc/pam.d/b → /etc/pam.d/a)"
            ),
            "{w:?}"
        );
        assert!(
            w[1].what
                .starts_with("/etc/pam.d/sshd:1: cannot read /etc/pam.d/nowhere"),
            "{w:?}"
        );
    }

    #[test]
    fn failmode_open_is_a_warning_naming_the_line() {
        let root = Root::new(&[(
            "sshd",
            "auth required pam_unix.so\n\
             auth required pam_otpgate.so \\\n   failmode=open\nauth required pam_permit.so\n",
        )]);
        let (r, findings) = root.one("sshd");
        assert!(r.enforced, "{r:#?}");
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].severity, Severity::Warning);
        assert!(
            findings[0]
                .what
                .starts_with("/etc/pam.d/sshd:2: `failmode=open` on pam_otpgate.so"),
            "{findings:?}"
        );
        assert_eq!(
            r.paths[0].conditions,
            ["otpgated is not running (failmode=open)"]
        );
    }

    #[test]
    fn a_stack_where_nothing_succeeds_fails_and_reset_forgets_a_failure() {
        // Only ignores: libpam fails a stack where nothing set a result.
        let root = Root::new(&[(
            "vlock",
            "auth [success=ok ignore=ignore default=die] pam_otpgate.so nullok\n",
        )]);
        let (r, findings) = root.one("vlock");
        assert!(r.enforced && findings.is_empty(), "{r:#?} {findings:#?}");
        // A `reset` after the module wipes its failure.
        root.write(
            "vlock",
            "auth required pam_otpgate.so\nauth [success=reset default=ignore] pam_unix.so\n\
             auth required pam_permit.so\n",
        );
        let (r, findings) = root.one("vlock");
        assert!(!r.enforced);
        let b = of(&findings, Severity::Bypass);
        assert!(b[0].what.starts_with("/etc/pam.d/vlock:2:"), "{b:?}");
    }

    #[test]
    fn parsing_handles_comments_brackets_and_dashes() {
        let lines = logical_lines(
            "# c\nauth [success=1  default=ignore] pam_x.so a [prompt=Code: ] # trailing\n\
             -auth optional pam_y.so\\\n  b\n",
        );
        assert_eq!(
            lines,
            vec![
                (
                    2,
                    vec![
                        "auth".to_string(),
                        "[success=1  default=ignore]".into(),
                        "pam_x.so".into(),
                        "a".into(),
                        "[prompt=Code: ]".into()
                    ]
                ),
                (
                    3,
                    vec![
                        "-auth".to_string(),
                        "optional".into(),
                        "pam_y.so".into(),
                        "b".into()
                    ]
                ),
            ]
        );
        assert!(Control::parse("[success=1 bogus=ok]").is_err());
        assert_eq!(Control::parse("[success=ok]").unwrap().default, Action::Bad);
    }

    #[test]
    fn a_missing_module_fails_as_libpam_says() {
        let root = Root::new(&[(
            "sudo",
            "auth required pam_unix.so\nauth required pam_otpgate.so\n",
        )]);
        let sec = root.0.path().join("usr/lib/x86_64-linux-gnu/security");
        fs::create_dir_all(&sec).unwrap();
        fs::write(sec.join("pam_unix.so"), "").unwrap();
        // pam_otpgate.so absent: PAM_MODULE_UNKNOWN, `required` fails.
        let (r, _) = root.one("sudo");
        assert!(r.enforced && r.paths.is_empty(), "{r:#?}");
        root.write(
            "sudo",
            "auth required pam_unix.so\n-auth optional pam_otpgate.so\n",
        );
        let (r, _) = root.one("sudo");
        assert!(!r.enforced, "{r:#?}");
    }
}
