//! What every call goes through before its decision: admission (a caller
//! that is not root has a bounded number of calls), the account (the name
//! resolved through the name service), and the access table (by the
//! caller's uid, never by an argument).

use std::sync::Arc;

use otpgate_proto::ServiceError;

use super::{check_user_name, Engine};
use crate::accounts::Account;
use crate::audit::Level;
use crate::authz::{self, Caller, Interface};
use crate::lockout::Permit;

impl Engine {
    /// Counts the call against a non-root caller's allowance (root is every
    /// PAM login and is limited per source instead); the permit is held
    /// until the call is answered.
    pub(super) fn admit(&self, caller: &Caller) -> Result<Option<Permit<'_>>, ServiceError> {
        if caller.is_root() {
            return Ok(None);
        }
        let now = self.clock.now();
        self.callers
            .admit(caller.uid, now)
            .map(Some)
            .map_err(|why| {
                if let Some(held) = self.audit.admit(&format!("too-many:{}", caller.uid), now) {
                    self.audit.log(
                        Level::Warning,
                        &format!(
                            "event=caller-limited caller_uid={} reason=\"{why}\"{}",
                            caller.uid,
                            suppressed(held)
                        ),
                    );
                }
                ServiceError::TooManyRequests(format!(
                    "uid {} sent too many requests ({why}): wait a minute",
                    caller.uid
                ))
            })
    }

    /// The account `user` names, through the name service (on the blocking
    /// pool: sssd or LDAP may take a while). A name it does not know is
    /// refused, never answered "not enrolled": with `nullok` that answer
    /// would let the password alone through.
    pub(super) async fn account(&self, user: &str) -> Result<Account, ServiceError> {
        check_user_name(user)?;
        let accounts = Arc::clone(&self.accounts);
        let name = user.to_string();
        match self.blocking(move || accounts.lookup(&name)).await? {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(ServiceError::InvalidUser(format!(
                "there is no user {} on this system",
                crate::audit::clean(user)
            ))),
            Err(e) => {
                self.audit.log(
                    Level::Error,
                    &format!(
                        "event=nss-error user={} error=\"{}\"",
                        crate::audit::clean(user),
                        crate::audit::clean(&e)
                    ),
                );
                Err(ServiceError::Unavailable(format!(
                    "the user database could not be asked about {}: {}",
                    crate::audit::clean(user),
                    crate::audit::clean(&e)
                )))
            }
        }
    }

    pub(super) fn authorize(
        &self,
        caller: &Caller,
        iface: Interface,
        user: Option<&Account>,
    ) -> Result<(), ServiceError> {
        authz::check(caller, iface, user).inspect_err(|e| {
            let Some(held) = self
                .audit
                .admit(&format!("denied:{}", caller.uid), self.clock.now())
            else {
                return;
            };
            self.audit.log(
                Level::Warning,
                &format!(
                    "event=access-denied caller_uid={} user={} reason=\"{}\"{}",
                    caller.uid,
                    user.map(|a| crate::audit::clean(&a.name))
                        .unwrap_or_default(),
                    e,
                    suppressed(held)
                ),
            )
        })
    }

    /// Admission, then the account, then the access table: what every call
    /// about one user starts with.
    pub(super) async fn open_call(
        &self,
        caller: &Caller,
        iface: Interface,
        user: &str,
    ) -> Result<(Option<Permit<'_>>, Account), ServiceError> {
        let permit = self.admit(caller)?;
        let account = self.account(user).await?;
        self.authorize(caller, iface, Some(&account))?;
        Ok((permit, account))
    }
}

pub(crate) fn suppressed(held: u32) -> String {
    if held > 0 {
        format!(" suppressed={held}")
    } else {
        String::new()
    }
}
