//! The sink's Kafka side: consumes the decisions and user-changes topics (read_committed,
//! its own group), hands batches to a writer, and commits offsets.
//!
//! The orders topic is not read: an order reaches MySQL only once the processor accepted
//! it, through its decision, which carries everything both of its rows need. One order's
//! events therefore come from one partition of one topic, in order, whoever owns it.
//!
//! Invariant: an offset is committed only after the writer reported the batch durable.
//! While the writer fails with a retriable error the batch is retried with backoff and
//! consumption is paused (the records already fetched wait in order); a fatal error stops
//! the sink. On a rebalance, uncommitted records are simply re-read by the new owner: the
//! writer is idempotent, so a batch written twice changes nothing.

use crate::config::{KafkaConfig, SinkConfig};
use crate::metrics::metrics;
use crate::runtime::client;
use crate::runtime::lag::consumer_lag;
use crate::shutdown::Shutdown;
use crate::topology::definition::TopologyDefinition;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
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
    let consumer: StreamConsumer = client::consumer(kafka, &cfg.group_id, true).create()?;
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
                message = consumer.recv() => match message {
                    Ok(m) => {
                        if let Some(topic) = sink_topic(def, m.topic()) {
                            batch.push(SinkRecord { topic, partition: m.partition(), offset: m.offset(), value: m.payload().map(<[u8]>::to_vec) });
                        }
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
                    }
                    Err(error) => warn!(%error, "sink consumer error"),
                },
            }
        }
        if !batch.is_empty() {
            write_with_retry(&consumer, cfg, writer, &batch, &shutdown).await?;
            commit(&consumer, def, &batch);
            batch.clear();
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

async fn write_with_retry<W: BatchWriter>(
    consumer: &StreamConsumer,
    cfg: &SinkConfig,
    writer: &mut W,
    batch: &[SinkRecord],
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
                    let _ = consumer.resume(&assignment);
                    info!("database back; consumption resumed");
                }
                return Ok(());
            }
            Err(error) if error.is_retriable() => {
                metrics().sink_db_errors.with_label_values(&["transient"]).inc();
                metrics().sink_db_retries.inc();
                if paused.is_none() {
                    if let Ok(assignment) = consumer.assignment() {
                        let _ = consumer.pause(&assignment);
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
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(cfg.retry_max_ms));
            }
            Err(error) => {
                metrics().sink_db_errors.with_label_values(&["fatal"]).inc();
                return Err(SourceError::Write(error.to_string()));
            }
        }
    }
}

fn topic_name(def: &TopologyDefinition, topic: SinkTopic) -> &str {
    match topic {
        SinkTopic::Decisions => &def.outputs.decisions,
        SinkTopic::UserChanges => &def.outputs.user_changes,
    }
}

fn commit(consumer: &StreamConsumer, def: &TopologyDefinition, batch: &[SinkRecord]) {
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
        warn!(%error, "offset commit failed (rebalance?); records will be re-read and re-applied idempotently");
    }
}

fn update_lag(consumer: &StreamConsumer) {
    for (topic, partition, lag) in consumer_lag(consumer) {
        metrics()
            .sink_lag
            .with_label_values(&[topic.as_str(), &partition.to_string()])
            .set(lag);
    }
}
