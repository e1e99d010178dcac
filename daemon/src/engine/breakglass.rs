//! Break-glass codes: a few one-time codes root keeps offline, for the day
//! the device is lost and the console is the only way in. Stored hashed
//! like backup codes (under a binding of their own), minted by root alone,
//! accepted only at a local console (`Facts::console`), each use logged at
//! alert level and noted at every later login until acknowledged.

use std::sync::Arc;

use otpgate_proto::ServiceError;
use zeroize::Zeroizing;

use super::{internal, Decided, Engine, Env, Event};
use crate::audit::Level;
use crate::authz::{Caller, Interface};
use crate::backup;
use crate::record::{UserRecord, BREAKGLASS_BINDING};

/// Codes per set: enough for a few emergencies, few enough to keep in a
/// safe on one card.
pub const BREAKGLASS_CODES: usize = 5;

/// What break-glass hashes of `rec` are bound to.
pub(crate) fn binding(rec: &UserRecord) -> String {
    format!("{}{BREAKGLASS_BINDING}", rec.bound_to())
}

/// The line every later login of this account shows until the uses are
/// acknowledged; empty when there is none.
pub(crate) fn note(rec: &UserRecord) -> String {
    match rec.breakglass_uses.last() {
        None => String::new(),
        Some(last) => format!(
            "A break-glass code of this account was used ({} use(s) unacknowledged, the last on {} at {} UTC): once you know why, run `otpgate breakglass ack`.",
            rec.breakglass_uses.len(),
            if last.tty.is_empty() { "a console" } else { &last.tty },
            crate::clock::utc(last.at)
        ),
    }
}

fn generate(rec: Option<UserRecord>, env: &Env, codes: &[Zeroizing<String>]) -> Decided<()> {
    let mut rec = rec.unwrap_or_else(|| UserRecord::new(&env.account.key(), env.now));
    let set = match backup::hash_set(env.key, &binding(&rec), codes, env.now) {
        Ok(s) => s,
        Err(e) => return Decided::keep(Err(internal(e))),
    };
    rec.breakglass = Some(set);
    Decided::put(
        rec,
        Ok(()),
        vec![Event::new(
            Level::Warning,
            "breakglass-generated",
            format!("codes={}", codes.len()),
        )],
    )
}

impl Engine {
    /// Root only: a new set of break-glass codes for `user` (root, or a
    /// member of the administrator group), replacing any earlier set.
    pub async fn generate_breakglass(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
    ) -> Result<Vec<Zeroizing<String>>, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::RootOnly, user).await?;
        let group = self.config.access.admin_group.clone();
        let uid = account.uid;
        let admin = self
            .blocking(move || Caller::resolve(uid, &group).is_admin())
            .await?;
        if !admin {
            return Err(ServiceError::InvalidArgument(format!(
                "{} is neither root nor in the administrator group ({}): break-glass codes are for them only",
                account.name, self.config.access.admin_group
            )));
        }
        let codes = backup::generate(BREAKGLASS_CODES).map_err(internal)?;
        let kept = codes.clone();
        self.transact(
            &account,
            &Default::default(),
            caller.uid,
            move |rec, env| generate(rec, env, &kept),
        )
        .await?;
        Ok(codes)
    }

    /// Root only: the used break-glass codes of `user` have been looked
    /// into; stop noting them at every login. Returns how many there were.
    pub async fn acknowledge_breakglass(
        self: &Arc<Self>,
        caller: &Caller,
        user: &str,
    ) -> Result<u32, ServiceError> {
        let (_permit, account) = self.open_call(caller, Interface::RootOnly, user).await?;
        self.transact(
            &account,
            &Default::default(),
            caller.uid,
            |rec, _| match rec {
                Some(mut r) if !r.breakglass_uses.is_empty() => {
                    let n = r.breakglass_uses.len() as u32;
                    r.breakglass_uses.clear();
                    Decided::put(
                        r,
                        Ok(n),
                        vec![Event::new(
                            Level::Notice,
                            "breakglass-acknowledged",
                            format!("uses={n}"),
                        )],
                    )
                }
                _ => Decided::keep(Ok(0)),
            },
        )
        .await
    }
}
