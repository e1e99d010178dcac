//! Exactness under concurrency, against the real otpgated:
//! N threads, each with its own bus connection, released together by a
//! barrier, all calling `Auth.Verify` for the same user.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use otpgate_proto::{dict_u64, AuthProxy, OwnedDict};
use otpgate_tests::*;
use serde_json::Value;
use zbus::Variant;

const PERIOD: u64 = 30;

/// `n` parallel `Verify(user, code)` calls; the answers in no order.
fn parallel_verify(bus: &Bus, user: &str, code: &str, n: usize) -> Vec<(String, OwnedDict)> {
    let barrier = Arc::new(Barrier::new(n));
    // dbus-daemon drops connections beyond its limit of unauthenticated
    // ones (64 by default): connect one at a time, call all at once.
    let connecting = Arc::new(Mutex::new(()));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, connecting) = (Arc::clone(&barrier), Arc::clone(&connecting));
            let (address, user, code) = (bus.address.clone(), user.to_string(), code.to_string());
            thread::spawn(move || {
                let conn = {
                    let _one_at_a_time = connecting.lock().unwrap_or_else(|p| p.into_inner());
                    zruntime::block_on(async {
                        let conn = zbus::connection::Builder::address(address.as_str())
                            .method_timeout(std::time::Duration::from_secs(60))
                            .build()
                            .await?;
                        let proxy = AuthProxy::new(&conn).await?;
                        zbus::Result::Ok((conn, proxy))
                    })
                    .expect("connect to the test bus")
                };
                barrier.wait();
                let (_conn, proxy) = conn;
                zruntime::block_on(async {
                    proxy
                        .verify(&user, &code, HashMap::<&str, Variant<'_>>::new())
                        .await
                })
                .expect("Verify answered")
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("caller thread"))
        .collect()
}

fn count(answers: &[(String, OwnedDict)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (r, _) in answers {
        *m.entry(r.clone()).or_default() += 1;
    }
    m
}

/// The record as its file holds it after a clean stop: a save is a journal
/// entry, and the file is written at a checkpoint, which a stop makes.
fn record(d: &mut Daemon, bus: &Bus, user: &str) -> Value {
    d.restart(bus);
    let bytes = std::fs::read(d.record_path(user)).expect("read record");
    serde_json::from_slice(&bytes).expect("record is JSON")
}

fn expect_counts(got: &BTreeMap<String, usize>, want: &[(&str, usize)]) {
    let want: BTreeMap<String, usize> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, &want);
}

#[test]
fn a_hundred_parallel_wrong_codes_lock_after_exactly_max_failures() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "[lockout]\nmax_failures = 5\nduration_secs = 900\n");
    let user = test_user("otpgd-conc-wrong");
    let e = enroll(&bus, &user.name);
    let wrong = wrong_code(&e.secret);
    let start = now();

    let answers = parallel_verify(&bus, &user.name, &wrong, 100);
    let counts = count(&answers);
    eprintln!("100 wrong codes: {counts:?}");
    expect_counts(&counts, &[("invalid", 5), ("locked", 95)]);

    // Exactly one answer is the one that locked, and every "locked" names
    // the same end.
    let ends: Vec<u64> = answers
        .iter()
        .filter_map(|(_, i)| dict_u64(i, "locked_until"))
        .collect();
    assert_eq!(ends.len(), 96, "the locking invalid and the 95 locked");
    let until = ends[0];
    assert!(ends.iter().all(|&t| t == until), "{ends:?}");
    assert!(until >= start + 900 && until <= now() + 900, "{until}");

    let rec = record(&mut d, &bus, &user.name);
    assert_eq!(rec["failures"], 5, "{rec}");
    assert_eq!(rec["locked_until"], until, "{rec}");
    let st = call(&bus, "Manager", "Status", &[&user.name]).ok();
    assert_eq!(st["locked"], true, "{st}");
    assert_eq!(st["failures"], 5, "{st}");
}

#[test]
fn fifty_parallel_uses_of_one_valid_code_give_exactly_one_ok() {
    let bus = Bus::start();
    // Room for 49 replays without a lock: every answer is about the code.
    let mut d = Daemon::start(&bus, "[lockout]\nmax_failures = 100\n");
    let user = test_user("otpgd-conc-valid");
    let e = enroll(&bus, &user.name);
    let step = e.confirmed_at / PERIOD + 1;
    let code = oathtool_at(&e.secret, step * PERIOD);

    let answers = parallel_verify(&bus, &user.name, &code, 50);
    let counts = count(&answers);
    eprintln!("50 uses of one code: {counts:?}");
    expect_counts(&counts, &[("ok", 1), ("replayed", 49)]);

    let rec = record(&mut d, &bus, &user.name);
    assert_eq!(rec["factors"][0]["last_step"], step, "{rec}");
    assert_eq!(rec["failures"], 49, "each replay is a failure: {rec}");
    assert_eq!(rec["locked_until"], 0, "{rec}");
}

#[test]
fn fifty_parallel_uses_of_one_valid_code_with_the_default_lockout() {
    let bus = Bus::start();
    let mut d = Daemon::start(&bus, "[lockout]\nmax_failures = 5\n");
    let user = test_user("otpgd-conc-valid5");
    let e = enroll(&bus, &user.name);
    let step = e.confirmed_at / PERIOD + 1;
    let code = oathtool_at(&e.secret, step * PERIOD);

    let answers = parallel_verify(&bus, &user.name, &code, 50);
    let counts = count(&answers);
    eprintln!("50 uses of one code, max_failures 5: {counts:?}");
    // The first judged is ok; replays are failed codes and count: five of
    // them lock the user, the rest are refused as locked.
    expect_counts(&counts, &[("locked", 44), ("ok", 1), ("replayed", 5)]);

    let rec = record(&mut d, &bus, &user.name);
    assert_eq!(rec["factors"][0]["last_step"], step, "{rec}");
    assert_eq!(rec["failures"], 5, "{rec}");
    assert!(rec["locked_until"].as_u64().unwrap_or(0) > now(), "{rec}");
}
