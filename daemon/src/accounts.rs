//! Who a user name means. Every name a caller passes (PAM's user, the CLI's
//! `--user`) is resolved through the name service to one account, and state
//! is keyed by that account's uid, never by the spelling that was passed.
//!
//! Why the uid: on hosts where the name service matches names loosely (sssd
//! with Active Directory answers `ALICE` and `alice@example.com` for
//! `alice`), where two passwd names share a uid (`useradd -o`), or after a
//! rename (`usermod -l`), a record keyed by the string would be missed under
//! another spelling, and "not enrolled" plus `nullok` would let the password
//! alone through. The uid is what the kernel, sshd and sudo themselves treat
//! as the account, and it survives a rename. The cost: a uid that is freed
//! and handed to a new person carries the old enrolment with it, so an
//! administrator removing an account runs `otpgate reset` first (docs/security.md).

use nix::unistd::{Gid, Group, Uid, User};

/// One account of the name service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    /// The account's canonical name: what `getpwuid` answers for its uid.
    pub name: String,
}

/// The store key of a uid. `:` is never part of a user name the daemon
/// accepts, so a key can never be mistaken for a record filed under a name
/// by earlier versions.
pub fn key_of(uid: u32) -> String {
    format!("uid:{uid}")
}

/// The uid a store key names, if it is a uid key.
pub fn uid_of_key(key: &str) -> Option<u32> {
    let digits = key.strip_prefix("uid:")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Account {
    pub fn key(&self) -> String {
        key_of(self.uid)
    }
}

/// The name service, as the engine sees it (tests use a table).
pub trait Accounts: Send + Sync {
    /// The account `name` means. `Ok(None)`: the name service does not know
    /// it. `Err`: it could not be asked (the caller must refuse, not guess).
    fn lookup(&self, name: &str) -> Result<Option<Account>, String>;
    /// The canonical name of `uid`, if it has one.
    fn name_of(&self, uid: u32) -> Option<String>;
    /// The names of the account's groups, primary and supplementary, as
    /// for `id`. `Err`: the group database could not be asked.
    fn groups(&self, account: &Account) -> Result<Vec<String>, String>;
}

/// The group names of `user` (primary gid `gid`) by the group database.
pub fn groups_of(user: &str, gid: u32) -> Result<Vec<String>, String> {
    let c = std::ffi::CString::new(user).map_err(|e| e.to_string())?;
    let gids = nix::unistd::getgrouplist(&c, Gid::from_raw(gid)).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for g in gids {
        // A gid without a name matches no pattern; it is not an error.
        if let Some(group) = Group::from_gid(g).map_err(|e| e.to_string())? {
            if !names.contains(&group.name) {
                names.push(group.name);
            }
        }
    }
    Ok(names)
}

/// The host's name service (NSS: files, sssd, LDAP, ...).
pub struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn lookup(&self, name: &str) -> Result<Option<Account>, String> {
        let Some(user) = User::from_name(name).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let uid = user.uid.as_raw();
        // The name given may be an alias: the uid's own entry names it.
        let name = self.name_of(uid).unwrap_or(user.name);
        Ok(Some(Account { uid, name }))
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    }

    fn groups(&self, account: &Account) -> Result<Vec<String>, String> {
        let user = User::from_uid(Uid::from_raw(account.uid))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("uid {} is not in the user database", account.uid))?;
        groups_of(&user.name, user.gid.as_raw())
    }
}

/// A fixed table of accounts, for tests: `(name, uid)` pairs, the first
/// name of a uid being its canonical one.
pub struct TableAccounts(pub Vec<(String, u32)>);

impl Accounts for TableAccounts {
    fn lookup(&self, name: &str) -> Result<Option<Account>, String> {
        Ok(self
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, uid)| Account {
                uid,
                name: self.name_of(uid).expect("a listed uid has a name"),
            }))
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        self.0
            .iter()
            .find(|(_, u)| *u == uid)
            .map(|(n, _)| n.clone())
    }

    /// Each test account is alone in a group of its own name.
    fn groups(&self, account: &Account) -> Result<Vec<String>, String> {
        Ok(vec![account.name.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_look_like_names() {
        assert_eq!(key_of(1001), "uid:1001");
        assert_eq!(uid_of_key("uid:1001"), Some(1001));
        assert_eq!(uid_of_key("uid:0"), Some(0));
        for not_a_key in [
            "alice",
            "uid:",
            "uid:x1",
            "uid:-1",
            "uid:99999999999",
            "uid1001",
        ] {
            assert_eq!(uid_of_key(not_a_key), None, "{not_a_key}");
        }
        assert!(!otpgate_proto::valid_user_name(&key_of(1001)));
    }

    #[test]
    fn aliases_resolve_to_the_canonical_account() {
        let t = TableAccounts(vec![("alice".into(), 1001), ("ALICE".into(), 1001)]);
        let a = t.lookup("ALICE").unwrap().unwrap();
        assert_eq!(
            a,
            Account {
                uid: 1001,
                name: "alice".into()
            }
        );
        assert_eq!(t.lookup("bob").unwrap(), None);
    }

    #[test]
    fn the_system_resolves_root() {
        let root = SystemAccounts.lookup("root").unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert_eq!(SystemAccounts.lookup("no-such-user-otpgate").unwrap(), None);
    }
}
