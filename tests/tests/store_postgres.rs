//! The storage contract on a real PostgreSQL server: the conformance suite
//! every store passes, then what only a shared store must do: two stores
//! (two hosts) racing on one database, and a database that goes away and
//! comes back under a running store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use otpgate_tests::pg::{FleetDb, PgServer};
use otpgated::config::{Backend, StorageConfig};
use otpgated::crypto::MasterKey;
use otpgated::error::Error;
use otpgated::record::UserRecord;
use otpgated::store::{conformance, Opened, PostgresStore, Store, Write};

fn storage(fleet: &FleetDb, port: u16, db: &str) -> StorageConfig {
    let mut c = otpgated::config::Config::default().storage;
    c.backend = Backend::Postgres;
    c.url = Some(format!(
        "postgres://otpgate@127.0.0.1:{port}/{db}?sslmode=disable"
    ));
    c.password_file = Some(fleet.password_file().to_owned());
    c.timeout_ms = 5_000;
    c
}

fn open(cfg: &StorageConfig, key: &MasterKey) -> PostgresStore {
    match PostgresStore::open(cfg, key) {
        Ok(Opened { store, down: None }) => store,
        Ok(Opened {
            down: Some(why), ..
        }) => panic!("database down: {why}"),
        Err(e) => panic!("open: {e}"),
    }
}

#[test]
fn postgres_store_passes_the_storage_conformance_suite() {
    let pg = PgServer::start();
    let fleet = pg.fleet_db();
    let key = MasterKey::generate().unwrap();
    let n = AtomicU32::new(0);
    // A fresh database for every check, as the other stores get a fresh
    // directory.
    let fresh = || -> (Arc<dyn Store>, Box<dyn std::any::Any>) {
        let db = format!("conformance_{}", n.fetch_add(1, Ordering::SeqCst));
        pg.psql("postgres", &format!("CREATE DATABASE {db} OWNER otpgate"));
        let store: Arc<dyn Store> = Arc::new(open(&storage(&fleet, pg.port(), &db), &key));
        (store, Box::new(()))
    };
    for (name, check) in conformance::SUITE {
        eprintln!("conformance: {name}");
        check(&fresh);
    }
}

/// Two stores on one database are two hosts: 2 × 40 racing failures with
/// a limit of 5 count exactly 5, and a one-time mark is taken once.
#[test]
fn two_stores_on_one_database_never_both_win() {
    let pg = PgServer::start();
    let fleet = pg.fleet_db();
    let key = MasterKey::generate().unwrap();
    let cfg = storage(&fleet, pg.port(), "otpgate");
    let hosts = [open(&cfg, &key), open(&cfg, &key)];
    let (counted, marks) = (AtomicU32::new(0), AtomicU32::new(0));
    std::thread::scope(|s| {
        for i in 0..80 {
            let (store, counted, marks) = (&hosts[i % 2], &counted, &marks);
            s.spawn(move || {
                let mut won = false;
                store
                    .update("uid:4242", &mut |r| {
                        let mut r = r.unwrap_or_else(|| UserRecord::new("uid:4242", 1));
                        won = r.locked_until == 0;
                        if !won {
                            return Write::Keep;
                        }
                        r.failures += 1;
                        if r.failures >= 5 {
                            r.locked_until = u64::MAX;
                        }
                        Write::Put(r)
                    })
                    .expect("update");
                if won {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                let mut took = false;
                store
                    .update("uid:4343", &mut |r| {
                        let mut r = r.unwrap_or_else(|| UserRecord::new("uid:4343", 1));
                        took = r.lock_streak == 0;
                        if took {
                            r.lock_streak = 1;
                            Write::Put(r)
                        } else {
                            Write::Keep
                        }
                    })
                    .expect("update");
                if took {
                    marks.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(counted.load(Ordering::SeqCst), 5);
    assert_eq!(marks.load(Ordering::SeqCst), 1);
    for h in &hosts {
        assert_eq!(h.get("uid:4242").unwrap().unwrap().failures, 5);
    }
}

/// What the database's administrator can see of a record: its key and
/// times, never its contents; a row moved to another key does not open.
#[test]
fn rows_are_sealed_and_bound_to_their_key() {
    let pg = PgServer::start();
    let fleet = pg.fleet_db();
    let key = MasterKey::generate().unwrap();
    let store = open(&storage(&fleet, pg.port(), "otpgate"), &key);
    for k in ["uid:7001", "uid:7002"] {
        store
            .update(k, &mut |_| {
                let mut r = UserRecord::new(k, 1);
                r.name = Some("carol-the-user".into());
                r.failures = 3;
                Write::Put(r)
            })
            .unwrap();
    }
    let dump = String::from_utf8_lossy(&pg.dump("otpgate")).to_string();
    assert!(dump.contains("uid:7001"), "the key is the row's name");
    for plain in ["carol-the-user", "locked_until", "lock_streak", "\"user\""] {
        assert!(!dump.contains(plain), "{plain} readable in the dump");
    }
    // The database's administrator swaps two rows: neither opens.
    pg.psql(
        "otpgate",
        "UPDATE otpgate_records SET body = (SELECT body FROM otpgate_records WHERE key = 'uid:7002') WHERE key = 'uid:7001'",
    );
    let e = store.get("uid:7001").unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_eq!(store.get("uid:7002").unwrap().unwrap().failures, 3);
}

/// Down at start: the store opens (the daemon must answer, with refusals);
/// calls fail as "down"; once the server is back, they work without a new
/// store, and again after a restart under a running store.
#[test]
fn a_database_that_goes_away_and_comes_back() {
    let mut pg = PgServer::start();
    let fleet = pg.fleet_db();
    let key = MasterKey::generate().unwrap();
    let mut cfg = storage(&fleet, pg.port(), "otpgate");
    cfg.timeout_ms = 2_000;
    pg.stop();
    let opened = PostgresStore::open(&cfg, &key).expect("opens while the database is down");
    assert!(opened.down.is_some());
    let store = opened.store;
    let e = store.get("uid:1").unwrap_err();
    assert!(matches!(e, Error::DatabaseDown(_)), "{e}");
    pg.restart();
    store
        .update("uid:1", &mut |_| Write::Put(UserRecord::new("uid:1", 1)))
        .expect("works once the database is back");
    pg.restart();
    // The pooled connection died with the old server: the first call may
    // fail as down, never as anything else; the next one works.
    match store.get("uid:1") {
        Ok(r) => assert!(r.is_some()),
        Err(e) => assert!(matches!(e, Error::DatabaseDown(_)), "{e}"),
    }
    assert!(store.get("uid:1").unwrap().is_some());
}

/// The deadline is the database's: a decision that takes longer than
/// `timeout_ms` itself (hashing ten backup codes at an enrolment) still
/// lands, while a database that does not answer is refused in time.
#[test]
fn the_deadline_covers_the_database_not_the_decision() {
    let mut pg = PgServer::start();
    let fleet = pg.fleet_db();
    let key = MasterKey::generate().unwrap();
    let mut cfg = storage(&fleet, pg.port(), "otpgate");
    cfg.timeout_ms = 300;
    let store = open(&cfg, &key);
    store
        .update("uid:9001", &mut |_| {
            std::thread::sleep(std::time::Duration::from_millis(600));
            Write::Put(UserRecord::new("uid:9001", 1))
        })
        .expect("a slow decision is not a slow database");
    assert!(store.get("uid:9001").unwrap().is_some());
    pg.freeze();
    let started = std::time::Instant::now();
    let e = store.get("uid:9001").unwrap_err();
    let took = started.elapsed();
    pg.thaw();
    assert!(matches!(e, Error::DatabaseDown(_)), "{e}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

/// Eight daemons starting at once on an empty database: all of them open
/// it, the schema is made once, and one key check is kept.
#[test]
fn daemons_starting_together_make_the_schema_once() {
    let pg = PgServer::start();
    let fleet = pg.fleet_db();
    let key = MasterKey::generate().unwrap();
    let cfg = storage(&fleet, pg.port(), "otpgate");
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                drop(open(&cfg, &key));
            });
        }
    });
    assert_eq!(
        pg.psql("otpgate", "SELECT count(*) FROM otpgate_schema"),
        "1"
    );
    assert_eq!(pg.psql("otpgate", "SELECT count(*) FROM otpgate_meta"), "1");
}
