//! `creditstream bench`: creditstream measured against its peers on the same broker, the
//! same topics and the same input, in one run.
//!
//! - [`processor`]: one processor configuration (creditstream, the Kafka Streams peer or
//!   the raw pass-through; a guarantee; a replica count): throughput, latency, RSS and CPU,
//!   with a correctness check. Also used for the scaling runs over the number of users.
//! - [`sink`]: the MySQL sink against a plain multi-row INSERT loader.
//! - [`ingest`]: the HTTP ingest against a route that only answers 202, with wrk.
//! - [`uids`]: uniform or Zipf-skewed order uids.
//! - [`load`]: the load generator (buffered producer, optional pacing).
//! - [`passthrough`]: the pass-through peer (the stream thread forwarding orders unchanged).
//! - [`report`]: the JSON report and its Markdown tables with the ratios.
//!
//! Every section that fails its check reports no figures, and the run as a whole fails.

pub mod ingest;
pub mod load;
pub mod passthrough;
pub mod processor;
pub mod report;
pub mod sink;
pub mod uids;

use crate::config::Config;
use crate::runtime::admin;
use crate::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use processor::RunSpec;
pub use report::BenchReport;
use serde::Serialize;
use std::path::PathBuf;
use uids::UidDistribution;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Users created before the orders.
    pub users: u64,
    /// Orders in the backlog that measures throughput.
    pub orders: u64,
    /// Orders sent afterwards at a fixed rate, for latency.
    pub latency_orders: u64,
    /// The latency batch's rate; `None`: half the measured throughput.
    pub latency_rate: Option<u64>,
    pub uids: UidDistribution,
    pub replicas: Vec<u32>,
    pub guarantees: Vec<ProcessingGuarantee>,
    /// The peers to measure beside creditstream.
    pub peers: Vec<Peer>,
    /// Java classpath of the Kafka Streams peer (benches/peers/kafka-streams).
    pub kafka_streams_classpath: Option<String>,
    /// User counts of the scaling runs (creditstream, exactly_once_v2, 1 replica); empty skips them.
    pub scaling_users: Vec<u64>,
    /// Orders of the sink run; 0 skips it.
    pub sink_orders: u64,
    /// Seconds of each wrk run; 0 skips the ingest run.
    pub ingest_seconds: u64,
    pub wrk: Option<PathBuf>,
    pub work_dir: PathBuf,
    /// Names the run in the report (the commit).
    pub label: String,
}

/// Who processed the orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    Creditstream,
    KafkaStreams,
    Passthrough,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Creditstream => "creditstream",
            Peer::KafkaStreams => "Kafka Streams",
            Peer::Passthrough => "raw pass-through",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// Every section of `opts`, in one run on one broker. Blocking: call it from
/// `spawn_blocking` (it enters the async runtime for topic and database administration).
pub fn run(config: &Config, base: &TopologyDefinition, opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let stamp = load::now_ms();
    let mut report = BenchReport::new(opts, stamp);
    for &guarantee in &opts.guarantees {
        let mut peers = vec![Peer::Creditstream];
        peers.extend(opts.peers.iter().copied());
        for peer in peers {
            let counts = if peer == Peer::Passthrough {
                vec![1]
            } else {
                opts.replicas.clone()
            };
            for replicas in counts {
                let spec = RunSpec {
                    peer,
                    guarantee,
                    replicas,
                    users: opts.users,
                    tag: format!("bench{stamp}-{}-{peer:?}-{replicas}", guarantee.as_str()).to_lowercase(),
                };
                eprintln!("bench: {} {} x{replicas} ...", peer.name(), guarantee.as_str());
                let result = processor::run_one(config, base, opts, &spec)?;
                eprintln!("bench: {}", report::processor_row(&result));
                report.processor.push(result);
            }
        }
    }
    for &users in &opts.scaling_users {
        let spec = RunSpec {
            peer: Peer::Creditstream,
            guarantee: ProcessingGuarantee::ExactlyOnceV2,
            replicas: 1,
            users,
            tag: format!("bench{stamp}-scaling-{users}"),
        };
        eprintln!("bench: scaling, {users} users ...");
        let result = processor::run_one(config, base, opts, &spec)?;
        eprintln!("bench: {}", report::processor_row(&result));
        report.scaling.push(result);
    }
    if opts.sink_orders > 0 {
        eprintln!("bench: sink against the plain loader, {} orders ...", opts.sink_orders);
        let result = sink::run(config, base, opts, &format!("bench{stamp}-sink"))?;
        eprintln!("bench: {result:?}");
        report.sink = Some(result);
    }
    if opts.ingest_seconds > 0 {
        eprintln!(
            "bench: ingest against the 202-only route, {} s each ...",
            opts.ingest_seconds
        );
        let result = ingest::run(config, base, opts, &format!("bench{stamp}-ingest"))?;
        eprintln!("bench: {result:?}");
        report.ingest = Some(result);
    }
    Ok(report)
}
