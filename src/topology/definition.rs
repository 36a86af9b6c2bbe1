//! The credit-check topology as data (`topologies/credit-check.toml`): topic names,
//! partition count, the state store and its changelog, the processing guarantee.
//! Invariant: every topic of the topology has the same partition count, so inputs,
//! outputs and the changelog are co-partitioned by uid.

use super::codec::InputTopic;
use super::output::OutputTopic;
use super::task_id::SubTopology;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// How strongly outputs, state and consumed offsets are tied together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    /// Transactions: outputs, changelog and offsets commit atomically (Kafka Streams' default for us).
    ExactlyOnceV2,
    /// Offsets are committed after outputs are acknowledged; a crash may repeat work.
    AtLeastOnce,
}

impl ProcessingGuarantee {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingGuarantee::ExactlyOnceV2 => "exactly_once_v2",
            ProcessingGuarantee::AtLeastOnce => "at_least_once",
        }
    }
}

/// The topics the processor reads, keyed by uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub user_commands: String,
    pub orders: String,
}

/// The topics the processor writes, keyed by uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    pub decisions: String,
    pub user_changes: String,
    pub dead_letters: String,
}

/// The processor's state store and the compacted topic that backs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreDefinition {
    pub name: String,
    pub changelog: String,
    /// How long an order id is remembered, ms: a repeat within it is ignored, one after it
    /// is decided as a new order. Expired entries are deleted from the store and
    /// tombstoned on the changelog, so state stays bounded.
    #[serde(default = "default_dedup_retention_ms")]
    pub dedup_retention_ms: i64,
}

fn default_dedup_retention_ms() -> i64 {
    super::credit_check::DEFAULT_DEDUP_RETENTION_MS
}

/// The seed's unkeyed topics, repartitioned into the keyed inputs when enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedBridge {
    pub enabled: bool,
    /// The seed's topic of `{"uid":..,"amount":..}` orders.
    pub orders: String,
    /// The seed's topic of `{"type":"C",...}` user operations.
    pub users: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyDefinition {
    /// The consumer group and the prefix of transactional ids, as in Kafka Streams.
    pub application_id: String,
    pub partitions: u32,
    pub replication_factor: i32,
    pub processing_guarantee: ProcessingGuarantee,
    pub inputs: Inputs,
    pub outputs: Outputs,
    pub store: StoreDefinition,
    pub seed_bridge: SeedBridge,
}

/// What a topic is for; decides its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    Input,
    Output,
    Changelog,
    SeedInput,
}

/// A topic the topology needs, with its partition count and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub role: TopicRole,
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("topology file does not parse: {0}")]
    Parse(String),
    #[error("topology is invalid: {0}")]
    Invalid(String),
}

impl TopologyDefinition {
    pub fn from_toml(text: &str) -> Result<Self, DefinitionError> {
        let de = toml::Deserializer::new(text);
        let def: TopologyDefinition = serde_path_to_error::deserialize(de)
            .map_err(|e| DefinitionError::Parse(format!("at `{}`: {}", e.path(), e.inner())))?;
        def.validate()?;
        Ok(def)
    }

    /// The topology shipped in `topologies/credit-check.toml`, compiled in.
    pub fn builtin() -> Self {
        match Self::from_toml(include_str!("../../topologies/credit-check.toml")) {
            Ok(def) => def,
            Err(e) => unreachable!("the shipped topology file is invalid: {e}"),
        }
    }

    pub fn validate(&self) -> Result<(), DefinitionError> {
        if self.partitions == 0 || self.partitions > 10_000 {
            return Err(DefinitionError::Invalid(format!(
                "partitions must be 1..=10000, got {}",
                self.partitions
            )));
        }
        if self.replication_factor < 1 {
            return Err(DefinitionError::Invalid("replication_factor must be at least 1".into()));
        }
        if self.store.dedup_retention_ms <= 0 {
            return Err(DefinitionError::Invalid(
                "store.dedup_retention_ms must be positive".into(),
            ));
        }
        if self.application_id.trim().is_empty() {
            return Err(DefinitionError::Invalid("application_id must not be empty".into()));
        }
        let names = self.topics();
        for (i, a) in names.iter().enumerate() {
            if a.name.trim().is_empty() {
                return Err(DefinitionError::Invalid("topic names must not be empty".into()));
            }
            if names[i + 1..].iter().any(|b| b.name == a.name) {
                return Err(DefinitionError::Invalid(format!("topic {} is used twice", a.name)));
            }
        }
        Ok(())
    }

    /// Every topic of the topology: all co-partitioned with the same partition count.
    pub fn topics(&self) -> Vec<TopicSpec> {
        let spec = |name: &str, role| TopicSpec {
            name: name.to_string(),
            partitions: self.partitions,
            role,
        };
        let mut topics = vec![
            spec(&self.inputs.user_commands, TopicRole::Input),
            spec(&self.inputs.orders, TopicRole::Input),
            spec(&self.outputs.decisions, TopicRole::Output),
            spec(&self.outputs.user_changes, TopicRole::Output),
            spec(&self.outputs.dead_letters, TopicRole::Output),
            spec(&self.store.changelog, TopicRole::Changelog),
        ];
        if self.seed_bridge.enabled {
            topics.push(spec(&self.seed_bridge.orders, TopicRole::SeedInput));
            topics.push(spec(&self.seed_bridge.users, TopicRole::SeedInput));
        }
        topics
    }

    /// The name of an input topic.
    pub fn input_name(&self, topic: InputTopic) -> &str {
        match topic {
            InputTopic::UserCommands => &self.inputs.user_commands,
            InputTopic::Orders => &self.inputs.orders,
            InputTopic::SeedUsers => &self.seed_bridge.users,
            InputTopic::SeedOrders => &self.seed_bridge.orders,
        }
    }

    /// The input topic called `name`, if the topology reads one by that name.
    pub fn input_named(&self, name: &str) -> Option<InputTopic> {
        InputTopic::ALL
            .into_iter()
            .find(|&topic| self.input_name(topic) == name)
    }

    /// The name of an output topic.
    pub fn output_name(&self, topic: OutputTopic) -> &str {
        match topic {
            OutputTopic::Decisions => &self.outputs.decisions,
            OutputTopic::UserChanges => &self.outputs.user_changes,
            OutputTopic::DeadLetters => &self.outputs.dead_letters,
            OutputTopic::UserCommands => &self.inputs.user_commands,
            OutputTopic::Orders => &self.inputs.orders,
        }
    }

    /// The sub-topologies a replica runs: the credit check, and the seed bridge when the
    /// topology enables it and the replica is asked to run it.
    pub fn subtopologies(&self, run_seed_bridge: bool) -> Vec<SubTopology> {
        let mut subtopologies = vec![SubTopology::CreditCheck];
        if self.seed_bridge.enabled && run_seed_bridge {
            subtopologies.push(SubTopology::SeedBridge);
        }
        subtopologies
    }

    /// Every topic name prefixed, for tests that need topics of their own.
    pub fn with_topic_prefix(&self, prefix: &str) -> Self {
        let p = |name: &str| format!("{prefix}{name}");
        let mut def = self.clone();
        def.application_id = p(&def.application_id);
        def.inputs.user_commands = p(&def.inputs.user_commands);
        def.inputs.orders = p(&def.inputs.orders);
        def.outputs.decisions = p(&def.outputs.decisions);
        def.outputs.user_changes = p(&def.outputs.user_changes);
        def.outputs.dead_letters = p(&def.outputs.dead_letters);
        def.store.changelog = p(&def.store.changelog);
        def.seed_bridge.orders = p(&def.seed_bridge.orders);
        def.seed_bridge.users = p(&def.seed_bridge.users);
        def
    }

    /// The topology in the layout of Kafka Streams' `Topology#describe()`.
    pub fn describe(&self) -> String {
        let o = &self.outputs;
        let mut s = String::from("Topologies:\n");
        let _ = writeln!(s, "   Sub-topology: 0");
        let _ = writeln!(
            s,
            "    Source: user-commands-source (topics: [{}])",
            self.inputs.user_commands
        );
        let _ = writeln!(s, "      --> credit-check");
        let _ = writeln!(s, "    Source: orders-source (topics: [{}])", self.inputs.orders);
        let _ = writeln!(s, "      --> credit-check");
        let _ = writeln!(s, "    Processor: credit-check (stores: [{}])", self.store.name);
        let _ = writeln!(s, "      --> decisions-sink, user-changes-sink, dead-letters-sink");
        let _ = writeln!(s, "      <-- user-commands-source, orders-source");
        for (sink, topic) in [
            ("decisions-sink", &o.decisions),
            ("user-changes-sink", &o.user_changes),
            ("dead-letters-sink", &o.dead_letters),
        ] {
            let _ = writeln!(s, "    Sink: {sink} (topic: {topic})");
            let _ = writeln!(s, "      <-- credit-check");
        }
        if self.seed_bridge.enabled {
            let b = &self.seed_bridge;
            let _ = writeln!(s, "\n   Sub-topology: 1 (seed bridge: selectKey(uid) + repartition)");
            let _ = writeln!(s, "    Source: seed-orders-source (topics: [{}])", b.orders);
            let _ = writeln!(s, "      --> seed-orders-select-key");
            let _ = writeln!(s, "    Processor: seed-orders-select-key (stores: [])");
            let _ = writeln!(s, "      --> orders-repartition-sink");
            let _ = writeln!(s, "      <-- seed-orders-source");
            let _ = writeln!(s, "    Sink: orders-repartition-sink (topic: {})", self.inputs.orders);
            let _ = writeln!(s, "      <-- seed-orders-select-key");
            let _ = writeln!(s, "    Source: seed-users-source (topics: [{}])", b.users);
            let _ = writeln!(s, "      --> seed-users-select-key");
            let _ = writeln!(s, "    Processor: seed-users-select-key (stores: [])");
            let _ = writeln!(s, "      --> user-commands-repartition-sink");
            let _ = writeln!(s, "      <-- seed-users-source");
            let _ = writeln!(
                s,
                "    Sink: user-commands-repartition-sink (topic: {})",
                self.inputs.user_commands
            );
            let _ = writeln!(s, "      <-- seed-users-select-key");
        }
        let _ = writeln!(
            s,
            "\n   Partitions: {} per topic, co-partitioned by uid; changelog {} (compacted); guarantee {}",
            self.partitions,
            self.store.changelog,
            self.processing_guarantee.as_str()
        );
        s
    }
}
