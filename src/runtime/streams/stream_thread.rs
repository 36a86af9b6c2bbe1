//! The stream thread, as Kafka Streams' `StreamThread`: joins the application's consumer
//! group, polls the source topics of every sub-topology it runs (the credit check, and
//! the seed bridge when asked), hands records to their tasks, and lets the task manager
//! process and commit them, all in one transaction per commit; every failure goes through
//! the task manager's recovery.
//!
//! Membership: the group uses librdkafka's `cooperative-sticky` assignor on one leader
//! topic, the credit check's orders; the task manager assigns each leader partition's
//! followers itself, the seed bridge's beside the credit check's (see `assignment`), so a
//! rebalance moves only the tasks that change hands and the inputs of a task are always
//! read together. A replica that stops leaves the group at once, so its tasks move
//! without waiting for its session to expire.

use super::assignment;
use super::error::StreamsError;
use super::input_lag::ConsumerLag;
use super::process_id;
use super::rebalance::{lock, RebalanceListener};
use super::record_collector::{RecordCollector, KAFKA_CALL_TIMEOUT};
use super::recovery::{set_state, ThreadState};
use super::task::now_ms;
use super::task_manager::TaskManager;
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::metrics::metrics;
use crate::runtime::lag::consumer_lag;
use crate::runtime::rocks_store::StoreResources;
use crate::runtime::{activity, client};
use crate::shutdown::Shutdown;
use crate::topology::codec::RawRecord;
use crate::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use crate::topology::output::Routed;
use crate::topology::processor::{Processor, RecordMeta};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Records polled into one batch at most before they are processed.
const MAX_POLL_BATCH: usize = 5_000;
/// How often lag and store sizes are looked at again (the topics' partition counts are the
/// topic watch's, off this thread).
const HOUSEKEEPING: Duration = Duration::from_secs(10);

type GroupConsumer<P> = BaseConsumer<RebalanceListener<P>>;

/// This replica's id: `processor.replica_id`, else the process id kept in the state
/// directory, so it is unique per replica and stable across its restarts (see
/// [`process_id`]). Resolved once, before the stream threads start.
pub fn replica_id(cfg: &ProcessorConfig) -> Result<String, StreamsError> {
    if cfg.replica_id.is_empty() {
        process_id::load_or_create(&cfg.state_dir)
    } else {
        Ok(cfg.replica_id.clone())
    }
}

/// The name of stream thread `thread`: its OS thread, its metrics' label, the last part of
/// its transactional id.
pub fn thread_name(thread: usize) -> String {
    format!("stream-thread-{thread}")
}

/// A stream thread's transactional id, also its consumer's client id:
/// `<application>-<replica id>-stream-thread-<n>`.
pub fn transactional_id(def: &TopologyDefinition, replica_id: &str, thread: usize) -> String {
    format!("{}-{replica_id}-{}", def.application_id, thread_name(thread))
}

/// Runs stream thread `thread` of the replica until `shutdown`; blocking (call it on its
/// own thread). `cfg.replica_id` is the replica's resolved id (see [`replica_id`]).
pub fn run<P>(
    kafka: KafkaConfig,
    cfg: ProcessorConfig,
    def: TopologyDefinition,
    processor: P,
    resources: StoreResources,
    thread: usize,
    shutdown: Shutdown,
) -> Result<(), StreamsError>
where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    let transactional_id = transactional_id(&def, &cfg.replica_id, thread);
    let collector = RecordCollector::new(&kafka, &def, &cfg, &transactional_id)?;
    info!(
        transactional_id,
        guarantee = def.processing_guarantee.as_str(),
        "stream thread starting"
    );
    let exactly_once = def.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
    let mut consumer_config = client::consumer(&kafka, &def.application_id, exactly_once);
    let session = cfg.session_timeout_ms.max(1000);
    consumer_config
        .set("client.id", &transactional_id)
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 10).max(100).to_string());
    let tasks = Arc::new(Mutex::new(TaskManager::new(
        def.clone(),
        kafka,
        cfg,
        collector,
        processor,
        resources,
        thread,
    )?));
    let consumer: GroupConsumer<P> = consumer_config.create_with_context(RebalanceListener::new(tasks.clone()))?;
    if !wait_for_topics(&consumer, &def, &shutdown)? {
        return Ok(());
    }
    let leaders = assignment::subscription(&def);
    let names: Vec<&str> = leaders.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    set_state(thread, ThreadState::Running);

    let result = stream_loop(&consumer, &tasks, &def, &shutdown);
    // Graceful: commit what was processed, then leave the group (the revoke callback
    // commits too). After a fatal failure the open work was abandoned.
    let result = result.and_then(|()| lock(&tasks).process_and_commit(&consumer));
    if let Err(error) = &result {
        set_state(thread, ThreadState::Failed);
        warn!(%error, "stream thread stopping on an error; nothing uncommitted was kept");
    }
    leave_group(&consumer);
    info!(transactional_id, "stream thread stopped");
    result
}

/// Waits until every topic of the topology exists, and checks that each has the
/// topology's partition count. `Ok(false)` if shutdown came first.
fn wait_for_topics<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    def: &TopologyDefinition,
    shutdown: &Shutdown,
) -> Result<bool, StreamsError> {
    let mut warned = false;
    while !shutdown.is_requested() {
        match assignment::verify_partition_counts(consumer, def, KAFKA_CALL_TIMEOUT, || false) {
            Ok(None) => return Ok(true),
            Ok(Some(topic)) => {
                if !warned {
                    warn!(
                        topic,
                        "waiting for the topology's topics (create them with `creditstream topics`)"
                    );
                    warned = true;
                }
            }
            Err(error) if error.is_retriable() => warn!(%error, "cannot read the topics' metadata; retrying"),
            Err(error) => return Err(error),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(false)
}

/// Leaves the group at once: unsubscribing revokes (and commits) every task and sends
/// the group a leave, so the other replicas take the tasks over without waiting for this
/// one's session to expire.
fn leave_group<P>(consumer: &GroupConsumer<P>)
where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    let _call = activity::enter("leave_group");
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer.assignment().map_or(true, |a| a.count() == 0) {
            break;
        }
    }
    if let Some(error) = consumer.context().take_failure() {
        warn!(%error, "leaving the group");
    }
}

/// Polls one batch of at most [`MAX_POLL_BATCH`] records, waiting at most `wait` for the
/// first. A consumer error no retry can cure (the group refused the session timeout, an
/// authorization error) is returned; others are logged, and librdkafka retries.
fn poll_batch<P>(
    consumer: &GroupConsumer<P>,
    def: &TopologyDefinition,
    wait: Duration,
    batch: &mut Vec<RawRecord>,
) -> Result<(), StreamsError>
where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    let _call = activity::enter("poll");
    let mut timeout = client::whole_millis(wait);
    while batch.len() < MAX_POLL_BATCH {
        match consumer.poll(timeout) {
            Some(Ok(message)) => {
                let Some(topic) = def.input_named(message.topic()) else {
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
                let error = StreamsError::from(error);
                if !error.is_retriable() {
                    return Err(error);
                }
                warn!(%error, "consumer error");
                break;
            }
            None => break,
        }
    }
    Ok(())
}

fn stream_loop<P>(
    consumer: &GroupConsumer<P>,
    tasks: &Arc<Mutex<TaskManager<P>>>,
    def: &TopologyDefinition,
    shutdown: &Shutdown,
) -> Result<(), StreamsError>
where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    let mut batch: Vec<RawRecord> = Vec::with_capacity(MAX_POLL_BATCH);
    let mut last_housekeeping = Instant::now();
    while !shutdown.is_requested() {
        let (epoch, wait) = {
            let mut t = lock(tasks);
            if let Some(error) = consumer.context().take_failure() {
                t.fail(error)?;
            }
            if let Err(error) = t.handle_updater_events(consumer) {
                t.fail(error)?;
            }
            t.retry_recovery(consumer, shutdown)?;
            t.learn_start_offsets(consumer);
            (t.epoch, t.poll_wait())
        };
        // Poll without holding the task manager: rebalance callbacks run inside poll and lock it.
        let polled = poll_batch(consumer, def, wait, &mut batch);
        let backlog = batch.len() >= MAX_POLL_BATCH;
        let mut t = lock(tasks);
        if let Err(error) = polled {
            t.fail(error)?;
        }
        if t.epoch != epoch {
            // A failure happened while polling: the batch may hold records past what is
            // committed, which the rewind fetches again.
            batch.clear();
        }
        for record in batch.drain(..) {
            t.buffer(record);
        }
        let mut lag = ConsumerLag::new(consumer, def);
        if let Err(error) = t.process_buffered(&mut lag).and_then(|()| t.punctuate(&mut lag)) {
            t.fail(error)?;
        }
        if let Err(error) = t.sync_paused(consumer) {
            t.fail(error)?;
        }
        if t.commit_due(backlog) {
            if let Err(error) = t.commit(consumer) {
                t.fail(error)?;
            }
        } else {
            t.tick_idle();
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING {
            last_housekeeping = Instant::now();
            t.update_store_metrics();
            t.log_tasks(consumer);
            t.watch_inputs(consumer);
            drop(t);
            update_lag(consumer);
        }
    }
    Ok(())
}

fn update_lag<C: ConsumerContext + 'static>(consumer: &BaseConsumer<C>) {
    for (topic, partition, lag) in consumer_lag(consumer) {
        metrics()
            .processor_lag
            .with_label_values(&[topic.as_str(), &partition.to_string()])
            .set(lag);
    }
}
