//! The ingest's Kafka producer: idempotent, acks=all, murmur2 placement, batching across
//! concurrent requests through librdkafka's linger. A publish completes only when the
//! broker acknowledged the record, or fails once the deadline passes.
//! Invariant: `Ok` means the record is durably on the topic (as far as the cluster's
//! replication makes anything durable).

use crate::config::{IngestConfig, KafkaConfig};
use crate::metrics::metrics;
use crate::runtime::client;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::time::{Duration, Instant};

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker did not acknowledge in time or is unreachable: retry later (HTTP 503).
    #[error("kafka unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the record itself (too large, no such topic): retrying will not help.
    #[error("kafka refused the record: {0}")]
    Refused(String),
}

impl PublishError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, PublishError::Unavailable(_))
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A producer shared by all requests of an ingest replica.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer,
    timeout: Duration,
}

impl KafkaPublisher {
    pub fn new(kafka: &KafkaConfig, ingest: &IngestConfig) -> Result<Self, KafkaError> {
        let mut config = client::producer(kafka, ingest.linger_ms);
        config.set("message.timeout.ms", ingest.produce_timeout_ms.to_string());
        Ok(Self {
            producer: config.create()?,
            timeout: Duration::from_millis(ingest.produce_timeout_ms),
        })
    }

    /// Publishes one record and waits for the broker's acknowledgement.
    pub async fn publish(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: &[u8],
    ) -> Result<Delivered, PublishError> {
        let started = Instant::now();
        let mut record = FutureRecord::to(topic).key(key).payload(value);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let send = self.producer.send(record, Timeout::After(self.timeout));
        let result = match tokio::time::timeout(self.timeout + Duration::from_millis(500), send).await {
            Err(_) => Err(PublishError::Unavailable(format!(
                "no acknowledgement within {:?}",
                self.timeout
            ))),
            Ok(Ok(delivery)) => Ok(Delivered {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((error, _))) => Err(classify(error)),
        };
        let m = metrics();
        match &result {
            Ok(_) => m
                .ingest_produce_duration
                .with_label_values(&[topic])
                .observe(started.elapsed().as_secs_f64()),
            Err(e) => m
                .ingest_produce_errors
                .with_label_values(&[if e.is_retriable() { "unavailable" } else { "refused" }])
                .inc(),
        }
        result
    }

    /// Whether the cluster answers a metadata request within `timeout`.
    pub fn is_reachable(&self, timeout: Duration) -> bool {
        self.producer.client().fetch_metadata(None, timeout).is_ok()
    }

    /// Sends everything still queued (graceful shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

fn classify(error: KafkaError) -> PublishError {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match error.rdkafka_error_code() {
        Some(
            Code::MessageSizeTooLarge
            | Code::UnknownTopicOrPartition
            | Code::UnknownTopic
            | Code::InvalidRecord
            | Code::TopicAuthorizationFailed,
        ) => PublishError::Refused(error.to_string()),
        _ => PublishError::Unavailable(error.to_string()),
    }
}
