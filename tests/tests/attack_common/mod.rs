//! Helpers shared by the attack tests (`tests/tests/attack_*.rs`): a bus
//! client that tells a daemon's answer from a lost call, a seeded random
//! generator, codes for a range of time steps, file-tree checks.
#![allow(dead_code)] // each test file uses a different part

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otpgate_proto::{AdminProxy, AuthProxy, ManagerProxy, OwnedDict, ServiceError};
use otpgate_tests::*;
use zbus::Variant;

pub const PERIOD: u64 = 30;
pub const STORAGE: &str = "org.otpgate.Otpgate1.Error.Storage";
pub const INVALID_USER: &str = "org.otpgate.Otpgate1.Error.InvalidUser";
pub const INVALID_ARGUMENT: &str = "org.otpgate.Otpgate1.Error.InvalidArgument";

/// What became of one call, as the client saw it.
#[derive(Debug)]
pub enum Reply<T> {
    /// The daemon answered.
    Answer(T),
    /// The daemon answered with one of its errors (or the bus refused it).
    Refused(ServiceError),
    /// The bus had no owner for the name: the call reached no daemon.
    NotDelivered(String),
    /// No answer reached the client (the daemon died with the call in
    /// flight, a timeout): the call may or may not have been applied.
    Unknown(String),
}

impl<T: std::fmt::Debug> Reply<T> {
    pub fn answer(self) -> T {
        match self {
            Reply::Answer(t) => t,
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

pub fn classify<T>(r: zbus::Result<T>) -> Reply<T> {
    match r {
        Ok(t) => Reply::Answer(t),
        Err(zbus::Error::FDO(f)) => match *f {
            zbus::fdo::Error::ServiceUnknown(m) | zbus::fdo::Error::NameHasNoOwner(m) => {
                Reply::NotDelivered(m)
            }
            zbus::fdo::Error::AccessDenied(m) => Reply::Refused(ServiceError::AccessDenied(m)),
            other => Reply::Unknown(format!("{other:?}")),
        },
        Err(zbus::Error::MethodError(name, message, _))
            if name.as_str().starts_with(otpgate_proto::ERROR_PREFIX) =>
        {
            Reply::Refused(ServiceError::from_name(
                name.as_str(),
                message.as_deref().unwrap_or(""),
            ))
        }
        Err(e) => Reply::Unknown(e.to_string()),
    }
}

/// One bus connection with the three proxies, driven by `zruntime`.
pub struct Client {
    pub conn: zbus::Connection,
    pub auth: AuthProxy<'static>,
    pub manager: ManagerProxy<'static>,
    pub admin: AdminProxy<'static>,
}

fn no_context() -> HashMap<&'static str, Variant<'static>> {
    HashMap::new()
}

impl Client {
    pub fn connect(address: &str) -> Client {
        let address = address.to_string();
        zruntime::block_on(async move {
            let conn = zbus::connection::Builder::address(address.as_str())
                .method_timeout(Duration::from_secs(20))
                .build()
                .await?;
            let auth = AuthProxy::new(&conn).await?;
            let manager = ManagerProxy::new(&conn).await?;
            let admin = AdminProxy::new(&conn).await?;
            zbus::Result::Ok(Client {
                conn,
                auth,
                manager,
                admin,
            })
        })
        .expect("connect to the test bus")
    }

    pub fn verify(&self, user: &str, code: &str) -> Reply<(String, OwnedDict)> {
        classify(zruntime::block_on(self.auth.verify(
            user,
            code,
            no_context(),
        )))
    }

    pub fn verify_ctx(
        &self,
        user: &str,
        code: &str,
        ctx: HashMap<&str, Variant<'_>>,
    ) -> Reply<(String, OwnedDict)> {
        classify(zruntime::block_on(self.auth.verify(user, code, ctx)))
    }

    pub fn status(&self, user: &str) -> Reply<OwnedDict> {
        classify(zruntime::block_on(self.manager.status(user)))
    }

    pub fn enroll(&self, user: &str) -> Reply<OwnedDict> {
        classify(zruntime::block_on(self.manager.enroll(user, no_context())))
    }

    pub fn confirm(&self, user: &str, code: &str) -> Reply<Vec<String>> {
        classify(zruntime::block_on(self.manager.confirm(user, code)))
    }

    pub fn regenerate(&self, user: &str) -> Reply<Vec<String>> {
        classify(zruntime::block_on(
            self.manager.regenerate_backup_codes(user, ""),
        ))
    }

    pub fn unlock(&self, user: &str) -> Reply<()> {
        classify(zruntime::block_on(self.admin.unlock(user)))
    }

    pub fn reset(&self, user: &str) -> Reply<()> {
        classify(zruntime::block_on(self.admin.reset(user)))
    }

    pub fn list_users(&self) -> Reply<Vec<OwnedDict>> {
        classify(zruntime::block_on(self.admin.list_users()))
    }

    /// A raw method call with any body, for wrong signatures.
    pub fn raw<B>(&self, iface: &str, method: &str, body: &B) -> zbus::Result<zbus::Message>
    where
        B: zbus::export::serde::Serialize + zbus::zvariant::DynamicType,
    {
        zruntime::block_on(self.conn.call_method(
            Some(otpgate_proto::BUS_NAME),
            otpgate_proto::OBJECT_PATH,
            Some(iface),
            method,
            body,
        ))
    }
}

/// xorshift64*: reproducible from the printed seed, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_time(label: &str) -> Rng {
        let seed = std::env::var("OTPGATE_ATTACK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("clock")
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{label}: random seed {seed} (rerun with OTPGATE_ATTACK_SEED={seed})");
        Rng(seed)
    }

    pub fn with_seed(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` for a test.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The SHA1/6-digit codes of `secret` for steps `first..first+n`, by
/// oathtool (one process for the whole range).
pub fn codes_for_steps(secret: &str, first: u64, n: u64) -> Vec<String> {
    let out = oathtool(
        &[
            "--totp",
            "-b",
            "-",
            "-w",
            &(n - 1).to_string(),
            "-N",
            &format!("@{}", first * PERIOD),
        ],
        secret,
    );
    let codes: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(codes.len() as u64, n, "oathtool -w printed {out:?}");
    codes
}

/// Every path under `dir` (files, directories, links), sorted.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                todo.push(entry.path());
            }
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

/// The contents of every regular file under `dir`.
pub fn file_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            fs::symlink_metadata(p)
                .map(|m| m.is_file())
                .unwrap_or(false)
        })
        .map(|p| {
            let b = fs::read(&p).unwrap_or_default();
            (p, b)
        })
        .collect()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Temporary files of interrupted saves in the users directory.
pub fn temp_files(state_dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(state_dir.join("users"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Calls `f` until it returns Some or `deadline` passes.
pub fn poll<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = std::time::Instant::now() + deadline;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if std::time::Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
