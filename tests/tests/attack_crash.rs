//! Crash safety: a storm of mixed operations for many
//! users over D-Bus while the daemon is killed with SIGKILL at random
//! moments and restarted, with a client-side ledger of every answer that
//! reached a client.
//!
//! What is exactly provable: a call whose answer reached the client was
//! applied and is on disk (the daemon fsyncs before it answers). A call
//! whose answer was lost in a kill may or may not have been applied; a call
//! the bus could not route (no owner of the name) was not. So the checks
//! are:
//! - after every kill, before the restart, every record file parses and its
//!   sealed secret opens under the key (no torn or half-written record);
//! - a TOTP step answered `ok` is never answered `ok` again (replays during
//!   the storm and at the end must be answered `replayed`);
//! - a backup code answered `ok` is never accepted again, nor is any code of
//!   a set that an answered regenerate or reset replaced;
//! - the failure count the daemon reports lies within what the ledger
//!   allows: at least every `invalid`/`replayed` answered since the last
//!   operation that did or may have reset the count, at most those plus the
//!   wrong codes whose answers were lost. With no lost call in between the
//!   two bounds are equal and the check is exact.
//!
//! Each user is driven by one client thread (its operations are
//! sequential), several threads run at once, each with its own connection.

mod attack_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use attack_common::*;
use otpgate_proto::{dict_bool, dict_str, dict_u32, ServiceError};
use otpgate_tests::*;
use otpgated::crypto::{self, MasterKey};
use otpgated::record::{Factor, UserRecord};

const USERS: usize = 12;
const THREADS: usize = 4;
const KILLS: u64 = 60;
const MAX_FAILURES: u32 = 100;
const WINDOW: u64 = 10;
/// Steps this close to the window's edges are not used: the daemon checks a
/// moment after the client picks.
const MARGIN: u64 = 1;

#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    totp_ok: AtomicU64,
    backup_ok: AtomicU64,
    invalid: AtomicU64,
    totp_replays_refused: AtomicU64,
    backup_reuse_refused: AtomicU64,
    retired_refused: AtomicU64,
    unlocks: AtomicU64,
    regenerates: AtomicU64,
    resets: AtomicU64,
    enrolls: AtomicU64,
    confirms: AtomicU64,
    lost: AtomicU64,
    not_delivered: AtomicU64,
    status_checks: AtomicU64,
    exact_checks: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ev {
    /// `invalid` or `replayed` answered: counted for certain.
    Fail,
    /// A wrong code whose answer was lost: counted or not.
    MaybeFail,
    /// An operation that resets the count, answer lost.
    MaybeReset,
}

/// What the failure count may be, from the answers seen since the count was
/// last known (0 after an answered reset, or the value Status reported).
#[derive(Default, Debug)]
struct Ledger {
    base: u32,
    events: Vec<Ev>,
}

impl Ledger {
    fn known(&mut self, n: u32) {
        self.base = n;
        self.events.clear();
    }

    fn bounds(&self) -> (u32, u32) {
        let fails = |evs: &[Ev]| evs.iter().filter(|e| **e == Ev::Fail).count() as u32;
        let lower = match self.events.iter().rposition(|e| *e == Ev::MaybeReset) {
            None => self.base + fails(&self.events),
            Some(i) => fails(&self.events[i + 1..]),
        };
        let upper = self.base
            + self
                .events
                .iter()
                .filter(|e| matches!(e, Ev::Fail | Ev::MaybeFail))
                .count() as u32;
        (lower.min(MAX_FAILURES), upper.min(MAX_FAILURES))
    }
}

#[derive(Debug, PartialEq)]
enum Phase {
    Absent,
    Pending(String),
    Enrolled,
}

struct UserState {
    name: String,
    phase: Phase,
    /// A reset was sent and its answer lost: send it again first.
    resetting: bool,
    secret: String,
    /// Steps below this were used or tried with the current secret.
    next_step: u64,
    ok_steps: Vec<u64>,
    backup: Vec<String>,
    used_backup: Vec<String>,
    retired_backup: Vec<String>,
    ledger: Ledger,
    ops_since_check: u32,
}

impl UserState {
    fn new(name: &str) -> UserState {
        UserState {
            name: name.to_string(),
            phase: Phase::Absent,
            resetting: false,
            secret: String::new(),
            next_step: 0,
            ok_steps: Vec::new(),
            backup: Vec::new(),
            used_backup: Vec::new(),
            retired_backup: Vec::new(),
            ledger: Ledger::default(),
            ops_since_check: 0,
        }
    }
}

/// The codes of the steps around now, and a fresh step's code.
struct Table {
    first: u64,
    codes: Vec<String>,
    now_step: u64,
}

impl Table {
    fn new(secret: &str) -> Table {
        let now_step = now() / PERIOD;
        let first = now_step - WINDOW - 2;
        Table {
            first,
            codes: codes_for_steps(secret, first, 2 * WINDOW + 5),
            now_step,
        }
    }

    fn code(&self, step: u64) -> &str {
        &self.codes[(step - self.first) as usize]
    }

    /// The first usable step at or after `from`: inside the window with a
    /// margin, and with a code no other nearby step shares (the daemon
    /// would match the other step).
    fn fresh(&self, from: u64) -> Option<u64> {
        let lo = from.max(self.now_step - WINDOW + MARGIN);
        let hi = self.now_step + WINDOW - MARGIN;
        (lo..=hi).find(|&s| {
            let c = self.code(s);
            self.codes.iter().filter(|x| *x == c).count() == 1
        })
    }

    fn in_window(&self, step: u64) -> bool {
        step + WINDOW > self.now_step + MARGIN && step <= self.now_step + WINDOW - MARGIN
    }

    fn wrong(&self, rng: &mut Rng) -> String {
        loop {
            let c = format!("{:06}", rng.below(1_000_000));
            if !self.codes.contains(&c) {
                return c;
            }
        }
    }
}

/// Ways of typing a code that normalise to it.
fn spell_totp(code: &str, rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!("{} {}", &code[..3], &code[3..]),
        1 => format!("{}-{}", &code[..3], &code[3..]),
        _ => code.to_string(),
    }
}

fn spell_backup(code: &str, rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => code.to_uppercase(),
        1 => code.replace('-', ""),
        _ => code.to_string(),
    }
}

struct Storm<'a> {
    client: Client,
    rng: Rng,
    counts: &'a Counts,
    violations: &'a Mutex<Vec<String>>,
    lost_kinds: &'a Mutex<BTreeMap<String, u64>>,
}

impl Storm<'_> {
    fn violation(&self, u: &UserState, what: String) {
        eprintln!("VIOLATION {}: {what}", u.name);
        self.violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{}: {what}", u.name));
    }

    fn lost(&self, why: &str) {
        inc(&self.counts.lost);
        let kind = why.split(['(', ':']).next().unwrap_or(why).to_string();
        *self
            .lost_kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    /// The daemon is down: wait a moment instead of spinning.
    fn not_delivered(&self) {
        inc(&self.counts.not_delivered);
        std::thread::sleep(Duration::from_millis(20));
    }

    /// After a lost answer: wait for a daemon to answer Status for this
    /// user, and check the failure count against the ledger.
    fn recheck(&mut self, u: &mut UserState) {
        let st = poll(Duration::from_secs(40), || {
            match self.client.status(&u.name) {
                Reply::Answer(d) => Some(d),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no daemon answered Status for {} within 40 s", u.name));
        self.check_status(u, &st);
    }

    fn check_status(&mut self, u: &mut UserState, st: &otpgate_proto::OwnedDict) {
        inc(&self.counts.status_checks);
        let failures = dict_u32(st, "failures").expect("failures in Status");
        let (lo, hi) = u.ledger.bounds();
        if lo == hi {
            inc(&self.counts.exact_checks);
        }
        if failures < lo || failures > hi {
            self.violation(
                u,
                format!(
                    "Status failures {failures} outside the ledger's [{lo}, {hi}] ({:?})",
                    u.ledger
                ),
            );
        }
        u.ledger.known(failures);
        u.ops_since_check = 0;
        // A lost Confirm leaves the phase to be learnt from Status.
        if let Phase::Pending(secret) = &u.phase {
            if dict_bool(st, "enrolled") == Some(true) {
                u.secret = secret.clone();
                u.phase = Phase::Enrolled;
                u.backup.clear();
                u.ok_steps.clear();
            }
        }
    }

    /// Handles the reply of a Verify; `kind` says what was sent.
    fn verify(&mut self, u: &mut UserState, code: &str, kind: Sent) {
        inc(&self.counts.ops);
        let r = self.client.verify(&u.name, code);
        let (word, info) = match r {
            Reply::Answer(a) => a,
            Reply::Refused(e) => {
                self.violation(u, format!("Verify ({kind:?}) refused: {e:?}"));
                return;
            }
            Reply::NotDelivered(_) => {
                self.not_delivered();
                if let Sent::Backup(c) = kind {
                    u.backup.push(c);
                }
                return;
            }
            Reply::Unknown(e) => {
                self.lost(&e);
                u.ledger.events.push(match kind {
                    Sent::Right(_) | Sent::Backup(_) => Ev::MaybeReset,
                    _ => Ev::MaybeFail,
                });
                self.recheck(u);
                return;
            }
        };
        let method = dict_str(&info, "method_used");
        match (&kind, word.as_str()) {
            (Sent::Right(step), "ok") if method.as_deref() == Some("totp") => {
                inc(&self.counts.totp_ok);
                u.ok_steps.push(*step);
                u.ledger.known(0);
            }
            (Sent::Backup(c), "ok") if method.as_deref() == Some("backup") => {
                inc(&self.counts.backup_ok);
                u.used_backup.push(c.clone());
                u.ledger.known(0);
            }
            (Sent::Wrong, "invalid") => {
                inc(&self.counts.invalid);
                u.ledger.events.push(Ev::Fail);
            }
            (Sent::Replay(_), "replayed") => {
                inc(&self.counts.totp_replays_refused);
                u.ledger.events.push(Ev::Fail);
            }
            (Sent::UsedBackup(_), "invalid") => {
                inc(&self.counts.backup_reuse_refused);
                u.ledger.events.push(Ev::Fail);
            }
            (Sent::Retired(_), "invalid") => {
                inc(&self.counts.retired_refused);
                u.ledger.events.push(Ev::Fail);
            }
            (kind, word) => {
                if matches!(word, "invalid" | "replayed") {
                    u.ledger.events.push(Ev::Fail);
                }
                if word == "ok" {
                    u.ledger.known(0);
                }
                self.violation(u, format!("{kind:?} answered {word} ({info:?})"));
            }
        }
    }

    fn op(&mut self, u: &mut UserState) {
        if u.resetting {
            return self.reset(u);
        }
        match u.phase.clone_phase() {
            Phase::Absent => self.enroll(u),
            Phase::Pending(secret) => self.confirm(u, &secret),
            Phase::Enrolled => self.enrolled_op(u),
        }
        u.ops_since_check += 1;
    }

    fn enrolled_op(&mut self, u: &mut UserState) {
        let (_, hi) = u.ledger.bounds();
        if hi >= MAX_FAILURES * 6 / 10 {
            return self.unlock(u);
        }
        if u.ops_since_check >= 15 {
            inc(&self.counts.ops);
            if let Reply::Answer(st) = self.client.status(&u.name) {
                self.check_status(u, &st);
            }
            return;
        }
        let table = Table::new(&u.secret);
        let fresh = table.fresh(u.next_step);
        let r = self.rng.below(100);
        match r {
            0..=34 => match fresh {
                Some(s) => {
                    u.next_step = s + 1;
                    let code = spell_totp(table.code(s), &mut self.rng);
                    self.verify(u, &code, Sent::Right(s))
                }
                // This secret's steps are used up until time moves on:
                // start over with a new one now and then.
                None if self.rng.below(3) == 0 => self.reset(u),
                None => self.wrong(u, &table),
            },
            35..=59 => self.wrong(u, &table),
            60..=71 if !u.backup.is_empty() => {
                let i = self.rng.below(u.backup.len() as u64) as usize;
                let c = u.backup.swap_remove(i);
                let typed = spell_backup(&c, &mut self.rng);
                self.verify(u, &typed, Sent::Backup(c))
            }
            72..=79 => {
                let in_window: Vec<u64> = u
                    .ok_steps
                    .iter()
                    .copied()
                    .filter(|s| table.in_window(*s))
                    .collect();
                if in_window.is_empty() {
                    return self.wrong(u, &table);
                }
                let s = in_window[self.rng.below(in_window.len() as u64) as usize];
                let code = table.code(s).to_string();
                self.verify(u, &code, Sent::Replay(s))
            }
            80..=83 if !u.used_backup.is_empty() => {
                let c = u.used_backup[self.rng.below(u.used_backup.len() as u64) as usize].clone();
                let typed = spell_backup(&c, &mut self.rng);
                self.verify(u, &typed, Sent::UsedBackup(c))
            }
            84..=86 if !u.retired_backup.is_empty() => {
                let c = u.retired_backup[self.rng.below(u.retired_backup.len() as u64) as usize]
                    .clone();
                self.verify(u, &c, Sent::Retired(c.clone()))
            }
            87..=90 => self.unlock(u),
            91..=95 => self.regenerate(u),
            96..=97 => self.reset(u),
            _ => self.wrong(u, &table),
        }
    }

    fn wrong(&mut self, u: &mut UserState, table: &Table) {
        let code = table.wrong(&mut self.rng);
        self.verify(u, &code, Sent::Wrong)
    }

    fn unlock(&mut self, u: &mut UserState) {
        inc(&self.counts.ops);
        match self.client.unlock(&u.name) {
            Reply::Answer(()) => {
                inc(&self.counts.unlocks);
                u.ledger.known(0);
            }
            Reply::Refused(e) => self.violation(u, format!("Unlock refused: {e:?}")),
            Reply::NotDelivered(_) => self.not_delivered(),
            Reply::Unknown(e) => {
                self.lost(&e);
                u.ledger.events.push(Ev::MaybeReset);
                self.recheck(u);
            }
        }
    }

    fn regenerate(&mut self, u: &mut UserState) {
        inc(&self.counts.ops);
        match self.client.regenerate(&u.name) {
            Reply::Answer(codes) => {
                inc(&self.counts.regenerates);
                u.retired_backup.append(&mut u.backup);
                u.backup = codes;
            }
            Reply::Refused(e) => self.violation(u, format!("Regenerate refused: {e:?}")),
            Reply::NotDelivered(_) => self.not_delivered(),
            Reply::Unknown(e) => {
                // Whether the old set still works is unknown: use neither.
                self.lost(&e);
                u.backup.clear();
                self.recheck(u);
            }
        }
    }

    fn reset(&mut self, u: &mut UserState) {
        inc(&self.counts.ops);
        let gone = match self.client.reset(&u.name) {
            Reply::Answer(()) => true,
            Reply::Refused(ServiceError::NotEnrolled(_)) if u.resetting => true,
            Reply::Refused(e) => {
                self.violation(u, format!("Reset refused: {e:?}"));
                false
            }
            Reply::NotDelivered(_) => {
                self.not_delivered();
                false
            }
            Reply::Unknown(e) => {
                self.lost(&e);
                u.resetting = true;
                false
            }
        };
        if gone {
            inc(&self.counts.resets);
            u.resetting = false;
            u.phase = Phase::Absent;
            u.retired_backup.append(&mut u.backup);
            u.ok_steps.clear();
            u.ledger.known(0);
        }
    }

    fn enroll(&mut self, u: &mut UserState) {
        inc(&self.counts.ops);
        match self.client.enroll(&u.name) {
            Reply::Answer(d) => {
                inc(&self.counts.enrolls);
                u.phase = Phase::Pending(dict_str(&d, "secret").expect("secret"));
            }
            Reply::Refused(e) => self.violation(u, format!("Enroll refused: {e:?}")),
            Reply::NotDelivered(_) => self.not_delivered(),
            // A pending enrolment with a secret nobody knows: enrol again.
            Reply::Unknown(e) => self.lost(&e),
        }
    }

    fn confirm(&mut self, u: &mut UserState, secret: &str) {
        let table = Table::new(secret);
        let Some(s) = table.fresh(0) else {
            return;
        };
        inc(&self.counts.ops);
        match self.client.confirm(&u.name, table.code(s)) {
            Reply::Answer(codes) => {
                inc(&self.counts.confirms);
                u.phase = Phase::Enrolled;
                u.secret = secret.to_string();
                u.next_step = s + 1;
                u.ok_steps = vec![s];
                u.backup = codes;
                u.ledger.known(0);
            }
            Reply::Refused(e) => self.violation(u, format!("Confirm refused: {e:?}")),
            Reply::NotDelivered(_) => self.not_delivered(),
            Reply::Unknown(e) => {
                self.lost(&e);
                u.ledger.events.push(Ev::MaybeReset);
                self.recheck(u);
                if u.phase == Phase::Enrolled {
                    u.next_step = s + 1;
                }
            }
        }
    }
}

impl Phase {
    fn clone_phase(&self) -> Phase {
        match self {
            Phase::Absent => Phase::Absent,
            Phase::Pending(s) => Phase::Pending(s.clone()),
            Phase::Enrolled => Phase::Enrolled,
        }
    }
}

/// What a Verify carried. The payloads are printed (Debug) in violations.
#[derive(Debug, Clone)]
#[allow(dead_code)]
enum Sent {
    Right(u64),
    Wrong,
    Backup(String),
    Replay(u64),
    UsedBackup(String),
    Retired(String),
}

/// Every record file parses and its secrets open under the key.
fn check_records_on_disk(d: &Daemon, key: &MasterKey) -> (usize, Vec<String>) {
    let mut n = 0;
    let mut bad = Vec::new();
    let users = d.state_dir.join("users");
    for entry in std::fs::read_dir(&users).expect("users dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(user) = name.strip_suffix(".json") else {
            continue;
        };
        n += 1;
        let bytes = std::fs::read(entry.path()).expect("read record");
        match UserRecord::from_bytes(user, &bytes) {
            Err(e) => bad.push(format!("{user}: does not parse: {e}")),
            Ok(rec) => {
                let factors = rec
                    .factors
                    .iter()
                    .chain(rec.pending.as_ref().map(|p| &p.factor));
                for factor in factors {
                    #[allow(irrefutable_let_patterns)]
                    let Factor::Totp(f) = factor
                    else {
                        continue;
                    };
                    if crypto::open(key, user, &f.id, &f.secret).is_err() {
                        bad.push(format!("{user}: factor {} does not open", f.id));
                    }
                }
            }
        }
    }
    (n, bad)
}

/// How long the slowest operation of the storm (a Confirm, which hashes
/// every backup code) takes on this machine, at least 50 ms. The kills come
/// at least twice that apart, or on a slow machine no Confirm would ever
/// finish between two kills and the storm would test nothing.
fn slowest_operation(bus: &Bus) -> Duration {
    let c = Client::connect(&bus.address);
    let u = test_user("otpga-crash-cal");
    let _ = c.reset(&u.name);
    let e = c.enroll(&u.name).answer();
    let secret = dict_str(&e, "secret").expect("secret");
    let code = oathtool_now(&secret);
    let t = Instant::now();
    c.confirm(&u.name, &code).answer();
    let took = t.elapsed();
    let _ = c.reset(&u.name);
    took.max(Duration::from_millis(50))
}

#[test]
fn kills_at_random_moments_lose_no_answered_change() {
    let started = Instant::now();
    let bus = Bus::start();
    let d = Daemon::start(
        &bus,
        &format!(
            "[totp]\nwindow = {WINDOW}\n[lockout]\nmax_failures = {MAX_FAILURES}\n[backup_codes]\ncount = 6\n"
        ),
    );
    let key = MasterKey::load_or_create(&d.key_file).expect("the daemon's key");
    let names: Vec<String> = (0..USERS)
        .map(|i| test_user(&format!("otpga-crash-{i}")).name)
        .collect();
    let mut seed_rng = Rng::from_env_or_time("attack_crash");
    let pause_min = slowest_operation(&bus) * 2;
    eprintln!(
        "attack_crash: kills come {pause_min:?} to {:?} apart",
        pause_min + Duration::from_millis(450)
    );

    let counts = Counts::default();
    let violations = Mutex::new(Vec::new());
    let lost_kinds = Mutex::new(BTreeMap::new());
    let stop = AtomicBool::new(false);
    let daemon = Mutex::new(d);
    let kills = AtomicU64::new(0);
    let temp_found = AtomicU64::new(0);
    let records_checked = AtomicU64::new(0);
    let disk_bad: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut killer_rng = Rng::with_seed(seed_rng.next());
    let thread_seeds: Vec<u64> = (0..THREADS).map(|_| seed_rng.next()).collect();

    let states: Vec<UserState> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let mine: Vec<String> = names.iter().skip(t).step_by(THREADS).cloned().collect();
                let (counts, violations, lost_kinds, stop, address) = (
                    &counts,
                    &violations,
                    &lost_kinds,
                    &stop,
                    bus.address.clone(),
                );
                let seed = thread_seeds[t];
                scope.spawn(move || {
                    let mut storm = Storm {
                        client: Client::connect(&address),
                        rng: Rng::with_seed(seed),
                        counts,
                        violations,
                        lost_kinds,
                    };
                    let mut users: Vec<UserState> =
                        mine.iter().map(|n| UserState::new(n)).collect();
                    while !stop.load(Ordering::SeqCst) {
                        let i = storm.rng.below(users.len() as u64) as usize;
                        storm.op(&mut users[i]);
                    }
                    users
                })
            })
            .collect();

        // The killer.
        let killer = {
            let (daemon, kills, stop, bus, temp_found, records_checked, disk_bad, key) = (
                &daemon,
                &kills,
                &stop,
                &bus,
                &temp_found,
                &records_checked,
                &disk_bad,
                &key,
            );
            scope.spawn(move || {
                for _ in 0..KILLS {
                    std::thread::sleep(pause_min + Duration::from_millis(killer_rng.below(450)));
                    let mut d = daemon.lock().unwrap_or_else(|p| p.into_inner());
                    d.kill();
                    kills.fetch_add(1, Ordering::SeqCst);
                    temp_found.fetch_add(temp_files(&d.state_dir).len() as u64, Ordering::SeqCst);
                    let (n, bad) = check_records_on_disk(&d, key);
                    records_checked.fetch_add(n as u64, Ordering::SeqCst);
                    disk_bad
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(bad);
                    d.restart(bus);
                }
                // A little more traffic on the last daemon, then stop.
                std::thread::sleep(Duration::from_millis(500));
                stop.store(true, Ordering::SeqCst);
            })
        };
        killer.join().expect("killer thread");
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("storm thread"))
            .collect()
    });
    let storm_secs = started.elapsed().as_secs_f64();

    // One more crash, so the final checks read everything back from disk.
    let mut d = daemon.into_inner().unwrap_or_else(|p| p.into_inner());
    d.kill();
    let (n, bad) = check_records_on_disk(&d, &key);
    records_checked.fetch_add(n as u64, Ordering::SeqCst);
    disk_bad.lock().unwrap().extend(bad);
    d.restart(&bus);
    assert!(
        temp_files(&d.state_dir).is_empty(),
        "temporary files left after a restart: {:?}",
        temp_files(&d.state_dir)
    );

    let client = Client::connect(&bus.address);
    let mut storm = Storm {
        client,
        rng: Rng::with_seed(seed_rng.next()),
        counts: &counts,
        violations: &violations,
        lost_kinds: &lost_kinds,
    };

    // Every record is listed without an error.
    let list = storm.client.list_users().answer();
    for entry in &list {
        assert!(
            !entry.contains_key("error"),
            "ListUsers has an unreadable record: {entry:?}"
        );
    }

    let mut totp_replays_final = 0;
    let mut out_of_window = 0;
    let mut backup_final = 0;
    let mut retired_final = 0;
    let mut fresh_final = 0;
    let mut no_fresh_final = 0;
    let mut states = states;
    for u in states.iter_mut() {
        let st = storm.client.status(&u.name).answer();
        storm.check_status(u, &st);
        if u.phase != Phase::Enrolled {
            continue;
        }
        assert!(
            list.iter()
                .any(|e| dict_str(e, "user").as_deref() == Some(&u.name)
                    && dict_bool(e, "enrolled") == Some(true)),
            "{} missing from ListUsers",
            u.name
        );
        let table = Table::new(&u.secret);
        let mut since_unlock = 0;
        let mut unlock_if_needed = |storm: &mut Storm, u: &mut UserState| {
            since_unlock += 1;
            if since_unlock >= 40 {
                storm.unlock(u);
                since_unlock = 0;
            }
        };
        for s in u.ok_steps.clone() {
            if !table.in_window(s) {
                out_of_window += 1;
                continue;
            }
            let code = table.code(s).to_string();
            storm.verify(u, &code, Sent::Replay(s));
            totp_replays_final += 1;
            unlock_if_needed(&mut storm, u);
        }
        for c in u.used_backup.clone() {
            storm.verify(u, &c, Sent::UsedBackup(c.clone()));
            backup_final += 1;
            unlock_if_needed(&mut storm, u);
        }
        for c in u.retired_backup.clone().into_iter().take(3) {
            storm.verify(u, &c, Sent::Retired(c.clone()));
            retired_final += 1;
            unlock_if_needed(&mut storm, u);
        }
        // The record still decrypts and works: a fresh code is accepted
        // (unless this secret's steps near now are all used).
        match table.fresh(u.next_step) {
            Some(s) => {
                u.next_step = s + 1;
                let code = table.code(s).to_string();
                storm.verify(u, &code, Sent::Right(s));
                fresh_final += 1;
            }
            None => no_fresh_final += 1,
        }
    }

    let c = &counts;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "attack_crash: {} kills in {storm_secs:.1} s, {USERS} users, {THREADS} client threads; \
         {} operations: {} TOTP ok, {} backup ok, {} wrong codes answered invalid, \
         {} TOTP replays refused, {} used backup codes refused, {} codes of replaced sets refused, \
         {} unlocks, {} regenerations, {} resets, {} enrolments, {} confirmations; \
         {} answers lost in a kill, {} calls not delivered (daemon down); \
         {} failure-count checks ({} exact); {} temporary files found after kills (removed at start); \
         {} record files parsed and opened after kills",
        g(&kills),
        g(&c.ops),
        g(&c.totp_ok),
        g(&c.backup_ok),
        g(&c.invalid),
        g(&c.totp_replays_refused),
        g(&c.backup_reuse_refused),
        g(&c.retired_refused),
        g(&c.unlocks),
        g(&c.regenerates),
        g(&c.resets),
        g(&c.enrolls),
        g(&c.confirms),
        g(&c.lost),
        g(&c.not_delivered),
        g(&c.status_checks),
        g(&c.exact_checks),
        g(&temp_found),
        g(&records_checked),
    );
    eprintln!(
        "attack_crash: final, after one more kill: {totp_replays_final} answered TOTP steps \
         replayed ({out_of_window} out of the window, not tried), {backup_final} answered backup \
         codes retried, {retired_final} replaced codes tried, {fresh_final} fresh codes accepted \
         ({no_fresh_final} users had no unused step left); \
         total {:.1} s",
        started.elapsed().as_secs_f64()
    );

    eprintln!(
        "attack_crash: how answers were lost: {:?}",
        lost_kinds.lock().unwrap()
    );
    let bad = disk_bad.into_inner().unwrap();
    assert!(bad.is_empty(), "records damaged by a kill: {bad:#?}");
    let v = violations.into_inner().unwrap();
    assert!(v.is_empty(), "{} violations: {v:#?}", v.len());
    assert!(g(&kills) >= 50);
    assert!(g(&c.totp_ok) > 0 && g(&c.backup_ok) > 0 && g(&c.invalid) > 0);
    assert!(g(&c.lost) > 0, "no kill landed on a call in flight");
    let enrolled = states.iter().filter(|u| u.phase == Phase::Enrolled).count();
    assert_eq!(fresh_final + no_fresh_final, enrolled);
}
