//! The D-Bus face of the engine: three interfaces on one object, served on
//! the system bus and on the PAM module's direct socket (`pam_socket`).
//! Each call first establishes who sent it — on the bus by asking the bus
//! driver for the uid of the sender's unique name, on the socket from the
//! kernel's peer credentials taken at accept — then hands the engine a
//! `Caller`; arguments never say who the caller is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use otpgate_proto::codec::{Imported, UserEntry};
use otpgate_proto::{context, enroll, ServiceError};
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::{Connection, OwnedVariant};
use zeroize::Zeroizing;

use crate::authz::Caller;
use crate::engine::{Context, Engine, Stats, STATS_DAYS};

type Dict = HashMap<String, OwnedVariant>;

/// Context values longer than this are refused, not truncated silently.
const MAX_CONTEXT_VALUE: usize = 1024;

/// Who vouches for a caller's uid.
#[derive(Clone)]
enum Voucher {
    /// The bus driver, asked about each call's sender.
    Bus(DBusProxy<'static>),
    /// The kernel, once for the connection (`SO_PEERCRED` at accept); the
    /// connection's calls are counted so that it is not closed as idle
    /// while one is under way.
    Peer {
        uid: u32,
        pid: Option<u32>,
        activity: Arc<Activity>,
    },
}

/// Calls under way on one peer connection.
#[derive(Default)]
pub struct Activity(AtomicUsize);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity::default())
    }

    pub fn busy(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Held for the length of a call on a peer connection.
pub struct Busy(Option<Arc<Activity>>);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(a) = &self.0 {
            a.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Shared by the three interfaces.
#[derive(Clone)]
pub struct Shared {
    engine: Arc<Engine>,
    voucher: Voucher,
}

impl Shared {
    /// For the bus connection `conn`.
    pub async fn new(conn: &Connection, engine: Arc<Engine>) -> zbus::Result<Shared> {
        Ok(Shared {
            engine,
            voucher: Voucher::Bus(DBusProxy::new(conn).await?),
        })
    }

    /// For one peer connection whose other end the kernel says is `uid`
    /// (process `pid`).
    pub fn peer(
        uid: u32,
        pid: Option<u32>,
        engine: Arc<Engine>,
        activity: Arc<Activity>,
    ) -> Shared {
        Shared {
            engine,
            voucher: Voucher::Peer { uid, pid, activity },
        }
    }

    async fn caller(&self, hdr: &Header<'_>) -> Result<(Caller, Busy), ServiceError> {
        let (uid, pid, busy) = match &self.voucher {
            Voucher::Peer { uid, pid, activity } => {
                activity.0.fetch_add(1, Ordering::SeqCst);
                (*uid, *pid, Busy(Some(Arc::clone(activity))))
            }
            Voucher::Bus(driver) => {
                let (uid, pid) = Self::bus_credentials(driver, hdr).await?;
                (uid, pid, Busy(None))
            }
        };
        if uid == 0 {
            // Every PAM login is root's call: no hand-off to resolve it.
            return Ok((Caller::root().with_pid(pid), busy));
        }
        let group = self.engine.config().access.admin_group.clone();
        // NSS may be remote (LDAP, sssd): resolve off the bus's executor.
        let caller = self
            .engine
            .blocking(move || Caller::resolve(uid, &group))
            .await?;
        Ok((caller.with_pid(pid), busy))
    }

    /// The sender's uid and process, in one question to the bus driver.
    async fn bus_credentials(
        driver: &DBusProxy<'static>,
        hdr: &Header<'_>,
    ) -> Result<(u32, Option<u32>), ServiceError> {
        let sender = hdr
            .sender()
            .ok_or_else(|| ServiceError::AccessDenied("the call has no sender".into()))?;
        let refused = |e: String| {
            ServiceError::AccessDenied(format!("the bus could not vouch for the caller: {e}"))
        };
        let creds = driver
            .get_connection_credentials(sender.clone().into())
            .await
            .map_err(|e| refused(e.to_string()))?;
        let uid = creds
            .unix_user_id()
            .ok_or_else(|| refused("no UnixUserID in its credentials".into()))?;
        Ok((uid, creds.process_id()))
    }
}

fn parse_context(ctx: &Dict) -> Result<Context, ServiceError> {
    let mut out = Context::default();
    for (key, value) in ctx {
        let slot = match key.as_str() {
            context::SERVICE => &mut out.service,
            context::RHOST => &mut out.rhost,
            context::RUSER => &mut out.ruser,
            context::TTY => &mut out.tty,
            context::METHOD => &mut out.method,
            // Unknown keys are for future callers; ignore them.
            _ => continue,
        };
        let s = <&str>::try_from(value).map_err(|_| {
            ServiceError::InvalidArgument(format!("context key {key:?} must be a string (s)"))
        })?;
        if s.len() > MAX_CONTEXT_VALUE {
            return Err(ServiceError::InvalidArgument(format!(
                "context key {key:?} is longer than {MAX_CONTEXT_VALUE} bytes"
            )));
        }
        *slot = s.to_string();
    }
    Ok(out)
}

fn codes_out(codes: Vec<Zeroizing<String>>) -> Vec<String> {
    // zbus serialises from these Strings; they leave our memory with the
    // reply. The Zeroizing originals are wiped as they drop here.
    codes.iter().map(|c| c.to_string()).collect()
}

pub struct Auth(pub Shared);
pub struct Manager(pub Shared);
pub struct Admin(pub Shared);

#[zbus::interface(name = "org.otpgate.Otpgate1.Auth")]
impl Auth {
    async fn challenge(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        context: Dict,
    ) -> Result<(String, Dict), ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let ctx = parse_context(&context)?;
        Ok(self.0.engine.challenge(&caller, &user, ctx).await?.encode())
    }

    async fn verify(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        code: String,
        context: Dict,
    ) -> Result<(String, Dict), ServiceError> {
        let code = Zeroizing::new(code);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let ctx = parse_context(&context)?;
        Ok(self
            .0
            .engine
            .verify(&caller, &user, code, ctx)
            .await?
            .encode())
    }

    async fn account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        context: Dict,
    ) -> Result<(String, Dict), ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let ctx = parse_context(&context)?;
        Ok(self
            .0
            .engine
            .account_check(&caller, &user, ctx)
            .await?
            .encode())
    }
}

#[zbus::interface(name = "org.otpgate.Otpgate1.Manager")]
impl Manager {
    async fn enroll(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        options: Dict,
    ) -> Result<Dict, ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let text = |key: &str, value: &OwnedVariant| {
            <&str>::try_from(value).map(str::to_owned).map_err(|_| {
                ServiceError::InvalidArgument(format!("option {key:?} must be a string"))
            })
        };
        let (mut method, mut address, mut name) = (None, None, None);
        for (key, value) in &options {
            match key.as_str() {
                enroll::METHOD => method = Some(text(key, value)?),
                enroll::EMAIL => address = Some(text(key, value)?),
                enroll::NAME => name = Some(text(key, value)?),
                other => {
                    return Err(ServiceError::InvalidArgument(format!(
                        "unknown enrolment option {:?}",
                        crate::audit::clean(other)
                    )))
                }
            }
        }
        Ok(self
            .0
            .engine
            .enroll(&caller, &user, method, address, name)
            .await?
            .to_dict())
    }

    async fn confirm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        code: String,
    ) -> Result<Vec<String>, ServiceError> {
        let code = Zeroizing::new(code);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        Ok(codes_out(
            self.0.engine.confirm(&caller, &user, code).await?,
        ))
    }

    async fn status(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<Dict, ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        Ok(self.0.engine.status(&caller, &user).await?.to_dict())
    }

    async fn disable(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        code: String,
    ) -> Result<(), ServiceError> {
        let code = Zeroizing::new(code);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        self.0.engine.disable(&caller, &user, code, None).await
    }

    /// Disable with the account's password (`[self_service] reauth =
    /// "password+code"`); the password is wiped after use, never logged.
    async fn disable_with_password(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        code: String,
        password: String,
    ) -> Result<(), ServiceError> {
        let code = Zeroizing::new(code);
        let password = Zeroizing::new(password);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        self.0
            .engine
            .disable(&caller, &user, code, Some(password))
            .await
    }

    async fn remove_device(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        name: String,
        code: String,
    ) -> Result<(), ServiceError> {
        let code = Zeroizing::new(code);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        self.0
            .engine
            .remove_device(&caller, &user, &name, code, None)
            .await
    }

    /// RemoveDevice with the account's password, as `disable_with_password`.
    async fn remove_device_with_password(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        name: String,
        code: String,
        password: String,
    ) -> Result<(), ServiceError> {
        let code = Zeroizing::new(code);
        let password = Zeroizing::new(password);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        self.0
            .engine
            .remove_device(&caller, &user, &name, code, Some(password))
            .await
    }

    async fn regenerate_backup_codes(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        code: String,
    ) -> Result<Vec<String>, ServiceError> {
        let code = Zeroizing::new(code);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        Ok(codes_out(
            self.0
                .engine
                .regenerate_backup_codes(&caller, &user, code, None)
                .await?,
        ))
    }

    /// RegenerateBackupCodes with the account's password (as above).
    async fn regenerate_backup_codes_with_password(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        code: String,
        password: String,
    ) -> Result<Vec<String>, ServiceError> {
        let code = Zeroizing::new(code);
        let password = Zeroizing::new(password);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        Ok(codes_out(
            self.0
                .engine
                .regenerate_backup_codes(&caller, &user, code, Some(password))
                .await?,
        ))
    }

    async fn history(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<Vec<Dict>, ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let entries = self.0.engine.history(&caller, &user).await?;
        Ok(entries.iter().map(|h| h.to_dict()).collect())
    }
}

#[zbus::interface(name = "org.otpgate.Otpgate1.Admin")]
impl Admin {
    async fn list_users(&self, #[zbus(header)] hdr: Header<'_>) -> Result<Vec<Dict>, ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let list = self.0.engine.list_users(&caller).await?;
        Ok(list
            .into_iter()
            .map(|r| match r {
                Ok(s) => UserEntry::Ok(s),
                Err((user, error)) => UserEntry::Unreadable { user, error },
            })
            .map(|entry| entry.to_dict())
            .collect())
    }

    async fn unlock(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<(), ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        self.0.engine.unlock(&caller, &user).await
    }

    async fn reset(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<(), ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        self.0.engine.reset(&caller, &user).await
    }

    async fn stats(&self, #[zbus(header)] hdr: Header<'_>) -> Result<Dict, ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let counted = self.0.engine.stats(&caller).await?;
        // The engine counts; the span it counts over is a constant.
        let s = Stats {
            days: STATS_DAYS as u32,
            ..counted
        };
        Ok(s.to_dict())
    }

    async fn import(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        contents: String,
    ) -> Result<Dict, ServiceError> {
        let contents = Zeroizing::new(contents);
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let n = self.0.engine.import(&caller, &user, contents).await?;
        Ok(Imported {
            backup_codes_imported: n,
        }
        .to_dict())
    }

    async fn explain_policy(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        service: String,
        context: Dict,
    ) -> Result<Dict, ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        let mut ctx = parse_context(&context)?;
        ctx.service = service;
        Ok(self
            .0
            .engine
            .explain_policy(&caller, &user, ctx)
            .await?
            .to_dict())
    }

    async fn generate_breakglass(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<Vec<String>, ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        Ok(codes_out(
            self.0.engine.generate_breakglass(&caller, &user).await?,
        ))
    }

    async fn acknowledge_breakglass(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<u32, ServiceError> {
        let (caller, _busy) = self.0.caller(&hdr).await?;
        self.0.engine.acknowledge_breakglass(&caller, &user).await
    }
}
