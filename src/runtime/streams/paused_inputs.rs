//! Which input partitions the stream thread's consumer has paused, and why: a task that
//! is restoring reads nothing yet, and a task that holds `max_buffered` records of one
//! input while it waits for the other stops fetching the first, so waiting never buffers
//! without bound. Pausing keeps the consumer's position; resuming fetches from there.
//! Invariant: the set here is exactly what librdkafka has paused: a partition whose pause
//! or resume librdkafka refused keeps its old state here too; a partition leaves the
//! consumer's assignment resumed.

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

    /// Pauses and resumes so that exactly `wanted` is paused. librdkafka answers for each
    /// partition in the list: one it could not pause (or resume) keeps its old state here
    /// too, and is tried again on the next call.
    pub fn apply<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        wanted: BTreeSet<InputPartition>,
    ) -> Result<(), KafkaError> {
        let pause = to_list(wanted.difference(&self.paused));
        let resume = to_list(self.paused.difference(&wanted));
        if pause.count() > 0 {
            tracing::debug!(partitions = ?pause, "pausing inputs");
            consumer.pause(&pause)?;
            self.paused.extend(succeeded(&pause));
        }
        if resume.count() > 0 {
            tracing::debug!(partitions = ?resume, "resuming inputs");
            consumer.resume(&resume)?;
            for partition in succeeded(&resume) {
                self.paused.remove(&partition);
            }
        }
        Ok(())
    }

    /// Resumes the paused partitions of `gone`, which are about to leave the consumer's
    /// assignment: librdkafka keeps an application's pause through unassign, so a
    /// partition given up paused would come back paused in a later assignment and never
    /// be fetched. Call it before the unassign.
    pub fn release<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        gone: &BTreeSet<InputPartition>,
    ) -> Result<(), KafkaError> {
        let resume = to_list(self.paused.intersection(gone));
        self.paused.retain(|p| !gone.contains(p));
        if resume.count() > 0 {
            tracing::debug!(partitions = ?resume, "resuming inputs before they are given up");
            consumer.resume(&resume)?;
            if succeeded(&resume).len() < resume.count() {
                // Left paused in librdkafka, they would come back paused.
                tracing::error!("inputs given up paused; they will not be fetched if assigned here again");
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.paused.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paused.is_empty()
    }
}

fn to_list<'a>(partitions: impl Iterator<Item = &'a InputPartition>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

/// The partitions of `tpl` librdkafka did not mark with an error (pause and resume write
/// each partition's outcome into the list they were given); the others are logged.
fn succeeded(tpl: &TopicPartitionList) -> BTreeSet<InputPartition> {
    let mut done = BTreeSet::new();
    for element in tpl.elements() {
        let partition = (element.topic().to_string(), element.partition());
        match element.error() {
            Ok(()) => {
                done.insert(partition);
            }
            Err(error) => tracing::warn!(
                topic = partition.0,
                partition = partition.1,
                %error,
                "librdkafka refused to pause or resume the partition"
            ),
        }
    }
    done
}
