//! The database's tables, made and upgraded by the daemon itself, and the
//! checks every new connection passes before it serves a call.

use tokio_postgres::Client;

use super::pool::db_error;
use super::url::DbUrl;
use crate::crypto::{open_record, seal_record, MasterKey};
use crate::error::Error;

/// Each entry upgrades the schema by one version; never edit one that has
/// shipped, add the next.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE otpgate_records (
        key text PRIMARY KEY,
        body bytea NOT NULL,         -- the record, sealed with the fleet key, bound to key
        updated_at bigint NOT NULL,  -- unix seconds, for migrate-store's newer-than check
        revision bigint NOT NULL DEFAULT 1
    );
    CREATE TABLE otpgate_sources (
        source text PRIMARY KEY,     -- a remote host (PAM_RHOST) failing codes
        window_start bigint NOT NULL,
        failures integer NOT NULL
    );
    CREATE INDEX otpgate_sources_window ON otpgate_sources (window_start);
    CREATE TABLE otpgate_meta (
        name text PRIMARY KEY,
        value bytea NOT NULL
    );
"];

/// Any fixed number: every otpgated takes this lock to migrate, so two
/// starting at once migrate one after the other.
const MIGRATION_LOCK: i64 = 0x6f74_7067_6174_6501;

const KEY_CHECK: &str = "key_check";
const KEY_CHECK_BINDING: &str = "otpgate-meta:key-check";
const KEY_CHECK_TEXT: &[u8] = b"the otpgate fleet key";

/// Whether `key` is the one that sealed the fleet's check value.
pub fn opens_key_check(key: &MasterKey, stored: &[u8]) -> bool {
    matches!(open_record(key, KEY_CHECK_BINDING, stored), Ok(t) if t.as_slice() == KEY_CHECK_TEXT)
}

/// The check value for `key`.
pub fn key_check(key: &MasterKey) -> Result<Vec<u8>, Error> {
    Ok(seal_record(key, KEY_CHECK_BINDING, KEY_CHECK_TEXT)?)
}

pub const KEY_CHECK_NAME: &str = KEY_CHECK;

/// A primary that makes commits durable, or an error naming why not.
///
/// A standby is refused for good reason: it lags its primary, so a code
/// used on the primary could be accepted again from the standby, and a
/// lock set there would never count.
pub async fn check_session(client: &Client, url: &DbUrl) -> Result<(), Error> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'), \
             current_setting('synchronous_commit')",
            &[],
        )
        .await
        .map_err(|e| db_error(&e))?;
    let (recovery, read_only, sync): (bool, String, String) = (row.get(0), row.get(1), row.get(2));
    if recovery || read_only == "on" {
        return Err(Error::Database(format!(
            "{} is a read-only standby: otpgated needs the primary (a standby lags, so it could accept a used code again)",
            url.server()
        )));
    }
    if sync == "off" {
        // A commit must be on disk before the answer goes out.
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(|e| db_error(&e))?;
    }
    Ok(())
}

/// Brings the schema up to date and checks the key against the fleet's.
pub async fn migrate(client: &Client, key: &MasterKey) -> Result<(), Error> {
    let e = |e: tokio_postgres::Error| db_error(&e);
    client.batch_execute("BEGIN").await.map_err(e)?;
    let result = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(e)?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS otpgate_schema (version integer NOT NULL)")
            .await
            .map_err(e)?;
        let current: i32 = client
            .query_one("SELECT coalesce(max(version), 0) FROM otpgate_schema", &[])
            .await
            .map_err(e)?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if current > known {
            return Err(Error::Database(format!(
                "the database's schema is version {current}, newer than this otpgated knows ({known}): upgrade otpgate on this host"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            client.batch_execute(sql).await.map_err(e)?;
            client
                .execute("INSERT INTO otpgate_schema (version) VALUES ($1)", &[&(i as i32 + 1)])
                .await
                .map_err(e)?;
        }
        // The first daemon to get here seals a known text with its key;
        // every later one must open it, or it would write records that no
        // other host can read (and read none of theirs).
        let check = key_check(key)?;
        client
            .execute(
                "INSERT INTO otpgate_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&KEY_CHECK, &check],
            )
            .await
            .map_err(e)?;
        let stored: Vec<u8> = client
            .query_one("SELECT value FROM otpgate_meta WHERE name = $1", &[&KEY_CHECK])
            .await
            .map_err(e)?
            .get(0);
        if opens_key_check(key, &stored) {
            Ok(())
        } else {
            Err(Error::FleetKey)
        }
    }
    .await;
    match result {
        Ok(()) => client.batch_execute("COMMIT").await.map_err(e),
        Err(err) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(err)
        }
    }
}
