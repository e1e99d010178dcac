//! The bench's system users, added and removed in one batch.
//!
//! otpgated enrols only users that exist in the system user database, and
//! the bench needs up to 100,000 of them: one `useradd` each would take
//! hours. So the lines are appended to `passwd` and `shadow` in one atomic
//! rewrite each, and removed the same way, under the locks `useradd` and
//! friends honour (`lckpwdf` and the `FILE.lock` link files of shadow's
//! commonio), so that a `useradd` running at the same time (other test
//! suites on the machine) neither loses its line nor ours.
//!
//! Removal drops exactly the lines named `PREFIX` + digits and keeps
//! everything else, including users others added meanwhile; restoring a
//! backup copy wholesale would drop those.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FILES: [&str; 2] = ["passwd", "shadow"];

extern "C" {
    // glibc's /etc/.pwd.lock (shadow.h); not in the libc crate.
    fn lckpwdf() -> libc::c_int;
    fn ulckpwdf() -> libc::c_int;
}

/// Held while the files are rewritten; released (lock files removed,
/// `ulckpwdf`) on drop.
pub struct Lock {
    links: Vec<PathBuf>,
    pwdf: bool,
}

impl Lock {
    /// Takes the locks of `passwd` and `shadow` in `etc`, waiting up to
    /// `deadline` for another holder. `lckpwdf` is taken only for the real
    /// /etc (it knows no other directory).
    pub fn take(etc: &Path, deadline: Duration) -> Result<Lock, String> {
        let end = Instant::now() + deadline;
        let mut lock = Lock {
            links: Vec::new(),
            pwdf: false,
        };
        if etc == Path::new("/etc") {
            // SAFETY: a plain glibc call; it waits up to 15 s itself.
            if unsafe { lckpwdf() } != 0 {
                return Err("lckpwdf: the user database is locked by another program".into());
            }
            lock.pwdf = true;
        }
        for f in FILES {
            let file = etc.join(f);
            let link = etc.join(format!("{f}.lock"));
            let mine = etc.join(format!("{f}.{}", std::process::id()));
            fs::write(&mine, std::process::id().to_string())
                .map_err(|e| format!("{}: {e}", mine.display()))?;
            loop {
                match fs::hard_link(&mine, &link) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        if stale(&link) {
                            let _ = fs::remove_file(&link);
                            continue;
                        }
                        if Instant::now() > end {
                            let _ = fs::remove_file(&mine);
                            return Err(format!(
                                "{} is held by a running process: try again later",
                                link.display()
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => {
                        let _ = fs::remove_file(&mine);
                        return Err(format!("{}: {e}", link.display()));
                    }
                }
            }
            let _ = fs::remove_file(&mine);
            if !file.exists() {
                return Err(format!("{} does not exist", file.display()));
            }
            lock.links.push(link);
        }
        Ok(lock)
    }
}

/// A lock file whose process is gone (shadow's commonio does the same).
fn stale(link: &Path) -> bool {
    let Ok(text) = fs::read_to_string(link) else {
        return false;
    };
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        ),
        _ => false,
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = fs::remove_file(l);
        }
        if self.pwdf {
            // SAFETY: we hold the lock taken in `take`.
            unsafe { ulckpwdf() };
        }
    }
}

/// Whether `line` belongs to a bench user: `PREFIX` + digits + `:`.
fn is_bench_line(line: &str, prefix: &str) -> bool {
    line.strip_prefix(prefix)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(digits, _)| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Replaces `path` atomically with `contents`, keeping its owner and mode.
fn rewrite(path: &Path, contents: &str) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let meta = fs::metadata(path).map_err(err)?;
    let dir = path.parent().expect("a file in a directory");
    let tmp = dir.join(format!(
        ".{}.otpgate-bench",
        path.file_name().expect("a file name").to_string_lossy()
    ));
    let _ = fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(meta.mode() & 0o7777)
            .open(&tmp)?;
        nix::unistd::fchown(
            &f,
            Some(nix::unistd::Uid::from_raw(meta.uid())),
            Some(nix::unistd::Gid::from_raw(meta.gid())),
        )
        .map_err(std::io::Error::from)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(e)
    })
}

/// Appends users `PREFIX000000`… (`count` of them) to `etc/passwd` and
/// `etc/shadow`: uid `uid_base + i`, group `gid`, no home, no shell, no
/// password (locked). Refuses if bench users are already there.
pub fn add(etc: &Path, prefix: &str, count: usize, uid_base: u32, gid: u32) -> Result<(), String> {
    let _lock = Lock::take(etc, Duration::from_secs(60))?;
    let today = crate::now() / 86_400;
    let mut new = Vec::new();
    for f in FILES {
        let path = etc.join(f);
        let old = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if old.lines().any(|l| is_bench_line(l, prefix)) {
            return Err(format!(
                "{} already has {prefix}* users: remove them first (`otpgate-bench users remove`)",
                path.display()
            ));
        }
        let mut text = String::with_capacity(old.len() + count * 64);
        text.push_str(&old);
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for i in 0..count {
            let name = crate::user_name(prefix, i);
            if f == "passwd" {
                let uid = uid_base as usize + i;
                text.push_str(&format!(
                    "{name}:x:{uid}:{gid}::/nonexistent:/usr/sbin/nologin\n"
                ));
            } else {
                text.push_str(&format!("{name}:!*:{today}::::::\n"));
            }
        }
        new.push((path, text));
    }
    for (path, text) in new {
        rewrite(&path, &text)?;
    }
    Ok(())
}

/// Removes every `PREFIX`+digits line from `etc/passwd` and `etc/shadow`;
/// returns how many users were removed from passwd.
pub fn remove(etc: &Path, prefix: &str) -> Result<usize, String> {
    let _lock = Lock::take(etc, Duration::from_secs(60))?;
    let mut removed = 0;
    for f in FILES {
        let path = etc.join(f);
        let old = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = String::with_capacity(old.len());
        let mut n = 0;
        for line in old.split_inclusive('\n') {
            if is_bench_line(line, prefix) {
                n += 1;
            } else {
                text.push_str(line);
            }
        }
        if n > 0 {
            rewrite(&path, &text)?;
        }
        if f == "passwd" {
            removed = n;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_remove_leaves_the_files_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = "root:x:0:0:root:/root:/bin/bash\notpgbnx:x:5:5::/:/bin/sh\n";
        let shadow = "root:*:19000:0:99999:7:::\n";
        fs::write(dir.path().join("passwd"), passwd).unwrap();
        fs::write(dir.path().join("shadow"), shadow).unwrap();
        add(dir.path(), "otpgbn", 3, 400_000, 65_534).unwrap();
        let p = fs::read_to_string(dir.path().join("passwd")).unwrap();
        assert!(p.ends_with("otpgbn000002:x:400002:65534::/nonexistent:/usr/sbin/nologin\n"));
        assert_eq!(p.lines().count(), 5);
        assert!(add(dir.path(), "otpgbn", 1, 1, 1).is_err(), "twice");
        // Someone else's user added while ours exist survives the removal.
        let mut p2 = p.clone();
        p2.push_str("other:x:1001:1001::/home/other:/bin/sh\n");
        fs::write(dir.path().join("passwd"), &p2).unwrap();
        assert_eq!(remove(dir.path(), "otpgbn").unwrap(), 3);
        assert_eq!(
            fs::read_to_string(dir.path().join("passwd")).unwrap(),
            format!("{passwd}other:x:1001:1001::/home/other:/bin/sh\n")
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("shadow")).unwrap(),
            shadow
        );
        assert!(!dir.path().join("passwd.lock").exists());
    }

    #[test]
    fn bench_lines() {
        assert!(is_bench_line("otpgbn000001:x:1:1::/:/bin/sh", "otpgbn"));
        assert!(!is_bench_line("otpgbnx:x:1:1::/:/bin/sh", "otpgbn"));
        assert!(!is_bench_line("otpgbn:x:1:1::/:/bin/sh", "otpgbn"));
        assert!(!is_bench_line("otpgclia:x:1:1::/:/bin/sh", "otpgbn"));
    }
}
