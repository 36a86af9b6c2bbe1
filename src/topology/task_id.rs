//! Sub-topologies and tasks, as in Kafka Streams. Sub-topology 0 is the credit check: it
//! reads the user commands and the orders, keyed by uid, and owns the state store.
//! Sub-topology 1 is the seed bridge: it reads the seed's unkeyed topics, holds no state,
//! and writes their records, keyed, into sub-topology 0's inputs (a repartition).
//! Task `s_p` processes partition p of every source topic of sub-topology s; each
//! sub-topology's sources have one partition count, so a task's inputs are co-partitioned.

use super::codec::InputTopic;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubTopology {
    CreditCheck = 0,
    SeedBridge = 1,
}

impl SubTopology {
    /// The source topics, user operations first (see [`InputTopic::slot`]).
    pub fn sources(self) -> [InputTopic; 2] {
        match self {
            SubTopology::CreditCheck => [InputTopic::UserCommands, InputTopic::Orders],
            SubTopology::SeedBridge => [InputTopic::SeedUsers, InputTopic::SeedOrders],
        }
    }

    /// Whether its tasks own a change-logged state store.
    pub fn has_store(self) -> bool {
        self == SubTopology::CreditCheck
    }
}

/// One task: a sub-topology and a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: SubTopology,
    pub partition: u32,
}

impl TaskId {
    /// The task that reads `partition` of `topic`.
    pub fn of(topic: InputTopic, partition: u32) -> Self {
        Self {
            subtopology: topic.subtopology(),
            partition,
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology as u8, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_is_a_source_of_its_own_subtopology_at_its_slot() {
        for topic in InputTopic::ALL {
            assert_eq!(topic.subtopology().sources()[topic.slot()], topic);
        }
        assert_eq!(InputTopic::ALL.map(InputTopic::index), [0, 1, 2, 3]);
    }

    #[test]
    fn tasks_are_named_as_kafka_streams_names_them() {
        assert_eq!(TaskId::of(InputTopic::Orders, 3).to_string(), "0_3");
        assert_eq!(TaskId::of(InputTopic::SeedUsers, 0).to_string(), "1_0");
    }
}
