//! The write-ahead journal that lets concurrent saves share one disk flush.
//!
//! Why it exists: a durable save used to cost two flushes of its own (the
//! new file, then the directory), so four logins at once queued for eight
//! flushes. Now `LocalStore` writes the user's file without a flush and hands
//! the same bytes to `Journal::append`. Whichever append finds no commit in
//! progress leads: it writes every entry waiting in one `pwrite` and calls
//! `fdatasync` once for all of them. No append returns before the flush that
//! covers its entry, so "durable before the answer" still holds; the disk
//! just sees one flush for a batch of logins instead of two per login.
//!
//! Layout. The file has a fixed size, reserved when it is created, so an
//! append never allocates a block or changes the size: `fdatasync` has no
//! metadata to write, and a full disk cannot refuse an append. The first
//! block is the header (magic, generation, checksum). Entries follow from
//! `HEADER_BYTES`: magic, generation, kind, user length, payload length,
//! checksum, user, payload. An entry counts only while its generation is the
//! header's and its checksum holds; the scan stops at the first that does
//! not (a torn tail was never acknowledged, so nothing is lost by that).
//!
//! Generations. The header's generation is raised (and flushed) at every
//! open, after the entries found were applied to the per-user files and
//! those files flushed, and at every checkpoint — when the journal is full,
//! and at a clean stop: the store's `MakeDurable` first flushes every
//! per-user file written in the generation, then the generation is raised
//! and appends start again at the front. So a header is only ever written
//! when nothing depends on the journal's older entries, an entry of an older
//! generation can never be replayed, and after a clean stop the journal
//! holds nothing (an older otpgated, or a journal deleted by hand, loses
//! nothing).

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

/// The journal's size: a checkpoint comes about every
/// 8 MiB / ~1 KiB ≈ 8,000 saves. On a small file system it is a quarter of
/// the space free when it is created, down to `MIN_BYTES`; a journal found
/// at open keeps the size it has.
pub const JOURNAL_BYTES: u64 = 8 << 20;
const MIN_BYTES: u64 = 64 << 10;
const MAX_BYTES: u64 = 64 << 20;
const HEADER_BYTES: u64 = 4096;
const HEADER_MAGIC: &[u8; 8] = b"OTPGJNL1";
const ENTRY_MAGIC: &[u8; 4] = b"OJE1";
/// magic, generation, kind, user length, payload length, checksum.
const ENTRY_HEAD: usize = 4 + 8 + 1 + 1 + 4 + 16;

const KIND_SAVE: u8 = 1;
const KIND_DELETE: u8 = 2;

/// One change to a user's record, as journaled and as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Save { user: String, bytes: Vec<u8> },
    Delete { user: String },
}

impl Change {
    fn user(&self) -> &str {
        match self {
            Change::Save { user, .. } | Change::Delete { user } => user,
        }
    }

    fn encoded_len(&self) -> usize {
        let payload = match self {
            Change::Save { bytes, .. } => bytes.len(),
            Change::Delete { .. } => 0,
        };
        ENTRY_HEAD + self.user().len() + payload
    }

    fn encode(&self, generation: u64, out: &mut Vec<u8>) {
        let (kind, payload): (u8, &[u8]) = match self {
            Change::Save { bytes, .. } => (KIND_SAVE, bytes),
            Change::Delete { .. } => (KIND_DELETE, &[]),
        };
        let user = self.user().as_bytes();
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&generation.to_le_bytes());
        out.push(kind);
        out.push(user.len() as u8);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&entry_checksum(generation, kind, user, payload));
        out.extend_from_slice(user);
        out.extend_from_slice(payload);
    }
}

fn entry_checksum(generation: u64, kind: u8, user: &[u8], payload: &[u8]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(ENTRY_MAGIC);
    h.update(generation.to_le_bytes());
    h.update([kind, user.len() as u8]);
    h.update((payload.len() as u32).to_le_bytes());
    h.update(user);
    h.update(payload);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn header_bytes(generation: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(HEADER_MAGIC);
    out[8..16].copy_from_slice(&generation.to_le_bytes());
    let d = Sha256::digest(&out[..16]);
    out[16..].copy_from_slice(&d[..16]);
    out
}

fn parse_header(block: &[u8]) -> Option<u64> {
    let generation = u64::from_le_bytes(block.get(8..16)?.try_into().ok()?);
    (block.get(..32)? == header_bytes(generation)).then_some(generation)
}

/// `changes` as entries of `generation`, back to back, as `append` writes
/// them (for tests and the fuzz target's round trip).
pub fn encode_entries(changes: &[Change], generation: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for c in changes {
        c.encode(generation, &mut out);
    }
    out
}

/// The entries of `generation` from the front of `body` (the journal after
/// its header), up to the first that is missing, torn or of another
/// generation. Public for the fuzz target: this is what reads the journal
/// file back at start.
pub fn scan(body: &[u8], generation: u64) -> Vec<Change> {
    let max_payload = body.len();
    let mut changes = Vec::new();
    let mut at = 0usize;
    while let Some(head) = body.get(at..at + ENTRY_HEAD) {
        if &head[..4] != ENTRY_MAGIC
            || u64::from_le_bytes(head[4..12].try_into().expect("8 bytes")) != generation
        {
            break;
        }
        let kind = head[12];
        let user_len = head[13] as usize;
        let payload_len = u32::from_le_bytes(head[14..18].try_into().expect("4 bytes")) as usize;
        if payload_len > max_payload {
            break;
        }
        let start = at + ENTRY_HEAD;
        let Some(user) = body.get(start..start + user_len) else {
            break;
        };
        let Some(payload) = body.get(start + user_len..start + user_len + payload_len) else {
            break;
        };
        if head[18..34] != entry_checksum(generation, kind, user, payload) {
            break;
        }
        let Ok(user) = std::str::from_utf8(user) else {
            break;
        };
        let user = user.to_string();
        changes.push(match kind {
            KIND_SAVE => Change::Save {
                user,
                bytes: payload.to_vec(),
            },
            KIND_DELETE => Change::Delete { user },
            _ => break,
        });
        at = start + user_len + payload_len;
    }
    changes
}

/// Makes the named users' files durable; the store's side of a checkpoint.
pub type MakeDurable = Box<dyn Fn(&BTreeSet<String>) -> io::Result<()> + Send + Sync>;

/// Opens the journal file for a commit or a checkpoint. Replaceable so that
/// tests can make the open fail (out of descriptors, out of memory) without
/// starving the whole process.
pub type Opener = Box<dyn Fn(&Path) -> io::Result<File> + Send + Sync>;

/// The opener every daemon uses.
fn open_for_writing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// What `Journal::open` found: the changes to apply before the journal is
/// restarted, and what to tell the administrator about it.
pub struct Recovery {
    pub changes: Vec<Change>,
    pub notice: Option<String>,
}

struct Waiting {
    ticket: u64,
    change: Change,
}

struct State {
    generation: u64,
    /// Where the next entry goes.
    end: u64,
    committing: bool,
    next_ticket: u64,
    queue: Vec<Waiting>,
    /// The outcome of each committed ticket until its owner collects it.
    outcomes: HashMap<u64, Result<(), (ErrorKind, String)>>,
    /// Users whose files were written in this generation, for the
    /// checkpoint. Only the leader touches it: it takes it while it leads
    /// and puts back whatever no checkpoint made durable, on every path,
    /// failures included, since a name dropped here is a file a later
    /// checkpoint would leave unflushed while it forgets the entries.
    dirty: BTreeSet<String>,
    /// Set when a flush failed: after a failed `fdatasync` the kernel may
    /// have dropped the dirty pages and a later flush can report success
    /// without having written them, so no later append may be trusted.
    broken: Option<String>,
}

pub struct Journal {
    path: PathBuf,
    /// The file's size, fixed for its life.
    capacity: u64,
    make_durable: MakeDurable,
    opener: Opener,
    state: Mutex<State>,
    turn: Condvar,
}

impl Journal {
    /// Opens the journal at `path`, creating it if missing. Returns the
    /// changes of the current generation, which the caller must apply
    /// durably before calling `restart`.
    pub fn open(path: &Path, make_durable: MakeDurable) -> io::Result<(Journal, Recovery)> {
        Journal::open_with(path, make_durable, Box::new(open_for_writing))
    }

    /// `open`, with `opener` opening the file for every later write.
    pub fn open_with(
        path: &Path,
        make_durable: MakeDurable,
        opener: Opener,
    ) -> io::Result<(Journal, Recovery)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        let len = file.metadata()?.len();
        let mut recovery = Recovery {
            changes: Vec::new(),
            notice: None,
        };
        let mut generation = 0;
        let mut keep = false;
        if usable_size(len) {
            let mut all = vec![0u8; len as usize];
            file.read_exact_at(&mut all, 0)?;
            if let Some(g) = parse_header(&all[..HEADER_BYTES as usize]) {
                generation = g;
                recovery.changes = scan(&all[HEADER_BYTES as usize..], g);
                keep = true;
            } else if all[..32].iter().any(|b| *b != 0) {
                // Headers are written only when every older entry is
                // already in the per-user files (see the module comment),
                // so an unreadable one loses nothing.
                recovery.notice = Some(format!(
                    "{}: unreadable header; starting a new journal (the user records are not affected)",
                    path.display()
                ));
            }
        } else if len != 0 {
            recovery.notice = Some(format!(
                "{}: {len} bytes is not a journal's size; starting a new journal (the user records are not affected)",
                path.display()
            ));
        }
        let capacity = if keep {
            len
        } else {
            // A new journal is all zeroes, so that nothing of an old one
            // (whose generations are unknown) can ever pass for an entry.
            let free = nix::sys::statvfs::fstatvfs(&file)
                .map(|s| s.blocks_available() * s.fragment_size())
                .map_err(io::Error::from)?;
            let size = (free / 4 / HEADER_BYTES * HEADER_BYTES).clamp(MIN_BYTES, JOURNAL_BYTES);
            reserve(&file, size)?;
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                crate::fsutil::fsync_dir(dir)?;
            }
            size
        };
        let journal = Journal {
            path: path.to_path_buf(),
            capacity,
            make_durable,
            opener,
            state: Mutex::new(State {
                generation,
                end: HEADER_BYTES,
                committing: false,
                next_ticket: 0,
                queue: Vec::new(),
                outcomes: HashMap::new(),
                dirty: BTreeSet::new(),
                broken: None,
            }),
            turn: Condvar::new(),
        };
        Ok((journal, recovery))
    }

    /// Starts a new generation once the recovered changes are durable in
    /// the per-user files: from here on, those entries never count again.
    pub fn restart(&self) -> io::Result<()> {
        let mut st = self.lock();
        let next = st.generation + 1;
        self.write_header(&self.open_for_writing()?, next)?;
        st.generation = next;
        st.end = HEADER_BYTES;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `change` and returns once it is on disk, sharing the flush
    /// with every append waiting at the same time.
    pub fn append(&self, change: Change) -> io::Result<()> {
        let payload = match &change {
            Change::Save { bytes, .. } => bytes.len(),
            Change::Delete { .. } => 0,
        };
        if payload > u32::MAX as usize || change.user().len() > 255 {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "change too large for the journal",
            ));
        }
        let mut st = self.lock();
        if let Some(why) = &st.broken {
            return Err(broken_error(why));
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push(Waiting { ticket, change });
        loop {
            if let Some(outcome) = st.outcomes.remove(&ticket) {
                return outcome.map_err(|(kind, msg)| io::Error::new(kind, msg));
            }
            if !st.committing {
                if let Some(why) = st.broken.clone() {
                    // Broken while this entry waited: nobody leads again.
                    for w in std::mem::take(&mut st.queue) {
                        let e = broken_error(&why);
                        st.outcomes.insert(w.ticket, Err((e.kind(), e.to_string())));
                    }
                    self.turn.notify_all();
                    continue;
                }
                // Lead: commit everything queued so far, this entry included.
                st.committing = true;
                let batch = std::mem::take(&mut st.queue);
                let mut dirty = std::mem::take(&mut st.dirty);
                let (generation, end) = (st.generation, st.end);
                drop(st);
                // Only a failure after writing began poisons the journal; one
                // that could not even open it (deleted, out of descriptors)
                // fails this batch alone.
                let result = match self.open_for_writing() {
                    Ok(file) => self
                        .commit(&file, &batch, generation, end, &mut dirty)
                        .map_err(|e| (e, true)),
                    Err(e) => Err((e, false)),
                };
                st = self.lock();
                st.committing = false;
                if result.is_err() {
                    // The batch's files were written before their appends:
                    // unacknowledged, but what the next load reads, so the
                    // next checkpoint flushes them too.
                    dirty.extend(batch.iter().map(|w| w.change.user().to_string()));
                }
                // Whatever no checkpoint covered stays to be flushed.
                st.dirty.append(&mut dirty);
                let outcome = match result {
                    Ok((generation, end)) => {
                        st.generation = generation;
                        st.end = end;
                        Ok(())
                    }
                    Err((e, wrote)) => {
                        let why = e.to_string();
                        if wrote {
                            st.broken = Some(why.clone());
                        }
                        Err((e.kind(), why))
                    }
                };
                for w in &batch {
                    st.outcomes.insert(w.ticket, outcome.clone());
                }
                self.turn.notify_all();
                continue;
            }
            st = self.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, never a
        // half-written file: the file is only written outside the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `batch` from `end` and flushes once; checkpoints first when an
    /// entry does not fit. Returns the generation and end after it.
    fn commit(
        &self,
        file: &File,
        batch: &[Waiting],
        mut generation: u64,
        mut end: u64,
        dirty: &mut BTreeSet<String>,
    ) -> io::Result<(u64, u64)> {
        let mut buf = Vec::with_capacity(batch.iter().map(|w| w.change.encoded_len()).sum());
        for w in batch {
            let len = w.change.encoded_len() as u64;
            // Its file is written already; the checkpoint below, if any,
            // must cover it.
            dirty.insert(w.change.user().to_string());
            if end + buf.len() as u64 + len > self.capacity {
                file.write_all_at(&buf, end)?;
                generation = self.checkpoint(file, generation, dirty)?;
                dirty.insert(w.change.user().to_string());
                end = HEADER_BYTES;
                buf.clear();
                if HEADER_BYTES + len > self.capacity {
                    // Larger than the whole journal: the checkpoint just
                    // made its file durable, and in the new generation no
                    // older entry of that user can undo it.
                    continue;
                }
            }
            w.change.encode(generation, &mut buf);
        }
        file.write_all_at(&buf, end)?;
        file.sync_data()?;
        Ok((generation, end + buf.len() as u64))
    }

    /// Opened for each commit rather than held: a file held open for writing
    /// keeps an administrator from remounting the file system read-only
    /// ("busy"), and an open costs microseconds next to the flush.
    fn open_for_writing(&self) -> io::Result<File> {
        (self.opener)(&self.path)
    }

    /// Makes every per-user file written in this generation durable, then
    /// starts a new generation. Returns it. `dirty` is emptied only once the
    /// new header is on disk.
    fn checkpoint(
        &self,
        file: &File,
        generation: u64,
        dirty: &mut BTreeSet<String>,
    ) -> io::Result<u64> {
        (self.make_durable)(dirty)?;
        self.write_header(file, generation + 1)?;
        dirty.clear();
        Ok(generation + 1)
    }

    /// A checkpoint now, whatever the journal holds (a clean stop): after
    /// it, the per-user files are the whole state.
    pub fn checkpoint_now(&self) -> io::Result<()> {
        let mut st = self.lock();
        while st.committing {
            st = self.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(why) = &st.broken {
            return Err(broken_error(why));
        }
        if st.end == HEADER_BYTES && st.dirty.is_empty() {
            return Ok(());
        }
        st.committing = true;
        let mut dirty = std::mem::take(&mut st.dirty);
        let generation = st.generation;
        drop(st);
        // As in `append`: a journal that could not be opened was not
        // written, so only this checkpoint fails; a failed flush poisons it.
        let result = match self.open_for_writing() {
            Ok(file) => self
                .checkpoint(&file, generation, &mut dirty)
                .map_err(|e| (e, true)),
            Err(e) => Err((e, false)),
        };
        let mut st = self.lock();
        st.committing = false;
        st.dirty.append(&mut dirty);
        let result = match result {
            Ok(next) => {
                st.generation = next;
                st.end = HEADER_BYTES;
                Ok(())
            }
            Err((e, wrote)) => {
                if wrote {
                    st.broken = Some(e.to_string());
                }
                Err(e)
            }
        };
        self.turn.notify_all();
        result
    }

    fn write_header(&self, file: &File, generation: u64) -> io::Result<()> {
        file.write_all_at(&header_bytes(generation), 0)?;
        file.sync_data()
    }
}

fn broken_error(why: &str) -> io::Error {
    io::Error::other(format!(
        "an earlier flush of the journal failed ({why}); restart otpgated once the disk is healthy"
    ))
}

fn usable_size(len: u64) -> bool {
    (MIN_BYTES..=MAX_BYTES).contains(&len) && len.is_multiple_of(HEADER_BYTES)
}

/// Reserves the journal's blocks, so appends never allocate (or meet a full
/// disk). Zeroes are written where the file system cannot preallocate.
fn reserve(file: &File, size: u64) -> io::Result<()> {
    file.set_len(0)?;
    match nix::fcntl::fallocate(
        file,
        nix::fcntl::FallocateFlags::empty(),
        0,
        size as libc::off_t,
    ) {
        Ok(()) => Ok(()),
        // EOPNOTSUPP is the documented answer of a file system without
        // preallocation; some older ones answer EINVAL or ENOSYS instead.
        Err(
            nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS,
        ) => {
            let zeros = vec![0u8; HEADER_BYTES as usize];
            let mut at = 0;
            while at < size {
                file.write_all_at(&zeros, at)?;
                at += HEADER_BYTES;
            }
            Ok(())
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn save(user: &str, n: u8) -> Change {
        Change::Save {
            user: user.into(),
            bytes: vec![n; 100 + n as usize],
        }
    }

    fn nothing_to_sync() -> MakeDurable {
        Box::new(|_| Ok(()))
    }

    fn reopen(dir: &Path) -> (Journal, Vec<Change>) {
        let (j, r) = Journal::open(&dir.join("journal"), nothing_to_sync()).unwrap();
        (j, r.changes)
    }

    #[test]
    fn appended_changes_come_back_in_order_until_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (j, found) = reopen(dir.path());
        assert!(found.is_empty());
        j.restart().unwrap();
        let changes = vec![
            save("alice", 1),
            save("bob", 2),
            Change::Delete {
                user: "alice".into(),
            },
        ];
        for c in &changes {
            j.append(c.clone()).unwrap();
        }
        drop(j);
        let (j, found) = reopen(dir.path());
        assert_eq!(found, changes);
        j.restart().unwrap();
        drop(j);
        let (_j, found) = reopen(dir.path());
        assert!(found.is_empty(), "a restarted journal replays nothing");
        let len = std::fs::metadata(dir.path().join("journal")).unwrap().len();
        assert!(usable_size(len), "{len}");
    }

    #[test]
    fn a_checkpoint_makes_the_written_users_durable_and_empties_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let synced = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&synced);
        let make_durable: MakeDurable = Box::new(move |users| {
            seen.lock().unwrap().push(users.clone());
            Ok(())
        });
        let (j, _) = Journal::open(&dir.path().join("journal"), make_durable).unwrap();
        j.restart().unwrap();
        j.checkpoint_now().unwrap();
        assert!(
            synced.lock().unwrap().is_empty(),
            "nothing written, nothing to sync"
        );
        j.append(save("alice", 1)).unwrap();
        j.append(Change::Delete { user: "bob".into() }).unwrap();
        j.checkpoint_now().unwrap();
        let expected: BTreeSet<String> = ["alice".to_string(), "bob".to_string()].into();
        assert_eq!(*synced.lock().unwrap(), vec![expected]);
        j.append(save("carol", 3)).unwrap();
        drop(j);
        let (_j, found) = reopen(dir.path());
        assert_eq!(found, vec![save("carol", 3)], "only what came after it");
    }

    #[test]
    fn a_torn_tail_ends_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = reopen(dir.path());
        j.restart().unwrap();
        j.append(save("alice", 1)).unwrap();
        j.append(save("bob", 2)).unwrap();
        drop(j);
        // Flip one payload byte of the second entry.
        let path = dir.path().join("journal");
        let mut all = std::fs::read(&path).unwrap();
        let second = HEADER_BYTES as usize + save("alice", 1).encoded_len();
        all[second + ENTRY_HEAD + 5] ^= 0xff;
        std::fs::write(&path, &all).unwrap();
        let (_j, found) = reopen(dir.path());
        assert_eq!(found, vec![save("alice", 1)]);
    }

    #[test]
    fn a_full_journal_checkpoints_and_keeps_only_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = reopen(dir.path());
        j.restart().unwrap();
        let cap = j.capacity;
        let big = |n: u8, len: u64| Change::Save {
            user: format!("u{n}"),
            bytes: vec![n; len as usize],
        };
        // Three entries of a third of the journal do not fit with the header.
        for n in 0..4 {
            j.append(big(n, cap / 3)).unwrap();
        }
        drop(j);
        let (j, found) = reopen(dir.path());
        let users: Vec<&str> = found.iter().map(|c| c.user()).collect();
        assert_eq!(users, vec!["u2", "u3"]);
        j.restart().unwrap();
        // Larger than the whole journal: made durable by a checkpoint,
        // never journaled, and what came before it no longer counts.
        j.append(big(5, 1)).unwrap();
        j.append(big(6, cap)).unwrap();
        j.append(big(7, 1)).unwrap();
        drop(j);
        let (_j, found) = reopen(dir.path());
        assert_eq!(found, vec![big(7, 1)]);
    }

    #[test]
    fn concurrent_appends_all_land_and_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = reopen(dir.path());
        j.restart().unwrap();
        let j = Arc::new(j);
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let j = Arc::clone(&j);
                std::thread::spawn(move || {
                    for n in 0..25u8 {
                        j.append(save(&format!("t{t}"), n)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(j);
        let (_j, found) = reopen(dir.path());
        assert_eq!(found.len(), 200);
        for t in 0..8u8 {
            let mine: Vec<&Change> = found
                .iter()
                .filter(|c| c.user() == format!("t{t}"))
                .collect();
            let expected: Vec<Change> = (0..25).map(|n| save(&format!("t{t}"), n)).collect();
            assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "t{t} in order");
        }
    }

    #[test]
    fn a_damaged_header_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = reopen(dir.path());
        j.restart().unwrap();
        j.append(save("alice", 1)).unwrap();
        drop(j);
        let path = dir.path().join("journal");
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"garbage!", 0).unwrap();
        let (j, r) = Journal::open(&path, nothing_to_sync()).unwrap();
        assert!(r.changes.is_empty());
        assert!(r.notice.unwrap().contains("unreadable header"));
        j.restart().unwrap();
        j.append(save("bob", 2)).unwrap();
        drop(j);
        let (_j, found) = reopen(dir.path());
        assert_eq!(found, vec![save("bob", 2)]);
    }

    /// A journal whose opener fails with EMFILE while the returned switch
    /// is on, and the sets of users each checkpoint was asked to flush.
    #[allow(clippy::type_complexity)]
    fn failing_journal(
        dir: &Path,
    ) -> (
        Journal,
        Arc<std::sync::atomic::AtomicBool>,
        Arc<Mutex<Vec<BTreeSet<String>>>>,
    ) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let fail = Arc::new(AtomicBool::new(false));
        let switch = Arc::clone(&fail);
        let synced = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&synced);
        let (j, _) = Journal::open_with(
            &dir.join("journal"),
            Box::new(move |users| {
                seen.lock().unwrap().push(users.clone());
                Ok(())
            }),
            Box::new(move |path| {
                if switch.load(Ordering::SeqCst) {
                    Err(io::Error::from_raw_os_error(libc::EMFILE))
                } else {
                    open_for_writing(path)
                }
            }),
        )
        .unwrap();
        j.restart().unwrap();
        (j, fail, synced)
    }

    fn set(users: &[&str]) -> BTreeSet<String> {
        users.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn an_append_that_cannot_open_the_journal_fails_and_keeps_the_earlier_users_to_flush() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (j, fail, synced) = failing_journal(dir.path());
        j.append(save("alice", 1)).unwrap();
        fail.store(true, Ordering::SeqCst);
        let e = j.append(save("bob", 2)).unwrap_err();
        assert!(e.to_string().contains("Too many open files"), "{e}");
        fail.store(false, Ordering::SeqCst);
        // Not poisoned: nothing was written.
        j.append(save("carol", 3)).unwrap();
        j.checkpoint_now().unwrap();
        let synced = synced.lock().unwrap();
        assert_eq!(synced.len(), 1, "{synced:?}");
        assert!(
            synced[0].is_superset(&set(&["alice", "carol"])),
            "alice's acknowledged save was checkpointed without her file being flushed: {synced:?}"
        );
        // bob's file was written before his append failed: flushed too.
        assert!(synced[0].contains("bob"), "{synced:?}");
    }

    #[test]
    fn a_full_journal_after_a_failed_open_still_flushes_the_earlier_users() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (j, fail, synced) = failing_journal(dir.path());
        let cap = j.capacity;
        j.append(save("alice", 1)).unwrap();
        fail.store(true, Ordering::SeqCst);
        j.append(save("bob", 2)).unwrap_err();
        fail.store(false, Ordering::SeqCst);
        // Two entries of half the journal: the second checkpoints.
        for n in 0..2u8 {
            j.append(Change::Save {
                user: format!("big{n}"),
                bytes: vec![n; (cap / 2) as usize],
            })
            .unwrap();
        }
        let synced = synced.lock().unwrap();
        assert_eq!(synced.len(), 1, "{synced:?}");
        assert!(
            synced[0].is_superset(&set(&["alice", "big0"])),
            "the checkpoint forgot alice's entry without flushing her file: {synced:?}"
        );
    }

    #[test]
    fn a_checkpoint_that_cannot_open_the_journal_fails_alone_and_keeps_its_users() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (j, fail, synced) = failing_journal(dir.path());
        j.append(save("alice", 1)).unwrap();
        fail.store(true, Ordering::SeqCst);
        let e = j.checkpoint_now().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
        assert!(synced.lock().unwrap().is_empty());
        fail.store(false, Ordering::SeqCst);
        j.append(save("bob", 2)).unwrap();
        j.checkpoint_now().unwrap();
        assert_eq!(*synced.lock().unwrap(), vec![set(&["alice", "bob"])]);
        drop(j);
        let (_j, found) = reopen(dir.path());
        assert!(found.is_empty(), "{found:?}");
    }
}
