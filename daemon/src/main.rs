//! `otpgated [--config FILE] [--bus ADDRESS] [--check-config] [--migrate-store-to postgres]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use otpgated::audit::{Audit, Level};
use otpgated::clock::{Clock, SystemClock};
use otpgated::config::{Backend, Config, DEFAULT_CONFIG_PATH};
use otpgated::crypto::MasterKey;
use otpgated::email::Mailer;
use otpgated::engine::Engine;
use otpgated::error::Error;
use otpgated::pam_socket::PamSocket;
use otpgated::store::{migrate, LocalStore, PostgresStore, Store, Write};

/// How long a stop waits for requests already being answered.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "otpgated",
    version,
    about = "otpgate's daemon: holds the second-factor secrets and answers PAM and the CLI over D-Bus (the system bus, and a direct socket for the PAM module)"
)]
struct Args {
    /// Configuration file; a missing file means all defaults.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Bus address (default: $DBUS_SYSTEM_BUS_ADDRESS, else the system bus).
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
    /// Validate the configuration and exit: 0 valid, 1 not.
    #[arg(long)]
    check_config: bool,
    /// Copy every record of the local state directory ([storage] path) into
    /// the database of [storage] url, then exit: 0 all moved, 1 some kept
    /// back (named), 2 error. otpgated must be stopped. `otpgate admin
    /// migrate-store --to postgres` runs this.
    #[arg(long, value_name = "BACKEND", value_parser = ["postgres"])]
    migrate_store_to: Option<String>,
    /// Replace the master key, then exit: every secret is re-sealed under a
    /// new key (made as KEY_FILE.new, or taken from there when a rotation
    /// was cut short), which then replaces key_file; backup codes and
    /// mailed codes cannot be carried over and are dropped. 0 done, 1 some
    /// records left as they were (named), 2 error. otpgated must be
    /// stopped (in a fleet: on every host). `otpgate admin rotate-key`
    /// runs this.
    #[arg(long, conflicts_with = "migrate_store_to")]
    rotate_key: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check_config {
        return match Config::load(&args.config) {
            Ok(_) => {
                println!("{}: valid", args.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("otpgated: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.migrate_store_to.is_some() || args.rotate_key {
        let (what, result) = if args.rotate_key {
            ("rotate-key", rotate_key(&args))
        } else {
            ("migrate-store", migrate_store(&args))
        };
        return match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("otpgated: {what}: {e}");
                ExitCode::from(2)
            }
        };
    }
    let audit = Audit::new(true);
    match run(&args, audit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Also to syslog: under systemd the unit's status shows stderr,
            // but auditors read authpriv.
            Audit::new(false).log(Level::Error, &format!("event=start-failed error=\"{e}\""));
            eprintln!("otpgated: not started: {e}");
            ExitCode::FAILURE
        }
    }
}

/// No core dumps: a core of this process would hold decrypted secrets.
fn harden() {
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
}

/// Every mode of otpgated handles the key: root only, no core dumps, and
/// a configuration only root can have written.
fn root_config(args: &Args) -> Result<Config, Error> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::NotRoot);
    }
    harden();
    check_config_file_owner(&args.config)?;
    Ok(Config::load(&args.config)?)
}

/// Whoever can write the config can name the admin group: it must be
/// root's and writable by root alone.
fn check_config_file_owner(path: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(Error::Unsafe {
            path: path.to_path_buf(),
            reason: format!(
                "must be owned by root and writable by root only (owner uid {}, mode {:04o}): run `chown root: {p} && chmod 0644 {p}`",
                meta.uid(),
                meta.mode() & 0o7777,
                p = path.display()
            ),
        });
    }
    Ok(())
}

fn bus_address(args: &Args) -> String {
    args.bus
        .clone()
        .or_else(|| {
            std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
                .ok()
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| otpgate_proto::SYSTEM_BUS_ADDRESS.to_string())
}

fn run(args: &Args, audit: Audit) -> Result<(), Error> {
    let config = root_config(args)?;
    let key = load_key(&config)?;
    let store: Box<dyn Store> = match config.storage.backend {
        Backend::Local => {
            let store = LocalStore::open(&config.storage.path)?;
            for notice in store.notices() {
                audit.log(
                    Level::Warning,
                    &format!("event=journal detail=\"{notice}\""),
                );
            }
            Box::new(store)
        }
        Backend::Postgres => {
            let opened = PostgresStore::open(&config.storage, &key)?;
            if let Some(why) = &opened.down {
                // Serve anyway: a daemon that is not there would let a
                // `failmode=open` module wave everyone through.
                audit.log(
                    Level::Error,
                    &format!("event=database-down error=\"{why}\" (every code is refused until it answers; otpgated reconnects by itself)"),
                );
            }
            audit.log(
                Level::Info,
                &format!("event=database server={}", opened.store.server()),
            );
            Box::new(opened.store)
        }
    };
    let address = bus_address(args);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .thread_name("otpgated")
        .build()
        .map_err(|e| Error::Bus(format!("cannot start the runtime: {e}")))?;
    let mailer = {
        let _in_runtime = runtime.enter();
        Mailer::from_config(&config.email, &otpgated::engine::hostname())?
    };
    let engine = Arc::new(
        Engine::new(
            config,
            store,
            key,
            Arc::new(SystemClock),
            audit,
            runtime.handle().clone(),
        )
        .with_mailer(mailer),
    );
    runtime.block_on(async {
        // Before the name is taken: every login then finds its record
        // under the account's uid.
        match engine.migrate_legacy_records().await {
            Ok(0) => {}
            Ok(n) => engine.audit().log(
                Level::Notice,
                &format!("event=records-moved count={n} (records keyed by uid now)"),
            ),
            Err(e) => return Err(Error::Migration(e.to_string())),
        }
        let conn = otpgated::serve(&address, Arc::clone(&engine)).await?;
        // After the name is ours: a second daemon on the same bus has failed
        // by now; one on another bus finds this socket live and fails here.
        let pam_socket = match &engine.config().pam.socket {
            Some(path) => Some(PamSocket::bind(path, Arc::clone(&engine))?),
            None => None,
        };
        engine.audit().log(
            Level::Info,
            &format!(
                "event=started bus={address} pam_socket={} version={}",
                pam_socket
                    .as_ref()
                    .map_or("off".to_string(), |s| s.path().display().to_string()),
                env!("CARGO_PKG_VERSION")
            ),
        );
        // Type=notify: ready only once the name is ours (a no-op outside systemd).
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        wait_for_stop(engine.audit()).await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        // Stop taking new calls, then let the ones under way finish and
        // reach the disk before exiting.
        let _ = conn.release_name(otpgate_proto::BUS_NAME).await;
        if let Some(socket) = pam_socket {
            socket.stop();
        }
        let deadline = Instant::now() + DRAIN_DEADLINE;
        while engine.inflight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Safe even with a call still running: its change then lands in the
        // new generation and is replayed at the next start.
        if let Err(e) = engine.checkpoint().await {
            engine.audit().log(
                Level::Warning,
                &format!(
                    "event=checkpoint-failed error=\"{e}\" (the next start replays the journal)"
                ),
            );
        }
        engine.audit().log(
            Level::Info,
            &format!("event=stopped unfinished={}", engine.inflight()),
        );
        Ok(())
    })
}

/// `--migrate-store-to postgres`: this host's local records into the fleet
/// database. Each record moves in one transaction, so a record another
/// host changed meanwhile is judged on its latest state; a fleet record
/// newer than the local one is never overwritten. True when every record
/// moved.
fn migrate_store(args: &Args) -> Result<bool, Error> {
    let config = root_config(args)?;
    if config.storage.backend != Backend::Postgres {
        return Err(Error::Database(format!(
            "{}: set [storage] backend = \"postgres\" and url first (the records are read from [storage] path)",
            args.config.display()
        )));
    }
    // Holds the directory's lock: refused while otpgated runs on it, so no
    // login can change a record after it was copied.
    let local = LocalStore::open(&config.storage.path)?;
    let key = load_key(&config)?;
    let opened = PostgresStore::open(&config.storage, &key)?;
    if let Some(why) = opened.down {
        return Err(Error::DatabaseDown(why));
    }
    let fleet = opened.store;
    let now = SystemClock.now();
    let (mut moved, mut kept, mut unreadable) = (0u32, 0u32, 0u32);
    for (k, rec) in local.list()? {
        let rec = match rec {
            Ok(r) if otpgated::accounts::uid_of_key(&k).is_some() => r,
            Ok(_) => {
                // A fleet's hosts may not agree on what a name means at
                // the moment it is moved: only uid keys go in.
                println!(
                    "skipped {k}: filed by user name, whose account this host does not know; \
                     start otpgated on the local store once it resolves (the record then moves to its uid), or `otpgate reset {k}`"
                );
                unreadable += 1;
                continue;
            }
            Err(e) => {
                println!("skipped {k}: {e}");
                unreadable += 1;
                continue;
            }
        };
        // Disabled or reset here: only counters. Never over a fleet record
        // (that would disable the user on every host), only where none is.
        if rec.retired(now) {
            let mut put = false;
            fleet.update(&k, &mut |current| {
                put = current.is_none();
                if put {
                    Write::Put(rec.clone())
                } else {
                    Write::Keep
                }
            })?;
            if put {
                println!(
                    "moved {k} ({}): not enrolled, its counters only",
                    rec.display_name()
                );
                moved += 1;
            } else {
                println!(
                    "left {k} ({}): not enrolled here; the fleet's record stays",
                    rec.display_name()
                );
            }
            continue;
        }
        let mut refusal = None;
        fleet.update(&k, &mut |current| {
            // A retired fleet record holds only counters: they are kept.
            let current = match current {
                Some(c) if c.retired(now) => {
                    let mut r = rec.clone();
                    r.add_days(&c.days);
                    refusal = None;
                    return Write::Put(r);
                }
                other => other,
            };
            refusal = current.and_then(|c| migrate::refusal(&c, &rec));
            if refusal.is_some() {
                Write::Keep
            } else {
                Write::Put(rec.clone())
            }
        })?;
        match refusal {
            Some(why) => {
                println!("kept {k} ({}): {why}; nothing copied", rec.display_name());
                kept += 1;
            }
            None => {
                println!("moved {k} ({})", rec.display_name());
                moved += 1;
            }
        }
    }
    println!(
        "migrate-store: {moved} moved, {kept} kept back, {unreadable} skipped; {} left as it was",
        config.storage.path.display()
    );
    Ok(kept == 0 && unreadable == 0)
}

/// `--rotate-key`: see `Args::rotate_key` and `otpgated::rotate`.
fn rotate_key(args: &Args) -> Result<bool, Error> {
    use otpgated::rotate::{reseal, Dropped};
    let config = root_config(args)?;
    let key_file = &config.storage.key_file;
    if !key_file.exists() {
        return Err(Error::Key {
            path: key_file.clone(),
            reason: "no key file to rotate (a key handed over as the systemd credential otpgate-master-key is rotated by making a new credential; this command works on key_file)".into(),
        });
    }
    let old = MasterKey::load_or_create(key_file)?;
    let mut new_path = key_file.clone().into_os_string();
    new_path.push(".new");
    let new_path = PathBuf::from(new_path);
    // Made only once the store is ours, so a refusal leaves nothing behind.
    let new_key = || {
        if new_path.exists() {
            println!(
                "continuing with the new key already in {}",
                new_path.display()
            );
        }
        MasterKey::load_or_create(&new_path)
    };
    let say = |key: &str, rec: &otpgated::record::UserRecord, d: &Dropped| {
        let mut line = format!("re-sealed {key} ({})", rec.display_name());
        if d.backup_codes > 0 {
            line.push_str(&format!(
                "; {} backup codes dropped: the user needs new ones (`otpgate backup-codes`)",
                d.backup_codes
            ));
        }
        if d.mailed_code {
            line.push_str("; a mailed code dropped: it is asked for again");
        }
        if d.breakglass_codes > 0 {
            line.push_str(&format!(
                "; {} break-glass codes dropped: make new ones (`otpgate breakglass generate`)",
                d.breakglass_codes
            ));
        }
        println!("{line}");
    };
    let (mut done, mut left) = (0u32, 0u32);
    match config.storage.backend {
        Backend::Local => {
            // The directory's lock: refused while otpgated runs on it.
            let store = LocalStore::open(&config.storage.path)?;
            let new = new_key()?;
            for key in store.keys()? {
                let mut outcome = Err(String::new());
                let r = store.update(&key, &mut |rec| {
                    let Some(rec) = rec else {
                        outcome = Ok(None);
                        return Write::Keep;
                    };
                    match reseal(rec, &old, &new) {
                        Ok((rec, dropped)) => {
                            outcome = Ok(Some((rec.clone(), dropped)));
                            Write::Put(rec)
                        }
                        Err(why) => {
                            outcome = Err(why);
                            Write::Keep
                        }
                    }
                });
                match (r, outcome) {
                    (Ok(()), Ok(Some((rec, dropped)))) => {
                        say(&key, &rec, &dropped);
                        done += 1;
                    }
                    (Ok(()), Ok(None)) => {}
                    (Ok(()), Err(why)) => {
                        println!("left {key} as it was: {why}");
                        left += 1;
                    }
                    (Err(e), _) => {
                        println!("left {key} as it was: {e}");
                        left += 1;
                    }
                }
            }
            store.checkpoint()?;
        }
        Backend::Postgres => {
            let opened = match PostgresStore::open(&config.storage, &old) {
                Err(Error::FleetKey) if new_path.exists() => {
                    // Committed before, cut short before the key file was
                    // replaced: the database must open under the new key.
                    PostgresStore::open(&config.storage, &new_key()?)?;
                    println!("the database is already sealed with the new key");
                    None
                }
                other => Some(other?),
            };
            if let Some(opened) = opened {
                if let Some(why) = opened.down {
                    return Err(Error::DatabaseDown(why));
                }
                let new = new_key()?;
                let report = opened.store.rotate(&new, &mut |key, rec| {
                    reseal(rec, &old, &new).map(|(rec, dropped)| {
                        say(key, &rec, &dropped);
                        rec
                    })
                })?;
                for (key, outcome) in report {
                    match outcome {
                        Ok(()) => done += 1,
                        Err(why) => {
                            println!("left {key} as it was: {why}");
                            left += 1;
                        }
                    }
                }
            }
        }
    }
    std::fs::rename(&new_path, key_file).map_err(|e| Error::io(key_file, e))?;
    if let Some(dir) = key_file.parent() {
        otpgated::fsutil::fsync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    println!(
        "rotate-key: {done} re-sealed, {left} left as they were (those do not open under the new key: `otpgate reset USER`); the new key is in {}{}",
        key_file.display(),
        if config.storage.backend == Backend::Postgres {
            ": copy it to every host of the fleet before starting otpgated there"
        } else {
            ""
        }
    );
    Ok(left == 0)
}

/// The systemd credential holding the master key (`LoadCredential=` or
/// `LoadCredentialEncrypted=otpgate-master-key:…`), preferred over the key
/// file when the unit provides it.
pub const KEY_CREDENTIAL: &str = "otpgate-master-key";

fn load_key(config: &Config) -> Result<MasterKey, Error> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = PathBuf::from(dir).join(KEY_CREDENTIAL);
        if path.exists() {
            return MasterKey::load_credential(&path);
        }
    }
    MasterKey::load_or_create(&config.storage.key_file)
}

async fn wait_for_stop(audit: &Audit) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => audit.log(
                Level::Notice,
                "event=sighup-ignored reason=\"the configuration is read at start: restart otpgated to apply changes\"",
            ),
        }
    }
}
