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
use super::commit_policy::CommitPolicy;
use super::error::StreamsError;
use super::faults::Faults;
use super::input_lag::InputLag;
use super::input_watch::InputWatch;
use super::paused_inputs::PausedInputs;
use super::record_collector::RecordCollector;
use super::recovery::PendingRecovery;
use super::state_updater::{StateUpdater, UpdaterConfig};
use super::task::{now_ms, PendingMetrics, Run, Scratch, Task};
use super::thread_metrics::{set_share, Shared};
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::runtime::rocks_store::StoreResources;
use crate::topology::codec::RawRecord;
use crate::topology::definition::TopologyDefinition;
use crate::topology::output::Routed;
use crate::topology::processor::{Processor, Progress};
use crate::topology::task_id::{SubTopology, TaskId};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tracing::debug;

/// How often each running task's processor does its scheduled work.
const PUNCTUATE_EVERY: Duration = Duration::from_secs(1);
/// The longest poll while a task waits for its restored store.
const RESTORE_PICKUP: Duration = Duration::from_millis(20);

/// The tasks of one stream thread. How tasks come and go lives in `task_handover`,
/// committing in `commit`, failure handling in `recovery` (each an `impl` block of this type).
pub struct TaskManager<P: Processor> {
    pub(super) def: TopologyDefinition,
    pub(super) cfg: ProcessorConfig,
    pub(super) subtopologies: Vec<SubTopology>,
    pub(super) policy: CommitPolicy,
    pub collector: RecordCollector,
    pub(super) updater: StateUpdater,
    /// The running tasks.
    pub(super) tasks: BTreeMap<TaskId, Task>,
    /// Tasks whose store the state updater restores, by the ticket of their request.
    pub(super) restoring: BTreeMap<TaskId, u64>,
    /// Running tasks that do not know yet at which offsets their inputs start.
    pub(super) unpositioned: BTreeSet<TaskId>,
    pub(super) next_ticket: u64,
    pub(super) paused: PausedInputs,
    pub(super) input_watch: InputWatch,
    pub(super) processed_since_commit: usize,
    /// A record's part was done: commit now, so its next part can follow.
    pub(super) part_done: bool,
    pub(super) last_commit: Instant,
    /// When the offsets were last refreshed (see [`TaskManager::offsets_refresh_due`]);
    /// `None` once a task learnt where an input starts: due at the next commit.
    pub(super) offsets_refreshed: Option<Instant>,
    pub(super) last_punctuate: Instant,
    /// Bumped by every failure: a batch polled under an older epoch is stale.
    pub epoch: u64,
    pub(super) pending: PendingMetrics,
    /// Set from a failure until every running task was moved back to its committed offsets;
    /// nothing is processed meanwhile.
    pub(super) recovery: Option<PendingRecovery>,
    /// The wait before the last retry of a failed rewind: doubles while they keep failing
    /// (200 ms to 5 s), zero once one succeeds.
    pub(super) recovery_backoff: Duration,
    /// When the open work last failed, until the first commit after it (or a commit that
    /// finds no work since the rollback): how long the replica went without committing
    /// is logged then, phase by phase.
    pub(super) failed_at: Option<Instant>,
    pub(super) processor: P,
    /// Which stream thread of the replica this is (its metrics' share, its names).
    pub(super) thread: usize,
    pub(super) scratch: Scratch<P::Output>,
    pub(super) faults: Faults,
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
        resources: StoreResources,
        thread: usize,
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
            resources,
            standby_copies: cfg.num_standby_replicas,
            group_id: def.application_id.clone(),
            leader_topic: def.input_name(assignment::leader()).to_string(),
            transactional_id: collector.transactional_id().to_string(),
            thread,
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
            unpositioned: BTreeSet::new(),
            next_ticket: 0,
            paused: PausedInputs::default(),
            input_watch: InputWatch::default(),
            processed_since_commit: 0,
            part_done: false,
            last_commit: Instant::now(),
            offsets_refreshed: None,
            last_punctuate: Instant::now(),
            epoch: 0,
            pending: PendingMetrics::default(),
            recovery: None,
            recovery_backoff: Duration::ZERO,
            failed_at: None,
            processor,
            thread,
            scratch: Scratch::default(),
            faults: Faults::from_env(),
            def,
            cfg,
        })
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
        if !self.restoring.is_empty() {
            // A restored store is taken up between polls: a task waiting for one starts soon.
            wait = wait.min(RESTORE_PICKUP);
        }
        for until in self.tasks.values().filter_map(|t| t.waiting_until(max_idle)) {
            wait = wait.min(until.saturating_duration_since(now));
        }
        wait.min(PUNCTUATE_EVERY.saturating_sub(self.last_punctuate.elapsed()))
            .max(Duration::from_millis(1))
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
        set_share(Shared::PausedPartitions, self.thread, self.paused.len() as i64);
        Ok(())
    }
}
