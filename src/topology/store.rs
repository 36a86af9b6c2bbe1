//! The state-store abstraction a processor sees, an in-memory implementation for the
//! test driver, and a change-logging wrapper that records every write so the runtime can
//! put it on the changelog topic (and the driver can show it to tests).
//! Invariant: a processor reads its own writes, whatever store is underneath.

use std::collections::BTreeMap;

/// A failure of the store underneath (disk, corruption): fatal for the task that owns it.
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

/// Key-value pairs in key order, as a prefix scan returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Byte-keyed, ordered key-value state, in the spirit of Kafka Streams' `KeyValueStore`.
pub trait KeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError>;
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// The first `limit` live entries whose key starts with `prefix` and, when `after` is
    /// given, sorts after it; in key order. Scanning from the last key returned pages
    /// through the prefix.
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Entries, StoreError>;
    /// Every live entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.scan(prefix, None, usize::MAX)
    }
}

/// Where a scan of `prefix` after `after` starts: the prefix itself, or `after` when it
/// lies within the prefix (the caller skips `after` itself).
pub fn scan_start<'a>(prefix: &'a [u8], after: Option<&'a [u8]>) -> &'a [u8] {
    match after {
        Some(after) if after > prefix => after,
        _ => prefix,
    }
}

/// The store of a task of a stateless sub-topology: every access is an error, so a
/// processor that needs state cannot run there unnoticed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStore;

impl NoStore {
    fn refuse<T>(&self) -> Result<T, StoreError> {
        Err(StoreError("this sub-topology has no state store".into()))
    }
}

impl KeyValueStore for NoStore {
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.refuse()
    }
    fn put(&mut self, _: &[u8], _: Vec<u8>) -> Result<(), StoreError> {
        self.refuse()
    }
    fn delete(&mut self, _: &[u8]) -> Result<(), StoreError> {
        self.refuse()
    }
    fn scan(&self, _: &[u8], _: Option<&[u8]>, _: usize) -> Result<Entries, StoreError> {
        self.refuse()
    }
}

/// A store held in a `BTreeMap`; what the test driver runs the processor against.
#[derive(Debug, Default, Clone)]
pub struct InMemoryStore {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl KeyValueStore for InMemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.entries.insert(key.to_vec(), value);
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.entries.remove(key);
        Ok(())
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Entries, StoreError> {
        Ok(self
            .entries
            .range(scan_start(prefix, after).to_vec()..)
            .skip_while(|(k, _)| Some(k.as_slice()) == after)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// One write to a store: the changelog record it becomes (`None` is a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChange {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Wraps a store and remembers every write, in order, for the changelog.
pub struct ChangeLoggingStore<'a> {
    inner: &'a mut dyn KeyValueStore,
    changes: &'a mut Vec<StoreChange>,
}

impl<'a> ChangeLoggingStore<'a> {
    pub fn new(inner: &'a mut dyn KeyValueStore, changes: &'a mut Vec<StoreChange>) -> Self {
        Self { inner, changes }
    }
}

impl KeyValueStore for ChangeLoggingStore<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put(key, value.clone())?;
        self.changes.push(StoreChange {
            key: key.to_vec(),
            value: Some(value),
        });
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.delete(key)?;
        self.changes.push(StoreChange {
            key: key.to_vec(),
            value: None,
        });
        Ok(())
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Entries, StoreError> {
        self.inner.scan(prefix, after, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_prefix_returns_only_matching_keys_in_order() {
        let mut store = InMemoryStore::new();
        store.put(b"u2", b"b".to_vec()).unwrap();
        store.put(b"u1", b"a".to_vec()).unwrap();
        store.put(b"o1", b"x".to_vec()).unwrap();
        store.put(b"v", b"y".to_vec()).unwrap();
        let keys: Vec<_> = store.scan_prefix(b"u").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"u1".to_vec(), b"u2".to_vec()]);
    }

    #[test]
    fn scan_pages_through_a_prefix_after_a_key() {
        let mut store = InMemoryStore::new();
        for key in [&b"u1"[..], b"u2", b"u3", b"v1"] {
            store.put(key, b"x".to_vec()).unwrap();
        }
        let keys = |entries: Entries| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(store.scan(b"u", None, 2).unwrap()),
            [b"u1".to_vec(), b"u2".to_vec()]
        );
        assert_eq!(keys(store.scan(b"u", Some(b"u2"), 2).unwrap()), [b"u3".to_vec()]);
        assert!(store.scan(b"u", Some(b"u3"), 2).unwrap().is_empty());
    }

    #[test]
    fn change_logging_records_puts_and_deletes_in_order() {
        let mut store = InMemoryStore::new();
        let mut changes = Vec::new();
        {
            let mut logged = ChangeLoggingStore::new(&mut store, &mut changes);
            logged.put(b"k", b"1".to_vec()).unwrap();
            logged.delete(b"k").unwrap();
        }
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].value.as_deref(), Some(&b"1"[..]));
        assert_eq!(changes[1].value, None);
        assert!(store.is_empty());
    }
}
