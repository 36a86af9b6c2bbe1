//! What every request handler shares: the two ports (publish, read), the topology, the id
//! generator, and what this replica remembers of its own writes (idempotency keys, and the
//! writes it accepted, for read-your-writes and command status). Memory is bounded: each
//! remembered set forgets its oldest entry first.

use super::ids::IdGenerator;
use super::ports::{Publish, Read};
use crate::topology::definition::TopologyDefinition;
use crate::topology::record::{OrderId, Uid};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

/// A bounded map that forgets its oldest entries first.
#[derive(Debug)]
pub struct Recent<K, V> {
    capacity: usize,
    inner: Mutex<(HashMap<K, V>, VecDeque<K>)>,
}

impl<K: Hash + Eq + Clone, V: Clone> Recent<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0.get(key).cloned()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Remembers `value` for `key` (replacing an older value, which keeps its age).
    pub fn insert(&self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *inner;
        if map.insert(key.clone(), value).is_none() {
            order.push_back(key);
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    /// Forgets `key` if it still maps to `value`. (Its place in the age order stays until
    /// it is the oldest, so a key inserted again may be forgotten a little early.)
    pub fn remove_if(&self, key: &K, value: &V)
    where
        V: PartialEq,
    {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.0.get(key) == Some(value) {
            inner.0.remove(key);
        }
    }
}

/// The latest write this replica accepted for one uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnWrite {
    pub command_id: i64,
    pub is_delete: bool,
}

/// The writes this replica accepted and has not yet seen in MySQL.
#[derive(Debug)]
pub struct PendingWrites {
    /// Command ids published here (GET /v1/commands answers `accepted` for them).
    pub commands: Recent<i64, ()>,
    /// The latest command published here per uid it targets.
    pub users: Recent<Uid, OwnWrite>,
    /// Orders published here.
    pub orders: Recent<OrderId, ()>,
    /// Users whose delete, published here, was seen applied.
    pub deleted: Recent<Uid, ()>,
}

impl PendingWrites {
    pub fn new(capacity: usize) -> Self {
        Self {
            commands: Recent::new(capacity),
            users: Recent::new(capacity),
            orders: Recent::new(capacity),
            deleted: Recent::new(capacity),
        }
    }
}

pub struct IngestState {
    pub publisher: Box<dyn Publish>,
    pub reader: Box<dyn Read>,
    pub topology: TopologyDefinition,
    pub ids: IdGenerator,
    /// Idempotency keys of orders already published by this replica.
    pub idempotency: Recent<(Uid, String), ()>,
    pub pending: PendingWrites,
    /// Empty: write routes are open.
    pub auth_token: String,
    pub max_body_bytes: u64,
    pub max_wait_ms: u64,
    pub read_your_writes_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_entry_first_and_only_the_value_it_was_told() {
        let recent = Recent::new(2);
        recent.insert(1, 10);
        recent.insert(2, 20);
        recent.insert(3, 30);
        assert_eq!(
            (recent.get(&1), recent.get(&2), recent.get(&3)),
            (None, Some(20), Some(30))
        );
        recent.remove_if(&2, &21);
        assert!(recent.contains(&2));
        recent.remove_if(&2, &20);
        assert!(!recent.contains(&2));
        Recent::<i32, ()>::new(0).insert(1, ());
    }
}
