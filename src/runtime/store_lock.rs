//! Which task stores are open in this process. With several stream threads, a task can
//! move from one thread to another of the same replica, or be asked for by one thread
//! while another still keeps it as a standby; RocksDB refuses a second open of a directory
//! in one process, as an error. Here the second opener learns the store is busy and asks
//! again later, as Kafka Streams' state directory locks a task's directory per thread.
//!
//! Invariant: a store directory is held by at most one [`StoreLock`] in the process, from
//! before its database opens until after it closed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// The right to open one store directory; released when dropped.
#[derive(Debug)]
pub struct StoreLock(PathBuf);

impl StoreLock {
    /// The lock of `path`, unless another holder in this process has it.
    pub fn try_acquire(path: &Path) -> Option<StoreLock> {
        let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.insert(path.to_path_buf()).then(|| StoreLock(path.to_path_buf()))
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_held_once_until_released() {
        let path = Path::new("/nonexistent/store-lock-test/0");
        let first = StoreLock::try_acquire(path).expect("free at first");
        assert!(StoreLock::try_acquire(path).is_none(), "held twice");
        assert!(StoreLock::try_acquire(Path::new("/nonexistent/store-lock-test/1")).is_some());
        drop(first);
        assert!(StoreLock::try_acquire(path).is_some(), "free again once released");
    }
}
