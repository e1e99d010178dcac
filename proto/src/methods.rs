//! Every method of the three interfaces: its name and its argument and reply
//! signatures. The daemon's introspection is checked against this table by
//! an end-to-end test, and the calls the PAM module makes by hand are typed
//! from it (see [`Call`]), so a method renamed or re-typed on one side
//! cannot go unnoticed on the other.

use serde::de::DeserializeOwned;
use serde::Serialize;
use zbus::Type;

use crate::{Dict, OwnedDict, ADMIN_INTERFACE, AUTH_INTERFACE, MANAGER_INTERFACE};

/// One method as D-Bus sees it: `args` is the concatenated signature of the
/// in-arguments, `reply` that of the out-arguments (empty for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Spec {
    pub name: &'static str,
    pub args: &'static str,
    pub reply: &'static str,
}

const fn spec(name: &'static str, args: &'static str, reply: &'static str) -> Spec {
    Spec { name, args, reply }
}

pub const CHALLENGE: Spec = spec("Challenge", "sa{sv}", "sa{sv}");
pub const VERIFY: Spec = spec("Verify", "ssa{sv}", "sa{sv}");
pub const ACCOUNT: Spec = spec("Account", "sa{sv}", "sa{sv}");

pub const ENROLL: Spec = spec("Enroll", "sa{sv}", "a{sv}");
pub const CONFIRM: Spec = spec("Confirm", "ss", "as");
pub const STATUS: Spec = spec("Status", "s", "a{sv}");
pub const DISABLE: Spec = spec("Disable", "ss", "");
pub const REGENERATE_BACKUP_CODES: Spec = spec("RegenerateBackupCodes", "ss", "as");
pub const DISABLE_WITH_PASSWORD: Spec = spec("DisableWithPassword", "sss", "");
pub const REGENERATE_BACKUP_CODES_WITH_PASSWORD: Spec =
    spec("RegenerateBackupCodesWithPassword", "sss", "as");
pub const HISTORY: Spec = spec("History", "s", "aa{sv}");
pub const REMOVE_DEVICE: Spec = spec("RemoveDevice", "sss", "");
pub const REMOVE_DEVICE_WITH_PASSWORD: Spec = spec("RemoveDeviceWithPassword", "ssss", "");

pub const LIST_USERS: Spec = spec("ListUsers", "", "aa{sv}");
pub const UNLOCK: Spec = spec("Unlock", "s", "");
pub const RESET: Spec = spec("Reset", "s", "");
pub const STATS: Spec = spec("Stats", "", "a{sv}");
pub const IMPORT: Spec = spec("Import", "ss", "a{sv}");
pub const EXPLAIN_POLICY: Spec = spec("ExplainPolicy", "ssa{sv}", "a{sv}");
pub const GENERATE_BREAKGLASS: Spec = spec("GenerateBreakglass", "s", "as");
pub const ACKNOWLEDGE_BREAKGLASS: Spec = spec("AcknowledgeBreakglass", "s", "u");

pub const AUTH: &[Spec] = &[CHALLENGE, VERIFY, ACCOUNT];
pub const MANAGER: &[Spec] = &[
    ENROLL,
    CONFIRM,
    STATUS,
    DISABLE,
    REGENERATE_BACKUP_CODES,
    DISABLE_WITH_PASSWORD,
    REGENERATE_BACKUP_CODES_WITH_PASSWORD,
    HISTORY,
    REMOVE_DEVICE,
    REMOVE_DEVICE_WITH_PASSWORD,
];
pub const ADMIN: &[Spec] = &[
    LIST_USERS,
    UNLOCK,
    RESET,
    STATS,
    IMPORT,
    EXPLAIN_POLICY,
    GENERATE_BREAKGLASS,
    ACKNOWLEDGE_BREAKGLASS,
];

/// The whole object: each interface and its methods.
pub const INTERFACES: &[(&str, &[Spec])] = &[
    (AUTH_INTERFACE, AUTH),
    (MANAGER_INTERFACE, MANAGER),
    (ADMIN_INTERFACE, ADMIN),
];

/// A method called without a proxy (the PAM module must not spawn proxy
/// tasks): its table entry with the Rust types of its body and reply. A
/// unit test holds the types to the signatures in the table.
pub trait Call {
    const INTERFACE: &'static str;
    const SPEC: Spec;
    type Args<'a>: Serialize + Type;
    type Reply: DeserializeOwned + Type;
}

/// `Auth.Challenge(user, context) -> (state, info)`.
pub struct Challenge;

impl Call for Challenge {
    const INTERFACE: &'static str = AUTH_INTERFACE;
    const SPEC: Spec = CHALLENGE;
    type Args<'a> = (&'a str, Dict<'a>);
    type Reply = (String, OwnedDict);
}

/// `Auth.Verify(user, code, context) -> (result, info)`.
pub struct Verify;

impl Call for Verify {
    const INTERFACE: &'static str = AUTH_INTERFACE;
    const SPEC: Spec = VERIFY;
    type Args<'a> = (&'a str, &'a str, Dict<'a>);
    type Reply = (String, OwnedDict);
}

/// `Auth.Account(user, context) -> (state, info)`.
pub struct Account;

impl Call for Account {
    const INTERFACE: &'static str = AUTH_INTERFACE;
    const SPEC: Spec = ACCOUNT;
    type Args<'a> = (&'a str, Dict<'a>);
    type Reply = (String, OwnedDict);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature<T: Type>() -> String {
        T::SIGNATURE.to_string_no_parens()
    }

    fn check<C: Call>() {
        assert_eq!(
            signature::<C::Args<'static>>(),
            C::SPEC.args,
            "{}",
            C::SPEC.name
        );
        assert_eq!(signature::<C::Reply>(), C::SPEC.reply, "{}", C::SPEC.name);
        let listed = INTERFACES
            .iter()
            .find(|(name, _)| *name == C::INTERFACE)
            .map(|(_, methods)| methods.contains(&C::SPEC));
        assert_eq!(listed, Some(true), "{} is not in the table", C::SPEC.name);
    }

    #[test]
    fn typed_calls_match_the_table() {
        check::<Challenge>();
        check::<Verify>();
        check::<Account>();
    }

    #[test]
    fn names_are_unique_and_signatures_valid() {
        let mut names = std::collections::HashSet::new();
        for (iface, methods) in INTERFACES {
            for m in *methods {
                assert!(names.insert((iface, m.name)), "{iface}.{} twice", m.name);
                for sig in [m.args, m.reply] {
                    if !sig.is_empty() {
                        zbus::Signature::try_from(sig)
                            .unwrap_or_else(|e| panic!("{}: {sig:?}: {e}", m.name));
                    }
                }
            }
        }
    }
}
