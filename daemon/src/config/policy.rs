//! `[[policy]]`: an array of tables, so not in `keys::SECTIONS` (a table of
//! single sections); read here, with the same file:line errors.

use toml::de::{DeTable, DeValue};

use super::check::{printable, Source};
use super::ConfigError;
use crate::policy::{Day, Mode, Net, Patterns, Policy, Rule};

pub(super) const NAME: &str = "policy";

/// The keys of one rule, in the order the documentation lists them.
pub const KEYS: &[(&str, &str)] = &[
    ("users", "user names matched (patterns with * and ?, \"!name\" excludes)"),
    ("groups", "group names matched, primary or supplementary (same patterns)"),
    ("services", "PAM services matched (sshd, sudo, login, ...)"),
    ("from", "remote networks (PAM_RHOST) matched, e.g. \"10.0.0.0/8\"; only with mode = \"require\""),
    ("mode", "\"require\" | \"optional\" | \"skip\" (required)"),
    ("enroll_by", "\"YYYY-MM-DD\": with require, an account without a second factor passes (with a notice) through that day, UTC"),
    ("remember_secs", "0 to 86400: after a success, the same login session is not asked again on this rule's services for this long"),
    ("allow_skip_remote", "true lets a skip rule apply to logins with a remote host"),
];

const MAX_REMEMBER_SECS: i64 = 86_400;
const MAX_RULES: usize = 256;

pub(super) fn parse(src: &Source<'_>, root: &DeTable<'_>) -> Result<Policy, ConfigError> {
    let mut policy = Policy {
        rules: Vec::new(),
        origin: src.file.display().to_string(),
    };
    let Some((_, value)) = root.iter().find(|(k, _)| k.get_ref() == NAME) else {
        return Ok(policy);
    };
    let at = value.span().start;
    let Some(items) = value.get_ref().as_array() else {
        return Err(src.invalid(
            at,
            "[policy]".into(),
            "rules are an array of tables: write each as [[policy]] (two brackets)",
        ));
    };
    if items.len() > MAX_RULES {
        return Err(src.invalid(
            at,
            "[[policy]]".into(),
            format!("at most {MAX_RULES} rules"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let Some(table) = item.get_ref().as_table() else {
            return Err(src.invalid(
                item.span().start,
                "[[policy]]".into(),
                "each rule must be a table",
            ));
        };
        policy
            .rules
            .push(rule(src, i + 1, item.span().start, table)?);
    }
    Ok(policy)
}

fn rule(src: &Source<'_>, number: usize, at: usize, t: &DeTable<'_>) -> Result<Rule, ConfigError> {
    let name = |key: &str| format!("[[policy]] rule {number}: {key}");
    let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    for (k, _) in t.iter() {
        if !known.contains(&k.get_ref().as_ref()) {
            return Err(src.invalid(
                k.span().start,
                format!("[[policy]] rule {number}"),
                format!(
                    "unknown key \"{}\" (known: {})",
                    printable(k.get_ref()),
                    known.join(", ")
                ),
            ));
        }
    }
    let get = |key: &str| t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v);
    let list = |key: &str| -> Result<Option<(usize, Vec<String>)>, ConfigError> {
        let Some(v) = get(key) else { return Ok(None) };
        let at = v.span().start;
        let Some(arr) = v.get_ref().as_array() else {
            return Err(src.invalid(
                at,
                name(key),
                "must be a list of strings, like [\"a\", \"b\"]",
            ));
        };
        let mut out = Vec::new();
        for item in arr.iter() {
            let Some(s) = item.get_ref().as_str() else {
                return Err(src.invalid(item.span().start, name(key), "must hold strings only"));
            };
            if s.is_empty() || s == "!" || s.len() > 256 || s.chars().any(char::is_control) {
                return Err(src.invalid(
                    item.span().start,
                    name(key),
                    format!("{:?} is not a name or pattern", printable(s)),
                ));
            }
            out.push(s.to_string());
        }
        if out.is_empty() {
            return Err(src.invalid(
                at,
                name(key),
                "an empty list matches nothing: leave the key out to match every one",
            ));
        }
        Ok(Some((at, out)))
    };
    let patterns = |key: &str| -> Result<Option<Patterns>, ConfigError> {
        let Some((at, items)) = list(key)? else {
            return Ok(None);
        };
        if items.iter().all(|s| s.starts_with('!')) {
            return Err(src.invalid(
                at,
                name(key),
                "only exclusions match nothing: add \"*\" to match every other one",
            ));
        }
        Ok(Some(Patterns::new(&items)))
    };

    let mode_at = get("mode").map_or(at, |v| v.span().start);
    let mode = match get("mode").map(|v| v.get_ref()) {
        None => {
            return Err(src.invalid(
                at,
                name("mode"),
                "is required: \"require\", \"optional\" or \"skip\"",
            ))
        }
        Some(DeValue::String(s)) => match s.as_ref() {
            "require" => Mode::Require,
            "optional" => Mode::Optional,
            "skip" => Mode::Skip,
            other => {
                return Err(src.invalid(
                    mode_at,
                    format!("{} = \"{}\"", name("mode"), printable(other)),
                    "must be \"require\", \"optional\" or \"skip\"",
                ))
            }
        },
        Some(_) => return Err(src.invalid(mode_at, name("mode"), "must be a string")),
    };

    let from = match list("from")? {
        None => None,
        Some((at, items)) => {
            if mode != Mode::Require {
                return Err(src.invalid(
                    at,
                    name("from"),
                    "may only make a second factor required (mode = \"require\"): \
                     an address must never exempt anyone, since PAM_RHOST can come from DNS",
                ));
            }
            let mut nets = Vec::new();
            for s in &items {
                match Net::parse(s) {
                    Some(n) => nets.push(n),
                    None => {
                        return Err(src.invalid(
                            at,
                            name("from"),
                            format!(
                                "{:?} is not an address or network like \"10.0.0.0/8\" (no names, no \"!\")",
                                printable(s)
                            ),
                        ))
                    }
                }
            }
            Some(nets)
        }
    };

    let enroll_by = match get("enroll_by") {
        None => None,
        Some(v) => {
            let at = v.span().start;
            let text = match v.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Datetime(d) => d.to_string(),
                _ => {
                    return Err(src.invalid(
                        at,
                        name("enroll_by"),
                        "must be a date: \"YYYY-MM-DD\"",
                    ))
                }
            };
            let Some(day) = Day::parse(&text) else {
                return Err(src.invalid(
                    at,
                    format!("{} = \"{}\"", name("enroll_by"), printable(&text)),
                    "must be a date: \"YYYY-MM-DD\"",
                ));
            };
            if mode != Mode::Require {
                return Err(src.invalid(
                    at,
                    name("enroll_by"),
                    "only means something with mode = \"require\" (the others never refuse an account for not being enrolled)",
                ));
            }
            Some(day)
        }
    };

    let remember_secs = match get("remember_secs") {
        None => 0,
        Some(v) => {
            let at = v.span().start;
            let n = match v.get_ref() {
                DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
                _ => None,
            };
            match n {
                Some(n) if (0..=MAX_REMEMBER_SECS).contains(&n) => {
                    if n > 0 && mode == Mode::Skip {
                        return Err(src.invalid(
                            at,
                            name("remember_secs"),
                            "means nothing with mode = \"skip\" (no code is asked to remember)",
                        ));
                    }
                    n as u64
                }
                _ => {
                    return Err(src.invalid(
                        at,
                        name("remember_secs"),
                        format!("must be an integer between 0 and {MAX_REMEMBER_SECS}"),
                    ))
                }
            }
        }
    };

    let allow_skip_remote = match get("allow_skip_remote") {
        None => false,
        Some(v) => match v.get_ref() {
            DeValue::Boolean(b) => {
                if *b && mode != Mode::Skip {
                    return Err(src.invalid(
                        v.span().start,
                        name("allow_skip_remote"),
                        "only means something with mode = \"skip\"",
                    ));
                }
                *b
            }
            _ => {
                return Err(src.invalid(
                    v.span().start,
                    name("allow_skip_remote"),
                    "must be true or false",
                ))
            }
        },
    };

    Ok(Rule {
        number,
        line: src.line_of(at),
        users: patterns("users")?,
        groups: patterns("groups")?,
        services: patterns("services")?,
        from,
        mode,
        enroll_by,
        remember_secs,
        allow_skip_remote,
    })
}

/// Refuses rules under which root needs a second factor on every
/// service: an un-enrolled root, or one who lost the device, could then
/// never log in again, not even on the console.
pub(super) fn check_root(src: &Source<'_>, policy: &Policy) -> Result<(), ConfigError> {
    if policy.rules.is_empty() {
        return Ok(());
    }
    let groups = root_groups();
    if let Some(line) = policy.locks_out_root(&groups) {
        return Err(ConfigError::Invalid {
            file: src.file.to_owned(),
            line,
            setting: "[[policy]]".into(),
            reason: "these rules make root give a second factor on every service, the console \
                     included: root could be locked out for good. Put a rule for root's console \
                     first, e.g. users = [\"root\"], services = [\"login\"], mode = \"optional\" \
                     (and keep break-glass codes: otpgate breakglass generate)"
                .into(),
        });
    }
    Ok(())
}

/// root's groups by the group database; "root" if it cannot be asked.
fn root_groups() -> Vec<String> {
    crate::accounts::groups_of("root", 0).unwrap_or_else(|_| vec!["root".to_string()])
}
