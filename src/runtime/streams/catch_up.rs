//! The catch-up of newly opened tasks: a task whose user-commands partition holds commands
//! it has not processed yet (committed offset below the log end) takes only those commands
//! until it has read up to the end noted when it was opened. Without it, a replica that
//! starts behind would decline orders for users created before them, because the
//! timestamp merge only orders what has been fetched.
//! Invariant: best effort and bounded; if the broker cannot say, or the wait exceeds its
//! limit, the task goes on with the plain timestamp merge.

use super::record_collector::KAFKA_CALL_TIMEOUT;
use super::task::Task;
use crate::topology::task_id::{SubTopology, TaskId};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::{debug, warn};

/// Arms the catch-up of the tasks of `partitions` that have unprocessed user commands.
pub fn arm<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    commands_topic: &str,
    tasks: &mut BTreeMap<TaskId, Task>,
    partitions: &[u32],
) {
    if partitions.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(commands_topic, p as i32);
    }
    let committed = match consumer.committed_offsets(tpl, KAFKA_CALL_TIMEOUT) {
        Ok(committed) => committed,
        Err(error) => {
            warn!(%error, "cannot read committed offsets; orders will not wait for user commands");
            return;
        }
    };
    for &p in partitions {
        let Ok((low, high)) = consumer.fetch_watermarks(commands_topic, p as i32, KAFKA_CALL_TIMEOUT) else {
            continue;
        };
        let start = match committed.find_partition(commands_topic, p as i32).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => offset.max(low),
            _ => low,
        };
        let id = TaskId {
            subtopology: SubTopology::CreditCheck,
            partition: p,
        };
        if let (true, Some(task)) = (start < high, tasks.get_mut(&id)) {
            debug!(
                partition = p,
                commands = high - start,
                "catching up on user commands first"
            );
            task.start_catch_up(high);
        }
    }
}

/// Ends the catch-up of every task whose consumer position on the user commands has
/// reached the end noted when it was armed (the partition group then orders them by
/// timestamp), or that waited `limit`.
pub fn update<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    commands_topic: &str,
    tasks: &mut BTreeMap<TaskId, Task>,
    limit: Duration,
) {
    if !tasks.values().any(Task::catching_up) {
        return;
    }
    let positions = consumer.position().ok();
    for task in tasks.values_mut() {
        let polled = positions
            .as_ref()
            .and_then(|tpl| tpl.find_partition(commands_topic, task.id.partition as i32))
            .and_then(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
        task.update_catch_up(polled, limit);
    }
}
