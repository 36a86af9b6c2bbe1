//! The record collector's producer context: it follows the delivery reports of the open
//! transaction, keeping the failure that tells most about it (a fatal one, such as an
//! authorization error, over the first retriable one) and the last offset written to each
//! changelog partition, which the commit hands to the stores' checkpoints; and whether a
//! record was purged from the producer's queue.
//! Invariant: whoever ends or abandons a transaction takes all three, so nothing of one
//! transaction is read as the next one's.

use super::error::is_fatal_code;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tracing::warn;

pub struct DeliveryTracker {
    changelog_topic: String,
    failure: Mutex<Option<RDKafkaErrorCode>>,
    changelog_offsets: Mutex<HashMap<i32, i64>>,
    purged: AtomicBool,
}

impl DeliveryTracker {
    pub fn new(changelog_topic: &str) -> Self {
        Self {
            changelog_topic: changelog_topic.to_string(),
            failure: Mutex::new(None),
            changelog_offsets: Mutex::new(HashMap::new()),
            purged: AtomicBool::new(false),
        }
    }

    /// Records a delivery failure unless one is recorded already, as a report would.
    pub fn record_failure(&self, code: RDKafkaErrorCode) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(code);
        }
    }

    /// The failure recorded since the last call, if any.
    pub fn take_failure(&self) -> Option<RDKafkaErrorCode> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    /// Whether a record was purged from the producer's queue since the last call (librdkafka
    /// purges a transaction's queued records when the transaction fails under them, as when
    /// a send of the offsets is refused with ILLEGAL_GENERATION).
    pub fn take_purged(&self) -> bool {
        self.purged.swap(false, Ordering::Relaxed)
    }

    /// The last changelog offset delivered to each partition since the last call.
    pub fn take_changelog_offsets(&self) -> HashMap<i32, i64> {
        self.changelog_offsets
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) if message.topic() == self.changelog_topic => {
                if let Ok(mut offsets) = self.changelog_offsets.lock() {
                    let entry = offsets.entry(message.partition()).or_insert(-1);
                    *entry = (*entry).max(message.offset());
                }
            }
            Ok(_) => {}
            Err((error, message)) => {
                let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                if code == RDKafkaErrorCode::PurgeQueue {
                    self.purged.store(true, Ordering::Relaxed);
                }
                if let Ok(mut failure) = self.failure.lock() {
                    // One line per failed transaction, not one per record: a leader that
                    // stops answering fails every record in flight to it at once.
                    if failure.is_none() {
                        warn!(topic = message.topic(), partition = message.partition(), %error,
                            "delivery failed; the open transaction will roll back (its other failed deliveries are not logged)");
                    }
                    if failure.is_none() || is_fatal_code(code) {
                        *failure = Some(code);
                    }
                }
            }
        }
    }
}
