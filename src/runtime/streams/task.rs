//! A stream task, as Kafka Streams' `StreamTask`: partition p of both source topics of its
//! sub-topology, the RocksDB store of partition p when the sub-topology has state, the
//! records fetched but not yet processed, and how far processing got.
//!
//! Invariants:
//! - A record's position is taken only after the processor handled it and every output
//!   and changelog record it made was handed to the collector: a record that fails is
//!   never part of a commit.
//! - The store's writes stay in its overlay until the task manager commits; any failure
//!   ends in a rollback that drops them.

use super::error::StreamsError;
use super::faults::Faults;
use super::record_collector::RecordCollector;
use crate::runtime::rocks_store::RocksStore;
use crate::topology::codec::{InputTopic, RawRecord};
use crate::topology::output::{Observation, Routed};
use crate::topology::partition_group::PartitionGroup;
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
    pub observations: Vec<Observation>,
    /// Records consumed, per input topic (by [`InputTopic::index`]).
    pub consumed: [u64; 4],
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

/// The user commands a newly assigned task must see before its first order: those on the
/// broker when it was assigned (up to `commands_end`).
struct CatchUp {
    commands_end: i64,
    since: Instant,
}

pub struct Task {
    pub id: TaskId,
    /// `None` for a task of a stateless sub-topology.
    store: Option<RocksStore>,
    group: PartitionGroup,
    /// Next offset to commit, per source topic (by [`InputTopic::slot`]).
    positions: [Option<i64>; 2],
    /// Set while the task catches up on user commands: its orders wait.
    catch_up: Option<CatchUp>,
    /// A record whose work is done in parts: once the part done so far is committed, it
    /// is processed again, before anything else, so nothing overtakes it.
    partial: Option<RawRecord>,
}

impl Task {
    pub fn new(id: TaskId, store: Option<RocksStore>) -> Self {
        Self {
            id,
            store,
            group: PartitionGroup::new(),
            positions: [None, None],
            catch_up: None,
            partial: None,
        }
    }

    pub fn buffer(&mut self, record: RawRecord) {
        self.group.push(record);
    }

    /// The next buffered record to process: while catching up on user commands, only those.
    fn next_record(&mut self) -> Option<RawRecord> {
        if let Some(record) = self.partial.take() {
            return Some(record);
        }
        if self.catch_up.is_some() {
            self.group.pop_command()
        } else {
            self.group.pop()
        }
    }

    /// Processes every buffered record it may, sending outputs and changelog records to
    /// `collector`. Returns how many records were processed, and [`Progress::Partial`]
    /// if it stopped at a record whose next part must wait for a commit.
    pub fn process_buffered<P>(
        &mut self,
        processor: &mut P,
        collector: &mut RecordCollector,
        partition_count: u32,
        scratch: &mut Scratch<P::Output>,
        pending: &mut PendingMetrics,
        faults: &Faults,
    ) -> Result<(usize, Progress), StreamsError>
    where
        P: Processor<Input = RawRecord>,
        P::Output: Routed,
    {
        let mut processed = 0;
        let partition = self.id.partition;
        while let Some(record) = self.next_record() {
            let (topic, offset) = (record.topic, record.meta.offset);
            let progress = {
                let mut no_store = NoStore;
                let store: &mut dyn KeyValueStore = match &mut self.store {
                    Some(store) => store,
                    None => &mut no_store,
                };
                let mut ctx = TaskContext {
                    store: ChangeLoggingStore::new(store, &mut scratch.changes),
                    outputs: &mut scratch.outputs,
                    now_ms: now_ms(),
                    partition,
                    partition_count,
                };
                processor
                    .process(&mut ctx, record.meta, &record)
                    .map_err(|source| StreamsError::Process {
                        task: self.id,
                        offset,
                        source,
                    })?
            };
            for output in scratch.outputs.drain(..) {
                let output = output.into_record();
                collector.send(partition, &output)?;
                if output.observation != Observation::Nothing {
                    pending.observations.push(output.observation);
                }
            }
            for change in scratch.changes.drain(..) {
                collector.send_changelog(partition, &change)?;
            }
            if faults.fail_record() {
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
            pending.consumed[topic.index()] += 1;
            processed += 1;
        }
        Ok((processed, Progress::Done))
    }

    /// Whether a record waits for a commit before its next part.
    pub fn has_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// The next offset to commit per input topic, for what was processed since the last commit.
    pub fn positions(&self) -> impl Iterator<Item = (InputTopic, i64)> + '_ {
        self.id
            .subtopology
            .sources()
            .into_iter()
            .filter_map(|topic| self.positions[topic.slot()].map(|next| (topic, next)))
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
        self.group.clear();
        self.positions = [None, None];
    }

    pub fn store(&self) -> Option<&RocksStore> {
        self.store.as_ref()
    }

    /// Orders wait until the user commands up to `commands_end` were read.
    pub fn start_catch_up(&mut self, commands_end: i64) {
        self.catch_up = Some(CatchUp {
            commands_end,
            since: Instant::now(),
        });
    }

    pub fn catching_up(&self) -> bool {
        self.catch_up.is_some()
    }

    /// Ends the catch-up once the consumer's position on the user commands (`polled`) has
    /// reached the end noted at assignment, or after `limit`.
    pub fn update_catch_up(&mut self, polled: Option<i64>, limit: Duration) {
        let Some(catch_up) = &self.catch_up else {
            return;
        };
        let caught_up = polled.is_some_and(|offset| offset >= catch_up.commands_end);
        if !caught_up && catch_up.since.elapsed() < limit {
            return;
        }
        if !caught_up {
            warn!(
                task = %self.id,
                waited_ms = catch_up.since.elapsed().as_millis() as u64,
                "stopped waiting for user commands; orders go ahead"
            );
        }
        self.catch_up = None;
    }
}
