//! What the task manager does after a failure of the open work: a fatal error aborts it
//! and stops the replica; a retriable one aborts it (or replaces the producer), forgets
//! everything uncommitted, restores every store when the broker's outcome is unknown, and
//! moves every running task back to its committed offsets, retried with backoff until the
//! broker answers.
//!
//! Invariant: after a failure no task keeps anything uncommitted, and nothing is processed
//! until every running task was moved back to its committed offsets. The stream loop keeps
//! polling meanwhile, because a consumer that is not polled cannot stay in its group, and
//! without the group the committed offsets cannot be read.

use super::assignment;
use super::error::StreamsError;
use super::record_collector::Abandoned;
use super::task::PendingMetrics;
use super::task_manager::TaskManager;
use super::thread_metrics;
use crate::metrics::metrics;
use crate::runtime::activity;
use crate::runtime::client::{self, Rewound};
use crate::shutdown::Shutdown;
use crate::topology::codec::RawRecord;
use crate::topology::output::Routed;
use crate::topology::processor::Processor;
use crate::topology::task_id::TaskId;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Longest the look-up of the committed offsets of a rewind may block the stream thread. A
/// healthy group coordinator answers in milliseconds; one that moved, or a broker that was
/// frozen, can leave the request unanswered far longer (seen: 25 s after a thaw, with a
/// 30 s bound), and the retry after a backoff asks the coordinator as it is then.
const REWIND_CALL: Duration = Duration::from_secs(5);

/// The longest the stream loop waits for a new task's committed offsets in one round.
const START_LOOKUP: Duration = Duration::from_secs(1);
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

/// Sets stream thread `thread`'s state (the replica's is the worst of its threads').
pub fn set_state(thread: usize, state: ThreadState) {
    thread_metrics::set_thread_state(thread, state as i64);
}

/// The rewind a failure left to do, tried from the stream loop until it succeeds.
pub(super) struct PendingRecovery {
    pub(super) cause: StreamsError,
    pub(super) at: Instant,
    /// Whether the stores are restored once the producer is replaced: the failed work may
    /// have committed, so only the changelog says what the stores hold.
    pub(super) rebuild_stores: bool,
}

impl<P> TaskManager<P>
where
    P: Processor<Input = RawRecord>,
    P::Output: Routed,
{
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
        self.failed_at.get_or_insert_with(Instant::now);
        let started = Instant::now();
        let abandoned = self.collector.abandon(&error);
        // How long giving the open work up took (an abort, or a new producer's init).
        let abandon_ms = started.elapsed().as_millis() as u64;
        for task in self.tasks.values_mut() {
            task.reset_input();
        }
        if !error.is_retriable() {
            set_state(self.thread, ThreadState::Failed);
            return Err(error);
        }
        metrics().transactions_aborted.inc();
        set_state(self.thread, ThreadState::Recovering);
        warn!(%error, abandon_ms, "rolling back to the last commit");
        // A replaced producer leaves the broker's outcome to the broker; it is unknown only
        // when a commit was asked for and not answered. Otherwise (a timed-out delivery, a
        // hung send of the offsets) the stores' uncommitted writes, already forgotten, are
        // all there was.
        let rebuild_stores = error.may_have_committed();
        if matches!(abandoned, Ok(Abandoned::Replaced)) && rebuild_stores {
            self.restore_all();
        }
        self.recovery = Some(PendingRecovery {
            rebuild_stores: rebuild_stores && abandoned.is_err(),
            cause: match abandoned {
                Err(next) => next,
                Ok(_) => error,
            },
            at: Instant::now(),
        });
        Ok(())
    }

    /// Closes every running stateful task dirty and restores it from the committed changelog.
    pub(super) fn restore_all(&mut self) {
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
        let started = Instant::now();
        let attempt = self.collector.abandon(&pending.cause).and_then(|abandoned| {
            if abandoned == Abandoned::Replaced && pending.rebuild_stores {
                self.restore_all();
            }
            self.rewind(consumer, &running)
        });
        match attempt {
            Ok(()) => {
                self.recovery_backoff = Duration::ZERO;
                set_state(self.thread, ThreadState::Running);
                info!(
                    rewind_ms = started.elapsed().as_millis() as u64,
                    since_failure_ms = self.failed_at.map_or(0, |at| at.elapsed().as_millis() as u64),
                    "rolled back; processing again from the last commit"
                );
                Ok(())
            }
            Err(next) if next.is_retriable() && !shutdown.is_requested() => {
                let backoff = (self.recovery_backoff * 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
                self.recovery_backoff = backoff;
                warn!(error = %next, retry_in_ms = backoff.as_millis() as u64, "rollback failed; retrying");
                self.recovery = Some(PendingRecovery {
                    cause: next,
                    at: Instant::now() + backoff,
                    rebuild_stores: pending.rebuild_stores,
                });
                Ok(())
            }
            Err(next) => {
                set_state(self.thread, ThreadState::Failed);
                Err(next)
            }
        }
    }

    /// Tells every task in `unpositioned` the committed offsets its inputs start from (the
    /// consumer was assigned them there), without moving the consumer: a task that knows
    /// where an input starts can tell an input that is caught up from one not fetched yet.
    /// A look-up that fails is tried again on the next round; the task runs meanwhile and
    /// only waits longer for an input it knows nothing of.
    pub fn learn_start_offsets<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if self.unpositioned.is_empty() {
            return;
        }
        let ids: Vec<TaskId> = self.unpositioned.iter().copied().collect();
        let _call = activity::enter("committed_offsets");
        let committed = match consumer.committed_offsets(assignment::partitions_of(&self.def, &ids), START_LOOKUP) {
            Ok(committed) => committed,
            Err(error) => {
                debug!(%error, "cannot read the new tasks' committed offsets yet; trying again");
                return;
            }
        };
        let mut unknown = BTreeSet::new();
        for element in committed.elements() {
            let (Some(input), Ok(partition)) = (
                self.def.input_named(element.topic()),
                u32::try_from(element.partition()),
            ) else {
                continue;
            };
            let id = TaskId::of(input, partition);
            match (element.error(), element.offset()) {
                (Err(error), _) => {
                    debug!(task = %id, %error, "committed offset not known yet");
                    unknown.insert(id);
                }
                (Ok(()), Offset::Offset(next)) => {
                    if let Some(task) = self.tasks.get_mut(&id) {
                        task.starts_at(input.slot(), next);
                        self.offsets_refreshed = None;
                    }
                }
                // Nothing committed: the input starts at the log's start, as the task assumes.
                (Ok(()), _) => {}
            }
        }
        self.unpositioned = unknown;
    }

    /// Moves the consumer back to the committed offsets of the inputs of `ids` (running
    /// tasks), forgetting what they buffered, so whatever was not committed is read again.
    /// Bounded by [`REWIND_CALL`]: a rewind the broker does not answer fails retriably, and
    /// the recovery is retried with backoff while the stream thread keeps polling.
    pub(super) fn rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        ids: &[TaskId],
    ) -> Result<(), StreamsError> {
        let ids: Vec<TaskId> = ids.iter().copied().filter(|id| self.tasks.contains_key(id)).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let sought = {
            let _call = activity::enter("seek_to_committed");
            client::seek_to_committed(consumer, assignment::partitions_of(&self.def, &ids), REWIND_CALL)?
        };
        debug!(?sought, "inputs moved to their committed offsets");
        for id in &ids {
            if let Some(task) = self.tasks.get_mut(id) {
                task.reset_input();
            }
        }
        for (topic, partition, rewound) in sought {
            let Some(input) = self.def.input_named(&topic) else {
                continue;
            };
            let id = TaskId::of(input, partition as u32);
            match rewound {
                Rewound::To(Some(next)) => {
                    if let Some(task) = self.tasks.get_mut(&id) {
                        task.sought(input.slot(), next);
                        self.offsets_refreshed = None;
                    }
                }
                Rewound::To(None) => {}
                // Where it starts is learnt as for a new task (`learn_start_offsets`).
                Rewound::NotFetchedYet => {
                    debug!(task = %id, topic, "input not fetched yet; it starts at its committed offset");
                    self.unpositioned.insert(id);
                }
            }
        }
        Ok(())
    }
}
