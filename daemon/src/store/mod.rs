//! Where records live, behind one contract that a second engine (a
//! PostgreSQL database a fleet shares) implements as well as the embedded
//! one.
//!
//! The contract:
//! - `update(key, decide)` is an atomic read-modify-write of one account's
//!   record against every other writer: other tasks of this daemon, and for
//!   a shared store other daemons. `decide` sees the record as it is and
//!   says what to write; it may be called more than once (a store that
//!   compares and swaps calls it again after losing a race), so it must be
//!   pure. `update` returns only once what was decided is durable.
//! - `get` reads a record without changing it; `keys`, `list` and `stats`
//!   answer for every record at once, so a database can do each in one
//!   query.
//! - `remove` deletes a record whatever state it is in (also one that
//!   cannot be read): the administrator's way out of a corrupt record.
//!
//! Implementations: `LocalStore` (files and a journal, one daemon per
//! directory by a lock on it), `PostgresStore` (one database a fleet
//! shares), `MemoryStore` (tests), and the conformance suite that every
//! implementation must pass (`conformance`: the unit tests run it on the
//! first two, the end-to-end tests on PostgreSQL against a real server).

mod local;
mod memory;
pub mod migrate;
mod postgres;

#[cfg(any(test, feature = "conformance"))]
#[doc(hidden)]
pub mod conformance;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use otpgate_proto::valid_user_name;

use crate::accounts::uid_of_key;
use crate::error::Error;
use crate::lockout::SourceCounter;
use crate::record::UserRecord;

pub use local::LocalStore;
pub use memory::MemoryStore;
pub use postgres::{DbUrl, Opened, PostgresStore, TlsMode};

/// What a decision writes back. One lives for one transaction, so the
/// record is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Write {
    /// Nothing changed.
    Keep,
    /// Replace the record with this one (whose `user` is the key).
    Put(UserRecord),
    /// Remove the record.
    Delete,
}

/// Every record by key, or for one that cannot be read, why.
pub type Listing = Vec<(String, Result<UserRecord, Error>)>;

pub trait Store: Send + Sync {
    /// The record under `key`, `None` if there is none. A record that exists
    /// but cannot be read is `Error::Corrupt` for that key only.
    fn get(&self, key: &str) -> Result<Option<UserRecord>, Error>;

    /// Atomically: reads the record, asks `decide`, writes what it says;
    /// durable when it returns. See the module documentation.
    fn update(
        &self,
        key: &str,
        decide: &mut dyn FnMut(Option<UserRecord>) -> Write,
    ) -> Result<(), Error>;

    /// Removes whatever is stored under `key`, readable or not; whether
    /// there was anything.
    fn remove(&self, key: &str) -> Result<bool, Error>;

    /// Every key with a record, readable or not, sorted.
    fn keys(&self) -> Result<Vec<String>, Error>;

    /// Every record, or for one that cannot be read, why.
    fn list(&self) -> Result<Listing, Error> {
        Ok(self
            .keys()?
            .into_iter()
            .filter_map(|k| match self.get(&k) {
                Ok(Some(r)) => Some((k, Ok(r))),
                Ok(None) => None,
                Err(e) => Some((k, Err(e))),
            })
            .collect())
    }

    /// Whether other daemons (other hosts) share these records: their
    /// uid keys then mean the same account only if every host agrees.
    fn shared(&self) -> bool {
        false
    }

    /// For a store several daemons share: its per-source failure counts,
    /// so the limit holds across the fleet. `None`: each daemon counts in
    /// its own memory.
    fn sources(&self) -> Option<&dyn SourceCounter> {
        None
    }

    /// Called at a clean stop: afterwards the store needs no recovery at
    /// the next start.
    fn checkpoint(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The temporary file of a local save is `.tmp-KEY-` and 12 hex digits.
pub(crate) const TMP_PREFIX: &str = ".tmp-";
/// The longest key whose temporary file name still fits the 255 bytes a
/// file name may have.
pub const MAX_KEY_LEN: usize = 255 - TMP_PREFIX.len() - 1 - 12;

/// A record's key: a uid key (`accounts::key_of`), or the user name that
/// records were filed under before they were keyed by uid. Either is what
/// keeps a key from naming a path outside the directory.
pub fn valid_key(key: &str) -> bool {
    key.len() <= MAX_KEY_LEN && (uid_of_key(key).is_some() || valid_user_name(key))
}

/// `valid_key` as the error every store answers for a key it refuses.
pub(crate) fn check_key(key: &str) -> Result<(), Error> {
    if valid_key(key) {
        Ok(())
    } else {
        Err(Error::Corrupt {
            user: key.escape_debug().to_string(),
            reason: "not a valid key".into(),
        })
    }
}

/// One mutex per key with a live update. Entries are weak so idle keys
/// cost nothing; dead ones are swept as the map grows.
#[derive(Default)]
pub(crate) struct KeyLocks(Mutex<HashMap<String, Weak<Mutex<()>>>>);

impl KeyLocks {
    pub(crate) fn get(&self, key: &str) -> Arc<Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = map.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(Mutex::new(()));
        map.insert(key.to_string(), Arc::downgrade(&lock));
        lock
    }
}
