//! The master key and the AEAD that seals TOTP secrets at rest.
//!
//! Secrets are sealed with XChaCha20-Poly1305 under the 32-byte master key.
//! The associated data binds a sealed secret to its user and factor, so a
//! record copied onto another user (or a factor moved between records) fails
//! to open instead of quietly granting that user someone else's codes.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Versioned so that a later change of algorithm can be told apart on disk.
const AD_PREFIX: &[u8] = b"otpgate/secret/v1";
const RECORD_AD_PREFIX: &[u8] = b"otpgate/record/v1";

/// The 32-byte key that seals every secret. Never logged, never copied out.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

// Loading it from a file or a systemd credential is `keyfile`'s business.

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }

    /// A fresh random key (tests, and first start).
    pub fn generate() -> Result<MasterKey, getrandom::Error> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(k.as_mut())?;
        Ok(MasterKey(k))
    }

    /// A second owner of the same key (the fleet store seals whole records
    /// with it); zeroized on drop like the first.
    pub fn duplicate(&self) -> MasterKey {
        MasterKey(Zeroizing::new(*self.0))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// A sealed secret as stored: nonce and ciphertext, base64 in the record.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sealed {
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the sealed secret does not open under this key for this user (wrong key, tampered, or copied from another user)")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("the system's random source failed: {0}")]
    Random(String),
}

fn associated_data(user: &str, factor_id: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_PREFIX.len() + user.len() + factor_id.len() + 2);
    ad.extend_from_slice(AD_PREFIX);
    ad.push(0);
    ad.extend_from_slice(user.as_bytes());
    ad.push(0);
    ad.extend_from_slice(factor_id.as_bytes());
    ad
}

/// What a whole record is bound to when it is kept outside root's own
/// disk (the fleet database): its key, under its own prefix so a sealed
/// record can never pass for a sealed secret or the other way round.
fn record_data(record_key: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(RECORD_AD_PREFIX.len() + record_key.len() + 1);
    ad.extend_from_slice(RECORD_AD_PREFIX);
    ad.push(0);
    ad.extend_from_slice(record_key.as_bytes());
    ad
}

/// Seals a whole serialised record for `record_key`: nonce then ciphertext.
pub fn seal_record(
    key: &MasterKey,
    record_key: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
    let ad = record_data(record_key);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: bytes,
                aad: &ad,
            },
        )
        .map_err(|_| CryptoError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens what `seal_record` made for the same key; anything else (another
/// record's row, a tampered one, another fleet's key) fails.
pub fn open_record(
    key: &MasterKey,
    record_key: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN {
        return Err(CryptoError::Open);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Open)?;
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let ad = record_data(record_key);
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: &ad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Open)
}

pub fn seal(
    key: &MasterKey,
    user: &str,
    factor_id: &str,
    secret: &[u8],
) -> Result<Sealed, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
    let ad = associated_data(user, factor_id);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret,
                aad: &ad,
            },
        )
        .map_err(|_| CryptoError::Seal)?;
    Ok(Sealed {
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

pub fn open(
    key: &MasterKey,
    user: &str,
    factor_id: &str,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let nonce: [u8; NONCE_LEN] = sealed
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Open)?;
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let ad = associated_data(user, factor_id);
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &ad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Open)
}

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(b)
}

pub mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Encodes for display in errors and ids only (never secrets).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = MasterKey::generate().unwrap();
        let s = seal(&key, "alice", "f1", b"0123456789abcdefghij").unwrap();
        assert_eq!(
            &open(&key, "alice", "f1", &s).unwrap()[..],
            b"0123456789abcdefghij"
        );
        assert!(open(&key, "bob", "f1", &s).is_err(), "other user");
        assert!(open(&key, "alice", "f2", &s).is_err(), "other factor");
        let other = MasterKey::generate().unwrap();
        assert!(open(&other, "alice", "f1", &s).is_err(), "other key");
        let mut t = s.clone();
        t.ciphertext[0] ^= 1;
        assert!(open(&key, "alice", "f1", &t).is_err(), "tampered");
    }

    #[test]
    fn key_file_created_0400_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/master.key");
        let k1 = MasterKey::load_or_create(&p).unwrap();
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o400);
        assert_eq!(meta.len(), 32);
        let k2 = MasterKey::load_or_create(&p).unwrap();
        assert_eq!(k1.as_bytes(), k2.as_bytes());
    }

    #[test]
    fn key_file_refused_when_readable_or_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        fs::write(&p, [7u8; 32]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = MasterKey::load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 0400"), "{e}");
        fs::write(&p, [7u8; 31]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).unwrap();
        let e = MasterKey::load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("exactly 32 bytes"), "{e}");
    }
}
