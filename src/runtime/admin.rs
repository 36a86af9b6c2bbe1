//! Creates and verifies the topology's topics on the broker (`creditstream topics`).
//! Idempotent: existing topics are checked, not recreated; a topic with the wrong
//! partition count or a changelog that is not compacted is an error, never "fixed"
//! silently (repartitioning would move keys between partitions and break state).

use crate::config::KafkaConfig;
use crate::runtime::client;
use crate::topology::definition::{TopicRole, TopicSpec, TopologyDefinition};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("kafka admin: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {topic} has {actual} partitions, the topology needs {expected}")]
    PartitionMismatch {
        topic: String,
        expected: u32,
        actual: usize,
    },
    #[error("topic {topic} has cleanup.policy={actual}, the changelog must be compacted")]
    NotCompacted { topic: String, actual: String },
    #[error("creating topic {topic}: {message}")]
    Create { topic: String, message: String },
}

/// What `ensure_topics` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    pub name: String,
    pub partitions: u32,
    pub created: bool,
    pub cleanup_policy: String,
}

fn topic_configs(role: TopicRole) -> Vec<(&'static str, &'static str)> {
    match role {
        TopicRole::Changelog => vec![("cleanup.policy", "compact"), ("min.compaction.lag.ms", "0")],
        _ => vec![("cleanup.policy", "delete")],
    }
}

fn admin(kafka: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, AdminError> {
    Ok(client::base(kafka).create()?)
}

/// Creates missing topics, then verifies every topic's partitions and cleanup policy.
pub async fn ensure_topics(kafka: &KafkaConfig, def: &TopologyDefinition) -> Result<Vec<TopicStatus>, AdminError> {
    let admin = admin(kafka)?;
    let timeout = Duration::from_millis(kafka.admin_timeout_ms);
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let specs = def.topics();
    let configs: Vec<_> = specs.iter().map(|s| topic_configs(s.role)).collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&configs)
        .map(|(spec, cfg)| {
            cfg.iter().fold(
                NewTopic::new(
                    &spec.name,
                    spec.partitions as i32,
                    TopicReplication::Fixed(def.replication_factor),
                ),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let mut created = Vec::new();
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(AdminError::Create {
                    topic,
                    message: code.to_string(),
                })
            }
        }
    }
    verify(&admin, kafka, &specs, &created, &options).await
}

async fn verify(
    admin: &AdminClient<DefaultClientContext>,
    kafka: &KafkaConfig,
    specs: &[TopicSpec],
    created: &[String],
    options: &AdminOptions,
) -> Result<Vec<TopicStatus>, AdminError> {
    let timeout = Duration::from_millis(kafka.admin_timeout_ms);
    let mut counts = Vec::new();
    for spec in specs {
        counts.push(partition_count(admin, &spec.name, timeout).await?);
    }
    let policies = cleanup_policies(admin, specs, options, timeout).await?;
    let mut statuses = Vec::new();
    for ((spec, actual), cleanup_policy) in specs.iter().zip(counts).zip(policies) {
        if actual != spec.partitions as usize {
            return Err(AdminError::PartitionMismatch {
                topic: spec.name.clone(),
                expected: spec.partitions,
                actual,
            });
        }
        if spec.role == TopicRole::Changelog && !cleanup_policy.contains("compact") {
            return Err(AdminError::NotCompacted {
                topic: spec.name.clone(),
                actual: cleanup_policy,
            });
        }
        statuses.push(TopicStatus {
            name: spec.name.clone(),
            partitions: spec.partitions,
            created: created.contains(&spec.name),
            cleanup_policy,
        });
    }
    Ok(statuses)
}

/// Each topic's `cleanup.policy`, asked again while a just-created topic's configs are not
/// yet known to the broker that answers.
async fn cleanup_policies(
    admin: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
    options: &AdminOptions,
    timeout: Duration,
) -> Result<Vec<String>, AdminError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let resources: Vec<_> = specs.iter().map(|s| ResourceSpecifier::Topic(&s.name)).collect();
        let described = admin.describe_configs(&resources, options).await?;
        let policies: Vec<Option<String>> = described
            .into_iter()
            .map(|c| {
                c.ok()
                    .and_then(|c| c.get("cleanup.policy").and_then(|e| e.value.clone()))
            })
            .collect();
        if policies.iter().all(Option::is_some) || std::time::Instant::now() >= deadline {
            return Ok(policies
                .into_iter()
                .map(|p| p.unwrap_or_else(|| "unknown".to_string()))
                .collect());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The topic's partition count. A topic created a moment ago may not be in the metadata
/// yet (the broker propagates it asynchronously), so an empty answer is asked again.
async fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<usize, AdminError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let metadata = admin.inner().fetch_metadata(Some(topic), timeout)?;
        let count = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if count > 0 || std::time::Instant::now() >= deadline {
            return Ok(count);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes the topology's topics (tests clean up after themselves with this).
pub async fn delete_topics(kafka: &KafkaConfig, def: &TopologyDefinition) -> Result<(), AdminError> {
    let admin = admin(kafka)?;
    let names: Vec<String> = def.topics().into_iter().map(|t| t.name).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    admin.delete_topics(&refs, &AdminOptions::new()).await?;
    Ok(())
}
