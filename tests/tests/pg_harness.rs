//! The private PostgreSQL server of the fleet tests (`otpgate_tests::pg`)
//! does what those tests rely on: it starts, keeps its data over a restart
//! on the same port, stops answering when frozen and answers again when
//! thawed, makes a read-only standby, and its certificate names
//! `localhost` alone under the test CA.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use otpgate_tests::pg::{psql_conninfo, PgServer};
use otpgate_tests::require_root;

#[test]
fn starts_and_keeps_its_data_over_a_restart_on_the_same_port() {
    require_root();
    let mut pg = PgServer::start();
    pg.psql(
        "postgres",
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before');",
    );
    let (port, pid) = (pg.port(), pg.pid());
    pg.restart();
    assert_eq!(pg.port(), port);
    assert_ne!(pg.pid(), pid, "restart started a new postmaster");
    assert_eq!(pg.psql("postgres", "SELECT v FROM kept"), "before");
    pg.stop();
    assert!(!pg.accepts_connections(), "stopped, yet answering");
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the first postmaster is still there"
    );
}

#[test]
fn a_frozen_server_answers_nothing_until_thawed() {
    require_root();
    let mut pg = PgServer::start();
    // A backend that exists before the freeze is frozen with it.
    assert_eq!(pg.psql("postgres", "SELECT 1"), "1");
    pg.freeze();
    let t = Instant::now();
    let frozen = pg.try_psql_within("postgres", "SELECT 1", Duration::from_secs(3));
    assert!(frozen.is_err(), "a frozen server answered: {frozen:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    pg.thaw();
    assert_eq!(
        pg.try_psql_within("postgres", "SELECT 2", Duration::from_secs(30)),
        Ok("2".to_string())
    );
}

#[test]
fn a_standby_is_read_only_and_follows_the_primary() {
    require_root();
    let pg = PgServer::start();
    pg.psql(
        "postgres",
        "CREATE TABLE t (v int); INSERT INTO t VALUES (7);",
    );
    let standby = pg.start_standby();
    assert_ne!(standby.port(), pg.port());
    assert_eq!(pg.psql("postgres", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(standby.psql("postgres", "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(standby.psql("postgres", "SELECT v FROM t"), "7");
    let write = standby.try_psql("postgres", "INSERT INTO t VALUES (8)");
    assert!(
        write.as_ref().is_err_and(|e| e.contains("read-only")),
        "{write:?}"
    );
}

#[test]
fn the_fleet_role_logs_in_with_its_password_and_tls_checks_the_host_and_ca() {
    require_root();
    let pg = PgServer::start();
    let fleet = pg.fleet_db();
    let meta = std::fs::metadata(fleet.password_file()).expect("password file");
    assert_eq!(meta.uid(), 0);
    assert_eq!(
        meta.mode() & 0o077,
        0,
        "the password file is readable by others"
    );
    assert!(!fleet
        .url("127.0.0.1", "disable")
        .contains(&fleet.password()));
    let port = pg.port();
    let conn = |host: &str, mode: &str, root: &std::path::Path| {
        format!(
            "host={host} port={port} user=otpgate dbname=otpgate sslmode={mode} sslrootcert={}",
            root.display()
        )
    };
    let ssl_in_use = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

    // The right CA and the name the certificate carries.
    assert_eq!(
        psql_conninfo(
            &conn("localhost", "verify-full", pg.ca_file()),
            &fleet.password(),
            ssl_in_use
        ),
        Ok("t".to_string())
    );
    // The address is not in the certificate.
    let by_ip = psql_conninfo(
        &conn("127.0.0.1", "verify-full", pg.ca_file()),
        &fleet.password(),
        "SELECT 1",
    );
    assert!(
        by_ip
            .as_ref()
            .is_err_and(|e| e.contains("does not match host name")),
        "{by_ip:?}"
    );
    // verify-ca does not look at the name.
    assert_eq!(
        psql_conninfo(
            &conn("127.0.0.1", "verify-ca", pg.ca_file()),
            &fleet.password(),
            "SELECT 1"
        ),
        Ok("1".to_string())
    );
    // A CA that signed nothing of the server's.
    let other = psql_conninfo(
        &conn("localhost", "verify-full", pg.other_ca_file()),
        &fleet.password(),
        "SELECT 1",
    );
    assert!(
        other
            .as_ref()
            .is_err_and(|e| e.contains("certificate verify failed")),
        "{other:?}"
    );
    // Plain TCP needs the password (SCRAM), and the owner may create tables.
    let plain = conn("127.0.0.1", "disable", pg.ca_file());
    let wrong = psql_conninfo(&plain, "not-the-password", "SELECT 1");
    assert!(
        wrong
            .as_ref()
            .is_err_and(|e| e.contains("password authentication failed")),
        "{wrong:?}"
    );
    assert_eq!(
        psql_conninfo(
            &plain,
            &fleet.password(),
            "CREATE TABLE mine (v int); SELECT current_user"
        ),
        Ok("otpgate".to_string())
    );
    // pg_dump sees what the role wrote.
    let dump = String::from_utf8_lossy(&pg.dump("otpgate")).into_owned();
    assert!(dump.contains("CREATE TABLE public.mine"), "{dump}");
    // Asking again gives the same role and password.
    assert_eq!(pg.fleet_db().password(), fleet.password());
}
