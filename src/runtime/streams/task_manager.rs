//! The task manager, as Kafka Streams' `TaskManager`: the tasks of one stream thread,
//! created on assignment (restored first), closed on revocation, committed together in
//! one transaction, and closed dirty after any failure.
//!
//! Invariants:
//! - One commit covers every task: outputs, changelog records and consumed offsets go out
//!   in one Kafka transaction; the stores are written only after it committed, each with
//!   the changelog offset it corresponds to.
//! - After any failure of the open work (an abort, a replaced producer, a commit whose
//!   outcome is unknown, a lost assignment) no task keeps anything in memory: every task
//!   is closed dirty and restored from the committed changelog, and every input is
//!   fetched again from the committed offsets. The broker's word decides what happened,
//!   never the task's guess.
//! - A failed record is never committed: its error aborts the open transaction before
//!   anything else can commit it.

use super::catch_up;
use super::changelog_reader;
use super::commit_policy::{CommitPolicy, CommitState};
use super::error::StreamsError;
use super::faults::Faults;
use super::record_collector::{RecordCollector, KAFKA_CALL_TIMEOUT};
use super::task::{now_ms, PendingMetrics, Scratch, Task};
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::metrics::metrics;
use crate::runtime::client;
use crate::runtime::rocks_store::StoreResources;
use crate::shutdown::Shutdown;
use crate::topology::codec::{InputTopic, RawRecord};
use crate::topology::definition::TopologyDefinition;
use crate::topology::output::{Observation, Routed};
use crate::topology::processor::{Processor, Progress};
use crate::topology::task_id::{SubTopology, TaskId};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The replica's health, as `/readyz` and `creditstream_processor_state` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadState {
    Running = 0,
    /// Rolling back and retrying after a retriable failure.
    Recovering = 1,
    /// Stopped on a fatal error.
    Failed = 2,
}

pub fn set_state(state: ThreadState) {
    metrics().processor_state.set(state as i64);
}

/// A rollback that failed, to be tried again from the stream loop.
struct PendingRecovery {
    cause: StreamsError,
    at: Instant,
}

pub struct TaskManager<P: Processor> {
    def: TopologyDefinition,
    kafka: KafkaConfig,
    cfg: ProcessorConfig,
    resources: StoreResources,
    policy: CommitPolicy,
    pub collector: RecordCollector,
    tasks: BTreeMap<TaskId, Task>,
    processed_since_commit: usize,
    /// A record's part was done: commit now, so its next part can follow.
    part_done: bool,
    last_commit: Instant,
    /// Bumped by every rebalance and rollback: a batch polled under an older epoch is stale.
    pub epoch: u64,
    pending: PendingMetrics,
    /// Set while a failed rollback waits for its retry; no task is open meanwhile.
    pending_recovery: Option<PendingRecovery>,
    /// The wait before the last retry of a failed rollback: doubles while rollbacks keep
    /// failing (200 ms to 5 s), zero once one succeeds.
    recovery_backoff: Duration,
    processor: P,
    scratch: Scratch<P::Output>,
    faults: Faults,
}

impl<P> TaskManager<P>
where
    P: Processor<Input = RawRecord>,
    P::Output: Routed,
{
    pub fn new(
        def: TopologyDefinition,
        kafka: KafkaConfig,
        cfg: ProcessorConfig,
        collector: RecordCollector,
        processor: P,
    ) -> Self {
        let policy = CommitPolicy {
            interval: Duration::from_millis(cfg.commit_interval_ms),
            caught_up: Duration::from_millis(if collector.exactly_once() {
                cfg.commit_min_interval_ms
            } else {
                cfg.commit_interval_ms
            }),
            max_records: cfg.commit_max_records,
        };
        Self {
            resources: StoreResources::new(cfg.block_cache_mb, cfg.write_buffer_mb),
            policy,
            collector,
            tasks: BTreeMap::new(),
            processed_since_commit: 0,
            part_done: false,
            last_commit: Instant::now(),
            epoch: 0,
            pending: PendingMetrics::default(),
            pending_recovery: None,
            recovery_backoff: Duration::ZERO,
            processor,
            scratch: Scratch::default(),
            faults: Faults::from_env(),
            def,
            kafka,
            cfg,
        }
    }

    /// The tasks that read the partitions in `tpl`, sorted, once each.
    pub fn tasks_of(&self, tpl: &TopicPartitionList) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = tpl
            .elements()
            .iter()
            .filter_map(|e| {
                let topic = self.def.input_named(e.topic())?;
                Some(TaskId::of(topic, e.partition() as u32))
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn store_path(&self, partition: u32) -> PathBuf {
        self.cfg
            .state_dir
            .join(&self.def.application_id)
            .join(partition.to_string())
    }

    /// Hands a polled record to its task; a record of a partition without a task (its
    /// task was closed while the batch was polled) is dropped and fetched again later.
    pub fn buffer(&mut self, record: RawRecord) {
        let id = TaskId::of(record.topic, record.meta.partition);
        match self.tasks.get_mut(&id) {
            Some(task) => task.buffer(record),
            None => debug!(task = %id, "record for a task that is not open; dropped"),
        }
    }

    /// Processes everything buffered in every task.
    pub fn process_buffered(&mut self) -> Result<(), StreamsError> {
        let partition_count = self.def.partitions;
        for task in self.tasks.values_mut() {
            let (processed, progress) = task.process_buffered(
                &mut self.processor,
                &mut self.collector,
                partition_count,
                &mut self.scratch,
                &mut self.pending,
                &self.faults,
            )?;
            self.processed_since_commit += processed;
            self.part_done |= progress == Progress::Partial;
        }
        self.collector.poll();
        Ok(())
    }

    /// Processes what is buffered, then commits it; on a failure of either nothing is
    /// committed and the open work is abandoned. Used where a commit must happen now
    /// (revocation, shutdown).
    pub fn process_and_commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), StreamsError> {
        let result = self.process_buffered().and_then(|()| self.commit(consumer));
        if let Err(error) = &result {
            let _ = self.abandon(error);
        }
        result
    }

    pub fn commit_due(&self, backlog: bool) -> bool {
        (self.part_done && self.collector.is_open())
            || self.policy.due(&CommitState {
                open: self.collector.is_open(),
                processed: self.processed_since_commit,
                since_commit: self.last_commit.elapsed(),
                backlog,
            })
    }

    /// How long the next poll may wait before a commit could become due.
    pub fn poll_wait(&self) -> Duration {
        if self.tasks.values().any(Task::has_partial) {
            return Duration::ZERO;
        }
        if let Some(pending) = &self.pending_recovery {
            return pending
                .at
                .saturating_duration_since(Instant::now())
                .min(self.policy.interval);
        }
        self.policy
            .poll_wait(self.collector.is_open(), self.last_commit.elapsed())
    }

    /// Restarts the commit clock of an idle replica (nothing open), so that an idle poll
    /// waits a whole interval.
    pub fn tick_idle(&mut self) {
        if !self.collector.is_open() && self.last_commit.elapsed() >= self.policy.interval {
            self.last_commit = Instant::now();
        }
    }

    fn consumed_offsets(&self) -> Result<TopicPartitionList, StreamsError> {
        let mut tpl = TopicPartitionList::new();
        for task in self.tasks.values() {
            for (topic, next) in task.positions() {
                tpl.add_partition_offset(
                    self.def.input_name(topic),
                    task.id.partition as i32,
                    Offset::Offset(next),
                )?;
            }
        }
        Ok(tpl)
    }

    /// Commits the open work of every task. On failure nothing is assumed: the caller
    /// recovers (which rolls back and restores).
    pub fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), StreamsError> {
        self.last_commit = Instant::now();
        if !self.collector.is_open() {
            return Ok(());
        }
        let started = Instant::now();
        let offsets = self.consumed_offsets()?;
        if self.collector.exactly_once() {
            self.collector
                .commit(&offsets, consumer.group_metadata(), &self.faults)?;
            let changelog = self.collector.take_changelog_offsets();
            for task in self.tasks.values_mut() {
                let next = changelog.get(&(task.id.partition as i32)).map(|last| last + 1);
                task.commit_store(next)?;
            }
        } else {
            self.collector.commit(&offsets, None, &self.faults)?;
            // At-least-once: the store before the offsets, so a crash repeats work, never skips it.
            for task in self.tasks.values_mut() {
                task.commit_store(None)?;
            }
            if offsets.count() > 0 {
                consumer.commit(&offsets, CommitMode::Sync)?;
            }
        }
        self.processed_since_commit = 0;
        self.part_done = false;
        self.report_committed(started);
        Ok(())
    }

    fn report_committed(&mut self, started: Instant) {
        let m = metrics();
        m.commit_duration.observe(started.elapsed().as_secs_f64());
        let now = now_ms();
        let pending = std::mem::take(&mut self.pending);
        for observation in pending.observations {
            match observation {
                Observation::Nothing => {}
                Observation::Decision { status, event_time_ms } => {
                    m.decisions.with_label_values(&[status]).inc();
                    m.end_to_end_latency
                        .observe(((now - event_time_ms).max(0) as f64) / 1000.0);
                }
                Observation::DeadLetter { reason } => m.dead_letters.with_label_values(&[reason]).inc(),
            }
        }
        for topic in InputTopic::ALL {
            let consumed = pending.consumed[topic.index()];
            if consumed > 0 {
                m.records_consumed.with_label_values(&[topic.as_str()]).inc_by(consumed);
            }
        }
    }

    /// Abandons the open work: the transaction is aborted (or its producer replaced), and
    /// every task is closed dirty, taking its buffered records and uncommitted writes.
    pub fn abandon(&mut self, cause: &StreamsError) -> Result<(), StreamsError> {
        self.epoch += 1;
        self.pending = PendingMetrics::default();
        self.processed_since_commit = 0;
        self.part_done = false;
        let dirty: Vec<TaskId> = self.tasks.keys().copied().collect();
        self.close_tasks(&dirty);
        self.collector.abandon(cause)
    }

    /// Rolls back to the last commit: abandons the open work, restores every assigned task
    /// from the committed changelog, and rewinds the inputs to the committed offsets.
    fn rollback<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        cause: &StreamsError,
    ) -> Result<(), StreamsError> {
        metrics().transactions_aborted.inc();
        self.abandon(cause)?;
        let assigned = self.tasks_of(&consumer.assignment()?);
        self.open_tasks(consumer, &assigned)?;
        self.rewind_to_committed(consumer)
    }

    /// After a failure: a fatal one abandons the open work and is returned; a retriable
    /// one rolls back. If the rollback fails too (the broker is still away), every task
    /// stays closed and the attempt is repeated from the stream loop after a backoff
    /// ([`Self::retry_recovery`]): the loop keeps polling meanwhile, because a consumer
    /// that is not polled cannot rejoin its group, and without the group the committed
    /// offsets a rollback needs cannot be read.
    pub fn recover<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: StreamsError,
        shutdown: &Shutdown,
    ) -> Result<(), StreamsError> {
        if !error.is_retriable() {
            let _ = self.abandon(&error);
            set_state(ThreadState::Failed);
            return Err(error);
        }
        set_state(ThreadState::Recovering);
        warn!(%error, "rolling back to the last commit and restoring from the changelog");
        match self.rollback(consumer, &error) {
            Ok(()) => {
                self.pending_recovery = None;
                self.recovery_backoff = Duration::ZERO;
                set_state(ThreadState::Running);
                Ok(())
            }
            Err(next) if next.is_retriable() && !shutdown.is_requested() => {
                // Nothing may be processed from positions the rollback did not reset.
                let _ = self.abandon(&next);
                let backoff = (self.recovery_backoff * 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
                self.recovery_backoff = backoff;
                warn!(error = %next, retry_in_ms = backoff.as_millis() as u64, "rollback failed; retrying");
                self.pending_recovery = Some(PendingRecovery {
                    cause: next,
                    at: Instant::now() + backoff,
                });
                Ok(())
            }
            Err(next) => {
                let _ = self.abandon(&next);
                set_state(ThreadState::Failed);
                Err(next)
            }
        }
    }

    /// Repeats a failed recovery once its backoff has passed.
    pub fn retry_recovery<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        shutdown: &Shutdown,
    ) -> Result<(), StreamsError> {
        match self.pending_recovery.take() {
            Some(pending) if pending.at <= Instant::now() => self.recover(consumer, pending.cause, shutdown),
            other => {
                self.pending_recovery = other;
                Ok(())
            }
        }
    }

    /// Forgets every buffered record and moves the consumer back to the committed offsets
    /// of every task, so whatever was not committed is fetched again.
    pub fn rewind_to_committed<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), StreamsError> {
        let mut rewind = TopicPartitionList::new();
        for task in self.tasks.values_mut() {
            task.reset_input();
            for topic in task.id.subtopology.sources() {
                rewind.add_partition(self.def.input_name(topic), task.id.partition as i32);
            }
        }
        if rewind.count() == 0 {
            return Ok(());
        }
        Ok(client::seek_to_committed(consumer, rewind, KAFKA_CALL_TIMEOUT)?)
    }

    /// Opens the tasks of `ids` that are not open yet, restoring their stores first; each
    /// new credit-check task first catches up on the user commands already on the broker.
    pub fn open_tasks<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        ids: &[TaskId],
    ) -> Result<(), StreamsError> {
        let stall_after = Duration::from_millis(self.cfg.transaction_timeout_ms * 2 + 30_000);
        let mut opened = Vec::new();
        for &id in ids {
            if self.tasks.contains_key(&id) {
                continue;
            }
            let store = if id.subtopology.has_store() {
                Some(changelog_reader::open_and_restore(
                    &self.kafka,
                    &self.def.store.changelog,
                    id.partition,
                    &self.store_path(id.partition),
                    &self.resources,
                    stall_after,
                )?)
            } else {
                None
            };
            info!(task = %id, "task ready");
            self.tasks.insert(id, Task::new(id, store));
            if id.subtopology == SubTopology::CreditCheck {
                opened.push(id.partition);
            }
        }
        self.report_assignment();
        catch_up::arm(consumer, &self.def.inputs.user_commands, &mut self.tasks, &opened);
        Ok(())
    }

    /// Ends the catch-up of every task that has read its user commands up to the end
    /// noted at assignment, or that waited `commands_catch_up_max_ms`.
    pub fn update_catch_up<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let limit = Duration::from_millis(self.cfg.commands_catch_up_max_ms);
        catch_up::update(consumer, &self.def.inputs.user_commands, &mut self.tasks, limit);
    }

    /// Closes the tasks of `ids`, dropping whatever they hold in memory.
    pub fn close_tasks(&mut self, ids: &[TaskId]) {
        for id in ids {
            if self.tasks.remove(id).is_some() {
                debug!(task = %id, "task closed");
            }
        }
        self.report_assignment();
    }

    /// The topology's partitions this replica owns: its tasks of sub-topology 0 (the seed
    /// bridge's stateless tasks are not counted).
    fn report_assignment(&self) {
        let owned = self
            .tasks
            .keys()
            .filter(|id| id.subtopology == SubTopology::CreditCheck)
            .count();
        metrics().assigned_partitions.set(owned as i64);
    }

    pub fn update_store_metrics(&self) {
        for task in self.tasks.values() {
            let Some(store) = task.store() else {
                continue;
            };
            let (keys, size) = store.estimates();
            let label = task.id.partition.to_string();
            metrics().store_keys.with_label_values(&[&label]).set(keys as i64);
            metrics().store_size.with_label_values(&[&label]).set(size as i64);
        }
    }
}
