//! What `migrate-store` may do with one enrolled local record when the
//! fleet database already holds one under the same key.
//!
//! Records carry their last change in unix seconds only, so two records
//! changed in the same second cannot be ordered. Overwriting the wrong one
//! would bring back a used code or drop a lock, so a tie is refused unless
//! the two records are the same (a re-run of a migration that went
//! through).

use zeroize::Zeroizing;

use crate::record::UserRecord;

/// Why `local` must not replace `fleet`, or `None` when it may.
pub fn refusal(fleet: &UserRecord, local: &UserRecord) -> Option<String> {
    if fleet.name.is_some() && local.name.is_some() && fleet.name != local.name {
        return Some(format!(
            "the fleet's record of this uid belongs to {}: every host of a fleet must give a user the same uid",
            fleet.display_name()
        ));
    }
    if fleet.updated_at > local.updated_at {
        return Some(format!(
            "the fleet's record is newer (updated at {}, this host's at {})",
            fleet.updated_at, local.updated_at
        ));
    }
    if fleet.updated_at == local.updated_at
        && Zeroizing::new(fleet.to_bytes()) != Zeroizing::new(local.to_bytes())
    {
        return Some(format!(
            "the fleet's record and this host's both changed at {} and differ: \
             which is newer cannot be told, so the fleet's stays (`otpgate reset` the user to start again)",
            fleet.updated_at
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at: u64) -> UserRecord {
        let mut r = UserRecord::new("uid:4242", 100);
        r.name = Some("alice".into());
        r.updated_at = at;
        r
    }

    #[test]
    fn an_older_fleet_record_is_replaced() {
        assert_eq!(refusal(&rec(100), &rec(200)), None);
    }

    #[test]
    fn a_newer_fleet_record_is_kept() {
        let why = refusal(&rec(200), &rec(100)).unwrap();
        assert!(why.contains("newer"), "{why}");
    }

    #[test]
    fn the_same_record_again_moves_and_a_different_one_of_the_same_second_does_not() {
        assert_eq!(refusal(&rec(150), &rec(150)), None);
        let mut locked = rec(150);
        locked.failures = 3;
        locked.locked_until = 900;
        let why = refusal(&locked, &rec(150)).unwrap();
        assert!(why.contains("cannot be told"), "{why}");
        assert!(refusal(&rec(150), &locked).is_some());
    }

    #[test]
    fn another_name_under_the_same_uid_is_refused_whatever_the_times() {
        let mut bob = rec(100);
        bob.name = Some("bob".into());
        let why = refusal(&bob, &rec(200)).unwrap();
        assert!(why.contains("same uid"), "{why}");
    }
}
