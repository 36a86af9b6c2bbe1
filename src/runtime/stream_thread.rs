//! The processor runtime: one stream thread per replica, in the manner of a Kafka Streams
//! `StreamThread`. It joins the application's consumer group, runs one task per assigned
//! partition number (partition p of both input topics, a RocksDB store, partition p of
//! the changelog) and drives the pure credit-check processor over the records.
//!
//! Invariants:
//! - Under `exactly_once_v2`, outputs, changelog records and consumed offsets of a commit
//!   interval go out in one Kafka transaction; the store's writes reach RocksDB only after
//!   that transaction committed, with the changelog offset they correspond to.
//! - Under `at_least_once`, an offset is committed only after every output and changelog
//!   record before it was acknowledged and the store was written.
//! - After an abort, a fencing or a rebalance, every record fetched but not committed is
//!   dropped and re-read from the committed offsets: nothing is processed twice into a
//!   committed transaction.
//!
//! Partition assignment uses the `range` assignor: with equal partition counts it gives
//! partition p of both input topics to the same replica, which the join needs.
//! (`cooperative-sticky` balances partitions without regard to co-partitioning; Kafka
//! Streams uses its own assignor for the same reason.)

use crate::config::{KafkaConfig, ProcessorConfig};
use crate::metrics::metrics;
use crate::runtime::lag::consumer_lag;
use crate::runtime::rocks_store::{RocksStore, StoreResources};
use crate::runtime::{client, dead_letter};
use crate::shutdown::Shutdown;
use crate::topology::codec::{to_json, InputTopic, RawRecord};
use crate::topology::credit_check::{CreditCheck, CreditOutput, DeadLetter};
use crate::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use crate::topology::partition_group::PartitionGroup;
use crate::topology::partitioner::uid_key;
use crate::topology::processor::{ProcessError, Processor, RecordMeta};
use crate::topology::record::OrderStatus;
use crate::topology::store::{ChangeLoggingStore, StoreChange, StoreError};
use crate::topology::task_context::TaskContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// Longest a Kafka call of the commit path may block.
const KAFKA_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Records polled into one batch at most before they are processed.
const MAX_POLL_BATCH: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The broker or client failed in a way a new producer or a restart may cure.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Local state is unusable; the task cannot go on.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("restore of partition {partition} did not reach the changelog end within {waited:?}")]
    RestoreTimeout { partition: u32, waited: Duration },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Follows delivery reports: failures, and the last offset written to each changelog partition.
struct DeliveryTracker {
    changelog_topic: String,
    failures: AtomicU64,
    changelog_offsets: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) if message.topic() == self.changelog_topic => {
                if let Ok(mut offsets) = self.changelog_offsets.lock() {
                    let entry = offsets.entry(message.partition()).or_insert(-1);
                    *entry = (*entry).max(message.offset());
                }
            }
            Ok(_) => {}
            Err((error, _)) => {
                warn!(%error, "delivery failed");
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

type TrackedProducer = BaseProducer<DeliveryTracker>;

/// One partition's work: the store, buffered input and how far processing got.
struct Task {
    partition: u32,
    store: RocksStore,
    group: PartitionGroup,
    /// Next offset to commit, per input topic (user commands, orders).
    positions: [Option<i64>; 2],
    /// Set while the task catches up on user commands: its orders wait.
    catch_up: Option<CatchUp>,
}

/// The user commands a newly assigned task must see before its first order: those on the
/// broker when it was assigned (up to `commands_end`).
struct CatchUp {
    commands_end: i64,
    since: Instant,
}

impl Task {
    /// The next buffered record to process: while catching up on user commands, only those.
    fn next_record(&mut self) -> Option<RawRecord> {
        if self.catch_up.is_some() {
            self.group.pop_command()
        } else {
            self.group.pop()
        }
    }
}

fn slot(topic: InputTopic) -> usize {
    match topic {
        InputTopic::UserCommands => 0,
        InputTopic::Orders => 1,
    }
}

/// Decisions of the open commit, reported to metrics once it committed.
#[derive(Default)]
struct PendingMetrics {
    decisions: Vec<(OrderStatus, i64)>,
    dead_letters: Vec<&'static str>,
    consumed: [u64; 2],
}

/// Everything the stream thread and its rebalance callbacks share.
struct Engine {
    def: TopologyDefinition,
    kafka: KafkaConfig,
    cfg: ProcessorConfig,
    transactional_id: String,
    resources: StoreResources,
    producer: TrackedProducer,
    tasks: BTreeMap<u32, Task>,
    in_transaction: bool,
    processed_since_commit: usize,
    last_commit: Instant,
    /// Bumped by every rebalance and rollback: a batch polled under an older epoch is stale.
    epoch: u64,
    pending: PendingMetrics,
    processor: CreditCheck,
    outputs: Vec<CreditOutput>,
    changes: Vec<StoreChange>,
}

fn exactly_once(def: &TopologyDefinition) -> bool {
    def.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2
}

fn new_producer(
    engine_def: &TopologyDefinition,
    kafka: &KafkaConfig,
    cfg: &ProcessorConfig,
    transactional_id: &str,
) -> Result<TrackedProducer, RuntimeError> {
    let tracker = DeliveryTracker {
        changelog_topic: engine_def.store.changelog.clone(),
        failures: AtomicU64::new(0),
        changelog_offsets: Mutex::new(HashMap::new()),
    };
    let config = if exactly_once(engine_def) {
        client::transactional_producer(kafka, transactional_id, cfg.transaction_timeout_ms)
    } else {
        client::producer(kafka, 5)
    };
    let producer: TrackedProducer = config.create_with_context(tracker)?;
    if exactly_once(engine_def) {
        producer.init_transactions(KAFKA_CALL_TIMEOUT)?;
    }
    Ok(producer)
}

impl Engine {
    fn topic_name(&self, topic: InputTopic) -> &str {
        match topic {
            InputTopic::UserCommands => &self.def.inputs.user_commands,
            InputTopic::Orders => &self.def.inputs.orders,
        }
    }

    fn store_path(&self, partition: u32) -> PathBuf {
        self.cfg
            .state_dir
            .join(&self.def.application_id)
            .join(partition.to_string())
    }

    /// Sends one record, waiting on a full local queue rather than failing.
    fn send(&self, record: BaseRecord<'_, [u8], [u8]>) -> Result<(), RuntimeError> {
        Ok(client::send_waiting(&self.producer, record)?)
    }

    fn begin_if_needed(&mut self) -> Result<(), RuntimeError> {
        if exactly_once(&self.def) && !self.in_transaction {
            self.producer.begin_transaction()?;
        }
        self.in_transaction = true;
        Ok(())
    }

    fn produce_output(&mut self, partition: u32, output: CreditOutput) -> Result<(), RuntimeError> {
        let partition = partition as i32;
        match output {
            CreditOutput::Decision(decision) => {
                let key = uid_key(decision.uid);
                let value = to_json(&decision);
                self.pending
                    .decisions
                    .push((decision.status, decision.order_timestamp_ms));
                self.send(
                    BaseRecord::to(&self.def.outputs.decisions)
                        .partition(partition)
                        .key(&key[..])
                        .payload(&value[..]),
                )
            }
            CreditOutput::UserChange(change) => {
                let key = change.uid().map(uid_key).unwrap_or_default();
                let value = to_json(&change);
                self.send(
                    BaseRecord::to(&self.def.outputs.user_changes)
                        .partition(partition)
                        .key(&key[..])
                        .payload(&value[..]),
                )
            }
            CreditOutput::DeadLetter(letter) => self.produce_dead_letter(partition, letter),
        }
    }

    fn produce_dead_letter(&mut self, partition: i32, letter: DeadLetter) -> Result<(), RuntimeError> {
        self.pending.dead_letters.push(letter.reason.as_str());
        let headers = dead_letter::headers(
            self.topic_name(letter.source),
            i64::from(letter.meta.partition),
            letter.meta.offset,
            letter.reason.as_str(),
            &letter.detail,
        );
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.def.outputs.dead_letters)
            .partition(partition)
            .headers(headers);
        if let Some(key) = letter.key.as_deref() {
            record = record.key(key);
        }
        if let Some(value) = letter.value.as_deref() {
            record = record.payload(value);
        }
        self.send(record)
    }

    fn produce_changelog(&self, partition: u32, change: &StoreChange) -> Result<(), RuntimeError> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.def.store.changelog)
            .partition(partition as i32)
            .key(&change.key[..]);
        if let Some(value) = change.value.as_deref() {
            record = record.payload(value);
        }
        self.send(record)
    }

    /// Processes everything buffered in every task.
    fn process_buffered(&mut self) -> Result<(), RuntimeError> {
        let partitions: Vec<u32> = self.tasks.keys().copied().collect();
        let partition_count = self.def.partitions;
        for partition in partitions {
            while let Some(record) = self.tasks.get_mut(&partition).and_then(Task::next_record) {
                let Some(task) = self.tasks.get_mut(&partition) else {
                    break;
                };
                let topic_slot = slot(record.topic);
                task.positions[topic_slot] = Some(record.meta.offset + 1);
                self.pending.consumed[topic_slot] += 1;
                let mut outputs = std::mem::take(&mut self.outputs);
                let mut changes = std::mem::take(&mut self.changes);
                {
                    let mut ctx = TaskContext {
                        store: ChangeLoggingStore::new(&mut task.store, &mut changes),
                        outputs: &mut outputs,
                        now_ms: now_ms(),
                        partition,
                        partition_count,
                    };
                    self.processor.process(&mut ctx, record.meta, record)?;
                }
                self.begin_if_needed()?;
                for output in outputs.drain(..) {
                    self.produce_output(partition, output)?;
                }
                for change in changes.drain(..) {
                    self.produce_changelog(partition, &change)?;
                }
                self.outputs = outputs;
                self.changes = changes;
                self.processed_since_commit += 1;
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn consumed_offsets(&self) -> Result<TopicPartitionList, RuntimeError> {
        let mut tpl = TopicPartitionList::new();
        for task in self.tasks.values() {
            for topic in [InputTopic::UserCommands, InputTopic::Orders] {
                if let Some(next) = task.positions[slot(topic)] {
                    tpl.add_partition_offset(self.topic_name(topic), task.partition as i32, Offset::Offset(next))?;
                }
            }
        }
        Ok(tpl)
    }

    /// Whether to commit now. Once the last poll drained the input, after
    /// [`Self::caught_up_interval`], so a decision is visible soon after it is made. While a
    /// backlog is worked off (the last poll filled a whole batch), each commit would stall
    /// processing for its round trips, so commits are spaced by `commit_max_records` records
    /// instead, at most ten intervals apart: throughput when behind, latency when caught up.
    fn commit_due(&self, backlog: bool) -> bool {
        let interval = Duration::from_millis(self.cfg.commit_interval_ms);
        let elapsed = self.last_commit.elapsed();
        self.in_transaction
            && (self.processed_since_commit >= self.cfg.commit_max_records
                || (elapsed >= self.caught_up_interval() && !backlog)
                || elapsed >= interval * 10)
    }

    /// How long a caught-up replica lets a transaction stay open: under exactly_once_v2
    /// decisions are invisible until the commit, so it commits as soon as the input is
    /// drained (at most every `commit_min_interval_ms`); under at_least_once they are
    /// visible once delivered, and commits keep to `commit_interval_ms`.
    fn caught_up_interval(&self) -> Duration {
        Duration::from_millis(if exactly_once(&self.def) {
            self.cfg.commit_min_interval_ms
        } else {
            self.cfg.commit_interval_ms
        })
    }

    /// Commits the open work; on failure rolls back to the last commit and carries on.
    fn commit(&mut self, consumer: &BaseConsumer<RebalanceHandler>) -> Result<(), RuntimeError> {
        self.last_commit = Instant::now();
        if !self.in_transaction {
            return Ok(());
        }
        let started = Instant::now();
        match self.try_commit(consumer) {
            Ok(()) => {
                self.in_transaction = false;
                self.processed_since_commit = 0;
                let changelog_offsets = self
                    .producer
                    .context()
                    .changelog_offsets
                    .lock()
                    .map(|m| m.clone())
                    .unwrap_or_default();
                for task in self.tasks.values_mut() {
                    let next = changelog_offsets.get(&(task.partition as i32)).map(|last| last + 1);
                    task.store.commit(next)?;
                }
                self.report_committed(started);
                Ok(())
            }
            Err(error) => {
                warn!(%error, "commit failed; rolling back to the last committed state");
                self.rollback(consumer, &error)
            }
        }
    }

    fn try_commit(&mut self, consumer: &BaseConsumer<RebalanceHandler>) -> Result<(), RuntimeError> {
        client::flush(&self.producer, KAFKA_CALL_TIMEOUT)?;
        if self.producer.context().failures.swap(0, Ordering::Relaxed) > 0 {
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail).into());
        }
        let offsets = self.consumed_offsets()?;
        if exactly_once(&self.def) {
            if offsets.count() > 0 {
                let group = consumer
                    .group_metadata()
                    .ok_or(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownGroup))?;
                self.producer
                    .send_offsets_to_transaction(&offsets, &group, KAFKA_CALL_TIMEOUT)?;
            }
            self.producer.commit_transaction(KAFKA_CALL_TIMEOUT)?;
        } else if offsets.count() > 0 {
            for task in self.tasks.values_mut() {
                // At-least-once: the store before the offsets, so a crash repeats work, never skips it.
                task.store.commit(None)?;
            }
            consumer.commit(&offsets, CommitMode::Sync)?;
        }
        Ok(())
    }

    fn report_committed(&mut self, started: Instant) {
        let m = metrics();
        m.commit_duration.observe(started.elapsed().as_secs_f64());
        let now = now_ms();
        let pending = std::mem::take(&mut self.pending);
        for (status, order_ts) in pending.decisions {
            m.decisions.with_label_values(&[status.as_str()]).inc();
            m.end_to_end_latency.observe(((now - order_ts).max(0) as f64) / 1000.0);
        }
        for reason in pending.dead_letters {
            m.dead_letters.with_label_values(&[reason]).inc();
        }
        m.records_consumed
            .with_label_values(&["user_commands"])
            .inc_by(pending.consumed[0]);
        m.records_consumed
            .with_label_values(&["orders"])
            .inc_by(pending.consumed[1]);
    }

    /// Abandons the open work: aborts (or replaces) the producer, forgets store writes and
    /// buffered records, and rewinds every task to the committed offsets.
    fn rollback(
        &mut self,
        consumer: &BaseConsumer<RebalanceHandler>,
        cause: &RuntimeError,
    ) -> Result<(), RuntimeError> {
        metrics().transactions_aborted.inc();
        self.epoch += 1;
        self.pending = PendingMetrics::default();
        self.processed_since_commit = 0;
        let abortable = matches!(cause, RuntimeError::Kafka(KafkaError::Transaction(e)) if e.txn_requires_abort());
        if exactly_once(&self.def) && self.in_transaction {
            let aborted = abortable && self.producer.abort_transaction(KAFKA_CALL_TIMEOUT).is_ok();
            if !aborted {
                // Fenced, fatal or timed out: this producer may not be trusted with another
                // transaction (librdkafka lacks KIP-890), so it is replaced.
                warn!("replacing the transactional producer");
                self.producer = new_producer(&self.def, &self.kafka, &self.cfg, &self.transactional_id)?;
            }
        }
        self.in_transaction = false;
        if let Ok(mut offsets) = self.producer.context().changelog_offsets.lock() {
            offsets.clear();
        }
        self.rewind_to_committed(consumer)
    }

    /// Forgets every buffered record and moves the consumer back to the committed offsets
    /// of every task, so whatever was not committed is fetched again.
    fn rewind_to_committed(&mut self, consumer: &BaseConsumer<RebalanceHandler>) -> Result<(), RuntimeError> {
        let mut rewind = TopicPartitionList::new();
        for task in self.tasks.values_mut() {
            task.store.rollback();
            task.group.clear();
            task.positions = [None, None];
            for topic in [&self.def.inputs.user_commands, &self.def.inputs.orders] {
                rewind.add_partition(topic, task.partition as i32);
            }
        }
        if rewind.count() > 0 {
            let mut committed = consumer.committed_offsets(rewind, KAFKA_CALL_TIMEOUT)?;
            for element in committed.elements() {
                if !matches!(element.offset(), Offset::Offset(_)) {
                    debug!(
                        topic = element.topic(),
                        partition = element.partition(),
                        "no committed offset; rewinding to the beginning"
                    );
                }
            }
            let fix: Vec<(String, i32)> = committed
                .elements()
                .iter()
                .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            for (topic, partition) in fix {
                committed.set_partition_offset(&topic, partition, Offset::Beginning)?;
            }
            consumer.seek_partitions(committed, KAFKA_CALL_TIMEOUT)?;
        }
        Ok(())
    }

    /// After a Kafka failure (broker away, producer fenced): rolls back to the last commit,
    /// retrying with backoff until that works or shutdown is requested. Failures of local
    /// state are not Kafka's to cure and are returned.
    fn recover(
        &mut self,
        consumer: &BaseConsumer<RebalanceHandler>,
        error: RuntimeError,
        shutdown: &Shutdown,
    ) -> Result<(), RuntimeError> {
        let mut cause = match error {
            RuntimeError::Kafka(_) => error,
            fatal => return Err(fatal),
        };
        let mut backoff = Duration::from_millis(200);
        loop {
            warn!(error = %cause, "kafka failure; rolling back to the last commit");
            // Reopen any task whose restore failed during a rebalance first, so that the
            // rollback rewinds its partitions too (records fetched meanwhile were dropped).
            let reopened = consumer
                .assignment()
                .map_err(RuntimeError::from)
                .and_then(|assigned| self.open_tasks(&partitions_of(&assigned)))
                .and_then(|()| self.rollback(consumer, &cause));
            match reopened {
                Ok(()) => return Ok(()),
                Err(RuntimeError::Kafka(next)) if !shutdown.is_requested() => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    cause = RuntimeError::Kafka(next);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Opens and restores the stores of newly assigned partitions.
    fn open_tasks(&mut self, partitions: &[u32]) -> Result<(), RuntimeError> {
        for &partition in partitions {
            if self.tasks.contains_key(&partition) {
                continue;
            }
            let started = Instant::now();
            let path = self.store_path(partition);
            let store = open_and_restore(&self.kafka, &self.def, &self.cfg, partition, &path, &self.resources)?;
            metrics().restore_duration.observe(started.elapsed().as_secs_f64());
            info!(
                partition,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "task ready"
            );
            self.tasks.insert(
                partition,
                Task {
                    partition,
                    store,
                    group: PartitionGroup::new(),
                    positions: [None, None],
                    catch_up: None,
                },
            );
        }
        metrics().assigned_partitions.set(self.tasks.len() as i64);
        Ok(())
    }

    /// Marks the newly assigned tasks whose user-commands partition holds commands not yet
    /// processed (committed offset below the end): their orders wait for those commands.
    /// Best effort: if the broker cannot say, the task does not wait.
    fn start_catch_up(&mut self, consumer: &BaseConsumer<RebalanceHandler>, partitions: &[u32]) {
        let topic = self.def.inputs.user_commands.clone();
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&topic, p as i32);
        }
        let committed = match consumer.committed_offsets(tpl, KAFKA_CALL_TIMEOUT) {
            Ok(committed) => committed,
            Err(error) => {
                warn!(%error, "cannot read committed offsets; orders will not wait for user commands");
                return;
            }
        };
        for &p in partitions {
            let Ok((low, high)) = consumer.fetch_watermarks(&topic, p as i32, KAFKA_CALL_TIMEOUT) else {
                continue;
            };
            let start = match committed.find_partition(&topic, p as i32).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => offset.max(low),
                _ => low,
            };
            if let (true, Some(task)) = (start < high, self.tasks.get_mut(&p)) {
                debug!(
                    partition = p,
                    commands = high - start,
                    "catching up on user commands first"
                );
                task.catch_up = Some(CatchUp {
                    commands_end: high,
                    since: Instant::now(),
                });
            }
        }
    }

    /// Ends the catch-up of every task that has polled its user commands up to the end
    /// noted at assignment (the partition group then orders them by timestamp), or that
    /// waited `commands_catch_up_max_ms`.
    fn update_catch_up(&mut self, consumer: &BaseConsumer<RebalanceHandler>) {
        if self.tasks.values().all(|t| t.catch_up.is_none()) {
            return;
        }
        let positions = consumer.position().ok();
        let topic = &self.def.inputs.user_commands;
        let limit = Duration::from_millis(self.cfg.commands_catch_up_max_ms);
        for task in self.tasks.values_mut() {
            let Some(catch_up) = &task.catch_up else {
                continue;
            };
            let polled = positions
                .as_ref()
                .and_then(|tpl| tpl.find_partition(topic, task.partition as i32))
                .and_then(|e| match e.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
            let caught_up = polled.is_some_and(|offset| offset >= catch_up.commands_end);
            if !caught_up && catch_up.since.elapsed() < limit {
                continue;
            }
            if !caught_up {
                warn!(
                    partition = task.partition,
                    waited_ms = catch_up.since.elapsed().as_millis() as u64,
                    "stopped waiting for user commands; orders go ahead"
                );
            }
            task.catch_up = None;
        }
    }

    fn close_tasks(&mut self, partitions: &[u32]) {
        for partition in partitions {
            if let Some(task) = self.tasks.remove(partition) {
                debug!(partition = task.partition, "task closed");
            }
        }
        metrics().assigned_partitions.set(self.tasks.len() as i64);
    }

    fn update_store_metrics(&self) {
        for task in self.tasks.values() {
            let (keys, size) = task.store.estimates();
            let label = task.partition.to_string();
            metrics().store_keys.with_label_values(&[&label]).set(keys as i64);
            metrics().store_size.with_label_values(&[&label]).set(size as i64);
        }
    }
}

/// Opens a task's store and restores it from the changelog, from its checkpoint to the
/// end. A checkpoint outside the changelog's offsets means the local state belongs to
/// another history (the topic was recreated): it is wiped and restored from the start.
fn open_and_restore(
    kafka: &KafkaConfig,
    def: &TopologyDefinition,
    cfg: &ProcessorConfig,
    partition: u32,
    path: &std::path::Path,
    resources: &StoreResources,
) -> Result<RocksStore, RuntimeError> {
    let consumer: BaseConsumer = client::standalone_consumer(kafka, true).create()?;
    let topic = &def.store.changelog;
    let (low, high) = consumer.fetch_watermarks(topic, partition as i32, KAFKA_CALL_TIMEOUT)?;
    let mut store = RocksStore::open(path, resources)?;
    let start = match store.checkpoint()? {
        Some(next) if next >= low && next <= high => next,
        None => low,
        Some(next) => {
            warn!(
                partition,
                checkpoint = next,
                low,
                high,
                "local state does not match the changelog; wiping it"
            );
            drop(store);
            RocksStore::destroy(path)?;
            store = RocksStore::open(path, resources)?;
            low
        }
    };
    if start >= high {
        return Ok(store);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition as i32, Offset::Offset(start))?;
    consumer.assign(&tpl)?;
    let deadline = Duration::from_millis(cfg.transaction_timeout_ms * 2 + 30_000);
    let started = Instant::now();
    let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut position = start;
    let mut restored = 0u64;
    while position < high {
        if started.elapsed() > deadline {
            return Err(RuntimeError::RestoreTimeout {
                partition,
                waited: deadline,
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                if let Some(key) = message.key() {
                    batch.push((key.to_vec(), message.payload().map(<[u8]>::to_vec)));
                }
                position = message.offset() + 1;
            }
            Some(Err(error)) => return Err(error.into()),
            None => {}
        }
        // Aborted records and transaction markers are skipped by read_committed; the
        // position tells how far the log really was read.
        if let Ok(positions) = consumer.position() {
            if let Some(Offset::Offset(p)) = positions.find_partition(topic, partition as i32).map(|e| e.offset()) {
                position = position.max(p);
            }
        }
        if batch.len() >= 10_000 || (position >= high && !batch.is_empty()) {
            restored += batch.len() as u64;
            store.apply_restored(&batch, position)?;
            batch.clear();
        }
    }
    if batch.is_empty() {
        store.apply_restored(&[], position)?;
    }
    metrics().restored_records.inc_by(restored);
    info!(
        partition,
        from = start,
        to = position,
        restored,
        "restored state from the changelog"
    );
    Ok(store)
}

/// The consumer's context: hands rebalances to the engine on the stream thread (librdkafka
/// calls it from inside `poll`, on the thread that polls).
struct RebalanceHandler {
    engine: Arc<Mutex<Engine>>,
    failure: Mutex<Option<RuntimeError>>,
}

impl RebalanceHandler {
    fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail(&self, error: RuntimeError) {
        warn!(%error, "rebalance handling failed");
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(error);
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<u32> {
    let mut partitions: Vec<u32> = tpl.elements().iter().map(|e| e.partition() as u32).collect();
    partitions.sort_unstable();
    partitions.dedup();
    partitions
}

impl ClientContext for RebalanceHandler {}

impl ConsumerContext for RebalanceHandler {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut engine = self.lock();
            engine.epoch += 1;
            let partitions = partitions_of(tpl);
            if consumer.assignment_lost() {
                metrics().rebalances.with_label_values(&["lost"]).inc();
                warn!(?partitions, "assignment lost; abandoning uncommitted work");
                let cause = RuntimeError::Kafka(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownMemberId));
                if let Err(error) = engine.rollback(consumer, &cause) {
                    self.fail(error);
                }
            } else {
                metrics().rebalances.with_label_values(&["revoke"]).inc();
                info!(?partitions, "partitions revoked; committing their work");
                let _ = engine.process_buffered();
                if let Err(error) = engine.commit(consumer) {
                    self.fail(error);
                }
            }
            engine.close_tasks(&partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                metrics().rebalances.with_label_values(&["assign"]).inc();
                let partitions = partitions_of(tpl);
                info!(?partitions, "partitions assigned; restoring state");
                let mut engine = self.lock();
                engine.epoch += 1;
                match engine.open_tasks(&partitions) {
                    Ok(()) => engine.start_catch_up(consumer, &partitions),
                    Err(error) => self.fail(error),
                }
            }
            Rebalance::Error(error) => warn!(%error, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A stable transactional id for this replica: the configured one, or one derived from
/// the state directory, so a replica restarted on its state fences its former self at once.
fn transactional_id(def: &TopologyDefinition, cfg: &ProcessorConfig) -> String {
    if !cfg.replica_id.is_empty() {
        return format!("{}-{}", def.application_id, cfg.replica_id);
    }
    let path = std::fs::canonicalize(&cfg.state_dir).unwrap_or_else(|_| cfg.state_dir.clone());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.to_string_lossy().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}-{:016x}", def.application_id, hash)
}

/// Runs the stream thread until `shutdown`; blocking (call it on its own thread).
pub fn run(
    kafka: KafkaConfig,
    cfg: ProcessorConfig,
    def: TopologyDefinition,
    shutdown: Shutdown,
) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| StoreError(format!("state dir {}: {e}", cfg.state_dir.display())))?;
    let transactional_id = transactional_id(&def, &cfg);
    let producer = new_producer(&def, &kafka, &cfg, &transactional_id)?;
    info!(
        transactional_id,
        guarantee = def.processing_guarantee.as_str(),
        "processor starting"
    );
    let resources = StoreResources::new(cfg.block_cache_mb, cfg.write_buffer_mb);
    let engine = Arc::new(Mutex::new(Engine {
        transactional_id,
        resources,
        producer,
        tasks: BTreeMap::new(),
        in_transaction: false,
        processed_since_commit: 0,
        last_commit: Instant::now(),
        epoch: 0,
        pending: PendingMetrics::default(),
        processor: CreditCheck,
        outputs: Vec::new(),
        changes: Vec::new(),
        def: def.clone(),
        kafka: kafka.clone(),
        cfg: cfg.clone(),
    }));
    let handler = RebalanceHandler {
        engine: engine.clone(),
        failure: Mutex::new(None),
    };
    let mut consumer_config = client::consumer(&kafka, &def.application_id, exactly_once(&def));
    consumer_config.set("partition.assignment.strategy", "range");
    let consumer: BaseConsumer<RebalanceHandler> = consumer_config.create_with_context(handler)?;
    consumer.subscribe(&[&def.inputs.user_commands, &def.inputs.orders])?;

    let result = stream_loop(&consumer, &engine, &shutdown);
    // Graceful: commit what was processed, then leave the group (the revoke callback commits too).
    if result.is_ok() {
        let mut guard = engine.lock().unwrap_or_else(|p| p.into_inner());
        let _ = guard.process_buffered();
        guard.commit(&consumer)?;
    }
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::from_millis(100));
    info!("processor stopped");
    result
}

fn stream_loop(
    consumer: &BaseConsumer<RebalanceHandler>,
    engine: &Arc<Mutex<Engine>>,
    shutdown: &Shutdown,
) -> Result<(), RuntimeError> {
    let mut batch: Vec<RawRecord> = Vec::with_capacity(MAX_POLL_BATCH);
    let mut last_housekeeping = Instant::now();
    while !shutdown.is_requested() {
        if let Some(error) = consumer.context().failure.lock().ok().and_then(|mut f| f.take()) {
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            e.recover(consumer, error, shutdown)?;
        }
        let epoch = engine.lock().map(|e| e.epoch).unwrap_or(0);
        let (wait, topics) = {
            let e = engine.lock().unwrap_or_else(|p| p.into_inner());
            let due_after = if e.in_transaction {
                e.caught_up_interval()
            } else {
                Duration::from_millis(e.cfg.commit_interval_ms)
            };
            let wait = due_after.saturating_sub(e.last_commit.elapsed());
            (
                wait.max(Duration::from_millis(1)),
                (e.def.inputs.user_commands.clone(), e.def.inputs.orders.clone()),
            )
        };
        // Poll without holding the engine: rebalance callbacks run inside poll and lock it.
        let mut timeout = wait;
        while batch.len() < MAX_POLL_BATCH {
            match consumer.poll(timeout) {
                Some(Ok(message)) => {
                    let topic = if message.topic() == topics.0 {
                        InputTopic::UserCommands
                    } else if message.topic() == topics.1 {
                        InputTopic::Orders
                    } else {
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
        let backlog = batch.len() >= MAX_POLL_BATCH;
        let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
        if e.epoch != epoch {
            // A rebalance or rollback happened while polling. The batch may hold records
            // polled after it, which the consumer would not fetch again: drop them and
            // rewind to the committed offsets, so everything uncommitted is fetched again.
            // With a transaction still open a failure is pending, and its rollback rewinds.
            batch.clear();
            if !e.in_transaction {
                if let Err(error) = e.rewind_to_committed(consumer) {
                    e.recover(consumer, error, shutdown)?;
                }
            }
        }
        for record in batch.drain(..) {
            let partition = record.meta.partition;
            match e.tasks.get_mut(&partition) {
                Some(task) => task.group.push(record),
                None => debug!(partition, "record for a partition without a task; dropped"),
            }
        }
        e.update_catch_up(consumer);
        if let Err(error) = e.process_buffered() {
            e.recover(consumer, error, shutdown)?;
        }
        if e.commit_due(backlog)
            || (!e.in_transaction && e.last_commit.elapsed() >= Duration::from_millis(e.cfg.commit_interval_ms))
        {
            if let Err(error) = e.commit(consumer) {
                e.recover(consumer, error, shutdown)?;
            }
        }
        if last_housekeeping.elapsed() >= Duration::from_secs(10) {
            last_housekeeping = Instant::now();
            e.update_store_metrics();
            drop(e);
            update_lag(consumer);
        }
    }
    Ok(())
}

fn update_lag(consumer: &BaseConsumer<RebalanceHandler>) {
    for (topic, partition, lag) in consumer_lag(consumer) {
        metrics()
            .processor_lag
            .with_label_values(&[topic.as_str(), &partition.to_string()])
            .set(lag);
    }
}
