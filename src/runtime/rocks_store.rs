//! A task's state store in RocksDB, behind the topology's [`KeyValueStore`] trait.
//!
//! Writes made while processing stay in an in-memory overlay until the task's commit has
//! succeeded on Kafka; only then are they written to RocksDB, in one atomic `WriteBatch`
//! together with the changelog offset they correspond to (the checkpoint), by the
//! replica's [`StoreWriter`] while the stream thread goes on; reads see the overlay, then
//! the layer being written, then RocksDB.
//! Invariant: the local store is never ahead of the committed changelog; it may be behind
//! (a crash between the Kafka commit and the local write), and restore from the checkpoint
//! closes that gap.

use crate::runtime::store_lock::StoreLock;
use crate::runtime::store_writer::{self, Layer, PendingWrite, StoreWriter};
use crate::topology::store::{scan_start, Entries, KeyValueStore, StoreError};
use rocksdb::{BlockBasedOptions, Cache, Direction, IteratorMode, Options, WriteBufferManager, DB};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the next changelog offset to restore from is kept (outside every data prefix).
pub const CHECKPOINT_KEY: &[u8] = b"\x00meta/changelog-next-offset";
/// The transactional id of the replica that last took the task over, written to the
/// changelog too, so the next owner knows whose open transaction may hold it up.
pub const OWNER_KEY: &[u8] = b"\x00meta/owner";

/// What every store of one replica shares: one block cache, one write-buffer budget, one
/// writer thread.
#[derive(Clone)]
pub struct StoreResources {
    cache: Cache,
    write_buffers: WriteBufferManager,
    writer: StoreWriter,
}

impl StoreResources {
    pub fn new(block_cache_mb: usize, write_buffer_mb: usize) -> Self {
        let cache = Cache::new_lru_cache(block_cache_mb << 20);
        let write_buffers =
            WriteBufferManager::new_write_buffer_manager_with_cache(write_buffer_mb << 20, false, cache.clone());
        Self {
            cache,
            write_buffers,
            writer: StoreWriter::start(),
        }
    }
}

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

pub struct RocksStore {
    db: Arc<DB>,
    path: PathBuf,
    /// Uncommitted writes of the current transaction; `None` is a delete.
    overlay: Layer,
    writer: StoreWriter,
    /// The last commit's writes, until they are in RocksDB. Declared after `db` (fields drop
    /// in declaration order): dropping it waits for the writer, which lets go of the
    /// database before it answers, so the database closes before `_lock` is released.
    writing: Option<PendingWrite>,
    /// Declared after `db` and `writing`, so it is released only once the database closed.
    _lock: StoreLock,
}

impl RocksStore {
    /// Opens the store at `path`; fails if another stream thread of this process has it open.
    pub fn open(path: &Path, resources: &StoreResources) -> Result<Self, StoreError> {
        Self::try_open(path, resources)?
            .ok_or_else(|| StoreError(format!("{} is open in another stream thread", path.display())))
    }

    /// Opens the store at `path`, or `None` while another stream thread of this process
    /// has it open (it is then asked for again later).
    pub fn try_open(path: &Path, resources: &StoreResources) -> Result<Option<Self>, StoreError> {
        match StoreLock::try_acquire(path) {
            Some(lock) => Self::open_locked(path, resources, lock).map(Some),
            None => Ok(None),
        }
    }

    /// Deletes the store's contents and opens it again empty, without letting go of it.
    pub fn wipe(mut self, resources: &StoreResources) -> Result<Self, StoreError> {
        // Its contents go anyway; what matters is that the writer let go of the database.
        let _ = self.settle();
        let RocksStore { db, path, _lock, .. } = self;
        drop(db);
        Self::destroy(&path)?;
        Self::open_locked(&path, resources, _lock)
    }

    fn open_locked(path: &Path, resources: &StoreResources, lock: StoreLock) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(store_error)?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&resources.cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&resources.write_buffers);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&options, path).map_err(store_error)?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
            overlay: BTreeMap::new(),
            writer: resources.writer.clone(),
            writing: None,
            _lock: lock,
        })
    }

    /// Deletes the store's files (used when local state cannot be trusted).
    pub fn destroy(path: &Path) -> Result<(), StoreError> {
        if path.exists() {
            DB::destroy(&Options::default(), path).map_err(store_error)?;
            // RocksDB may already have removed the directory with the files.
            match std::fs::remove_dir_all(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(store_error(e)),
                _ => {}
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The changelog offset restore continues from, if this store was ever written.
    pub fn checkpoint(&self) -> Result<Option<i64>, StoreError> {
        match self.committed(CHECKPOINT_KEY)? {
            None => Ok(None),
            Some(bytes) => {
                let array: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError("checkpoint is not 8 bytes".into()))?;
                Ok(Some(i64::from_be_bytes(array)))
            }
        }
    }

    /// The owner recorded by the last committed claim of the task ([`OWNER_KEY`]).
    pub fn owner(&self) -> Result<Option<String>, StoreError> {
        let value = self.committed(OWNER_KEY)?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn has_pending(&self) -> bool {
        !self.overlay.is_empty()
    }

    /// Hands the overlay and the new checkpoint to the writer, to be written atomically
    /// (after the Kafka commit). Waits for the previous commit's write first, and returns
    /// its error if it failed.
    pub fn commit(&mut self, next_changelog_offset: Option<i64>) -> Result<(), StoreError> {
        self.settle()?;
        let mut layer = std::mem::take(&mut self.overlay);
        if let Some(offset) = next_changelog_offset {
            layer.insert(CHECKPOINT_KEY.to_vec(), Some(offset.to_be_bytes().to_vec()));
        }
        if !layer.is_empty() {
            self.writing = Some(self.writer.write(self.db.clone(), layer));
        }
        Ok(())
    }

    /// Waits until the last commit's writes are in RocksDB.
    pub fn settle(&mut self) -> Result<(), StoreError> {
        match self.writing.take() {
            Some(pending) => pending.wait(),
            None => Ok(()),
        }
    }

    /// A committed value: the layer being written, then RocksDB (never the overlay).
    fn committed(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .writing
            .as_ref()
            .and_then(PendingWrite::unwritten)
            .and_then(|l| l.get(key))
        {
            Some(value) => Ok(value.clone()),
            None => self.db.get(key).map_err(store_error),
        }
    }

    /// Forgets the overlay (after an aborted transaction).
    pub fn rollback(&mut self) {
        self.overlay.clear();
    }

    /// Applies restored changelog records and advances the checkpoint, atomically.
    pub fn apply_restored(
        &mut self,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
        next_offset: i64,
    ) -> Result<(), StoreError> {
        self.settle()?;
        let mut batch = store_writer::batch(records.iter().map(|(key, value)| (key, value)));
        batch.put(CHECKPOINT_KEY, next_offset.to_be_bytes());
        self.db.write(batch).map_err(store_error)
    }

    /// RocksDB's own estimate of the live keys, and the size of its files in bytes.
    pub fn estimates(&self) -> (u64, u64) {
        let keys = self
            .db
            .property_int_value("rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0);
        let size = self
            .db
            .property_int_value("rocksdb.total-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
            + self
                .db
                .property_int_value("rocksdb.cur-size-all-mem-tables")
                .ok()
                .flatten()
                .unwrap_or(0);
        (keys, size)
    }
}

impl KeyValueStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.overlay.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.committed(key),
        }
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.overlay.insert(key.to_vec(), Some(value));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.overlay.insert(key.to_vec(), None);
        Ok(())
    }

    /// Pages RocksDB's entries and the overlay together: up to `limit` keys are read from
    /// RocksDB, the writes of the layer being written and then of the overlay up to the
    /// last of them are laid over, and if their deletes left the page short, the next page
    /// follows.
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Entries, StoreError> {
        let mut out: Entries = Vec::new();
        let mut cursor: Option<Vec<u8>> = after.map(<[u8]>::to_vec);
        loop {
            let start = scan_start(prefix, cursor.as_deref()).to_vec();
            // Looked at before RocksDB is read: a layer that lands in between is then laid
            // over values it already holds, never missed.
            let writing = self.writing.as_ref().and_then(PendingWrite::unwritten);
            let mut page: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for item in self.db.iterator(IteratorMode::From(&start, Direction::Forward)) {
                let (key, value) = item.map_err(store_error)?;
                if !key.starts_with(prefix) || page.len() >= limit {
                    break;
                }
                if Some(&key[..]) != cursor.as_deref() {
                    page.insert(key.to_vec(), value.to_vec());
                }
            }
            let exhausted = page.len() < limit;
            let upper = if exhausted {
                None
            } else {
                page.keys().next_back().cloned()
            };
            for layer in writing.into_iter().chain([&self.overlay]) {
                let pending = layer
                    .range(start.clone()..)
                    .skip_while(|(k, _)| Some(k.as_slice()) == cursor.as_deref())
                    .take_while(|(k, _)| k.starts_with(prefix) && upper.as_ref().is_none_or(|u| *k <= u));
                for (key, value) in pending {
                    match value {
                        Some(v) => page.insert(key.clone(), v.clone()),
                        None => page.remove(key),
                    };
                }
            }
            out.extend(page.into_iter().take(limit - out.len()));
            if out.len() >= limit || upper.is_none() {
                return Ok(out);
            }
            cursor = upper;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destroyed_store_reopens_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("3");
        let resources = StoreResources::new(8, 8);
        let mut store = RocksStore::open(&path, &resources).unwrap();
        store.put(b"u1", b"a".to_vec()).unwrap();
        store.commit(Some(1490)).unwrap();
        drop(store);
        RocksStore::destroy(&path).unwrap();
        let reopened = RocksStore::open(&path, &resources).unwrap();
        assert_eq!(reopened.checkpoint().unwrap(), None);
        assert_eq!(reopened.get(b"u1").unwrap(), None);
    }

    #[test]
    fn a_commit_is_read_back_before_its_write_lands() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, held) = StoreWriter::held();
        let resources = StoreResources {
            writer,
            ..StoreResources::new(8, 8)
        };
        let mut store = RocksStore::open(dir.path(), &resources).unwrap();
        // Dropped before the store, so a failed assertion does not leave it waiting.
        struct Release<'a>(&'a crate::runtime::store_writer::HeldJobs);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.release();
            }
        }
        let _release = Release(&held);
        store.put(b"u1", b"a".to_vec()).unwrap();
        store.put(b"u2", b"b".to_vec()).unwrap();
        store.commit(Some(7)).unwrap();
        assert_eq!(store.db.get(b"u1").unwrap(), None, "the write has not landed");
        assert_eq!(store.get(b"u1").unwrap(), Some(b"a".to_vec()));
        assert_eq!(store.checkpoint().unwrap(), Some(7));
        store.delete(b"u2").unwrap();
        store.put(b"u3", b"c".to_vec()).unwrap();
        let keys: Vec<_> = store.scan_prefix(b"u").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"u1".to_vec(), b"u3".to_vec()]);
        store.rollback();
        assert_eq!(
            store.get(b"u2").unwrap(),
            Some(b"b".to_vec()),
            "a rollback keeps what committed"
        );

        held.release();
        assert_eq!(store.db.get(b"u1").unwrap(), Some(b"a".to_vec()));
        assert_eq!(store.checkpoint().unwrap(), Some(7));
        store.put(b"u4", b"d".to_vec()).unwrap();
        store.commit(Some(9)).unwrap();
        held.release();
        store.settle().unwrap();
        assert_eq!(store.checkpoint().unwrap(), Some(9));
        assert_eq!(store.get(b"u4").unwrap(), Some(b"d".to_vec()));
    }

    #[test]
    fn overlay_is_read_back_and_written_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let resources = StoreResources::new(8, 8);
        let mut store = RocksStore::open(dir.path(), &resources).unwrap();
        store.put(b"u1", b"a".to_vec()).unwrap();
        store.put(b"u2", b"b".to_vec()).unwrap();
        assert_eq!(store.get(b"u1").unwrap(), Some(b"a".to_vec()));
        store.rollback();
        assert_eq!(store.get(b"u1").unwrap(), None);

        store.put(b"u1", b"a".to_vec()).unwrap();
        store.put(b"u2", b"b".to_vec()).unwrap();
        store.commit(Some(42)).unwrap();
        store.delete(b"u1").unwrap();
        store.put(b"u3", b"c".to_vec()).unwrap();
        let keys: Vec<_> = store.scan_prefix(b"u").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"u2".to_vec(), b"u3".to_vec()]);
        // Paged: RocksDB holds u1, u2; the overlay deletes u1 and adds u3.
        let page = |after: Option<&[u8]>| -> Vec<Vec<u8>> {
            store
                .scan(b"u", after, 1)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(page(None), [b"u2".to_vec()]);
        assert_eq!(page(Some(b"u2")), [b"u3".to_vec()]);
        assert!(page(Some(b"u3")).is_empty());
        assert_eq!(store.checkpoint().unwrap(), Some(42));
        drop(store);

        let reopened = RocksStore::open(dir.path(), &resources).unwrap();
        assert_eq!(reopened.get(b"u1").unwrap(), Some(b"a".to_vec()));
        assert_eq!(reopened.get(b"u3").unwrap(), None);
        assert_eq!(reopened.checkpoint().unwrap(), Some(42));
    }
}
