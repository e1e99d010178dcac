//! The write-ahead journal: where a save becomes durable.
//!
//! Why it exists: a durable save used to cost two flushes of its own (the
//! new file, then the directory), so four logins at once queued for eight
//! flushes. Now `LocalStore` hands the record's bytes to `Journal::append`.
//! Whichever append finds no commit in progress leads: it writes every entry
//! waiting in one `pwrite` and calls `fdatasync` once for all of them. No
//! append returns before the flush that covers its entry, so "durable before
//! the answer" holds; the disk sees one flush for a batch of logins. The
//! user's file is not written by the save at all (the store keeps the
//! change in memory, see `store/local.rs`): files are written by
//! checkpoints, which is what the journal's halves are for.
//!
//! Layout. The file has a fixed size, reserved when it is created, so an
//! append never allocates a block or changes the size: `fdatasync` has no
//! metadata to write, and a full disk cannot refuse an append. It is cut in
//! two halves; each starts with a header block (magic, generation,
//! checksum, or zeroes for an empty half) followed by entries: magic,
//! generation, kind, user length, payload length, checksum, user, payload.
//! An entry counts only while its generation is its half's and its checksum
//! holds; the scan stops at the first that does not (a torn tail was never
//! acknowledged, so nothing is lost by that). At open both halves are
//! replayed, the older generation first.
//!
//! Why halves. A checkpoint writes every record changed since the last one
//! into its file and flushes them: thousands of files, hundreds of
//! milliseconds. Done where appends wait, it would stall every login for
//! that long. So when the active half is full, appends move on to the other
//! half (a new generation) at the cost of one header write, and a worker
//! thread checkpoints the half left behind meanwhile: the records of its
//! users, as the store holds them now (never older than the entries), are
//! written and flushed, then its header is cleared. Only then may appends
//! come back to it; a leader that finds it still busy waits for the worker,
//! or retries a failed checkpoint itself so the error reaches a caller.
//! An entry larger than a half is not journaled: the leader checkpoints
//! everything, which makes its file durable directly.
//!
//! Generations. A header is only ever written when nothing depends on the
//! older entries under it (they are in durable files), and generations only
//! grow, so an entry of an older generation is never replayed. At open,
//! after the changes found were applied to the files and flushed, and at a
//! clean stop (`checkpoint_now`), the first half gets a new generation and
//! the second is emptied: after a clean stop the journal holds nothing (an
//! older otpgated, or a journal deleted by hand, loses nothing). A journal
//! written before the halves (one generation over the whole file) is read
//! as such once, then restarted as halves.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// The journal's size: a checkpoint of a half comes about every
/// 4 MiB / ~1 KiB ≈ 4,000 saves. On a small file system it is a quarter of
/// the space free when it is created, down to `MIN_BYTES`; a journal found
/// at open keeps the size it has.
pub const JOURNAL_BYTES: u64 = 8 << 20;
const MIN_BYTES: u64 = 64 << 10;
const MAX_BYTES: u64 = 64 << 20;
const HEADER_BYTES: u64 = 4096;
const HEADER_MAGIC: &[u8; 8] = b"OTPGJNL2";
/// A journal of one generation over the whole file, before the halves.
const HEADER_MAGIC_V1: &[u8; 8] = b"OTPGJNL1";
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

fn parse_header(block: &[u8], magic: &[u8; 8]) -> Option<u64> {
    let generation = u64::from_le_bytes(block.get(8..16)?.try_into().ok()?);
    let mut expected = [0u8; 32];
    expected[..8].copy_from_slice(magic);
    expected[8..16].copy_from_slice(&generation.to_le_bytes());
    let d = Sha256::digest(&expected[..16]);
    expected[16..].copy_from_slice(&d[..16]);
    (block.get(..32)? == expected).then_some(generation)
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

/// Writes the named users' records, as the store holds them now, into their
/// files and makes those durable: the store's side of a checkpoint. Called
/// without the journal's lock, while appends go on in the other half.
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

/// Where appends go: the active half, its generation, the next entry's
/// offset in the file.
#[derive(Clone, Copy, Debug)]
struct Pos {
    half: usize,
    generation: u64,
    end: u64,
}

/// A failure, and whether it came after the journal was written (then the
/// journal is poisoned, see `State::broken`).
type Failure = (io::Error, bool);

struct State {
    pos: Pos,
    /// A leader is writing, or `checkpoint_now` runs: nobody else leads.
    committing: bool,
    next_ticket: u64,
    queue: Vec<Waiting>,
    /// The outcome of each committed ticket until its owner collects it.
    outcomes: HashMap<u64, Result<(), (ErrorKind, String)>>,
    /// Users with an entry in each half (a failed batch's users count in
    /// the active one): what the checkpoint of that half must write out
    /// before the half may be reused.
    dirty: [BTreeSet<String>; 2],
    /// The other half holds entries whose records may not be durable in
    /// their files yet: it is not to be written until a checkpoint of it
    /// succeeded.
    other_busy: bool,
    /// A checkpoint runs (the worker's, a leader's retry, `checkpoint_now`).
    checkpointing: bool,
    /// Why the worker's last checkpoint failed. The worker does not retry;
    /// the next leader that needs the half does, in the foreground, so a
    /// failure reaches a caller instead of looping.
    failed: Option<String>,
    /// Set when a flush failed: after a failed `fdatasync` the kernel may
    /// have dropped the dirty pages and a later flush can report success
    /// without having written them, so no later append may be trusted.
    broken: Option<String>,
    stop: bool,
}

struct Shared {
    path: PathBuf,
    /// Each half's size, header included.
    half_len: u64,
    make_durable: MakeDurable,
    opener: Opener,
    state: Mutex<State>,
    turn: Condvar,
}

pub struct Journal {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

/// A half's length in a file of `capacity`: whole blocks.
fn half_len_of(capacity: u64) -> u64 {
    capacity / 2 / HEADER_BYTES * HEADER_BYTES
}

impl Journal {
    /// Opens the journal at `path`, creating it if missing. Returns the
    /// changes it holds, oldest first, which the caller must apply durably
    /// before calling `restart`.
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
            let header = |at: u64| &all[at as usize..(at + HEADER_BYTES) as usize];
            if let Some(g) = parse_header(header(0), HEADER_MAGIC_V1) {
                // One generation over the whole file, as otpgated wrote it
                // before the halves; `restart` turns it into halves.
                generation = g;
                recovery.changes = scan(&all[HEADER_BYTES as usize..], g);
                keep = true;
            } else {
                let half = half_len_of(len);
                let mut found: Vec<(u64, u64)> = [0, half]
                    .into_iter()
                    .filter_map(|at| parse_header(header(at), HEADER_MAGIC).map(|g| (g, at)))
                    .collect();
                found.sort();
                for (g, at) in &found {
                    let body = &all[(at + HEADER_BYTES) as usize..(at + half) as usize];
                    recovery.changes.extend(scan(body, *g));
                    generation = *g;
                    keep = true;
                }
                if found.is_empty() && [0, half].iter().any(|at| header(*at)[..32] != [0; 32]) {
                    // Headers are written only when every older entry is
                    // already in the per-user files (see the module comment),
                    // so an unreadable one loses nothing.
                    recovery.notice = Some(format!(
                        "{}: unreadable header; starting a new journal (the user records are not affected)",
                        path.display()
                    ));
                }
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
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            half_len: half_len_of(capacity),
            make_durable,
            opener,
            state: Mutex::new(State {
                pos: Pos {
                    half: 0,
                    generation,
                    end: HEADER_BYTES,
                },
                committing: false,
                next_ticket: 0,
                queue: Vec::new(),
                outcomes: HashMap::new(),
                dirty: Default::default(),
                other_busy: false,
                checkpointing: false,
                failed: None,
                broken: None,
                stop: false,
            }),
            turn: Condvar::new(),
        });
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("otpgated-ckpt".into())
                .spawn(move || shared.checkpoint_worker())?
        };
        Ok((
            Journal {
                shared,
                worker: Some(worker),
            },
            recovery,
        ))
    }

    /// Starts a new generation in the first half and empties the second,
    /// once the recovered changes are durable in the per-user files: from
    /// here on, those entries never count again.
    pub fn restart(&self) -> io::Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock();
        let next = st.pos.generation + 1;
        let file = sh.open_for_writing()?;
        file.write_all_at(&header_bytes(next), 0)?;
        file.write_all_at(&[0u8; 32], sh.half_len)?;
        file.sync_data()?;
        st.pos = Pos {
            half: 0,
            generation: next,
            end: HEADER_BYTES,
        };
        st.other_busy = false;
        st.dirty = Default::default();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Appends `change` and returns once it is on disk, sharing the flush
    /// with every append waiting at the same time.
    pub fn append(&self, change: Change) -> io::Result<()> {
        self.shared.append(change)
    }

    /// A checkpoint now of both halves, whatever they hold (a clean stop):
    /// after it, the per-user files are the whole state and the journal
    /// holds nothing.
    pub fn checkpoint_now(&self) -> io::Result<()> {
        self.shared.checkpoint_now()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.turn.notify_all();
        if let Some(worker) = self.worker.take() {
            // A checkpoint under way finishes first: it is bounded, and a
            // half left half-retired would only be replayed again.
            let _ = worker.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, never a
        // half-written file: the file is only written outside the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.turn.wait(st).unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, half: usize) -> u64 {
        half as u64 * self.half_len
    }

    fn append(&self, change: Change) -> io::Result<()> {
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
                let pos = st.pos;
                drop(st);
                let mut added: [BTreeSet<String>; 2] = Default::default();
                // Only a failure after writing began poisons the journal; one
                // that could not even open it (deleted, out of descriptors)
                // fails this batch alone.
                let result = match self.open_for_writing() {
                    Ok(file) => self.commit(&file, &batch, pos, &mut added),
                    Err(e) => Err((e, false)),
                };
                st = self.lock();
                st.committing = false;
                let active = st.pos.half;
                if result.is_err() {
                    // Unacknowledged, but a store may show a failed delete
                    // already: the next checkpoint settles these users too.
                    added[active].extend(batch.iter().map(|w| w.change.user().to_string()));
                }
                for (half, users) in added.iter_mut().enumerate() {
                    st.dirty[half].append(users);
                }
                let outcome = match result {
                    Ok(pos) => {
                        st.pos = pos;
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
            st = self.wait(st);
        }
    }

    /// Writes `batch` from `pos` and flushes once. An entry that does not
    /// fit the active half goes to the other one, which gets the next
    /// generation; the half left is handed to the worker to checkpoint. One
    /// larger than a half is not journaled: a checkpoint of everything
    /// makes its file durable. Returns where the next entry goes.
    fn commit(
        &self,
        file: &File,
        batch: &[Waiting],
        mut pos: Pos,
        added: &mut [BTreeSet<String>; 2],
    ) -> Result<Pos, Failure> {
        let written = |r: io::Result<()>| r.map_err(|e| (e, true));
        let mut buf = Vec::with_capacity(batch.iter().map(|w| w.change.encoded_len()).sum());
        for w in batch {
            let len = w.change.encoded_len() as u64;
            let user = w.change.user().to_string();
            if pos.end + buf.len() as u64 + len <= self.start(pos.half) + self.half_len {
                added[pos.half].insert(user);
                w.change.encode(pos.generation, &mut buf);
                continue;
            }
            written(file.write_all_at(&buf, pos.end))?;
            pos.end += buf.len() as u64;
            buf.clear();
            self.wait_other_free()?;
            if HEADER_BYTES + len > self.half_len {
                added[pos.half].insert(user);
                pos = self.checkpoint_all(file, pos, added)?;
                continue;
            }
            let next = Pos {
                half: 1 - pos.half,
                generation: pos.generation + 1,
                end: self.start(1 - pos.half) + HEADER_BYTES,
            };
            // The other half was checkpointed: nothing in it is needed.
            written(file.write_all_at(&header_bytes(next.generation), self.start(next.half)))?;
            {
                // The half left is the worker's from now on, even before
                // this batch's flush: it writes the records from the
                // store, which holds this batch's changes already.
                let mut st = self.lock();
                st.dirty[pos.half].append(&mut added[pos.half]);
                st.other_busy = true;
                st.pos = next;
                self.turn.notify_all();
            }
            pos = next;
            added[pos.half].insert(user);
            w.change.encode(pos.generation, &mut buf);
        }
        written(file.write_all_at(&buf, pos.end))?;
        written(file.sync_data())?;
        pos.end += buf.len() as u64;
        Ok(pos)
    }

    /// Waits until the other half may be written: the worker's checkpoint
    /// of it is done, or, if that failed, this caller's own attempt is.
    fn wait_other_free(&self) -> Result<(), Failure> {
        let mut st = self.lock();
        loop {
            if !st.other_busy {
                return Ok(());
            }
            if let Some(why) = &st.broken {
                return Err((broken_error(why), false));
            }
            if !st.checkpointing && st.failed.is_some() {
                st.failed = None;
                st = self.checkpoint_other(st)?;
                continue;
            }
            st = self.wait(st);
        }
    }

    /// Checkpoints the other half (its users' records written and made
    /// durable, then its header cleared), with the state unlocked meanwhile.
    fn checkpoint_other<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>, Failure> {
        st.checkpointing = true;
        let half = 1 - st.pos.half;
        let users = st.dirty[half].clone();
        drop(st);
        let result = (self.make_durable)(&users)
            .map_err(|e| (e, false))
            .and_then(|()| {
                let file = self.open_for_writing().map_err(|e| (e, false))?;
                file.write_all_at(&[0u8; 32], self.start(half))
                    .and_then(|()| file.sync_data())
                    .map_err(|e| (e, true))
            });
        let mut st = self.lock();
        st.checkpointing = false;
        self.turn.notify_all();
        match result {
            Ok(()) => {
                st.other_busy = false;
                st.dirty[half].clear();
                Ok(st)
            }
            Err((e, wrote)) => {
                if wrote {
                    st.broken = Some(e.to_string());
                } else {
                    st.failed = Some(e.to_string());
                }
                Err((e, wrote))
            }
        }
    }

    /// The worker: checkpoints a half as soon as appends have left it, so
    /// that no login waits for thousands of files to be written.
    fn checkpoint_worker(&self) {
        let mut st = self.lock();
        loop {
            if st.stop {
                return;
            }
            if st.other_busy && !st.checkpointing && st.failed.is_none() && st.broken.is_none() {
                st = match self.checkpoint_other(st) {
                    Ok(st) => st,
                    // Recorded in the state for the next leader to retry.
                    Err(_) => self.lock(),
                };
                continue;
            }
            st = self.wait(st);
        }
    }

    /// Writes out every user of both halves and starts `pos`'s half afresh
    /// with the next generation (the other half is free: the caller waited
    /// for it). Called by a leader; `added` are its batch's users so far.
    fn checkpoint_all(
        &self,
        file: &File,
        pos: Pos,
        added: &mut [BTreeSet<String>; 2],
    ) -> Result<Pos, Failure> {
        let mut users = self.lock().dirty[pos.half].clone();
        users.extend(added[pos.half].iter().cloned());
        (self.make_durable)(&users).map_err(|e| (e, false))?;
        self.restart_half(file, pos)?;
        self.lock().dirty[pos.half].clear();
        added[pos.half].clear();
        Ok(Pos {
            half: pos.half,
            generation: pos.generation + 1,
            end: self.start(pos.half) + HEADER_BYTES,
        })
    }

    /// `pos`'s half gets the next generation, the other one is emptied.
    fn restart_half(&self, file: &File, pos: Pos) -> Result<(), Failure> {
        file.write_all_at(&header_bytes(pos.generation + 1), self.start(pos.half))
            .and_then(|()| file.write_all_at(&[0u8; 32], self.start(1 - pos.half)))
            .and_then(|()| file.sync_data())
            .map_err(|e| (e, true))
    }

    fn checkpoint_now(&self) -> io::Result<()> {
        let mut st = self.lock();
        while st.committing || st.checkpointing {
            st = self.wait(st);
        }
        if let Some(why) = &st.broken {
            return Err(broken_error(why));
        }
        let pos = st.pos;
        if pos.end == self.start(pos.half) + HEADER_BYTES
            && !st.other_busy
            && st.dirty.iter().all(BTreeSet::is_empty)
        {
            return Ok(());
        }
        st.committing = true;
        st.checkpointing = true;
        let users: BTreeSet<String> = st.dirty.iter().flatten().cloned().collect();
        drop(st);
        // As in `append`: a journal that could not be opened was not
        // written, so only this checkpoint fails; a failed flush poisons it.
        let result = self
            .open_for_writing()
            .map_err(|e| (e, false))
            .and_then(|file| {
                (self.make_durable)(&users).map_err(|e| (e, false))?;
                self.restart_half(&file, pos)
            });
        let mut st = self.lock();
        st.committing = false;
        st.checkpointing = false;
        self.turn.notify_all();
        match result {
            Ok(()) => {
                st.pos = Pos {
                    half: pos.half,
                    generation: pos.generation + 1,
                    end: self.start(pos.half) + HEADER_BYTES,
                };
                st.other_busy = false;
                st.failed = None;
                st.dirty = Default::default();
                Ok(())
            }
            Err((e, wrote)) => {
                if wrote {
                    st.broken = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Opened for each commit rather than held: a file held open for writing
    /// keeps an administrator from remounting the file system read-only
    /// ("busy"), and an open costs microseconds next to the flush.
    fn open_for_writing(&self) -> io::Result<File> {
        (self.opener)(&self.path)
    }
}

/// An empty journal of the smallest size at `path`, for tests that fill it.
#[cfg(test)]
pub(crate) fn create_smallest(path: &Path) -> io::Result<()> {
    let mut bytes = vec![0u8; MIN_BYTES as usize];
    bytes[..32].copy_from_slice(&header_bytes(1));
    std::fs::write(path, bytes)
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

    impl Journal {
        /// Waits (with a deadline) until no half is waiting for or under a
        /// checkpoint.
        fn settle(&self) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let mut st = self.shared.lock();
            while st.other_busy || st.checkpointing {
                assert!(std::time::Instant::now() < deadline, "no checkpoint ended");
                st = self
                    .shared
                    .turn
                    .wait_timeout(st, std::time::Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
        }
    }

    /// A journal whose checkpoints record the users they were given.
    fn recording_journal(dir: &Path) -> (Journal, Arc<Mutex<Vec<BTreeSet<String>>>>) {
        let synced = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&synced);
        let (j, _) = Journal::open(
            &dir.join("journal"),
            Box::new(move |users| {
                seen.lock().unwrap().push(users.clone());
                Ok(())
            }),
        )
        .unwrap();
        j.restart().unwrap();
        (j, synced)
    }

    #[test]
    fn a_full_half_is_checkpointed_while_appends_go_on_in_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let (j, synced) = recording_journal(dir.path());
        let half = j.shared.half_len;
        let big = |n: u8, len: u64| Change::Save {
            user: format!("u{n}"),
            bytes: vec![n; len as usize],
        };
        // Two entries of a third of a half fit in it with its header, a
        // third does not: it opens the other half, and the first half's
        // users are checkpointed.
        for n in 0..3 {
            j.append(big(n, half / 3)).unwrap();
        }
        j.settle();
        assert_eq!(*synced.lock().unwrap(), vec![set(&["u0", "u1"])]);
        drop(j);
        let (j, found) = reopen(dir.path());
        assert_eq!(found, vec![big(2, half / 3)], "only the unsettled half");
        j.restart().unwrap();
        drop(j);
        let (j, synced) = recording_journal(dir.path());
        // Round the ring: u3, u4 | u5, u6 | u7 back in the first half.
        for n in 3..8 {
            j.append(big(n, half / 3)).unwrap();
        }
        j.settle();
        assert_eq!(
            *synced.lock().unwrap(),
            vec![set(&["u3", "u4"]), set(&["u5", "u6"])]
        );
        drop(j);
        let (j, found) = reopen(dir.path());
        assert_eq!(found, vec![big(7, half / 3)]);
        j.restart().unwrap();
        drop(j);
        // Larger than a half: made durable by a checkpoint of everything,
        // never journaled, and what came before it no longer counts.
        let (j, synced) = recording_journal(dir.path());
        j.append(big(8, 1)).unwrap();
        j.append(big(9, half)).unwrap();
        j.append(big(10, 1)).unwrap();
        assert_eq!(*synced.lock().unwrap(), vec![set(&["u8", "u9"])]);
        drop(j);
        let (_j, found) = reopen(dir.path());
        assert_eq!(found, vec![big(10, 1)]);
    }

    /// Entries in both halves come back oldest generation first, whichever
    /// half holds it: a checkpoint that never finished (a kill) leaves the
    /// half it was writing out replayable.
    #[test]
    fn an_unsettled_half_is_replayed_before_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let hold = Arc::clone(&gate);
        let (j, _) = Journal::open(
            &dir.path().join("journal"),
            Box::new(move |_| {
                // Never finishes while the test runs: the kill comes first.
                let (m, c) = &*hold;
                let mut open = m.lock().unwrap();
                while !*open {
                    open = c.wait(open).unwrap();
                }
                Err(io::Error::other("killed"))
            }),
        )
        .unwrap();
        j.restart().unwrap();
        let half = j.shared.half_len;
        let big = |n: u8| Change::Save {
            user: "same".into(),
            bytes: vec![n; (half / 3) as usize],
        };
        for n in 0..4 {
            j.append(big(n)).unwrap();
        }
        // What a kill leaves: a copy of the file as it is now.
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(dir.path().join("journal"), copy.join("journal")).unwrap();
        let (m, c) = &*gate;
        *m.lock().unwrap() = true;
        c.notify_all();
        drop(j);
        let (_j, found) = reopen(&copy);
        assert_eq!(found, (0..4).map(big).collect::<Vec<_>>());
    }

    /// Many writers while the halves fill and are checkpointed over and
    /// over: every entry a checkpoint did not cover comes back at reopen,
    /// and every user whose entries were dropped was given to a checkpoint.
    #[test]
    fn appends_racing_checkpoints_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (j, synced) = recording_journal(dir.path());
        let half = j.shared.half_len;
        let len = (half / 40) as usize;
        let j = Arc::new(j);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let j = Arc::clone(&j);
                std::thread::spawn(move || {
                    for n in 0..100u8 {
                        j.append(Change::Save {
                            user: format!("t{t}-{n}"),
                            bytes: vec![n; len],
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        j.settle();
        let j = Arc::into_inner(j).unwrap();
        drop(j);
        let (_j, found) = reopen(dir.path());
        let mut covered: BTreeSet<String> = found.iter().map(|c| c.user().to_string()).collect();
        let checkpoints = synced.lock().unwrap();
        assert!(checkpoints.len() >= 8, "{} checkpoints", checkpoints.len());
        for users in checkpoints.iter() {
            covered.extend(users.iter().cloned());
        }
        for t in 0..4u8 {
            for n in 0..100u8 {
                assert!(covered.contains(&format!("t{t}-{n}")), "t{t}-{n} lost");
            }
        }
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
    fn a_full_half_after_a_failed_open_still_flushes_the_earlier_users() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (j, fail, synced) = failing_journal(dir.path());
        let half = j.shared.half_len;
        j.append(save("alice", 1)).unwrap();
        fail.store(true, Ordering::SeqCst);
        j.append(save("bob", 2)).unwrap_err();
        fail.store(false, Ordering::SeqCst);
        // Two entries of half a half: the second moves to the other half.
        for n in 0..2u8 {
            j.append(Change::Save {
                user: format!("big{n}"),
                bytes: vec![n; (half / 2) as usize],
            })
            .unwrap();
        }
        j.settle();
        let synced = synced.lock().unwrap();
        assert_eq!(synced.len(), 1, "{synced:?}");
        assert!(
            synced[0].is_superset(&set(&["alice", "bob", "big0"])),
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
