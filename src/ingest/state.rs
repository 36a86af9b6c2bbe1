//! What every request handler shares: the publisher, the database pool, the topology,
//! the id generator and the idempotency cache. [`Publish`] is the seam between the HTTP
//! layer and Kafka (the runtime's `KafkaPublisher` implements it).

use super::ids::IdGenerator;
use crate::runtime::publisher::{Delivered, KafkaPublisher, PublishError};
use crate::topology::definition::TopologyDefinition;
use futures::future::BoxFuture;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Publishes records and reports broker acknowledgement.
pub trait Publish: Send + Sync + 'static {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        partition: Option<i32>,
        key: &'a [u8],
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<Delivered, PublishError>>;
    fn is_reachable(&self) -> bool;
}

impl Publish for KafkaPublisher {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        partition: Option<i32>,
        key: &'a [u8],
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(KafkaPublisher::publish(self, topic, partition, key, value))
    }

    fn is_reachable(&self) -> bool {
        KafkaPublisher::is_reachable(self, Duration::from_secs(2))
    }
}

/// Idempotency keys already published by this replica, oldest forgotten first.
#[derive(Debug)]
pub struct IdempotencyCache {
    capacity: usize,
    inner: Mutex<Remembered>,
}

/// The keys, and the order they were remembered in (to forget the oldest first).
#[derive(Debug, Default)]
struct Remembered {
    keys: HashSet<(i64, String)>,
    order: VecDeque<(i64, String)>,
}

impl IdempotencyCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Remembered::default()),
        }
    }

    pub fn contains(&self, uid: i64, key: &str) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.keys.contains(&(uid, key.to_string()))
    }

    pub fn remember(&self, uid: i64, key: String) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.keys.insert((uid, key.clone())) {
            inner.order.push_back((uid, key));
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.keys.remove(&old);
                }
            }
        }
    }
}

pub struct IngestState<P> {
    pub publisher: P,
    pub pool: mysql_async::Pool,
    pub topology: TopologyDefinition,
    pub ids: IdGenerator,
    pub idempotency: IdempotencyCache,
    /// Empty: write routes are open.
    pub auth_token: String,
    pub max_body_bytes: u64,
    pub max_wait_ms: u64,
}
