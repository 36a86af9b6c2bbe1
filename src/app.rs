//! Wires the components into the subcommands: each runs until its shutdown signal, then
//! stops in order (ingest stops accepting, the processor commits and leaves its group,
//! the sink writes and commits what it read).

use crate::config::Config;
use crate::ingest;
use crate::metrics;
use crate::runtime::{admin, group_offsets, streams};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sink::consumer as source;
use crate::sink::{self, schema, writer::MySqlWriter};
use crate::topology::credit_topology::CreditTopology;
use crate::topology::definition::TopologyDefinition;
use std::net::SocketAddr;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error("processor: {0}")]
    Processor(#[from] streams::StreamsError),
    #[error("sink: {0}")]
    Sink(#[from] source::SourceError),
    #[error(transparent)]
    Db(#[from] sink::DbError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("upgrade: {0}")]
    Upgrade(#[from] group_offsets::CarryOverError),
    #[error("metrics endpoint: {0}")]
    Metrics(String),
    #[error("a component thread panicked")]
    Panicked,
    #[error("{0}")]
    Usage(String),
}

async fn serve_metrics(listen: &str, shutdown: Shutdown) -> Result<(), AppError> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| AppError::Metrics(format!("{listen} is not an address")))?;
    metrics::serve(addr, shutdown.wait())
        .await
        .map_err(|e| AppError::Metrics(e.to_string()))
}

/// Serves `/metrics` on `listen` until shutdown, on its own task.
fn spawn_metrics(listen: &str, trigger: &ShutdownTrigger) -> tokio::task::JoinHandle<Result<(), AppError>> {
    let (listen, shutdown) = (listen.to_string(), trigger.subscribe());
    tokio::spawn(async move { serve_metrics(&listen, shutdown).await })
}

/// `creditstream process`: the stream thread, which runs the credit check and, when the
/// topology enables it and this replica is asked to, the seed bridge, in one transaction.
pub async fn process(
    config: &Config,
    def: TopologyDefinition,
    trigger: &ShutdownTrigger,
    with_metrics: bool,
) -> Result<(), AppError> {
    let metrics_task = with_metrics.then(|| spawn_metrics(&config.processor.metrics_listen, trigger));
    if def.seed_bridge.enabled && config.processor.run_seed_bridge {
        adopt_former_bridge_offsets(config, &def).await?;
    }
    let (kafka, cfg, shutdown) = (config.kafka.clone(), config.processor.clone(), trigger.subscribe());
    let topology = CreditTopology::new(&def);
    let result = tokio::task::spawn_blocking(move || streams::run(kafka, cfg, def, topology, shutdown)).await;
    trigger.trigger();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    Ok(result.map_err(|_| AppError::Panicked)??)
}

/// The seed bridge used to consume in a group of its own, `<application_id>-seed-bridge`;
/// as a sub-topology of the stream thread it reads in the application's group. Its committed
/// seed offsets are carried over once, so an upgrade does not bridge the seed's records again.
async fn adopt_former_bridge_offsets(config: &Config, def: &TopologyDefinition) -> Result<(), AppError> {
    let mut partitions = rdkafka::TopicPartitionList::new();
    for topic in [&def.seed_bridge.orders, &def.seed_bridge.users] {
        for p in 0..def.partitions {
            partitions.add_partition(topic, p as i32);
        }
    }
    let (kafka, group) = (config.kafka.clone(), def.application_id.clone());
    let carried = tokio::task::spawn_blocking(move || {
        group_offsets::carry_over(&kafka, &format!("{group}-seed-bridge"), &group, &partitions)
    })
    .await
    .map_err(|_| AppError::Panicked)??;
    if carried > 0 {
        info!(carried, "seed offsets of the former seed bridge group carried over");
    }
    Ok(())
}

/// `creditstream sink`: schema, then the Kafka-fed MySQL writer.
pub async fn sink(
    config: &Config,
    def: TopologyDefinition,
    trigger: &ShutdownTrigger,
    with_metrics: bool,
) -> Result<(), AppError> {
    let metrics_task = with_metrics.then(|| spawn_metrics(&config.sink.metrics_listen, trigger));
    let pool = sink::pool(&config.mysql)?;
    let version = schema::apply(&pool).await?;
    info!(version, "schema ready");
    let mut writer = MySqlWriter::new(pool.clone());
    let result = source::run(&config.kafka, &config.sink, &def, &mut writer, trigger.subscribe()).await;
    trigger.trigger();
    let _ = pool.disconnect().await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    Ok(result?)
}

/// `creditstream ingest`: the HTTP endpoint (which also serves /metrics).
pub async fn ingest(config: &Config, def: TopologyDefinition, trigger: &ShutdownTrigger) -> Result<(), AppError> {
    let result = ingest::run(config, def, trigger.subscribe(), |addr| info!(%addr, "ingest ready")).await;
    trigger.trigger();
    Ok(result?)
}

/// `creditstream all`: the three in one process; the ingest's port serves every metric.
pub async fn all(config: &Config, def: TopologyDefinition, trigger: &ShutdownTrigger) -> Result<(), AppError> {
    admin::ensure_topics(&config.kafka, &def).await?;
    let (a, b, c) = tokio::join!(
        ingest(config, def.clone(), trigger),
        process(config, def.clone(), trigger, false),
        sink(config, def, trigger, false)
    );
    a.and(b).and(c)
}
