//! How the task manager commits: the work of every running task in one Kafka
//! transaction (outputs, changelog records, consumed offsets), then each task's store with
//! the changelog offset it corresponds to (handed to the store writer); under
//! at_least_once the outputs are awaited, the stores handed over and the offsets
//! committed, in that order.
//!
//! Invariant: a store is written only after the transaction holding its changelog records
//! committed, so it is never ahead of the committed changelog; metrics count only what
//! committed.

use super::commit_policy::CommitState;
use super::error::StreamsError;
use super::input_lag::{InputLag, Lag};
use super::task::now_ms;
use super::task_manager::TaskManager;
use crate::metrics::metrics;
use crate::runtime::activity;
use crate::topology::codec::{InputTopic, RawRecord};
use crate::topology::output::{Observation, Routed};
use crate::topology::processor::Processor;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use tracing::{debug, info};

impl<P> TaskManager<P>
where
    P: Processor<Input = RawRecord>,
    P::Output: Routed,
{
    /// Processes what is buffered, then commits it; a failure of either is handled as any
    /// failure (and returned only when fatal). Used where a commit must happen now
    /// (revocation, shutdown).
    pub fn process_and_commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), StreamsError> {
        let mut lag = AssumeBehind;
        let result = self.process_buffered(&mut lag).and_then(|()| self.commit(consumer));
        match result {
            Ok(()) => Ok(()),
            Err(error) => self.fail(error),
        }
    }

    pub fn commit_due(&self, backlog: bool) -> bool {
        (!self.collector.is_open() && self.offsets_refresh_due())
            || (self.part_done && self.collector.is_open())
            || self.policy.due(&CommitState {
                open: self.collector.is_open(),
                processed: self.processed_since_commit,
                since_commit: self.last_commit.elapsed(),
                backlog,
            })
    }

    /// Whether the next commit carries, beside what was processed, the committed offset
    /// every other input of every task started at (an idle replica commits for it alone):
    /// once a task learnt where an input starts, then every `offsets_refresh_ms`, unless a
    /// rollback is under way. The group subscribes to `orders` alone, and the broker expires
    /// the committed offset of a topic its group does not subscribe to once it was not
    /// committed for `offsets.retention.minutes`; a task started from an expired offset
    /// would read that input again from the log's start. Only the refresh carries the
    /// starts, so a busy replica's commits stay as small as what it processed.
    pub(super) fn offsets_refresh_due(&self) -> bool {
        let every = Duration::from_millis(self.cfg.offsets_refresh_ms);
        self.recovery.is_none()
            && !self.tasks.is_empty()
            && self.offsets_refreshed.is_none_or(|at| at.elapsed() >= every)
    }

    /// Restarts the commit clock of an idle replica (nothing open), so that an idle poll
    /// waits a whole interval.
    pub fn tick_idle(&mut self) {
        if !self.collector.is_open() && self.last_commit.elapsed() >= self.policy.interval {
            self.last_commit = Instant::now();
        }
    }

    /// The offsets to commit: past what each task processed, and with `with_starts` where
    /// its other inputs started (see [`Self::offsets_refresh_due`]).
    pub(super) fn consumed_offsets(&self, with_starts: bool) -> Result<TopicPartitionList, StreamsError> {
        let mut tpl = TopicPartitionList::new();
        for task in self.tasks.values() {
            for (topic, next) in task.positions(with_starts) {
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
        let refresh = self.offsets_refresh_due();
        if refresh {
            // Tried again after a whole interval, whatever the outcome (a rollback's rewind
            // makes it due again).
            self.offsets_refreshed = Some(Instant::now());
            if !self.collector.is_open() {
                debug!("an idle replica commits its inputs' offsets again");
                self.collector.begin_if_needed()?;
            }
        }
        if !self.collector.is_open() {
            // Nothing was processed since: a rollback that no work followed is over, and
            // the next failure's time is not counted from this one's.
            if self.recovery.is_none() {
                self.failed_at = None;
            }
            return Ok(());
        }
        let started = Instant::now();
        let _call = activity::enter("commit");
        let offsets = self.consumed_offsets(refresh)?;
        let exactly_once = self.collector.exactly_once();
        // Under exactly_once_v2 the consumed offsets go into the transaction, and each store
        // is written with the changelog offset it corresponds to.
        let group = exactly_once.then(|| consumer.group_metadata()).flatten();
        self.collector.commit(&offsets, group, &self.faults)?;
        let changelog = exactly_once.then(|| self.collector.take_changelog_offsets());
        let stores = Instant::now();
        for task in self.tasks.values_mut() {
            let next = changelog
                .as_ref()
                .and_then(|c| c.get(&(task.id.partition as i32)))
                .map(|last| last + 1);
            task.commit_store(next)?;
        }
        observe_phase("stores", stores);
        // At-least-once: the stores before the offsets, so a crash repeats work, never skips it
        // (a store write still in flight at a crash is replayed from the changelog, which
        // holds every record: there is no checkpoint under at_least_once).
        if !exactly_once && offsets.count() > 0 {
            consumer.commit(&offsets, CommitMode::Sync)?;
        }
        self.processed_since_commit = 0;
        self.part_done = false;
        self.report_committed(started);
        if let Some(failed_at) = self.failed_at.take() {
            info!(
                since_failure_ms = failed_at.elapsed().as_millis() as u64,
                commit_ms = started.elapsed().as_millis() as u64,
                "committed again after a rollback"
            );
        }
        Ok(())
    }

    pub(super) fn report_committed(&mut self, started: Instant) {
        let m = metrics();
        m.commit_duration.observe(started.elapsed().as_secs_f64());
        let now = now_ms();
        let pending = std::mem::take(&mut self.pending);
        let seconds = |ms: i64| ms.max(0) as f64 / 1000.0;
        let (queued, awaiting) = (
            m.decision_phase.with_label_values(&["queued"]),
            m.decision_phase.with_label_values(&["awaiting_commit"]),
        );
        for (observation, processed_at) in pending.observations {
            match observation {
                Observation::Nothing => {}
                Observation::Decision { status, event_time_ms } => {
                    m.decisions.with_label_values(&[status]).inc();
                    m.end_to_end_latency.observe(seconds(now - event_time_ms));
                    queued.observe(seconds(processed_at - event_time_ms));
                    awaiting.observe(seconds(now - processed_at));
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
}

/// Records how long one phase of a commit took, from `started` to now.
pub(super) fn observe_phase(phase: &str, started: Instant) {
    observe_phase_took(phase, started.elapsed());
}

/// Records that one phase of a commit took `took`.
pub(super) fn observe_phase_took(phase: &str, took: std::time::Duration) {
    metrics()
        .commit_phase
        .with_label_values(&[phase])
        .observe(took.as_secs_f64());
}

/// For processing that cannot wait (revocation, shutdown): every input counts as behind,
/// so a task processes only what it can in order and leaves the rest, uncommitted, to the
/// next owner.
struct AssumeBehind;

impl InputLag for AssumeBehind {
    fn lag(&mut self, _: InputTopic, _: u32, _: Option<i64>) -> Lag {
        Lag::Behind
    }
}
