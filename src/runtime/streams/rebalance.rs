//! The rebalance listener: librdkafka calls it from inside `poll`, on the stream thread,
//! for each incremental (cooperative-sticky) change of the group's assignment, and it
//! hands the change to the task manager, which assigns or unassigns the tasks' partitions
//! itself (the group assigns only the leader topic, orders; see `assignment`).
//! Invariants: revoked tasks commit their processed work before they are closed (or, when
//! the assignment was lost, abandon it: another replica may already own the partitions);
//! tasks that are not part of the change are not touched; assigned stateful tasks restore
//! in the state updater, so the callback returns at once. A failure here is parked for
//! the stream loop, which recovers from it outside the callback.

use super::error::StreamsError;
use super::task_manager::TaskManager;
use crate::metrics::metrics;
use crate::topology::codec::RawRecord;
use crate::topology::output::Routed;
use crate::topology::processor::Processor;
use rdkafka::bindings::rd_kafka_resp_err_t as RespErr;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::warn;

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
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RespErr, tpl: &mut TopicPartitionList) {
        let result = match err {
            RespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                metrics().rebalances.with_label_values(&["assign"]).inc();
                lock(&self.tasks).assign(consumer, tpl)
            }
            RespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                metrics()
                    .rebalances
                    .with_label_values(&[if lost { "lost" } else { "revoke" }])
                    .inc();
                lock(&self.tasks).revoke(consumer, tpl, lost)
            }
            other => {
                let code = RDKafkaErrorCode::from(other);
                warn!(error = %code, "rebalance error");
                // As librdkafka's default handler does: give the partitions up.
                lock(&self.tasks)
                    .revoke(consumer, tpl, true)
                    .and(Err(KafkaError::Rebalance(code).into()))
            }
        };
        if let Err(error) = result {
            self.fail(error);
        }
    }
}
