//! A single node's store of rooms' logic between runs (documents above all): one file per
//! room under `store.dir`, named by the room's name in hex, holding its `StoredLogic`
//! (MessagePack). The registry reads a room's file when the room is made again
//! (`FileSource`, on its thread: one small read) and hands over what changed every
//! `store.flush_ms` and at shutdown; a writer thread of its own writes it (a temporary file,
//! then a rename, so a crash leaves the old or the new file, never half of one). A write that
//! fails is tried again at the next flush with whatever newer snapshot came meanwhile: at most
//! one snapshot per room waits, so a failing disk does not grow memory beyond the rooms'
//! own. Failures count in `parlor_store_failures` and show in `/health` (`store: failing`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::game::{LogicSource, StoredLogic};
use crate::metrics::Metrics;

/// What the writer is sent.
enum Job {
    Write(Vec<(String, StoredLogic)>),
    /// Write what waits, then say so.
    Flush(mpsc::Sender<()>),
}

/// The store's writing side, kept by the single engine's actor.
pub struct LogicStore {
    jobs: mpsc::Sender<Job>,
    failing: Arc<AtomicBool>,
}

/// The store's reading side, kept by the registry.
pub struct FileSource {
    dir: PathBuf,
}

impl LogicSource for FileSource {
    fn load(&self, room: &str) -> Option<StoredLogic> {
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
        let writer = Writer {
            dir: dir.clone(),
            waiting: BTreeMap::new(),
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
        (Self { jobs, failing }, FileSource { dir })
    }

    /// Hands snapshots to the writer.
    pub fn write(&self, snapshots: Vec<(String, StoredLogic)>) {
        if !snapshots.is_empty() {
            let _ = self.jobs.send(Job::Write(snapshots));
        }
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
    /// The newest snapshot of each room not written yet.
    waiting: BTreeMap<String, StoredLogic>,
    failing: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

/// How soon a failed write is tried again when nothing new comes.
const RETRY: Duration = Duration::from_secs(2);

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        loop {
            match queue.recv_timeout(RETRY) {
                Ok(Job::Write(snapshots)) => {
                    self.waiting.extend(snapshots);
                    self.write_waiting();
                }
                Ok(Job::Flush(done)) => {
                    self.write_waiting();
                    let _ = done.send(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !self.waiting.is_empty() {
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
        let rooms: Vec<String> = self.waiting.keys().cloned().collect();
        for room in rooms {
            let Some(stored) = self.waiting.get(&room) else {
                continue;
            };
            match write_file(&self.dir, &room, stored) {
                Ok(()) => {
                    self.waiting.remove(&room);
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
        self.metrics.store_waiting.set(self.waiting.len() as i64);
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
        // The disk is back: the newest is written.
        std::fs::remove_file(&dir).unwrap();
        store.flush(Vec::new(), Duration::from_secs(5));
        assert!(!store.failing());
        assert_eq!(source.load("notes/1"), Some(stored(9)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
