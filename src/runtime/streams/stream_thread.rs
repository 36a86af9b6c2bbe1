//! The stream thread, as Kafka Streams' `StreamThread`: joins the application's consumer
//! group, polls the source topics of every sub-topology it runs (the credit check, and
//! the seed bridge when asked), hands records to their tasks, and lets the task manager
//! process and commit them, all in one transaction per commit; every failure goes through
//! the task manager's recovery.
//!
//! Partition assignment uses the `range` assignor: with equal partition counts it gives
//! partition p of both source topics of a sub-topology to the same replica, which the join
//! needs.
//! (`cooperative-sticky` balances partitions without regard to co-partitioning; Kafka
//! Streams uses its own assignor for the same reason.)

use super::error::StreamsError;
use super::process_id;
use super::rebalance::{lock, RebalanceListener};
use super::record_collector::RecordCollector;
use super::task::now_ms;
use super::task_manager::{set_state, TaskManager, ThreadState};
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::metrics::metrics;
use crate::runtime::client;
use crate::runtime::lag::consumer_lag;
use crate::shutdown::Shutdown;
use crate::topology::codec::{InputTopic, RawRecord};
use crate::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use crate::topology::output::Routed;
use crate::topology::processor::{Processor, RecordMeta};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Records polled into one batch at most before they are processed.
const MAX_POLL_BATCH: usize = 5_000;
/// How often lag and store sizes are refreshed.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

type GroupConsumer<P> = BaseConsumer<RebalanceListener<P>>;

/// This replica's transactional id: `<application>-<replica id or process id>-<thread>`.
/// The process id lives in the state directory, so it is unique per replica and stable
/// across its restarts (see [`process_id`]).
pub fn transactional_id(def: &TopologyDefinition, cfg: &ProcessorConfig, role: &str) -> Result<String, StreamsError> {
    let id = if cfg.replica_id.is_empty() {
        process_id::load_or_create(&cfg.state_dir)?
    } else {
        cfg.replica_id.clone()
    };
    Ok(format!("{}-{id}-{role}", def.application_id))
}

/// Runs the stream thread until `shutdown`; blocking (call it on its own thread).
pub fn run<P>(
    kafka: KafkaConfig,
    cfg: ProcessorConfig,
    def: TopologyDefinition,
    processor: P,
    shutdown: Shutdown,
) -> Result<(), StreamsError>
where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| StreamsError::StateDir(format!("{}: {e}", cfg.state_dir.display())))?;
    let transactional_id = transactional_id(&def, &cfg, "stream-thread-0")?;
    let collector = RecordCollector::new(&kafka, &def, &cfg, &transactional_id)?;
    info!(
        transactional_id,
        guarantee = def.processing_guarantee.as_str(),
        "processor starting"
    );
    let exactly_once = def.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
    let mut consumer_config = client::consumer(&kafka, &def.application_id, exactly_once);
    consumer_config.set("partition.assignment.strategy", "range");
    let sources: Vec<(String, InputTopic)> = def
        .subtopologies(cfg.run_seed_bridge)
        .into_iter()
        .flat_map(|s| s.sources())
        .map(|topic| (def.input_name(topic).to_string(), topic))
        .collect();
    let tasks = Arc::new(Mutex::new(TaskManager::new(def, kafka, cfg, collector, processor)));
    let consumer: GroupConsumer<P> = consumer_config.create_with_context(RebalanceListener::new(tasks.clone()))?;
    let names: Vec<&str> = sources.iter().map(|(name, _)| name.as_str()).collect();
    consumer.subscribe(&names)?;
    set_state(ThreadState::Running);

    let result = stream_loop(&consumer, &tasks, &sources, &shutdown);
    // Graceful: commit what was processed, then leave the group (the revoke callback
    // commits too). After a failure the open work was abandoned and nothing is committed.
    let result = result.and_then(|()| lock(&tasks).process_and_commit(&consumer));
    if let Err(error) = &result {
        set_state(ThreadState::Failed);
        warn!(%error, "processor stopping on an error; nothing uncommitted was kept");
    }
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::from_millis(100));
    info!("processor stopped");
    result
}

/// Polls one batch of at most [`MAX_POLL_BATCH`] records, waiting at most `wait` for the first.
fn poll_batch<P>(
    consumer: &GroupConsumer<P>,
    sources: &[(String, InputTopic)],
    wait: Duration,
    batch: &mut Vec<RawRecord>,
) where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    let mut timeout = wait;
    while batch.len() < MAX_POLL_BATCH {
        match consumer.poll(timeout) {
            Some(Ok(message)) => {
                let Some(&(_, topic)) = sources.iter().find(|(name, _)| name == message.topic()) else {
                    continue;
                };
                batch.push(RawRecord {
                    topic,
                    meta: RecordMeta {
                        partition: message.partition() as u32,
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis().unwrap_or_else(now_ms),
                    },
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                });
                timeout = Duration::ZERO;
            }
            Some(Err(error)) => {
                warn!(%error, "consumer error");
                break;
            }
            None => break,
        }
    }
}

fn stream_loop<P>(
    consumer: &GroupConsumer<P>,
    tasks: &Arc<Mutex<TaskManager<P>>>,
    sources: &[(String, InputTopic)],
    shutdown: &Shutdown,
) -> Result<(), StreamsError>
where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    let mut batch: Vec<RawRecord> = Vec::with_capacity(MAX_POLL_BATCH);
    let mut last_housekeeping = Instant::now();
    while !shutdown.is_requested() {
        if let Some(error) = consumer.context().take_failure() {
            lock(tasks).recover(consumer, error, shutdown)?;
        }
        lock(tasks).retry_recovery(consumer, shutdown)?;
        let (epoch, wait) = {
            let t = lock(tasks);
            (t.epoch, t.poll_wait())
        };
        // Poll without holding the task manager: rebalance callbacks run inside poll and lock it.
        poll_batch(consumer, sources, wait, &mut batch);
        let backlog = batch.len() >= MAX_POLL_BATCH;
        let mut t = lock(tasks);
        if t.epoch != epoch {
            // A rebalance or rollback happened while polling. The batch may hold records
            // polled after it, which the consumer would not fetch again: drop them and
            // rewind to the committed offsets, so everything uncommitted is fetched again.
            // With a transaction still open a failure is pending, and its rollback rewinds.
            batch.clear();
            if !t.collector.is_open() {
                if let Err(error) = t.rewind_to_committed(consumer) {
                    t.recover(consumer, error, shutdown)?;
                }
            }
        }
        for record in batch.drain(..) {
            t.buffer(record);
        }
        t.update_catch_up(consumer);
        if let Err(error) = t.process_buffered() {
            t.recover(consumer, error, shutdown)?;
        }
        if t.commit_due(backlog) {
            if let Err(error) = t.commit(consumer) {
                t.recover(consumer, error, shutdown)?;
            }
        } else {
            t.tick_idle();
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING {
            last_housekeeping = Instant::now();
            t.update_store_metrics();
            drop(t);
            update_lag(consumer);
        }
    }
    Ok(())
}

fn update_lag<C: rdkafka::consumer::ConsumerContext + 'static>(consumer: &BaseConsumer<C>) {
    for (topic, partition, lag) in consumer_lag(consumer) {
        metrics()
            .processor_lag
            .with_label_values(&[topic.as_str(), &partition.to_string()])
            .set(lag);
    }
}
