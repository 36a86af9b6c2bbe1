//! Wires the components into the subcommands: each runs until its shutdown signal, then
//! stops in order (ingest stops accepting, the processor commits and leaves its group,
//! the sink writes and commits what it read).

use crate::config::Config;
use crate::ingest;
use crate::metrics;
use crate::runtime::{activity, admin, group_offsets, streams};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sink::consumer as source;
use crate::sink::{self, schema, writer::MySqlWriter};
use crate::topology::credit_topology::CreditTopology;
use crate::topology::definition::TopologyDefinition;
use std::net::SocketAddr;
use std::time::Duration;
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

/// `creditstream process`: the stream threads, which run the credit check and, when the
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
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("replica".into())
        .spawn(move || {
            let new_topology = || CreditTopology::new(&def);
            let _ = done.send(streams::run(kafka, cfg, def.clone(), new_topology, shutdown));
        })
        .map_err(|e| AppError::Usage(format!("cannot start the stream threads: {e}")))?;
    let watch = tokio::spawn(watch_calls(trigger.subscribe()));
    // A panicked stream thread drops its sender: that is an error too.
    let result = result.await;
    trigger.trigger();
    watch.abort();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    Ok(result.map_err(|_| AppError::Panicked)??)
}

/// Reports the runtime threads' long calls while the processor runs (`runtime::activity`);
/// once shutdown was asked for, says every 2 s which call the stop waits for.
async fn watch_calls(shutdown: Shutdown) {
    const LONG: Duration = Duration::from_secs(10);
    loop {
        let wait = if shutdown.is_requested() { 2 } else { 5 };
        tokio::time::sleep(Duration::from_secs(wait)).await;
        if shutdown.is_requested() {
            for (call, lasted) in activity::long_calls(Duration::ZERO) {
                tracing::warn!(
                    thread = call.thread,
                    call = call.call,
                    waited_ms = lasted.as_millis() as u64,
                    "stopping: waiting for this call to end"
                );
            }
        }
        activity::report(LONG);
    }
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
    // The group's coordinator may still be loading (a new group, a broker just restarted):
    // what the broker could not answer yet is asked again, for up to a minute.
    let started = std::time::Instant::now();
    let carried = loop {
        let (kafka, group, partitions) = (config.kafka.clone(), def.application_id.clone(), partitions.clone());
        let attempt = tokio::task::spawn_blocking(move || {
            group_offsets::carry_over(&kafka, &format!("{group}-seed-bridge"), &group, &partitions)
        })
        .await
        .map_err(|_| AppError::Panicked)?;
        match attempt {
            Err(error) if error.is_retriable() && started.elapsed() < Duration::from_secs(60) => {
                tracing::warn!(%error, "cannot read the seed offsets yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other?,
        }
    };
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
