//! Backup codes: generated here, shown once, stored only as argon2id hashes.
//!
//! Cost design: a check must cost at most one argon2 evaluation however
//! many codes a user has. So the whole set shares one random salt, and each
//! stored value is argon2id(user ‖ code, salt, secret = master key). A typed
//! code is hashed once and compared, in constant time, against every stored
//! hash. A per-set salt is enough because codes are 50-bit random values,
//! not passwords a user reuses; the master key as argon2's secret input
//! means a stolen state directory without the key cannot be brute-forced
//! at all, and binding the user means a set copied onto another user fails.

use argon2::{Algorithm, Argon2, Params, Version};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::{random_bytes, CryptoError, MasterKey};
use crate::record::{BackupCodes, BackupHash};

/// Crockford's base32 alphabet, lower case: no i, l, o, u to misread.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 10 characters × 5 bits = 50 bits of entropy per code.
const CODE_CHARS: usize = 10;
const HASH_LEN: usize = 32;
const SALT_LEN: usize = 16;

/// OWASP's first argon2id choice: 46 MiB, 1 pass, 1 lane. Of its
/// equivalent settings this one is also the kindest to a long-running
/// daemon: glibc serves allocations above 32 MiB with their own mapping and
/// unmaps them when freed, while a smaller block (19 MiB at 2 passes) is
/// kept in the heap after its first free and the daemon's memory grew by
/// that much per thread that ever hashed.
const MEMORY_KIB: u32 = 46 * 1024;

fn hasher(key: &MasterKey) -> Argon2<'_> {
    let params = Params::new(MEMORY_KIB, 1, 1, Some(HASH_LEN)).expect("constant params are valid");
    Argon2::new_with_secret(key.as_bytes(), Algorithm::Argon2id, Version::V0x13, params)
        .expect("a 32-byte secret is within argon2's limit")
}

fn hash(key: &MasterKey, user: &str, salt: &[u8], code: &str) -> Result<BackupHash, CryptoError> {
    let mut input = Zeroizing::new(Vec::with_capacity(user.len() + 1 + code.len()));
    input.extend_from_slice(user.as_bytes());
    input.push(0);
    input.extend_from_slice(code.as_bytes());
    let mut out = vec![0u8; HASH_LEN];
    hasher(key)
        .hash_password_into(&input, salt, &mut out)
        .map_err(|_| CryptoError::Seal)?;
    Ok(BackupHash(out))
}

/// `count` fresh codes formatted for reading (`k7f2-9qxm-4t`).
pub fn generate(count: usize) -> Result<Vec<Zeroizing<String>>, CryptoError> {
    (0..count)
        .map(|_| {
            let raw = random_bytes::<CODE_CHARS>()?;
            let mut s = Zeroizing::new(String::with_capacity(CODE_CHARS + 2));
            for (i, b) in raw.iter().enumerate() {
                if i == 4 || i == 8 {
                    s.push('-');
                }
                // 256 is a multiple of 32: taking the low 5 bits is unbiased.
                s.push(ALPHABET[(b & 31) as usize] as char);
            }
            Ok(s)
        })
        .collect()
}

/// Hashes a set of codes (as typed or generated; normalised here).
pub fn hash_set(
    key: &MasterKey,
    user: &str,
    codes: &[Zeroizing<String>],
    now: u64,
) -> Result<BackupCodes, CryptoError> {
    let salt = random_bytes::<SALT_LEN>()?.to_vec();
    let hashes = codes
        .iter()
        .map(|c| {
            let n = crate::totp::normalise(c, 0)
                .backup
                .ok_or(CryptoError::Seal)?;
            hash(key, user, &salt, &n)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BackupCodes {
        salt,
        hashes,
        generated_at: now,
    })
}

/// Index of the stored hash matching the normalised `code`, if any. One
/// argon2 evaluation; every stored hash is compared.
pub fn find(
    key: &MasterKey,
    user: &str,
    set: &BackupCodes,
    code: &str,
) -> Result<Option<usize>, CryptoError> {
    if set.hashes.is_empty() {
        return Ok(None);
    }
    let h = hash(key, user, &set.salt, code)?;
    let mut found = None;
    for (i, stored) in set.hashes.iter().enumerate() {
        if bool::from(stored.0.ct_eq(&h.0)) {
            found = Some(i);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_look_right_and_differ() {
        let codes = generate(10).unwrap();
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 12);
            assert_eq!(&c[4..5], "-");
            assert_eq!(&c[9..10], "-");
            assert!(c
                .chars()
                .filter(|&c| c != '-')
                .all(|c| ALPHABET.contains(&(c as u8))));
        }
        let mut uniq: Vec<_> = codes.iter().map(|c| c.to_string()).collect();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 10);
    }

    #[test]
    fn find_matches_once_per_code_and_binds_user() {
        let key = MasterKey::generate().unwrap();
        let codes = generate(3).unwrap();
        let set = hash_set(&key, "alice", &codes, 1).unwrap();
        let typed = crate::totp::normalise(&codes[1].to_uppercase(), 6)
            .backup
            .unwrap();
        assert_eq!(find(&key, "alice", &set, &typed).unwrap(), Some(1));
        assert_eq!(find(&key, "bob", &set, &typed).unwrap(), None);
        assert_eq!(find(&key, "alice", &set, "0000000000").unwrap(), None);
    }
}
