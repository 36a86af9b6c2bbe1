//! Merges the records of one task's input partitions in timestamp order, as Kafka
//! Streams' partition group does: of the records buffered, the one with the smallest
//! timestamp goes first; each topic keeps its offset order. On a tie, user commands go
//! before orders, so a user created in the same millisecond as its first order exists
//! when the order is decided.

use super::codec::{InputTopic, RawRecord};
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
        match record.topic {
            InputTopic::UserCommands => self.commands.push_back(record),
            InputTopic::Orders => self.orders.push_back(record),
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

    /// Drops everything buffered (after an aborted transaction the records are re-fetched).
    pub fn clear(&mut self) {
        self.commands.clear();
        self.orders.clear();
    }
}
