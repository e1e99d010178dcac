//! Where records live. `Store` is the one interface the logic uses, so a
//! second engine (PostgreSQL for fleets) can be added without touching it.
//!
//! `LocalStore` is the embedded engine: one JSON file per user under
//! `<path>/users/`, written to a temporary file, fsynced, renamed over the
//! old one and the directory fsynced, so a crash leaves either the old or the
//! new record, never a torn one, and `save` returning means it is on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use otpgate_proto::valid_user_name;

use crate::error::Error;
use crate::record::UserRecord;

/// A record larger than this is corrupt, not read into memory.
const MAX_RECORD_BYTES: u64 = 1 << 20;
const EXT: &str = ".json";
const TMP_PREFIX: &str = ".tmp-";

pub trait Store: Send + Sync {
    /// The user's record, `None` if there is none. A record that exists but
    /// cannot be read is `Error::Corrupt` for that user only.
    fn load(&self, user: &str) -> Result<Option<UserRecord>, Error>;
    /// Replaces the user's record; durable when it returns.
    fn save(&self, record: &UserRecord) -> Result<(), Error>;
    /// Removes the user's record; durable when it returns.
    fn delete(&self, user: &str) -> Result<(), Error>;
    /// Every user with a record (readable or not).
    fn users(&self) -> Result<Vec<String>, Error>;
}

pub struct LocalStore {
    users_dir: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) the state directory. It must be a
    /// directory owned by us; its mode is forced to 0700. It is probed for
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
        let users_dir = path.join("users");
        for dir in [path, users_dir.as_path()] {
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
            if meta.mode() & 0o777 != 0o700 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| err(format!("cannot make {} 0700: {e}", dir.display())))?;
            }
        }
        let store = LocalStore { users_dir };
        store.remove_leftovers();
        let probe = store.users_dir.join(format!("{TMP_PREFIX}probe"));
        File::create(&probe)
            .and_then(|f| f.sync_all())
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| err(format!("is not writable: {e}")))?;
        Ok(store)
    }

    fn path_of(&self, user: &str) -> Result<PathBuf, Error> {
        // The name check is what keeps a user name from naming a path
        // outside the directory; it is enforced here as well as at the bus.
        if !valid_user_name(user) {
            return Err(Error::Corrupt {
                user: user.escape_debug().to_string(),
                reason: "not a valid user name".into(),
            });
        }
        Ok(self.users_dir.join(format!("{user}{EXT}")))
    }

    /// Temporary files of saves interrupted by a crash.
    fn remove_leftovers(&self) {
        if let Ok(entries) = fs::read_dir(&self.users_dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Store for LocalStore {
    fn load(&self, user: &str) -> Result<Option<UserRecord>, Error> {
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

    fn save(&self, record: &UserRecord) -> Result<(), Error> {
        let path = self.path_of(&record.user)?;
        let nonce = crate::crypto::hex(&crate::crypto::random_bytes::<6>()?);
        let tmp = self
            .users_dir
            .join(format!("{TMP_PREFIX}{}-{nonce}", record.user));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&record.to_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fsync_dir(&self.users_dir)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(&path, e)
        })
    }

    fn delete(&self, user: &str) -> Result<(), Error> {
        let path = self.path_of(user)?;
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&self.users_dir).map_err(|e| Error::io(&self.users_dir, e)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn users(&self) -> Result<Vec<String>, Error> {
        let mut users = Vec::new();
        for entry in fs::read_dir(&self.users_dir).map_err(|e| Error::io(&self.users_dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.users_dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(user) = name.strip_suffix(EXT) {
                if valid_user_name(user) {
                    users.push(user.to_string());
                }
            }
        }
        users.sort();
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn bad_names_never_touch_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        for bad in ["../x", "a/b", "", ".", "a\0b"] {
            assert!(store.load(bad).is_err());
            assert!(store.delete(bad).is_err());
        }
    }
}
