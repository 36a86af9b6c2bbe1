//! The task manager's housekeeping, every few seconds on the stream thread: the watch on
//! running tasks' inputs (see `input_watch`), the store metrics, and a debug log of where
//! each task's inputs stand.
//! Invariant: housekeeping only looks; it never changes the assignment, a position or the
//! open work.

use super::task_manager::TaskManager;
use crate::metrics::metrics;
use crate::runtime::consumer_state;
use crate::topology::codec::RawRecord;
use crate::topology::output::Routed;
use crate::topology::processor::Processor;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use tracing::{debug, warn};

impl<P> TaskManager<P>
where
    P: Processor<Input = RawRecord>,
    P::Output: Routed,
{
    /// Logs, at debug level, where every running task stands.
    pub fn log_tasks<C: ConsumerContext + 'static>(&self, consumer: &BaseConsumer<C>) {
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

    /// Reports every running task's unpaused input that stands still although committed
    /// records lie beyond it (see `input_watch`): a defect to find, never worked around here.
    pub fn watch_inputs<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if self.recovery.is_some() {
            return;
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
        for stalled in self.input_watch.stalled(consumer, &watched) {
            warn!(
                topic = stalled.input.0,
                partition = stalled.input.1,
                position = stalled.position,
                stable = stalled.stable,
                stood_still_ms = stalled.for_ms,
                "input read stalled: committed records lie beyond its position but none arrive"
            );
            metrics().input_read_stalls.inc();
        }
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
