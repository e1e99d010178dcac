//! Criterion micro-benchmarks of what one login costs inside otpgated:
//!
//! - `totp/*`: `totp::matched_step` with window 1, right and wrong code;
//! - `record/*`: `LocalStore` load, `crypto::open`, durable `save` (one
//!   journal append and its flush; the file is written at checkpoints), on
//!   a temporary directory on the same disk as /tmp;
//! - `fs/*`: the durable-write patterns on this disk, for one 700-byte
//!   record: otpgated's (new file, fsync, rename, fsync of the directory),
//!   google-authenticator's (the same without the directory fsync), and two
//!   alternatives (overwrite in place + fdatasync; append + fdatasync);
//! - `backup/find`: one argon2id evaluation against a set of 10 codes;
//! - `bus/*`: the real service in-process (`otpgated::serve`) on a private
//!   dbus-daemon with the real policy: Challenge and Verify on one kept
//!   connection, and Verify through pam_otpgate's own client (a fresh
//!   connection and the owner checks per call, as the module does).
//!
//! `cargo bench -p otpgate-bench` (as root: the service checks the caller's
//! uid and the bus policy lets only root own the name).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use otpgate_tests::inproc::{InProcess, T0};
use otpgated::backup;
use otpgated::clock::Clock;
use otpgated::crypto::{self, MasterKey};
use otpgated::record::{Factor, TotpFactor, UserRecord};
use otpgated::store::LocalStore;
use otpgated::totp::{self, Params};
use totp_rs::Algorithm;

const SECRET: &[u8; 20] = b"0123456789abcdefghij";

fn params() -> Params {
    Params {
        algorithm: Algorithm::SHA1,
        digits: 6,
        period: 30,
    }
}

fn code_at(t: u64) -> String {
    let b32 = totp::base32(SECRET);
    let g = otpgate_bench::totp(&b32).expect("a valid secret");
    otpgate_bench::code_at_step(&g, t / 30)
}

/// An enrolled record for `user`, sealed under `key`.
fn record(key: &MasterKey, user: &str) -> UserRecord {
    let id = "0011223344556677";
    let mut r = UserRecord::new(user, T0);
    let sealed = crypto::seal(key, user, id, SECRET).expect("seal");
    r.factors = vec![Factor::Totp(TotpFactor::new(id, sealed, T0, "enrolled"))];
    r
}

fn totp_check(c: &mut Criterion) {
    let right = code_at(T0);
    let wrong = otpgate_bench::wrong_code(
        &otpgate_bench::totp(&totp::base32(SECRET)).expect("secret"),
        T0 / 30,
    );
    assert_eq!(
        totp::matched_step(SECRET, params(), 1, &right, T0),
        Some(T0 / 30)
    );
    let mut g = c.benchmark_group("totp");
    g.bench_function("matched_step_window1_right", |b| {
        b.iter(|| totp::matched_step(black_box(SECRET), params(), 1, black_box(&right), T0))
    });
    g.bench_function("matched_step_window1_wrong", |b| {
        b.iter(|| totp::matched_step(black_box(SECRET), params(), 1, black_box(&wrong), T0))
    });
    g.finish();
}

fn record_io(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("state")).expect("store");
    let key = MasterKey::generate().expect("key");
    let rec = record(&key, "benchuser");
    store.save(&rec).expect("save");
    let f = rec.totp().expect("a TOTP factor").clone();
    let mut g = c.benchmark_group("record");
    g.bench_function("load", |b| {
        b.iter(|| store.load(black_box("benchuser")).expect("load"))
    });
    g.bench_function("open_secret", |b| {
        b.iter(|| crypto::open(&key, "benchuser", &f.id, black_box(&f.secret)).expect("open"))
    });
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("save_durable", |b| {
        b.iter(|| store.save(black_box(&rec)).expect("save"))
    });
    g.bench_function("verify_cycle_load_open_check_save", |b| {
        let mut t = T0;
        b.iter(|| {
            t += 30;
            let mut r = store.load("benchuser").expect("load").expect("there");
            let f = r.totp().expect("factor").clone();
            let s = crypto::open(&key, "benchuser", &f.id, &f.secret).expect("open");
            let step = totp::matched_step(&s, params(), 1, &code_at(t), t).expect("matches");
            r.totp_mut().expect("factor").last_step = Some(step);
            store.save(&r).expect("save");
        })
    });
    g.finish();
}

/// A new temporary file `n` in `dir` holding `payload`, not flushed.
fn new_file(dir: &std::path::Path, n: u64, payload: &[u8]) -> (std::path::PathBuf, std::fs::File) {
    use std::io::Write;
    let tmp = dir.join(format!(".tmp-{n}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .expect("create");
    f.write_all(payload).expect("write");
    (tmp, f)
}

fn fs_patterns(c: &mut Criterion) {
    use std::fs::{self, File, OpenOptions};
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let payload = vec![b'x'; 700];
    let mut g = c.benchmark_group("fs");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(8));
    let mut n = 0u64;
    g.bench_function("new_fsync_rename_fsyncdir_otpgated_before_journal", |b| {
        b.iter(|| {
            n += 1;
            let (tmp, f) = new_file(&d, n, &payload);
            f.sync_all().expect("fsync");
            fs::rename(&tmp, d.join("a.json")).expect("rename");
            File::open(&d).expect("dir").sync_all().expect("fsync dir");
        })
    });
    g.bench_function("new_fsync_rename_google_authenticator", |b| {
        b.iter(|| {
            n += 1;
            let (tmp, f) = new_file(&d, n, &payload);
            f.sync_all().expect("fsync");
            fs::rename(&tmp, d.join("b.json")).expect("rename");
        })
    });
    let slot = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(d.join("slots"))
        .expect("slots");
    slot.write_all_at(&[0u8; 8192], 0).expect("preallocate");
    slot.sync_all().expect("fsync");
    g.bench_function("overwrite_in_place_fdatasync", |b| {
        b.iter(|| {
            n += 1;
            slot.write_all_at(&payload, (n % 2) * 4096).expect("pwrite");
            slot.sync_data().expect("fdatasync");
        })
    });
    // otpgated's save since the journal, for one saver alone: the user's
    // file replaced without a flush, the entry written into the reserved
    // journal, one fdatasync (shared when saves come together).
    let journal = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(d.join("reserved"))
        .expect("reserved");
    journal.write_all_at(&[0u8; 1 << 20], 0).expect("reserve");
    journal.sync_all().expect("fsync");
    g.bench_function("new_rename_then_journal_fdatasync_otpgated", |b| {
        b.iter(|| {
            n += 1;
            let (tmp, _unflushed) = new_file(&d, n, &payload);
            fs::rename(&tmp, d.join("c.json")).expect("rename");
            journal
                .write_all_at(&payload, (n % 1000) * 740)
                .expect("pwrite");
            journal.sync_data().expect("fdatasync");
        })
    });
    let mut log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(d.join("journal"))
        .expect("journal");
    g.bench_function("append_fdatasync", |b| {
        b.iter(|| {
            log.write_all(&payload[..100]).expect("append");
            log.sync_data().expect("fdatasync");
        })
    });
    g.finish();
}

fn backup_find(c: &mut Criterion) {
    let key = MasterKey::generate().expect("key");
    let codes = backup::generate(10).expect("codes");
    let set = backup::hash_set(&key, "benchuser", &codes, T0).expect("hash");
    let mut g = c.benchmark_group("backup");
    g.sample_size(20);
    g.bench_function("find_argon2id_10_codes", |b| {
        b.iter(|| backup::find(&key, "benchuser", &set, black_box("0000000000")).expect("find"))
    });
    g.finish();
}

fn bus_round_trip(c: &mut Criterion) {
    use pam_otpgate::client::Daemon as _;
    let bus = otpgate_tests::Bus::start();
    let key_bytes = *MasterKey::generate().expect("key").as_bytes();
    let key = MasterKey::from_bytes(key_bytes);
    let svc = InProcess::builder("[backup_codes]\ncount = 0\n[lockout]\nmax_failures = 100\n")
        .worker_threads(2)
        .key(MasterKey::from_bytes(key_bytes))
        .seed(|store| store.save(&record(&key, "benchuser")).expect("save"))
        .start(&bus);
    let clock = &svc.clock;

    let mut g = c.benchmark_group("bus");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(10));
    // The connection outlives this block_on (zbus then drives it from a
    // helper thread): each call below is one block_on on a kept connection.
    let (conn, auth) = zruntime::block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .build()
            .await
            .expect("connect");
        let auth = otpgate_proto::AuthProxy::new(&conn).await.expect("proxy");
        (conn, auth)
    });
    g.bench_function("challenge_kept_connection", |b| {
        b.iter(|| {
            zruntime::block_on(auth.challenge("benchuser", otpgate_proto::Dict::new()))
                .expect("challenge")
        })
    });
    g.bench_function("verify_valid_kept_connection", |b| {
        b.iter(|| {
            clock.advance(30);
            let code = code_at(clock.now());
            let (r, _) =
                zruntime::block_on(auth.verify("benchuser", &code, otpgate_proto::Dict::new()))
                    .expect("verify");
            assert_eq!(r, "ok");
        })
    });
    drop(auth);
    zruntime::block_on(async {
        let _ = conn.close().await;
    });
    let client = pam_otpgate::client::BusDaemon::new(&bus.address, Duration::from_secs(5));
    let ctx = pam_otpgate::client::Context::default();
    g.bench_function("verify_valid_module_client", |b| {
        b.iter(|| {
            clock.advance(30);
            let code = code_at(clock.now());
            let r = client.verify("benchuser", &code, &ctx).expect("verify");
            assert_eq!(r.result, otpgate_proto::VerifyResult::Ok);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    totp_check,
    record_io,
    fs_patterns,
    backup_find,
    bus_round_trip
);
criterion_main!(benches);
