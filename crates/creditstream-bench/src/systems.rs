//! How each system is started for a run, with the commit cadence of the comparison, and
//! the settings the report prints for it.
//! - creditstream: `creditstream process`, configured through CREDITSTREAM__ variables.
//! - the pass-through: `creditstream-bench passthrough`, on the same runtime and settings.
//! - Kafka Streams: the peer (benches/peers/kafka-streams) in a JVM with a fixed heap; it
//!   writes its full effective configuration to a file the report embeds.
//!
//! Invariant: every system of a comparison gets the same cadence: at 100 ms creditstream's
//! backlog rule (commit at most every 10 × commit_interval_ms) is set to 100 ms and its
//! record trigger is set out of reach; at the backlog cadence Kafka Streams gets the
//! interval creditstream achieved.

use crate::children::Children;
use crate::error::BenchError;
use crate::options::{BenchOptions, Cadence, System};
use creditstream::config::Config;
use creditstream::topology::definition::TopologyDefinition;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// creditstream's commit_interval_ms at the 100 ms cadence: a backlog commits at most
/// every 10 intervals, so 10 ms gives a commit every 100 ms.
pub const EVERY_100MS_INTERVAL_MS: u64 = 10;
/// commit_max_records at the 100 ms cadence: never reached, so time alone triggers.
pub const EVERY_100MS_MAX_RECORDS: u64 = 1_000_000_000;
/// The Kafka Streams peer's record cache (statestore.cache.max.bytes), MiB.
pub const PEER_CACHE_MB: u64 = 64;
/// The peer's producer batch.size and its consumer's max.poll.records (its linger.ms is
/// `--kafka-streams-linger-ms`).
pub const PEER_BATCH_BYTES: u64 = 256 * 1024;
pub const PEER_MAX_POLL_RECORDS: u64 = 5000;

/// What one start of a system needs.
pub struct Launch<'a> {
    pub system: System,
    pub cadence: Cadence,
    pub def: &'a TopologyDefinition,
    pub topology_file: &'a Path,
    pub dir: &'a Path,
    pub replicas: u32,
    /// Cores of each replica (taskset -c), when pinned.
    pub pinned: Option<Vec<String>>,
    /// The peer's commit.interval.ms and stream threads.
    pub peer_commit_interval_ms: u64,
    pub peer_threads: u32,
    /// creditstream's stream threads per replica; `None`: config/default.toml's.
    pub stream_threads: Option<u32>,
    /// The pass-through's users, orders and how many orders to treat as Completed.
    pub passthrough: (u64, u64, u64),
    /// A caught-up cadence for creditstream and the pass-through (the latency runs): both
    /// commit_interval_ms and commit_min_interval_ms, so a caught-up replica commits this
    /// often under either guarantee, as the peer does with commit.interval.ms.
    pub caught_up_commit_ms: Option<u64>,
}

/// The started replicas and where each serves its commit counter.
pub struct Started {
    pub children: Children,
    pub probes: Vec<SocketAddr>,
    /// The peer's configuration files (one per replica).
    pub config_files: Vec<PathBuf>,
}

pub fn free_port() -> Result<SocketAddr, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// creditstream's commit settings for a cadence: (commit_interval_ms, commit_max_records).
pub fn creditstream_commits(config: &Config, cadence: Cadence) -> (u64, u64) {
    match cadence {
        Cadence::Every100Ms => (EVERY_100MS_INTERVAL_MS, EVERY_100MS_MAX_RECORDS),
        Cadence::Backlog => (
            config.processor.commit_interval_ms,
            config.processor.commit_max_records as u64,
        ),
    }
}

fn creditstream_command(
    program: &Path,
    args: &[String],
    launch: &Launch<'_>,
    config: &Config,
    replica: u32,
    metrics: SocketAddr,
) -> Result<Command, BenchError> {
    let state = launch.dir.join(format!("replica-{replica}"));
    std::fs::create_dir_all(&state)?;
    let (interval, max_records) = creditstream_commits(config, launch.cadence);
    let (interval, min_interval) = match launch.caught_up_commit_ms {
        Some(ms) => (ms, ms),
        None => (interval, config.processor.commit_min_interval_ms.min(interval)),
    };
    let mut command = pinned(launch, replica, program);
    command.args(args);
    creditstream_env(&mut command, launch.topology_file, config, &state, metrics);
    command
        .env("CREDITSTREAM__PROCESSOR__COMMIT_INTERVAL_MS", interval.to_string())
        .env("CREDITSTREAM__PROCESSOR__COMMIT_MAX_RECORDS", max_records.to_string())
        .env(
            "CREDITSTREAM__PROCESSOR__COMMIT_MIN_INTERVAL_MS",
            min_interval.to_string(),
        );
    if let Some(threads) = launch.stream_threads {
        command.env("CREDITSTREAM__PROCESSOR__NUM_STREAM_THREADS", threads.to_string());
    }
    Ok(command)
}

/// What every creditstream child of the benchmark is told: its topology, the broker, its
/// state dir and metrics address; no seed bridge; warnings only.
pub fn creditstream_env(
    command: &mut Command,
    topology_file: &Path,
    config: &Config,
    state: &Path,
    metrics: SocketAddr,
) {
    command
        .env("CREDITSTREAM__TOPOLOGY_FILE", topology_file)
        .env(
            "CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS",
            &config.kafka.bootstrap_servers,
        )
        .env("CREDITSTREAM__PROCESSOR__STATE_DIR", state)
        .env("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE", "false")
        .env("CREDITSTREAM__PROCESSOR__METRICS_LISTEN", metrics.to_string())
        .env("RUST_LOG", "warn");
}

/// `program`, run under `taskset -c CORES` when the launch pins replicas.
fn pinned(launch: &Launch<'_>, replica: u32, program: &Path) -> Command {
    match launch.pinned.as_ref().and_then(|cores| cores.get(replica as usize)) {
        Some(cores) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cores).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn peer_command(
    launch: &Launch<'_>,
    config: &Config,
    opts: &BenchOptions,
    replica: u32,
    stats: SocketAddr,
    config_out: &Path,
) -> Result<Command, BenchError> {
    let peer = opts
        .peer
        .as_ref()
        .ok_or_else(|| BenchError::Setup("the Kafka Streams peer needs --kafka-streams-classpath".into()))?;
    let state = launch.dir.join(format!("replica-{replica}"));
    std::fs::create_dir_all(&state)?;
    let def = launch.def;
    let mut command = pinned(launch, replica, Path::new("java"));
    command
        .arg(format!("-Xms{}m", peer.heap_mb))
        .arg(format!("-Xmx{}m", peer.heap_mb))
        .arg("-XX:+UseG1GC")
        .args(["-cp", &peer.classpath, "creditstream.peer.CreditCheckPeer"])
        .args(["--bootstrap-servers", &config.kafka.bootstrap_servers])
        .args(["--application-id", &def.application_id])
        .arg("--state-dir")
        .arg(&state)
        .args(["--guarantee", def.processing_guarantee.as_str()])
        .args(["--commit-interval-ms", &launch.peer_commit_interval_ms.to_string()])
        .args(["--threads", &launch.peer_threads.to_string()])
        .args(["--max-poll-records", &PEER_MAX_POLL_RECORDS.to_string()])
        .args(["--linger-ms", &peer.linger_ms.to_string()])
        .args(["--batch-size", &PEER_BATCH_BYTES.to_string()])
        .args(["--cache-max-bytes", &(PEER_CACHE_MB << 20).to_string()])
        .args(["--block-cache-mb", &config.processor.block_cache_mb.to_string()])
        .args(["--write-buffer-mb", &config.processor.write_buffer_mb.to_string()])
        .args(["--stats-port", &stats.port().to_string()])
        .arg("--config-out")
        .arg(config_out)
        .args(["--user-commands", &def.inputs.user_commands])
        .args(["--orders", &def.inputs.orders])
        .args(["--decisions", &def.outputs.decisions])
        .args(["--user-changes", &def.outputs.user_changes]);
    Ok(command)
}

/// Starts `launch.replicas` replicas of `launch.system`, each logging to replica-N.log.
pub fn start(launch: &Launch<'_>, config: &Config, opts: &BenchOptions) -> Result<Started, BenchError> {
    let mut started = Started {
        children: Children::new(),
        probes: Vec::new(),
        config_files: Vec::new(),
    };
    for replica in 0..launch.replicas {
        let probe = free_port()?;
        let mut command = match launch.system {
            System::Creditstream => creditstream_command(
                &opts.creditstream_bin,
                &["process".into()],
                launch,
                config,
                replica,
                probe,
            )?,
            System::Passthrough => {
                let (users, orders, completed) = launch.passthrough;
                let args = [
                    "passthrough".to_string(),
                    "--users".into(),
                    users.to_string(),
                    "--orders".into(),
                    orders.to_string(),
                    "--completed".into(),
                    completed.to_string(),
                ];
                creditstream_command(&opts.bench_bin, &args, launch, config, replica, probe)?
            }
            System::KafkaStreams => {
                let file = launch.dir.join(format!("peer-config-{replica}.json"));
                started.config_files.push(file.clone());
                peer_command(launch, config, opts, replica, probe, &file)?
            }
        };
        let log = std::fs::File::create(launch.dir.join(format!("replica-{replica}.log")))?;
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        started.children.spawn(command)?;
        started.probes.push(probe);
    }
    Ok(started)
}

/// creditstream's settings at a cadence, as the report prints them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreditstreamSettings {
    pub cadence: Cadence,
    pub commit_interval_ms: u64,
    pub commit_max_records: u64,
    pub backlog_commits_at_most_every_ms: u64,
    pub commit_min_interval_ms: u64,
    pub block_cache_mb: usize,
    pub write_buffer_mb: usize,
    pub buffered_records_per_partition: usize,
    pub max_task_idle_ms: u64,
    pub num_standby_replicas: usize,
    pub transaction_timeout_ms: u64,
    /// librdkafka settings of its one producer and its consumer.
    pub clients: String,
}

pub fn creditstream_settings(config: &Config, cadence: Cadence) -> CreditstreamSettings {
    let p = &config.processor;
    let (interval, max_records) = creditstream_commits(config, cadence);
    CreditstreamSettings {
        cadence,
        commit_interval_ms: interval,
        commit_max_records: max_records,
        backlog_commits_at_most_every_ms: interval * 10,
        commit_min_interval_ms: p.commit_min_interval_ms,
        block_cache_mb: p.block_cache_mb,
        write_buffer_mb: p.write_buffer_mb,
        buffered_records_per_partition: p.buffered_records_per_partition,
        max_task_idle_ms: p.max_task_idle_ms,
        num_standby_replicas: p.num_standby_replicas,
        transaction_timeout_ms: p.transaction_timeout_ms,
        clients: format!(
            "producer: linger.ms={}, compression.type=lz4, batch.size=1000000 (librdkafka default), \
             acks=all, enable.idempotence=true, partitioner=murmur2_random; consumer: \
             fetch.wait.max.ms=50, up to 5000 records per poll batch; RocksDB: lz4, bloom filter \
             10 bits, index and filter blocks in the block cache, write buffers charged to it",
            p.linger_ms
        ),
    }
}

/// The peer's commit.interval.ms at a cadence: 100, or what creditstream achieved.
pub fn peer_commit_interval_ms(cadence: Cadence, creditstream_achieved_ms: Option<f64>) -> u64 {
    match cadence {
        Cadence::Every100Ms => 100,
        // Without a figure from creditstream (its run failed), its backlog ceiling: 10 × 100 ms.
        Cadence::Backlog => creditstream_achieved_ms.map_or(1000, |ms| ms.round().clamp(5.0, 1000.0) as u64),
    }
}

/// A child running `program subcommand` on the run's topology, logging to `log`.
pub fn own_command(
    program: &Path,
    subcommand: &str,
    topology: &Path,
    config: &Config,
    log: &Path,
) -> Result<Command, BenchError> {
    let mut command = Command::new(program);
    command
        .arg(subcommand)
        .env("CREDITSTREAM__TOPOLOGY_FILE", topology)
        .env(
            "CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS",
            &config.kafka.bootstrap_servers,
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    Ok(command)
}
