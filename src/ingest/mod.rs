//! The HTTP ingest: the seed's `/order` and `/user` calls and a JSON REST API, in front of
//! Kafka. It validates with the rules of [`contract`] (which the [`openapi`] document
//! states), assigns ids without coordination ([`ids`]), publishes through its [`ports`]'s
//! `Publish` ([`kafka`]) and answers 202 only once Kafka acknowledged; reads come through
//! `Read` ([`mysql`]: the tables the sink maintains), and [`command_status`] says what
//! became of a command.

pub mod command_status;
pub mod contract;
pub mod dict_literal;
mod handlers;
pub mod ids;
pub mod kafka;
pub mod mysql;
pub mod openapi;
pub mod ports;
mod reads;
mod reply;
pub mod requests;
pub mod routes;
pub mod state;

use crate::config::{Config, IngestConfig};
use crate::shutdown::Shutdown;
use crate::topology::definition::TopologyDefinition;
use kafka::KafkaPublisher;
use mysql::MySqlReader;
use ports::{Publish, Read};
use state::{IngestState, PendingWrites, Recent};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("database: {0}")]
    Db(#[from] crate::sink::DbError),
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: String, message: String },
}

/// The shared state of one ingest replica, on the given ports.
pub fn state(
    publisher: impl Publish,
    reader: impl Read,
    topology: TopologyDefinition,
    cfg: &IngestConfig,
) -> IngestState {
    IngestState {
        publisher: Box::new(publisher),
        reader: Box::new(reader),
        topology,
        ids: ids::IdGenerator::new(cfg.node_id),
        idempotency: Recent::new(cfg.idempotency_cache_size),
        pending: PendingWrites::new(cfg.pending_writes_size),
        auth_token: cfg.auth_token.clone(),
        max_body_bytes: cfg.max_body_bytes,
        max_wait_ms: cfg.max_wait_ms,
        read_your_writes_ms: cfg.read_your_writes_ms,
    }
}

/// Serves the ingest until `shutdown`; then stops accepting, finishes in-flight requests
/// and flushes the producer. Calls `on_bound` with the address it listens on.
pub async fn run(
    config: &Config,
    topology: TopologyDefinition,
    shutdown: Shutdown,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), IngestError> {
    let publisher = KafkaPublisher::new(&config.kafka, &config.ingest)?;
    let pool = crate::sink::pool(&config.mysql)?;
    let shared = Arc::new(state(
        publisher.clone(),
        MySqlReader::new(pool.clone()),
        topology,
        &config.ingest,
    ));
    let addr: SocketAddr = config.ingest.listen.parse().map_err(|_| IngestError::Bind {
        addr: config.ingest.listen.clone(),
        message: "not an address".into(),
    })?;
    let (bound, server) = warp::serve(routes::routes(shared))
        .try_bind_with_graceful_shutdown(addr, shutdown.wait())
        .map_err(|e| IngestError::Bind {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    info!(%bound, "ingest listening");
    on_bound(bound);
    server.await;
    publisher.flush(Duration::from_secs(10));
    let _ = pool.disconnect().await;
    info!("ingest stopped");
    Ok(())
}
