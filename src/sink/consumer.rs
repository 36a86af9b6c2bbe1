//! The sink's Kafka side: consumes the decisions and user-changes topics (read_committed,
//! its own group), hands batches to a writer, and commits offsets.
//!
//! The orders topic is not read: an order reaches MySQL only once the processor accepted
//! it, through its decision, which carries everything both of its rows need. One order's
//! events therefore come from one partition of one topic, in order, whoever owns it.
//!
//! Invariant: an offset is committed only after the writer reported the batch durable.
//! While the writer fails with a retriable error the batch is retried with backoff and
//! consumption is paused, but the consumer is still polled, so it stays in its group
//! through a long database outage (records it still hands out wait, in order, behind the
//! batch); a fatal error stops the sink, and so does a Kafka error that says the
//! deployment is wrong. On a rebalance, uncommitted records are simply re-read by the new
//! owner: the writer is idempotent, so a batch written twice changes nothing.

use crate::config::{KafkaConfig, SinkConfig};
use crate::metrics::metrics;
use crate::runtime::client;
use crate::runtime::error_codes::{self, Class};
use crate::runtime::lag::consumer_lag;
use crate::shutdown::Shutdown;
use crate::sink::rebalance::{refused, SinkContext};
use crate::topology::definition::TopologyDefinition;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Which topic a sink record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkTopic {
    Decisions,
    UserChanges,
}

/// One record for the writer.
#[derive(Debug, Clone)]
pub struct SinkRecord {
    pub topic: SinkTopic,
    pub partition: i32,
    pub offset: i64,
    pub value: Option<Vec<u8>>,
}

/// A writer's failure, classified.
pub trait WriteFailure: std::fmt::Display {
    fn is_retriable(&self) -> bool;
}

/// Writes a batch durably (one database transaction) or fails as a whole.
pub trait BatchWriter {
    type Error: WriteFailure;
    fn write<'a>(&'a mut self, batch: &'a [SinkRecord]) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a;
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("fatal write error: {0}")]
    Write(String),
}

type SinkConsumer = StreamConsumer<SinkContext>;

fn sink_topic(def: &TopologyDefinition, name: &str) -> Option<SinkTopic> {
    if name == def.outputs.decisions {
        Some(SinkTopic::Decisions)
    } else if name == def.outputs.user_changes {
        Some(SinkTopic::UserChanges)
    } else {
        None
    }
}

/// Runs until `shutdown`: consume, write, commit.
pub async fn run<W: BatchWriter>(
    kafka: &KafkaConfig,
    cfg: &SinkConfig,
    def: &TopologyDefinition,
    writer: &mut W,
    shutdown: Shutdown,
) -> Result<(), SourceError> {
    let consumer: SinkConsumer = client::consumer(kafka, &cfg.group_id, true).create_with_context(SinkContext)?;
    consumer.subscribe(&[&def.outputs.decisions, &def.outputs.user_changes])?;
    info!(group = cfg.group_id, "sink consuming");
    let linger = Duration::from_millis(cfg.linger_ms);
    let mut batch: Vec<SinkRecord> = Vec::with_capacity(cfg.batch_size);
    let mut last_lag = Instant::now();
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        // Fill a batch: wait for the first record, then up to `linger` for more.
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut stopping = false;
        while batch.len() < cfg.batch_size {
            let wait = match deadline {
                Some(d) => d,
                None => tokio::time::Instant::now() + Duration::from_millis(500),
            };
            tokio::select! {
                _ = &mut stop => { stopping = true; break; }
                _ = tokio::time::sleep_until(wait) => break,
                message = consumer.recv() => {
                    take(def, message, &mut batch)?;
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
                }
            }
        }
        if !batch.is_empty() {
            let mut held = Vec::new();
            write_with_retry(&consumer, def, cfg, writer, &batch, &mut held, &shutdown).await?;
            commit(&consumer, def, &batch);
            batch.clear();
            batch.append(&mut held);
        }
        if last_lag.elapsed() >= Duration::from_secs(10) {
            last_lag = Instant::now();
            update_lag(&consumer);
        }
        if stopping || shutdown.is_requested() {
            info!("sink stopped");
            return Ok(());
        }
    }
}

/// Adds a received record to `into`; a consumer error is logged and counted, or returned
/// when it says the deployment is wrong (no retry can help, so the sink stops).
fn take(
    def: &TopologyDefinition,
    message: Result<BorrowedMessage<'_>, KafkaError>,
    into: &mut Vec<SinkRecord>,
) -> Result<(), SourceError> {
    match message {
        Ok(m) => {
            if let Some(topic) = sink_topic(def, m.topic()) {
                into.push(SinkRecord {
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    value: m.payload().map(<[u8]>::to_vec),
                });
            }
            Ok(())
        }
        Err(error) if error_codes::class_of(&error) == Class::Deployment => {
            metrics().sink_kafka_errors.with_label_values(&["fatal"]).inc();
            Err(error.into())
        }
        Err(error) => {
            metrics().sink_kafka_errors.with_label_values(&["transient"]).inc();
            warn!(%error, "sink consumer error");
            Ok(())
        }
    }
}

/// Writes `batch`, retrying a retriable failure with backoff. Meanwhile consumption is
/// paused, but the consumer is still polled (a consumer not polled for
/// `max.poll.interval.ms` leaves its group); what it still hands out goes to `held`.
#[allow(clippy::too_many_arguments)]
async fn write_with_retry<W: BatchWriter>(
    consumer: &SinkConsumer,
    def: &TopologyDefinition,
    cfg: &SinkConfig,
    writer: &mut W,
    batch: &[SinkRecord],
    held: &mut Vec<SinkRecord>,
    shutdown: &Shutdown,
) -> Result<(), SourceError> {
    let mut backoff = Duration::from_millis(cfg.retry_initial_ms);
    let mut paused: Option<TopicPartitionList> = None;
    loop {
        let started = Instant::now();
        match writer.write(batch).await {
            Ok(()) => {
                let m = metrics();
                m.sink_batch_rows.observe(batch.len() as f64);
                m.sink_batch_duration.observe(started.elapsed().as_secs_f64());
                if let Some(assignment) = paused.take() {
                    pause_or_resume(consumer, &assignment, false);
                    info!("database back; consumption resumed");
                }
                return Ok(());
            }
            Err(error) if error.is_retriable() => {
                metrics().sink_db_errors.with_label_values(&["transient"]).inc();
                metrics().sink_db_retries.inc();
                if paused.is_none() {
                    if let Ok(assignment) = consumer.assignment() {
                        pause_or_resume(consumer, &assignment, true);
                        paused = Some(assignment);
                    }
                }
                warn!(%error, retry_in_ms = backoff.as_millis() as u64, "transient database error; retrying the batch");
                if shutdown.is_requested() && backoff >= Duration::from_millis(cfg.retry_max_ms) {
                    // Shutting down with the database away: nothing was committed, so the
                    // records are re-read next time. Nothing is lost.
                    return Err(SourceError::Write(format!(
                        "shut down while the database was unavailable: {error}"
                    )));
                }
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        message = consumer.recv() => take(def, message, held)?,
                    }
                }
                backoff = (backoff * 2).min(Duration::from_millis(cfg.retry_max_ms));
            }
            Err(error) => {
                metrics().sink_db_errors.with_label_values(&["fatal"]).inc();
                return Err(SourceError::Write(error.to_string()));
            }
        }
    }
}

/// Pauses (or resumes) `partitions`; librdkafka answers for each partition in the list,
/// and a refusal is logged and counted (a partition left paused would never be read).
fn pause_or_resume(consumer: &SinkConsumer, partitions: &TopicPartitionList, pause: bool) {
    let result = if pause {
        consumer.pause(partitions)
    } else {
        consumer.resume(partitions)
    };
    let refused = refused(partitions);
    if result.is_err() || !refused.is_empty() {
        metrics().sink_kafka_errors.with_label_values(&["pause"]).inc();
        warn!(pause, result = ?result.err(), ?refused, "the sink's pause or resume was refused");
    }
}

fn topic_name(def: &TopologyDefinition, topic: SinkTopic) -> &str {
    match topic {
        SinkTopic::Decisions => &def.outputs.decisions,
        SinkTopic::UserChanges => &def.outputs.user_changes,
    }
}

fn commit(consumer: &SinkConsumer, def: &TopologyDefinition, batch: &[SinkRecord]) {
    let mut next: HashMap<(SinkTopic, i32), i64> = HashMap::new();
    for record in batch {
        let entry = next.entry((record.topic, record.partition)).or_insert(0);
        *entry = (*entry).max(record.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        let _ = tpl.add_partition_offset(topic_name(def, topic), partition, Offset::Offset(offset));
    }
    // Asynchronous: a synchronous commit waits on the group coordinator without a bound,
    // inside this async task, and after a broker outage it could wait forever. The rows are
    // written; if the commit is lost, whoever owns the partitions re-reads them idempotently.
    if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
        metrics().sink_kafka_errors.with_label_values(&["commit"]).inc();
        warn!(%error, "offset commit failed (rebalance?); records will be re-read and re-applied idempotently");
    }
}

fn update_lag(consumer: &SinkConsumer) {
    for (topic, partition, lag) in consumer_lag(consumer) {
        metrics()
            .sink_lag
            .with_label_values(&[topic.as_str(), &partition.to_string()])
            .set(lag);
    }
}
