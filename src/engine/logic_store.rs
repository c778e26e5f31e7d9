//! A single node's store of rooms' logic between runs (documents above all): one file per
//! room under `store.dir`, named by the room's name in hex, holding its `StoredLogic`
//! (MessagePack). The registry reads a room's file when the room is made again
//! (`FileSource`, on its thread: one small read) and hands over what changed every
//! `store.flush_ms` and at shutdown; a writer thread of its own writes it (a temporary file,
//! then a rename, so a crash leaves the old or the new file, never half of one). A write that
//! fails is tried again at the next flush with whatever newer snapshot came meanwhile: at most
//! one snapshot per room waits, so a failing disk does not grow memory beyond the rooms'
//! own. Failures count in `parlor_store_failures` and show in `/health` (`store: failing`).
//!
//! A document no one is in is unloaded: its room goes when its last member leaves, and its
//! last snapshot goes to the writer. Made again (on demand: a join, a y-websocket connection),
//! it is read back from what is newest: the registry's snapshots not handed over yet, then the
//! writer's not written yet (`Pending`, shared with the reader), then the file. So a document
//! reopened before its write, or while the disk fails, loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::game::{LogicSource, StoredLogic};
use crate::metrics::Metrics;

/// What the writer is sent.
enum Job {
    /// New snapshots wait in `Pending`: write them.
    Write,
    /// Write what waits, then say so.
    Flush(mpsc::Sender<()>),
}

/// The store's writing side, kept by the single engine's actor.
pub struct LogicStore {
    jobs: mpsc::Sender<Job>,
    failing: Arc<AtomicBool>,
    /// Where snapshots wait for the writer: put there by `write` itself, on the registry's
    /// side, so that from the moment the registry hands one over the reader finds it.
    pending: Pending,
    next: std::cell::Cell<u64>,
}

/// Snapshots handed to the writer and not written yet (each room's newest, with a number
/// that tells a newer one from the one being written).
type Pending = Arc<Mutex<BTreeMap<String, (u64, StoredLogic)>>>;

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, StoredLogic)>> {
    // What a panicking holder left is still each room's newest snapshot.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The store's reading side, kept by the registry.
pub struct FileSource {
    dir: PathBuf,
    pending: Pending,
}

impl LogicSource for FileSource {
    fn load(&self, room: &str) -> Option<StoredLogic> {
        if let Some((_, stored)) = lock(&self.pending).get(room) {
            return Some(stored.clone());
        }
        let bytes = std::fs::read(file_of(&self.dir, room)).ok()?;
        match parlor_protocol::decode_value::<StoredLogic>(&bytes, 64) {
            Ok(stored) => Some(stored),
            Err(err) => {
                tracing::warn!("room {room:?}: its stored logic is unreadable: {err}");
                None
            }
        }
    }
}

/// The file that keeps room `room`'s logic.
fn file_of(dir: &Path, room: &str) -> PathBuf {
    let mut name = String::with_capacity(room.len() * 2 + 4);
    for byte in room.as_bytes() {
        name.push_str(&format!("{byte:02x}"));
    }
    name.push_str(".mpk");
    dir.join(name)
}

impl LogicStore {
    /// A store under `dir` (made when first written), and the source the registry reads.
    pub fn open(dir: PathBuf, metrics: Arc<Metrics>) -> (Self, FileSource) {
        let (jobs, queue) = mpsc::channel();
        let failing = Arc::new(AtomicBool::new(false));
        let pending = Pending::default();
        let writer = Writer {
            dir: dir.clone(),
            waiting: Arc::clone(&pending),
            failing: Arc::clone(&failing),
            metrics,
        };
        let spawned = std::thread::Builder::new()
            .name("parlor-store".into())
            .spawn(move || writer.run(queue));
        if let Err(err) = spawned {
            tracing::error!("no store writer ({err}): rooms' logic is not kept");
            failing.store(true, Ordering::Relaxed);
        }
        let store = Self {
            jobs,
            failing,
            pending: Arc::clone(&pending),
            next: std::cell::Cell::new(0),
        };
        (store, FileSource { dir, pending })
    }

    /// Hands snapshots to the writer (each replaces its room's one waiting, if any).
    pub fn write(&self, snapshots: Vec<(String, StoredLogic)>) {
        if snapshots.is_empty() {
            return;
        }
        let mut waiting = lock(&self.pending);
        for (room, stored) in snapshots {
            self.next.set(self.next.get() + 1);
            waiting.insert(room, (self.next.get(), stored));
        }
        drop(waiting);
        let _ = self.jobs.send(Job::Write);
    }

    /// Writes `snapshots` and everything waiting, and waits for it (at most `limit`).
    pub fn flush(&self, snapshots: Vec<(String, StoredLogic)>, limit: Duration) {
        self.write(snapshots);
        let (done, wait) = mpsc::channel();
        if self.jobs.send(Job::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(limit);
        }
    }

    /// Whether the last write failed.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

struct Writer {
    dir: PathBuf,
    /// The newest snapshot of each room not written yet (the reader looks here first).
    waiting: Pending,
    failing: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// How soon a failed write is tried again when nothing new comes.
const RETRY: Duration = Duration::from_secs(2);

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        loop {
            match queue.recv_timeout(RETRY) {
                Ok(Job::Write) => self.write_waiting(),
                Ok(Job::Flush(done)) => {
                    self.write_waiting();
                    let _ = done.send(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !lock(&self.waiting).is_empty() {
                        self.write_waiting();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.write_waiting();
                    return;
                }
            }
        }
    }

    fn write_waiting(&mut self) {
        let mut failed = false;
        let rooms: Vec<String> = lock(&self.waiting).keys().cloned().collect();
        for room in rooms {
            // Written outside the lock; it stays readable there until it is on disk, and goes
            // only if nothing newer came meanwhile.
            let Some((number, stored)) = lock(&self.waiting).get(&room).cloned() else {
                continue;
            };
            match write_file(&self.dir, &room, &stored) {
                Ok(()) => {
                    let mut waiting = lock(&self.waiting);
                    if waiting.get(&room).is_some_and(|(n, _)| *n == number) {
                        waiting.remove(&room);
                    }
                }
                Err(err) => {
                    if !self.failing.load(Ordering::Relaxed) {
                        tracing::warn!(
                            "store: cannot write room {room:?} under {:?}: {err}",
                            self.dir
                        );
                    }
                    self.metrics.store_failures.inc();
                    failed = true;
                }
            }
        }
        if !failed && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("store: writing again under {:?}", self.dir);
        }
        if failed {
            self.failing.store(true, Ordering::Relaxed);
        }
        let waiting = lock(&self.waiting).len();
        self.metrics.store_waiting.set(waiting as i64);
    }
}

fn write_file(dir: &Path, room: &str, stored: &StoredLogic) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = file_of(dir, room);
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, parlor_protocol::encode_value(stored))?;
    std::fs::rename(&temporary, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: u8) -> StoredLogic {
        StoredLogic {
            room_type: "yjs".into(),
            type_options: parlor_protocol::Value::Nil,
            snapshot: vec![n; 3],
        }
    }

    #[test]
    fn what_is_handed_over_is_read_back_at_once_before_the_writer_runs() {
        let dir = std::env::temp_dir().join(format!("parlor-store-now-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, source) = LogicStore::open(dir.clone(), Arc::new(Metrics::new()));
        // Whatever the writer thread is doing, the reader finds what was handed over.
        store.write(vec![("doc".into(), stored(7))]);
        assert_eq!(source.load("doc"), Some(stored(7)));
        store.flush(Vec::new(), Duration::from_secs(5));
        assert_eq!(source.load("doc"), Some(stored(7)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_is_written_is_read_back_and_a_failing_disk_is_retried_without_growing() {
        let dir = std::env::temp_dir().join(format!("parlor-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let metrics = Arc::new(Metrics::new());
        let (store, source) = LogicStore::open(dir.clone(), Arc::clone(&metrics));
        store.flush(vec![("notes/1".into(), stored(1))], Duration::from_secs(5));
        assert_eq!(source.load("notes/1"), Some(stored(1)));
        assert_eq!(source.load("other"), None);
        assert!(!store.failing());
        // The directory becomes a file: writes fail, are retried, only the newest waits.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"not a directory").unwrap();
        for n in 2..10 {
            store.flush(vec![("notes/1".into(), stored(n))], Duration::from_secs(5));
        }
        assert!(store.failing());
        assert_eq!(
            metrics.store_waiting.get(),
            1,
            "one snapshot waits, the newest"
        );
        assert_eq!(
            source.load("notes/1"),
            Some(stored(9)),
            "what waits is what a room made again reads"
        );
        // The disk is back: the newest is written.
        std::fs::remove_file(&dir).unwrap();
        store.flush(Vec::new(), Duration::from_secs(5));
        assert!(!store.failing());
        assert_eq!(source.load("notes/1"), Some(stored(9)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
