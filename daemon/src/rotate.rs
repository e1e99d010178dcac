//! A new master key: every record's secrets re-sealed under it.
//!
//! TOTP secrets (enrolled or pending) are opened with the old key and
//! sealed with the new one, so users keep their authenticator apps. What
//! cannot be carried over is dropped and reported: backup codes, break-glass
//! codes and mailed codes exist only as hashes keyed with the old key, and
//! the codes
//! themselves are not kept anywhere. A secret that already opens under the
//! new key is left as it is, so a rotation that was cut short can simply
//! be run again.

use crate::crypto::{self, MasterKey, Sealed};
use crate::record::{Factor, UserRecord};

/// What rotating one record dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Unused backup codes (the user needs new ones: `otpgate backup-codes`).
    pub backup_codes: usize,
    /// A pending e-mail enrolment or a mailed login code (asked again).
    pub mailed_code: bool,
    /// Unused break-glass codes (root needs new ones:
    /// `otpgate breakglass generate`).
    pub breakglass_codes: usize,
}

/// `rec` with every secret sealed under `new`, or why it cannot be.
pub fn reseal(
    mut rec: UserRecord,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<(UserRecord, Dropped), String> {
    let bind = rec.bound_to().to_string();
    let mut dropped = Dropped::default();
    for f in &mut rec.factors {
        if let Factor::Totp(t) = f {
            t.secret = reseal_one(&t.secret, &bind, &t.id, old, new)?;
        }
    }
    if let Some(p) = &mut rec.pending {
        match &mut p.factor {
            Factor::Totp(t) => t.secret = reseal_one(&t.secret, &bind, &t.id, old, new)?,
            Factor::Email(_) => {
                rec.pending = None;
                dropped.mailed_code = true;
            }
        }
    }
    if rec.email_code.take().is_some() {
        dropped.mailed_code = true;
    }
    // Keyed with the old key; each device's own replay mark stays.
    rec.accepted.clear();
    if let Some(set) = rec.backup.take() {
        dropped.backup_codes = set.hashes.len();
    }
    if let Some(set) = rec.breakglass.take() {
        dropped.breakglass_codes = set.hashes.len();
    }
    Ok((rec, dropped))
}

fn reseal_one(
    sealed: &Sealed,
    bind: &str,
    id: &str,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<Sealed, String> {
    if crypto::open(new, bind, id, sealed).is_ok() {
        return Ok(sealed.clone());
    }
    let secret = crypto::open(old, bind, id, sealed)
        .map_err(|_| "a secret opens under neither the old key nor the new one".to_string())?;
    crypto::seal(new, bind, id, &secret).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BackupCodes, BackupHash, EmailCode, Pending, TotpFactor};

    fn totp(key: &MasterKey, user: &str, id: &str, secret: &[u8]) -> TotpFactor {
        TotpFactor {
            last_step: Some(42),
            ..TotpFactor::new(
                id,
                crypto::seal(key, user, id, secret).unwrap(),
                1,
                "enrolled",
            )
        }
    }

    #[test]
    fn secrets_move_to_the_new_key_and_hashes_are_dropped() {
        let (old, new) = (
            MasterKey::generate().unwrap(),
            MasterKey::generate().unwrap(),
        );
        let mut rec = UserRecord::new("uid:5", 1);
        rec.factors
            .push(Factor::Totp(totp(&old, "uid:5", "f1", b"first secret")));
        rec.pending = Some(Pending {
            factor: Factor::Totp(totp(&old, "uid:5", "f2", b"second secret")),
            started_by: 0,
            expires_at: 9,
            attempts: 0,
            code: None,
        });
        rec.backup = Some(BackupCodes {
            salt: vec![1; 16],
            hashes: vec![BackupHash(vec![2; 32]); 7],
            generated_at: 1,
        });
        rec.email_code = Some(EmailCode {
            hash: vec![3; 32],
            expires_at: 9,
            sent_at: 1,
        });
        rec.breakglass = Some(BackupCodes {
            salt: vec![4; 16],
            hashes: vec![BackupHash(vec![5; 32]); 3],
            generated_at: 1,
        });
        let (out, dropped) = reseal(rec, &old, &new).unwrap();
        assert_eq!(
            dropped,
            Dropped {
                backup_codes: 7,
                mailed_code: true,
                breakglass_codes: 3,
            }
        );
        assert!(out.backup.is_none() && out.email_code.is_none() && out.breakglass.is_none());
        let Factor::Totp(t) = &out.factors[0] else {
            panic!()
        };
        assert_eq!(t.last_step, Some(42), "replay marks stay");
        assert_eq!(
            *crypto::open(&new, "uid:5", "f1", &t.secret).unwrap(),
            b"first secret"
        );
        assert!(crypto::open(&old, "uid:5", "f1", &t.secret).is_err());
        let Factor::Totp(p) = &out.pending.as_ref().unwrap().factor else {
            panic!()
        };
        assert_eq!(
            *crypto::open(&new, "uid:5", "f2", &p.secret).unwrap(),
            b"second secret"
        );
        // Run again (a rotation cut short): nothing changes, nothing fails.
        let (again, dropped) = reseal(out.clone(), &old, &new).unwrap();
        assert_eq!(dropped, Dropped::default());
        let Factor::Totp(t2) = &again.factors[0] else {
            panic!()
        };
        assert_eq!(t2.secret, t.secret);
        // A record of a third key is refused, not guessed at.
        let other = MasterKey::generate().unwrap();
        assert!(reseal(again, &other, &MasterKey::generate().unwrap()).is_err());
    }
}
