//! The ingest's [`Publish`] port on Kafka: an idempotent producer, acks=all, murmur2
//! placement, batching across concurrent requests through librdkafka's linger. A publish completes only when the
//! broker acknowledged the record, or fails once the deadline passes.
//! Invariant: `Ok` means the record is durably on the topic (as far as the cluster's
//! replication makes anything durable).

use super::ports::{Delivered, Publish, PublishError};
use crate::config::{IngestConfig, KafkaConfig};
use crate::metrics::metrics;
use crate::runtime::client;
use crate::runtime::error_codes::{self, Class};
use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::time::{Duration, Instant};

/// The ingest's producer: creditstream's producer, whose records time out (and answer 503)
/// after `ingest.produce_timeout_ms`. Public so that load generators produce exactly as
/// the ingest does.
pub fn producer_config(kafka: &KafkaConfig, ingest: &IngestConfig) -> rdkafka::ClientConfig {
    let mut config = client::producer(kafka, ingest.linger_ms);
    config.set("message.timeout.ms", ingest.produce_timeout_ms.to_string());
    config
}

/// A producer shared by all requests of an ingest replica.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer,
    timeout: Duration,
    /// For a readiness probe the producer cannot answer (see [`KafkaPublisher::is_reachable`]).
    kafka: KafkaConfig,
}

impl KafkaPublisher {
    pub fn new(kafka: &KafkaConfig, ingest: &IngestConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: producer_config(kafka, ingest).create()?,
            timeout: Duration::from_millis(ingest.produce_timeout_ms),
            kafka: kafka.clone(),
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

    /// Whether the cluster answers a metadata request within `timeout`. The producer asks
    /// the broker it used last, and one that froze answers nothing (one frozen broker of
    /// three made the ingest unready): after half the time a client bootstrapped now asks,
    /// which connects only to brokers that answer.
    pub fn is_reachable(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if self.producer.client().fetch_metadata(None, timeout / 2).is_ok() {
            return true;
        }
        let Ok(fresh) = client::standalone_consumer(&self.kafka, false).create::<BaseConsumer>() else {
            return false;
        };
        fresh
            .fetch_metadata(None, deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Sends everything still queued (graceful shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
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

    fn is_reachable(&self) -> BoxFuture<'_, bool> {
        let producer = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || producer.is_reachable(Duration::from_secs(2)))
                .await
                .unwrap_or(false)
        })
    }
}

fn classify(error: KafkaError) -> PublishError {
    match error_codes::class_of(&error) {
        // No retry of this request can succeed: the record, the topic or the permissions.
        Class::Deployment | Class::Record | Class::UnknownTopic => PublishError::Refused(error.to_string()),
        Class::Transient => PublishError::Unavailable(error.to_string()),
    }
}
