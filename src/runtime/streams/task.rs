//! A stream task, as Kafka Streams' `StreamTask`: partition p of both inputs, the RocksDB
//! store of partition p, the records fetched but not yet processed, and how far
//! processing got.
//!
//! Invariants:
//! - A record's position is taken only after the processor handled it and every output
//!   and changelog record it made was handed to the collector: a record that fails is
//!   never part of a commit.
//! - The store's writes stay in its overlay until the task manager commits; any failure
//!   ends in a rollback that drops them.

use super::error::StreamsError;
use super::record_collector::RecordCollector;
use crate::runtime::rocks_store::RocksStore;
use crate::topology::codec::{InputTopic, RawRecord};
use crate::topology::output::{Observation, Routed};
use crate::topology::partition_group::PartitionGroup;
use crate::topology::processor::{Processor, Progress};
use crate::topology::store::{ChangeLoggingStore, StoreChange, StoreError};
use crate::topology::task_context::TaskContext;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::warn;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The index of an input topic in per-topic arrays.
pub fn slot(topic: InputTopic) -> usize {
    match topic {
        InputTopic::UserCommands => 0,
        InputTopic::Orders => 1,
    }
}

/// What the committed work did, reported to metrics once it is committed.
#[derive(Debug, Default)]
pub struct PendingMetrics {
    pub observations: Vec<Observation>,
    pub consumed: [u64; 2],
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
    pub partition: u32,
    store: RocksStore,
    group: PartitionGroup,
    /// Next offset to commit, per input topic (user commands, orders).
    positions: [Option<i64>; 2],
    /// Set while the task catches up on user commands: its orders wait.
    catch_up: Option<CatchUp>,
    /// A record whose work is done in parts: once the part done so far is committed, it
    /// is processed again, before anything else, so nothing overtakes it.
    partial: Option<RawRecord>,
}

impl Task {
    pub fn new(partition: u32, store: RocksStore) -> Self {
        Self {
            partition,
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
    ) -> Result<(usize, Progress), StreamsError>
    where
        P: Processor<Input = RawRecord>,
        P::Output: Routed,
    {
        let mut processed = 0;
        while let Some(record) = self.next_record() {
            let (topic, offset) = (record.topic, record.meta.offset);
            let progress = {
                let mut ctx = TaskContext {
                    store: ChangeLoggingStore::new(&mut self.store, &mut scratch.changes),
                    outputs: &mut scratch.outputs,
                    now_ms: now_ms(),
                    partition: self.partition,
                    partition_count,
                };
                processor
                    .process(&mut ctx, record.meta, &record)
                    .map_err(|source| StreamsError::Process {
                        partition: self.partition,
                        offset,
                        source,
                    })?
            };
            for output in scratch.outputs.drain(..) {
                let output = output.into_record();
                collector.send(self.partition, &output)?;
                if output.observation != Observation::Nothing {
                    pending.observations.push(output.observation);
                }
            }
            for change in scratch.changes.drain(..) {
                collector.send_changelog(self.partition, &change)?;
            }
            if progress == Progress::Partial {
                self.partial = Some(record);
                return Ok((processed, Progress::Partial));
            }
            self.positions[slot(topic)] = Some(offset + 1);
            pending.consumed[slot(topic)] += 1;
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
        [InputTopic::UserCommands, InputTopic::Orders]
            .into_iter()
            .filter_map(|topic| self.positions[slot(topic)].map(|next| (topic, next)))
    }

    /// Writes the committed work to RocksDB with the changelog offset it corresponds to.
    pub fn commit_store(&mut self, next_changelog_offset: Option<i64>) -> Result<(), StoreError> {
        self.store.commit(next_changelog_offset)
    }

    /// Forgets buffered records, positions and uncommitted store writes: the records are
    /// fetched again from the committed offsets.
    pub fn reset_input(&mut self) {
        self.store.rollback();
        self.partial = None;
        self.group.clear();
        self.positions = [None, None];
    }

    pub fn store(&self) -> &RocksStore {
        &self.store
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
                partition = self.partition,
                waited_ms = catch_up.since.elapsed().as_millis() as u64,
                "stopped waiting for user commands; orders go ahead"
            );
        }
        self.catch_up = None;
    }
}
