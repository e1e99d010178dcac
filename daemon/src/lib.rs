//! otpgated: the privileged daemon of otpgate. It alone holds the secrets
//! and decides; the PAM module and the CLI ask it over the system bus.
//!
//! `serve` is the whole service given its parts (a bus address, a config, a
//! store, a key and a clock), so tests run it on a private bus with a
//! manual clock exactly as `main` runs it on the system bus.

pub mod accounts;
pub mod audit;
pub mod authz;
pub mod backup;
pub mod bus;
pub mod clock;
pub mod config;
pub mod context;
pub mod crypto;
pub mod email;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod import;
pub mod journal;
pub mod keyfile;
pub mod lockout;
pub mod pam_socket;
pub mod policy;
pub mod record;
pub mod rotate;
pub mod session;
pub mod store;
pub mod totp;

use std::sync::Arc;

use otpgate_proto::{BUS_NAME, OBJECT_PATH};
use zbus::Connection;

use crate::engine::Engine;
use crate::error::Error;

/// Connects to the bus at `address`, serves the three interfaces and owns
/// the bus name. The returned connection serves until dropped.
pub async fn serve(address: &str, engine: Arc<Engine>) -> Result<Connection, Error> {
    let bus_err = |e: zbus::Error| Error::Bus(format!("{address}: {e}"));
    // Connect first without the name, so the interfaces exist before any
    // call can arrive through the name.
    let conn = zbus::connection::Builder::address(address)
        .build()
        .await
        .map_err(bus_err)?;
    let shared = bus::Shared::new(&conn, engine).await.map_err(bus_err)?;
    let server = conn.object_server();
    server
        .at(OBJECT_PATH, bus::Auth(shared.clone()))
        .await
        .map_err(bus_err)?;
    server
        .at(OBJECT_PATH, bus::Manager(shared.clone()))
        .await
        .map_err(bus_err)?;
    server
        .at(OBJECT_PATH, bus::Admin(shared))
        .await
        .map_err(bus_err)?;
    let reply = conn
        .request_name_with_flags(BUS_NAME, zbus::fdo::RequestNameFlags::DO_NOT_QUEUE)
        .await
        .map_err(|e| match e {
            zbus::Error::NameTaken => Error::Bus(format!(
                "{BUS_NAME} is already owned on {address}: is another otpgated running?"
            )),
            zbus::Error::FDO(ref f) if matches!(**f, zbus::fdo::Error::AccessDenied(_)) => Error::Bus(format!(
                "the bus policy does not let this process own {BUS_NAME}: install packaging/org.otpgate.Otpgate1.conf and reload dbus"
            )),
            other => bus_err(other),
        })?;
    if reply != zbus::fdo::RequestNameReply::PrimaryOwner {
        return Err(Error::Bus(format!(
            "{BUS_NAME} is already owned on {address}: is another otpgated running?"
        )));
    }
    Ok(conn)
}
