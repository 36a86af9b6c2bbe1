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
//! - [`runtime`]: the only code that touches Kafka and RocksDB: clients, topic admin, the
//!   stream thread with its tasks, stores, restores and transactions, the seed bridge, the
//!   ingest's publisher and the sink's consumer.
//! - [`ingest`]: the warp HTTP endpoint (seed-compatible `/order`, `/user`, and `/v1`).
//! - [`sink`]: MySQL: schema, the idempotent batch writer, the reads the API serves.
//! - [`metrics`]: every Prometheus metric and the `/metrics` endpoint.
//! - [`config`]: layered configuration with unknown keys rejected.
//! - [`shutdown`]: the signal passed down to every component.
//! - [`verify`]: the invariant checker (topics, changelog and tables agree).
//! - [`bench`]: the benchmark (creditstream against a raw pass-through peer).
//! - [`app`]: wiring of the subcommands.

pub mod app;
pub mod bench;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod runtime;
pub mod shutdown;
pub mod sink;
pub mod topology;
pub mod verify;
