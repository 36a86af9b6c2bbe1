//! One processor configuration, measured: fresh topics, the users and a backlog of orders
//! produced, the replicas of one peer started as child processes, and then
//! - throughput: orders decided per second while the replicas work off the backlog, from
//!   the first output to the last (group join and restore are not counted);
//! - end-to-end latency (order produce time → output visible to a read_committed consumer)
//!   of a second batch sent at a fixed rate (by default half the measured throughput);
//! - the replicas' peak RSS and CPU seconds, from /proc.
//!
//! Correctness is checked while measuring: one output per order and, for the peers that
//! decide, each user's lowest balance equals its initial balance minus its Completed
//! amounts. A run that fails the check reports no figures.

use super::load;
use super::uids::UidSampler;
use super::{BenchError, BenchOptions, Peer};
use crate::config::Config;
use crate::runtime::admin;
use crate::topology::codec::{encode_command, encode_order};
use crate::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use crate::topology::partitioner::partition_for;
use crate::topology::record::{Decision, Order, OrderStatus, UserCommand, UserRow};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every bench user starts with this balance (and credit limit).
const INITIAL_BALANCE: i64 = 500;
/// How long one configuration may take before it is reported as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(1800);

/// The figures of one configuration; `None` where the run failed its check.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessorResult {
    pub peer: Peer,
    pub guarantee: &'static str,
    pub replicas: u32,
    pub users: u64,
    pub orders: u64,
    pub uids: String,
    pub correct: bool,
    /// Orders declined because their user was not (yet) known. Every bench user is created
    /// before the orders, so any such decline fails the run.
    pub unknown_user_declines: u64,
    pub problem: Option<String>,
    pub throughput_per_s: Option<f64>,
    pub latency_rate_per_s: Option<f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub cpu_seconds: Option<f64>,
}

/// What one run measures.
pub struct RunSpec {
    pub peer: Peer,
    pub guarantee: ProcessingGuarantee,
    pub replicas: u32,
    pub users: u64,
    pub tag: String,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

/// Peak RSS (MiB) and CPU seconds of a process, from /proc.
fn process_usage(pid: u32) -> (Option<f64>, Option<f64>) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
        });
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
        let after = s.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    });
    (rss, cpu)
}

/// Child processes that are stopped (SIGTERM, then waited for) when dropped.
pub struct Children(Vec<Child>);

impl Children {
    pub fn new(children: Vec<Child>) -> Self {
        Self(children)
    }

    /// Highest peak RSS of any child, and the CPU seconds of all of them.
    fn usage(&self) -> (Option<f64>, Option<f64>) {
        let (mut rss, mut cpu) = (None::<f64>, None::<f64>);
        for child in &self.0 {
            let (r, c) = process_usage(child.id());
            rss = match (rss, r) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            cpu = match (cpu, c) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
        }
        (rss, cpu)
    }

    /// Whether any child has already exited (it crashed or refused its arguments).
    pub fn any_exited(&mut self) -> bool {
        self.0.iter_mut().any(|c| matches!(c.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// A child running this binary's `subcommand` on the bench topology, logging to `log`.
pub fn own_command(subcommand: &str, topology: &Path, config: &Config, log: &Path) -> Result<Command, BenchError> {
    let mut command = Command::new(std::env::current_exe()?);
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

fn start_replicas(
    spec: &RunSpec,
    def: &TopologyDefinition,
    topology: &Path,
    config: &Config,
    opts: &BenchOptions,
    dir: &Path,
) -> Result<Children, BenchError> {
    let mut children = Vec::new();
    for i in 0..spec.replicas {
        let state = dir.join(format!("replica-{i}"));
        std::fs::create_dir_all(&state)?;
        let log = dir.join(format!("replica-{i}.log"));
        let mut command = match spec.peer {
            Peer::Creditstream | Peer::Passthrough => {
                let subcommand = if spec.peer == Peer::Creditstream {
                    "process"
                } else {
                    "passthrough"
                };
                let mut command = own_command(subcommand, topology, config, &log)?;
                command
                    .env("CREDITSTREAM__PROCESSOR__STATE_DIR", &state)
                    .env("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE", "false")
                    .env("CREDITSTREAM__PROCESSOR__METRICS_LISTEN", "127.0.0.1:0");
                command
            }
            Peer::KafkaStreams => {
                let classpath = opts.kafka_streams_classpath.as_deref().ok_or_else(|| {
                    BenchError::Setup("the Kafka Streams peer needs --kafka-streams-classpath".into())
                })?;
                let mut command = Command::new("java");
                command
                    .args(["-cp", classpath, "creditstream.peer.CreditCheckPeer"])
                    .arg("--bootstrap-servers")
                    .arg(&config.kafka.bootstrap_servers)
                    .arg("--application-id")
                    .arg(&def.application_id)
                    .arg("--state-dir")
                    .arg(&state)
                    .arg("--guarantee")
                    .arg(def.processing_guarantee.as_str())
                    .arg("--commit-interval-ms")
                    .arg(config.processor.commit_interval_ms.to_string())
                    .arg("--user-commands")
                    .arg(&def.inputs.user_commands)
                    .arg("--orders")
                    .arg(&def.inputs.orders)
                    .arg("--decisions")
                    .arg(&def.outputs.decisions)
                    .arg("--user-changes")
                    .arg(&def.outputs.user_changes)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log)?);
                command
            }
        };
        children.push(command.spawn()?);
    }
    Ok(Children::new(children))
}

/// Order id, and decision if the peer decides, of a record on the decisions topic (for
/// the pass-through peer, the order itself), with its order timestamp.
fn parse_output(peer: Peer, value: &[u8]) -> Option<(Option<Decision>, i64, i64)> {
    match peer {
        Peer::Creditstream | Peer::KafkaStreams => {
            let d: Decision = serde_json::from_slice(value).ok()?;
            let (id, ts) = (d.order_id, d.order_timestamp_ms);
            Some((Some(d), id, ts))
        }
        Peer::Passthrough => {
            let o: Order = serde_json::from_slice(value).ok()?;
            Some((None, o.order_id, o.timestamp_ms))
        }
    }
}

fn check(
    peer: Peer,
    decisions: &HashMap<i64, Option<Decision>>,
    duplicates: usize,
    expected: u64,
) -> Result<(), String> {
    if duplicates > 0 {
        return Err(format!("{duplicates} orders have more than one output"));
    }
    if decisions.len() as u64 != expected {
        return Err(format!("{} of {expected} orders have an output", decisions.len()));
    }
    if peer == Peer::Passthrough {
        return Ok(());
    }
    let mut per_user: HashMap<i64, (i64, i64)> = HashMap::new();
    for d in decisions.values().flatten() {
        let entry = per_user.entry(d.uid).or_insert((0, INITIAL_BALANCE));
        if d.status == OrderStatus::Completed {
            entry.0 += d.amount;
        }
        if let Some(balance) = d.balance_after {
            if balance < 0 {
                return Err(format!("uid {} went negative", d.uid));
            }
            entry.1 = entry.1.min(balance);
        }
    }
    for (uid, (completed, lowest)) in per_user {
        if INITIAL_BALANCE - completed != lowest {
            return Err(format!("uid {uid}: {INITIAL_BALANCE} - {completed} != final {lowest}"));
        }
    }
    Ok(())
}

fn produce_users(loader: &load::Loader, def: &TopologyDefinition, users: u64) -> Result<(), BenchError> {
    let partitions = def.partitions;
    loader.produce(&def.inputs.user_commands, users as usize, None, |i| {
        let uid = i as i64 + 1;
        let command = UserCommand::Create {
            command_id: uid,
            user: UserRow {
                uid,
                name: format!("U{uid}"),
                lname: "Bench".into(),
                credit_limit: INITIAL_BALANCE,
                credit_balance: INITIAL_BALANCE,
            },
        };
        let (key, value) = encode_command(&command);
        load::Outgoing {
            partition: partition_for(&key, partitions) as i32,
            key,
            value,
        }
    })?;
    Ok(())
}

/// Creates a run's own topics (`base` with the tag as prefix) and writes its topology file
/// into the run's folder, for the child processes. Returns the topology and the folder.
pub fn prepare(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    tag: &str,
    guarantee: ProcessingGuarantee,
) -> Result<(TopologyDefinition, PathBuf), BenchError> {
    let mut def = base.with_topic_prefix(&format!("{tag}-"));
    def.processing_guarantee = guarantee;
    def.seed_bridge.enabled = false;
    tokio::runtime::Handle::current().block_on(admin::ensure_topics(&config.kafka, &def))?;
    let dir = opts.work_dir.join(tag);
    std::fs::create_dir_all(&dir)?;
    let topology = toml::to_string(&def).map_err(|e| BenchError::Setup(e.to_string()))?;
    std::fs::write(dir.join("topology.toml"), topology)?;
    Ok((def, dir))
}

/// Measures one configuration.
pub fn run_one(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    spec: &RunSpec,
) -> Result<ProcessorResult, BenchError> {
    let (def, dir) = prepare(config, base, opts, &spec.tag, spec.guarantee)?;
    let topology = dir.join("topology.toml");
    let runtime = tokio::runtime::Handle::current();
    let partitions = def.partitions;
    let users = spec.users.max(1);
    let loader = load::Loader::new(&config.kafka)?;
    produce_users(&loader, &def, users)?;
    let sampler = UidSampler::new(users, opts.uids);
    let order = |i: usize| {
        let n = i as u64;
        let order = Order {
            order_id: n as i64 + 1,
            uid: sampler.uid(n),
            amount: (n % 97) as i64 + 1,
            timestamp_ms: load::now_ms(),
        };
        let (key, value) = encode_order(&order);
        load::Outgoing {
            partition: partition_for(&key, partitions) as i32,
            key,
            value,
        }
    };
    loader.produce(&def.inputs.orders, opts.orders as usize, None, order)?;

    // Watch every output from the start; report when the backlog is done.
    let total = (opts.orders + opts.latency_orders) as usize;
    let (backlog_done, backlog_rx) = mpsc::channel::<(Instant, Instant)>();
    let kafka = config.kafka.clone();
    let decisions_topic = def.outputs.decisions.clone();
    let backlog = opts.orders as usize;
    let peer = spec.peer;
    let watcher = std::thread::spawn(move || {
        let mut outputs: HashMap<i64, Option<Decision>> = HashMap::new();
        let mut latencies = Vec::new();
        let mut duplicates = 0;
        let mut seen = 0usize;
        let mut first = None;
        let result = load::watch(
            &kafka,
            &decisions_topic,
            partitions,
            total,
            RUN_TIMEOUT,
            |value, visible| {
                seen += 1;
                let first_seen = *first.get_or_insert_with(Instant::now);
                if let Some((decision, id, ts)) = parse_output(peer, value) {
                    if id as usize > backlog {
                        latencies.push((visible - ts) as f64);
                    }
                    if outputs.insert(id, decision).is_some() {
                        duplicates += 1;
                    }
                }
                if seen == backlog {
                    let _ = backlog_done.send((first_seen, Instant::now()));
                }
            },
        );
        (result.map_err(|e| e.to_string()), outputs, latencies, duplicates)
    });

    let mut replicas = start_replicas(spec, &def, &topology, config, opts, &dir)?;
    let started = Instant::now();
    let window = loop {
        match backlog_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(window) => break Some(window),
            Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < RUN_TIMEOUT && !replicas.any_exited() => {}
            Err(_) => break None,
        }
    };
    let throughput = window.map(|(first, last)| {
        (opts.orders.saturating_sub(1)) as f64 / last.duration_since(first).as_secs_f64().max(1e-3)
    });
    let rate = opts
        .latency_rate
        .or_else(|| throughput.map(|t| (t / 2.0).max(1.0) as u64));
    if let (Some(rate), Some(_)) = (rate, window) {
        let offset = opts.orders as usize;
        loader.produce(&def.inputs.orders, opts.latency_orders as usize, Some(rate), |i| {
            order(offset + i)
        })?;
    }
    // Wait for the latency batch's outputs while the replicas still run.
    while window.is_some() && !watcher.is_finished() && started.elapsed() < RUN_TIMEOUT && !replicas.any_exited() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let exited = replicas.any_exited();
    let (peak_rss_mb, cpu_seconds) = replicas.usage();
    drop(replicas);
    let (watched, outputs, mut latencies, duplicates) = if watcher.is_finished() {
        watcher
            .join()
            .unwrap_or_else(|_| (Err("the output watcher panicked".into()), HashMap::new(), Vec::new(), 0))
    } else {
        // The watcher ends at its own timeout; a failed run does not wait for it.
        let problem = match (window, exited) {
            (Some(_), true) => Err(format!(
                "a replica exited during the latency batch; see {}",
                dir.display()
            )),
            (Some(_), false) => Err("the latency batch was not decided in time".to_string()),
            (None, _) => Ok(0),
        };
        (problem, HashMap::new(), Vec::new(), 0)
    };
    let _ = runtime.block_on(admin::delete_topics(&config.kafka, &def));
    let verdict = watched
        .and_then(|_| match (window, exited) {
            (Some(_), _) => Ok(()),
            (None, true) => Err(format!("a replica exited; see {}", dir.display())),
            (None, false) => Err("the backlog was not decided in time".to_string()),
        })
        .and_then(|()| check(peer, &outputs, duplicates, opts.orders + opts.latency_orders));
    latencies.sort_by(f64::total_cmp);
    let unknown_user_declines = outputs.values().flatten().filter(|d| d.balance_after.is_none()).count() as u64;
    let verdict = verdict.and_then(|()| match unknown_user_declines {
        0 => Ok(()),
        n => Err(format!(
            "{n} orders declined as unknown user although every user was created before them"
        )),
    });
    let ok = verdict.is_ok();
    let when = |v: Option<f64>| if ok { v } else { None };
    Ok(ProcessorResult {
        peer,
        guarantee: spec.guarantee.as_str(),
        replicas: spec.replicas,
        users,
        orders: opts.orders,
        uids: opts.uids.label(),
        correct: ok,
        unknown_user_declines,
        problem: verdict.err(),
        throughput_per_s: when(throughput),
        latency_rate_per_s: when(rate.map(|r| r as f64)),
        latency_ms_p50: when(percentile(&latencies, 50.0)),
        latency_ms_p95: when(percentile(&latencies, 95.0)),
        latency_ms_p99: when(percentile(&latencies, 99.0)),
        latency_ms_max: when(latencies.last().copied()),
        peak_rss_mb: when(peak_rss_mb),
        cpu_seconds: when(cpu_seconds),
    })
}
