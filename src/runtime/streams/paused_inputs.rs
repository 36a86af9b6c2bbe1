//! Which input partitions the stream thread's consumer has paused, and why: a task that
//! is restoring reads nothing yet, and a task that holds `max_buffered` records of one
//! input while it waits for the other stops fetching the first, so waiting never buffers
//! without bound. Pausing keeps the consumer's position; resuming fetches from there.
//! Invariant: the consumer's paused set is exactly the last set applied here.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use std::collections::BTreeSet;

/// An input partition: topic name and partition.
pub type InputPartition = (String, i32);

#[derive(Debug, Default)]
pub struct PausedInputs {
    paused: BTreeSet<InputPartition>,
}

impl PausedInputs {
    pub fn contains(&self, partition: &InputPartition) -> bool {
        self.paused.contains(partition)
    }

    /// Pauses and resumes so that exactly `wanted` is paused.
    pub fn apply<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        wanted: BTreeSet<InputPartition>,
    ) -> Result<(), KafkaError> {
        let to_list = |set: &mut dyn Iterator<Item = &InputPartition>| {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in set {
                tpl.add_partition(topic, *partition);
            }
            tpl
        };
        let pause = to_list(&mut wanted.difference(&self.paused));
        let resume = to_list(&mut self.paused.difference(&wanted));
        if pause.count() > 0 {
            tracing::debug!(partitions = ?pause, "pausing inputs");
            consumer.pause(&pause)?;
        }
        if resume.count() > 0 {
            tracing::debug!(partitions = ?resume, "resuming inputs");
            consumer.resume(&resume)?;
        }
        self.paused = wanted;
        Ok(())
    }

    /// Forgets partitions that left the consumer's assignment (they are not paused any more).
    pub fn forget(&mut self, gone: &BTreeSet<InputPartition>) {
        self.paused.retain(|p| !gone.contains(p));
    }

    pub fn len(&self) -> usize {
        self.paused.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paused.is_empty()
    }
}
