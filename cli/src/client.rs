//! The connection to otpgated. Every call goes through here so that every
//! zbus error becomes a `CliError` with the same wording.

use std::collections::HashMap;
use std::time::Duration;

use otpgate_proto::codec::{
    DecodeError, Enrollment, Explanation, HistoryEntry, Imported, Stats, Status, UserEntry,
};
use otpgate_proto::{AdminProxy, Dict, ManagerProxy, BUS_NAME, SYSTEM_BUS_ADDRESS};
use zbus::names::{BusName, UniqueName};
use zbus::proxy::CacheProperties;
use zeroize::Zeroizing;

use crate::error::{from_zbus, CliError};

/// How long one call may take. Confirm and import hash backup codes with
/// argon2 on the daemon side, which takes a moment on a busy machine.
const METHOD_TIMEOUT: Duration = Duration::from_secs(30);

/// `--bus`, else `DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket. (The
/// CLI runs with the caller's own rights, so honouring the environment gives
/// nobody anything they could not do with their own client.)
pub fn bus_address(flag: Option<&str>) -> String {
    if let Some(a) = flag {
        return a.to_owned();
    }
    match std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
        Ok(a) if !a.is_empty() => a,
        _ => SYSTEM_BUS_ADDRESS.to_owned(),
    }
}

pub struct Client {
    address: String,
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
    admin: AdminProxy<'static>,
}

impl Client {
    pub async fn connect(address: &str) -> Result<Client, CliError> {
        let conn = zbus::connection::Builder::address(address)
            .method_timeout(METHOD_TIMEOUT)
            .build()
            .await
            .map_err(|e| from_zbus(e, address, None))?;
        // No properties on these interfaces: skip the Get/PropertiesChanged
        // round trips proxy creation would otherwise make.
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| from_zbus(e, address, None))?;
        let admin = AdminProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| from_zbus(e, address, None))?;
        Ok(Client {
            address: address.to_owned(),
            conn,
            manager,
            admin,
        })
    }

    /// The unique name of `org.otpgate.Otpgate1`'s owner, if root owns
    /// it. On a bus whose policy lets anyone own the name (a user's own bus
    /// in `DBUS_SYSTEM_BUS_ADDRESS`, a misconfigured system bus), whoever
    /// took it would receive what is sent; `what` names that in the refusal.
    /// Calls then go to the unique name, which is never reused, so the owner
    /// cannot change between this check and the call.
    async fn root_owner(&self, what: &'static str) -> Result<UniqueName<'static>, CliError> {
        let fdo =
            |e: zbus::fdo::Error| from_zbus(zbus::Error::FDO(Box::new(e)), &self.address, None);
        let driver = zbus::fdo::DBusProxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(self.err(None))?;
        let owner = driver
            .get_name_owner(BusName::from_static_str(BUS_NAME).map_err(self.err(None))?)
            .await
            .map_err(fdo)?
            .into_inner();
        let uid = driver
            .get_connection_unix_user(BusName::Unique(owner.as_ref()))
            .await
            .map_err(fdo)?;
        if uid != 0 {
            return Err(CliError::NotRoot { uid, what });
        }
        Ok(owner)
    }

    async fn trusted_manager(&self, what: &'static str) -> Result<ManagerProxy<'static>, CliError> {
        let owner = self.root_owner(what).await?;
        ManagerProxy::builder(&self.conn)
            .destination(owner)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(self.err(None))
    }

    async fn trusted_admin(&self, what: &'static str) -> Result<AdminProxy<'static>, CliError> {
        let owner = self.root_owner(what).await?;
        AdminProxy::builder(&self.conn)
            .destination(owner)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(self.err(None))
    }

    fn err(&self, user: Option<&str>) -> impl FnOnce(zbus::Error) -> CliError + '_ {
        let user = user.map(str::to_owned);
        move |e| from_zbus(e, &self.address, user.as_deref())
    }

    pub async fn enroll(
        &self,
        user: &str,
        method: otpgate_proto::Method,
        email: Option<&str>,
        name: Option<&str>,
    ) -> Result<Enrollment, CliError> {
        let mut options: Dict<'_> = HashMap::new();
        options.insert(otpgate_proto::enroll::METHOD, method.as_str().into());
        if let Some(addr) = email {
            options.insert(otpgate_proto::enroll::EMAIL, addr.into());
        }
        if let Some(name) = name {
            options.insert(otpgate_proto::enroll::NAME, name.into());
        }
        let reply = self
            .manager
            .enroll(user, options)
            .await
            .map_err(self.err(Some(user)))?;
        Enrollment::from_dict(&reply).map_err(protocol)
    }

    pub async fn confirm(&self, user: &str, code: &str) -> Result<BackupCodes, CliError> {
        self.trusted_manager("code")
            .await?
            .confirm(user, code)
            .await
            .map(BackupCodes::new)
            .map_err(self.err(Some(user)))
    }

    pub async fn status(&self, user: &str) -> Result<Status, CliError> {
        let reply = self
            .manager
            .status(user)
            .await
            .map_err(self.err(Some(user)))?;
        Status::from_dict(&reply).map_err(protocol)
    }

    pub async fn history(&self, user: &str) -> Result<Vec<HistoryEntry>, CliError> {
        let reply = self
            .manager
            .history(user)
            .await
            .map_err(self.err(Some(user)))?;
        reply
            .iter()
            .map(HistoryEntry::from_dict)
            .collect::<Result<_, _>>()
            .map_err(protocol)
    }

    /// The manager to send a code to, and a password when there is one,
    /// checked to be root's before either goes.
    async fn manager_for(&self, password: Option<&str>) -> Result<ManagerProxy<'static>, CliError> {
        self.trusted_manager(if password.is_some() {
            "password"
        } else {
            "code"
        })
        .await
    }

    /// Disable, through `DisableWithPassword` when a password is given
    /// (`[self_service] reauth = "password+code"`).
    pub async fn disable(
        &self,
        user: &str,
        code: &str,
        password: Option<&str>,
    ) -> Result<(), CliError> {
        let m = self.manager_for(password).await?;
        match password {
            Some(p) => m.disable_with_password(user, code, p).await,
            None => m.disable(user, code).await,
        }
        .map_err(self.err(Some(user)))
    }

    /// RemoveDevice, as [`Client::disable`].
    pub async fn remove_device(
        &self,
        user: &str,
        name: &str,
        code: &str,
        password: Option<&str>,
    ) -> Result<(), CliError> {
        let m = self.manager_for(password).await?;
        match password {
            Some(p) => m.remove_device_with_password(user, name, code, p).await,
            None => m.remove_device(user, name, code).await,
        }
        .map_err(self.err(Some(user)))
    }

    /// RegenerateBackupCodes, as [`Client::disable`].
    pub async fn regenerate_backup_codes(
        &self,
        user: &str,
        code: &str,
        password: Option<&str>,
    ) -> Result<BackupCodes, CliError> {
        let m = self.manager_for(password).await?;
        match password {
            Some(p) => m.regenerate_backup_codes_with_password(user, code, p).await,
            None => m.regenerate_backup_codes(user, code).await,
        }
        .map(BackupCodes::new)
        .map_err(self.err(Some(user)))
    }

    pub async fn list_users(&self) -> Result<Vec<UserEntry>, CliError> {
        let reply = self.admin.list_users().await.map_err(self.err(None))?;
        reply
            .iter()
            .map(|d| UserEntry::from_dict(d).map_err(protocol))
            .collect()
    }

    pub async fn unlock(&self, user: &str) -> Result<(), CliError> {
        self.admin.unlock(user).await.map_err(self.err(Some(user)))
    }

    pub async fn reset(&self, user: &str) -> Result<(), CliError> {
        self.admin.reset(user).await.map_err(self.err(Some(user)))
    }

    pub async fn stats(&self) -> Result<Stats, CliError> {
        let reply = self.admin.stats().await.map_err(self.err(None))?;
        Stats::from_dict(&reply).map_err(protocol)
    }

    pub async fn import(&self, user: &str, contents: &str) -> Result<Imported, CliError> {
        let reply = self
            .trusted_admin("secret")
            .await?
            .import(user, contents)
            .await
            .map_err(self.err(Some(user)))?;
        Imported::from_dict(&reply).map_err(protocol)
    }

    pub async fn explain_policy(
        &self,
        user: &str,
        service: &str,
        rhost: Option<&str>,
    ) -> Result<Explanation, CliError> {
        let mut context: Dict<'_> = HashMap::new();
        if let Some(h) = rhost {
            context.insert(otpgate_proto::context::RHOST, h.into());
        }
        let reply = self
            .admin
            .explain_policy(user, service, context)
            .await
            .map_err(self.err(Some(user)))?;
        Explanation::from_dict(&reply).map_err(protocol)
    }

    /// Codes from an impostor would be worse than none: root would lock
    /// them in the safe believing there is a way back in. So only root's
    /// daemon is asked.
    pub async fn generate_breakglass(&self, user: &str) -> Result<BackupCodes, CliError> {
        self.trusted_admin("break-glass request")
            .await?
            .generate_breakglass(user)
            .await
            .map(BackupCodes::new)
            .map_err(self.err(Some(user)))
    }

    pub async fn acknowledge_breakglass(&self, user: &str) -> Result<u32, CliError> {
        self.admin
            .acknowledge_breakglass(user)
            .await
            .map_err(self.err(Some(user)))
    }
}

fn protocol(e: DecodeError) -> CliError {
    CliError::Protocol(e.0)
}

/// Backup codes as received: shown once, then wiped from memory.
pub struct BackupCodes(pub Vec<Zeroizing<String>>);

impl BackupCodes {
    fn new(codes: Vec<String>) -> BackupCodes {
        BackupCodes(codes.into_iter().map(Zeroizing::new).collect())
    }
}
