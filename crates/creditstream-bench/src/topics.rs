//! The topics of one run: created fresh under the run's own prefix (so runs never share
//! a topic), filled with the users and the backlog before a system starts, and deleted
//! afterwards with the changelog the system wrote (the peer names its own).

use crate::error::BenchError;
use crate::load::Loader;
use crate::options::{BenchOptions, System};
use crate::workload::Workload;
use creditstream::config::{Config, KafkaConfig};
use creditstream::runtime::{admin, client};
use creditstream::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use std::path::PathBuf;

/// The Kafka Streams peer's store; its changelog is `<application.id>-credit-state-changelog`.
const PEER_STORE: &str = "credit-state";

/// Fresh topics named after `tag`, with `guarantee`, and the topology file for the
/// children in the run's own folder.
pub fn prepare(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    tag: &str,
    guarantee: ProcessingGuarantee,
) -> Result<(TopologyDefinition, PathBuf), BenchError> {
    let mut def = base.with_topic_prefix(&format!("{tag}-"));
    def.processing_guarantee = guarantee;
    def.seed_bridge.enabled = false;
    tokio::runtime::Handle::current().block_on(admin::ensure_topics(&config.kafka, &def))?;
    let dir = opts.work_dir.join(tag);
    std::fs::create_dir_all(&dir)?;
    let topology = toml::to_string(&def).map_err(|e| BenchError::Setup(e.to_string()))?;
    std::fs::write(dir.join("topology.toml"), topology)?;
    Ok((def, dir))
}

/// The changelog a system writes for the run's topology.
pub fn changelog_of(system: System, def: &TopologyDefinition) -> String {
    match system {
        System::KafkaStreams => format!("{}-{PEER_STORE}-changelog", def.application_id),
        System::Creditstream | System::Passthrough => def.store.changelog.clone(),
    }
}

/// Deletes the run's topics, the peer's changelog among them; a failure only leaves topics behind.
pub fn clean_up(kafka: &KafkaConfig, def: &TopologyDefinition, system: System) {
    let runtime = tokio::runtime::Handle::current();
    let _ = runtime.block_on(admin::delete_topics(kafka, def));
    if system == System::KafkaStreams {
        let name = changelog_of(system, def);
        if let Ok(admin) = client::base(kafka).create::<AdminClient<DefaultClientContext>>() {
            let _ = runtime.block_on(admin.delete_topics(&[name.as_str()], &AdminOptions::new()));
        }
    }
}

/// Produces the users, then orders 0..`orders`.
pub fn produce_input(
    loader: &Loader,
    def: &TopologyDefinition,
    workload: &Workload,
    orders: u64,
) -> Result<(), BenchError> {
    let partitions = def.partitions;
    loader.produce(&def.inputs.user_commands, workload.users as usize, None, |i| {
        workload.user_record(i as u64, partitions)
    })?;
    loader.produce(&def.inputs.orders, orders as usize, None, |i| {
        workload.order_record(i as u64, partitions)
    })?;
    Ok(())
}
