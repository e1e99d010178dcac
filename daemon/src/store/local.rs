//! `LocalStore`: the embedded engine: one JSON file per user under
//! `<path>/users/`, a write-ahead journal (`<path>/journal`, see
//! `journal.rs`), and in memory the records changed since their files were
//! last written (the overlay).
//!
//! A save is one journal append: the journal's flush, shared by every save
//! waiting at the same time, is what makes it durable, so `save` returning
//! means the change is on disk. The user's file is not touched. Creating,
//! renaming and evicting a temporary file per save cost about a third of a
//! login's CPU and bought nothing the journal did not already give; the
//! file is written when the journal needs the room back (a checkpoint of
//! one of its halves, in the background) or at a clean stop, once for all
//! the saves of that user in between.
//!
//! So the files lag, and the overlay is what keeps reads right: every
//! record saved or deleted since its file was last made durable, by key,
//! read before the file; `keys` and `list` add its saves and drop its
//! deletions. A checkpoint writes the overlay's records of the users it
//! covers (temporary file and rename, so a file is always whole), makes
//! them durable (one `syncfs` past a few files), flushes the directory,
//! and only then drops the entries it wrote, unless a newer save replaced
//! them meanwhile. An entry is in the overlay before its append starts, so
//! a checkpoint running meanwhile writes it too; an append that fails
//! takes its entry back out, so what the daemon reads is what was answered.
//!
//! A journal append cannot meet a full disk (its blocks are reserved), but
//! the file a checkpoint will write can: a save first asks the file system
//! (`statvfs`, about a microsecond) whether it is read-only or has no room
//! for the record, and refuses then, as it did when it wrote the file.
//! Deletions still remove the file at once (they are rare, and an
//! administrator's `reset` should leave no file behind).
//!
//! At open, whatever the journal holds is written into the users' files
//! and flushed first. Before any of that, the directory is locked
//! (`<path>/lock`) for the store's life: two stores on one directory would
//! each replay and restart the journal under the other.
//!
//! A file edited by hand while the daemon holds a newer record for it in
//! the overlay is overwritten by the next checkpoint; one edited while the
//! daemon has no pending change for it (after a clean stop, or after a
//! checkpoint) is read as it is, and a corrupt one is reported, never
//! replaced by a fresh record.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// A record saved or deleted since its file was last made durable.
#[derive(Clone)]
struct Slot {
    /// Which change this is: a checkpoint drops the slot only if no later
    /// change replaced the one it wrote.
    version: u64,
    /// `None`: deleted.
    saved: Option<Arc<Saved>>,
}

struct Saved {
    record: UserRecord,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Overlay {
    slots: Mutex<(u64, HashMap<String, Slot>)>,
}

impl Overlay {
    fn get(&self, key: &str) -> Option<Slot> {
        self.lock().1.get(key).cloned()
    }

    /// Sets `key`'s slot; returns its version and the slot it replaced.
    fn put(&self, key: &str, saved: Option<Arc<Saved>>) -> (u64, Option<Slot>) {
        let mut g = self.lock();
        g.0 += 1;
        let version = g.0;
        let before = g.1.insert(key.to_string(), Slot { version, saved });
        (version, before)
    }

    /// Undoes the `put` of `version` if nothing replaced it since.
    fn undo(&self, key: &str, version: u64, before: Option<Slot>) {
        let mut g = self.lock();
        if g.1.get(key).is_some_and(|s| s.version == version) {
            match before {
                Some(slot) => g.1.insert(key.to_string(), slot),
                None => g.1.remove(key),
            };
        }
    }

    /// Drops the slots a checkpoint made durable, unless replaced since.
    fn forget(&self, written: &[(String, u64)]) {
        let mut g = self.lock();
        for (key, version) in written {
            if g.1.get(key).is_some_and(|s| s.version == *version) {
                g.1.remove(key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<String, Slot>)> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct LocalStore {
    users_dir: PathBuf,
    overlay: Arc<Overlay>,
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
        let overlay = Arc::new(Overlay::default());
        let pending = Arc::clone(&overlay);
        let (journal, recovery) = Journal::open(
            &journal_path,
            Box::new(move |users| write_back(&dir, &pending, users)),
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
            overlay,
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
/// caller flushes a whole checkpoint's files at once.
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
    let saved: Vec<&String> = touched
        .iter()
        .filter(|u| users_dir.join(format!("{u}{EXT}")).exists())
        .collect();
    sync_files(users_dir, &saved)
}

/// Past this many files a checkpoint flushes the whole file system at once
/// (`syncfs`) rather than each file: one call instead of one per file (see
/// docs/design.md for the figures), though it also writes out whatever else
/// is pending there.
const PER_FILE_SYNC_LIMIT: usize = 16;

/// Makes the files of `saved` durable, then the directory (for the renames
/// and removals).
fn sync_files(users_dir: &Path, saved: &[&String]) -> std::io::Result<()> {
    if saved.len() > PER_FILE_SYNC_LIMIT {
        nix::unistd::syncfs(File::open(users_dir)?).map_err(std::io::Error::from)?;
    } else {
        for user in saved {
            match File::open(users_dir.join(format!("{user}{EXT}"))) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    fsync_dir(users_dir)
}

/// The store's side of a checkpoint: writes the overlay's record of each of
/// `users` into its file (or removes the file), makes them durable, and
/// then forgets the entries written. A user without an entry needs nothing:
/// an entry is dropped only once its file is durable.
fn write_back(
    users_dir: &Path,
    overlay: &Overlay,
    users: &BTreeSet<String>,
) -> std::io::Result<()> {
    let mut written = Vec::new();
    let mut saved = Vec::new();
    for user in users.iter().filter(|u| valid_key(u)) {
        let Some(slot) = overlay.get(user) else {
            continue;
        };
        let path = users_dir.join(format!("{user}{EXT}"));
        match &slot.saved {
            Some(s) => {
                replace_file(users_dir, &path, user, &s.bytes)?;
                saved.push(user);
            }
            None => match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
        written.push((user.clone(), slot.version));
    }
    if written.is_empty() {
        return Ok(());
    }
    sync_files(users_dir, &saved)?;
    overlay.forget(&written);
    Ok(())
}

/// The file-level operations, also for tests and tools that inspect or
/// prepare a state directory. The engine goes through `Store`.
impl LocalStore {
    /// The user's record, `None` if there is none: the latest saved, from
    /// the overlay, or else from the file. A record that exists but cannot
    /// be read is `Error::Corrupt` for that user only.
    pub fn load(&self, user: &str) -> Result<Option<UserRecord>, Error> {
        let path = self.path_of(user)?;
        if let Some(slot) = self.overlay.get(user) {
            return Ok(slot.saved.map(|s| s.record.clone()));
        }
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

    /// Replaces the record; durable when it returns. One journal append:
    /// the file is written at the next checkpoint.
    pub fn save(&self, record: &UserRecord) -> Result<(), Error> {
        let path = self.path_of(&record.user)?;
        let bytes = record.to_bytes();
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(Error::io(
                &path,
                std::io::Error::other("the record would be larger than 1 MiB"),
            ));
        }
        self.check_room(bytes.len() as u64)
            .map_err(|e| Error::io(&path, e))?;
        let saved = Arc::new(Saved {
            record: record.clone(),
            bytes: bytes.clone(),
        });
        let (version, before) = self.overlay.put(&record.user, Some(saved));
        self.journal
            .append(Change::Save {
                user: record.user.clone(),
                bytes,
            })
            .map_err(|e| {
                self.overlay.undo(&record.user, version, before);
                Error::io(self.journal.path(), e)
            })
    }

    /// Whether the checkpoint will be able to write a record of `len` bytes:
    /// refused now, as when saves wrote the file, if the file system is
    /// read-only or full, rather than journaled and answered while the file
    /// behind it cannot be written.
    fn check_room(&self, len: u64) -> std::io::Result<()> {
        use nix::sys::statvfs::{statvfs, FsFlags};
        let fs = statvfs(&self.users_dir).map_err(std::io::Error::from)?;
        if fs.flags().contains(FsFlags::ST_RDONLY) {
            return Err(std::io::Error::from_raw_os_error(libc::EROFS));
        }
        // Root may use the blocks reserved for it, as a write would.
        let blocks = if nix::unistd::geteuid().is_root() {
            fs.blocks_free()
        } else {
            fs.blocks_available()
        };
        let block = fs.fragment_size().max(1);
        if (blocks as u64) < len.div_ceil(block as u64) + 1 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    /// Removes the record; durable when it returns. The file goes at once.
    pub fn delete(&self, user: &str) -> Result<(), Error> {
        let path = self.path_of(user)?;
        // In the overlay first, so a checkpoint running meanwhile cannot
        // write an older record back after the file is removed.
        let (version, before) = self.overlay.put(user, None);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                self.overlay.undo(user, version, before);
                return Err(Error::io(&path, e));
            }
        }
        // Journaled even when the file was already gone, so that no older
        // entry of this user can bring the record back at the next replay.
        // Not undone if this fails: the file is gone already.
        self.journal
            .append(Change::Delete { user: user.into() })
            .map_err(|e| Error::io(self.journal.path(), e))
    }

    /// Every key with a record, readable or not: the files, with the
    /// overlay's saves added and its deletions taken out.
    pub fn users(&self) -> Result<Vec<String>, Error> {
        // The overlay before the directory: a checkpoint that drops an entry
        // meanwhile renamed its file into place first, so the user is seen
        // in one or the other.
        let pending: Vec<(String, bool)> = self
            .overlay
            .lock()
            .1
            .iter()
            .map(|(user, slot)| (user.clone(), slot.saved.is_some()))
            .collect();
        let mut users = BTreeSet::new();
        for entry in fs::read_dir(&self.users_dir).map_err(|e| Error::io(&self.users_dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.users_dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(user) = name.strip_suffix(EXT) {
                if valid_key(user) {
                    users.insert(user.to_string());
                }
            }
        }
        for (user, saved) in pending {
            if saved {
                users.insert(user);
            } else {
                users.remove(&user);
            }
        }
        Ok(users.into_iter().collect())
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
        // The file is written by a checkpoint.
        store.checkpoint().unwrap();
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
        store.checkpoint().unwrap();
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

    fn with_failures(user: &str, failures: u32) -> UserRecord {
        let mut r = UserRecord::new(user, 1);
        r.failures = failures;
        r
    }

    /// A save is a journal entry: the file stays as the last checkpoint
    /// left it, reads see the latest save, and so does a reopen after a
    /// crash (the journal replayed).
    #[test]
    fn saves_leave_the_file_alone_until_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users/alice.json");
        let store = LocalStore::open(dir.path()).unwrap();
        store.save(&with_failures("alice", 1)).unwrap();
        store.checkpoint().unwrap();
        let checkpointed = fs::read(&file).unwrap();
        for n in 2..=20 {
            store.save(&with_failures("alice", n)).unwrap();
        }
        assert_eq!(
            fs::read(&file).unwrap(),
            checkpointed,
            "a save wrote the file"
        );
        assert_eq!(store.load("alice").unwrap().unwrap().failures, 20);
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        assert_eq!(store.load("alice").unwrap().unwrap().failures, 20);
        assert_eq!(
            with_failures("alice", 20).to_bytes(),
            fs::read(&file).unwrap()
        );
    }

    /// `keys` and `list` answer from the overlay too: a user saved since the
    /// last checkpoint (no file yet) is there, one deleted since is not,
    /// even with a file of it on disk.
    #[test]
    fn keys_and_list_see_the_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.save(&with_failures("bob", 1)).unwrap();
        store.save(&with_failures("carol", 2)).unwrap();
        store.checkpoint().unwrap();
        store.save(&with_failures("dave", 3)).unwrap();
        assert!(!dir.path().join("users/dave.json").exists());
        store.update("bob", &mut |_| Decision::Delete).unwrap();
        // A stale copy of bob's file (as a checkpoint racing the deletion
        // could leave until the next one): bob stays deleted.
        fs::write(
            dir.path().join("users/bob.json"),
            with_failures("bob", 1).to_bytes(),
        )
        .unwrap();
        assert_eq!(store.keys().unwrap(), ["carol", "dave"]);
        let listed: Vec<(String, u32)> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|(k, r)| (k, r.unwrap().failures))
            .collect();
        assert_eq!(listed, [("carol".into(), 2), ("dave".into(), 3)]);
        assert!(store.get("bob").unwrap().is_none());
        store.checkpoint().unwrap();
        assert!(!dir.path().join("users/bob.json").exists());
        assert_eq!(store.keys().unwrap(), ["carol", "dave"]);
    }

    /// Counters bumped by racing updates while checkpoints run over and over:
    /// no read goes backwards, and every increment is there afterwards, in
    /// memory, after a crash, and in the files after a clean stop.
    #[test]
    fn checkpoints_racing_saves_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        let bump = |key: &str| {
            store
                .update(key, &mut |r| {
                    let mut r = r.unwrap_or_else(|| UserRecord::new(key, 1));
                    r.failures += 1;
                    Decision::Put(r)
                })
                .unwrap();
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    store.checkpoint().unwrap();
                }
            });
            let workers: Vec<_> = (0..4)
                .map(|t| {
                    let (store, bump) = (&store, &bump);
                    s.spawn(move || {
                        for n in 0..100u32 {
                            bump(&format!("t{t}"));
                            bump("shared");
                            let seen = store.get(&format!("t{t}")).unwrap().unwrap().failures;
                            assert_eq!(seen, n + 1, "t{t} went backwards");
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let check = |store: &LocalStore| {
            for t in 0..4 {
                assert_eq!(store.get(&format!("t{t}")).unwrap().unwrap().failures, 100);
            }
            assert_eq!(store.get("shared").unwrap().unwrap().failures, 400);
        };
        check(&store);
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        check(&store);
        store.checkpoint().unwrap();
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        assert!(store.notices().is_empty(), "{:?}", store.notices());
        check(&store);
    }

    /// A journal of 64 KiB fills many times over under four writers: its
    /// halves are checkpointed in the background (the users' files appear
    /// without any explicit checkpoint), and after a crash every counter is
    /// whole.
    #[test]
    fn a_journal_that_fills_under_load_checkpoints_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("users")).unwrap();
        crate::journal::create_smallest(&dir.path().join("journal")).unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        assert!(store.notices().is_empty(), "{:?}", store.notices());
        std::thread::scope(|s| {
            for t in 0..4 {
                let store = &store;
                s.spawn(move || {
                    for n in 0..300u32 {
                        let key = format!("u{}", (t * 300 + n) % 50);
                        store
                            .update(&key, &mut |r| {
                                let mut r = r.unwrap_or_else(|| UserRecord::new(&key, 1));
                                r.failures += 1;
                                Decision::Put(r)
                            })
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(
            fs::metadata(dir.path().join("journal")).unwrap().len(),
            64 << 10
        );
        let on_disk = fs::read_dir(dir.path().join("users")).unwrap().count();
        assert!(on_disk > 0, "no checkpoint wrote a file");
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        for u in 0..50 {
            assert_eq!(
                store.get(&format!("u{u}")).unwrap().unwrap().failures,
                24,
                "u{u}"
            );
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
        store.checkpoint().unwrap();
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

    /// Not a check: a checkpoint of 2,000 dirty users, flushed by one
    /// `syncfs` (what `sync_files` does past its limit) against one `fsync`
    /// per file. Same invocation as `save_cpu_cost`, filter `checkpoint_cost`.
    #[test]
    #[ignore]
    fn checkpoint_cost() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = LocalStore::open(&dir.path().join("state")).unwrap();
        let users: Vec<String> = (0..2000).map(|n| format!("uid:{}", 10_000 + n)).collect();
        let write_all = |n: u32| {
            let t = std::time::Instant::now();
            for u in &users {
                let path = store.users_dir.join(format!("{u}{EXT}"));
                let mut r = UserRecord::new(u, 1);
                r.failures = n;
                replace_file(&store.users_dir, &path, u, &r.to_bytes()).unwrap();
            }
            t.elapsed().as_secs_f64() * 1e3
        };
        for round in 0..3u32 {
            let w1 = write_all(2 * round);
            let t = std::time::Instant::now();
            nix::unistd::syncfs(File::open(&store.users_dir).unwrap()).unwrap();
            fsync_dir(&store.users_dir).unwrap();
            let syncfs = t.elapsed().as_secs_f64() * 1e3;
            let w2 = write_all(2 * round + 1);
            let t = std::time::Instant::now();
            for u in &users {
                File::open(store.users_dir.join(format!("{u}{EXT}")))
                    .unwrap()
                    .sync_all()
                    .unwrap();
            }
            fsync_dir(&store.users_dir).unwrap();
            let each = t.elapsed().as_secs_f64() * 1e3;
            println!(
                "2000 files: written in {w1:.0} ms, then one syncfs {syncfs:.0} ms; written in {w2:.0} ms, then one fsync each {each:.0} ms"
            );
        }
    }
}
