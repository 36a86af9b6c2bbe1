//! The rebalance listener: librdkafka calls it from inside `poll`, on the stream thread,
//! and it hands each revocation and assignment to the task manager.
//! Invariants: revoked tasks commit their processed work before they are closed (or, when
//! the assignment was lost, abandon it: another replica may already own the partitions);
//! assigned tasks are restored before any of their records is processed. A failure here
//! is parked for the stream loop, which recovers from it outside the callback.

use super::error::StreamsError;
use super::task_manager::TaskManager;
use crate::metrics::metrics;
use crate::topology::codec::RawRecord;
use crate::topology::output::Routed;
use crate::topology::processor::Processor;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{info, warn};

pub struct RebalanceListener<P: Processor> {
    tasks: Arc<Mutex<TaskManager<P>>>,
    failure: Mutex<Option<StreamsError>>,
}

/// Locks the task manager; a panic elsewhere does not make its state less usable here.
pub fn lock<P: Processor>(tasks: &Mutex<TaskManager<P>>) -> MutexGuard<'_, TaskManager<P>> {
    tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<P: Processor> RebalanceListener<P> {
    pub fn new(tasks: Arc<Mutex<TaskManager<P>>>) -> Self {
        Self {
            tasks,
            failure: Mutex::new(None),
        }
    }

    fn fail(&self, error: StreamsError) {
        warn!(%error, "rebalance handling failed");
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(error);
        }
    }

    /// The failure parked by a callback, if any.
    pub fn take_failure(&self) -> Option<StreamsError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}

impl<P: Processor> ClientContext for RebalanceListener<P>
where
    P: Send + 'static,
    P::Output: Send,
{
}

impl<P> ConsumerContext for RebalanceListener<P>
where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let mut tasks = lock(&self.tasks);
        tasks.epoch += 1;
        let revoked = tasks.tasks_of(tpl);
        let names: Vec<String> = revoked.iter().map(ToString::to_string).collect();
        if consumer.assignment_lost() {
            metrics().rebalances.with_label_values(&["lost"]).inc();
            warn!(tasks = ?names, "assignment lost; abandoning uncommitted work");
            let cause = StreamsError::from(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownMemberId));
            if let Err(error) = tasks.abandon(&cause) {
                self.fail(error);
            }
        } else {
            metrics().rebalances.with_label_values(&["revoke"]).inc();
            info!(tasks = ?names, "tasks revoked; committing their work");
            if let Err(error) = tasks.process_and_commit(consumer) {
                self.fail(error);
            }
        }
        tasks.close_tasks(&revoked);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                metrics().rebalances.with_label_values(&["assign"]).inc();
                let mut tasks = lock(&self.tasks);
                let assigned = tasks.tasks_of(tpl);
                let names: Vec<String> = assigned.iter().map(ToString::to_string).collect();
                info!(tasks = ?names, "tasks assigned; restoring state");
                tasks.epoch += 1;
                if let Err(error) = tasks.open_tasks(consumer, &assigned) {
                    self.fail(error);
                }
            }
            Rebalance::Error(error) => warn!(%error, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}
