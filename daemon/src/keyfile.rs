//! Where the master key comes from: a root-only key file (created on first
//! start) or a systemd credential. Kept apart from `crypto`, which only
//! uses the key, so that the cipher code depends on nothing of the daemon.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{MasterKey, KEY_LEN};
use crate::error::Error;

impl MasterKey {
    /// Loads the key from a systemd credential file. systemd made it and
    /// guards its directory; it is not created here when missing.
    pub fn load_credential(path: &Path) -> Result<MasterKey, Error> {
        let bytes = Zeroizing::new(fs::read(path).map_err(|e| Error::Key {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?);
        let k: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| Error::Key {
            path: path.to_path_buf(),
            reason: format!("must hold exactly {KEY_LEN} bytes, found {}", bytes.len()),
        })?;
        Ok(MasterKey::from_bytes(k))
    }

    /// Loads the key file, creating it (0400, root) with 32 random bytes if
    /// it does not exist. A key file that is readable by anyone but its
    /// owner, or of the wrong length, is refused: the daemon would otherwise
    /// run with a key that may have leaked or been truncated.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, Error> {
        let err = |reason: String| Error::Key {
            path: path.to_path_buf(),
            reason,
        };
        match fs::symlink_metadata(path) {
            Ok(meta) => {
                if !meta.file_type().is_file() {
                    return Err(err("not a regular file".into()));
                }
                if meta.mode() & 0o077 != 0 {
                    return Err(err(format!(
                        "mode {:04o} lets others read it; run `chmod 0400 {}`",
                        meta.mode() & 0o7777,
                        path.display()
                    )));
                }
                if meta.uid() != nix::unistd::geteuid().as_raw() {
                    return Err(err("not owned by the user running otpgated".into()));
                }
                let mut f = fs::File::open(path).map_err(|e| err(e.to_string()))?;
                let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
                Read::by_ref(&mut f)
                    .take(KEY_LEN as u64 + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| err(e.to_string()))?;
                if buf.len() != KEY_LEN {
                    return Err(err(format!(
                        "must hold exactly {KEY_LEN} bytes, found {}{}",
                        if buf.len() > KEY_LEN {
                            "more than "
                        } else {
                            ""
                        },
                        buf.len().min(KEY_LEN)
                    )));
                }
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(&buf);
                let key = MasterKey::from_bytes(k);
                k.zeroize();
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate().map_err(|e| err(e.to_string()))?;
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)
                        .map_err(|e| err(format!("creating its folder: {e}")))?;
                }
                // create_new: never overwrite a key another process just wrote.
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o400)
                    .open(path)
                    .map_err(|e| {
                        err(format!(
                            "creating it: {e} (where /etc is read-only, as under the systemd unit, create it at install time: /usr/libexec/otpgate/otpgated-ctl prepare)"
                        ))
                    })?;
                f.write_all(key.as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| err(format!("writing it: {e}")))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o400))
                    .map_err(|e| err(e.to_string()))?;
                if let Some(dir) = path.parent() {
                    crate::fsutil::fsync_dir(dir).map_err(|e| err(e.to_string()))?;
                }
                Ok(key)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }
}
