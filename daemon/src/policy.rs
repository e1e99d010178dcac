//! The administrator's policy (`[[policy]]` in otpgate.toml): who must give
//! a second factor, on which services, from where, from when, and for how
//! long a success counts. Parsed once (`config::policy`), decided here, by
//! the daemon, for every Challenge, Verify and Account call.
//!
//! Rules are tried in file order and the **first** that matches decides,
//! as in sshd's `Match` and firewall rule sets: a reader finds the answer
//! by reading down. No rule matching means `require` (what otpgate did
//! before there were rules), which the PAM line's `nullok` may still turn
//! into a pass for a user who has not enrolled.
//!
//! A remote address can only ever make a second factor *required*:
//! `from` is allowed on `require` rules only (and has no negation), so a
//! login from anywhere gets at least what a local one gets; a `skip` rule
//! does not apply to a login with a remote host unless it says
//! `allow_skip_remote = true`. PAM_RHOST may come from reverse DNS, which
//! whoever runs the DNS of the client's address controls.

use std::net::IpAddr;

/// What a rule asks of a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A code is asked; an account that has not enrolled is refused
    /// (after `enroll_by`, if set).
    Require,
    /// A code is asked of enrolled accounts; the others pass.
    Optional,
    /// No second factor at all.
    Skip,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Require => "require",
            Mode::Optional => "optional",
            Mode::Skip => "skip",
        }
    }
}

/// A calendar day (`enroll_by`), and the moment it ends (00:00 UTC of the
/// next day), when a `require` rule's grace is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub ends_at: u64,
}

impl Day {
    /// `YYYY-MM-DD`, a real date from 2000 to 2999.
    pub fn parse(s: &str) -> Option<Day> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = &s[r];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        let (year, month, day) = (num(0..4)? as i32, num(5..7)?, num(8..10)?);
        if !(2000..=2999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        if day > days_in_month(year, month) {
            return None;
        }
        let next = days_from_civil(year, month, day) + 1;
        Some(Day {
            year,
            month,
            day,
            ends_at: u64::try_from(next).ok()? * 86_400,
        })
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A list of name patterns (`*` and `?` wildcards), some negated with `!`:
/// it matches a set of names when one name matches a plain pattern and no
/// name matches a negated one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    pub yes: Vec<String>,
    pub no: Vec<String>,
}

impl Patterns {
    /// The config parser has refused empty lists, empty patterns and lists
    /// of negations only.
    pub fn new(items: &[String]) -> Patterns {
        let mut p = Patterns {
            yes: Vec::new(),
            no: Vec::new(),
        };
        for i in items {
            match i.strip_prefix('!') {
                Some(n) => p.no.push(n.to_string()),
                None => p.yes.push(i.clone()),
            }
        }
        p
    }

    /// Which pattern decided, as text for `explain`.
    fn check(&self, names: &[String]) -> Result<String, String> {
        for n in names {
            if let Some(p) = self.no.iter().find(|p| glob(p, n)) {
                return Err(format!("{n:?} is excluded by \"!{p}\""));
            }
        }
        for n in names {
            if let Some(p) = self.yes.iter().find(|p| glob(p, n)) {
                return Ok(format!("{n:?} matches {p:?}"));
            }
        }
        Err(match names {
            [] => "no name to match".to_string(),
            [one] => format!("{one:?} matches none of {:?}", self.yes),
            many => format!("none of {many:?} matches {:?}", self.yes),
        })
    }
}

/// Shell-style `*` (any run) and `?` (one character), nothing else.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// An address block of `from`: `10.0.0.0/8`, `2001:db8::/32`, or one
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
        };
        if prefix > max {
            return None;
        }
        Some(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One `[[policy]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 1-based position in the file.
    pub number: usize,
    /// Line of its `[[policy]]` header.
    pub line: usize,
    pub users: Option<Patterns>,
    pub groups: Option<Patterns>,
    pub services: Option<Patterns>,
    pub from: Option<Vec<Net>>,
    pub mode: Mode,
    pub enroll_by: Option<Day>,
    pub remember_secs: u64,
    pub allow_skip_remote: bool,
}

/// Every rule, in file order.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// The config file, to name it in explanations.
    pub origin: String,
}

/// Two policies are the same when their rules are: where they were read
/// from does not change what they decide.
impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.rules == other.rules
    }
}

impl Eq for Policy {}

/// The login a decision is about. `groups` is only looked at when a rule
/// has `groups` (`Policy::needs_groups`).
pub struct Login<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub service: &'a str,
    /// PAM_RHOST; empty for a local login.
    pub rhost: &'a str,
}

/// What the policy decides for one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub mode: Mode,
    /// Index into `Policy::rules`; `None`: no rule matched.
    pub rule: Option<usize>,
    pub enroll_by: Option<Day>,
    pub remember_secs: u64,
    /// One line per rule tried, for `otpgate policy explain`.
    pub reasons: Vec<String>,
    /// "rule 2 (FILE line 14)" or "no rule matched (default)".
    pub describe: String,
}

impl Decision {
    /// For a login without enrolment: refused, passes, or passes until a
    /// day, at `now`.
    pub fn unenrolled(&self, now: u64) -> otpgate_proto::Policy {
        use otpgate_proto::Policy as P;
        match (self.mode, self.enroll_by) {
            (Mode::Skip, _) => P::Skip,
            (Mode::Optional, _) => P::Optional,
            (Mode::Require, Some(d)) if now < d.ends_at => P::Grace,
            (Mode::Require, _) => P::Require,
        }
    }
}

impl Policy {
    pub fn needs_groups(&self) -> bool {
        self.rules.iter().any(|r| r.groups.is_some())
    }

    /// Whether any rule remembers successes (the daemon then needs the
    /// caller's process to find its login session).
    pub fn remembers(&self) -> bool {
        self.rules.iter().any(|r| r.remember_secs > 0)
    }

    fn describe(&self, i: usize) -> String {
        format!(
            "rule {} ({} line {})",
            i + 1,
            self.origin,
            self.rules[i].line
        )
    }

    pub fn decide(&self, login: &Login<'_>) -> Decision {
        let mut reasons = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let name = format!("rule {} (line {})", i + 1, rule.line);
            match rule.check(login) {
                Err(why) => reasons.push(format!("{name} does not match: {why}")),
                Ok(_)
                    if rule.mode == Mode::Skip
                        && !login.rhost.is_empty()
                        && !rule.allow_skip_remote =>
                {
                    reasons.push(format!(
                        "{name} would skip the second factor, but this login comes from {} and the rule does not set allow_skip_remote",
                        login.rhost
                    ));
                }
                Ok(why) => {
                    reasons.push(format!("{name} matches: {why}"));
                    return Decision {
                        mode: rule.mode,
                        rule: Some(i),
                        enroll_by: rule.enroll_by,
                        remember_secs: rule.remember_secs,
                        reasons,
                        describe: self.describe(i),
                    };
                }
            }
        }
        reasons.push("no rule matched: require, the default".to_string());
        Decision {
            mode: Mode::Require,
            rule: None,
            enroll_by: None,
            remember_secs: 0,
            reasons,
            describe: "no rule matched (default)".to_string(),
        }
    }

    /// The first `require` rule whose users and groups (those it names)
    /// match `user`, whatever its services and `from`: such a user must
    /// keep a second factor. Described as in a decision.
    pub fn requiring(&self, user: &str, groups: &[String]) -> Option<String> {
        let names = [user.to_string()];
        self.rules
            .iter()
            .position(|r| {
                r.mode == Mode::Require
                    && r.users.as_ref().is_none_or(|p| p.check(&names).is_ok())
                    && r.groups.as_ref().is_none_or(|p| p.check(groups).is_ok())
            })
            .map(|i| self.describe(i))
    }

    /// Whether these rules, for root logging in locally, name `require`
    /// on every service: `Some(line of the rule that covers the rest)`.
    /// Services probed: every one a rule names, and one no rule names.
    pub fn locks_out_root(&self, root_groups: &[String]) -> Option<usize> {
        let mut services: Vec<String> = self
            .rules
            .iter()
            .filter_map(|r| r.services.as_ref())
            .flat_map(|p| p.yes.iter().chain(p.no.iter()))
            .filter(|s| !s.contains(['*', '?']))
            .cloned()
            .collect();
        // No service name contains a NUL: only wildcards match this one.
        services.push("\0other".to_string());
        let mut last = None;
        for service in &services {
            let d = self.decide(&Login {
                user: "root",
                groups: root_groups,
                service,
                rhost: "",
            });
            match d.rule {
                Some(i) if d.mode == Mode::Require => last = Some(self.rules[i].line),
                _ => return None,
            }
        }
        last
    }
}

impl Rule {
    /// `Ok(why it matches)` or `Err(why not)`.
    fn check(&self, login: &Login<'_>) -> Result<String, String> {
        let mut why = Vec::new();
        if let Some(p) = &self.users {
            let m = p.check(&[login.user.to_string()]);
            why.push(format!("user {}", m.map_err(|e| format!("user {e}"))?));
        }
        if let Some(p) = &self.groups {
            let m = p.check(login.groups);
            why.push(format!("group {}", m.map_err(|e| format!("group {e}"))?));
        }
        if let Some(p) = &self.services {
            why.push(format!(
                "service {}",
                p.check(&[login.service.to_string()])?
            ));
        }
        if let Some(nets) = &self.from {
            if login.rhost.is_empty() {
                return Err("a local login (no remote host) is not `from` anywhere".into());
            }
            match login.rhost.parse::<IpAddr>() {
                Ok(ip) => match nets.iter().find(|n| n.contains(ip)) {
                    Some(n) => why.push(format!("remote host {ip} is in {n}")),
                    None => return Err(format!("remote host {ip} is in none of its networks")),
                },
                // A name (sshd's UseDNS) cannot be placed: since `from`
                // only requires, it counts as a match, never as an escape.
                Err(_) => why.push(format!(
                    "remote host {:?} is a name, not an address: counted as inside",
                    login.rhost
                )),
            }
        }
        if why.is_empty() {
            why.push("it matches every login".into());
        }
        Ok(why.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(items: &[&str]) -> Option<Patterns> {
        Some(Patterns::new(
            &items.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ))
    }

    fn rule(mode: Mode) -> Rule {
        Rule {
            number: 0,
            line: 0,
            users: None,
            groups: None,
            services: None,
            from: None,
            mode,
            enroll_by: None,
            remember_secs: 0,
            allow_skip_remote: false,
        }
    }

    fn policy(rules: Vec<Rule>) -> Policy {
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| Rule {
                number: i + 1,
                line: 10 * (i + 1),
                ..r
            })
            .collect();
        Policy {
            rules,
            origin: "test.toml".into(),
        }
    }

    fn login<'a>(
        user: &'a str,
        groups: &'a [String],
        service: &'a str,
        rhost: &'a str,
    ) -> Login<'a> {
        Login {
            user,
            groups,
            service,
            rhost,
        }
    }

    fn groups(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dates() {
        let d = Day::parse("2027-01-31").unwrap();
        assert_eq!(d.ends_at, 1_801_440_000); // 2027-02-01T00:00:00Z
        assert_eq!(d.to_string(), "2027-01-31");
        assert_eq!(Day::parse("1970-01-01"), None);
        assert_eq!(Day::parse("2024-02-29").unwrap().ends_at, 1_709_251_200);
        for bad in [
            "2023-02-29",
            "2027-13-01",
            "2027-1-31",
            "27-01-31",
            "2027-01-32",
            "2027-00-10",
            "+027-01-01",
            "2027-01-3a",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("*", ""));
        assert!(glob("adm*", "admins"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*-robot", "backup-robot"));
        assert!(!glob("backup", "backups"));
        assert!(glob("a*b*c", "axxbyyc"));
    }

    #[test]
    fn networks() {
        let n = Net::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.1.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let n6 = Net::parse("2001:db8::/32").unwrap();
        assert!(n6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!n6.contains("2001:db9::1".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert_eq!(Net::parse("192.0.2.1").unwrap().prefix, 32);
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "host",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "::/129",
        ] {
            assert_eq!(Net::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn first_match_wins_and_negation_excludes() {
        let p = policy(vec![
            Rule {
                groups: pats(&["*", "!backup"]),
                services: pats(&["sshd", "sudo"]),
                ..rule(Mode::Require)
            },
            Rule {
                users: pats(&["robot"]),
                ..rule(Mode::Skip)
            },
            rule(Mode::Optional),
        ]);
        let staff = groups(&["staff"]);
        let d = p.decide(&login("alice", &staff, "sshd", ""));
        assert_eq!((d.mode, d.rule), (Mode::Require, Some(0)));
        assert_eq!(d.describe, "rule 1 (test.toml line 10)");
        let backup = groups(&["robot", "backup"]);
        let d = p.decide(&login("robot", &backup, "sshd", ""));
        assert_eq!((d.mode, d.rule), (Mode::Skip, Some(1)), "{:?}", d.reasons);
        assert!(
            d.reasons[0].contains("excluded by \"!backup\""),
            "{:?}",
            d.reasons
        );
        let d = p.decide(&login("alice", &staff, "login", ""));
        assert_eq!((d.mode, d.rule), (Mode::Optional, Some(2)));
        let none = policy(vec![]).decide(&login("alice", &staff, "sshd", ""));
        assert_eq!((none.mode, none.rule), (Mode::Require, None));
    }

    #[test]
    fn from_only_requires_and_skip_needs_allow_skip_remote() {
        let p = policy(vec![
            Rule {
                from: Some(vec![Net::parse("203.0.113.0/24").unwrap()]),
                ..rule(Mode::Require)
            },
            Rule {
                users: pats(&["robot"]),
                ..rule(Mode::Skip)
            },
            Rule {
                users: pats(&["robot2"]),
                allow_skip_remote: true,
                ..rule(Mode::Skip)
            },
            rule(Mode::Optional),
        ]);
        let g = groups(&["robot"]);
        assert_eq!(p.decide(&login("robot", &g, "sshd", "")).mode, Mode::Skip);
        // Remote: the skip rule steps aside.
        let d = p.decide(&login("robot", &g, "sshd", "198.51.100.7"));
        assert_eq!(
            (d.mode, d.rule),
            (Mode::Optional, Some(3)),
            "{:?}",
            d.reasons
        );
        assert_eq!(
            p.decide(&login("robot2", &g, "sshd", "198.51.100.7")).mode,
            Mode::Skip
        );
        // From the listed network: required, whoever.
        assert_eq!(
            p.decide(&login("robot2", &g, "sshd", "203.0.113.9")).mode,
            Mode::Require
        );
        // A name cannot be placed: counted as inside.
        assert_eq!(
            p.decide(&login("robot2", &g, "sshd", "evil.example")).mode,
            Mode::Require
        );
    }

    #[test]
    fn grace_ends_with_the_day() {
        let day = Day::parse("2027-01-31").unwrap();
        let p = policy(vec![Rule {
            enroll_by: Some(day),
            ..rule(Mode::Require)
        }]);
        let d = p.decide(&login("alice", &[], "sshd", ""));
        use otpgate_proto::Policy as P;
        assert_eq!(d.unenrolled(day.ends_at - 1), P::Grace);
        assert_eq!(d.unenrolled(day.ends_at), P::Require);
    }

    #[test]
    fn root_lock_out_is_found() {
        let root = groups(&["root"]);
        let everyone = policy(vec![Rule {
            groups: pats(&["*"]),
            ..rule(Mode::Require)
        }]);
        assert_eq!(everyone.locks_out_root(&root), Some(10));
        let console_spared = policy(vec![
            Rule {
                users: pats(&["root"]),
                services: pats(&["login"]),
                ..rule(Mode::Optional)
            },
            Rule {
                groups: pats(&["*"]),
                ..rule(Mode::Require)
            },
        ]);
        assert_eq!(console_spared.locks_out_root(&root), None);
        let listed = policy(vec![Rule {
            services: pats(&["sshd", "sudo"]),
            ..rule(Mode::Require)
        }]);
        assert_eq!(
            listed.locks_out_root(&root),
            None,
            "other services fall to the default"
        );
        assert_eq!(policy(vec![]).locks_out_root(&root), None);
    }

    #[test]
    fn a_require_rule_that_names_a_user_keeps_their_last_factor() {
        let p = policy(vec![
            Rule {
                users: pats(&["backup-robot"]),
                ..rule(Mode::Skip)
            },
            Rule {
                groups: pats(&["admins"]),
                services: pats(&["sshd"]),
                ..rule(Mode::Require)
            },
            Rule {
                users: pats(&["*", "!guest"]),
                ..rule(Mode::Optional)
            },
        ]);
        let admins = ["admins".to_string()];
        // Whatever its services: the rule names the user's group.
        assert_eq!(
            p.requiring("alice", &admins).as_deref(),
            Some("rule 2 (test.toml line 20)")
        );
        assert_eq!(p.requiring("alice", &[]), None);
        assert_eq!(p.requiring("backup-robot", &[]), None);
        assert!(policy(vec![rule(Mode::Require)])
            .requiring("x", &[])
            .is_some());
        assert_eq!(Policy::default().requiring("x", &[]), None);
    }
}
