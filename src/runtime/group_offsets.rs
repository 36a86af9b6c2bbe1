//! Carries committed offsets from one consumer group to another, for an upgrade that moves
//! a consumer into another group (the seed bridge had a group of its own before it became
//! a sub-topology of the stream thread). Without it, the new group would read those topics
//! again from the beginning and repeat everything already done.
//! Invariant: only partitions the target group has no offset for are written, so running
//! it again, or after the new group made progress, changes nothing.

use crate::config::KafkaConfig;
use crate::runtime::{client, error_codes};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CarryOverError {
    #[error("reading committed offsets: {0}")]
    Read(KafkaError),
    /// The target group has members, so an outsider may not commit for it.
    #[error(
        "carrying committed offsets over to group {to} failed ({source}); stop every replica \
         of the previous version once, so that the group is empty when the first new one starts"
    )]
    Commit { to: String, source: KafkaError },
}

impl CarryOverError {
    /// Whether trying again can help: the broker did not answer yet (a coordinator still
    /// loading, a leader moving), as opposed to a refusal.
    pub fn is_retriable(&self) -> bool {
        match self {
            CarryOverError::Read(error) => matches!(
                error_codes::class_of(error),
                error_codes::Class::Transient | error_codes::Class::UnknownTopic
            ),
            CarryOverError::Commit { .. } => false,
        }
    }
}

/// Commits, for group `to`, the offsets group `from` committed on `partitions` where `to`
/// has none. Returns how many were carried over.
pub fn carry_over(
    kafka: &KafkaConfig,
    from: &str,
    to: &str,
    partitions: &TopicPartitionList,
) -> Result<usize, CarryOverError> {
    // One client of the target group reads its offsets and, if needed, commits for it.
    let target_client: BaseConsumer = client::consumer(kafka, to, true)
        .create()
        .map_err(CarryOverError::Read)?;
    let source_client: BaseConsumer = client::consumer(kafka, from, true)
        .create()
        .map_err(CarryOverError::Read)?;
    let target = target_client
        .committed_offsets(partitions.clone(), TIMEOUT)
        .map_err(CarryOverError::Read)?;
    let source = source_client
        .committed_offsets(partitions.clone(), TIMEOUT)
        .map_err(CarryOverError::Read)?;
    // A partition the broker did not answer for has no offset in the list: taken as "none
    // committed", it would be carried over onto an offset the target group has.
    for element in target.elements().iter().chain(source.elements().iter()) {
        element.error().map_err(CarryOverError::Read)?;
    }
    let mut carry = TopicPartitionList::new();
    for element in source.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let has_own = matches!(
            target.find_partition(topic, partition).map(|e| e.offset()),
            Some(Offset::Offset(_))
        );
        if let (Offset::Offset(offset), false) = (element.offset(), has_own) {
            carry
                .add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(CarryOverError::Read)?;
        }
    }
    if carry.count() == 0 {
        return Ok(0);
    }
    target_client
        .commit(&carry, CommitMode::Sync)
        .map_err(|source| CarryOverError::Commit {
            to: to.to_string(),
            source,
        })?;
    Ok(carry.count())
}
