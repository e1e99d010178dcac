//! `MemoryStore`: records in memory, for tests of the engine and of the
//! storage contract. Records are kept serialised, so what a test reads back
//! went through the same encoding as a record on disk.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::Error;
use crate::record::UserRecord;

use super::{check_key, Store, Write};

#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Replaces the stored bytes of `key` as they are: a test's way to
    /// plant a corrupt record.
    pub fn put_raw(&self, key: &str, bytes: &[u8]) {
        self.lock().insert(key.to_string(), bytes.to_vec());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<UserRecord, Error> {
    UserRecord::from_bytes(key, bytes).map_err(|reason| Error::Corrupt {
        user: key.to_string(),
        reason,
    })
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<UserRecord>, Error> {
        check_key(key)?;
        self.lock().get(key).map(|b| decode(key, b)).transpose()
    }

    fn update(
        &self,
        key: &str,
        decide: &mut dyn FnMut(Option<UserRecord>) -> Write,
    ) -> Result<(), Error> {
        check_key(key)?;
        // One lock for the whole map: atomic, and enough for tests.
        let mut map = self.lock();
        let current = map.get(key).map(|b| decode(key, b)).transpose()?;
        match decide(current) {
            Write::Keep => {}
            Write::Put(record) => {
                if record.user != key {
                    return Err(Error::Corrupt {
                        user: key.into(),
                        reason: format!("a decision filed a record of {:?} under it", record.user),
                    });
                }
                map.insert(key.to_string(), record.to_bytes());
            }
            Write::Delete => {
                map.remove(key);
            }
        }
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<bool, Error> {
        check_key(key)?;
        Ok(self.lock().remove(key).is_some())
    }

    fn keys(&self) -> Result<Vec<String>, Error> {
        Ok(self.lock().keys().cloned().collect())
    }
}
