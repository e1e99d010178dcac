//! The storage contract as tests: the same test code runs against every
//! implementation (`MemoryStore` and `LocalStore` here; `PostgresStore` in
//! tests/tests/store_postgres.rs, against a real server, through
//! [`SUITE`]). What the engine relies on is exactly what is checked here.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{LocalStore, MemoryStore, Store, Write};
use crate::error::Error;
use crate::record::UserRecord;

/// Makes a fresh, empty store; the returned value keeps its backing (a
/// temporary directory, a database) alive.
pub type Factory<'a> = &'a dyn Fn() -> (Arc<dyn Store>, Box<dyn std::any::Any>);

/// One test of the contract.
pub type Check = fn(Factory);

/// Every test of the contract, by name.
pub const SUITE: &[(&str, Check)] = &[
    (
        "concurrent_updates_are_atomic",
        concurrent_updates_are_atomic,
    ),
    ("a_mark_is_taken_once", a_mark_is_taken_once),
    ("lockout_is_exact_under_races", lockout_is_exact_under_races),
    ("keep_delete_remove_and_list", keep_delete_remove_and_list),
    (
        "bad_keys_and_misfiled_records_are_refused",
        bad_keys_and_misfiled_records_are_refused,
    ),
];

pub fn memory() -> (Arc<dyn Store>, Box<dyn std::any::Any>) {
    (Arc::new(MemoryStore::new()), Box::new(()))
}

pub fn local() -> (Arc<dyn Store>, Box<dyn std::any::Any>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalStore::open(&dir.path().join("state")).expect("open");
    (Arc::new(store), Box::new(dir))
}

fn rec(key: &str) -> UserRecord {
    UserRecord::new(key, 1)
}

/// Many writers, one record: every increment lands (no lost update).
pub fn concurrent_updates_are_atomic(make: Factory) {
    let (store, _keep) = make();
    let threads = 16;
    let each = 25;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let store = Arc::clone(&store);
            s.spawn(move || {
                for _ in 0..each {
                    store
                        .update("uid:1001", &mut |r| {
                            let mut r = r.unwrap_or_else(|| rec("uid:1001"));
                            r.failures += 1;
                            Write::Put(r)
                        })
                        .expect("update");
                }
            });
        }
    });
    let r = store.get("uid:1001").unwrap().expect("record");
    assert_eq!(r.failures, threads * each);
}

/// A one-time mark (a replay mark, a used backup code): of many racing
/// attempts to take it, exactly one sees it free.
pub fn a_mark_is_taken_once(make: Factory) {
    let (store, _keep) = make();
    store
        .update("uid:7", &mut |_| Write::Put(rec("uid:7")))
        .unwrap();
    let winners = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..32 {
            let (store, winners) = (Arc::clone(&store), &winners);
            s.spawn(move || {
                let mut won = false;
                store
                    .update("uid:7", &mut |r| {
                        let mut r = r.expect("exists");
                        won = r.lock_streak == 0;
                        if won {
                            r.lock_streak = 1;
                            Write::Put(r)
                        } else {
                            Write::Keep
                        }
                    })
                    .unwrap();
                if won {
                    winners.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(winners.load(Ordering::SeqCst), 1);
}

/// Lockout exactness: with a limit of 5, 50 racing failures leave exactly
/// 5 counted before the lock and the rest refused by it.
pub fn lockout_is_exact_under_races(make: Factory) {
    let (store, _keep) = make();
    let judged = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..50 {
            let (store, judged) = (Arc::clone(&store), &judged);
            s.spawn(move || {
                let mut counted = false;
                store
                    .update("uid:9", &mut |r| {
                        let mut r = r.unwrap_or_else(|| rec("uid:9"));
                        counted = r.locked_until == 0;
                        if !counted {
                            return Write::Keep;
                        }
                        r.failures += 1;
                        if r.failures >= 5 {
                            r.locked_until = u64::MAX;
                        }
                        Write::Put(r)
                    })
                    .unwrap();
                if counted {
                    judged.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(judged.load(Ordering::SeqCst), 5);
    assert_eq!(store.get("uid:9").unwrap().unwrap().failures, 5);
}

/// Keep writes nothing; Delete removes; a removed record is gone for get,
/// keys and list; remove says whether there was one.
pub fn keep_delete_remove_and_list(make: Factory) {
    let (store, _keep) = make();
    store.update("uid:1", &mut |_| Write::Keep).unwrap();
    assert!(store.get("uid:1").unwrap().is_none());
    for k in ["uid:2", "uid:1", "alice"] {
        store.update(k, &mut |_| Write::Put(rec(k))).unwrap();
    }
    assert_eq!(store.keys().unwrap(), ["alice", "uid:1", "uid:2"]);
    let listed: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|(k, r)| {
            assert_eq!(r.expect("readable").user, k);
            k
        })
        .collect();
    assert_eq!(listed, ["alice", "uid:1", "uid:2"]);
    store.update("uid:1", &mut |_| Write::Delete).unwrap();
    assert!(store.get("uid:1").unwrap().is_none());
    assert!(store.remove("uid:2").unwrap());
    assert!(!store.remove("uid:2").unwrap());
    assert_eq!(store.keys().unwrap(), ["alice"]);
}

/// A decision that files a record under another key is refused, and keys
/// that could name a path are refused before anything is touched.
pub fn bad_keys_and_misfiled_records_are_refused(make: Factory) {
    let (store, _keep) = make();
    let r = store.update("uid:3", &mut |_| Write::Put(rec("uid:4")));
    assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
    assert!(store.get("uid:3").unwrap().is_none());
    assert!(store.get("uid:4").unwrap().is_none());
    for bad in ["../x", "a/b", "", ".", "uid:1/../x"] {
        assert!(store.get(bad).is_err(), "{bad}");
        assert!(store.update(bad, &mut |_| Write::Keep).is_err(), "{bad}");
        assert!(store.remove(bad).is_err(), "{bad}");
    }
}

#[cfg(test)]
macro_rules! every_store {
    ($($test:ident),* $(,)?) => {
        mod memory_store {
            $(#[test] fn $test() { super::$test(&super::memory) })*
        }
        mod local_store {
            $(#[test] fn $test() { super::$test(&super::local) })*
        }
    };
}

#[cfg(test)]
every_store!(
    concurrent_updates_are_atomic,
    a_mark_is_taken_once,
    lockout_is_exact_under_races,
    keep_delete_remove_and_list,
    bad_keys_and_misfiled_records_are_refused,
);

/// Durability where the engine promises it: what `update` acknowledged
/// is there after the store is dropped without a checkpoint (a crash) and
/// opened again, also when the user files were lost.
#[cfg(test)]
#[test]
fn local_updates_survive_a_crash_without_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    {
        let store = LocalStore::open(&path).unwrap();
        store
            .update("uid:5", &mut |_| {
                let mut r = rec("uid:5");
                r.failures = 3;
                Write::Put(r)
            })
            .unwrap();
        // Dropped here without `checkpoint`: what a kill leaves.
    }
    // No file: a save is a journal entry until a checkpoint writes it out.
    assert!(!path.join("users").join("uid:5.json").exists());
    let store = LocalStore::open(&path).unwrap();
    assert_eq!(store.get("uid:5").unwrap().unwrap().failures, 3);
}
