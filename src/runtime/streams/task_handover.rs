//! How tasks come and go in a stream thread's [`TaskManager`], as Kafka Streams' task
//! lifecycle: the group's assignment creates them (stateless ones run at once, stateful
//! ones restore in the state updater), a revocation commits their work and hands their
//! stores back, and a restored store starts its task from the committed offsets.
//!
//! Invariant: every assigned partition has a task (running or restoring) before the
//! assign callback can fail, except when the assignment itself is not one of the
//! topology's tasks (then the partitions are assigned, as librdkafka requires, and the
//! replica stops); and a task that goes resumes its inputs first (librdkafka would keep a
//! pause into a later assignment).

use super::assignment;
use super::error::StreamsError;
use super::paused_inputs::InputPartition;
use super::state_updater::{Command, Event};
use super::task::Task;
use super::task_manager::TaskManager;
use super::thread_metrics::{set_share, Shared};
use crate::metrics::metrics;
use crate::runtime::consumer_state;
use crate::runtime::rocks_store::RocksStore;
use crate::topology::codec::RawRecord;
use crate::topology::output::Routed;
use crate::topology::processor::Processor;
use crate::topology::task_id::{SubTopology, TaskId};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::TopicPartitionList;
use std::collections::BTreeSet;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The longest the assign callback waits for the topics' metadata.
const ASSIGNMENT_CHECK: Duration = Duration::from_secs(2);

impl<P> TaskManager<P>
where
    P: Processor<Input = RawRecord>,
    P::Output: Routed,
{
    /// Takes the group's assignment of `leaders`: every task's partitions are assigned
    /// (leaders with their followers) at the group's committed offsets, which librdkafka
    /// looks up itself; stateless tasks run at once, stateful ones restore in the state
    /// updater with their inputs paused. The tasks exist before anything can fail, and the
    /// one broker call here (the partition-count check) is bounded to 2 s.
    pub fn assign<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        leaders: &TopicPartitionList,
    ) -> Result<(), StreamsError> {
        let (ids, partitions) = match assignment::tasks_of(&self.def, &self.subtopologies, leaders) {
            Ok(tasks) => tasks,
            Err(error) => {
                // librdkafka waits for the assign call whatever happens; then the replica stops.
                consumer.incremental_assign(leaders).map_err(StreamsError::Assignment)?;
                return Err(error);
            }
        };
        consumer
            .incremental_assign(&partitions)
            .map_err(StreamsError::Assignment)?;
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        info!(tasks = ?names, "tasks assigned");
        for id in ids {
            if self.tasks.contains_key(&id) || self.restoring.contains_key(&id) {
                continue;
            }
            if id.subtopology.has_store() {
                self.restore(id, None);
            } else {
                self.start(Task::new(id, None));
                // Where its inputs start is looked up from the stream loop (see
                // `learn_start_offsets`), so its task can tell what it waits for.
                self.unpositioned.insert(id);
            }
        }
        self.sync_paused(consumer)?;
        self.changed_assignment(consumer);
        // Co-partitioning is checked again on every assignment (a grown topic must stop the
        // replica), with a short bound. The metadata answer also moves librdkafka's group
        // state machine on at once; without it, the join for the next cooperative round
        // waited for the group's 1 s timer, and tasks that stayed where they were paused
        // about a second at each scaling step (tests/scale_out.rs).
        match assignment::verify_partition_counts(consumer, &self.def, ASSIGNMENT_CHECK, || false) {
            Ok(None) => {}
            Ok(Some(topic)) => warn!(topic, "a topic of the topology is missing from the broker's metadata"),
            Err(error) if error.is_retriable() => warn!(%error, "cannot check the topics' partition counts now"),
            Err(error) => return Err(error),
        }
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
        let gone: BTreeSet<InputPartition> = partitions
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        // Resumed before they go: librdkafka would keep the pause into a later assignment.
        let released = self.paused.release(consumer, &gone);
        let unassigned = consumer.incremental_unassign(&partitions);
        self.changed_assignment(consumer);
        result.and(Ok(released?)).and(Ok(unassigned?))
    }

    /// Asks the state updater for the store of `id`, caught up; its inputs stay paused.
    pub(super) fn restore(&mut self, id: TaskId, store: Option<RocksStore>) {
        self.next_ticket += 1;
        self.restoring.insert(id, self.next_ticket);
        self.updater.send(Command::Restore {
            partition: id.partition,
            ticket: self.next_ticket,
            store,
        });
    }

    /// Runs `task`; the processor forgets what it remembered of the partition, as it does
    /// when a task stops (the store may have changed meanwhile).
    pub(super) fn start(&mut self, task: Task) {
        info!(task = %task.id, "task running");
        self.processor.forget(task.id);
        metrics().active_tasks.with_label_values(&[&task.id.to_string()]).set(1);
        self.tasks.insert(task.id, task);
    }

    /// Takes a running task out (it is closed, or restored again).
    pub(super) fn stop(&mut self, id: TaskId) -> Option<Task> {
        self.unpositioned.remove(&id);
        let task = self.tasks.remove(&id)?;
        self.processor.forget(id);
        let _ = metrics().active_tasks.remove_label_values(&[&id.to_string()]);
        Some(task)
    }

    /// Closes task `id` here, running or restoring, and hands its store back.
    pub(super) fn close(&mut self, id: TaskId) {
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
        set_share(Shared::AssignedPartitions, self.thread, active.len() as i64);
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
                    at,
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
                    debug!(task = %id, waited_ms = at.elapsed().as_millis() as u64, "restored store taken up");
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
                Event::Stopped => return Err(StreamsError::UpdaterStopped),
            }
        }
        Ok(())
    }
}
