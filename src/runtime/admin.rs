//! Creates and verifies the topology's topics on the broker (`creditstream topics`).
//! Idempotent: existing topics are checked, not recreated; a topic with the wrong
//! partition count or a changelog that is not compacted is an error, never "fixed"
//! silently (repartitioning would move keys between partitions and break state).
//! The replication factor and `min.insync.replicas` come from `[kafka]` where set there
//! (so a deployment sets them for its cluster, whatever topology file its image holds),
//! else from the topology file and the broker's default; a replication factor larger than
//! the cluster's broker count is refused before anything is created.

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
    #[error(
        "replication factor {replication_factor} needs at least {replication_factor} brokers; the cluster has \
         {brokers} (set kafka.replication_factor, CREDITSTREAM__KAFKA__REPLICATION_FACTOR)"
    )]
    TooFewBrokers { replication_factor: i32, brokers: usize },
    #[error(
        "min.insync.replicas {min_insync_replicas} is above the replication factor {replication_factor}: no write \
         could ever be acknowledged"
    )]
    MinInsyncAboveReplication {
        min_insync_replicas: i32,
        replication_factor: i32,
    },
}

/// What `ensure_topics` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    pub name: String,
    pub partitions: u32,
    pub created: bool,
    pub cleanup_policy: String,
    /// Replicas of its first partition, as the broker reports them.
    pub replication_factor: usize,
    /// Its effective `min.insync.replicas` (`None` if the broker did not say).
    pub min_insync_replicas: Option<i32>,
}

impl TopicStatus {
    /// How many brokers may be away while writes (`acks=all`) to the topic still succeed.
    pub fn brokers_it_survives(&self) -> Option<usize> {
        let min = usize::try_from(self.min_insync_replicas?).ok()?;
        Some(self.replication_factor.saturating_sub(min))
    }
}

/// The replication settings topics are created with: `[kafka]`'s where set, else the
/// topology file's replication factor and the broker's own `min.insync.replicas`.
fn replication(kafka: &KafkaConfig, def: &TopologyDefinition) -> (i32, Option<i32>) {
    let factor = if kafka.replication_factor > 0 {
        kafka.replication_factor
    } else {
        def.replication_factor
    };
    (
        factor,
        (kafka.min_insync_replicas > 0).then_some(kafka.min_insync_replicas),
    )
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
    let (factor, min_insync) = replication(kafka, def);
    if let Some(min_insync_replicas) = min_insync.filter(|m| *m > factor) {
        return Err(AdminError::MinInsyncAboveReplication {
            min_insync_replicas,
            replication_factor: factor,
        });
    }
    let brokers = admin.inner().fetch_metadata(None, timeout)?.brokers().len();
    if usize::try_from(factor).unwrap_or(usize::MAX) > brokers {
        return Err(AdminError::TooFewBrokers {
            replication_factor: factor,
            brokers,
        });
    }
    let min_insync_text = min_insync.map(|m| m.to_string());
    let configs: Vec<_> = specs
        .iter()
        .map(|s| {
            let mut configs = topic_configs(s.role);
            if let Some(min) = &min_insync_text {
                configs.push(("min.insync.replicas", min.as_str()));
            }
            configs
        })
        .collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&configs)
        .map(|(spec, cfg)| {
            cfg.iter().fold(
                NewTopic::new(&spec.name, spec.partitions as i32, TopicReplication::Fixed(factor)),
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
    let described = topic_configs_of(admin, specs, options, timeout).await?;
    let mut statuses = Vec::new();
    for ((spec, (actual, replication_factor)), (cleanup_policy, min_insync_replicas)) in
        specs.iter().zip(counts).zip(described)
    {
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
            replication_factor,
            min_insync_replicas,
        });
    }
    Ok(statuses)
}

/// Each topic's `cleanup.policy` and `min.insync.replicas`, asked again while a
/// just-created topic's configs are not yet known to the broker that answers.
async fn topic_configs_of(
    admin: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
    options: &AdminOptions,
    timeout: Duration,
) -> Result<Vec<(String, Option<i32>)>, AdminError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let resources: Vec<_> = specs.iter().map(|s| ResourceSpecifier::Topic(&s.name)).collect();
        let described = admin.describe_configs(&resources, options).await?;
        let configs: Vec<(Option<String>, Option<i32>)> = described
            .into_iter()
            .map(|c| match c {
                Ok(c) => (
                    c.get("cleanup.policy").and_then(|e| e.value.clone()),
                    c.get("min.insync.replicas")
                        .and_then(|e| e.value.as_deref())
                        .and_then(|v| v.parse().ok()),
                ),
                Err(_) => (None, None),
            })
            .collect();
        if configs.iter().all(|(policy, _)| policy.is_some()) || std::time::Instant::now() >= deadline {
            return Ok(configs
                .into_iter()
                .map(|(policy, min)| (policy.unwrap_or_else(|| "unknown".to_string()), min))
                .collect());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The topic's partition count and the replica count of its first partition. A topic
/// created a moment ago may not be in the metadata yet (the broker propagates it
/// asynchronously), so an empty answer is asked again.
async fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<(usize, usize), AdminError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let metadata = admin.inner().fetch_metadata(Some(topic), timeout)?;
        let (count, replicas) = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or((0, 0), |t| {
                (
                    t.partitions().len(),
                    t.partitions().first().map_or(0, |p| p.replicas().len()),
                )
            });
        if count > 0 || std::time::Instant::now() >= deadline {
            return Ok((count, replicas));
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
