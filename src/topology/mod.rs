//! The credit-check topology, pure: records, the processor API (a [`Processor`] sees a
//! [`Context`] and a [`KeyValueStore`]), the credit-check logic and a test driver.
//! Nothing here does I/O or imports a Kafka, RocksDB, HTTP or SQL crate; the runtime
//! adapts Kafka and RocksDB to these traits, and the driver runs the same processor
//! with in-memory stores.
//!
//! [`Processor`]: processor::Processor
//! [`Context`]: processor::Context
//! [`KeyValueStore`]: store::KeyValueStore

pub mod codec;
pub mod conditions;
pub mod credit_check;
pub mod credit_topology;
pub mod definition;
pub mod driver;
pub mod order_filter;
pub mod output;
pub mod partition_group;
pub mod partitioner;
pub mod processor;
pub mod record;
pub mod seed;
pub mod seed_bridge;
pub mod state;
pub mod store;
pub mod task_context;
pub mod task_id;
pub mod user_commands;
