//! Reads the `~/.google_authenticator` file that google-authenticator-libpam
//! keeps per user, so that `otpgate import` can take a user over without a
//! new enrolment.
//!
//! The format, as the `google-authenticator` tool writes it and
//! `pam_google_authenticator.so` reads it:
//!
//! ```text
//! JBSWY3DPEHPK3PXP            <- line 1: the shared secret, base32
//! " RATE_LIMIT 3 30 1700000000 <- option lines start with `" `
//! " WINDOW_SIZE 17
//! " DISALLOW_REUSE 56666666
//! " TOTP_AUTH                  <- time-based; an HOTP file has `" HOTP_COUNTER n`
//! 12345678                     <- scratch codes, 8 digits each, one per line
//! ```
//!
//! The parser is strict: anything it does not recognise is refused with the
//! line number, because guessing at a damaged file could import the wrong
//! secret. No error message ever contains the secret or a scratch code, nor
//! the text of the offending line (a damaged file may have a secret anywhere).

use std::fmt;

use zeroize::Zeroizing;

/// `pam_google_authenticator.so` refuses larger files; so do we.
pub const MAX_FILE_SIZE: usize = 64 * 1024;

/// Older `google-authenticator` tools wrote 80-bit secrets (16 base32
/// characters), current ones 128 bits (26); anything shorter is damaged.
pub const MIN_SECRET_BITS: usize = 80;

/// A parsed `~/.google_authenticator` file of the time-based kind.
pub struct GoogleAuthenticatorFile {
    /// The raw shared secret (decoded from base32).
    pub secret: Zeroizing<Vec<u8>>,
    /// `STEP_SIZE`, 1 to 60 seconds as libpam allows, or 30 when absent.
    pub step_secs: u64,
    /// `WINDOW_SIZE` (1 to 100) when present. In libpam this is the total
    /// number of codes accepted around now (the default, 3, is one step
    /// before and after: otpgate's `window = 1`); otpgate's `window` counts
    /// steps on each side, so `window_size / 2` translates it.
    pub window_size: Option<u32>,
    /// Whether `DISALLOW_REUSE` was set (otpgate always refuses reuse).
    pub disallow_reuse: bool,
    /// Unused scratch codes (8 digits each), duplicates removed, in file order.
    pub scratch_codes: Vec<Zeroizing<String>>,
}

impl fmt::Debug for GoogleAuthenticatorFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAuthenticatorFile")
            .field(
                "secret",
                &format_args!("<{} bits redacted>", self.secret.len() * 8),
            )
            .field("step_secs", &self.step_secs)
            .field("window_size", &self.window_size)
            .field("disallow_reuse", &self.disallow_reuse)
            .field(
                "scratch_codes",
                &format_args!("<{} redacted>", self.scratch_codes.len()),
            )
            .finish()
    }
}

/// Why a file was refused. One line each, never quoting the file's content
/// beyond an option's name.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes; a google-authenticator file is at most {MAX_FILE_SIZE}")]
    TooLarge { size: usize },
    #[error("the file is not text (it contains a NUL byte or is not UTF-8)")]
    NotText,
    #[error("line 1: no secret (the first line must be the base32 secret)")]
    NoSecret,
    #[error("line 1: the secret is not base32 (letters A-Z and digits 2-7)")]
    SecretNotBase32,
    #[error("line 1: the secret is only {bits} bits long; at least {MIN_SECRET_BITS} are needed")]
    SecretTooShort { bits: usize },
    #[error("HOTP (counter-based) files cannot be imported: otpgate does time-based codes only")]
    Hotp,
    #[error(
        "the file has both \" TOTP_AUTH and \" HOTP_COUNTER, so it is unclear which kind of \
         codes the user's app makes; fix the file or enrol the user anew"
    )]
    TotpAndHotp,
    #[error("no \" TOTP_AUTH line: this is not a time-based (TOTP) file")]
    NotTotp,
    /// The option's name is not shown: a secret on the wrong line would look
    /// just like one.
    #[error(
        "line {line}: unknown option (known: TOTP_AUTH, HOTP_COUNTER, STEP_SIZE, WINDOW_SIZE, \
         DISALLOW_REUSE, RATE_LIMIT, TIME_SKEW, RESETTING_TIME_SKEW)"
    )]
    UnknownOption { line: usize },
    #[error("line {line}: option {name} appears again (first on line {first})")]
    DuplicateOption {
        line: usize,
        name: &'static str,
        first: usize,
    },
    #[error("line {line}: {name} {reason}")]
    BadOption {
        line: usize,
        name: &'static str,
        reason: &'static str,
    },
    #[error("line {line}: a scratch code must be 8 digits, 10000000 to 99999999")]
    BadScratchCode { line: usize },
    #[error("line {line}: neither an option (\" NAME ...) nor an 8-digit scratch code")]
    BadLine { line: usize },
}

/// Like [`parse_google_authenticator`], for the file's bytes as read: the
/// size is checked before anything else is looked at.
pub fn parse_google_authenticator_bytes(
    bytes: &[u8],
) -> Result<GoogleAuthenticatorFile, ImportError> {
    if bytes.len() > MAX_FILE_SIZE {
        return Err(ImportError::TooLarge { size: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ImportError::NotText)?;
    parse_google_authenticator(text)
}

/// Parses the content of a `~/.google_authenticator` file.
pub fn parse_google_authenticator(text: &str) -> Result<GoogleAuthenticatorFile, ImportError> {
    if text.len() > MAX_FILE_SIZE {
        return Err(ImportError::TooLarge { size: text.len() });
    }
    if text.contains('\0') {
        return Err(ImportError::NotText);
    }
    if text.trim().is_empty() {
        return Err(ImportError::Empty);
    }
    // `lines()` also drops the '\r' of CRLF endings.
    let mut lines = text.lines();
    let secret = decode_secret(lines.next().unwrap_or(""))?;

    let mut options = Options::default();
    let mut scratch_codes: Vec<Zeroizing<String>> = Vec::new();
    for (index, raw) in lines.enumerate() {
        let line = index + 2;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('"') {
            options.read(line, rest)?;
        } else if trimmed.bytes().all(|b| b.is_ascii_digit()) {
            if trimmed.len() != 8 || trimmed.starts_with('0') {
                return Err(ImportError::BadScratchCode { line });
            }
            // A code listed twice would otherwise be usable twice.
            if !scratch_codes.iter().any(|c| c.as_str() == trimmed) {
                scratch_codes.push(Zeroizing::new(trimmed.to_owned()));
            }
        } else {
            return Err(ImportError::BadLine { line });
        }
    }

    match (options.seen(Opt::TotpAuth), options.seen(Opt::HotpCounter)) {
        (true, false) => {}
        (true, true) => return Err(ImportError::TotpAndHotp),
        (false, true) => return Err(ImportError::Hotp),
        (false, false) => return Err(ImportError::NotTotp),
    }

    Ok(GoogleAuthenticatorFile {
        secret,
        step_secs: options.step_secs.unwrap_or(30),
        window_size: options.window_size,
        disallow_reuse: options.seen(Opt::DisallowReuse),
        scratch_codes,
    })
}

fn decode_secret(first_line: &str) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    // Upper case, no white space, no trailing '=' padding: the only form the
    // decoder (RFC 4648 alphabet, unpadded) takes.
    let mut normalised = Zeroizing::new(String::with_capacity(first_line.len()));
    normalised.extend(
        first_line
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase()),
    );
    let unpadded_len = normalised.trim_end_matches('=').len();
    normalised.truncate(unpadded_len);
    if normalised.is_empty() {
        return Err(ImportError::NoSecret);
    }
    if normalised.starts_with('"') {
        return Err(ImportError::NoSecret);
    }
    if !normalised
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    {
        return Err(ImportError::SecretNotBase32);
    }
    // 1, 3 or 6 characters past a whole 8-character group encode no whole
    // byte: no encoder writes that, so the line is damaged.
    if matches!(normalised.len() % 8, 1 | 3 | 6) {
        return Err(ImportError::SecretNotBase32);
    }
    let bytes = base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        normalised.as_str(),
    )
    .map(Zeroizing::new)
    .ok_or(ImportError::SecretNotBase32)?;
    if bytes.len() * 8 < MIN_SECRET_BITS {
        return Err(ImportError::SecretTooShort {
            bits: bytes.len() * 8,
        });
    }
    Ok(bytes)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    TotpAuth,
    HotpCounter,
    StepSize,
    WindowSize,
    DisallowReuse,
    RateLimit,
    TimeSkew,
    ResettingTimeSkew,
}

/// Every option libpam reads or writes. `RATE_LIMIT`, `TIME_SKEW` and
/// `RESETTING_TIME_SKEW` are libpam's own bookkeeping (otpgate has its own
/// lockout and window); they are checked for form and otherwise dropped.
const OPTIONS: &[(&str, Opt)] = &[
    ("TOTP_AUTH", Opt::TotpAuth),
    ("HOTP_COUNTER", Opt::HotpCounter),
    ("STEP_SIZE", Opt::StepSize),
    ("WINDOW_SIZE", Opt::WindowSize),
    ("DISALLOW_REUSE", Opt::DisallowReuse),
    ("RATE_LIMIT", Opt::RateLimit),
    ("TIME_SKEW", Opt::TimeSkew),
    ("RESETTING_TIME_SKEW", Opt::ResettingTimeSkew),
];

#[derive(Default)]
struct Options {
    /// Each option seen, with its line.
    seen: Vec<(Opt, usize)>,
    step_secs: Option<u64>,
    window_size: Option<u32>,
}

impl Options {
    fn seen(&self, opt: Opt) -> bool {
        self.seen.iter().any(|(o, _)| *o == opt)
    }

    /// `rest` is an option line after its leading `"`.
    fn read(&mut self, line: usize, rest: &str) -> Result<(), ImportError> {
        let mut words = rest.split_ascii_whitespace();
        let Some(name_in_file) = words.next() else {
            return Err(ImportError::BadLine { line });
        };
        let Some(&(name, opt)) = OPTIONS.iter().find(|(n, _)| *n == name_in_file) else {
            return Err(ImportError::UnknownOption { line });
        };
        if let Some(&(_, first)) = self.seen.iter().find(|(o, _)| *o == opt) {
            return Err(ImportError::DuplicateOption { line, name, first });
        }
        self.seen.push((opt, line));
        let args: Vec<&str> = words.collect();
        let bad = |reason| Err(ImportError::BadOption { line, name, reason });
        match opt {
            Opt::TotpAuth => {
                if !args.is_empty() {
                    return bad("takes no value");
                }
            }
            Opt::HotpCounter => {
                if args.len() != 1 || number::<u64>(args[0]).is_none() {
                    return bad("needs one counter value");
                }
            }
            Opt::StepSize => match args.as_slice() {
                [v] => match number::<u64>(v) {
                    Some(s) if (1..=60).contains(&s) => self.step_secs = Some(s),
                    _ => return bad("must be a number of seconds from 1 to 60"),
                },
                _ => return bad("must be a number of seconds from 1 to 60"),
            },
            Opt::WindowSize => match args.as_slice() {
                [v] => match number::<u32>(v) {
                    Some(w) if (1..=100).contains(&w) => self.window_size = Some(w),
                    _ => return bad("must be a number from 1 to 100"),
                },
                _ => return bad("must be a number from 1 to 100"),
            },
            Opt::DisallowReuse => {
                // Followed by the time steps already used, if any.
                if !args.iter().all(|a| number::<u64>(a).is_some()) {
                    return bad("may only be followed by time-step numbers");
                }
            }
            Opt::RateLimit => {
                let ok = args.len() >= 2
                    && number::<u32>(args[0]).is_some_and(|n| (1..=100).contains(&n))
                    && number::<u32>(args[1]).is_some_and(|n| (1..=3600).contains(&n))
                    && args[2..].iter().all(|a| number::<u64>(a).is_some());
                if !ok {
                    return bad("must be ATTEMPTS (1-100) SECONDS (1-3600) then timestamps");
                }
            }
            Opt::TimeSkew => {
                if args.len() != 1 || signed(args[0]).is_none() {
                    return bad("needs one whole number of steps");
                }
            }
            Opt::ResettingTimeSkew => {
                // Entries like `56666666+2` or `56666667-1`.
                let ok = args.iter().all(|a| {
                    a.find(['+', '-']).is_some_and(|i| {
                        number::<u64>(&a[..i]).is_some() && number::<u64>(&a[i + 1..]).is_some()
                    })
                });
                if !ok {
                    return bad("may only be followed by STEP+SKEW entries");
                }
            }
        }
        Ok(())
    }
}

/// Decimal digits only (no sign, no blanks), as libpam writes them.
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn signed(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(digits) => number::<i64>(digits).map(|n| -n),
        None => number::<i64>(s.strip_prefix('+').unwrap_or(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 16 base32 characters = 80 bits, as older `google-authenticator` tools wrote.
    const SECRET_B32: &str = "JBSWY3DPEHPK3PXP";
    const SECRET_BYTES: &[u8] = b"Hello!\xde\xad\xbe\xef";

    /// A file as `google-authenticator -t -d -f -r 3 -R 30 -w 17` leaves it
    /// after a few logins through the PAM module.
    const TOTP_FILE: &str = "JBSWY3DPEHPK3PXP\n\
\" RATE_LIMIT 3 30 1700000000 1700000012\n\
\" WINDOW_SIZE 17\n\
\" DISALLOW_REUSE 56666666 56666667\n\
\" TOTP_AUTH\n\
\" STEP_SIZE 30\n\
\" TIME_SKEW 1\n\
\" RESETTING_TIME_SKEW 56666660+1 56666661+1\n\
38173640\n\
89244215\n\
11803262\n\
71449372\n\
52390127\n";

    fn with_line(file: &str, line: &str) -> String {
        format!("{file}{line}\n")
    }

    fn refuse(text: &str) -> ImportError {
        match parse_google_authenticator(text) {
            Ok(f) => panic!("accepted {text:?} as {f:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{msg:?}");
                assert!(!msg.contains(SECRET_B32), "secret in {msg:?}");
                assert!(!msg.contains("38173640"), "scratch code in {msg:?}");
                e
            }
        }
    }

    #[test]
    fn a_totp_file_with_every_option() {
        let f = parse_google_authenticator(TOTP_FILE).unwrap();
        assert_eq!(f.secret.as_slice(), SECRET_BYTES);
        assert_eq!(f.step_secs, 30);
        assert_eq!(f.window_size, Some(17));
        assert!(f.disallow_reuse);
        let codes: Vec<&str> = f.scratch_codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            codes,
            ["38173640", "89244215", "11803262", "71449372", "52390127"]
        );
    }

    /// The layout `google-authenticator -t -d -f -r 3 -R 30 -w 17` (version
    /// 20191231, Debian 12) writes, with a made-up 128-bit secret and codes.
    #[test]
    fn a_file_as_the_current_tool_writes_it() {
        let text = "GEZDGNBVGY3TQOJQGEZDGNBVGY\n\
\" RATE_LIMIT 3 30\n\
\" WINDOW_SIZE 17\n\
\" DISALLOW_REUSE\n\
\" TOTP_AUTH\n\
40162372\n\
95817046\n\
27450190\n\
63098241\n\
18829537\n";
        let f = parse_google_authenticator(text).unwrap();
        assert_eq!(f.secret.as_slice(), b"1234567890123456");
        assert_eq!(f.step_secs, 30);
        assert_eq!(f.window_size, Some(17));
        assert!(f.disallow_reuse);
        assert_eq!(f.scratch_codes.len(), 5);
        assert_eq!(f.scratch_codes[4].as_str(), "18829537");
    }

    #[test]
    fn the_secret_decodes_like_totp_rs_does() {
        let f = parse_google_authenticator(TOTP_FILE).unwrap();
        let theirs = totp_rs::Secret::try_from_base32(SECRET_B32).unwrap();
        assert_eq!(f.secret.as_slice(), theirs.as_bytes());
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let f = parse_google_authenticator("JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n").unwrap();
        assert_eq!(f.step_secs, 30);
        assert_eq!(f.window_size, None);
        assert!(!f.disallow_reuse);
        assert!(f.scratch_codes.is_empty());
        // A DISALLOW_REUSE fresh from the tool has no steps yet; no final
        // newline, CRLF endings and blank lines are all fine.
        let f = parse_google_authenticator(
            "JBSWY3DPEHPK3PXP\r\n\" DISALLOW_REUSE\r\n\r\n\" TOTP_AUTH\r\n\" STEP_SIZE 60\r\n12345678",
        )
        .unwrap();
        assert!(f.disallow_reuse);
        assert_eq!(f.step_secs, 60);
        assert_eq!(f.scratch_codes.len(), 1);
    }

    #[test]
    fn the_secret_is_normalised() {
        for variant in [
            "jbswy3dpehpk3pxp",
            "JBSW Y3DP EHPK 3PXP",
            "  jbsw y3dp\tehpk 3pxp  ",
            "JBSWY3DPEHPK3PXP======",
        ] {
            let f = parse_google_authenticator(&format!("{variant}\n\" TOTP_AUTH\n")).unwrap();
            assert_eq!(f.secret.as_slice(), SECRET_BYTES, "{variant:?}");
        }
        // Longer secrets (160 bits, 32 characters) are fine too.
        let f =
            parse_google_authenticator("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n").unwrap();
        assert_eq!(f.secret.as_slice(), b"12345678901234567890");
    }

    #[test]
    fn hotp_files_are_refused_with_the_reason() {
        let e = refuse("JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n38173640\n");
        assert_eq!(e, ImportError::Hotp);
        assert_eq!(
            e.to_string(),
            "HOTP (counter-based) files cannot be imported: otpgate does time-based codes only"
        );
        assert_eq!(
            refuse("JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 4\n\" TOTP_AUTH\n"),
            ImportError::TotpAndHotp
        );
        assert_eq!(refuse("JBSWY3DPEHPK3PXP\n38173640\n"), ImportError::NotTotp);
    }

    #[test]
    fn damaged_files_are_refused_with_line_and_reason() {
        assert_eq!(refuse(""), ImportError::Empty);
        assert_eq!(refuse("\n\n  \n"), ImportError::Empty);
        assert_eq!(refuse("\n\" TOTP_AUTH\n"), ImportError::NoSecret);
        assert_eq!(refuse("\" TOTP_AUTH\n"), ImportError::NoSecret);
        assert_eq!(
            refuse("JBSWY3DPEHPK3PX1\n\" TOTP_AUTH\n"),
            ImportError::SecretNotBase32
        );
        assert_eq!(
            refuse("JBSWY3DPEHPK3PXP8\n\" TOTP_AUTH\n"),
            ImportError::SecretNotBase32
        );
        assert_eq!(
            refuse("JBSW=Y3DPEHPK3PXP\n\" TOTP_AUTH\n"),
            ImportError::SecretNotBase32
        );
        // 17 characters: a dangling character that encodes no whole byte.
        assert_eq!(
            refuse("JBSWY3DPEHPK3PXPA\n\" TOTP_AUTH\n"),
            ImportError::SecretNotBase32
        );
        assert_eq!(
            refuse("JBSWY3DPEHPK3PX\n\" TOTP_AUTH\n"),
            ImportError::SecretTooShort { bits: 72 }
        );
        assert_eq!(
            refuse("JBSWY3DP\n\" TOTP_AUTH\n").to_string(),
            "line 1: the secret is only 40 bits long; at least 80 are needed"
        );

        let e = refuse(&with_line(TOTP_FILE, "1234567"));
        assert_eq!(e, ImportError::BadScratchCode { line: 14 });
        assert_eq!(
            e.to_string(),
            "line 14: a scratch code must be 8 digits, 10000000 to 99999999"
        );
        assert_eq!(
            refuse(&with_line(TOTP_FILE, "123456789")),
            ImportError::BadScratchCode { line: 14 }
        );
        assert_eq!(
            refuse(&with_line(TOTP_FILE, "01234567")),
            ImportError::BadScratchCode { line: 14 }
        );
        assert_eq!(
            refuse(&with_line(TOTP_FILE, "1234 5678")),
            ImportError::BadLine { line: 14 }
        );

        let e = refuse(&with_line(TOTP_FILE, "\" FOO_BAR 1"));
        assert_eq!(e, ImportError::UnknownOption { line: 14 });
        assert!(e
            .to_string()
            .starts_with("line 14: unknown option (known: TOTP_AUTH, "));
        assert_eq!(
            refuse(&with_line(TOTP_FILE, "\" TOTP_AUTH")).to_string(),
            "line 14: option TOTP_AUTH appears again (first on line 5)"
        );
        assert_eq!(
            refuse(&with_line(TOTP_FILE, "\"")),
            ImportError::BadLine { line: 14 }
        );

        let bad_options = [
            ("\" STEP_SIZE 0", "STEP_SIZE"),
            ("\" STEP_SIZE 61", "STEP_SIZE"),
            ("\" STEP_SIZE thirty", "STEP_SIZE"),
            ("\" WINDOW_SIZE 0", "WINDOW_SIZE"),
            ("\" WINDOW_SIZE 101", "WINDOW_SIZE"),
            ("\" WINDOW_SIZE", "WINDOW_SIZE"),
            ("\" DISALLOW_REUSE 5666 x", "DISALLOW_REUSE"),
            ("\" RATE_LIMIT 3", "RATE_LIMIT"),
            ("\" RATE_LIMIT 0 30", "RATE_LIMIT"),
            ("\" TIME_SKEW", "TIME_SKEW"),
            ("\" TOTP_AUTH yes", "TOTP_AUTH"),
            ("\" HOTP_COUNTER", "HOTP_COUNTER"),
            ("\" RESETTING_TIME_SKEW 5666", "RESETTING_TIME_SKEW"),
        ];
        for (line, name) in bad_options {
            let text = format!("JBSWY3DPEHPK3PXP\n12345678\n{line}\n");
            match refuse(&text) {
                ImportError::BadOption {
                    line: 3, name: n, ..
                } if n == name => {}
                other => panic!("{line:?}: {other:?}"),
            }
        }
        assert!(refuse("JBSWY3DPEHPK3PXP\n\" STEP_SIZE 0\n")
            .to_string()
            .starts_with("line 2: STEP_SIZE must be"));
    }

    #[test]
    fn size_and_binary_limits() {
        let mut big = String::from(TOTP_FILE);
        while big.len() <= MAX_FILE_SIZE {
            big.push_str("\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n");
        }
        assert_eq!(refuse(&big), ImportError::TooLarge { size: big.len() });
        assert_eq!(
            parse_google_authenticator_bytes(big.as_bytes()).unwrap_err(),
            ImportError::TooLarge { size: big.len() }
        );
        // Exactly at the limit is still accepted.
        let mut exact = String::from(TOTP_FILE);
        exact.push_str(&"\n".repeat(MAX_FILE_SIZE - exact.len()));
        assert!(parse_google_authenticator(&exact).is_ok());

        assert_eq!(
            refuse("JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\0"),
            ImportError::NotText
        );
        assert_eq!(
            parse_google_authenticator_bytes(b"JBSWY3DPEHPK3PXP\n\xff\n").unwrap_err(),
            ImportError::NotText
        );
        assert!(parse_google_authenticator_bytes(TOTP_FILE.as_bytes()).is_ok());
    }

    #[test]
    fn duplicate_scratch_codes_count_once() {
        let f = parse_google_authenticator(&with_line(TOTP_FILE, "38173640")).unwrap();
        assert_eq!(f.scratch_codes.len(), 5);
    }

    #[test]
    fn no_message_or_debug_output_contains_the_secret() {
        // Every error above goes through `refuse`, which checks its message.
        // Debug of a parsed file hides the secret and the codes.
        let f = parse_google_authenticator(TOTP_FILE).unwrap();
        let d = format!("{f:?}");
        assert!(!d.contains(SECRET_B32), "{d}");
        assert!(!d.contains("38173640"), "{d}");
        assert!(!d.contains("72, 101, 108"), "{d}"); // "Hel" as bytes
        assert!(d.contains("<80 bits redacted>"), "{d}");
        assert!(d.contains("<5 redacted>"), "{d}");
        // A secret pushed onto an option line or a code line is not quoted.
        for text in [
            "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\nJBSWY3DPEHPK3PXP\n",
            "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" JBSWY3DPEHPK3PXP\n",
            "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH JBSWY3DPEHPK3PXP\n",
            "JBSWY3DPEHPK3PXP\n\" WINDOW_SIZE JBSWY3DPEHPK3PXP\n",
            "JBSWY3DPEHPK3PX!\n",
        ] {
            refuse(text);
        }
    }
}
