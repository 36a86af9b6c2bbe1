//! The runtime: the only code that touches Kafka (rdkafka) and RocksDB. It adapts them to
//! the pure topology layer and to the ingest and sink.
//!
//! - [`activity`]: what each runtime thread waits on, so a hung replica says which call holds it.
//! - [`client`]: librdkafka settings every client shares (murmur2, idempotence, isolation).
//! - [`consumer_state`]: what a consumer knows without asking the broker (cached
//!   watermarks, member id).
//! - [`group_members`]: a consumer group's members and their assignments.
//! - [`admin`]: creates and verifies the topology's topics.
//! - [`event_wait`]: sleeps until a producer has an event to serve (no spinning poll).
//! - [`error_codes`]: the one table of Kafka error codes (the ingest, runtime and sink each
//!   decide from its classes).
//! - [`dead_letter`], [`lag`]: dead letters (headers, the cut that makes one fit) and
//!   consumer lag, shared by the loops.
//! - [`rocks_store`]: a task's RocksDB store behind the topology's `KeyValueStore`.
//! - [`store_writer`]: writes committed work into the stores off the stream thread.
//! - [`store_lock`]: a store directory open in one stream thread of the process at a time.
//! - [`store_reader`]: read-only views of a partition's state (`creditstream state`).
//! - [`streams`]: the processor runtime: stream thread, tasks, restore, transactions.
//! - [`group_offsets`]: carries committed offsets between consumer groups (upgrades).
//! - [`topic_reader`]: reads whole topics to their end (verification).

pub mod activity;
pub mod admin;
pub mod client;
pub mod consumer_state;
pub mod dead_letter;
pub mod error_codes;
pub mod event_wait;
pub mod group_members;
pub mod group_offsets;
pub mod lag;
pub mod rocks_store;
pub mod store_lock;
pub mod store_reader;
pub mod store_writer;
pub mod streams;
pub mod topic_reader;
