//! creditstream-bench: creditstream measured against a tuned Kafka Streams peer and a
//! workload-matched pass-through on the same broker, topics and input, in one run, with
//! every repetition's raw figures kept. It drives the `creditstream` binary (and `java`
//! for the peer) as child processes; the product binary knows nothing of it.
//!
//! # Layout
//!
//! - [`options`]: what to measure: systems, guarantees, commit cadences, sizes.
//! - [`schedule`]: the whole run: the interleaved repetitions,
//!   the fixed-rate latency runs, scaling, sink and ingest; [`plan`]: the peer's thread
//!   probe and which replica counts this machine's cores allow.
//! - [`run`]: one throughput repetition of one system; [`latency`]: one system at fixed
//!   rates; [`watcher`]: the read_committed reader of the decisions that both use.
//! - [`systems`]: how each system is started and configured, and that configuration as
//!   the report prints it; [`children`]: the child processes, their CPU, RSS and cores.
//! - [`workload`]: the deterministic input and the decisions it must lead to;
//!   [`uids`]: which user each order goes to; [`load`]: the load generator.
//! - [`topics`]: each run's fresh topics, its input, their deletion.
//! - [`outputs`]: records and bytes on every output topic, and the expected counts.
//! - [`probe`]: the commit counters each system exports, read over HTTP;
//!   [`group_settle`]: waits for a replica's stream threads to share the partitions;
//!   [`window`]: a throughput run's measured window, opened once the group settled.
//! - [`passthrough`]: the workload-matched pass-through processor (the limit).
//! - [`ceiling`]: the HTTP ceiling route; [`ingest`]: the ingest against it with wrk.
//! - [`sink`]: the MySQL sink against a plain INSERT loader.
//! - [`elastic`]: restore, failover and membership changes with large state (its own
//!   command and report, [`elastic_report`]); [`replica`]: one replica started and
//!   killed on its own; [`decision_log`]: decisions with when they were made and seen;
//!   [`steady_load`]: orders at a fixed rate until stopped.
//! - [`stats`]: medians, paired ratios (pure); [`report`]: the JSON report;
//!   [`markdown`]: its tables; [`targets`]: the targets and verdicts;
//!   [`page`]: the section of docs/benchmarks.md made from it.
//!
//! Invariant: a run that fails (an error, a wrong decision, a wrong record count) is
//! kept in the report with its error and counted as failed; it is never dropped.

pub mod ceiling;
pub mod children;
pub mod decision_log;
pub mod elastic;
pub mod elastic_report;
pub mod error;
pub mod group_settle;
pub mod ingest;
pub mod latency;
pub mod load;
pub mod markdown;
pub mod options;
pub mod outputs;
pub mod page;
pub mod passthrough;
pub mod plan;
pub mod probe;
pub mod replica;
pub mod report;
pub mod run;
pub mod schedule;
pub mod sink;
pub mod stats;
pub mod steady_load;
pub mod systems;
pub mod targets;
pub mod topics;
pub mod uids;
pub mod watcher;
pub mod window;
pub mod workload;

pub use error::BenchError;
pub use options::{BenchOptions, Cadence, System};
pub use report::BenchReport;
