//! Who may do what: the one table, checked in one place, from the caller's
//! credentials on the bus (never from an argument).
//!
//! | caller                    | Auth.*        | Manager.*     | Admin.* |
//! |---------------------------|---------------|---------------|---------|
//! | uid 0                     | any user      | any user      | yes     |
//! | member of admin_group     | its own user  | any user      | yes     |
//! | any other uid             | its own user  | its own user  | no      |
//!
//! Break-glass codes (`Admin.GenerateBreakglass`, `AcknowledgeBreakglass`)
//! are root's alone (`Interface::RootOnly`): they open the console to
//! whoever holds them, so not even the administrator group may mint them.
//!
//! The published access table (docs/protocol.md) gives administrators no Auth rights over *other* users;
//! an administrator's own screen locker still verifies its own codes, as
//! any user's does.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User};
use otpgate_proto::ServiceError;

use crate::accounts::Account;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Auth,
    Manager,
    Admin,
    /// Root's own methods (break-glass codes).
    RootOnly,
}

/// A caller as the bus vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// The passwd name of `uid`, if it has one.
    pub name: Option<String>,
    /// Member of `access.admin_group` (by the group database).
    pub admin: bool,
    /// The calling process, as the bus or the kernel vouches for it: its
    /// login session is what `remember_secs` keys on. `None` when unknown.
    pub pid: Option<u32>,
}

impl Caller {
    pub fn root() -> Caller {
        Caller {
            uid: 0,
            name: Some("root".into()),
            admin: false,
            pid: None,
        }
    }

    /// Resolves a uid to a caller through NSS. `admin_group` membership is
    /// the user's group list (primary and supplementary) in the group
    /// database, as for `id USER`.
    pub fn resolve(uid: u32, admin_group: &str) -> Caller {
        // Root may do everything whatever its groups: no NSS lookup on the
        // path of every login (the PAM module runs as root).
        if uid == 0 {
            return Caller::root();
        }
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        let admin = match (&user, Group::from_name(admin_group).ok().flatten()) {
            (Some(u), Some(g)) => {
                u.gid == g.gid
                    || CString::new(u.name.as_str())
                        .ok()
                        .and_then(|c| nix::unistd::getgrouplist(&c, u.gid).ok())
                        .is_some_and(|gids: Vec<Gid>| gids.contains(&g.gid))
            }
            _ => false,
        };
        Caller {
            uid,
            name: user.map(|u| u.name),
            admin,
            pid: None,
        }
    }

    pub fn with_pid(self, pid: Option<u32>) -> Caller {
        Caller { pid, ..self }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Root or a member of the admin group: manages others, needs no code.
    pub fn is_admin(&self) -> bool {
        self.is_root() || self.admin
    }

    /// By uid, not by name: any spelling of the caller's own account (an
    /// alias, another case) is the caller, and no other account is.
    fn is_self(&self, user: &Account) -> bool {
        self.uid == user.uid
    }
}

/// The table. `user` is the account the call is about, as the name service
/// resolved it (None for Admin calls that are about no one in particular).
pub fn check(
    caller: &Caller,
    iface: Interface,
    user: Option<&Account>,
) -> Result<(), ServiceError> {
    let allowed = match iface {
        Interface::Auth => caller.is_root() || user.is_some_and(|u| caller.is_self(u)),
        Interface::Manager => caller.is_admin() || user.is_some_and(|u| caller.is_self(u)),
        Interface::Admin => caller.is_admin(),
        Interface::RootOnly => caller.is_root(),
    };
    if allowed {
        return Ok(());
    }
    let what = match iface {
        Interface::Auth => "verify codes",
        Interface::Manager => "manage the second factor",
        Interface::Admin => "use administrator methods",
        Interface::RootOnly => "manage break-glass codes",
    };
    Err(ServiceError::AccessDenied(match (iface, user) {
        (Interface::RootOnly, _) => format!("uid {} may not {what}: root only", caller.uid),
        (Interface::Admin, _) | (_, None) => format!(
            "uid {} may not {what}: root or the administrator group only",
            caller.uid
        ),
        (_, Some(u)) => format!(
            "uid {} may not {what} of user {}: only its own",
            caller.uid, u.name
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, uid: u32, admin: bool) -> Caller {
        Caller {
            uid,
            name: Some(name.into()),
            admin,
            pid: None,
        }
    }

    fn account(name: &str) -> Account {
        let uid = match name {
            "ann" => 1000,
            "bob" => 1001,
            _ => 4242,
        };
        Account {
            uid,
            name: name.into(),
        }
    }

    #[test]
    fn the_table() {
        let root = Caller::root();
        let admin = user("ann", 1000, true);
        let bob = user("bob", 1001, false);
        use Interface::*;
        for (caller, iface, target, ok) in [
            (&root, Auth, Some("bob"), true),
            (&root, Manager, Some("bob"), true),
            (&root, Admin, None, true),
            (&admin, Auth, Some("bob"), false),
            (&admin, Auth, Some("ann"), true),
            (&admin, Manager, Some("bob"), true),
            (&admin, Admin, None, true),
            (&bob, Auth, Some("bob"), true),
            (&bob, Auth, Some("ann"), false),
            (&bob, Manager, Some("bob"), true),
            (&bob, Manager, Some("ann"), false),
            (&bob, Admin, None, false),
            (&bob, Admin, Some("bob"), false),
        ] {
            let target = target.map(account);
            assert_eq!(
                check(caller, iface, target.as_ref()).is_ok(),
                ok,
                "{caller:?} {iface:?} {target:?}"
            );
        }
        // Another spelling of bob's own account (same uid) is bob; a name
        // that happens to equal bob's is not, if it is another account.
        let alias = Account {
            uid: 1001,
            name: "BOB".into(),
        };
        assert!(check(&bob, Auth, Some(&alias)).is_ok());
        let namesake = Account {
            uid: 1002,
            name: "bob".into(),
        };
        assert!(check(&bob, Auth, Some(&namesake)).is_err());
        let nameless = Caller {
            uid: 4242,
            name: None,
            admin: false,
            pid: None,
        };
        assert!(check(&nameless, Auth, Some(&account("ann"))).is_err());
    }
}
