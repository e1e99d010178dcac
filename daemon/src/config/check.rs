//! The one pass that holds a parsed file against [`SECTIONS`]: unknown
//! sections and keys, TOML types, ranges and per-key string rules, each
//! refusal naming the file, the line and the key.

use std::collections::HashMap;
use std::path::Path;

use toml::de::{DeInteger, DeTable, DeValue};
use toml::Spanned;

use super::keys::{Key, Kind, Preset, Section, SECTIONS};
use super::ConfigError;

/// The text being parsed and where it came from, for turning byte offsets
/// into `file:line` errors.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub file: &'a Path,
}

impl Source<'_> {
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    pub fn invalid(&self, at: usize, setting: String, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(at),
            setting,
            reason: reason.into(),
        }
    }

    fn wrong_type(
        &self,
        setting: String,
        expected: &'static str,
        v: &Spanned<DeValue<'_>>,
    ) -> ConfigError {
        ConfigError::WrongType {
            file: self.file.to_owned(),
            line: self.line_of(v.span().start),
            setting,
            expected,
            found: article(v.get_ref().type_str()),
        }
    }
}

enum Val {
    Int(i64),
    Str(String),
    List(Vec<String>),
}

struct Setting {
    val: Val,
    /// Where the file sets it; `None` for a default.
    at: Option<usize>,
}

/// Every key's validated value, or its default; keys without a default
/// that the file leaves out are absent.
pub(super) struct Values(HashMap<(&'static str, &'static str), Setting>);

impl Values {
    /// An integer key. Only keys the table declares as integers with a
    /// default are asked for, and their ranges fit the field types.
    pub fn int<T: TryFrom<i64>>(&self, section: &str, key: &str) -> T {
        let n = self
            .try_int(section, key)
            .unwrap_or_else(|| panic!("[{section}] {key} is not an integer key with a default"));
        T::try_from(n).unwrap_or_else(|_| panic!("[{section}] {key}: range wider than its field"))
    }

    /// `None` also when the file's value was refused.
    fn try_int(&self, section: &str, key: &str) -> Option<i64> {
        match self.0.get(&(section, key)).map(|s| &s.val) {
            Some(Val::Int(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn string(&self, section: &str, key: &str) -> Option<String> {
        match self.0.get(&(section, key)).map(|s| &s.val) {
            Some(Val::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// A list key (they all have a default).
    pub fn list(&self, section: &str, key: &str) -> Vec<String> {
        match self.0.get(&(section, key)).map(|s| &s.val) {
            Some(Val::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }

    /// Where the file sets `key`, if it does.
    pub fn set_at(&self, section: &str, key: &str) -> Option<usize> {
        self.0.get(&(section, key)).and_then(|s| s.at)
    }
}

/// Checks `root` against [`SECTIONS`]. Unknown names and wrong types come
/// first, then values; of several problems of one kind, the one earliest in
/// the file is reported (the table is not kept in file order).
pub(super) fn check(src: &Source<'_>, root: &DeTable<'_>) -> Result<Values, ConfigError> {
    check_names_and_types(src, root)?;
    let mut values = Values(HashMap::new());
    let mut refused: Vec<(usize, ConfigError)> = Vec::new();
    for section in SECTIONS {
        let table = root
            .iter()
            .find(|(name, _)| name.get_ref() == section.name)
            .and_then(|(_, v)| v.get_ref().as_table());
        for key in section.keys {
            let given = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == key.name));
            let setting = match given {
                Some((_, v)) => match value(src, section, key, v, &values) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        refused.push((v.span().start, e));
                        None
                    }
                },
                None => preset(section, key, &values),
            };
            if let Some(s) = setting {
                values.0.insert((section.name, key.name), s);
            }
        }
    }
    match refused.into_iter().min_by_key(|(offset, _)| *offset) {
        Some((_, e)) => Err(e),
        None => Ok(values),
    }
}

fn preset(section: &Section, key: &Key, values: &Values) -> Option<Setting> {
    let val = match (&key.preset, &key.kind) {
        (Preset::Int(d), Kind::IntFrom { key: from, .. }) => {
            Val::Int((*d).max(values.try_int(section.name, from).unwrap_or(*d)))
        }
        (Preset::Int(d), _) => Val::Int(*d),
        (Preset::Str(s), _) => Val::Str((*s).to_owned()),
        (Preset::List(items), _) => Val::List(items.iter().map(|s| (*s).to_owned()).collect()),
        (Preset::Unset(_), _) => return None,
    };
    Some(Setting { val, at: None })
}

fn value(
    src: &Source<'_>,
    section: &Section,
    key: &Key,
    v: &Spanned<DeValue<'_>>,
    values: &Values,
) -> Result<Setting, ConfigError> {
    let at = v.span().start;
    let name = format!("[{}] {}", section.name, key.name);
    let val = match (&key.kind, v.get_ref()) {
        (Kind::Int { min, max }, DeValue::Integer(i)) => int(src, &name, i, at, *min, *max)?,
        (Kind::IntFrom { key: from, max }, DeValue::Integer(i)) => {
            // When `from` was refused, that refusal is reported anyway.
            let min = values.try_int(section.name, from).unwrap_or(i64::MIN);
            int(src, &name, i, at, min, *max)?
        }
        (Kind::List { values }, DeValue::Array(items)) => {
            let mut out: Vec<String> = Vec::new();
            for item in items.iter() {
                let Some(s) = item.get_ref().as_str() else {
                    return Err(src.invalid(
                        item.span().start,
                        name.clone(),
                        format!("must be a list of strings: {}", one_of(values)),
                    ));
                };
                if !values.contains(&s) {
                    return Err(src.invalid(
                        item.span().start,
                        format!("{name} = [... \"{}\" ...]", printable(s)),
                        format!("each must be {}", one_of(values)),
                    ));
                }
                if out.iter().any(|o| o == s) {
                    return Err(src.invalid(
                        item.span().start,
                        name.clone(),
                        format!("\"{}\" is listed twice", printable(s)),
                    ));
                }
                out.push(s.to_owned());
            }
            if out.is_empty() {
                return Err(src.invalid(
                    at,
                    name.clone(),
                    format!("must list at least one of {}", one_of(values)),
                ));
            }
            Val::List(out)
        }
        (kind, DeValue::String(s))
            if !matches!(
                kind,
                Kind::Int { .. } | Kind::IntFrom { .. } | Kind::List { .. }
            ) =>
        {
            let quoted = || format!("{name} = \"{}\"", printable(s));
            let refused = match kind {
                Kind::Text { check, .. } => check(s).err().map(|r| (quoted(), r.to_owned())),
                // Never echoed: it may carry a credential.
                Kind::Secret { check, .. } => check(s).err().map(|r| (name.clone(), r.to_owned())),
                Kind::Path => check_path(s).err().map(|r| (quoted(), r.to_owned())),
                Kind::Choice { values, hint } => (!values.contains(&s.as_ref()))
                    .then(|| (quoted(), format!("must be {}{hint}", one_of(values)))),
                Kind::Int { .. } | Kind::IntFrom { .. } | Kind::List { .. } => None,
            };
            if let Some((setting, reason)) = refused {
                return Err(src.invalid(at, setting, reason));
            }
            Val::Str(s.to_string())
        }
        (kind, _) => return Err(src.wrong_type(name, kind.expected(), v)),
    };
    Ok(Setting { val, at: Some(at) })
}

fn int(
    src: &Source<'_>,
    name: &str,
    i: &DeInteger<'_>,
    at: usize,
    min: i64,
    max: i64,
) -> Result<Val, ConfigError> {
    let range = format!("must be between {min} and {max}");
    let Ok(n) = i64::from_str_radix(i.as_str(), i.radix()) else {
        return Err(src.invalid(at, name.to_owned(), format!("out of range; {range}")));
    };
    if !(min..=max).contains(&n) {
        return Err(src.invalid(at, format!("{name} = {n}"), range));
    }
    Ok(Val::Int(n))
}

fn check_path(s: &str) -> Result<(), &'static str> {
    if s.contains('\0') {
        return Err("must not contain a NUL character");
    }
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err("must be an absolute path");
    }
    if p.parent().is_none() {
        return Err("must not be the root directory");
    }
    Ok(())
}

/// `"a", "b" or "c"`.
fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// Refuses unknown sections and keys and wrongly typed values; of several,
/// the one earliest in the file.
fn check_names_and_types(src: &Source<'_>, root: &DeTable<'_>) -> Result<(), ConfigError> {
    let known_sections = SECTIONS
        .iter()
        .map(|s| s.name)
        .chain(["[[policy]]"])
        .collect::<Vec<_>>()
        .join(", ");
    let mut found: Vec<(usize, ConfigError)> = Vec::new();
    for (name, value) in root.iter() {
        // Rules are an array of tables, read by `policy.rs`.
        if name.get_ref() == super::policy::NAME {
            continue;
        }
        let Some(section) = SECTIONS.iter().find(|s| s.name == name.get_ref()) else {
            let at = name.span().start;
            let (file, line) = (src.file.to_owned(), src.line_of(at));
            let (name, known) = (printable(name.get_ref()), known_sections.clone());
            let err = if value.get_ref().is_table() {
                ConfigError::UnknownSection {
                    file,
                    line,
                    name,
                    known,
                }
            } else {
                ConfigError::KeyOutsideSection {
                    file,
                    line,
                    key: name,
                    known,
                }
            };
            found.push((at, err));
            continue;
        };
        let Some(table) = value.get_ref().as_table() else {
            let setting = format!("[{}]", section.name);
            found.push((
                value.span().start,
                src.wrong_type(setting, "a table", value),
            ));
            continue;
        };
        let known_keys = section
            .keys
            .iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(", ");
        for (key, v) in table.iter() {
            match section.keys.iter().find(|k| k.name == key.get_ref()) {
                None => found.push((
                    key.span().start,
                    ConfigError::UnknownKey {
                        file: src.file.to_owned(),
                        line: src.line_of(key.span().start),
                        section: section.name.to_owned(),
                        key: printable(key.get_ref()),
                        known: known_keys.clone(),
                    },
                )),
                Some(k) if !type_matches(&k.kind, v.get_ref()) => found.push((
                    v.span().start,
                    src.wrong_type(
                        format!("[{}] {}", section.name, k.name),
                        k.kind.expected(),
                        v,
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    match found.into_iter().min_by_key(|(offset, _)| *offset) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

fn type_matches(kind: &Kind, v: &DeValue<'_>) -> bool {
    match kind {
        Kind::Int { .. } | Kind::IntFrom { .. } => matches!(v, DeValue::Integer(_)),
        Kind::List { .. } => matches!(v, DeValue::Array(_)),
        _ => matches!(v, DeValue::String(_)),
    }
}

fn article(type_str: &'static str) -> &'static str {
    match type_str {
        "string" => "a string",
        "integer" => "an integer",
        "float" => "a float",
        "boolean" => "a boolean",
        "datetime" => "a date-time",
        "array" => "an array",
        "table" => "a table",
        other => other,
    }
}

/// Keeps file-supplied names printable on one line and short.
pub(super) fn printable(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s
        .chars()
        .take(MAX)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
