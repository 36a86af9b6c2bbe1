//! creditstream: a Kafka Streams-style stateful stream processor for the seed's credit
//! checks. HTTP requests become records on Kafka; processor replicas in one consumer group
//! keep per-uid credit state in RocksDB (backed by a compacted changelog), decide each
//! order exactly once, and a Kafka-fed writer keeps MySQL in step.
//!
//! # Layout
//!
//! - [`topology`]: pure. Records, the processor API (`Processor`, `Context`,
//!   `KeyValueStore`), the credit-check logic, the topology file and a test driver. No
//!   Kafka, RocksDB, HTTP or SQL.
//! - [`runtime`]: the code that adapts Kafka and RocksDB to the topology: clients, topic
//!   admin, the processor runtime (`runtime::streams`: stream thread, tasks, stores,
//!   restores, transactions, with the seed bridge as a sub-topology), and read-only views
//!   of a partition's state.
//! - [`ingest`]: the warp HTTP endpoint (seed-compatible `/order`, `/user`, and `/v1`),
//!   its request contract and OpenAPI document, and its two ports (publish to Kafka, read
//!   from MySQL) with their adapters.
//! - [`sink`]: the Kafka-fed MySQL writer: its consumer, the schema and the idempotent
//!   batch writer.
//! - [`metrics`]: every Prometheus metric and the `/metrics` endpoint.
//! - [`config`]: layered configuration with unknown keys rejected.
//! - [`shutdown`]: the signal passed down to every component.
//! - [`verify`]: the invariant checker (topics, changelog and tables agree).
//! - [`inspect`]: `creditstream state`, what a replica holds for a user, an order or a
//!   partition (read-only).
//! - [`app`]: wiring of the subcommands.

pub mod app;
pub mod config;
pub mod ingest;
pub mod inspect;
pub mod metrics;
pub mod runtime;
pub mod shutdown;
pub mod sink;
pub mod topology;
pub mod verify;
