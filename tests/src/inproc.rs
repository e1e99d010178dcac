//! The real engine served in-process (`otpgated::serve`) on a private bus,
//! with a clock the test moves: for what wall time would make slow or
//! impossible to test (expiry, locks running out, a year of guesses) and
//! for benchmarks of the bus round trip without a process in between.

use std::path::Path;
use std::sync::Arc;

use otpgated::accounts::Accounts;
use otpgated::audit::Audit;
use otpgated::clock::{Clock, ManualClock};
use otpgated::config::Config;
use otpgated::crypto::MasterKey;
use otpgated::email::Mailer;
use otpgated::engine::Engine;
use otpgated::store::LocalStore;

use crate::{Bus, TestDir};

/// A step boundary far from now, so that codes for the manual clock are the
/// test's alone.
pub const T0: u64 = 1_900_000_020;

/// The service, serving until dropped. Fields drop in order: the bus
/// connection first (no call can arrive after), the engine, its state
/// directory, and last the runtime that ran it.
pub struct InProcess {
    pub conn: zbus::Connection,
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
    pub dir: TestDir,
    pub rt: tokio::runtime::Runtime,
}

/// Records saved before the engine opens the store.
type Seed<'a> = Box<dyn FnOnce(&LocalStore) + 'a>;

/// How to build an [`InProcess`]: [`InProcess::builder`].
pub struct Builder<'a> {
    config_toml: &'a str,
    now: u64,
    worker_threads: usize,
    key: Option<MasterKey>,
    mailer: bool,
    accounts: Option<Arc<dyn Accounts>>,
    seed: Option<Seed<'a>>,
}

impl InProcess {
    /// With `config_toml` (an empty string: the defaults), the clock at
    /// [`T0`], a fresh key and state, the host's accounts and no mail.
    pub fn start(bus: &Bus, config_toml: &str) -> InProcess {
        InProcess::builder(config_toml).start(bus)
    }

    pub fn builder(config_toml: &str) -> Builder<'_> {
        Builder {
            config_toml,
            now: T0,
            worker_threads: 1,
            key: None,
            mailer: false,
            accounts: None,
            seed: None,
        }
    }

    /// The manual clock's time.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }
}

impl<'a> Builder<'a> {
    /// The clock starts at `now` instead of [`T0`].
    pub fn clock_at(mut self, now: u64) -> Builder<'a> {
        self.now = now;
        self
    }

    /// Threads of the runtime that serves the bus and does the file I/O.
    pub fn worker_threads(mut self, n: usize) -> Builder<'a> {
        self.worker_threads = n;
        self
    }

    /// This master key instead of a fresh one (to seal records beforehand).
    pub fn key(mut self, key: MasterKey) -> Builder<'a> {
        self.key = Some(key);
        self
    }

    /// Mails codes as the config's `[email]` says, as from host `test-host`.
    pub fn with_mailer(mut self) -> Builder<'a> {
        self.mailer = true;
        self
    }

    /// This name service instead of the host's.
    pub fn accounts(mut self, accounts: Arc<dyn Accounts>) -> Builder<'a> {
        self.accounts = Some(accounts);
        self
    }

    /// Runs `seed` on the fresh store before the engine takes it (to save
    /// records as if enrolled earlier).
    pub fn seed(mut self, seed: impl FnOnce(&LocalStore) + 'a) -> Builder<'a> {
        self.seed = Some(Box::new(seed));
        self
    }

    /// Serves the engine on `bus`, owning the bus name.
    pub fn start(self, bus: &Bus) -> InProcess {
        let dir = TestDir::new("inproc");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.worker_threads)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let clock = Arc::new(ManualClock::new(self.now));
        let config =
            Config::parse(self.config_toml, Path::new("test.toml")).expect("a valid test config");
        let store = LocalStore::open(&dir.join("state")).expect("a fresh store");
        if let Some(seed) = self.seed {
            seed(&store);
        }
        let mailer = if self.mailer {
            // The mailer's transport belongs to the runtime it is made in.
            let _in_rt = rt.enter();
            Mailer::from_config(&config.email, "test-host").expect("a valid [email] section")
        } else {
            None
        };
        let key = match self.key {
            Some(key) => key,
            None => MasterKey::generate().expect("a master key"),
        };
        let mut engine = Engine::new(
            config,
            Box::new(store),
            key,
            clock.clone(),
            // Kept in memory, for tests that read what was logged.
            Audit::kept(),
            rt.handle().clone(),
        )
        .with_mailer(mailer);
        if let Some(accounts) = self.accounts {
            engine = engine.with_accounts(accounts);
        }
        let engine = Arc::new(engine);
        let conn = rt
            .block_on(otpgated::serve(&bus.address, engine.clone()))
            .expect("serve the engine on the private bus");
        InProcess {
            conn,
            engine,
            clock,
            dir,
            rt,
        }
    }
}
