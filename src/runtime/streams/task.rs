//! A stream task, as Kafka Streams' `StreamTask`: partition p of both source topics of its
//! sub-topology, the RocksDB store of partition p when the sub-topology has state, the
//! records fetched but not yet processed, and how far processing got. A task exists here
//! only while it runs; while its store is restored it lives in the state updater.
//!
//! Invariants:
//! - A record's position is taken only after the processor handled it and every output
//!   and changelog record it made was handed to the collector: a record that fails is
//!   never part of a commit.
//! - The store's writes stay in its overlay until the task manager commits; any failure
//!   ends in a rollback that drops them.
//! - Records are taken in timestamp order across the two inputs; a task never runs ahead
//!   of an input that holds unfetched records or whose lag is not known yet (it waits for
//!   them, as Kafka Streams does), and waits at most `max_idle` for one that is caught up.

use super::error::StreamsError;
use super::faults::Faults;
use super::input_lag::{InputLag, Lag};
use super::input_wait::InputWait;
use super::record_collector::RecordCollector;
use crate::metrics::metrics;
use crate::runtime::rocks_store::{RocksStore, OWNER_KEY};
use crate::topology::codec::{InputTopic, RawRecord};
use crate::topology::output::{Observation, Routed};
use crate::topology::partition_group::{PartitionGroup, Pop};
use crate::topology::processor::{Processor, Progress};
use crate::topology::store::{ChangeLoggingStore, KeyValueStore, NoStore, StoreChange, StoreError};
use crate::topology::task_context::TaskContext;
use crate::topology::task_id::TaskId;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::warn;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the committed work did, reported to metrics once it is committed.
#[derive(Debug, Default)]
pub struct PendingMetrics {
    /// What each output observed, with when it was processed (ms since the epoch).
    pub observations: Vec<(Observation, i64)>,
    /// Records consumed, per input topic (by [`InputTopic::index`]).
    pub consumed: [u64; 4],
    /// State entries the processors' scheduled work expired.
    pub expired: u64,
}

/// Buffers reused from record to record, so processing allocates no vectors of its own.
pub struct Scratch<Out> {
    outputs: Vec<Out>,
    changes: Vec<StoreChange>,
}

impl<Out> Default for Scratch<Out> {
    fn default() -> Self {
        Self {
            outputs: Vec::new(),
            changes: Vec::new(),
        }
    }
}

/// What one call of [`Task::process_buffered`] shares with every task.
pub struct Run<'a, P: Processor> {
    pub processor: &'a mut P,
    pub collector: &'a mut RecordCollector,
    pub partition_count: u32,
    pub scratch: &'a mut Scratch<P::Output>,
    pub pending: &'a mut PendingMetrics,
    pub faults: &'a Faults,
    pub lag: &'a mut dyn InputLag,
    /// How long a task waits for a caught-up input before it goes on without it
    /// (`max_task_idle_ms`).
    pub max_idle: Duration,
}

pub struct Task {
    pub id: TaskId,
    /// `None` for a task of a stateless sub-topology.
    store: Option<RocksStore>,
    group: PartitionGroup,
    /// Next offset to commit, per source topic (by [`InputTopic::slot`]), for what was
    /// processed.
    positions: [Option<i64>; 2],
    /// The committed offset each input started at, where known: committed again by the
    /// offsets refresh (see `TaskManager::offsets_refresh_due`) while nothing was processed.
    started: [Option<i64>; 2],
    /// Next offset the consumer will hand this task, per source topic, where known (from
    /// the offsets it was sought to and the records buffered since).
    fetched: [Option<i64>; 2],
    /// Whether, and why, it holds its records back for its other input.
    wait: InputWait,
    /// A record whose work is done in parts: once the part done so far is committed, it
    /// is processed again, before anything else, so nothing overtakes it.
    partial: Option<RawRecord>,
    /// Whether this replica's claim of the task is in the open work (see [`Task::claim`]).
    claimed: bool,
}

impl Task {
    pub fn new(id: TaskId, store: Option<RocksStore>) -> Self {
        Self {
            id,
            store,
            group: PartitionGroup::new(),
            positions: [None, None],
            started: [None, None],
            fetched: [None, None],
            wait: InputWait::None,
            partial: None,
            claimed: false,
        }
    }

    pub fn buffer(&mut self, record: RawRecord) {
        self.fetched[record.topic.slot()] = Some(record.meta.offset + 1);
        self.group.push(record);
    }

    /// The offset the consumer will hand this task next on the input at `slot`, if known.
    pub fn fetched(&self, slot: usize) -> Option<i64> {
        self.fetched[slot]
    }

    /// The consumer was moved to `next` (the committed offset) on the input at `slot`.
    pub fn sought(&mut self, slot: usize, next: i64) {
        self.fetched[slot] = Some(next);
        self.started[slot] = Some(next);
    }

    /// The input at `slot` was assigned at `next` (its committed offset): known unless
    /// records were fetched since.
    pub fn starts_at(&mut self, slot: usize, next: i64) {
        self.fetched[slot].get_or_insert(next);
        self.started[slot].get_or_insert(next);
    }

    /// Records buffered of the input at `slot`.
    pub fn buffered(&self, slot: usize) -> usize {
        self.group.buffered(slot)
    }

    /// Until when at most the task waits for a caught-up input, if it does.
    pub fn waiting_until(&self, max_idle: Duration) -> Option<Instant> {
        self.wait.until(max_idle)
    }

    /// The next record to process, in timestamp order; `None` when nothing is buffered or
    /// the task waits for its other input: with no deadline while that input holds
    /// unfetched records or its lag is not known yet (as Kafka Streams since KIP-695), and
    /// for `max_idle` while it is caught up (Kafka Streams' `max.task.idle.ms`, for
    /// records that may still arrive).
    fn next_record(&mut self, lag: &mut dyn InputLag, max_idle: Duration) -> Option<RawRecord> {
        if let Some(record) = self.partial.take() {
            return Some(record);
        }
        let (sources, partition, fetched) = (self.id.subtopology.sources(), self.id.partition, self.fetched);
        let mut must_wait = false;
        let popped = self
            .group
            .pop(|slot| match lag.lag(sources[slot], partition, fetched[slot]) {
                Lag::None => !max_idle.is_zero(),
                Lag::Behind | Lag::Unknown => {
                    must_wait = true;
                    true
                }
            });
        match popped {
            Pop::Record(record) => {
                self.wait.end();
                Some(record)
            }
            // The records are on the broker, or may be: wait for them however long the
            // fetch takes (the input watch reports a fetch that stood still).
            Pop::Waiting if must_wait => {
                if self.wait.hold() {
                    let lags: Vec<Lag> = (0..2)
                        .map(|slot| lag.lag(sources[slot], partition, fetched[slot]))
                        .collect();
                    warn!(task = %self.id, waited_s = self.wait.waited().unwrap_or_default().as_secs(), ?lags,
                        buffered = ?[self.group.buffered(0), self.group.buffered(1)],
                        "a task has waited long for its other input (records not fetched yet, or no fetch answered since it was assigned)");
                }
                None
            }
            // A caught-up input: wait for it until the idle time is up, then go on without it.
            Pop::Waiting => {
                if !self.wait.idle(max_idle) {
                    return None;
                }
                match self.group.pop(|_| false) {
                    Pop::Record(record) => {
                        metrics().task_idle.with_label_values(&["enforced"]).inc();
                        Some(record)
                    }
                    _ => None,
                }
            }
            Pop::Empty => {
                self.wait.end();
                None
            }
        }
    }

    /// Processes every buffered record it may, sending outputs and changelog records to
    /// the collector. Returns how many records were processed, and [`Progress::Partial`]
    /// if it stopped at a record whose next part must wait for a commit.
    pub fn process_buffered<P>(&mut self, run: &mut Run<'_, P>) -> Result<(usize, Progress), StreamsError>
    where
        P: Processor<Input = RawRecord>,
        P::Output: Routed,
    {
        if !self.claimed {
            self.claim(run.collector)?;
        }
        let mut processed = 0;
        let partition = self.id.partition;
        while let Some(record) = self.next_record(run.lag, run.max_idle) {
            let (topic, offset) = (record.topic, record.meta.offset);
            let progress = {
                let mut no_store = NoStore;
                let store: &mut dyn KeyValueStore = match &mut self.store {
                    Some(store) => store,
                    None => &mut no_store,
                };
                let mut ctx = TaskContext {
                    store: ChangeLoggingStore::new(store, &mut run.scratch.changes),
                    outputs: &mut run.scratch.outputs,
                    now_ms: now_ms(),
                    partition,
                    partition_count: run.partition_count,
                };
                run.processor
                    .process(&mut ctx, record.meta, &record)
                    .map_err(|source| StreamsError::Process {
                        task: self.id,
                        offset,
                        source,
                    })?
            };
            self.forward(run)?;
            if run.faults.fail_record() {
                return Err(StreamsError::Process {
                    task: self.id,
                    offset,
                    source: StoreError("injected by CREDITSTREAM_TEST_FAULTS".into()).into(),
                });
            }
            if progress == Progress::Partial {
                self.partial = Some(record);
                return Ok((processed, Progress::Partial));
            }
            self.positions[topic.slot()] = Some(offset + 1);
            run.pending.consumed[topic.index()] += 1;
            processed += 1;
        }
        Ok((processed, Progress::Done))
    }

    /// Records, with the task's first work, that this replica owns it now: the store and
    /// the changelog name its transactional id. A later owner that finds the changelog
    /// held up by an open transaction learns from it whose producer to fence. Written only
    /// when the owner changes.
    fn claim(&mut self, collector: &mut RecordCollector) -> Result<(), StreamsError> {
        self.claimed = true;
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        let me = collector.transactional_id().to_string();
        if !collector.exactly_once() || store.owner()?.as_deref() == Some(me.as_str()) {
            return Ok(());
        }
        store.put(OWNER_KEY, me.clone().into_bytes())?;
        collector.send_changelog(
            self.id.partition,
            &StoreChange {
                key: OWNER_KEY.to_vec(),
                value: Some(me.into_bytes()),
            },
        )
    }

    /// Lets the processor do its scheduled work (expiring old state) at `now_ms`.
    pub fn punctuate<P>(&mut self, run: &mut Run<'_, P>, now_ms: i64) -> Result<(), StreamsError>
    where
        P: Processor<Input = RawRecord>,
        P::Output: Routed,
    {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        let mut ctx = TaskContext {
            store: ChangeLoggingStore::new(store, &mut run.scratch.changes),
            outputs: &mut run.scratch.outputs,
            now_ms,
            partition: self.id.partition,
            partition_count: run.partition_count,
        };
        let expired = run
            .processor
            .punctuate(&mut ctx)
            .map_err(|source| StreamsError::Process {
                task: self.id,
                offset: -1,
                source,
            })?;
        run.pending.expired += expired as u64;
        self.forward(run)
    }

    /// Hands what the processor just produced (outputs, then changelog records) to the collector.
    fn forward<P>(&mut self, run: &mut Run<'_, P>) -> Result<(), StreamsError>
    where
        P: Processor<Input = RawRecord>,
        P::Output: Routed,
    {
        let partition = self.id.partition;
        for output in run.scratch.outputs.drain(..) {
            let output = output.into_record();
            run.collector.send(partition, &output)?;
            if output.observation != Observation::Nothing {
                run.pending.observations.push((output.observation, now_ms()));
            }
        }
        for change in run.scratch.changes.drain(..) {
            run.collector.send_changelog(partition, &change)?;
        }
        Ok(())
    }

    /// Whether a record waits for a commit before its next part.
    pub fn has_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// The next offset to commit per input topic, for what was processed since the task
    /// started; `with_starts` adds, for an input nothing was processed of, the committed
    /// offset it started at (committed again, so the broker does not expire it).
    pub fn positions(&self, with_starts: bool) -> impl Iterator<Item = (InputTopic, i64)> + '_ {
        self.id.subtopology.sources().into_iter().filter_map(move |topic| {
            let slot = topic.slot();
            let started = self.started[slot].filter(|_| with_starts);
            self.positions[slot].or(started).map(|next| (topic, next))
        })
    }

    /// Writes the committed work to RocksDB with the changelog offset it corresponds to.
    pub fn commit_store(&mut self, next_changelog_offset: Option<i64>) -> Result<(), StoreError> {
        match &mut self.store {
            Some(store) => store.commit(next_changelog_offset),
            None => Ok(()),
        }
    }

    /// Forgets buffered records, positions and uncommitted store writes: the records are
    /// fetched again from the committed offsets.
    pub fn reset_input(&mut self) {
        if let Some(store) = &mut self.store {
            store.rollback();
        }
        self.partial = None;
        self.wait.end();
        self.claimed = false;
        self.group.clear();
        self.positions = [None, None];
        self.started = [None, None];
        self.fetched = [None, None];
    }

    pub fn store(&self) -> Option<&RocksStore> {
        self.store.as_ref()
    }

    /// Closes the task: forgets what it did not commit and gives up its store.
    pub fn close(mut self) -> Option<RocksStore> {
        self.reset_input();
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::processor::RecordMeta;

    /// Answers every lag question of the user commands with `commands`, of orders with `None`.
    struct Lags {
        commands: Lag,
    }

    impl InputLag for Lags {
        fn lag(&mut self, topic: InputTopic, _: u32, _: Option<i64>) -> Lag {
            match topic {
                InputTopic::UserCommands => self.commands,
                _ => Lag::None,
            }
        }
    }

    fn task_with_an_order() -> Task {
        let mut task = Task::new(TaskId::of(InputTopic::Orders, 0), None);
        task.buffer(RawRecord {
            topic: InputTopic::Orders,
            meta: RecordMeta {
                partition: 0,
                offset: 0,
                timestamp_ms: 1,
            },
            key: None,
            value: None,
        });
        task
    }

    #[test]
    fn an_order_waits_with_no_deadline_while_the_user_commands_lag_is_unknown() {
        // As Kafka Streams (KIP-695): an input of which no fetch has answered may hold the
        // create of the order's user; going on without it would decline the order.
        let mut task = task_with_an_order();
        waits_three_times(&mut task, Lag::Unknown);
        let mut caught_up = Lags { commands: Lag::None };
        assert!(task.next_record(&mut caught_up, Duration::ZERO).is_some());
    }

    #[test]
    fn an_order_waits_with_no_deadline_for_user_commands_known_to_be_on_the_broker() {
        waits_three_times(&mut task_with_an_order(), Lag::Behind);
    }

    /// Asks `task` for its next record three times with no idle time while the user
    /// commands' lag is `commands`: it must give none.
    fn waits_three_times(task: &mut Task, commands: Lag) {
        let mut lags = Lags { commands };
        for _ in 0..3 {
            assert!(task.next_record(&mut lags, Duration::ZERO).is_none());
        }
    }

    #[test]
    fn a_caught_up_input_is_waited_for_only_up_to_max_task_idle() {
        let mut caught_up = Lags { commands: Lag::None };
        let mut task = task_with_an_order();
        assert!(
            task.next_record(&mut caught_up, Duration::ZERO).is_some(),
            "no wait by default (0), as Kafka Streams' max.task.idle.ms"
        );
        let mut task = task_with_an_order();
        assert!(
            task.next_record(&mut caught_up, Duration::from_secs(3600)).is_none(),
            "a caught-up input is waited for while max_task_idle_ms lasts"
        );
    }
}
