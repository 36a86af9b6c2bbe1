//! Wires the components into the subcommands: each runs until its shutdown signal, then
//! stops in order (ingest stops accepting, the processor commits and leaves its group,
//! the sink writes and commits what it read).

use crate::config::Config;
use crate::ingest;
use crate::metrics;
use crate::runtime::{admin, seed_bridge, streams};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sink::consumer as source;
use crate::sink::{self, schema, writer::MySqlWriter};
use crate::topology::credit_check::CreditCheck;
use crate::topology::definition::TopologyDefinition;
use std::net::SocketAddr;
use tracing::{error, info};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error("processor: {0}")]
    Processor(#[from] streams::StreamsError),
    #[error("seed bridge: {0}")]
    Bridge(rdkafka::error::KafkaError),
    #[error("sink: {0}")]
    Sink(#[from] source::SourceError),
    #[error(transparent)]
    Db(#[from] sink::DbError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
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

/// `creditstream process`: the stream thread (and the seed bridge when enabled). If
/// either stops with an error, the other is stopped too and the replica exits with it:
/// a replica never runs on without the part it was started with.
pub async fn process(
    config: &Config,
    def: TopologyDefinition,
    trigger: &ShutdownTrigger,
    with_metrics: bool,
) -> Result<(), AppError> {
    let metrics_task = with_metrics.then(|| spawn_metrics(&config.processor.metrics_listen, trigger));
    let bridge = if def.seed_bridge.enabled && config.processor.run_seed_bridge {
        std::fs::create_dir_all(&config.processor.state_dir)
            .map_err(|e| streams::StreamsError::StateDir(format!("{}: {e}", config.processor.state_dir.display())))?;
        let id = streams::stream_thread::transactional_id(&def, &config.processor, "seed-bridge")?;
        let (kafka, def, shutdown) = (config.kafka.clone(), def.clone(), trigger.subscribe());
        let (timeout, stop_all) = (config.processor.transaction_timeout_ms, trigger.clone());
        Some(tokio::task::spawn_blocking(move || {
            let result = seed_bridge::run(&kafka, &def, &id, timeout, shutdown);
            if let Err(e) = &result {
                error!(error = %e, "seed bridge failed; stopping the replica");
                stop_all.trigger();
            }
            result
        }))
    } else {
        None
    };
    let (kafka, cfg, shutdown) = (config.kafka.clone(), config.processor.clone(), trigger.subscribe());
    let result = tokio::task::spawn_blocking(move || streams::run(kafka, cfg, def, CreditCheck, shutdown)).await;
    trigger.trigger();
    let bridged = match bridge {
        Some(bridge) => bridge.await.map_err(|_| AppError::Panicked)?.map_err(AppError::Bridge),
        None => Ok(()),
    };
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    result.map_err(|_| AppError::Panicked)?.map_err(AppError::from)?;
    bridged
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
