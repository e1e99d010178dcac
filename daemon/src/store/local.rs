//! `LocalStore`: the embedded engine: one JSON file per user under
//! `<path>/users/`, replaced by writing a temporary file and renaming it over
//! the old one (so a reader never sees a torn record), and the same bytes
//! appended to the journal (`<path>/journal`, see `journal.rs`), whose flush
//! makes the change durable and is shared by every save waiting at the same
//! time. `save` returning means the change is on disk: in the journal until
//! the next checkpoint, in the user's file after it. At open, whatever the
//! journal holds is written back into the users' files and flushed first.
//! Before any of that, the directory is locked (`<path>/lock`) for the
//! store's life: two stores on one directory would each replay and restart
//! the journal under the other.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use crate::error::Error;
use crate::fsutil::fsync_dir;
use crate::journal::{Change, Journal};
use crate::record::UserRecord;

use super::{valid_key, KeyLocks, Store, Write as Decision, TMP_PREFIX};

/// A record larger than this is corrupt, not read into memory.
const MAX_RECORD_BYTES: u64 = 1 << 20;
const EXT: &str = ".json";
const LOCK_FILE: &str = "lock";

pub struct LocalStore {
    users_dir: PathBuf,
    journal: Journal,
    notices: Vec<String>,
    /// Held (not read) for the store's life, and declared last so that it
    /// is released after everything else is dropped: see `lock_dir`.
    /// One writer per key at a time inside this process; the directory's
    /// lock excludes every other process.
    keys: KeyLocks,
    _lock: Flock<File>,
}

impl LocalStore {
    /// Opens (creating if needed) the state directory. It must be a
    /// directory owned by us; its mode is forced to 0700. It is locked for
    /// the store's life, so a second store on it (a second otpgated) fails
    /// with `Error::InUse` having changed nothing. It is probed for
    /// writing so a read-only or full disk refuses the start instead of the
    /// first login.
    pub fn open(path: &Path) -> Result<LocalStore, Error> {
        let err = |reason: String| Error::StateDir {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_absolute() {
            return Err(err("must be an absolute path".into()));
        }
        fs::create_dir_all(path).map_err(|e| err(format!("cannot create it: {e}")))?;
        check_dir(path, &err)?;
        // Before anything in the directory is read or changed: a second
        // daemon would replay and restart the journal under a live one and
        // remove its temporary files mid-save.
        let lock = lock_dir(path, &err)?;
        force_0700(path, &err)?;
        let users_dir = path.join("users");
        check_dir(&users_dir, &err)?;
        force_0700(&users_dir, &err)?;
        remove_leftovers(&users_dir);
        let probe = users_dir.join(format!("{TMP_PREFIX}probe"));
        File::create(&probe)
            .and_then(|f| f.sync_all())
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| err(format!("is not writable: {e}")))?;

        let journal_path = path.join("journal");
        let jerr = |e: std::io::Error| err(format!("journal {}: {e}", journal_path.display()));
        let dir = users_dir.clone();
        let (journal, recovery) = Journal::open(
            &journal_path,
            Box::new(move |users| make_durable(&dir, users)),
        )
        .map_err(jerr)?;
        let mut notices: Vec<String> = recovery.notice.into_iter().collect();
        if !recovery.changes.is_empty() {
            replay(&users_dir, &recovery.changes).map_err(jerr)?;
            notices.push(format!(
                "applied {} change(s) from the journal {} to the user records (otpgated stopped without a checkpoint)",
                recovery.changes.len(),
                journal_path.display()
            ));
        }
        journal.restart().map_err(jerr)?;
        Ok(LocalStore {
            users_dir,
            journal,
            notices,
            keys: KeyLocks::default(),
            _lock: lock,
        })
    }

    /// What opening the store found worth telling the administrator
    /// (a journal replayed or restarted), for the daemon's log.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    fn path_of(&self, user: &str) -> Result<PathBuf, Error> {
        // The name check is what keeps a user name from naming a path
        // outside the directory; it is enforced here as well as at the bus.
        if !valid_key(user) {
            return Err(Error::Corrupt {
                user: user.escape_debug().to_string(),
                reason: "not a valid user name".into(),
            });
        }
        Ok(self.users_dir.join(format!("{user}{EXT}")))
    }
}

/// Creates `dir` if missing and checks it is a directory of ours.
fn check_dir(dir: &Path, err: &impl Fn(String) -> Error) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(format!("cannot create {}: {e}", dir.display()))),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err(format!("{} is not a directory", dir.display())));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(err(format!(
            "{} is not owned by the user running otpgated",
            dir.display()
        )));
    }
    Ok(())
}

fn force_0700(dir: &Path, err: &impl Fn(String) -> Error) -> Result<(), Error> {
    let meta = fs::symlink_metadata(dir).map_err(|e| err(e.to_string()))?;
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("cannot make {} 0700: {e}", dir.display())))?;
    }
    Ok(())
}

/// One store per state directory: an exclusive `flock` on `<path>/lock`,
/// released by the kernel when the holder exits however it exits, so a
/// crash never leaves a stale lock. The holder's pid is written into the
/// file for the refusal message only; the lock is the flock.
fn lock_dir(path: &Path, err: &impl Fn(String) -> Error) -> Result<Flock<File>, Error> {
    let lock_path = path.join(LOCK_FILE);
    // Held read-only, since a file held open for writing keeps the
    // administrator from remounting the file system read-only ("busy"); std
    // will not create a file it does not open for writing, hence nix. No
    // O_TRUNC: a refused opener must not change the holder's file.
    let file = nix::fcntl::open(
        &lock_path,
        OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map(File::from)
    .map_err(|e| err(format!("cannot open {}: {e}", lock_path.display())))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            // Best effort: without it the refusal names no pid, and a
            // directory that cannot be written fails the probe that follows.
            let _ = OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&lock_path)
                .and_then(|mut f| writeln!(f, "{}", std::process::id()));
            Ok(lock)
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse::<u32>().ok());
            Err(Error::InUse {
                path: path.to_path_buf(),
                pid,
            })
        }
        Err((_, e)) => Err(err(format!("cannot lock {}: {e}", lock_path.display()))),
    }
}

/// Temporary files of saves interrupted by a crash.
fn remove_leftovers(users_dir: &Path) {
    if let Ok(entries) = fs::read_dir(users_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Replaces `path` by way of a temporary file and a rename, so that it holds
/// either the old or the new bytes whenever anyone looks. Not flushed: the
/// journal (or `replay`) is what makes it durable.
fn replace_file(users_dir: &Path, path: &Path, user: &str, bytes: &[u8]) -> std::io::Result<()> {
    let nonce =
        crate::crypto::hex(&crate::crypto::random_bytes::<6>().map_err(std::io::Error::other)?);
    let tmp = users_dir.join(format!("{TMP_PREFIX}{user}-{nonce}"));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Applies the journal's changes to the users' files, in order, and flushes
/// each file touched and the directory before the journal may forget them.
fn replay(users_dir: &Path, changes: &[Change]) -> std::io::Result<()> {
    let mut touched = BTreeSet::new();
    for change in changes {
        match change {
            Change::Save { user, bytes } if valid_key(user) => {
                let path = users_dir.join(format!("{user}{EXT}"));
                replace_file(users_dir, &path, user, bytes)?;
                touched.insert(user.clone());
            }
            Change::Delete { user } if valid_key(user) => {
                let path = users_dir.join(format!("{user}{EXT}"));
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                touched.insert(user.clone());
            }
            // Entries are written only for valid names; one that is not
            // came from elsewhere and must not name a path.
            _ => {}
        }
    }
    make_durable(users_dir, &touched)
}

/// Past this many users a checkpoint flushes the whole file system at once
/// (`syncfs`) rather than each file: one flush, but it also writes out
/// whatever else is pending there.
const PER_FILE_SYNC_LIMIT: usize = 256;

/// Makes the files of `users` (saved or deleted) durable: each file's data
/// and inode, then the directory for the renames and removals.
fn make_durable(users_dir: &Path, users: &BTreeSet<String>) -> std::io::Result<()> {
    if users.len() > PER_FILE_SYNC_LIMIT {
        return nix::unistd::syncfs(File::open(users_dir)?).map_err(std::io::Error::from);
    }
    for user in users.iter().filter(|u| valid_key(u)) {
        match File::open(users_dir.join(format!("{user}{EXT}"))) {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    fsync_dir(users_dir)
}

/// The file-level operations, also for tests and tools that inspect or
/// prepare a state directory. The engine goes through `Store`.
impl LocalStore {
    /// The user's record, `None` if there is none. A record that exists but
    /// cannot be read is `Error::Corrupt` for that user only.
    pub fn load(&self, user: &str) -> Result<Option<UserRecord>, Error> {
        let path = self.path_of(user)?;
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::Corrupt {
                    user: user.into(),
                    reason: format!("{} is a symbolic link", path.display()),
                })
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(Error::Corrupt {
                user: user.into(),
                reason: format!("{} is larger than 1 MiB", path.display()),
            });
        }
        UserRecord::from_bytes(user, &bytes)
            .map(Some)
            .map_err(|reason| Error::Corrupt {
                user: user.into(),
                reason: format!("{}: {reason}", path.display()),
            })
    }

    /// Replaces the record; durable when it returns.
    pub fn save(&self, record: &UserRecord) -> Result<(), Error> {
        let path = self.path_of(&record.user)?;
        let bytes = record.to_bytes();
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(Error::io(
                &path,
                std::io::Error::other("the record would be larger than 1 MiB"),
            ));
        }
        // The file first: if it cannot be written (full or read-only disk)
        // nothing is journaled and the caller answers an error. The reverse
        // order could leave a journaled change missing from the file that
        // the next load reads.
        replace_file(&self.users_dir, &path, &record.user, &bytes)
            .map_err(|e| Error::io(&path, e))?;
        self.journal
            .append(Change::Save {
                user: record.user.clone(),
                bytes,
            })
            .map_err(|e| Error::io(self.journal.path(), e))
    }

    /// Removes the record; durable when it returns.
    pub fn delete(&self, user: &str) -> Result<(), Error> {
        let path = self.path_of(user)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        // Journaled even when the file was already gone, so that no older
        // entry of this user can bring the record back at the next replay.
        self.journal
            .append(Change::Delete { user: user.into() })
            .map_err(|e| Error::io(self.journal.path(), e))
    }

    /// Every key with a record file (readable or not).
    pub fn users(&self) -> Result<Vec<String>, Error> {
        let mut users = Vec::new();
        for entry in fs::read_dir(&self.users_dir).map_err(|e| Error::io(&self.users_dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.users_dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(user) = name.strip_suffix(EXT) {
                if valid_key(user) {
                    users.push(user.to_string());
                }
            }
        }
        users.sort();
        Ok(users)
    }
}

impl Store for LocalStore {
    fn get(&self, key: &str) -> Result<Option<UserRecord>, Error> {
        self.load(key)
    }

    fn update(
        &self,
        key: &str,
        decide: &mut dyn FnMut(Option<UserRecord>) -> Decision,
    ) -> Result<(), Error> {
        let lock = self.keys.get(key);
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        match decide(self.load(key)?) {
            Decision::Keep => Ok(()),
            Decision::Put(record) => {
                if record.user != key {
                    return Err(Error::Corrupt {
                        user: key.into(),
                        reason: format!("a decision filed a record of {:?} under it", record.user),
                    });
                }
                self.save(&record)
            }
            Decision::Delete => self.delete(key),
        }
    }

    fn remove(&self, key: &str) -> Result<bool, Error> {
        let lock = self.keys.get(key);
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        let existed = match self.load(key) {
            Ok(r) => r.is_some(),
            Err(Error::Corrupt { .. }) => true,
            Err(e) => return Err(e),
        };
        if existed {
            self.delete(key)?;
        }
        Ok(existed)
    }

    fn keys(&self) -> Result<Vec<String>, Error> {
        self.users()
    }

    fn checkpoint(&self) -> Result<(), Error> {
        self.journal
            .checkpoint_now()
            .map_err(|e| Error::io(self.journal.path(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MAX_KEY_LEN;
    use otpgate_proto::valid_user_name;

    #[test]
    fn save_load_delete_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let store = LocalStore::open(&root).unwrap();
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        assert!(store.load("alice").unwrap().is_none());
        let mut r = UserRecord::new("alice", 100);
        r.failures = 3;
        store.save(&r).unwrap();
        let back = store.load("alice").unwrap().unwrap();
        assert_eq!(back.failures, 3);
        let file = root.join("users/alice.json");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(store.users().unwrap(), vec!["alice".to_string()]);
        store.delete("alice").unwrap();
        assert!(store.load("alice").unwrap().is_none());
    }

    #[test]
    fn corrupt_and_copied_records_are_errors_for_that_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.save(&UserRecord::new("bob", 1)).unwrap();
        fs::write(dir.path().join("users/carol.json"), b"{not json").unwrap();
        fs::copy(
            dir.path().join("users/bob.json"),
            dir.path().join("users/dave.json"),
        )
        .unwrap();
        assert!(matches!(store.load("carol"), Err(Error::Corrupt { .. })));
        let e = store.load("dave").unwrap_err().to_string();
        assert!(e.contains("not of \"dave\""), "{e}");
        assert!(store.load("bob").unwrap().is_some());
    }

    #[test]
    fn the_journal_restores_files_a_crash_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut r = UserRecord::new("alice", 1);
        r.failures = 2;
        store.save(&r).unwrap();
        store.save(&UserRecord::new("bob", 1)).unwrap();
        store.delete("bob").unwrap();
        drop(store);
        // As if the unflushed rename had not reached the disk before a
        // power cut: the file is empty, and bob's deleted file is back.
        fs::write(dir.path().join("users/alice.json"), b"").unwrap();
        fs::write(
            dir.path().join("users/bob.json"),
            UserRecord::new("bob", 1).to_bytes(),
        )
        .unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        assert_eq!(store.load("alice").unwrap().unwrap().failures, 2);
        assert!(store.load("bob").unwrap().is_none());
        assert!(
            store.notices()[0].contains("applied 3 change(s)"),
            "{:?}",
            store.notices()
        );
        drop(store);
        // Replayed once: the next start has nothing to apply.
        let store = LocalStore::open(dir.path()).unwrap();
        assert!(store.notices().is_empty(), "{:?}", store.notices());
        assert_eq!(store.users().unwrap(), vec!["alice".to_string()]);
    }

    #[test]
    fn bad_names_never_touch_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        for bad in ["../x", "a/b", "", ".", "a\0b"] {
            assert!(store.load(bad).is_err());
            assert!(store.delete(bad).is_err());
        }
    }

    /// Every path under `dir` with its mtime and, for files, its bytes.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, i64, i64, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            let m = fs::metadata(&d).unwrap();
            out.push((d.clone(), m.mtime(), m.mtime_nsec(), None));
            for e in fs::read_dir(&d).unwrap().flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    todo.push(e.path());
                } else {
                    let bytes = fs::read(e.path()).unwrap();
                    out.push((e.path(), m.mtime(), m.mtime_nsec(), Some(bytes)));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let store = LocalStore::open(&root).unwrap();
        // A journaled save, which a second opener would replay and restart.
        store.save(&UserRecord::new("alice", 1)).unwrap();
        let before = snapshot(&root);
        let e = match LocalStore::open(&root) {
            Ok(_) => panic!("a second store opened {} under a live one", root.display()),
            Err(e) => e,
        };
        assert!(matches!(e, Error::InUse { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "another otpgated (pid {}) is already using {}; stop it first",
                std::process::id(),
                root.display()
            )
        );
        assert!(
            before == snapshot(&root),
            "the refused open changed the state"
        );
        // The first store still works, and the lock goes with it.
        store.save(&UserRecord::new("bob", 1)).unwrap();
        drop(store);
        let store = LocalStore::open(&root).unwrap();
        assert_eq!(store.users().unwrap(), vec!["alice", "bob"]);
    }

    /// The temporary file of a save is `.tmp-KEY-` and 12 hex digits: the
    /// longest key that fits 255 bytes is stored, one byte more is refused
    /// as a key before any file is tried, also where it is a valid user
    /// name.
    #[test]
    fn the_longest_key_fits_a_file_name_and_one_more_byte_is_refused() {
        assert_eq!(MAX_KEY_LEN, 237);
        let longest = "k".repeat(MAX_KEY_LEN);
        let one_more = "k".repeat(MAX_KEY_LEN + 1);
        assert!(valid_key(&longest));
        assert!(!valid_key(&one_more));
        assert!(valid_user_name(&one_more));
        assert!(!valid_key(&"k".repeat(otpgate_proto::MAX_USER_LEN)));
        assert!(valid_key("uid:4294967295"));

        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut r = UserRecord::new(&longest, 100);
        r.failures = 2;
        store.save(&r).unwrap();
        assert_eq!(store.load(&longest).unwrap().unwrap().failures, 2);
        assert_eq!(store.users().unwrap(), vec![longest.clone()]);
        assert!(matches!(
            store.save(&UserRecord::new(&one_more, 100)),
            Err(Error::Corrupt { .. })
        ));
        assert!(store.load(&one_more).is_err());
        let files: Vec<_> = fs::read_dir(dir.path().join("users"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, [std::ffi::OsString::from(format!("{longest}.json"))]);
    }
}

/// Not a check: the CPU time of a save, for comparing designs. State under
/// /var/tmp (a real disk, not tmpfs):
/// `cargo test -p otpgated --release --lib save_cpu_cost -- --ignored --nocapture`
#[cfg(test)]
mod timing {
    use super::*;

    fn thread_cpu_us() -> u64 {
        use nix::sys::resource::{getrusage, UsageWho};
        let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
        let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
        us(u.user_time()) + us(u.system_time())
    }

    #[test]
    #[ignore]
    fn save_cpu_cost() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = LocalStore::open(&dir.path().join("state")).unwrap();
        let users: Vec<String> = (0..200).map(|n| format!("uid:{}", 10_000 + n)).collect();
        let mut rec = UserRecord::new(&users[0], 1);
        rec.factors = Vec::new();
        let n = 2000;
        for round in 0..3 {
            let (cpu0, wall0) = (thread_cpu_us(), std::time::Instant::now());
            for i in 0..n {
                let mut r = UserRecord::new(&users[i % users.len()], 1);
                r.failures = (i + round) as u32;
                store.save(&r).unwrap();
            }
            let cpu = thread_cpu_us() - cpu0;
            let wall = wall0.elapsed().as_micros() as u64;
            println!(
                "save: {:.1} us CPU, {:.1} us wall per save ({n} saves, 200 users)",
                cpu as f64 / n as f64,
                wall as f64 / n as f64
            );
        }
    }
}
