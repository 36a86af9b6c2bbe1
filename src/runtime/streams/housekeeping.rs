//! The task manager's housekeeping, every few seconds on the stream thread: the watch on
//! running tasks' inputs (see `input_watch`), the store metrics, and a debug log of where
//! each task's inputs stand.
//! Invariant: an input is read again only while no recovery is pending, and only through
//! the task manager's failure path, so the open work is rolled back first.

use super::error::StreamsError;
use super::task_manager::TaskManager;
use crate::metrics::metrics;
use crate::runtime::consumer_state;
use crate::topology::codec::RawRecord;
use crate::topology::output::Routed;
use crate::topology::processor::Processor;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::TopicPartitionList;
use tracing::{debug, warn};

impl<P> TaskManager<P>
where
    P: Processor<Input = RawRecord>,
    P::Output: Routed,
{
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

    /// Reads again, from the last commit, every running task with an input that stands
    /// still although committed records lie beyond it (see `input_watch`).
    pub fn watch_inputs<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), StreamsError> {
        if self.recovery.is_some() {
            return Ok(());
        }
        let mut watched = Vec::new();
        for task in self.tasks.values() {
            for topic in task.id.subtopology.sources() {
                let input = (self.def.input_name(topic).to_string(), task.id.partition as i32);
                if !self.paused.contains(&input) {
                    watched.push((input, task.fetched(topic.slot())));
                }
            }
        }
        let stuck = self.input_watch.stuck(consumer, &watched);
        if stuck.is_empty() {
            return Ok(());
        }
        warn!(inputs = ?stuck, "inputs stood still with committed records to read; reading them again from the last commit");
        metrics().input_read_restarts.inc();
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &stuck {
            tpl.add_partition(topic, *partition);
        }
        // A fetcher that stopped does not start again on a seek: the partitions are assigned
        // afresh (from their committed offsets), and the open work is rolled back.
        consumer.incremental_unassign(&tpl)?;
        consumer.incremental_assign(&tpl)?;
        self.fail(StreamsError::InputStalled { inputs: stuck })
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
