//! The task manager, as Kafka Streams' `TaskManager`: the tasks of one stream thread.
//! Assignments and revocations are incremental: a task that is assigned restores in the
//! state updater while the others keep running; a task that is revoked commits and hands
//! its store back; the tasks that stay are not touched. All running tasks commit together
//! in one transaction.
//!
//! Invariants:
//! - One commit covers every running task: outputs, changelog records and consumed offsets
//!   go out in one Kafka transaction; the stores are written only after it committed, each
//!   with the changelog offset it corresponds to.
//! - After any failure of the open work no task keeps anything uncommitted: the transaction
//!   is aborted and every running task re-reads its inputs from the committed offsets.
//!   When the broker's outcome is unknown (the producer was replaced, a commit did not
//!   answer, the assignment was lost) every store is also restored from the committed
//!   changelog: the broker's word decides what happened, never the task's guess.
//! - A failed record is never committed: its error aborts the open transaction before
//!   anything else can commit it.

use super::assignment;
use super::commit_policy::{CommitPolicy, CommitState};
use super::error::StreamsError;
use super::faults::Faults;
use super::paused_inputs::{InputPartition, PausedInputs};
use super::record_collector::{Abandoned, RecordCollector, KAFKA_CALL_TIMEOUT};
use super::state_updater::{Command, Event, StateUpdater, UpdaterConfig};
use super::task::{now_ms, InputLag, PendingMetrics, Run, Scratch, Task};
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::metrics::metrics;
use crate::runtime::rocks_store::StoreResources;
use crate::runtime::{client, consumer_state};
use crate::shutdown::Shutdown;
use crate::topology::codec::{InputTopic, RawRecord};
use crate::topology::definition::TopologyDefinition;
use crate::topology::output::{Observation, Routed};
use crate::topology::processor::{Processor, Progress};
use crate::topology::task_id::{SubTopology, TaskId};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often each running task's processor does its scheduled work.
const PUNCTUATE_EVERY: Duration = Duration::from_secs(1);

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

/// The rewind a failure left to do, tried from the stream loop until it succeeds.
struct PendingRecovery {
    cause: StreamsError,
    at: Instant,
}

pub struct TaskManager<P: Processor> {
    def: TopologyDefinition,
    cfg: ProcessorConfig,
    subtopologies: Vec<SubTopology>,
    policy: CommitPolicy,
    pub collector: RecordCollector,
    updater: StateUpdater,
    /// The running tasks.
    tasks: BTreeMap<TaskId, Task>,
    /// Tasks whose store the state updater restores, by the ticket of their request.
    restoring: BTreeMap<TaskId, u64>,
    next_ticket: u64,
    paused: PausedInputs,
    processed_since_commit: usize,
    /// A record's part was done: commit now, so its next part can follow.
    part_done: bool,
    last_commit: Instant,
    last_punctuate: Instant,
    /// Bumped by every failure: a batch polled under an older epoch is stale.
    pub epoch: u64,
    pending: PendingMetrics,
    /// Set from a failure until every running task was moved back to its committed offsets;
    /// nothing is processed meanwhile.
    recovery: Option<PendingRecovery>,
    /// The wait before the last retry of a failed rewind: doubles while they keep failing
    /// (200 ms to 5 s), zero once one succeeds.
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
    ) -> Result<Self, StreamsError> {
        let policy = CommitPolicy {
            interval: Duration::from_millis(cfg.commit_interval_ms),
            caught_up: Duration::from_millis(if collector.exactly_once() {
                cfg.commit_min_interval_ms
            } else {
                cfg.commit_interval_ms
            }),
            max_records: cfg.commit_max_records,
        };
        let subtopologies = def.subtopologies(cfg.run_seed_bridge);
        let updater = StateUpdater::start(UpdaterConfig {
            kafka,
            changelog: def.store.changelog.clone(),
            store_root: cfg.state_dir.join(&def.application_id),
            resources: StoreResources::new(cfg.block_cache_mb, cfg.write_buffer_mb),
            standby_copies: cfg.num_standby_replicas,
            group_id: def.application_id.clone(),
            leader_topic: def.input_name(assignment::leader(SubTopology::CreditCheck)).to_string(),
            transactional_id: collector.transactional_id().to_string(),
            transaction_timeout_ms: cfg.transaction_timeout_ms,
            inputs: SubTopology::CreditCheck
                .sources()
                .iter()
                .map(|&t| def.input_name(t).to_string())
                .collect(),
        })?;
        Ok(Self {
            policy,
            collector,
            updater,
            subtopologies,
            tasks: BTreeMap::new(),
            restoring: BTreeMap::new(),
            next_ticket: 0,
            paused: PausedInputs::default(),
            processed_since_commit: 0,
            part_done: false,
            last_commit: Instant::now(),
            last_punctuate: Instant::now(),
            epoch: 0,
            pending: PendingMetrics::default(),
            recovery: None,
            recovery_backoff: Duration::ZERO,
            processor,
            scratch: Scratch::default(),
            faults: Faults::from_env(),
            def,
            cfg,
        })
    }

    pub fn subtopologies(&self) -> &[SubTopology] {
        &self.subtopologies
    }

    /// Takes the group's assignment of `leaders`: every task's partitions are assigned
    /// (leaders with their followers); stateless tasks run at once, stateful ones restore
    /// in the state updater with their inputs paused.
    pub fn assign<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        leaders: &TopicPartitionList,
    ) -> Result<(), StreamsError> {
        let (ids, partitions) = match assignment::tasks_of(&self.def, &self.subtopologies, leaders) {
            Ok(tasks) => tasks,
            Err(error) => {
                // librdkafka waits for the assign call whatever happens; then the replica stops.
                consumer.incremental_assign(leaders)?;
                return Err(error);
            }
        };
        consumer.incremental_assign(&partitions)?;
        if let Some(topic) = assignment::verify_partition_counts(consumer, &self.def, KAFKA_CALL_TIMEOUT)? {
            warn!(topic, "a topic of the topology is missing from the broker's metadata");
        }
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        info!(tasks = ?names, "tasks assigned");
        let mut stateless = Vec::new();
        for id in ids {
            if self.tasks.contains_key(&id) || self.restoring.contains_key(&id) {
                continue;
            }
            if id.subtopology.has_store() {
                self.restore(id, None);
            } else {
                self.start(Task::new(id, None));
                stateless.push(id);
            }
        }
        // Where each input starts is known from here on (the task waits on lag it can see).
        if let Err(error) = self.rewind(consumer, &stateless) {
            self.fail(error)?;
        }
        self.sync_paused(consumer)?;
        self.changed_assignment(consumer);
        Ok(())
    }

    /// Gives up the tasks of the revoked `leaders`: unless the assignment was lost, what
    /// was processed commits first; each store goes back to the state updater.
    pub fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        leaders: &TopicPartitionList,
        lost: bool,
    ) -> Result<(), StreamsError> {
        let (ids, partitions) = assignment::tasks_of(&self.def, &self.subtopologies, leaders)
            .unwrap_or_else(|_| (Vec::new(), leaders.clone()));
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let result = if lost {
            warn!(tasks = ?names, "assignment lost; abandoning uncommitted work");
            let cause = StreamsError::from(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::error::RDKafkaErrorCode::UnknownMemberId,
            ));
            self.fail(cause)
        } else {
            info!(tasks = ?names, "tasks revoked; committing their work");
            self.process_and_commit(consumer)
        };
        for id in &ids {
            self.close(*id);
        }
        let unassigned = consumer.incremental_unassign(&partitions);
        let gone: BTreeSet<InputPartition> = partitions
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        self.paused.forget(&gone);
        self.changed_assignment(consumer);
        result.and(Ok(unassigned?))
    }

    /// Asks the state updater for the store of `id`, caught up; its inputs stay paused.
    fn restore(&mut self, id: TaskId, store: Option<crate::runtime::rocks_store::RocksStore>) {
        self.next_ticket += 1;
        self.restoring.insert(id, self.next_ticket);
        self.updater.send(Command::Restore {
            partition: id.partition,
            ticket: self.next_ticket,
            store,
        });
    }

    fn start(&mut self, task: Task) {
        info!(task = %task.id, "task running");
        metrics().active_tasks.with_label_values(&[&task.id.to_string()]).set(1);
        self.tasks.insert(task.id, task);
    }

    /// Takes a running task out (it is closed, or restored again).
    fn stop(&mut self, id: TaskId) -> Option<Task> {
        let task = self.tasks.remove(&id)?;
        let _ = metrics().active_tasks.remove_label_values(&[&id.to_string()]);
        Some(task)
    }

    /// Closes task `id` here, running or restoring, and hands its store back.
    fn close(&mut self, id: TaskId) {
        if let Some(task) = self.stop(id) {
            if let Some(store) = task.close() {
                self.updater.send(Command::Release {
                    partition: id.partition,
                    store: Some(store),
                });
            }
            debug!(task = %id, "task closed");
        } else if self.restoring.remove(&id).is_some() {
            self.updater.send(Command::Release {
                partition: id.partition,
                store: None,
            });
        }
    }

    fn changed_assignment<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let stateful = |id: &&TaskId| id.subtopology.has_store();
        let active: BTreeSet<u32> = self
            .tasks
            .keys()
            .chain(self.restoring.keys())
            .filter(stateful)
            .map(|id| id.partition)
            .collect();
        metrics().assigned_partitions.set(active.len() as i64);
        self.updater.send(Command::Membership {
            member_id: consumer_state::member_id(consumer),
            active,
        });
    }

    /// Takes what the state updater finished: a restored store starts its task, from the
    /// committed offsets of its inputs.
    pub fn handle_updater_events<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), StreamsError> {
        while let Some(event) = self.updater.next_event() {
            match event {
                Event::Restored {
                    partition,
                    ticket,
                    store,
                } => {
                    let id = TaskId {
                        subtopology: SubTopology::CreditCheck,
                        partition,
                    };
                    if self.restoring.get(&id) != Some(&ticket) {
                        // A restore this replica no longer waits for (revoked, or asked again).
                        self.updater.send(Command::Release {
                            partition,
                            store: Some(store),
                        });
                        continue;
                    }
                    self.restoring.remove(&id);
                    self.start(Task::new(id, Some(store)));
                    if let Err(error) = self.rewind(consumer, &[id]) {
                        self.fail(error)?;
                    }
                    self.sync_paused(consumer)?;
                }
                Event::Failed { partition, error } => {
                    warn!(partition, %error, "the state updater failed");
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Hands a polled record to its task; a record of a partition without a running task
    /// (restoring, closed, or polled before a failure's rewind) is dropped: it is fetched
    /// again from the committed offset.
    pub fn buffer(&mut self, record: RawRecord) {
        if self.recovery.is_some() {
            return;
        }
        let id = TaskId::of(record.topic, record.meta.partition);
        match self.tasks.get_mut(&id) {
            Some(task) => task.buffer(record),
            None => debug!(task = %id, "record for a task that is not running; dropped"),
        }
    }

    fn run<'a>(&'a mut self, lag: &'a mut dyn InputLag) -> (Run<'a, P>, &'a mut BTreeMap<TaskId, Task>) {
        (
            Run {
                processor: &mut self.processor,
                collector: &mut self.collector,
                partition_count: self.def.partitions,
                scratch: &mut self.scratch,
                pending: &mut self.pending,
                faults: &self.faults,
                lag,
                max_idle: Duration::from_millis(self.cfg.max_task_idle_ms),
            },
            &mut self.tasks,
        )
    }

    /// Processes everything buffered that may go now, in every running task.
    pub fn process_buffered(&mut self, lag: &mut dyn InputLag) -> Result<(), StreamsError> {
        if self.recovery.is_some() {
            return Ok(());
        }
        let (mut run, tasks) = self.run(lag);
        let (mut processed, mut partial) = (0, false);
        for task in tasks.values_mut() {
            let (n, progress) = task.process_buffered(&mut run)?;
            processed += n;
            partial |= progress == Progress::Partial;
        }
        self.processed_since_commit += processed;
        self.part_done |= partial;
        self.collector.poll();
        Ok(())
    }

    /// Lets every running task's processor do its scheduled work, once a second.
    pub fn punctuate(&mut self, lag: &mut dyn InputLag) -> Result<(), StreamsError> {
        if self.recovery.is_some() || self.last_punctuate.elapsed() < PUNCTUATE_EVERY {
            return Ok(());
        }
        self.last_punctuate = Instant::now();
        let now = now_ms();
        let (mut run, tasks) = self.run(lag);
        for task in tasks.values_mut() {
            task.punctuate(&mut run, now)?;
        }
        Ok(())
    }

    /// Processes what is buffered, then commits it; a failure of either is handled as any
    /// failure (and returned only when fatal). Used where a commit must happen now
    /// (revocation, shutdown).
    pub fn process_and_commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), StreamsError> {
        let mut lag = NoLag;
        let result = self.process_buffered(&mut lag).and_then(|()| self.commit(consumer));
        match result {
            Ok(()) => Ok(()),
            Err(error) => self.fail(error),
        }
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

    /// How long the next poll may wait before a commit, a punctuation or the end of a
    /// task's wait for its other input could become due.
    pub fn poll_wait(&self) -> Duration {
        if self.tasks.values().any(Task::has_partial) {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let max_idle = Duration::from_millis(self.cfg.max_task_idle_ms);
        let mut wait = self
            .policy
            .poll_wait(self.collector.is_open(), self.last_commit.elapsed());
        if let Some(pending) = &self.recovery {
            wait = wait.min(pending.at.saturating_duration_since(now));
        }
        for until in self.tasks.values().filter_map(|t| t.waiting_until(max_idle)) {
            wait = wait.min(until.saturating_duration_since(now));
        }
        wait.min(PUNCTUATE_EVERY.saturating_sub(self.last_punctuate.elapsed()))
            .max(Duration::from_millis(1))
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

    /// Commits the open work of every running task. On failure nothing is assumed: the
    /// caller hands the error to [`Self::fail`].
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
        m.expired_entries.inc_by(pending.expired);
        for topic in InputTopic::ALL {
            let consumed = pending.consumed[topic.index()];
            if consumed > 0 {
                m.records_consumed.with_label_values(&[topic.as_str()]).inc_by(consumed);
            }
        }
    }

    /// Handles a failure of the open work. A fatal one aborts it and is returned. A
    /// retriable one aborts it (or replaces the producer), forgets everything uncommitted,
    /// restores every store when the broker's outcome is unknown, and leaves the rewind of
    /// the inputs to [`Self::retry_recovery`], which the stream loop repeats until the
    /// broker answers; the loop keeps polling meanwhile, so the consumer stays in its group.
    pub fn fail(&mut self, error: StreamsError) -> Result<(), StreamsError> {
        self.epoch += 1;
        self.pending = PendingMetrics::default();
        self.processed_since_commit = 0;
        self.part_done = false;
        let abandoned = self.collector.abandon(&error);
        for task in self.tasks.values_mut() {
            task.reset_input();
        }
        if !error.is_retriable() {
            set_state(ThreadState::Failed);
            return Err(error);
        }
        metrics().transactions_aborted.inc();
        set_state(ThreadState::Recovering);
        warn!(%error, "rolling back to the last commit");
        if !matches!(abandoned, Ok(Abandoned::Clean)) {
            self.restore_all();
        }
        self.recovery = Some(PendingRecovery {
            cause: match abandoned {
                Err(next) => next,
                Ok(_) => error,
            },
            at: Instant::now(),
        });
        Ok(())
    }

    /// Closes every running stateful task dirty and restores it from the committed changelog.
    fn restore_all(&mut self) {
        let dirty: Vec<TaskId> = self
            .tasks
            .keys()
            .copied()
            .filter(|id| id.subtopology.has_store())
            .collect();
        for id in dirty {
            if let Some(task) = self.stop(id) {
                let store = task.close();
                self.restore(id, store);
            }
        }
        info!(tasks = self.restoring.len(), "restoring every store from the changelog");
    }

    /// Finishes a failure's recovery once its backoff has passed: a producer that could not
    /// be replaced is replaced, and every running task is moved back to its committed offsets.
    pub fn retry_recovery<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        shutdown: &Shutdown,
    ) -> Result<(), StreamsError> {
        let Some(pending) = self.recovery.take() else {
            return Ok(());
        };
        if pending.at > Instant::now() {
            self.recovery = Some(pending);
            return Ok(());
        }
        let running: Vec<TaskId> = self.tasks.keys().copied().collect();
        let attempt = self.collector.abandon(&pending.cause).and_then(|abandoned| {
            if abandoned == Abandoned::Replaced {
                self.restore_all();
            }
            self.rewind(consumer, &running)
        });
        match attempt {
            Ok(()) => {
                self.recovery_backoff = Duration::ZERO;
                set_state(ThreadState::Running);
                info!("rolled back; processing again from the last commit");
                Ok(())
            }
            Err(next) if next.is_retriable() && !shutdown.is_requested() => {
                let backoff = (self.recovery_backoff * 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
                self.recovery_backoff = backoff;
                warn!(error = %next, retry_in_ms = backoff.as_millis() as u64, "rollback failed; retrying");
                self.recovery = Some(PendingRecovery {
                    cause: next,
                    at: Instant::now() + backoff,
                });
                Ok(())
            }
            Err(next) => {
                set_state(ThreadState::Failed);
                Err(next)
            }
        }
    }

    /// Moves the consumer back to the committed offsets of the inputs of `ids` (running
    /// tasks), forgetting what they buffered, so whatever was not committed is read again.
    fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, ids: &[TaskId]) -> Result<(), StreamsError> {
        let ids: Vec<TaskId> = ids.iter().copied().filter(|id| self.tasks.contains_key(id)).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let sought =
            client::seek_to_committed(consumer, assignment::partitions_of(&self.def, &ids), KAFKA_CALL_TIMEOUT)?;
        debug!(?sought, "inputs moved to their committed offsets");
        for id in &ids {
            if let Some(task) = self.tasks.get_mut(id) {
                task.reset_input();
            }
        }
        for (topic, partition, offset) in sought {
            let Some(input) = self.def.input_named(&topic) else {
                continue;
            };
            if let (Some(task), Some(next)) = (self.tasks.get_mut(&TaskId::of(input, partition as u32)), offset) {
                task.sought(input.slot(), next);
            }
        }
        Ok(())
    }

    /// Pauses the inputs of restoring tasks, and of running tasks the input whose buffer
    /// is full while the task waits for the other; resumes the rest.
    pub fn sync_paused<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), StreamsError> {
        let limit = self.cfg.buffered_records_per_partition.max(1);
        let mut wanted = BTreeSet::new();
        for id in self.restoring.keys() {
            for topic in id.subtopology.sources() {
                wanted.insert((self.def.input_name(topic).to_string(), id.partition as i32));
            }
        }
        for task in self.tasks.values() {
            for topic in task.id.subtopology.sources() {
                let input = (self.def.input_name(topic).to_string(), task.id.partition as i32);
                let buffered = task.buffered(topic.slot());
                // Paused at the limit, resumed once half of it was worked off.
                if buffered >= limit || (buffered > limit / 2 && self.paused.contains(&input)) {
                    wanted.insert(input);
                }
            }
        }
        self.paused.apply(consumer, wanted)?;
        metrics().paused_partitions.set(self.paused.len() as i64);
        Ok(())
    }

    /// Logs, at debug level, where every running task stands.
    pub fn log_tasks<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let positions = consumer.position().unwrap_or_default();
        for task in self.tasks.values() {
            for topic in task.id.subtopology.sources() {
                let name = self.def.input_name(topic);
                let p = task.id.partition as i32;
                debug!(
                    task = %task.id,
                    input = topic.as_str(),
                    buffered = task.buffered(topic.slot()),
                    position = ?positions.find_partition(name, p).map(|e| e.offset()),
                    watermarks = ?consumer_state::cached_watermarks(consumer, name, p),
                    paused = self.paused.contains(&(name.to_string(), p)),
                    recovering = self.recovery.is_some(),
                    "task input"
                );
            }
        }
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

/// No input is known to lag: for processing that cannot wait (revocation, shutdown).
struct NoLag;

impl InputLag for NoLag {
    fn unfetched(&mut self, _: InputTopic, _: u32, _: Option<i64>) -> bool {
        false
    }
}
