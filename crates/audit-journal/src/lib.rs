//! A durable local append-only queue.
//!
//! Used where an audit record must survive a crash of this process or of the machine: the
//! service's dead-letter queue when no Redis is configured, and the client's disk spill.
//!
//! # Layout
//!
//! A directory of segment files (`<first id>.seg`) holding checksummed frames (see [`frame`]),
//! and a `cursor` file holding the id of the first record not yet acknowledged.
//!
//! # Invariants
//!
//! 1. **An append is acknowledged only after fsync.** `append` returns once its frames are
//!    written and `fdatasync`ed. Concurrent appends share one fsync (group commit): the writer
//!    thread takes everything queued, writes it, syncs once, then answers all.
//! 2. **Readers see only durable records.** A record becomes readable after the sync that made it
//!    durable, so nothing read can vanish in a crash.
//! 3. **A new segment's directory entry is durable before records go into it** (the directory is
//!    fsynced after creating it), so a synced record is never in a file that a crash unlinks.
//! 4. **The cursor is durable before anything it releases is deleted.** `ack_through` writes the
//!    cursor (in place over the older of its two checksummed slots, then fsync; see the `cursor` module)
//!    and only then deletes segments that lie wholly before it. A crash in between leaves
//!    segments that recovery deletes. Moving the cursor needs no new disk space, so a full disk
//!    still releases (and frees) what was acknowledged.
//! 5. **A torn tail is cut, never misread.** Recovery scans every frame; in the last segment the
//!    first frame that is short, fails its CRC32C, or has an unexpected id ends the valid data,
//!    and the file is truncated there (such bytes were never acknowledged, by 1). In a sealed
//!    segment the same is corruption of acknowledged data and opening fails.
//! 6. **Ids are contiguous.** Record ids start at 0 and increase by one per append, across
//!    segments and restarts; recovery checks it.

pub mod frame;

mod cursor;
mod segment;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use segment::Segment;
use tokio::sync::oneshot;

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("journal is corrupt: {0}")]
    Corrupt(String),
    #[error("journal is closed")]
    Closed,
    #[error("record of {0} bytes is larger than the limit")]
    TooLarge(usize),
}

/// Tuning.
#[derive(Debug, Clone, Copy)]
pub struct JournalOptions {
    /// A segment is sealed and a new one started once it reaches this size.
    pub segment_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What recovery found when the journal was opened.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Description of a torn tail that was cut, if any.
    pub torn_tail: Option<String>,
    /// Segments deleted because the cursor had passed them.
    pub deleted_segments: usize,
    /// Why the cursor file could not be written at open (for example a full disk); the first
    /// acknowledgement writes it.
    pub cursor_not_prepared: Option<String>,
}

struct State {
    segments: Vec<Segment>,
    cursor: u64,
    next_id: u64,
}

struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    fsyncs: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // more than refusing service, so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Reply = oneshot::Sender<Result<u64, JournalError>>;

/// A handle to an open journal. Cheap to clone; the writer thread stops when the last clone goes.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
    tx: mpsc::Sender<(Vec<Vec<u8>>, Reply)>,
    recovery: Arc<Recovery>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, recovering from any crash.
    pub fn open(dir: impl AsRef<Path>, options: JournalOptions) -> Result<Journal, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let _ = fs::remove_file(dir.join("cursor.tmp"));
        let listed = segment::list(&dir)?;
        let mut segments = Vec::with_capacity(listed.len());
        let mut recovery = Recovery::default();
        let count = listed.len();
        for (i, (first_id, path)) in listed.into_iter().enumerate() {
            let (seg, torn) = segment::scan(first_id, &path, i + 1 == count)?;
            if let Some(prev) = segments.last() {
                let prev: &Segment = prev;
                if prev.end_id() != seg.first_id {
                    return Err(JournalError::Corrupt(format!(
                        "{} starts at id {} but the previous segment ends at {}",
                        path.display(),
                        seg.first_id,
                        prev.end_id()
                    )));
                }
            }
            recovery.torn_tail = torn.or(recovery.torn_tail);
            segments.push(seg);
        }
        let stored_cursor = cursor::load(&dir)?;
        let first = segments.first().map(|s| s.first_id);
        let next_id = segments
            .last()
            .map_or(stored_cursor.unwrap_or(0), |s| s.end_id());
        let cursor = stored_cursor.or(first).unwrap_or(0);
        if cursor > next_id {
            return Err(JournalError::Corrupt(format!(
                "cursor {cursor} is past the last record {next_id}"
            )));
        }
        if let Some(first) = first {
            if cursor < first {
                return Err(JournalError::Corrupt(format!(
                    "records {cursor}..{first} are missing (unacknowledged segment deleted)"
                )));
            }
        }
        // Finish deletions that a crash interrupted (invariant 4).
        while segments.len() > 1 && segments[0].end_id() <= cursor {
            let seg = segments.remove(0);
            fs::remove_file(&seg.path)?;
            recovery.deleted_segments += 1;
        }
        if segments.is_empty() {
            segments.push(create_segment(&dir, next_id)?);
        }
        // The cursor file moves in place from here on, needing no new space; if it cannot be
        // written now (a full disk), the first acknowledgement tries again.
        if let Err(e) = cursor::prepare(&dir, cursor) {
            recovery.cursor_not_prepared = Some(e.to_string());
        }
        let inner = Arc::new(Inner {
            dir,
            state: Mutex::new(State {
                segments,
                cursor,
                next_id,
            }),
            fsyncs: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let writer_inner = inner.clone();
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer_loop(writer_inner, rx, options))?;
        Ok(Journal {
            inner,
            tx,
            recovery: Arc::new(recovery),
        })
    }

    /// What recovery did at open.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Appends one record; returns its id once it is durable.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64, JournalError> {
        self.append_batch(vec![payload]).await
    }

    /// Appends records in order; returns the id of the first once all are durable.
    pub async fn append_batch(&self, payloads: Vec<Vec<u8>>) -> Result<u64, JournalError> {
        if let Some(p) = payloads.iter().find(|p| p.len() > frame::MAX_PAYLOAD) {
            return Err(JournalError::TooLarge(p.len()));
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((payloads, reply))
            .map_err(|_| JournalError::Closed)?;
        answer.await.unwrap_or(Err(JournalError::Closed))
    }

    /// Reads up to `max` durable records starting at id `from` (blocking file I/O).
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let mut out = Vec::new();
        let mut id = from.max(self.cursor());
        while out.len() < max {
            // Find the segment holding `id` and the offsets to read, without holding the lock
            // during I/O.
            let (path, start, count) = {
                let state = self.inner.lock();
                let Some(seg) = state
                    .segments
                    .iter()
                    .find(|s| s.first_id <= id && id < s.end_id())
                else {
                    break;
                };
                let idx = (id - seg.first_id) as usize;
                let count = (seg.offsets.len() - idx).min(max - out.len());
                (seg.path.clone(), seg.offsets[idx], count)
            };
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(start))?;
            let mut reader = std::io::BufReader::new(file);
            for _ in 0..count {
                let mut header = [0u8; frame::HEADER];
                reader.read_exact(&mut header)?;
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
                let mut buf = header.to_vec();
                buf.resize(frame::HEADER + len.min(frame::MAX_PAYLOAD), 0);
                reader.read_exact(&mut buf[frame::HEADER..])?;
                match frame::decode(&buf) {
                    frame::Decoded::Frame {
                        id: got, payload, ..
                    } if got == id => {
                        out.push((id, payload.to_vec()));
                    }
                    _ => {
                        return Err(JournalError::Corrupt(format!(
                            "{}: record {id} does not read back",
                            path.display()
                        )))
                    }
                }
                id += 1;
            }
        }
        Ok(out)
    }

    /// Acknowledges every record up to and including `id`: the cursor moves past it durably,
    /// then fully acknowledged sealed segments are deleted (blocking file I/O).
    pub fn ack_through(&self, id: u64) -> Result<(), JournalError> {
        let new_cursor = id + 1;
        {
            let state = self.inner.lock();
            if new_cursor <= state.cursor {
                return Ok(());
            }
            if new_cursor > state.next_id {
                return Err(JournalError::Corrupt(format!(
                    "ack of record {id}, which was never appended"
                )));
            }
        }
        cursor::store(&self.inner.dir, new_cursor)?;
        let doomed: Vec<PathBuf> = {
            let mut state = self.inner.lock();
            state.cursor = state.cursor.max(new_cursor);
            let mut doomed = Vec::new();
            while state.segments.len() > 1 && state.segments[0].end_id() <= state.cursor {
                doomed.push(state.segments.remove(0).path);
            }
            doomed
        };
        for path in doomed {
            fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Id of the first record not yet acknowledged.
    pub fn cursor(&self) -> u64 {
        self.inner.lock().cursor
    }

    /// Id the next append will get.
    pub fn next_id(&self) -> u64 {
        self.inner.lock().next_id
    }

    /// Records appended and not yet acknowledged.
    pub fn len(&self) -> u64 {
        let state = self.inner.lock();
        state.next_id - state.cursor
    }

    /// Whether every record is acknowledged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.inner.lock().segments.len()
    }

    /// fsyncs done by the writer so far (to observe group commit).
    pub fn fsync_count(&self) -> u64 {
        self.inner.fsyncs.load(Ordering::Relaxed)
    }
}

fn create_segment(dir: &Path, first_id: u64) -> Result<Segment, JournalError> {
    let path = dir.join(Segment::file_name(first_id));
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    f.sync_all()?;
    cursor::sync_dir(dir)?;
    Ok(Segment {
        first_id,
        path,
        offsets: Vec::new(),
        len: 0,
    })
}

/// The single writer: takes every queued append, writes, syncs once, answers all.
fn writer_loop(
    inner: Arc<Inner>,
    rx: mpsc::Receiver<(Vec<Vec<u8>>, Reply)>,
    options: JournalOptions,
) {
    let mut file: Option<File> = None;
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = write_group(&inner, &mut file, &group, options);
        match result {
            Ok(firsts) => {
                for ((_, reply), first_id) in group.into_iter().zip(firsts) {
                    let _ = reply.send(Ok(first_id));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal append failed");
                // The file may hold a partial write; reopen it at the last durable length.
                file = None;
                let message = e.to_string();
                for (_, reply) in group {
                    let _ = reply.send(Err(JournalError::Io(std::io::Error::other(
                        message.clone(),
                    ))));
                }
            }
        }
    }
}

/// Writes one group; returns the first id of each append in the group.
fn write_group(
    inner: &Inner,
    file: &mut Option<File>,
    group: &[(Vec<Vec<u8>>, Reply)],
    options: JournalOptions,
) -> Result<Vec<u64>, JournalError> {
    let (mut next_id, mut seg_len, mut seg_path, mut seg_first) = {
        let state = inner.lock();
        // The state always holds at least one segment (open creates one).
        let seg = state
            .segments
            .last()
            .expect("journal has an active segment");
        (state.next_id, seg.len, seg.path.clone(), seg.first_id)
    };
    if file.is_none() {
        let f = OpenOptions::new().write(true).open(&seg_path)?;
        f.set_len(seg_len)?;
        *file = Some(f);
    }
    let mut firsts = Vec::with_capacity(group.len());
    let mut buf = Vec::new();
    // New offsets per segment first id, published after the sync.
    let mut written: Vec<(u64, PathBuf, Vec<u64>, u64)> =
        vec![(seg_first, seg_path.clone(), Vec::new(), seg_len)];
    for (payloads, _) in group {
        firsts.push(next_id);
        for payload in payloads {
            if seg_len >= options.segment_bytes && seg_len > 0 {
                flush(file, &mut buf, inner)?;
                let seg = create_segment(&inner.dir, next_id)?;
                seg_path = seg.path.clone();
                seg_first = seg.first_id;
                seg_len = 0;
                *file = Some(OpenOptions::new().write(true).open(&seg_path)?);
                inner.lock().segments.push(seg);
                written.push((seg_first, seg_path.clone(), Vec::new(), 0));
            }
            let entry = written.last_mut().expect("one entry per segment written");
            entry.2.push(seg_len);
            let before = buf.len();
            frame::encode(next_id, payload, &mut buf);
            seg_len += (buf.len() - before) as u64;
            entry.3 = seg_len;
            next_id += 1;
        }
    }
    flush(file, &mut buf, inner)?;
    let mut state = inner.lock();
    for (first_id, _, offsets, len) in written {
        if let Some(seg) = state.segments.iter_mut().find(|s| s.first_id == first_id) {
            seg.offsets.extend(offsets);
            seg.len = len;
        }
    }
    state.next_id = next_id;
    Ok(firsts)
}

fn flush(file: &mut Option<File>, buf: &mut Vec<u8>, inner: &Inner) -> Result<(), JournalError> {
    if let Some(f) = file.as_mut() {
        f.seek(SeekFrom::End(0))?;
        f.write_all(buf)?;
        f.sync_data()?;
        inner.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    buf.clear();
    Ok(())
}
