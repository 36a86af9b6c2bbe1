//! Input lag as a task's partition group asks for it: whether an input partition has
//! records on the broker its task has not been given yet. A task waits for such an input
//! before it processes the other one past it, with no deadline, also while the lag is
//! not known yet (`max_task_idle_ms` bounds only a wait on a caught-up input).
//! Invariant: an input of which the consumer knows nothing yet (no fetch answered since it
//! was assigned: its offset is still being looked up; or watermarks below where the task
//! stands, left from an earlier assignment) is never taken as caught up, so a
//! task started on two backlogs does not process one before the other's records arrived.

use crate::runtime::consumer_state;
use crate::topology::codec::InputTopic;
use crate::topology::definition::TopologyDefinition;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

/// Whether an input partition holds records on the broker that were not polled yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// Everything the broker has was handed over.
    None,
    /// The broker holds records beyond what was handed over.
    Behind,
    /// Not known yet (no fetch answered since the partition was assigned).
    Unknown,
}

/// The lag of a task's input partition; `next` is the offset the task expects the
/// consumer to hand it next, where it knows it.
pub trait InputLag {
    fn lag(&mut self, topic: InputTopic, partition: u32, next: Option<i64>) -> Lag;
}

/// Input lag from what the consumer already knows, without a broker call.
pub struct ConsumerLag<'a, C: ConsumerContext> {
    consumer: &'a BaseConsumer<C>,
    def: &'a TopologyDefinition,
    positions: Option<TopicPartitionList>,
}

impl<'a, C: ConsumerContext> ConsumerLag<'a, C> {
    pub fn new(consumer: &'a BaseConsumer<C>, def: &'a TopologyDefinition) -> Self {
        Self {
            consumer,
            def,
            positions: None,
        }
    }
}

impl<C: ConsumerContext + 'static> InputLag for ConsumerLag<'_, C> {
    fn lag(&mut self, topic: InputTopic, partition: u32, next: Option<i64>) -> Lag {
        let name = self.def.input_name(topic);
        let watermarks = consumer_state::cached_watermarks(self.consumer, name, partition as i32);
        let consumer = self.consumer;
        let positions = self
            .positions
            .get_or_insert_with(|| consumer.position().unwrap_or_default());
        let position = positions
            .find_partition(name, partition as i32)
            .and_then(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
        lags(watermarks, position, next)
    }
}

/// An input's lag: `watermarks` are the (low, high) of its last fetch response (`None`
/// before the first), `position` the consumer's fetch position and `next` the offset its
/// task expects next, where known.
fn lags(watermarks: Option<(i64, i64)>, position: Option<i64>, next: Option<i64>) -> Lag {
    let Some((low, high)) = watermarks else {
        // Not fetched yet: its records may lie before everything the other input holds.
        return Lag::Unknown;
    };
    // librdkafka keeps a partition's watermarks across an unassign and a new assignment:
    // a high watermark below where this task stands (another owner consumed and committed
    // past it meanwhile) is from a fetch before this assignment, and says nothing yet.
    if position.into_iter().chain(next).any(|at| at > high) {
        return Lag::Unknown;
    }
    // Nothing read since the task started and no offset known: the log's start.
    if position.into_iter().chain(next).max().unwrap_or(low).max(low) < high {
        Lag::Behind
    } else {
        Lag::None
    }
}

#[cfg(test)]
mod tests {
    use super::{lags, Lag};

    #[test]
    fn the_lag_of_an_input_not_fetched_yet_is_unknown() {
        assert_eq!(lags(None, None, None), Lag::Unknown);
        assert_eq!(lags(None, Some(10), Some(10)), Lag::Unknown);
    }

    #[test]
    fn an_input_is_behind_while_its_high_watermark_lies_beyond_what_was_read() {
        assert_eq!(lags(Some((0, 5)), None, None), Lag::Behind, "from the log's start");
        assert_eq!(lags(Some((0, 5)), Some(3), None), Lag::Behind);
        assert_eq!(lags(Some((0, 5)), None, Some(4)), Lag::Behind);
        assert_eq!(lags(Some((0, 5)), Some(5), None), Lag::None);
        assert_eq!(
            lags(Some((0, 5)), Some(3), Some(5)),
            Lag::None,
            "the task's own offset counts too"
        );
        assert_eq!(lags(Some((0, 0)), None, None), Lag::None, "an empty partition");
        assert_eq!(lags(Some((7, 7)), None, None), Lag::None, "all of it deleted");
    }

    #[test]
    fn watermarks_below_where_the_task_stands_are_from_an_earlier_assignment() {
        // Another owner consumed and committed up to 9 while this consumer last saw 5.
        assert_eq!(lags(Some((0, 5)), None, Some(9)), Lag::Unknown);
        assert_eq!(lags(Some((0, 5)), Some(9), None), Lag::Unknown);
        assert_eq!(lags(Some((0, 9)), None, Some(9)), Lag::None, "fetched since: caught up");
    }
}
