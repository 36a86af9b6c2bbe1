//! The replica's store writer: one thread that writes committed work into the tasks'
//! RocksDB stores, so the stream thread goes on processing while a commit's writes land.
//!
//! A store hands the writer a layer (its committed overlay and the checkpoint, keyed as in
//! the store) and keeps reading through that layer until the writer says it was written.
//! Invariant: a layer is handed over only after its transaction committed, and a store has
//! at most one layer in flight (it waits for the previous one before handing over the
//! next), so writes land in commit order and the store is never ahead of the changelog. A
//! failed write is never hidden: its layer stays readable and the error is returned by
//! the store's next wait (logged, when the store closes first; its checkpoint did not
//! move, so the next owner restores that commit from the changelog).

use crate::topology::store::StoreError;
use rocksdb::{WriteBatch, DB};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// Writes of one commit: `None` is a delete.
pub type Layer = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

enum Job {
    Write {
        db: Arc<DB>,
        layer: Arc<Layer>,
        written: Arc<AtomicBool>,
        done: mpsc::SyncSender<Result<(), StoreError>>,
    },
    /// A written layer to free (tens of thousands of keys: not on the stream thread).
    Free(Arc<Layer>),
}

/// Hands layers to the writer thread. Cheap to clone; the thread ends once every clone is
/// gone. Where the thread cannot be started, layers are written on the caller's thread.
#[derive(Clone)]
pub struct StoreWriter {
    jobs: Option<mpsc::Sender<Job>>,
}

impl StoreWriter {
    pub fn start() -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new().name("store-writer".into()).spawn(move || {
            for job in queue {
                run(job);
            }
        });
        Self {
            jobs: started.ok().map(|_| jobs),
        }
    }

    /// Starts writing `layer` into `db`; the returned handle reads it until it landed.
    pub fn write(&self, db: Arc<DB>, layer: Layer) -> PendingWrite {
        let layer = Arc::new(layer);
        let written = Arc::new(AtomicBool::new(false));
        let (done, result) = mpsc::sync_channel(1);
        let job = Job::Write {
            db,
            layer: layer.clone(),
            written: written.clone(),
            done,
        };
        self.send(job);
        PendingWrite {
            layer,
            written,
            result: Some(result),
            writer: self.clone(),
        }
    }

    /// A writer whose jobs wait until the returned handle releases them (tests look at a
    /// store while its write has not landed).
    #[cfg(test)]
    pub(crate) fn held() -> (Self, HeldJobs) {
        let (jobs, queue) = mpsc::channel();
        (Self { jobs: Some(jobs) }, HeldJobs(queue))
    }

    fn send(&self, job: Job) {
        let unsent = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = unsent {
            run(job);
        }
    }
}

/// One `WriteBatch` of puts and deletes (`None`), in the order given.
pub fn batch<'a>(writes: impl IntoIterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for (key, value) in writes {
        match value {
            Some(v) => batch.put(key, v),
            None => batch.delete(key),
        }
    }
    batch
}

fn run(job: Job) {
    let (db, layer, written, done) = match job {
        Job::Write {
            db,
            layer,
            written,
            done,
        } => (db, layer, written, done),
        Job::Free(layer) => return drop(layer),
    };
    let result = db.write(batch(layer.iter())).map_err(|e| StoreError(e.to_string()));
    // The store may close its database as soon as it hears back: let go of it first.
    drop(db);
    if result.is_ok() {
        written.store(true, Ordering::Release);
    }
    drop(layer);
    let _ = done.send(result);
}

/// The queue of a [`StoreWriter::held`] writer.
#[cfg(test)]
pub(crate) struct HeldJobs(mpsc::Receiver<Job>);

#[cfg(test)]
impl HeldJobs {
    /// Runs every job queued so far.
    pub(crate) fn release(&self) {
        while let Ok(job) = self.0.try_recv() {
            run(job);
        }
    }
}

/// A layer on its way into a store.
pub struct PendingWrite {
    layer: Arc<Layer>,
    written: Arc<AtomicBool>,
    result: Option<mpsc::Receiver<Result<(), StoreError>>>,
    writer: StoreWriter,
}

impl PendingWrite {
    /// The layer, while reads must still go through it (until it was written).
    pub fn unwritten(&self) -> Option<&Layer> {
        (!self.written.load(Ordering::Acquire)).then_some(&*self.layer)
    }

    /// Waits until the layer was written, or says why it was not.
    pub fn wait(mut self) -> Result<(), StoreError> {
        self.settle()
    }

    fn settle(&mut self) -> Result<(), StoreError> {
        let Some(result) = self.result.take() else {
            return Ok(());
        };
        let result = result
            .recv()
            .unwrap_or_else(|_| Err(StoreError("the store writer stopped before writing".into())));
        let layer = std::mem::take(&mut self.layer);
        self.writer.send(Job::Free(layer));
        result
    }
}

impl Drop for PendingWrite {
    /// A store closing waits for its last write, so its database is never closed under it.
    /// A write that failed there is logged: the store's checkpoint stayed where it was, so
    /// whoever opens it next restores the commit from the changelog.
    fn drop(&mut self) {
        if let Err(error) = self.settle() {
            tracing::error!(%error, "a committed write to a closing store failed; its next owner restores it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_is_readable_until_written_and_then_in_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(DB::open_default(dir.path()).unwrap());
        let writer = StoreWriter::start();
        let layer: Layer = [(b"k".to_vec(), Some(b"v".to_vec())), (b"gone".to_vec(), None)].into();
        let pending = writer.write(db.clone(), layer);
        pending.wait().unwrap();
        assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn a_written_layer_is_no_longer_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(DB::open_default(dir.path()).unwrap());
        let writer = StoreWriter { jobs: None };
        let pending = writer.write(db.clone(), [(b"k".to_vec(), Some(b"v".to_vec()))].into());
        assert!(
            pending.unwritten().is_none(),
            "written inline, so read from the database"
        );
        assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
    }
}
