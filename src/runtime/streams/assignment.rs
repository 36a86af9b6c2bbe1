//! Co-partitioning by design: how the group's assignment becomes tasks. The group assigns
//! one topic, the credit check's leader (orders); every other input partition p follows
//! partition p of the leader onto the same consumer, as Kafka Streams' restore consumer
//! follows its tasks: the credit check's user commands, and, on a replica that runs the
//! seed bridge, both of the seed's topics (task 1_p sits beside task 0_p). Whatever the
//! assignor decides, the inputs of a task are read by the one replica that owns the task,
//! a rebalance moves whole tasks, and the credit-check tasks are what the group balances:
//! with the seed's topics in the subscription, librdkafka's cooperative-sticky assignor
//! balanced partition counts over both topics, and two replicas could end with every
//! credit-check task on one of them.
//!
//! Invariant: every topic of the topology has the topology's partition count. It is
//! checked before the replica joins the group and again on every assignment and every
//! housekeeping round; a replica that finds otherwise stops with
//! [`StreamsError::CoPartitioning`] instead of reading one task's inputs on two replicas.

use super::error::StreamsError;
use crate::topology::codec::InputTopic;
use crate::topology::definition::TopologyDefinition;
use crate::topology::task_id::{SubTopology, TaskId};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;
use std::time::Duration;

/// The source the group assigns: the credit check's orders. Every other source follows it.
pub fn leader() -> InputTopic {
    SubTopology::CreditCheck.sources()[1]
}

/// The topics the replica subscribes to: the leader alone, whatever sub-topologies it runs.
pub fn subscription(def: &TopologyDefinition) -> Vec<String> {
    vec![def.input_name(leader()).to_string()]
}

/// The tasks of an assignment (or revocation) of leader partitions, sorted, and every
/// partition they read (the leaders and their followers): for leader partition p, task
/// p of every sub-topology the replica runs. A partition the topology does not have (its
/// topic grew) is a co-partitioning error.
pub fn tasks_of(
    def: &TopologyDefinition,
    subtopologies: &[SubTopology],
    leaders: &TopicPartitionList,
) -> Result<(Vec<TaskId>, TopicPartitionList), StreamsError> {
    let mut tasks = Vec::new();
    for element in leaders.elements() {
        if def.input_named(element.topic()) != Some(leader()) {
            continue;
        }
        let partition = u32::try_from(element.partition()).unwrap_or(u32::MAX);
        if partition >= def.partitions {
            return Err(StreamsError::CoPartitioning {
                topic: element.topic().to_string(),
                expected: def.partitions,
                found: format!("partition {} assigned", element.partition()),
            });
        }
        tasks.extend(
            subtopologies
                .iter()
                .map(|&subtopology| TaskId { subtopology, partition }),
        );
    }
    tasks.sort_unstable();
    tasks.dedup();
    Ok((tasks.clone(), partitions_of(def, &tasks)))
}

/// Every input partition the tasks read.
pub fn partitions_of(def: &TopologyDefinition, tasks: &[TaskId]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for task in tasks {
        for topic in task.subtopology.sources() {
            tpl.add_partition(def.input_name(topic), task.partition as i32);
        }
    }
    tpl
}

/// What the broker says of one topic's partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicCount {
    Missing,
    Partitions(usize),
}

/// Checks every topic of the topology against its partition count, one metadata call per
/// topic, each bounded by `timeout`. A missing topic is `Ok(Some(name))`: the caller may wait
/// for it to be created. Once `stop` says so between two calls it gives up, `Ok(None)`.
pub fn verify_partition_counts<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    def: &TopologyDefinition,
    timeout: Duration,
    stop: impl Fn() -> bool,
) -> Result<Option<String>, StreamsError> {
    let mut counts = Vec::new();
    for spec in def.topics() {
        if stop() {
            return Ok(None);
        }
        counts.push((spec.name.clone(), partition_count(consumer, &spec.name, timeout)?));
    }
    check_counts(def.partitions, &counts)
}

/// The pure half of [`verify_partition_counts`].
pub fn check_counts(expected: u32, counts: &[(String, TopicCount)]) -> Result<Option<String>, StreamsError> {
    let mut missing = None;
    for (topic, count) in counts {
        match count {
            TopicCount::Missing => {
                missing.get_or_insert_with(|| topic.clone());
            }
            TopicCount::Partitions(n) if *n == expected as usize => {}
            TopicCount::Partitions(n) => {
                return Err(StreamsError::CoPartitioning {
                    topic: topic.clone(),
                    expected,
                    found: format!("{n} partitions"),
                })
            }
        }
    }
    Ok(missing)
}

fn partition_count<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<TopicCount, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().first() else {
        return Ok(TopicCount::Missing);
    };
    match found.error().map(RDKafkaErrorCode::from) {
        None if !found.partitions().is_empty() => Ok(TopicCount::Partitions(found.partitions().len())),
        None | Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::LeaderNotAvailable) => {
            Ok(TopicCount::Missing)
        }
        // Not a topic still to come: an authorization error, say, stops the replica.
        Some(code) => Err(KafkaError::MetadataFetch(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> TopologyDefinition {
        let mut def = TopologyDefinition::builtin();
        def.partitions = 6;
        def
    }

    #[test]
    fn each_leader_partition_brings_its_followers_and_the_seed_bridge_task_beside_it() {
        let def = def();
        let mut leaders = TopicPartitionList::new();
        leaders.add_partition(&def.inputs.orders, 4);
        // Not the leader (an older replica subscribed to it): no task of its own.
        leaders.add_partition(&def.seed_bridge.orders, 1);
        let subs = [SubTopology::CreditCheck, SubTopology::SeedBridge];
        let (tasks, partitions) = tasks_of(&def, &subs, &leaders).unwrap();
        assert_eq!(
            tasks.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["0_4", "1_4"]
        );
        let mut read: Vec<(String, i32)> = partitions
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        read.sort();
        let mut expected = vec![
            (def.inputs.orders.clone(), 4),
            (def.inputs.user_commands.clone(), 4),
            (def.seed_bridge.orders.clone(), 4),
            (def.seed_bridge.users.clone(), 4),
        ];
        expected.sort();
        assert_eq!(read, expected);
        // A sub-topology this replica does not run brings no task.
        let (tasks, _) = tasks_of(&def, &subs[..1], &leaders).unwrap();
        assert_eq!(tasks.iter().map(ToString::to_string).collect::<Vec<_>>(), ["0_4"]);
    }

    #[test]
    fn the_group_balances_credit_check_tasks_alone() {
        let def = def();
        assert_eq!(subscription(&def), vec![def.inputs.orders.to_string()]);
    }

    #[test]
    fn a_partition_beyond_the_topology_is_refused() {
        let def = def();
        let mut leaders = TopicPartitionList::new();
        leaders.add_partition(&def.inputs.orders, 7);
        let error = tasks_of(&def, &[SubTopology::CreditCheck], &leaders).unwrap_err();
        assert!(matches!(error, StreamsError::CoPartitioning { .. }));
        assert!(!error.is_retriable());
    }

    #[test]
    fn unequal_counts_are_refused_and_missing_topics_reported() {
        let counts = |n: usize| {
            vec![
                ("a".to_string(), TopicCount::Partitions(6)),
                ("b".to_string(), TopicCount::Missing),
                ("c".to_string(), TopicCount::Partitions(n)),
            ]
        };
        assert_eq!(check_counts(6, &counts(6)).unwrap(), Some("b".to_string()));
        let error = check_counts(6, &counts(12)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "topic c has 12 partitions where the topology needs 6 (inputs, outputs and changelog must be co-partitioned)"
        );
    }
}
