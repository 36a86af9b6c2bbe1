//! Input lag as a task's partition group asks for it: whether an input partition has
//! records on the broker its task has not been given yet. A task waits (bounded by
//! `max_task_idle_ms`) for such an input before it processes the other one past it.
//! Invariant: an input of which the consumer knows nothing yet (no fetch answered since it
//! was assigned: its offset is still being looked up) counts as lagging, so a task started
//! on two backlogs never processes one before the other's first records arrived.

use super::task::InputLag;
use crate::runtime::consumer_state;
use crate::topology::codec::InputTopic;
use crate::topology::definition::TopologyDefinition;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

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

impl<C: ConsumerContext> InputLag for ConsumerLag<'_, C> {
    fn unfetched(&mut self, topic: InputTopic, partition: u32, next: Option<i64>) -> bool {
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

/// Whether an input lags: `watermarks` are the (low, high) of its last fetch response
/// (`None` before the first), `position` the consumer's fetch position and `next` the
/// offset its task expects next, where known.
fn lags(watermarks: Option<(i64, i64)>, position: Option<i64>, next: Option<i64>) -> bool {
    let Some((low, high)) = watermarks else {
        // Not fetched yet: its records may lie before everything the other input holds.
        return true;
    };
    // Nothing read since the task started and no offset known: the log's start.
    position.into_iter().chain(next).max().unwrap_or(low).max(low) < high
}

#[cfg(test)]
mod tests {
    use super::lags;

    #[test]
    fn an_input_not_fetched_yet_lags() {
        assert!(lags(None, None, None));
        assert!(lags(None, Some(10), Some(10)));
    }

    #[test]
    fn an_input_lags_while_its_high_watermark_lies_beyond_what_was_read() {
        assert!(lags(Some((0, 5)), None, None), "from the log's start");
        assert!(lags(Some((0, 5)), Some(3), None));
        assert!(lags(Some((0, 5)), None, Some(4)));
        assert!(!lags(Some((0, 5)), Some(5), None));
        assert!(
            !lags(Some((0, 5)), Some(3), Some(5)),
            "the task's own offset counts too"
        );
        assert!(!lags(Some((0, 0)), None, None), "an empty partition");
        assert!(!lags(Some((7, 7)), None, None), "all of it deleted");
    }
}
