//! `otpgate policy explain`.

use otpgate_proto::codec::Explanation;

use super::Ctx;
use crate::args::{ExplainArgs, PolicyCommand};
use crate::error::{clean, CliError};
use crate::output::{self, yes_no};

pub async fn policy(ctx: &Ctx, command: &PolicyCommand) -> Result<(), CliError> {
    match command {
        PolicyCommand::Explain(a) => explain(ctx, a).await,
    }
}

async fn explain(ctx: &Ctx, args: &ExplainArgs) -> Result<(), CliError> {
    let x = ctx
        .client
        .explain_policy(&args.user, &args.service, args.rhost.as_deref())
        .await?;
    if ctx.json {
        output::print_json(&x)
    } else {
        output::print(&explanation_text(&x))
    }
}

/// `900` → `15 min`: remember windows are set in round minutes or hours.
fn duration(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The key/value block `otpgate policy explain` prints. Every text from the
/// daemon goes through `clean`: rule names and reasons quote the
/// configuration, and must not be able to move the cursor or forge lines.
pub fn explanation_text(x: &Explanation) -> String {
    let dash = |s: &str| {
        let c = clean(s);
        if c.is_empty() {
            "-".to_owned()
        } else {
            c
        }
    };
    let service = if x.rhost.is_empty() {
        dash(&x.service)
    } else {
        format!("{} (from {})", dash(&x.service), clean(&x.rhost))
    };
    let mut pairs = vec![
        ("user", dash(&x.user)),
        ("service", service),
        ("rule", dash(&x.rule)),
        ("mode", dash(&x.mode)),
        ("enrolled", yes_no(x.enrolled).to_owned()),
    ];
    if !x.enroll_by.is_empty() {
        pairs.push(("enroll by", clean(&x.enroll_by)));
    }
    if x.remember_secs > 0 {
        pairs.push((
            "remember",
            format!(
                "{} (same login session, same user, services of this rule)",
                duration(x.remember_secs)
            ),
        ));
    }
    pairs.push(("outcome", dash(&x.outcome)));
    let reasons: Vec<String> = x
        .reasons
        .iter()
        .map(|r| clean(r))
        .filter(|r| !r.is_empty())
        .collect();
    let keys = pairs.iter().map(|(k, _)| *k);
    let width = keys
        .chain(reasons.first().map(|_| "why"))
        .map(|k| k.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out: String = pairs
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect();
    for (i, r) in reasons.iter().enumerate() {
        let key = if i == 0 { "why:" } else { "" };
        out.push_str(&format!("{key:<width$} - {r}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Explanation {
        Explanation {
            user: "alice".into(),
            service: "sshd".into(),
            rhost: "10.1.2.3".into(),
            mode: "require".into(),
            rule: "rule 2 (/etc/otpgate/otpgate.toml line 14)".into(),
            reasons: vec![
                "rule 1 does not match: service sshd is not in [\"sudo\"]".into(),
                "rule 2 matches: group \"staff\" in [\"*\", \"!backup\"]".into(),
            ],
            enrolled: false,
            enroll_by: String::new(),
            remember_secs: 0,
            outcome: "refused: not enrolled (unless the PAM line says nullok)".into(),
        }
    }

    #[test]
    fn the_block_reads_as_documented() {
        assert_eq!(
            explanation_text(&alice()),
            "\
user:     alice
service:  sshd (from 10.1.2.3)
rule:     rule 2 (/etc/otpgate/otpgate.toml line 14)
mode:     require
enrolled: no
outcome:  refused: not enrolled (unless the PAM line says nullok)
why:      - rule 1 does not match: service sshd is not in [\"sudo\"]
          - rule 2 matches: group \"staff\" in [\"*\", \"!backup\"]
"
        );
    }

    #[test]
    fn enroll_by_and_remember_are_shown_when_set() {
        let x = Explanation {
            enroll_by: "2027-01-31".into(),
            remember_secs: 900,
            rhost: String::new(),
            reasons: Vec::new(),
            ..alice()
        };
        let text = explanation_text(&x);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "service:   sshd", "{text}");
        assert!(lines.contains(&"enroll by: 2027-01-31"), "{text}");
        assert!(
            lines.contains(
                &"remember:  15 min (same login session, same user, services of this rule)"
            ),
            "{text}"
        );
        assert!(!text.contains("why:"), "{text}");
        let enroll_by = lines
            .iter()
            .position(|l| l.starts_with("enroll by"))
            .unwrap();
        let outcome = lines.iter().position(|l| l.starts_with("outcome")).unwrap();
        assert!(enroll_by < outcome);
    }

    #[test]
    fn daemon_text_cannot_forge_lines() {
        let x = Explanation {
            rule: "rule 1\n\x1b[2Jmode:     skip".into(),
            reasons: vec!["a\nb".into(), "\n".into()],
            ..alice()
        };
        let text = explanation_text(&x);
        assert!(!text.contains('\x1b'), "{text:?}");
        assert_eq!(text.lines().filter(|l| l.starts_with("mode:")).count(), 1);
        assert!(text.contains("why:      - a b\n"), "{text}");
        assert_eq!(text.lines().count(), 7, "{text}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(90), "90 s");
        assert_eq!(duration(900), "15 min");
        assert_eq!(duration(7200), "2 h");
    }

    #[test]
    fn json_is_the_explanation_object() {
        let v = serde_json::to_value(alice()).unwrap();
        for key in [
            "user",
            "service",
            "rhost",
            "mode",
            "rule",
            "reasons",
            "enrolled",
            "enroll_by",
            "remember_secs",
            "outcome",
        ] {
            assert!(v.get(key).is_some(), "{key}: {v}");
        }
        assert_eq!(v["reasons"].as_array().unwrap().len(), 2);
    }
}
