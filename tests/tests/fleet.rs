//! Fleet mode end to end (`[storage] backend = "postgres"`): two otpgated,
//! each on its own private bus with its own PAM socket, keep their records
//! in one PostgreSQL database (a private cluster per test) with one key
//! file; logins go through the real libpam (pamtester) on either daemon,
//! the administrator's commands through the real `otpgate` CLI.

mod cli_common;
mod pam_common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cli_common::{migrate_store, otpgate, rotate_key, strings, As, Out};
use otpgate_tests::leaks::{contains, find_leaks, forms};
use otpgate_tests::pg::{FleetDb, PgServer};
use otpgate_tests::*;
use pam_common::*;

/// Codes of several successive steps are needed in one test; each step is
/// used up once accepted.
const WIDE_WINDOW: &str = "[totp]\nwindow = 10\n";

/// For the tests with a short `timeout_ms`: the store's deadline also
/// covers the decision inside the transaction, and hashing ten backup codes
/// at confirmation takes about a second in a debug build on a busy machine.
const NO_BACKUP_CODES: &str = "[backup_codes]\ncount = 0\n";

/// What the module says when a code was used before.
const REPLAYED: &str = "That code was already used: wait for the next one.";

/// One daemon of the fleet: its bus, the daemon, a PAM service that points
/// the module at it. Dropped in this order.
struct Node {
    svc: String,
    _svc_file: EtcFile,
    daemon: Daemon,
    bus: Bus,
}

impl Node {
    /// A daemon with `storage` as its `[storage]` section; `module_args`
    /// are added to the module's line, and `stack` lines after it.
    fn start(
        storage: &str,
        key_file: &Path,
        extra_toml: &str,
        module_args: &str,
        stack: &str,
    ) -> Node {
        let bus = Bus::start();
        let daemon = Daemon::start_with_storage(&bus, Some((storage, key_file)), extra_toml);
        let line = module_line(&format!("{} {module_args}", bus.module_args()));
        let (svc, svc_file) = etc_pam_service("fleet", &format!("{line}\n{stack}"));
        Node {
            svc,
            _svc_file: svc_file,
            daemon,
            bus,
        }
    }

    /// pamtester as `user`, typing `code`, from `rhost` if given.
    fn login(&self, user: &str, code: &str, rhost: Option<&str>) -> Outcome {
        let mut cmd = Command::new("pamtester");
        if let Some(h) = rhost {
            cmd.arg("-I").arg(format!("rhost={h}"));
        }
        cmd.args([self.svc.as_str(), user, "authenticate"])
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
        run_with_input(cmd, &format!("{code}\n"), Duration::from_secs(90))
    }

    fn cli(&self, args: &[&str]) -> Out {
        otpgate(&self.bus, As::Root, args)
    }

    fn status(&self, user: &str) -> serde_json::Value {
        self.cli(&["status", "--user", user, "--json"]).json()
    }

    /// The audit lines of `event` about `user` this daemon has written.
    fn events(&self, event: &str, user: &str) -> usize {
        let (ev, who) = (format!("event={event} "), format!(" user={user} "));
        self.daemon
            .log()
            .lines()
            .filter(|l| l.contains(&ev) && format!("{l} ").contains(&who))
            .count()
    }
}

/// Two daemons, A and B, sharing one database and one key file.
struct Fleet {
    a: Node,
    b: Node,
    db: FleetDb,
    key_file: PathBuf,
    _keys: TestDir,
    pg: PgServer,
}

impl Fleet {
    fn start(extra_toml: &str) -> Fleet {
        Fleet::start_with("", extra_toml, "", "")
    }

    /// `storage_extra`: more `[storage]` lines (`timeout_ms = …`).
    fn start_with(storage_extra: &str, extra_toml: &str, module_args: &str, stack: &str) -> Fleet {
        require_root();
        let pg = PgServer::start();
        let db = pg.fleet_db();
        let keys = TestDir::new("fleet-key");
        let key_file = keys.join("master.key");
        let storage =
            db.storage_toml_with(&db.url("127.0.0.1", "disable"), &key_file, storage_extra);
        // A first: it makes the key file and the tables that B then finds.
        let a = Node::start(&storage, &key_file, extra_toml, module_args, stack);
        let b = Node::start(&storage, &key_file, extra_toml, module_args, stack);
        Fleet {
            a,
            b,
            db,
            key_file,
            _keys: keys,
            pg,
        }
    }
}

impl Fleet {
    /// Both daemons' logs and the database's, for a failing test to show.
    fn logs(&self) -> String {
        format!(
            "otpgated A:\n{}\notpgated B:\n{}\npostgres:\n{}",
            self.a.daemon.log(),
            self.b.daemon.log(),
            self.pg.log()
        )
    }
}

/// Enrolled through the CLI as root, confirmed with an oathtool code.
fn enroll_cli(node: &Node, user: &str) -> Enrolled {
    let e = node.cli(&["enroll", "--user", user]).json();
    let secret = e["secret"].as_str().expect("secret").to_owned();
    let uri = e["uri"].as_str().expect("uri").to_owned();
    let t = now();
    let c = node
        .cli(&[
            "confirm",
            "--user",
            user,
            &oathtool_at(&secret, t),
            "--json",
        ])
        .json();
    Enrolled {
        user: user.to_owned(),
        secret,
        uri,
        backup_codes: strings(&c["backup_codes"]),
        confirmed_at: t,
    }
}

/// Runs `f(i)` for i in 0..n on n threads at once; the results by i.
fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn({
                    let f = &f;
                    move || f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a login thread panicked"))
            .collect()
    })
}

#[test]
fn enrolled_on_a_logs_in_on_b_and_a_code_used_on_one_is_refused_on_the_other() {
    let f = Fleet::start(WIDE_WINDOW);
    let u = test_user("otpgfl-enrol");
    let e = enroll_cli(&f.a, &u.name);
    assert_eq!(f.b.status(&u.name)["enrolled"], true);

    // The code that confirmed the enrolment on A is used up on B too.
    let confirm = oathtool_at(&e.secret, e.confirmed_at);
    let o = f.b.login(&u.name, &confirm, None);
    assert_outcome(&o, false, AUTH_ERR, REPLAYED);

    let c1 = oathtool_at(&e.secret, e.confirmed_at + 30);
    assert_outcome(&f.b.login(&u.name, &c1, None), true, SUCCESS, PROMPT);
    assert_outcome(&f.a.login(&u.name, &c1, None), false, AUTH_ERR, REPLAYED);

    let c2 = oathtool_at(&e.secret, e.confirmed_at + 60);
    assert_outcome(&f.a.login(&u.name, &c2, None), true, SUCCESS, PROMPT);
    assert_outcome(&f.b.login(&u.name, &c2, None), false, AUTH_ERR, REPLAYED);
}

#[test]
fn failures_on_a_and_b_add_up_to_one_lock_and_an_unlock_on_b_frees_a() {
    let f = Fleet::start("[lockout]\nmax_failures = 4\nduration_secs = 600\n");
    let u = test_user("otpgfl-lock");
    let e = enroll_cli(&f.a, &u.name);
    let wrong = wrong_code(&e.secret);

    let o = f.a.login(&u.name, &wrong, None);
    assert_outcome(&o, false, AUTH_ERR, "Wrong code. 3 attempts left.");
    let o = f.b.login(&u.name, &wrong, None);
    assert_outcome(&o, false, AUTH_ERR, "Wrong code. 2 attempts left.");
    let o = f.a.login(&u.name, &wrong, None);
    assert_outcome(&o, false, AUTH_ERR, "Wrong code. 1 attempt left.");
    let o = f.b.login(&u.name, &wrong, None);
    assert_outcome(
        &o,
        false,
        AUTH_ERR,
        "Wrong code. Too many wrong codes: locked until ",
    );

    // Locked on A by the failure on B: even the right code is refused.
    let right = oathtool_at(&e.secret, e.confirmed_at + 30);
    let o = f.a.login(&u.name, &right, None);
    assert_outcome(&o, false, MAXTRIES, "Too many wrong codes: locked until ");
    assert_eq!(f.a.status(&u.name)["locked"], true);

    let out = f.b.cli(&["unlock", &u.name]);
    assert!(out.ok().stdout.contains("unlocked"), "{out:?}");
    let s = f.a.status(&u.name);
    assert_eq!(s["locked"], false, "{s}");
    assert_eq!(s["failures"], 0, "{s}");
    assert_outcome(&f.a.login(&u.name, &right, None), true, SUCCESS, PROMPT);
}

#[test]
fn a_backup_code_used_on_a_is_refused_on_b() {
    let f = Fleet::start("");
    let u = test_user("otpgfl-backup");
    let e = enroll_cli(&f.a, &u.name);
    let first = &e.backup_codes[0];

    let o = f.a.login(&u.name, first, None);
    assert_outcome(&o, true, SUCCESS, "Backup code accepted: 9 left.");
    let o = f.b.login(&u.name, first, None);
    assert_outcome(&o, false, AUTH_ERR, "Wrong code.");
    assert_eq!(f.b.status(&u.name)["backup_codes_left"], 9);
    // And the count goes on from there on B.
    let o = f.b.login(&u.name, &e.backup_codes[1], None);
    assert_outcome(&o, true, SUCCESS, "Backup code accepted: 8 left.");
    assert_eq!(f.a.status(&u.name)["backup_codes_left"], 8);
}

#[test]
fn the_per_source_limit_counts_failures_on_a_and_b_together() {
    let f = Fleet::start(
        "[lockout]\nmax_failures = 10\nsource_max_failures = 4\nsource_window_secs = 600\n",
    );
    let names = ["otpgfl-src1", "otpgfl-src2", "otpgfl-src3"];
    let e: Vec<Enrolled> = names
        .iter()
        .map(|n| enroll_cli(&f.a, &test_user(n).name))
        .collect();
    let attacker = Some("192.0.2.41");
    // Two failures from the host on each daemon: under the limit on
    // either alone, at it together.
    for (node, who) in [(&f.a, &e[0]), (&f.b, &e[1]), (&f.b, &e[0]), (&f.a, &e[1])] {
        let o = node.login(&who.user, &wrong_code(&who.secret), attacker);
        assert!(
            !o.success && o.says(AUTH_ERR) && o.says("Wrong code."),
            "{o:#?}\n{}",
            f.logs()
        );
    }
    // The host is refused on both now, for a third user with a right code.
    let right = oathtool_at(&e[2].secret, e[2].confirmed_at + 30);
    for node in [&f.a, &f.b] {
        let o = node.login(&e[2].user, &right, attacker);
        assert_outcome(&o, false, MAXTRIES, "Too many wrong codes: locked");
    }
    // Another host is not.
    let o = f.b.login(&e[2].user, &right, Some("192.0.2.42"));
    assert_outcome(&o, true, SUCCESS, PROMPT);
}

/// The lines the module showed for `outcomes` that were wrong codes.
fn attempts_left(outcomes: &[Outcome]) -> Vec<String> {
    let mut v: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            let all = o.all();
            let at = all.find("Wrong code.")?;
            Some(all[at..].lines().next().unwrap_or_default().to_owned())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_hundred_parallel_wrong_codes_on_a_and_b_count_exactly_max_failures() {
    const MAX: usize = 10;
    let f = Fleet::start_with(
        "",
        &format!("[lockout]\nmax_failures = {MAX}\nduration_secs = 600\n"),
        // The daemons answer a hundred logins at once on two cores: the
        // module must not give up on them.
        "timeout=30",
        "",
    );
    let u = test_user("otpgfl-par-wrong");
    let e = enroll_cli(&f.a, &u.name);
    let wrong = wrong_code(&e.secret);

    let outcomes = parallel(100, |i| {
        let node = if i.is_multiple_of(2) { &f.a } else { &f.b };
        node.login(&u.name, &wrong, None)
    });
    assert!(outcomes.iter().all(|o| !o.success), "{outcomes:#?}");
    // Each of the MAX failures saw its own count: none was lost to another
    // daemon's write, none counted twice.
    let mut expected: Vec<String> = (2..MAX)
        .map(|n| format!("Wrong code. {n} attempts left."))
        .collect();
    expected.push("Wrong code. 1 attempt left.".into());
    let seen = attempts_left(&outcomes);
    assert_eq!(seen.len(), MAX, "{seen:#?}");
    assert_eq!(
        seen.iter()
            .filter(|l| l.starts_with("Wrong code. Too many wrong codes: locked until "))
            .count(),
        1,
        "{seen:#?}"
    );
    expected.sort();
    let counted: Vec<&String> = seen.iter().filter(|l| l.contains("left.")).collect();
    assert_eq!(
        counted,
        expected.iter().collect::<Vec<_>>(),
        "the attempts left as each failure saw them"
    );
    // The rest found the lock.
    let locked = outcomes
        .iter()
        .filter(|o| !o.says("Wrong code.") && o.says(MAXTRIES))
        .count();
    assert_eq!(locked, 100 - MAX, "{outcomes:#?}");
    // The record and both audit trails agree.
    let s = f.b.status(&u.name);
    assert_eq!(s["locked"], true, "{s}");
    assert_eq!(s["failures"], MAX, "{s}");
    let failed = f.a.events("verify-failed", &u.name) + f.b.events("verify-failed", &u.name);
    assert_eq!(
        failed,
        MAX,
        "A:\n{}\nB:\n{}",
        f.a.daemon.log(),
        f.b.daemon.log()
    );
    let locks = f.a.events("locked", &u.name) + f.b.events("locked", &u.name);
    assert_eq!(locks, 1);
}

#[test]
fn one_valid_code_in_a_hundred_parallel_logins_on_a_and_b_succeeds_once() {
    let f = Fleet::start_with(
        "",
        "[lockout]\nmax_failures = 100\nduration_secs = 600\n",
        "timeout=30",
        "",
    );
    let u = test_user("otpgfl-par-once");
    let e = enroll_cli(&f.a, &u.name);
    let code = oathtool_at(&e.secret, e.confirmed_at + 30);

    let outcomes = parallel(100, |i| {
        let node = if i.is_multiple_of(2) { &f.a } else { &f.b };
        node.login(&u.name, &code, None)
    });
    let ok = outcomes.iter().filter(|o| o.success).count();
    assert_eq!(ok, 1, "{outcomes:#?}");
    for o in outcomes.iter().filter(|o| !o.success) {
        assert_outcome(o, false, AUTH_ERR, REPLAYED);
    }
    let oks = f.a.events("verify-ok", &u.name) + f.b.events("verify-ok", &u.name);
    assert_eq!(oks, 1);
}

#[test]
fn stats_and_list_on_a_show_users_enrolled_on_b() {
    let f = Fleet::start("");
    let ua = test_user("otpgfl-list-a");
    let ub = test_user("otpgfl-list-b");
    enroll_cli(&f.a, &ua.name);
    let eb = enroll_cli(&f.b, &ub.name);
    // A failure and a success on B, counted in A's stats.
    let o = f.b.login(&ub.name, &wrong_code(&eb.secret), None);
    assert!(!o.success, "{o:#?}");
    let o = f.b.login(
        &ub.name,
        &oathtool_at(&eb.secret, eb.confirmed_at + 30),
        None,
    );
    assert_outcome(&o, true, SUCCESS, PROMPT);

    for node in [&f.a, &f.b] {
        let list = node.cli(&["list", "--json"]).json();
        let users: BTreeSet<&str> = list["users"]
            .as_array()
            .expect("users")
            .iter()
            .filter_map(|x| x["user"].as_str())
            .collect();
        assert_eq!(
            users,
            BTreeSet::from([ua.name.as_str(), ub.name.as_str()]),
            "{list}"
        );
        let stats = node.cli(&["stats", "--json"]).json();
        assert_eq!(stats["users_enrolled"], 2, "{stats}");
        assert_eq!(stats["failures"], 1, "{stats}");
        assert_eq!(stats["successes"], 1, "{stats}");
    }
    let table = f.a.cli(&["list"]).ok().stdout.clone();
    assert!(table.lines().any(|l| l.starts_with(&ub.name)), "{table}");
}

/// A login of the run across the database restart.
#[derive(Debug)]
#[allow(dead_code)] // shown when the test fails
struct Attempt {
    user: String,
    code: String,
    on_a: bool,
    after_restart: bool,
    outcome: Outcome,
}

#[test]
fn a_database_restart_during_logins_loses_nothing_answered_and_needs_no_daemon_restart() {
    // failmode=open and pam_permit after the module: a login the module let
    // through without a verdict would be a success here, so every success
    // must also be one the daemons recorded.
    let mut f = Fleet::start_with(
        "timeout_ms = 2000",
        &format!("[totp]\nwindow = 10\n[lockout]\nmax_failures = 100\n{NO_BACKUP_CODES}"),
        "failmode=open",
        "auth required pam_permit.so",
    );
    let users: Vec<Enrolled> = ["otpgfl-rst1", "otpgfl-rst2"]
        .iter()
        .map(|n| enroll_cli(&f.a, &test_user(n).name))
        .collect();
    let (pid_a, pid_b) = (f.a.daemon.pid, f.b.daemon.pid);

    let attempts: Mutex<Vec<Attempt>> = Mutex::new(Vec::new());
    let restarted = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let Fleet { a, b, pg, .. } = &mut f;
    let (a, b) = (&*a, &*b);
    let oks_after = |v: &Vec<Attempt>| {
        v.iter()
            .filter(|t| t.after_restart && t.outcome.success)
            .count()
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // Each user's next step; a code moves on once it is used up
            // (accepted, or refused as used), and is typed again while the
            // database is away.
            let mut step: Vec<u64> = vec![1; users.len()];
            let end = Instant::now() + Duration::from_secs(120);
            let mut i = 0usize;
            while !done.load(Ordering::SeqCst) && Instant::now() < end && i < 5000 {
                let k = i % users.len();
                let on_a = (i / users.len()).is_multiple_of(2);
                let e = &users[k];
                let code = oathtool_at(&e.secret, e.confirmed_at + 30 * step[k]);
                let after_restart = restarted.load(Ordering::SeqCst);
                let node = if on_a { a } else { b };
                let outcome = node.login(&e.user, &code, None);
                if outcome.success || outcome.says(REPLAYED) {
                    step[k] += 1;
                }
                attempts.lock().unwrap().push(Attempt {
                    user: e.user.clone(),
                    code,
                    on_a,
                    after_restart,
                    outcome,
                });
                i += 1;
            }
            done.store(true, Ordering::SeqCst);
        });
        let before = wait_until(Duration::from_secs(60), || {
            attempts
                .lock()
                .unwrap()
                .iter()
                .filter(|t| t.outcome.success)
                .count()
                >= 4
        });
        if before {
            pg.restart();
            restarted.store(true, Ordering::SeqCst);
            wait_until(Duration::from_secs(60), || {
                oks_after(&attempts.lock().unwrap()) >= 4
            });
        }
        done.store(true, Ordering::SeqCst);
    });
    let attempts = attempts.into_inner().unwrap();
    assert!(
        oks_after(&attempts) >= 4,
        "logins did not work again after the restart: {attempts:#?}\nA:\n{}\nB:\n{}\ndatabase:\n{}",
        a.daemon.log(),
        b.daemon.log(),
        pg.log()
    );
    // Every login either passed or failed closed: refused with the service
    // unavailable, or for a code used up, never as a wrong code or an
    // account without a second factor.
    for t in attempts.iter().filter(|t| !t.outcome.success) {
        assert!(
            t.outcome.says(AUTHINFO_UNAVAIL) || t.outcome.says(REPLAYED),
            "{t:#?}"
        );
    }
    // Every success is one the daemons recorded...
    let successes = attempts.iter().filter(|t| t.outcome.success).count();
    let recorded: usize = users
        .iter()
        .map(|e| a.events("verify-ok", &e.user) + b.events("verify-ok", &e.user))
        .sum();
    assert_eq!(successes, recorded, "{attempts:#?}");
    // ...and none is lost: every accepted code is refused now, on both.
    for t in attempts.iter().filter(|t| t.outcome.success) {
        for node in [a, b] {
            let o = node.login(&t.user, &t.code, None);
            assert_outcome(&o, false, AUTH_ERR, REPLAYED);
        }
    }
    // The same daemons all along.
    assert_eq!((a.daemon.pid, b.daemon.pid), (pid_a, pid_b));
    assert!(f.a.daemon.alive() && f.b.daemon.alive());
}

#[test]
fn a_frozen_database_refuses_logins_even_with_failmode_open_within_the_timeout() {
    // A module that skipped the second factor would let pam_permit pass.
    let mut f = Fleet::start_with(
        "timeout_ms = 1000",
        &format!("{WIDE_WINDOW}{NO_BACKUP_CODES}"),
        "failmode=open timeout=10",
        "auth required pam_permit.so",
    );
    let u = test_user("otpgfl-frozen");
    let e = enroll_cli(&f.a, &u.name);
    let c1 = oathtool_at(&e.secret, e.confirmed_at + 30);
    // The daemons hold connections to the database before it freezes.
    assert_outcome(&f.b.login(&u.name, &c1, None), true, SUCCESS, PROMPT);

    f.pg.freeze();
    let c2 = oathtool_at(&e.secret, e.confirmed_at + 60);
    for node in [&f.a, &f.b] {
        let o = node.login(&u.name, &c2, None);
        assert!(!o.success, "a frozen database let a login through: {o:#?}");
        assert!(o.says(AUTHINFO_UNAVAIL), "{o:#?}");
        // The daemon answered (an error), well within the module's 10 s.
        assert!(
            !o.says("otpgate did not answer in time"),
            "the daemon did not answer within the module's timeout: {o:#?}"
        );
        assert!(o.elapsed < Duration::from_secs(6), "{o:#?}");
    }
    f.pg.thaw();
    // Back: the same daemons take logins again (the code was not used).
    for (node, code) in [
        (&f.a, &c2),
        (&f.b, &oathtool_at(&e.secret, e.confirmed_at + 90)),
    ] {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(30), || {
            let o = node.login(&u.name, code, None);
            let ok = o.success;
            last = Some(o);
            ok
        });
        assert!(
            ok,
            "no login after the thaw: {last:#?}\n{}",
            node.daemon.log()
        );
    }
}

/// otpgated with `storage` as its `[storage]` section must refuse to start:
/// non-zero exit, a one-line reason on stderr (returned).
fn refused_start(storage: &str) -> String {
    let dir = TestDir::new("fleet-refused");
    let bus = Bus::start();
    let config = dir.join("otpgate.toml");
    std::fs::write(
        &config,
        format!(
            "[pam]\nsocket = \"{}\"\n\n{storage}\n",
            bus.pam_socket().display()
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(bin("otpgated"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--bus")
        .arg(&bus.address)
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    let f = Run::new(&mut cmd)
        .within(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("otpgated did not refuse to start: {e}"));
    let err = String::from_utf8_lossy(&f.stderr).into_owned();
    assert!(!f.status.success(), "otpgated exited 0: {err}");
    assert!(!bus.has_owner(proto::BUS_NAME));
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("otpgated said nothing on stderr"))
        .to_owned();
    assert!(line.starts_with("otpgated: "), "{err}");
    line
}

#[test]
fn a_standby_as_the_store_is_refused() {
    let f = Fleet::start("");
    enroll_cli(&f.a, &test_user("otpgfl-standby").name);
    let standby = f.pg.start_standby();
    let storage = f.db.storage_toml_with(
        &format!(
            "postgres://otpgate@127.0.0.1:{}/otpgate?sslmode=disable",
            standby.port()
        ),
        &f.key_file,
        "",
    );
    let line = refused_start(&storage);
    assert!(
        line.contains("read-only") || line.contains("standby"),
        "{line}"
    );
}

#[test]
fn a_password_in_the_url_is_refused_and_not_repeated() {
    require_root();
    let pg = PgServer::start();
    let db = pg.fleet_db();
    let keys = TestDir::new("fleet-key");
    let key_file = keys.join("master.key");
    // The same file with the password where it belongs starts.
    let good = db.storage_toml(&key_file);
    let node = Node::start(&good, &key_file, "", "", "");
    assert!(node.cli(&["list", "--json"]).json()["users"].is_array());
    drop(node);
    let password = db.password();
    let url = format!(
        "postgres://otpgate:{password}@127.0.0.1:{}/otpgate?sslmode=disable",
        pg.port()
    );
    let line = refused_start(&db.storage_toml_with(&url, &key_file, ""));
    assert!(line.contains("password"), "{line}");
    assert!(
        !line.contains(&password),
        "the password was repeated: {line}"
    );
}

#[test]
fn a_key_other_than_the_fleets_is_refused() {
    let f = Fleet::start("");
    enroll_cli(&f.a, &test_user("otpgfl-key").name);
    let other = TestDir::new("fleet-other-key");
    let storage = f.db.storage_toml(&other.join("master.key"));
    let line = refused_start(&storage);
    assert!(line.contains("key"), "{line}");
    // The fleet goes on with its own key.
    assert_eq!(f.b.status("otpgfl-key")["enrolled"], true);
}

#[test]
fn tls_verify_full_needs_the_named_host_and_the_right_ca() {
    require_root();
    let pg = PgServer::start();
    let db = pg.fleet_db();
    let keys = TestDir::new("fleet-key");
    let key_file = keys.join("master.key");

    let good = db.url_with_root("localhost", "verify-full", pg.ca_file());
    let node = Node::start(
        &db.storage_toml_with(&good, &key_file, ""),
        &key_file,
        "",
        "",
        "",
    );
    let e = enroll_cli(&node, &test_user("otpgfl-tls").name);
    let o = node.login(&e.user, &oathtool_at(&e.secret, e.confirmed_at + 30), None);
    assert_outcome(&o, true, SUCCESS, PROMPT);
    // No connection of the daemon's is without TLS (the server's view).
    let plain = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.usename = 'otpgate' AND NOT s.ssl",
    );
    assert_eq!(plain, "0", "the daemon connected without TLS");

    for url in [
        db.url_with_root("localhost", "verify-full", pg.other_ca_file()),
        db.url_with_root("127.0.0.1", "verify-full", pg.ca_file()),
    ] {
        let line = refused_start(&db.storage_toml_with(&url, &key_file, ""));
        let l = line.to_lowercase();
        assert!(
            l.contains("certificate") || l.contains("tls") || l.contains("ssl"),
            "{url}: {line}"
        );
    }
}

#[test]
fn the_database_holds_no_secret_and_no_backup_code() {
    let f = Fleet::start("");
    let u = test_user("otpgfl-leak");
    let e = enroll_cli(&f.a, &u.name);
    let renewed =
        f.b.cli(&["backup-codes", "--user", &u.name, "--json"])
            .json();
    let renewed = strings(&renewed["backup_codes"]);
    assert_eq!(renewed.len(), 10);
    // A login and a failure, so that every table has had its say.
    let o =
        f.b.login(&u.name, &oathtool_at(&e.secret, e.confirmed_at + 30), None);
    assert_outcome(&o, true, SUCCESS, PROMPT);
    let o =
        f.a.login(&u.name, &wrong_code(&e.secret), Some("192.0.2.50"));
    assert!(!o.success);

    let dump = f.pg.dump("otpgate");
    let text = String::from_utf8_lossy(&dump);
    assert!(
        text.contains("otpgate_records"),
        "not the fleet's database:\n{text}"
    );
    let leaks = find_leaks(
        &[(u.name.clone(), forms(&e.secret))],
        &[("pg_dump of the fleet's database".into(), dump.clone())],
    );
    assert!(leaks.is_empty(), "{leaks:#?}");
    for code in e.backup_codes.iter().chain(renewed.iter()) {
        let plain = code.replace('-', "");
        assert!(
            !contains(&dump, code.as_bytes()) && !contains(&dump, plain.as_bytes()),
            "backup code {code} is in the database"
        );
    }
}

#[test]
fn migrate_store_keeps_locks_and_used_codes_and_never_overwrites_a_newer_record() {
    require_root();
    let extra = "[totp]\nwindow = 10\n[lockout]\nmax_failures = 3\nduration_secs = 3600\n";
    let bus = Bus::start();
    let mut local = Daemon::start(&bus, extra);
    let (svc, _svc_file) = etc_pam_service("fleet-migrate", &module_line(&bus.module_args()));
    let locked = test_user("otpgfl-mig-lock");
    let used = test_user("otpgfl-mig-used");
    let el = enroll(&bus, &locked.name);
    let eu = enroll(&bus, &used.name);
    for _ in 0..3 {
        assert!(!pamtester(&svc, &locked.name, &wrong_code(&el.secret)).success);
    }
    let c1 = oathtool_at(&eu.secret, eu.confirmed_at + 30);
    assert_outcome(&pamtester(&svc, &used.name, &c1), true, SUCCESS, PROMPT);
    let local_changed = now();
    local.stop();

    let pg = PgServer::start();
    let db = pg.fleet_db();
    // One file for both ends: [storage] path is the source, the database
    // the target; the fleet daemon then runs on the same file.
    let storage = db.storage_toml_with(
        &db.url("127.0.0.1", "disable"),
        &local.key_file,
        &format!("path = \"{}\"", local.state_dir.display()),
    );
    let config_dir = TestDir::new("fleet-migrate");
    let config = config_dir.join("otpgate.toml");
    std::fs::write(&config, format!("{storage}\n{extra}")).expect("write config");

    let out = migrate_store(&config);
    assert_eq!(out.code, 0, "{out:#?}");

    assert!(wait_until(START_DEADLINE, || !bus.has_owner(proto::BUS_NAME)));
    let mut fleet = Daemon::start_with_storage(&bus, Some((&storage, &local.key_file)), extra);
    let s = otpgate(
        &bus,
        As::Root,
        &["status", "--user", &locked.name, "--json"],
    )
    .json();
    assert_eq!(s["locked"], true, "the lock did not move: {s}");
    assert_outcome(&pamtester(&svc, &used.name, &c1), false, AUTH_ERR, REPLAYED);
    // Records carry seconds: the fleet's change must fall in a later one
    // to be newer (a change in the same second is refused as a tie, which
    // the daemon's unit tests cover).
    assert!(wait_until(Duration::from_secs(3), || now() > local_changed));
    let c2 = oathtool_at(&eu.secret, eu.confirmed_at + 60);
    assert_outcome(&pamtester(&svc, &used.name, &c2), true, SUCCESS, PROMPT);
    fleet.stop();

    // The fleet's record of `used` is newer than the local one now; the
    // record of `locked`, untouched in the fleet, is the same and moves again.
    let out = migrate_store(&config);
    assert_eq!(out.code, 1, "{out:#?}");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.lines()
            .any(|l| l.contains(&used.name) && l.contains("the fleet's record is newer")),
        "{out:#?}"
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("moved") && l.contains(&locked.name)),
        "{out:#?}"
    );

    fleet.restart(&bus);
    // Not overwritten by the older local record, which has c2 unused.
    assert_outcome(&pamtester(&svc, &used.name, &c2), false, AUTH_ERR, REPLAYED);
    let o = pamtester(
        &svc,
        &locked.name,
        &oathtool_at(&el.secret, el.confirmed_at + 30),
    );
    assert_outcome(&o, false, MAXTRIES, "Too many wrong codes: locked until ");
}

/// `otpgate admin rotate-key` for the fleet, run on one host with every
/// daemon stopped: one transaction re-seals every row; with the new key
/// file copied to both hosts, apps and replay marks still hold on both,
/// backup codes are gone, and a host still on the old key is refused.
#[test]
fn a_rotated_fleet_key_keeps_apps_and_marks_and_refuses_the_old_key() {
    let mut f = Fleet::start(WIDE_WINDOW);
    let u = test_user("otpgfl-rot");
    let e = enroll_cli(&f.a, &u.name);
    let c1 = oathtool_at(&e.secret, e.confirmed_at + 30);
    assert_outcome(&f.a.login(&u.name, &c1, None), true, SUCCESS, PROMPT);
    let old = TestDir::new("fleet-old-key");
    std::fs::copy(&f.key_file, old.join("master.key")).unwrap();
    f.a.daemon.stop();
    f.b.daemon.stop();

    let dir = TestDir::new("fleet-rotate");
    let config = dir.join("otpgate.toml");
    std::fs::write(&config, f.db.storage_toml(&f.key_file)).unwrap();
    let out = rotate_key(&config);
    assert_eq!(out.code, 0, "{out:#?}\n{}", f.logs());
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(&u.name) && l.contains("backup codes dropped")),
        "{out:#?}"
    );
    assert!(out.stdout.contains("copy it to every host"), "{out:#?}");
    assert_ne!(
        std::fs::read(&f.key_file).unwrap(),
        std::fs::read(old.join("master.key")).unwrap()
    );

    // Both hosts share the key file here: "copied" to both.
    f.a.daemon.restart(&f.a.bus);
    f.b.daemon.restart(&f.b.bus);
    assert_outcome(&f.b.login(&u.name, &c1, None), false, AUTH_ERR, REPLAYED);
    let c2 = oathtool_at(&e.secret, e.confirmed_at + 60);
    assert_outcome(&f.b.login(&u.name, &c2, None), true, SUCCESS, PROMPT);
    assert!(!f.a.login(&u.name, &e.backup_codes[0], None).success);
    let line = refused_start(&f.db.storage_toml(&old.join("master.key")));
    assert!(line.contains("key"), "{line}");
}
