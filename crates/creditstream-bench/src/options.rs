//! What one benchmark invocation measures: the systems, guarantees and commit cadences
//! compared, the sizes, the repetitions and the latency windows. Every default is the
//! one the full run uses (scripts/bench.sh); the smoke test shrinks them.

use crate::uids::UidDistribution;
use creditstream::topology::definition::ProcessingGuarantee;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    Creditstream,
    KafkaStreams,
    /// The workload-matched pass-through: creditstream's runtime writing, per order,
    /// precomputed records of the topology's topics, counts and sizes (the limit).
    Passthrough,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Creditstream => "creditstream",
            System::KafkaStreams => "Kafka Streams",
            System::Passthrough => "workload-matched pass-through",
        }
    }
}

/// How often every system in a comparison commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    /// Every 100 ms (Kafka Streams' default commit.interval.ms under exactly-once).
    Every100Ms,
    /// creditstream's own backlog cadence: a commit every `commit_max_records` records,
    /// at most every 10 × `commit_interval_ms`; Kafka Streams gets the commit interval
    /// creditstream achieved in the same repetition.
    Backlog,
}

impl Cadence {
    pub fn label(self) -> &'static str {
        match self {
            Cadence::Every100Ms => "100 ms",
            Cadence::Backlog => "creditstream's backlog cadence",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "100ms" => Ok(Cadence::Every100Ms),
            "backlog" => Ok(Cadence::Backlog),
            _ => Err(format!("expected 100ms or backlog, got {s:?}")),
        }
    }
}

/// How many stream threads the Kafka Streams peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerThreads {
    /// Measure 1 against 2 in a small run first and keep the faster.
    Auto,
    Fixed(u32),
}

/// The Kafka Streams peer's build and JVM.
#[derive(Debug, Clone)]
pub struct PeerSetup {
    /// Java classpath of benches/peers/kafka-streams (target/classes and target/lib/*).
    pub classpath: String,
    pub threads: PeerThreads,
    /// -Xms and -Xmx, MiB.
    pub heap_mb: u64,
    /// The producer's linger.ms (`--kafka-streams-linger-ms`, default 50).
    pub linger_ms: u64,
    /// Orders of each run of the thread probe.
    pub probe_orders: u64,
}

/// The fixed-rate latency runs.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// Seconds measured at each rate (default 60).
    pub seconds: u64,
    /// Seconds sent at each rate before its measured window (default 10).
    pub warmup_seconds: u64,
    /// Shares of Kafka Streams' median maximum throughput (default 0.25, 0.5, 0.75).
    pub shares: Vec<f64>,
    /// Rates given outright (orders/s); replaces `shares`.
    pub rates: Vec<u64>,
    /// Guarantees measured (default: empty, every guarantee of the run).
    pub guarantees: Vec<ProcessingGuarantee>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Users created before the orders (default 100 000).
    pub users: u64,
    /// Orders of each throughput run's backlog (default 1 000 000).
    pub orders: u64,
    pub uids: UidDistribution,
    /// Repetitions of every configuration, interleaved (default 5).
    pub repetitions: u32,
    /// Orders of each run of creditstream's stream-thread probe, 1 thread against 2
    /// (default 200 000; 0 skips it).
    pub stream_thread_probe_orders: u64,
    pub guarantees: Vec<ProcessingGuarantee>,
    pub cadences: Vec<Cadence>,
    /// The systems compared (creditstream is always among them).
    pub systems: Vec<System>,
    /// Replica counts; more than 1 runs only with pinned cores to spare.
    pub replicas: Vec<u32>,
    /// Cores pinned to each replica when more than one runs (default 2).
    pub cores_per_replica: u32,
    /// Cores left to the broker and the load generator when replicas are pinned (default 2).
    pub reserved_cores: u32,
    pub peer: Option<PeerSetup>,
    /// `None`: no latency runs.
    pub latency: Option<LatencyOptions>,
    /// User counts of the scaling runs (creditstream, exactly_once_v2); empty skips them.
    pub scaling_users: Vec<u64>,
    /// Orders of the sink run; 0 skips it.
    pub sink_orders: u64,
    /// Seconds of each wrk run; 0 skips the ingest run.
    pub ingest_seconds: u64,
    pub wrk: Option<PathBuf>,
    /// The product binary the replicas, the sink and the ingest run from.
    pub creditstream_bin: PathBuf,
    /// This binary (the pass-through and the HTTP ceiling run from it).
    pub bench_bin: PathBuf,
    pub work_dir: PathBuf,
    /// Names the run in the report (the commit).
    pub label: String,
    /// Where the JSON report goes (rewritten after every repetition); `None`: nowhere.
    pub out: Option<PathBuf>,
}

impl BenchOptions {
    pub fn measures(&self, system: System) -> bool {
        self.systems.contains(&system)
    }
}
