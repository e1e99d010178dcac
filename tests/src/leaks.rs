//! What a leak looks like: every spelling of a TOTP secret worth searching
//! for, and the search. Shared by the leak tests of the local store
//! (`attack_leaks.rs`) and of the fleet's database (`fleet.rs`).

use std::process::Command;
use std::time::Duration;

use crate::{oathtool, Run};

/// (label, bytes) pairs: spellings of a secret, or places searched.
pub type Forms = Vec<(String, Vec<u8>)>;

/// Every spelling of a secret worth looking for: base32 (as shown, lower
/// case, grouped by 4 as the CLI shows it), the raw bytes, hex, base64
/// (standard, unpadded, URL-safe).
pub fn forms(secret_b32: &str) -> Forms {
    let v = oathtool(&["--totp", "-v", "-b", "-"], secret_b32);
    let hex = v
        .lines()
        .find_map(|l| l.strip_prefix("Hex secret: "))
        .expect("oathtool -v prints the hex secret")
        .trim()
        .to_string();
    let raw: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let b64 = coreutil("base64", &["-w0"], &raw);
    let b64url = coreutil("basenc", &["--base64url", "-w0"], &raw);
    let grouped: Vec<String> = secret_b32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let mut out = vec![
        ("base32".to_string(), secret_b32.as_bytes().to_vec()),
        (
            "base32 lower case".into(),
            secret_b32.to_lowercase().into_bytes(),
        ),
        ("base32 grouped".into(), grouped.join(" ").into_bytes()),
        ("raw bytes".into(), raw.clone()),
        ("hex".into(), hex.clone().into_bytes()),
        ("hex upper case".into(), hex.to_uppercase().into_bytes()),
        ("base64".into(), b64.clone().into_bytes()),
        (
            "base64 unpadded".into(),
            b64.trim_end_matches('=').as_bytes().to_vec(),
        ),
        (
            "base64url".into(),
            b64url.trim_end_matches('=').as_bytes().to_vec(),
        ),
    ];
    out.retain(|(_, b)| b.len() >= 10);
    out
}

fn coreutil(program: &str, args: &[&str], input: &[u8]) -> String {
    let out = Run::new(Command::new(program).args(args))
        .input(input)
        .within(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where each secret form was found in `haystacks` (label, bytes).
pub fn find_leaks(secrets: &[(String, Forms)], haystacks: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (whose, fs) in secrets {
        for (form, needle) in fs {
            for (place, hay) in haystacks {
                if contains(hay, needle) {
                    found.push(format!("{whose}'s secret ({form}) in {place}"));
                }
            }
        }
    }
    found
}
