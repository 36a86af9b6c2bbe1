//! Read-only views of one partition's state, for `creditstream state`: a replica's RocksDB
//! store opened as a secondary instance (it never takes the store's lock and writes only
//! to a scratch directory of its own, so a running replica is not disturbed), or the state
//! rebuilt in memory from the committed changelog when no local store is at hand.
//! Invariant: nothing here writes to a store or to Kafka.

use crate::config::KafkaConfig;
use crate::runtime::rocks_store::CHECKPOINT_KEY;
use crate::runtime::topic_reader::{read_to_end, ReadError};
use crate::topology::store::{scan_start, Entries, InMemoryStore, KeyValueStore, StoreError};
use rocksdb::{Direction, IteratorMode, Options, DB};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreReadError {
    #[error("no local state for partition {partition} at {}; use --from-changelog", path.display())]
    NoLocalState { partition: u32, path: PathBuf },
    #[error("opening {}: {source}", path.display())]
    Open { path: PathBuf, source: rocksdb::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the changelog: {0}")]
    Changelog(#[from] ReadError),
}

/// One partition's state, as a read-only store, with where it came from.
pub struct PartitionState {
    pub partition: u32,
    /// `local` (a replica's store) or `changelog`.
    pub source: &'static str,
    /// The next changelog offset the local store had applied, when it says.
    pub checkpoint: Option<i64>,
    pub store: Box<dyn KeyValueStore>,
}

/// A RocksDB secondary instance: follows the primary's files as of the moment it opened.
struct SecondaryStore {
    db: DB,
    scratch: PathBuf,
}

impl Drop for SecondaryStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn read_only() -> StoreError {
    StoreError("this view of the state is read-only".into())
}

impl KeyValueStore for SecondaryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(key).map_err(|e| StoreError(e.to_string()))
    }

    fn put(&mut self, _: &[u8], _: Vec<u8>) -> Result<(), StoreError> {
        Err(read_only())
    }

    fn delete(&mut self, _: &[u8]) -> Result<(), StoreError> {
        Err(read_only())
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Entries, StoreError> {
        let start = scan_start(prefix, after);
        let mut out = Entries::new();
        for item in self.db.iterator(IteratorMode::From(start, Direction::Forward)) {
            let (key, value) = item.map_err(|e| StoreError(e.to_string()))?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            if Some(&key[..]) != after {
                out.push((key.to_vec(), value.to_vec()));
            }
        }
        Ok(out)
    }
}

/// Opens the store of `partition` under `store_dir` (`<state_dir>/<application_id>`)
/// without disturbing the replica that may be running on it.
pub fn open_local(store_dir: &Path, partition: u32) -> Result<PartitionState, StoreReadError> {
    let path = store_dir.join(partition.to_string());
    if !path.join("CURRENT").exists() {
        return Err(StoreReadError::NoLocalState { partition, path });
    }
    let scratch = std::env::temp_dir().join(format!("creditstream-state-{}-{partition}", std::process::id()));
    let mut options = Options::default();
    options.set_max_open_files(-1);
    let db = DB::open_as_secondary(&options, &path, &scratch).map_err(|source| StoreReadError::Open {
        path: path.clone(),
        source,
    })?;
    let store = SecondaryStore { db, scratch };
    store
        .db
        .try_catch_up_with_primary()
        .map_err(|source| StoreReadError::Open {
            path: path.clone(),
            source,
        })?;
    let checkpoint = match store.get(CHECKPOINT_KEY)? {
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice()).ok().map(i64::from_be_bytes),
        None => None,
    };
    Ok(PartitionState {
        partition,
        source: "local",
        checkpoint,
        store: Box::new(store),
    })
}

/// Rebuilds every partition's state from the committed records of `changelog`.
pub fn from_changelog(
    kafka: &KafkaConfig,
    changelog: &str,
    partitions: u32,
    timeout: Duration,
) -> Result<Vec<PartitionState>, StoreReadError> {
    let mut stores: Vec<InMemoryStore> = (0..partitions).map(|_| InMemoryStore::new()).collect();
    for record in read_to_end(kafka, changelog, timeout)? {
        let (Some(store), Some(key)) = (stores.get_mut(record.partition as usize), record.key) else {
            continue;
        };
        match record.value {
            Some(value) => store.put(&key, value)?,
            None => store.delete(&key)?,
        }
    }
    Ok(stores
        .into_iter()
        .enumerate()
        .map(|(partition, store)| PartitionState {
            partition: partition as u32,
            source: "changelog",
            checkpoint: None,
            store: Box::new(store),
        })
        .collect())
}
