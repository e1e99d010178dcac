//! TOTP through totp-rs, and the code normalisation shared by every check.
//!
//! totp-rs computes and compares the codes (its token comparison is
//! constant time); what is ours is which step matched, so replay protection
//! can refuse any step not newer than the last one accepted.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use totp_rs::{Algorithm, Builder, Secret};
use zeroize::Zeroizing;

use otpgate_proto::MAX_CODE_LEN;

/// The longest secret `[totp] secret_bytes` may ask for.
pub const MAX_SECRET_LEN: usize = 64;

/// How far off an authenticator's clock is looked for after a wrong code.
pub const DRIFT_REACH_SECS: u64 = 3600;

pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "SHA1" => Some(Algorithm::SHA1),
        "SHA256" => Some(Algorithm::SHA256),
        "SHA512" => Some(Algorithm::SHA512),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub algorithm: Algorithm,
    pub digits: usize,
    pub period: u64,
}

/// The time step matched by `code` within `window` steps of `now`, if any.
pub fn matched_step(
    secret: &[u8],
    params: Params,
    window: u64,
    code: &str,
    now: u64,
) -> Option<u64> {
    if params.period == 0 || !(6..=8).contains(&params.digits) {
        return None;
    }
    // build_noncompliant: imported google-authenticator secrets are 80-bit,
    // below totp-rs's RFC check; lengths and digits are validated by us.
    let totp = Builder::new()
        .with_algorithm(params.algorithm)
        .with_digits(params.digits as u8)
        .with_step_duration(params.period)
        .with_skew(window.min(u16::MAX as u64) as u16)
        .with_secret(Secret::from(secret.to_vec()))
        .build_noncompliant();
    totp.check(code, now)
}

/// After a wrong code: the step, within `reach_secs` of `now` but outside
/// `window`, that `code` is the code of, as an offset from now's step (+:
/// the authenticator's clock is fast). At most 2 × reach / period + 1
/// HMACs. The caller never accepts it: it only explains.
pub fn drift(
    secret: &[u8],
    params: Params,
    window: u64,
    code: &str,
    now: u64,
    reach_secs: u64,
) -> Option<i64> {
    if params.period == 0 {
        return None;
    }
    let reach = reach_secs / params.period;
    let step = matched_step(secret, params, reach, code, now)?;
    let k = i64::try_from(step).ok()? - i64::try_from(now / params.period).ok()?;
    (k.unsigned_abs() > window).then_some(k)
}

/// The secret in base32 without padding, as authenticator apps want it.
pub fn base32(secret: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(Secret::from(secret.to_vec()).to_base32())
}

/// Characters left unescaped in the otpauth label and parameters.
const URI_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// The Key Uri Format (`otpauth://totp/ISSUER:ACCOUNT?secret=…`), with
/// every parameter spelled out even where it is the default, so apps that
/// honour them and apps that assume defaults agree.
pub fn otpauth_uri(
    issuer: &str,
    account: &str,
    secret_b32: &str,
    algorithm_name: &str,
    digits: usize,
    period: u64,
) -> Zeroizing<String> {
    let issuer = utf8_percent_encode(issuer, URI_SET).to_string();
    let account = utf8_percent_encode(account, URI_SET).to_string();
    Zeroizing::new(format!(
        "otpauth://totp/{issuer}:{account}?secret={secret_b32}&issuer={issuer}&algorithm={algorithm_name}&digits={digits}&period={period}"
    ))
}

/// What a typed code can be, after normalisation.
///
/// Normalisation: inputs longer than `MAX_CODE_LEN` bytes are nothing;
/// ASCII spaces, tabs and dashes are dropped (`123 456`, `k7f2-9qxm-4t`);
/// letters are lower-cased and Crockford's look-alikes mapped (`i`,`l` → `1`,
/// `o` → `0`). Only ASCII digits count as digits: other scripts' digits are
/// not codes. A string of exactly `digits` digits is a TOTP candidate; any
/// 8–16 character alphanumeric string may be a backup code (imported
/// google-authenticator scratch codes are 8 digits).
#[derive(Debug, PartialEq, Eq)]
pub struct Candidate {
    pub totp: Option<Zeroizing<String>>,
    pub backup: Option<Zeroizing<String>>,
}

pub fn normalise(raw: &str, digits: usize) -> Candidate {
    let none = Candidate {
        totp: None,
        backup: None,
    };
    if raw.len() > MAX_CODE_LEN {
        return none;
    }
    let mut s = Zeroizing::new(String::with_capacity(raw.len()));
    for c in raw.chars() {
        match c {
            ' ' | '\t' | '-' => {}
            'i' | 'I' | 'l' | 'L' => s.push('1'),
            'o' | 'O' => s.push('0'),
            c if c.is_ascii_alphanumeric() => s.push(c.to_ascii_lowercase()),
            _ => return none,
        }
    }
    let all_digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // Only digits typed as digits make a TOTP code: "l23456" is not "123456".
    let raw_digits = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '-'))
        .all(|c| c.is_ascii_digit());
    let totp = (all_digits && raw_digits && s.len() == digits).then(|| s.clone());
    let backup = (8..=16).contains(&s.len()).then(|| s.clone());
    Candidate { totp, backup }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_vectors_match_step() {
        let p = Params {
            algorithm: Algorithm::SHA1,
            digits: 8,
            period: 30,
        };
        assert_eq!(matched_step(RFC_SECRET, p, 0, "94287082", 59), Some(1));
        assert_eq!(
            matched_step(RFC_SECRET, p, 0, "07081804", 1111111109),
            Some(1111111109 / 30)
        );
        assert_eq!(matched_step(RFC_SECRET, p, 0, "94287083", 59), None);
        // One step late is accepted with window 1, not with window 0.
        assert_eq!(matched_step(RFC_SECRET, p, 1, "94287082", 89), Some(1));
        assert_eq!(matched_step(RFC_SECRET, p, 0, "94287082", 89), None);
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            normalise("123 456", 6).totp.as_deref().map(|s| s.as_str()),
            Some("123456")
        );
        assert_eq!(
            normalise("123-456", 6).totp.as_deref().map(|s| s.as_str()),
            Some("123456")
        );
        assert!(normalise("12345", 6).totp.is_none());
        assert!(normalise("l23456", 6).totp.is_none());
        assert!(normalise("١٢٣٤٥٦", 6).totp.is_none());
        assert!(normalise("12\u{0}3456", 6).totp.is_none());
        assert!(normalise(&"1".repeat(10_000), 6).backup.is_none());
        assert_eq!(
            normalise("K7F2-9QXM-4T", 6)
                .backup
                .as_deref()
                .map(|s| s.as_str()),
            Some("k7f29qxm4t")
        );
        assert_eq!(
            normalise("kOf2 9qxm 4l", 6)
                .backup
                .as_deref()
                .map(|s| s.as_str()),
            Some("k0f29qxm41")
        );
        assert_eq!(
            normalise("12345678", 6)
                .backup
                .as_deref()
                .map(|s| s.as_str()),
            Some("12345678")
        );
        assert!(normalise("", 6).totp.is_none() && normalise("", 6).backup.is_none());
    }

    #[test]
    fn uri_has_every_parameter() {
        let u = otpauth_uri("otpgate", "alice@web-01", "JBSWY3DPEHPK3PXP", "SHA1", 6, 30);
        assert_eq!(
            u.as_str(),
            "otpauth://totp/otpgate:alice@web-01?secret=JBSWY3DPEHPK3PXP&issuer=otpgate&algorithm=SHA1&digits=6&period=30"
        );
    }
}
