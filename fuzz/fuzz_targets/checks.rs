//! The properties each fuzz target checks, shared with the test that
//! replays the committed corpus under plain `cargo test`
//! (tests/tests/attack_fuzz_corpus.rs), so every input kept in
//! fuzz/corpus/ — crashers included — is a regression test on stable Rust.
#![allow(dead_code)] // each fuzz target uses one of these

use std::path::Path;

use otpgated::config::Config;
use otpgated::import::{parse_google_authenticator_bytes, MIN_SECRET_BITS};
use otpgated::journal::{encode_entries, scan, Change};
use otpgated::record::UserRecord;
use otpgated::totp::normalise;

/// `Config::parse` on any text: never panics; what it accepts is in the
/// documented ranges; every error names the file and renders on one line.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/etc/otpgate/otpgate.toml")) {
        Ok(c) => {
            assert!((6..=8).contains(&c.totp.digits));
            assert!(c.totp.window <= 10);
            assert!((1..=100).contains(&c.lockout.max_failures));
            assert!(c.lockout.max_duration_secs >= c.lockout.duration_secs);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("/etc/otpgate/otpgate.toml"), "{msg}");
            assert!(!msg.contains('\n'), "{msg:?}");
        }
    }
}

/// `UserRecord::from_bytes` on any bytes: never panics, and a record it
/// accepts survives its own serialisation unchanged.
pub fn record(data: &[u8]) {
    // The seed records belong to "alice"; other names are refused early.
    if let Ok(rec) = UserRecord::from_bytes("alice", data) {
        let bytes = rec.to_bytes();
        let again = UserRecord::from_bytes("alice", &bytes).expect("a saved record loads");
        assert_eq!(
            bytes,
            again.to_bytes(),
            "the record changed on a round trip"
        );
    }
}

fn is_base32_secret(line: &str) -> bool {
    line.len() >= 16
        && line
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// The google-authenticator importer on any bytes: never panics, accepts
/// only what it documents, and no error message (nor the Debug form of a
/// parsed file) quotes the secret line or a scratch code.
pub fn import(data: &[u8]) {
    match parse_google_authenticator_bytes(data) {
        Ok(f) => {
            assert!(f.secret.len() * 8 >= MIN_SECRET_BITS);
            assert!((1..=60).contains(&f.step_secs));
            for c in &f.scratch_codes {
                assert!(
                    c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit()),
                    "{c:?}"
                );
            }
            let shown = format!("{f:?}");
            for c in &f.scratch_codes {
                assert!(!shown.contains(c.as_str()), "Debug shows a scratch code");
            }
        }
        Err(e) => {
            let msg = e.to_string();
            let Ok(text) = std::str::from_utf8(data) else {
                return;
            };
            for line in text.lines().map(str::trim) {
                let scratch = line.len() == 8
                    && line.bytes().all(|b| b.is_ascii_digit())
                    && line != "10000000"
                    && line != "99999999";
                if is_base32_secret(line) || scratch {
                    assert!(!msg.contains(line), "the error quotes the file: {msg}");
                }
            }
        }
    }
}

/// `totp::normalise` on any text (the first byte picks 6, 7 or 8 digits):
/// never panics, and what it yields has the documented shape and
/// normalises to itself.
pub fn normalise_code(data: &[u8]) {
    let Some((&d, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let digits = 6 + usize::from(d % 3);
    let c = normalise(raw, digits);
    if raw.len() > otpgate_proto::MAX_CODE_LEN {
        assert!(c.totp.is_none() && c.backup.is_none());
    }
    if let Some(t) = &c.totp {
        assert_eq!(t.len(), digits);
        assert!(t.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            normalise(t, digits).totp.as_deref().map(String::as_str),
            Some(t.as_str())
        );
    }
    if let Some(b) = &c.backup {
        assert!((8..=16).contains(&b.len()));
        assert!(b
            .bytes()
            .all(|x| x.is_ascii_digit() || (x.is_ascii_lowercase() && !b"ilo".contains(&x))));
        assert_eq!(
            normalise(b, digits).backup.as_deref().map(String::as_str),
            Some(b.as_str())
        );
    }
}

/// The journal reader on any bytes (the first 8 are the generation, the
/// rest the entries): never panics, takes only entries whose user is a
/// short UTF-8 name, and what it takes re-encodes to exactly the bytes it
/// was read from, so a replay applies what was written, nothing else.
pub fn journal(data: &[u8]) {
    let Some((generation, body)) = data.split_first_chunk::<8>() else {
        return;
    };
    let generation = u64::from_le_bytes(*generation);
    let changes = scan(body, generation);
    for c in &changes {
        let user = match c {
            Change::Save { user, .. } | Change::Delete { user } => user,
        };
        assert!(user.len() <= 255, "{} bytes of user name", user.len());
    }
    let again = encode_entries(&changes, generation);
    assert_eq!(
        &body[..again.len()],
        &again[..],
        "an entry read back differs"
    );
    assert_eq!(scan(&again, generation), changes);
}
