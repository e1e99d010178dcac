//! `PostgresStore`: every host of a fleet keeps its records in one
//! PostgreSQL database, so an enrolment, a lock, a used code or a used
//! backup code made on one host holds on all of them.
//!
//! - A record is one row, sealed whole with the fleet key and bound to its
//!   key: the database's administrator sees key names and times, never a
//!   secret, a backup-code hash, an address or a lock state, and cannot
//!   move a row to another user.
//! - `update` is one transaction holding the row's lock (`SELECT … FOR
//!   UPDATE`); a record that does not exist yet is inserted with `ON
//!   CONFLICT DO NOTHING`, and the loser of that race decides again on the
//!   winner's row. So two hosts can never both take one mark or lose a
//!   failure.
//! - Round trips: `update` pipelines BEGIN with the locking read, then the
//!   write with COMMIT: two per decision; `get` is one.
//! - Every call has a deadline (`timeout_ms`); past it, or with the
//!   database down, the call fails (and the login with it) and the next
//!   call connects again.
//!
//! The store runs its own small Tokio runtime: the engine calls stores
//! from blocking threads, and the conformance tests from plain ones.

mod pool;
mod schema;
mod tls;
mod url;

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use zeroize::Zeroizing;

pub use url::{DbUrl, TlsMode};

use self::pool::{db_error, Pool};
use super::{check_key, Store, Write};
use crate::config::{LockoutConfig, StorageConfig};
use crate::crypto::{open_record, seal_record, MasterKey};
use crate::error::Error;
use crate::lockout::{window_blocks, SourceCounter};
use crate::record::UserRecord;

pub struct PostgresStore {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    key: MasterKey,
    timeout: Duration,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which is refused inside
        // another runtime; nothing of ours needs finishing.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Every row a rotation saw: re-sealed, or left as it was and why.
pub type RotationReport = Vec<(String, Result<(), String>)>;

/// What `open` found: the store, and whether the database answered.
pub struct Opened {
    pub store: PostgresStore,
    /// The database was unreachable at start (why); calls fail closed
    /// until it answers, and the schema is checked then.
    pub down: Option<String>,
}

impl PostgresStore {
    /// Connects once to check everything that a sysadmin must fix (the
    /// URL, the password file, TLS, a standby, the key, the schema): those
    /// refuse the start. A database that is merely down is not fatal: the
    /// daemon must still answer logins (with a refusal), or a module with
    /// `failmode=open` would let everyone in while it is away.
    pub fn open(config: &StorageConfig, key: &MasterKey) -> Result<Opened, Error> {
        let url_text = config.url.as_deref().ok_or_else(|| {
            Error::Database("[storage] url is required with backend = \"postgres\"".into())
        })?;
        let url = DbUrl::parse(url_text)
            .map_err(|why| Error::Database(format!("[storage] url {why}")))?;
        let password = match &config.password_file {
            Some(path) => Some(read_password(path)?),
            None => None,
        };
        let tls = tls::connector(&url).map_err(Error::Database)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otpgated-db")
            .enable_all()
            .build()
            .map_err(|e| Error::Database(format!("cannot start the database runtime: {e}")))?;
        let store = PostgresStore {
            runtime: Some(runtime),
            pool: Pool::new(url, password, tls, config.pool_size, key.duplicate()),
            key: key.duplicate(),
            timeout: Duration::from_millis(config.timeout_ms),
        };
        let down = match store.call(async { store.pool.get().await.map(pool::Conn::release) }) {
            Ok(()) => None,
            Err(Error::DatabaseDown(why)) => Some(why),
            Err(e) => return Err(e),
        };
        Ok(Opened { store, down })
    }

    /// `HOST:PORT/DATABASE`, for logs.
    pub fn server(&self) -> String {
        self.pool.url().server()
    }

    /// Runs `f` on the store's runtime under the deadline.
    fn call<T>(&self, f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        self.run(self.within(f))
    }

    /// Runs `f` on the store's runtime; `f` puts its own deadlines on its
    /// round trips (an update, whose decision may hash backup codes for a
    /// while, which is no fault of the database).
    fn run<T>(&self, f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let rt = self.runtime.as_ref().expect("present until drop");
        let r = rt.block_on(f);
        if let Err(Error::DatabaseDown(_)) = &r {
            // The server went away or stalled: the idle sessions are no
            // better.
            self.pool.clear();
        }
        r
    }

    /// `f` within `timeout_ms`, else "down". Only inside `run`: the timer
    /// needs the runtime.
    async fn within<T>(&self, f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(Error::DatabaseDown(format!(
                "{} did not answer within {} ms",
                self.server(),
                self.timeout.as_millis()
            ))),
        }
    }

    fn decode(&self, key: &str, body: &[u8]) -> Result<UserRecord, Error> {
        let bytes = open_record(&self.key, key, body).map_err(|_| Error::Corrupt {
            user: key.to_string(),
            reason:
                "its row does not open under the fleet key (tampered, or moved from another key)"
                    .into(),
        })?;
        UserRecord::from_bytes(key, &bytes).map_err(|reason| Error::Corrupt {
            user: key.to_string(),
            reason,
        })
    }

    fn encode(&self, key: &str, rec: &UserRecord) -> Result<Vec<u8>, Error> {
        let bytes = Zeroizing::new(rec.to_bytes());
        Ok(seal_record(&self.key, key, &bytes)?)
    }

    /// A new fleet key, in one transaction: every row re-sealed under
    /// `new` after `change` (which re-seals the secrets inside), and the
    /// key check replaced. All or nothing; on success the caller installs
    /// the new key file. A row that does not open is left as it was and
    /// reported. Every daemon of the fleet must be stopped: one still on
    /// the old key would refuse every record afterwards (never accept).
    pub fn rotate(
        &self,
        new: &MasterKey,
        change: &mut dyn FnMut(&str, UserRecord) -> Result<UserRecord, String>,
    ) -> Result<RotationReport, Error> {
        self.run(async {
            let err = |e: tokio_postgres::Error| db_error(&e);
            let c = self.within(self.pool.get()).await?;
            self.within(async { c.client.batch_execute("BEGIN").await.map_err(err) })
                .await?;
            let rows = self
                .within(async {
                    c.client
                        .query("SELECT value FROM otpgate_meta WHERE name = $1 FOR UPDATE", &[&schema::KEY_CHECK_NAME])
                        .await
                        .map_err(err)?;
                    c.client
                        .query("SELECT key, body FROM otpgate_records ORDER BY key COLLATE \"C\" FOR UPDATE", &[])
                        .await
                        .map_err(err)
                })
                .await?;
            let mut report = Vec::with_capacity(rows.len());
            for row in rows {
                let key: String = row.get(0);
                let body: Vec<u8> = row.get(1);
                let outcome = match self.decode(&key, &body) {
                    Err(e) => Err(e.to_string()),
                    Ok(rec) => match change(&key, rec) {
                        Err(why) => Err(why),
                        Ok(rec) => {
                            let sealed = seal_record(new, &key, &Zeroizing::new(rec.to_bytes()))?;
                            self.within(async {
                                c.client
                                    .execute(
                                        "UPDATE otpgate_records SET body = $2, revision = revision + 1 WHERE key = $1",
                                        &[&key, &sealed],
                                    )
                                    .await
                                    .map_err(err)
                            })
                            .await?;
                            Ok(())
                        }
                    },
                };
                report.push((key, outcome));
            }
            let check = schema::key_check(new)?;
            self.within(async {
                c.client
                    .execute(
                        "UPDATE otpgate_meta SET value = $2 WHERE name = $1",
                        &[&schema::KEY_CHECK_NAME, &check],
                    )
                    .await
                    .map_err(err)?;
                c.client.batch_execute("COMMIT").await.map_err(err)
            })
            .await?;
            c.release();
            Ok(report)
        })
    }
}

/// The password file: root's, read by nobody else, one line.
fn read_password(path: &Path) -> Result<Zeroizing<String>, Error> {
    let unsafe_file = |reason: &str| Error::Unsafe {
        path: path.to_owned(),
        reason: reason.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.uid() != 0 {
        return Err(unsafe_file(
            "the database password file must belong to root",
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_file(
            "the database password file must be readable by root alone (chmod 600)",
        ));
    }
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    let line = std::str::from_utf8(&text)
        .map_err(|_| unsafe_file("the database password is not UTF-8"))?
        .trim_end_matches(['\n', '\r']);
    if line.is_empty() || line.contains('\n') {
        return Err(unsafe_file(
            "the database password file must hold one line, the password",
        ));
    }
    Ok(Zeroizing::new(line.to_string()))
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Why an attempt at an update failed.
enum AttemptError {
    /// Before anything was sent that could write: safe to try again.
    Stale(Error),
    Failed(Error),
}
use AttemptError::{Failed, Stale};

/// The outcome of one attempt at an update.
enum Attempt {
    Done,
    /// Another host inserted the record first: decide again on its row.
    LostInsert,
}

impl Store for PostgresStore {
    fn get(&self, key: &str) -> Result<Option<UserRecord>, Error> {
        check_key(key)?;
        let body = self.call(async {
            let mut fresh_tried = false;
            loop {
                let c = self.pool.get().await?;
                match c.client.query_opt(&c.st.get, &[&key]).await {
                    Ok(row) => {
                        c.release();
                        return Ok(row.map(|r| r.get::<_, Vec<u8>>(0)));
                    }
                    // A read is safe to repeat on a fresh connection.
                    Err(_) if c.client.is_closed() && !fresh_tried => {
                        fresh_tried = true;
                        self.pool.clear();
                    }
                    Err(e) => return Err(db_error(&e)),
                }
            }
        })?;
        body.map(|b| self.decode(key, &b)).transpose()
    }

    fn update(
        &self,
        key: &str,
        decide: &mut dyn FnMut(Option<UserRecord>) -> Write,
    ) -> Result<(), Error> {
        check_key(key)?;
        self.run(async {
            let mut fresh_tried = false;
            loop {
                match self.attempt(key, decide).await {
                    Ok(Attempt::Done) => return Ok(()),
                    Ok(Attempt::LostInsert) => continue,
                    // Nothing was written yet: a pooled connection that
                    // died with a restarted server costs a retry, not a
                    // refused login.
                    Err(Stale(_)) if !fresh_tried => {
                        fresh_tried = true;
                        self.pool.clear();
                    }
                    Err(Stale(e)) | Err(Failed(e)) => return Err(e),
                }
            }
        })
    }

    fn remove(&self, key: &str) -> Result<bool, Error> {
        check_key(key)?;
        self.call(async {
            let c = self.pool.get().await?;
            let n = c
                .client
                .execute(&c.st.delete, &[&key])
                .await
                .map_err(|e| db_error(&e))?;
            c.release();
            Ok(n > 0)
        })
    }

    fn keys(&self) -> Result<Vec<String>, Error> {
        self.call(async {
            let c = self.pool.get().await?;
            let rows = c
                .client
                .query(
                    "SELECT key FROM otpgate_records ORDER BY key COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|e| db_error(&e))?;
            c.release();
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    fn list(&self) -> Result<super::Listing, Error> {
        let rows = self.call(async {
            let c = self.pool.get().await?;
            let rows = c
                .client
                .query(
                    "SELECT key, body FROM otpgate_records ORDER BY key COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|e| db_error(&e))?;
            c.release();
            Ok(rows)
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let key: String = r.get(0);
                let body: Vec<u8> = r.get(1);
                let rec = self.decode(&key, &body);
                (key, rec)
            })
            .collect())
    }

    fn shared(&self) -> bool {
        true
    }

    fn sources(&self) -> Option<&dyn SourceCounter> {
        Some(self)
    }
}

impl PostgresStore {
    async fn attempt(
        &self,
        key: &str,
        decide: &mut dyn FnMut(Option<UserRecord>) -> Write,
    ) -> Result<Attempt, AttemptError> {
        let c = self.within(self.pool.get()).await.map_err(Failed)?;
        // Sent together: one round trip to open the transaction and lock
        // the row.
        let params: [&(dyn ToSql + Sync); 1] = [&key];
        let first = self
            .within(async {
                let (begun, row) = tokio::join!(
                    c.client.batch_execute("BEGIN"),
                    c.client.query_opt(&c.st.lock, &params)
                );
                match begun.and(row) {
                    Ok(row) => Ok(Ok(row)),
                    Err(e) if c.client.is_closed() => Ok(Err(Stale(db_error(&e)))),
                    Err(e) => Ok(Err(Failed(db_error(&e)))),
                }
            })
            .await
            .map_err(Failed)?;
        let row = first?;
        let result = self.finish(&c, key, row.map(|r| r.get(0)), decide).await;
        if result.is_ok() {
            c.release();
        }
        result.map_err(Failed)
    }

    /// The rest of `attempt`, inside the transaction. On an error the
    /// caller drops the connection, and the server rolls back.
    async fn finish(
        &self,
        c: &pool::Conn<'_>,
        key: &str,
        body: Option<Vec<u8>>,
        decide: &mut dyn FnMut(Option<UserRecord>) -> Write,
    ) -> Result<Attempt, Error> {
        let existed = body.is_some();
        let current = body.map(|b| self.decode(key, &b)).transpose()?;
        // Not under the deadline: a decision may hash backup codes, which
        // is no fault of the database.
        let write = decide(current);
        let (stmt, body) = match &write {
            Write::Keep => (None, None),
            Write::Delete if !existed => (None, None),
            Write::Put(rec) => {
                if rec.user != key {
                    return Err(Error::Corrupt {
                        user: key.into(),
                        reason: format!("a decision filed a record of {:?} under it", rec.user),
                    });
                }
                let stmt = if existed { &c.st.update } else { &c.st.insert };
                (
                    Some(stmt),
                    Some((self.encode(key, rec)?, as_i64(rec.updated_at))),
                )
            }
            Write::Delete => (Some(&c.st.delete), None),
        };
        let written = self
            .within(async {
                let err = |e: tokio_postgres::Error| db_error(&e);
                let Some(stmt) = stmt else {
                    c.client.batch_execute("COMMIT").await.map_err(err)?;
                    return Ok(None);
                };
                let one: [&(dyn ToSql + Sync); 1] = [&key];
                let three: [&(dyn ToSql + Sync); 3];
                let params: &[&(dyn ToSql + Sync)] = match &body {
                    Some((bytes, updated)) => {
                        three = [&key, bytes, updated];
                        &three
                    }
                    None => &one,
                };
                // Sent together: the write and its commit, one round trip.
                let (n, committed) = tokio::join!(
                    c.client.execute(stmt, params),
                    c.client.batch_execute("COMMIT")
                );
                let n = n.map_err(err)?;
                committed.map_err(err)?;
                Ok(Some(n))
            })
            .await?;
        match written {
            // An insert that found the row already there (another host
            // made it since our read): nothing was written.
            Some(0) if !existed => Ok(Attempt::LostInsert),
            _ => Ok(Attempt::Done),
        }
    }
}

impl SourceCounter for PostgresStore {
    fn blocked_until(
        &self,
        cfg: &LockoutConfig,
        source: &str,
        now: u64,
    ) -> Result<Option<u64>, Error> {
        if cfg.source_max_failures == 0 || source.is_empty() {
            return Ok(None);
        }
        let row = self.call(async {
            let c = self.pool.get().await?;
            let row = c
                .client
                .query_opt(&c.st.source_get, &[&source])
                .await
                .map_err(|e| db_error(&e))?;
            c.release();
            Ok(row)
        })?;
        let Some(row) = row else { return Ok(None) };
        let (start, count): (i64, i32) = (row.get(0), row.get(1));
        Ok(window_blocks(
            cfg,
            start.max(0) as u64,
            count.max(0) as u32,
            now,
        ))
    }

    fn failure(&self, cfg: &LockoutConfig, source: &str, now: u64) -> Result<bool, Error> {
        if cfg.source_max_failures == 0 || source.is_empty() {
            return Ok(false);
        }
        let (now_i, window) = (as_i64(now), as_i64(cfg.source_window_secs));
        let count: i32 = self.call(async {
            let c = self.pool.get().await?;
            let row = c
                .client
                .query_one(&c.st.source_fail, &[&source, &now_i, &window])
                .await
                .map_err(|e| db_error(&e))?;
            if row.get::<_, i32>(0) == 1 {
                // A new window: forget sources whose windows ended, so the
                // table stays as small as the current attacks.
                c.client
                    .execute(
                        // Typed: `$1 - $2` alone is ambiguous to the server.
                        "DELETE FROM otpgate_sources WHERE window_start < $1::bigint - $2::bigint",
                        &[&now_i, &window],
                    )
                    .await
                    .map_err(|e| db_error(&e))?;
            }
            let n = row.get(0);
            c.release();
            Ok(n)
        })?;
        Ok(count.max(0) as u32 == cfg.source_max_failures)
    }
}
