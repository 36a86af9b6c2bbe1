//! `creditstream bench`: measures the processor against its raw pass-through peer on the
//! same broker and the same input, in one run. For each configuration it prepares fresh
//! topics, produces the users and the orders, starts the replicas (child processes of
//! this binary), and measures:
//! - throughput: orders decided per second while the replicas work through the backlog,
//!   from the first output to the last (group join and restore are not counted);
//! - end-to-end latency (order produce time → decision visible to a read_committed
//!   consumer) of a second batch sent at half the measured throughput;
//! - the replicas' peak RSS and CPU seconds, from /proc.
//!
//! It checks correctness while it measures (one decision per order; each user's lowest
//! balance equals its initial balance minus its Completed amounts). A run that fails the
//! check reports no figures.

use crate::config::Config;
use crate::runtime::{admin, load};
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

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub users: u64,
    pub orders: u64,
    pub latency_orders: u64,
    pub replicas: Vec<u32>,
    pub guarantees: Vec<ProcessingGuarantee>,
    pub passthrough: bool,
    pub work_dir: PathBuf,
}

/// Who processed the orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    Creditstream,
    Passthrough,
}

/// The figures of one configuration; `None` where the run failed its check.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub peer: Peer,
    pub guarantee: &'static str,
    pub replicas: u32,
    pub orders: u64,
    pub correct: bool,
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

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const INITIAL_BALANCE: i64 = 500;

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

struct Replicas(Vec<Child>);

impl Replicas {
    fn start(peer: Peer, count: u32, topology: &Path, config: &Config, dir: &Path) -> Result<Self, BenchError> {
        let exe = std::env::current_exe()?;
        let mut children = Vec::new();
        for i in 0..count {
            let state = dir.join(format!("replica-{i}"));
            std::fs::create_dir_all(&state)?;
            let log = std::fs::File::create(dir.join(format!("replica-{i}.log")))?;
            let mut command = Command::new(&exe);
            command
                .arg(match peer {
                    Peer::Creditstream => "process",
                    Peer::Passthrough => "passthrough",
                })
                .env("CREDITSTREAM__TOPOLOGY_FILE", topology)
                .env(
                    "CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS",
                    &config.kafka.bootstrap_servers,
                )
                .env("CREDITSTREAM__PROCESSOR__STATE_DIR", &state)
                .env("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE", "false")
                .env("CREDITSTREAM__PROCESSOR__METRICS_LISTEN", "127.0.0.1:0")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            children.push(command.spawn()?);
        }
        Ok(Self(children))
    }

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
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// Order id, uid and amount of a record on the decisions topic (a decision, or for the
/// pass-through peer the order itself), with its order timestamp.
fn parse_output(peer: Peer, value: &[u8]) -> Option<(Option<Decision>, i64, i64)> {
    match peer {
        Peer::Creditstream => {
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

/// Measures one configuration.
pub fn run_one(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    peer: Peer,
    guarantee: ProcessingGuarantee,
    replicas: u32,
    tag: &str,
) -> Result<BenchResult, BenchError> {
    let mut def = base.with_topic_prefix(&format!("{tag}-"));
    def.processing_guarantee = guarantee;
    def.seed_bridge.enabled = false;
    let runtime = tokio::runtime::Handle::current();
    runtime.block_on(admin::ensure_topics(&config.kafka, &def))?;
    let dir = opts.work_dir.join(tag);
    std::fs::create_dir_all(&dir)?;
    let topology = dir.join("topology.toml");
    std::fs::write(&topology, toml::to_string(&def).unwrap_or_default())?;
    let partitions = def.partitions;
    let users = opts.users.max(1);

    load::produce(&config.kafka, &def.inputs.user_commands, users as usize, None, |i| {
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
    let order = |i: usize| {
        let n = i as u64;
        let uid = (n.wrapping_mul(2_654_435_761) % users) as i64 + 1;
        let order = Order {
            order_id: n as i64 + 1,
            uid,
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
    load::produce(&config.kafka, &def.inputs.orders, opts.orders as usize, None, order)?;

    // Watch every output from the start; report when the backlog is done.
    let total = (opts.orders + opts.latency_orders) as usize;
    let (backlog_done, backlog_rx) = mpsc::channel::<(Instant, Instant)>();
    let kafka = config.kafka.clone();
    let decisions_topic = def.outputs.decisions.clone();
    let backlog = opts.orders as usize;
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
            Duration::from_secs(1800),
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
        (result, outputs, latencies, duplicates)
    });

    let replicas_running = Replicas::start(peer, replicas, &topology, config, &dir)?;
    let window = backlog_rx.recv_timeout(Duration::from_secs(1800)).ok();
    let throughput = window.map(|(first, last)| {
        (opts.orders.saturating_sub(1)) as f64 / last.duration_since(first).as_secs_f64().max(1e-3)
    });
    let rate = throughput.map(|t| (t / 2.0).max(1.0) as u64);
    if let Some(rate) = rate {
        let offset = opts.orders as usize;
        load::produce(
            &config.kafka,
            &def.inputs.orders,
            opts.latency_orders as usize,
            Some(rate),
            |i| order(offset + i),
        )?;
    }
    let (watched, outputs, mut latencies, duplicates) =
        watcher.join().unwrap_or((Ok(0), HashMap::new(), Vec::new(), 0));
    let (peak_rss_mb, cpu_seconds) = replicas_running.usage();
    drop(replicas_running);
    let _ = runtime.block_on(admin::delete_topics(&config.kafka, &def));
    let verdict = watched
        .map_err(|e| e.to_string())
        .and_then(|_| {
            throughput
                .map(|_| ())
                .ok_or_else(|| "the backlog was not decided in time".to_string())
        })
        .and_then(|()| check(peer, &outputs, duplicates, opts.orders + opts.latency_orders));
    latencies.sort_by(f64::total_cmp);
    let ok = verdict.is_ok();
    let when = |v: Option<f64>| if ok { v } else { None };
    Ok(BenchResult {
        peer,
        guarantee: guarantee.as_str(),
        replicas,
        orders: opts.orders,
        correct: ok,
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

/// Every configuration of `opts`, in one run on one broker. Blocking: call it from
/// `spawn_blocking` (it enters the async runtime only for topic administration).
pub fn run(config: &Config, base: &TopologyDefinition, opts: &BenchOptions) -> Result<Vec<BenchResult>, BenchError> {
    let stamp = load::now_ms();
    let mut results = Vec::new();
    let mut peers = vec![Peer::Creditstream];
    if opts.passthrough {
        peers.push(Peer::Passthrough);
    }
    for &guarantee in &opts.guarantees {
        for &peer in &peers {
            let counts: Vec<u32> = if peer == Peer::Passthrough {
                vec![1]
            } else {
                opts.replicas.clone()
            };
            for replicas in counts {
                let tag = format!(
                    "bench{stamp}-{}-{}-{replicas}",
                    guarantee.as_str(),
                    if peer == Peer::Passthrough { "raw" } else { "cs" }
                );
                eprintln!("bench: {peer:?} {} x{replicas} ...", guarantee.as_str());
                let result = run_one(config, base, opts, peer, guarantee, replicas, &tag)?;
                eprintln!("bench: {}", row(&result));
                results.push(result);
            }
        }
    }
    Ok(results)
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.digits$}"))
}

fn row(r: &BenchResult) -> String {
    format!(
        "| {:?} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.peer,
        r.guarantee,
        r.replicas,
        r.orders,
        cell(r.throughput_per_s, 0),
        cell(r.latency_rate_per_s, 0),
        cell(r.latency_ms_p50, 1),
        cell(r.latency_ms_p99, 1),
        cell(r.latency_ms_max, 1),
        cell(r.peak_rss_mb, 0),
        if r.correct {
            "yes".to_string()
        } else {
            format!("NO: {}", r.problem.clone().unwrap_or_default())
        },
    )
}

/// The results as a Markdown table, with creditstream / pass-through ratios.
pub fn markdown(results: &[BenchResult]) -> String {
    let mut out = String::from(
        "| peer | guarantee | replicas | orders | decided/s | latency run /s | p50 ms | p99 ms | max ms | peak RSS MiB | correct |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        out.push_str(&row(r));
        out.push('\n');
    }
    for guarantee in ["exactly_once_v2", "at_least_once"] {
        let best = |peer: Peer| {
            results
                .iter()
                .filter(|r| r.peer == peer && r.guarantee == guarantee && r.replicas == 1)
                .find_map(|r| r.throughput_per_s)
        };
        if let (Some(cs), Some(raw)) = (best(Peer::Creditstream), best(Peer::Passthrough)) {
            out.push_str(&format!(
                "\ncreditstream / raw pass-through at {guarantee}, 1 replica: {:.2}\n",
                cs / raw
            ));
        }
    }
    out
}
