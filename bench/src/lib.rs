//! The pieces of otpgate's benchmark: a PAM driver over the real libpam,
//! TOTP codes for the load generator, per-user replay state, latency
//! statistics and the batch edit of the system user database.
//!
//! `main.rs` is the orchestrator (`otpgate-bench run`) and its worker
//! processes; `benches/hot_path.rs` holds the criterion micro-benchmarks.

pub mod pam;
pub mod procfs;
pub mod stats;
pub mod userdb;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Every module under test uses RFC 6238's defaults: SHA1, 6 digits, 30 s.
pub const PERIOD: u64 = 30;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The generator's TOTP for one base32 secret (as otpgated hands it out).
pub fn totp(secret_b32: &str) -> Result<Totp, String> {
    let bytes = Secret::try_from_base32(secret_b32)
        .map_err(|e| format!("bad base32 secret: {e}"))?
        .to_vec();
    Ok(Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(PERIOD)
        .with_secret(Secret::from(bytes))
        .build_noncompliant())
}

/// The code of time step `step`.
pub fn code_at_step(t: &Totp, step: u64) -> String {
    t.generate(step * PERIOD).to_string()
}

/// A code that is not the code of `step` (nor, but for a one-in-a-million
/// collision, of the steps next to it): the right one shifted by half the
/// code space.
pub fn wrong_code(t: &Totp, step: u64) -> String {
    let right: u32 = code_at_step(t, step).parse().expect("six digits");
    format!("{:06}", (right + 500_000) % 1_000_000)
}

/// The secret in hex, as pam_oath's usersfile wants it.
pub fn secret_hex(secret_b32: &str) -> Result<String, String> {
    let bytes = Secret::try_from_base32(secret_b32)
        .map_err(|e| format!("bad base32 secret: {e}"))?
        .to_vec();
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a file only root can read (the generator's copies of secrets).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)
}

/// What the generator remembers about each user of one module between
/// rows: the last time step whose valid code it used (replay rules: a code
/// must be for a newer step), and wrong codes sent since the last success
/// (so no user reaches a lockout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub last_step: Vec<u64>,
    pub wrong: Vec<u32>,
}

/// A user gets no more wrong codes than this between two successes:
/// otpgate's `max_failures` is at most 100 and set to 100 for the bench.
pub const MAX_WRONG_PER_USER: u32 = 90;

impl State {
    pub fn new(users: usize) -> State {
        State {
            last_step: vec![0; users],
            wrong: vec![0; users],
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.last_step.len() * 16);
        for (l, w) in self.last_step.iter().zip(&self.wrong) {
            s.push_str(&format!("{l} {w}\n"));
        }
        s
    }

    pub fn parse(text: &str) -> Result<State, String> {
        let mut st = State::new(0);
        for (i, line) in text.lines().enumerate() {
            let mut it = line.split_whitespace();
            let (Some(l), Some(w), None) = (it.next(), it.next(), it.next()) else {
                return Err(format!("state line {}: {line:?}", i + 1));
            };
            st.last_step.push(
                l.parse()
                    .map_err(|e| format!("state line {}: {e}", i + 1))?,
            );
            st.wrong.push(
                w.parse()
                    .map_err(|e| format!("state line {}: {e}", i + 1))?,
            );
        }
        Ok(st)
    }

    pub fn load(path: &Path) -> Result<State, String> {
        State::parse(&fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?)
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        fs::write(path, self.to_text()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether user `i` may send the valid code of `step` (replay rules of
    /// all three modules: only a step newer than the last one used).
    pub fn valid_available(&self, i: usize, step: u64) -> bool {
        self.last_step[i] < step
    }

    pub fn wrong_available(&self, i: usize) -> bool {
        self.wrong[i] < MAX_WRONG_PER_USER
    }
}

/// The bench users: `PREFIX000000`, `PREFIX000001`, … (stable, sortable).
pub fn user_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc6238() {
        // RFC 6238's SHA1 secret "12345678901234567890", 8 digits there;
        // the last 6 digits of 94287082 at t = 59 (step 1).
        let b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let t = totp(b32).unwrap();
        assert_eq!(code_at_step(&t, 1), "287082");
        let w = wrong_code(&t, 1);
        assert_eq!(w.len(), 6);
        assert_ne!(w, "287082");
        assert_eq!(
            secret_hex(b32).unwrap(),
            "3132333435363738393031323334353637383930"
        );
    }

    #[test]
    fn state_round_trip_and_rules() {
        let mut s = State::new(3);
        s.last_step[1] = 57_000_000;
        s.wrong[2] = MAX_WRONG_PER_USER;
        let back = State::parse(&s.to_text()).unwrap();
        assert_eq!(back, s);
        assert!(back.valid_available(0, 57_000_000));
        assert!(!back.valid_available(1, 57_000_000));
        assert!(back.valid_available(1, 57_000_001));
        assert!(!back.wrong_available(2));
        assert!(State::parse("1 2 3\n").is_err());
    }

    #[test]
    fn user_names_sort() {
        assert_eq!(user_name("otpgbn", 7), "otpgbn000007");
        assert!(user_name("otpgbn", 99_999) < user_name("otpgbn", 100_000));
    }
}
