//! Merges the records of one task's input partitions in timestamp order, as Kafka
//! Streams' partition group does: of the records buffered, the one with the smallest
//! timestamp goes first; each topic keeps its offset order. On a tie, user operations go
//! before orders (see `InputTopic::slot`), so a user created in the same millisecond as
//! its first order exists when the order is decided.

use super::codec::RawRecord;
use std::collections::VecDeque;

/// The buffered, not yet processed records of one task.
#[derive(Debug, Default)]
pub struct PartitionGroup {
    commands: VecDeque<RawRecord>,
    orders: VecDeque<RawRecord>,
}

impl PartitionGroup {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, record: RawRecord) {
        if record.topic.slot() == 0 {
            self.commands.push_back(record);
        } else {
            self.orders.push_back(record);
        }
    }

    pub fn len(&self) -> usize {
        self.commands.len() + self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next record to process, or `None` when nothing is buffered.
    pub fn pop(&mut self) -> Option<RawRecord> {
        let take_command = match (self.commands.front(), self.orders.front()) {
            (Some(c), Some(o)) => c.meta.timestamp_ms <= o.meta.timestamp_ms,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_command {
            self.commands.pop_front()
        } else {
            self.orders.pop_front()
        }
    }

    /// The next user command, leaving the orders buffered: what a task takes while it
    /// catches up on the commands that were on the broker before it could see them.
    pub fn pop_command(&mut self) -> Option<RawRecord> {
        self.commands.pop_front()
    }

    /// Drops everything buffered (after an aborted transaction the records are re-fetched).
    pub fn clear(&mut self) {
        self.commands.clear();
        self.orders.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::codec::InputTopic;
    use crate::topology::processor::RecordMeta;

    fn record(topic: InputTopic, offset: i64, timestamp_ms: i64) -> RawRecord {
        RawRecord {
            topic,
            meta: RecordMeta {
                partition: 0,
                offset,
                timestamp_ms,
            },
            key: None,
            value: None,
        }
    }

    fn popped(
        group: &mut PartitionGroup,
        next: fn(&mut PartitionGroup) -> Option<RawRecord>,
    ) -> Vec<(InputTopic, i64)> {
        std::iter::from_fn(|| next(group))
            .map(|r| (r.topic, r.meta.offset))
            .collect()
    }

    #[test]
    fn merges_by_timestamp_with_commands_first_on_a_tie() {
        let mut group = PartitionGroup::new();
        group.push(record(InputTopic::Orders, 0, 10));
        group.push(record(InputTopic::Orders, 1, 30));
        group.push(record(InputTopic::UserCommands, 0, 10));
        group.push(record(InputTopic::UserCommands, 1, 20));
        assert_eq!(
            popped(&mut group, PartitionGroup::pop),
            [
                (InputTopic::UserCommands, 0),
                (InputTopic::Orders, 0),
                (InputTopic::UserCommands, 1),
                (InputTopic::Orders, 1)
            ]
        );
    }

    #[test]
    fn catching_up_takes_commands_and_leaves_orders_buffered() {
        let mut group = PartitionGroup::new();
        group.push(record(InputTopic::Orders, 0, 1));
        group.push(record(InputTopic::UserCommands, 0, 5));
        assert_eq!(
            popped(&mut group, PartitionGroup::pop_command),
            [(InputTopic::UserCommands, 0)]
        );
        assert_eq!(group.len(), 1);
        assert_eq!(popped(&mut group, PartitionGroup::pop), [(InputTopic::Orders, 0)]);
        assert!(group.is_empty());
    }
}
