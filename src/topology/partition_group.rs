//! Merges the records of one task's input partitions in timestamp order, as Kafka
//! Streams' partition group does: of the records buffered, the one with the smallest
//! timestamp goes first; each topic keeps its offset order. On a tie, user operations go
//! before orders (see `InputTopic::slot`), so a user created in the same millisecond as
//! its first order exists when the order is decided.
//!
//! Invariant: a record is never taken ahead of one that may precede it. When one input
//! has nothing buffered but its partition is known to hold records not fetched yet, the
//! merge waits for them (the caller bounds the wait, as Kafka Streams' `max.task.idle.ms`
//! does), so a user's create is decided before an order it precedes, under any lag.

use super::codec::RawRecord;
use std::collections::VecDeque;

/// What [`PartitionGroup::pop`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop {
    Record(RawRecord),
    /// One input is empty here but holds unfetched records: wait for them.
    Waiting,
    Empty,
}

/// The buffered, not yet processed records of one task, by input slot.
#[derive(Debug, Default)]
pub struct PartitionGroup {
    inputs: [VecDeque<RawRecord>; 2],
}

impl PartitionGroup {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, record: RawRecord) {
        self.inputs[record.topic.slot()].push_back(record);
    }

    pub fn len(&self) -> usize {
        self.inputs.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records buffered of the input at `slot`.
    pub fn buffered(&self, slot: usize) -> usize {
        self.inputs[slot].len()
    }

    /// The next record in timestamp order. `lagging(slot)` tells whether the input at
    /// `slot` has records on the broker that were not fetched yet; it is asked only for an
    /// input with nothing buffered while the other has records.
    pub fn pop(&mut self, mut lagging: impl FnMut(usize) -> bool) -> Pop {
        let slot = match (self.inputs[0].front(), self.inputs[1].front()) {
            (Some(c), Some(o)) => usize::from(c.meta.timestamp_ms > o.meta.timestamp_ms),
            (Some(_), None) if lagging(1) => return Pop::Waiting,
            (None, Some(_)) if lagging(0) => return Pop::Waiting,
            (Some(_), None) => 0,
            (None, Some(_)) => 1,
            (None, None) => return Pop::Empty,
        };
        match self.inputs[slot].pop_front() {
            Some(record) => Pop::Record(record),
            None => Pop::Empty,
        }
    }

    /// Drops everything buffered (after an aborted transaction the records are re-fetched).
    pub fn clear(&mut self) {
        for input in &mut self.inputs {
            input.clear();
        }
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

    fn drain(group: &mut PartitionGroup, lagging: [bool; 2]) -> (Vec<(InputTopic, i64)>, Pop) {
        let mut out = Vec::new();
        loop {
            match group.pop(|slot| lagging[slot]) {
                Pop::Record(r) => out.push((r.topic, r.meta.offset)),
                other => return (out, other),
            }
        }
    }

    #[test]
    fn merges_by_timestamp_with_commands_first_on_a_tie() {
        let mut group = PartitionGroup::new();
        group.push(record(InputTopic::Orders, 0, 10));
        group.push(record(InputTopic::Orders, 1, 30));
        group.push(record(InputTopic::UserCommands, 0, 10));
        group.push(record(InputTopic::UserCommands, 1, 20));
        let (order, end) = drain(&mut group, [false, false]);
        assert_eq!(
            order,
            [
                (InputTopic::UserCommands, 0),
                (InputTopic::Orders, 0),
                (InputTopic::UserCommands, 1),
                (InputTopic::Orders, 1)
            ]
        );
        assert_eq!(end, Pop::Empty);
    }

    #[test]
    fn an_order_waits_while_the_commands_partition_holds_unfetched_records() {
        let mut group = PartitionGroup::new();
        group.push(record(InputTopic::Orders, 0, 50));
        assert_eq!(drain(&mut group, [true, false]), (vec![], Pop::Waiting));
        assert_eq!(group.buffered(1), 1);
        // The create arrives (older than the order): it goes first; while more commands
        // lag the order waits on, and once the commands are caught up it goes too.
        group.push(record(InputTopic::UserCommands, 7, 40));
        assert_eq!(
            drain(&mut group, [true, false]),
            (vec![(InputTopic::UserCommands, 7)], Pop::Waiting)
        );
        assert_eq!(
            drain(&mut group, [false, false]),
            (vec![(InputTopic::Orders, 0)], Pop::Empty)
        );
    }

    #[test]
    fn a_command_waits_for_unfetched_orders_too_and_nothing_waits_without_lag() {
        let mut group = PartitionGroup::new();
        group.push(record(InputTopic::UserCommands, 0, 5));
        assert_eq!(drain(&mut group, [false, true]), (vec![], Pop::Waiting));
        assert_eq!(drain(&mut group, [false, false]).0, [(InputTopic::UserCommands, 0)]);
    }

    #[test]
    fn lag_is_asked_only_of_an_empty_input_beside_a_full_one() {
        let mut group = PartitionGroup::new();
        let mut asked = Vec::new();
        assert_eq!(
            group.pop(|slot| {
                asked.push(slot);
                true
            }),
            Pop::Empty
        );
        group.push(record(InputTopic::Orders, 0, 1));
        group.push(record(InputTopic::UserCommands, 0, 1));
        let _ = group.pop(|slot| {
            asked.push(slot);
            true
        });
        assert!(asked.is_empty());
    }
}
