//! A small pool of database connections, each checked when it is made
//! (a primary, durable commits) and given its prepared statements.
//!
//! A connection goes back to the pool only after a transaction ended
//! cleanly (`Conn::release`); one dropped on an error, a timeout or a
//! cancelled call is closed, so no later call can inherit a half-done
//! transaction, and the server rolls that one back.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::schema;
use super::url::DbUrl;
use crate::crypto::MasterKey;
use crate::error::Error;

/// The statements every call uses, prepared once per connection so a
/// call costs no extra round trip to parse them.
pub struct Statements {
    pub get: Statement,
    pub lock: Statement,
    pub insert: Statement,
    pub update: Statement,
    pub delete: Statement,
    pub source_get: Statement,
    pub source_fail: Statement,
}

pub struct Session {
    pub client: Client,
    pub st: Statements,
}

pub struct Pool {
    url: DbUrl,
    password: Option<zeroize::Zeroizing<String>>,
    tls: MakeRustlsConnect,
    idle: Mutex<Vec<Session>>,
    slots: Arc<Semaphore>,
    /// Set once the schema is current and the key is the fleet's; the
    /// first connection that gets through does it (also when the database
    /// was down when the daemon started).
    ready: tokio::sync::OnceCell<()>,
    key: MasterKey,
}

/// A session lent out; see the module documentation for how it returns.
pub struct Conn<'a> {
    session: Option<Session>,
    pool: &'a Pool,
    _slot: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("present until released")
    }
}

impl Conn<'_> {
    /// The transaction ended: the session may serve the next call.
    pub fn release(mut self) {
        if let Some(s) = self.session.take() {
            self.pool.lock().push(s);
        }
    }
}

impl Pool {
    pub fn new(
        url: DbUrl,
        password: Option<zeroize::Zeroizing<String>>,
        tls: MakeRustlsConnect,
        size: usize,
        key: MasterKey,
    ) -> Pool {
        Pool {
            url,
            password,
            tls,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(size.max(1))),
            ready: tokio::sync::OnceCell::new(),
            key,
        }
    }

    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Session>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session: an idle one whose connection is still up, else a new one.
    pub async fn get(&self) -> Result<Conn<'_>, Error> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| Error::Database("the connection pool is closed".into()))?;
        loop {
            let Some(s) = self.lock().pop() else { break };
            if !s.client.is_closed() {
                return Ok(Conn {
                    session: Some(s),
                    pool: self,
                    _slot: slot,
                });
            }
        }
        let session = self.connect().await?;
        Ok(Conn {
            session: Some(session),
            pool: self,
            _slot: slot,
        })
    }

    /// Forgets every idle session (after the server went away).
    pub fn clear(&self) {
        self.lock().clear();
    }

    async fn connect(&self) -> Result<Session, Error> {
        let mut config = self.url.config.clone();
        if let Some(p) = &self.password {
            config.password(p.as_bytes());
        }
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(|e| connect_error(&self.url, &e))?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away;
            // the next call then makes a new connection.
            let _ = connection.await;
        });
        schema::check_session(&client, &self.url).await?;
        self.ready
            .get_or_try_init(|| schema::migrate(&client, &self.key))
            .await?;
        let st = Statements::prepare(&client)
            .await
            .map_err(|e| db_error(&e))?;
        Ok(Session { client, st })
    }
}

impl Statements {
    async fn prepare(c: &Client) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            get: c.prepare("SELECT body FROM otpgate_records WHERE key = $1").await?,
            lock: c
                .prepare("SELECT body FROM otpgate_records WHERE key = $1 FOR UPDATE")
                .await?,
            insert: c
                .prepare(
                    "INSERT INTO otpgate_records (key, body, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .await?,
            update: c
                .prepare(
                    "UPDATE otpgate_records SET body = $2, updated_at = $3, revision = revision + 1 \
                     WHERE key = $1",
                )
                .await?,
            delete: c.prepare("DELETE FROM otpgate_records WHERE key = $1").await?,
            source_get: c
                .prepare("SELECT window_start, failures FROM otpgate_sources WHERE source = $1")
                .await?,
            // One statement: two hosts counting the same source at once
            // both land, and the window restarts exactly once.
            source_fail: c
                .prepare(
                    "INSERT INTO otpgate_sources AS s (source, window_start, failures) \
                     VALUES ($1, $2, 1) ON CONFLICT (source) DO UPDATE SET \
                     failures = CASE WHEN $2 >= s.window_start + $3 THEN 1 ELSE s.failures + 1 END, \
                     window_start = CASE WHEN $2 >= s.window_start + $3 THEN $2 ELSE s.window_start END \
                     RETURNING failures",
                )
                .await?,
        })
    }
}

/// A failure to connect, worded for the one who must fix it.
pub fn connect_error(url: &DbUrl, e: &tokio_postgres::Error) -> Error {
    let message = format!("cannot connect to {}: {}", url.server(), full_error(e));
    if is_down(e) {
        Error::DatabaseDown(message)
    } else {
        Error::Database(message)
    }
}

pub fn db_error(e: &tokio_postgres::Error) -> Error {
    if is_down(e) {
        Error::DatabaseDown(full_error(e))
    } else {
        Error::Database(full_error(e))
    }
}

/// Whether the database is away (down, restarting, the network cut), as
/// opposed to refusing us (credentials, TLS, permissions, a bug): only the
/// first may pass by itself.
fn is_down(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        // Class 08: connection exception; 57P0x: shutting down, starting up.
        let code = db.code().code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
                    | HostUnreachable
                    | NetworkUnreachable
                    | NotFound
            );
        }
        source = cause.source();
    }
    false
}

/// tokio-postgres's own message plus its cause (the TLS or I/O error),
/// and the server's message where there is one.
fn full_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
