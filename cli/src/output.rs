//! What goes to stdout: aligned tables and key/value blocks for people, one
//! JSON object for scripts, and the typed views of the daemon's dictionaries.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use otpgate_proto::codec::Status;
use serde::Serialize;

use crate::error::CliError;

/// Writes `text` to stdout as is.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("cannot write to stdout", &e))
}

/// Prints `value` as one JSON object on one line.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let mut text = serde_json::to_string(value)
        .map_err(|e| CliError::Protocol(format!("cannot encode JSON: {e}")))?;
    text.push('\n');
    print(&text)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Columns padded to the widest cell, separated by two spaces; the last
/// column is not padded so lines carry no trailing blanks.
pub fn table(headers: &[&str], align: &[Align], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(n) {
            let pad = widths[i] - cell.chars().count();
            let last = i + 1 == n;
            if i > 0 {
                line.push_str("  ");
            }
            match align.get(i).copied().unwrap_or(Align::Left) {
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2026-11-24 14:05 +01:00` in the local time zone, or UTC when the offset
/// cannot be determined.
pub fn local_time(unix: u64) -> String {
    let Ok(ts) = time::OffsetDateTime::from_unix_timestamp(unix.min(i64::MAX as u64) as i64) else {
        return format!("@{unix}");
    };
    let ts = match time::UtcOffset::local_offset_at(ts) {
        Ok(off) => ts.to_offset(off),
        Err(_) => ts,
    };
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] [offset_hour sign:mandatory]:[offset_minute]"
    );
    ts.format(&fmt).unwrap_or_else(|_| format!("@{unix}"))
}

/// `otpgate history`: one line per event, oldest first, in columns. Text
/// from the daemon is made printable (a remote host name is the client's
/// to choose).
pub fn history_text(user: &str, entries: &[otpgate_proto::codec::HistoryEntry]) -> String {
    if entries.is_empty() {
        return format!("{user}: no events yet\n");
    }
    let clean = |s: &str| -> String {
        let t: String = s.chars().filter(|c| !c.is_control()).take(64).collect();
        if t.is_empty() {
            "-".to_owned()
        } else {
            t
        }
    };
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                local_time(e.at),
                clean(&e.event),
                clean(&e.service),
                clean(&e.rhost),
                clean(&e.tty),
                clean(&e.detail),
            ]
        })
        .collect();
    let head = ["when", "event", "service", "from", "tty", "detail"];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| -> String {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        format!("{}\n", l.trim_end())
    };
    let mut out = line(head);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    out
}

/// "in 14 min" style distance from `now` to `then`.
pub fn from_now(then: u64, now: u64) -> String {
    if then <= now {
        return "now".to_owned();
    }
    let secs = then - now;
    match secs {
        0..=59 => format!("in {secs} s"),
        60..=5399 => format!("in {} min", secs.div_ceil(60)),
        _ => format!("in {} h", secs.div_ceil(3600)),
    }
}

pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// How a `Manager.Status` answer (or a readable `Admin.ListUsers` entry)
/// reads for people.
pub trait StatusText {
    /// One word or phrase for tables.
    fn state(&self) -> String;
    /// The key/value block `otpgate status` prints.
    fn text(&self, now: u64) -> String;
}

impl StatusText for Status {
    fn state(&self) -> String {
        if self.locked {
            if self.locked_until > 0 {
                format!("locked until {}", local_time(self.locked_until))
            } else {
                "locked".to_owned()
            }
        } else if self.enrolled && self.pending {
            "enrolled, re-enrolling".to_owned()
        } else if self.enrolled {
            "enrolled".to_owned()
        } else if self.pending {
            "pending".to_owned()
        } else {
            "not enrolled".to_owned()
        }
    }

    fn text(&self, now: u64) -> String {
        let method = if self.method.is_empty() {
            "-".to_owned()
        } else {
            self.method.clone()
        };
        let locked = if self.locked && self.locked_until > now {
            format!(
                "yes, until {} ({})",
                local_time(self.locked_until),
                from_now(self.locked_until, now)
            )
        } else {
            yes_no(self.locked).to_owned()
        };
        let pairs = [
            ("user", self.user.clone()),
            ("enrolled", yes_no(self.enrolled).to_owned()),
            ("pending", yes_no(self.pending).to_owned()),
            ("method", method),
            ("backup codes left", self.backup_codes_left.to_string()),
            ("locked", locked),
            ("failures", self.failures.to_string()),
        ];
        let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut pairs = pairs.to_vec();
        // Most users never have break-glass codes: the line appears only
        // for those who do.
        if self.breakglass_codes_left > 0 {
            pairs.push((
                "break-glass codes",
                format!("{} left", self.breakglass_codes_left),
            ));
        }
        // Only once a wrong code was seen to be another time's code.
        if self.clock_offset_seen_at != 0 {
            let secs = self.clock_offset_secs.unsigned_abs();
            let how = if self.clock_offset_secs > 0 {
                "fast"
            } else {
                "slow"
            };
            let amount = if secs < 120 {
                format!("{secs} s")
            } else {
                format!("{} min", (secs + 30) / 60)
            };
            pairs.push((
                "app clock",
                format!(
                    "about {amount} {how} (seen {}): set the phone to automatic time",
                    local_time(self.clock_offset_seen_at)
                ),
            ));
        }
        let mut out: String = pairs
            .iter()
            .map(|(k, v)| format!("{:<w$}  {v}\n", format!("{k}:"), w = width + 1))
            .collect();
        if !self.devices.is_empty() {
            let rows: Vec<Vec<String>> = self
                .devices
                .iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.method.clone(),
                        if d.added == 0 {
                            "-".to_owned()
                        } else {
                            local_time(d.added)
                        },
                        if d.last_used == 0 {
                            "never".to_owned()
                        } else {
                            local_time(d.last_used)
                        },
                        if d.clock_offset_seen_at == 0 {
                            "-".to_owned()
                        } else {
                            format!("{:+} s", d.clock_offset_secs)
                        },
                    ]
                })
                .collect();
            out.push_str("\ndevices:\n");
            out.push_str(&table(
                &["NAME", "METHOD", "ADDED", "LAST USED", "CLOCK OFF"],
                &[
                    Align::Left,
                    Align::Left,
                    Align::Left,
                    Align::Left,
                    Align::Left,
                ],
                &rows,
            ));
        }
        if self.breakglass_unacknowledged > 0 {
            let flag = if self.user == "root" {
                String::new()
            } else {
                format!(" --user {}", self.user)
            };
            out.push_str(&format!(
                "\nwarning: break-glass codes used: {}, not acknowledged: run `otpgate breakglass ack{flag}`\n",
                self.breakglass_unacknowledged
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up() {
        let rows = vec![
            vec![
                "alice".into(),
                "enrolled".into(),
                "10".into(),
                "last".into(),
            ],
            vec![
                "bartholomew".into(),
                "locked".into(),
                "3".into(),
                "x".into(),
            ],
        ];
        let t = table(
            &["USER", "STATE", "CODES", "NOTE"],
            &[Align::Left, Align::Left, Align::Right, Align::Left],
            &rows,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines,
            [
                "USER         STATE     CODES  NOTE",
                "alice        enrolled     10  last",
                "bartholomew  locked        3  x",
            ]
        );
        // Every column starts at the same offset on every line.
        for col in ["STATE", "NOTE"] {
            let at = lines[0].find(col).unwrap();
            for l in &lines[1..] {
                assert_ne!(l.as_bytes()[at - 1], b'x');
                assert_eq!(&l[at - 2..at], "  ");
            }
        }
    }

    #[test]
    fn table_pads_by_characters_not_bytes() {
        let rows = vec![vec!["é".into(), "x".into()], vec!["ab".into(), "y".into()]];
        let t = table(&["U", "V"], &[Align::Left, Align::Left], &rows);
        let lines: Vec<&str> = t.lines().collect();
        let pos = |l: &str, c: char| l.chars().position(|x| x == c).unwrap();
        assert_eq!(pos(lines[1], 'x'), pos(lines[2], 'y'));
    }

    #[test]
    fn no_trailing_blanks() {
        let rows = vec![vec!["a".into(), "".into()]];
        let t = table(&["USER", "ERROR"], &[Align::Left, Align::Left], &rows);
        assert!(t.lines().all(|l| !l.ends_with(' ')), "{t:?}");
    }

    #[test]
    fn relative_times() {
        assert_eq!(from_now(100, 100), "now");
        assert_eq!(from_now(130, 100), "in 30 s");
        assert_eq!(from_now(100 + 14 * 60, 100), "in 14 min");
        assert_eq!(from_now(100 + 2 * 3600, 100), "in 2 h");
    }

    #[test]
    fn status_block_aligns_values() {
        let s = Status {
            user: "alice".into(),
            enrolled: true,
            pending: false,
            method: "totp".into(),
            backup_codes_left: 9,
            locked: false,
            locked_until: 0,
            failures: 1,
            ..Status::default()
        };
        let text = s.text(0);
        let starts: Vec<usize> = text
            .lines()
            .map(|l| {
                l.find(':').unwrap() + 1 + l[l.find(':').unwrap() + 1..].find(|c| c != ' ').unwrap()
            })
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
        assert!(text.contains("backup codes left:  9"), "{text}");
    }

    #[test]
    fn history_is_a_table_with_dashes_for_nothing() {
        use otpgate_proto::codec::HistoryEntry;
        let text = history_text(
            "alice",
            &[
                HistoryEntry {
                    at: 1_800_000_000,
                    event: "failure".into(),
                    service: "sshd".into(),
                    rhost: "203.0.113.5\u{1b}[2J".into(),
                    tty: "ssh".into(),
                    detail: String::new(),
                },
                HistoryEntry {
                    at: 1_800_000_060,
                    event: "success".into(),
                    detail: "totp".into(),
                    ..HistoryEntry::default()
                },
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("when"), "{text}");
        assert!(
            lines[1].contains("failure") && lines[1].contains("203.0.113.5[2J"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            lines[2].contains("success") && lines[2].ends_with("totp"),
            "{text}"
        );
        assert_eq!(lines[1].find("failure"), lines[2].find("success"), "{text}");
        assert_eq!(history_text("bob", &[]), "bob: no events yet\n");
    }

    #[test]
    fn the_app_clock_line_says_how_far_off_and_which_way() {
        let s = Status {
            user: "alice".into(),
            enrolled: true,
            clock_offset_secs: -210,
            clock_offset_seen_at: 1_800_000_000,
            ..Status::default()
        };
        let text = s.text(0);
        let line = text.lines().find(|l| l.starts_with("app clock:")).unwrap();
        assert!(line.contains("about 4 min slow (seen "), "{text}");
        let s = Status {
            clock_offset_secs: 90,
            ..s
        };
        assert!(s.text(0).contains("about 90 s fast"), "{}", s.text(0));
    }

    #[test]
    fn break_glass_lines_only_when_there_is_something_to_say() {
        let s = Status {
            user: "root".into(),
            enrolled: true,
            method: "totp".into(),
            backup_codes_left: 10,
            ..Status::default()
        };
        assert!(!s.text(0).contains("break-glass"), "{}", s.text(0));
        assert!(!s.text(0).contains("app clock"), "{}", s.text(0));
        let s = Status {
            breakglass_codes_left: 4,
            breakglass_unacknowledged: 1,
            ..s
        };
        let text = s.text(0);
        assert!(text.contains("\nbreak-glass codes:  4 left\n"), "{text}");
        assert!(
            text.ends_with(
                "\nwarning: break-glass codes used: 1, not acknowledged: run `otpgate breakglass ack`\n"
            ),
            "{text}"
        );
        // Same column as the other values.
        let col = |l: &str| l.find("4 left").or(l.find("10"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            col(lines.iter().find(|l| l.starts_with("backup")).unwrap()),
            col(lines.iter().find(|l| l.starts_with("break-glass")).unwrap())
        );
        let alice = Status {
            user: "alice".into(),
            ..s
        };
        assert!(alice
            .text(0)
            .contains("run `otpgate breakglass ack --user alice`"));
    }
}
