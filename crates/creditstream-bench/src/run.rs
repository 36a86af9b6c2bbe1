//! One throughput repetition of one system: fresh topics, the users and a backlog of
//! orders produced before the system starts, then
//! - throughput: orders decided per second from the first decision visible once the
//!   system's consumer group is stable with a member per stream thread, each given
//!   partitions, to the last (group join, its rebalances and restore are not counted);
//! - the commit cadence achieved over that window, from the system's commit counter;
//! - CPU seconds (user + sys of every replica over the window) and peak RSS;
//! - records and bytes on every output topic and the changelog;
//!
//! and the checks: each order decided once and as the [`Reference`] says, and every
//! topic's record count. A repetition that fails keeps its error and whatever it measured.

use crate::children::{Children, Usage};
use crate::load::Loader;
use crate::options::{BenchOptions, Cadence, System};
use crate::outputs::{self, ExpectedCounts, TopicCount};
use crate::probe;
use crate::systems::{self, Launch};
pub use crate::topics::{changelog_of, clean_up, prepare, produce_input};
use crate::watcher::{self, WatchSpec, Watched};
use crate::window::{self, Group, Missed};
use crate::workload::{Reference, Workload};
use creditstream::config::Config;
use creditstream::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one repetition may take before it is recorded as failed.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long reading an output topic to its end may take.
const COUNT_TIMEOUT: Duration = Duration::from_secs(300);

/// What one repetition measures.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// "throughput", "thread probe" or "scaling".
    pub section: &'static str,
    pub system: System,
    pub guarantee: ProcessingGuarantee,
    pub cadence: Cadence,
    pub replicas: u32,
    pub repetition: u32,
    pub users: u64,
    pub orders: u64,
    /// The peer's commit.interval.ms (ignored by the other systems).
    pub peer_commit_interval_ms: u64,
    pub peer_threads: u32,
    /// creditstream's `processor.num_stream_threads`; `None`: config/default.toml's.
    pub stream_threads: Option<u32>,
    pub pinned: Option<Vec<String>>,
    pub tag: String,
    /// Produce the orders only once creditstream consumed every create, so the window
    /// measures orders alone (the scaling runs: with millions of users, some tasks would
    /// still be creating users while others decide). Otherwise both inputs are a backlog
    /// before the system starts.
    pub users_first: bool,
}

impl RunSpec {
    /// creditstream alone at exactly_once_v2 and its backlog cadence, 1 replica, both
    /// inputs a backlog before it starts, config/default.toml's stream threads.
    fn creditstream_alone(section: &'static str, users: u64, orders: u64, repetition: u32, tag: String) -> Self {
        Self {
            section,
            system: System::Creditstream,
            guarantee: ProcessingGuarantee::ExactlyOnceV2,
            cadence: Cadence::Backlog,
            replicas: 1,
            repetition,
            users,
            orders,
            peer_commit_interval_ms: 0,
            peer_threads: 1,
            stream_threads: None,
            pinned: None,
            tag,
            users_first: false,
        }
    }

    /// A scaling repetition: creditstream alone, `users` users, the orders produced once
    /// the creates were consumed.
    pub fn scaling(users: u64, orders: u64, repetition: u32, tag: String) -> Self {
        Self {
            users_first: true,
            ..Self::creditstream_alone("scaling", users, orders, repetition, tag)
        }
    }

    /// A repetition of the stream-thread probe: creditstream alone with `threads` threads,
    /// the orders produced once the creates were consumed and its threads share the
    /// partitions (so the window holds no start-up rebalance).
    pub fn stream_thread_probe(threads: u32, users: u64, orders: u64, repetition: u32, tag: String) -> Self {
        Self {
            stream_threads: Some(threads),
            users_first: true,
            ..Self::creditstream_alone("stream thread probe", users, orders, repetition, tag)
        }
    }
}

/// The raw figures of one repetition; the `Option`s are `None` where nothing was measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub section: String,
    pub system: System,
    pub guarantee: String,
    pub cadence: Cadence,
    pub replicas: u32,
    pub repetition: u32,
    pub users: u64,
    pub orders: u64,
    pub uids: String,
    pub started_at_ms: i64,
    pub ok: bool,
    pub error: Option<String>,
    /// How this system was told to commit (its own setting names).
    pub commit_setting: String,
    pub peer_threads: Option<u32>,
    /// creditstream's stream threads per replica (absent in reports made before they existed).
    #[serde(default)]
    pub stream_threads: Option<u32>,
    pub throughput_per_s: Option<f64>,
    pub window_s: Option<f64>,
    /// Commits of all replicas and threads over the window.
    pub commits: Option<u64>,
    /// Window ÷ commits per committing thread, ms.
    pub achieved_commit_interval_ms: Option<f64>,
    pub probe_error: Option<String>,
    /// User + sys CPU seconds of every replica over the window, and over its whole life.
    pub cpu_seconds: Option<f64>,
    pub cpu_seconds_total: Option<f64>,
    pub cpu_seconds_per_million_orders: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// Cores the whole machine kept busy over the window (broker and load included;
    /// absent in older reports).
    #[serde(default)]
    pub machine_cores_busy: Option<f64>,
    pub peak_rss_mib_per_million_orders: Option<f64>,
    /// Orders the reference says complete.
    pub completed_orders: u64,
    pub outputs: Vec<TopicCount>,
    pub output_records_per_order: Option<f64>,
    pub output_bytes_per_order: Option<f64>,
    pub output_records_per_s: Option<f64>,
    pub output_bytes_per_s: Option<f64>,
    /// Digest of every decision (order id, status, balance); equal across systems when
    /// they decided every order alike.
    pub decisions_digest: Option<String>,
    /// Each replica's allowed cores.
    pub affinity: Vec<String>,
    /// creditstream only (its first replica): the mean of each commit phase over the window,
    /// ms, as `commit:flush` (absent in older reports).
    #[serde(default)]
    pub commit_phases_ms: Vec<(String, f64)>,
    /// creditstream only: the share of the window its first replica's stream threads spent
    /// committing (the commit phases' seconds over the window; absent in older reports).
    #[serde(default)]
    pub commit_share: Option<f64>,
    /// Whether the window began at the first decision made once the consumer group was
    /// stable with every member given partitions (`false`: the backlog was decided before
    /// that, so it began at the first decision; absent in older reports, whose windows
    /// began at the first decision).
    #[serde(default)]
    pub settled_window: Option<bool>,
    /// Seconds from the first decision to the window's start: how long the group took to
    /// settle after it began deciding (absent in older reports).
    #[serde(default)]
    pub window_delay_s: Option<f64>,
    /// Throughput over the older reports' window, from the first decision to the last, for
    /// comparison with them (absent in older reports).
    #[serde(default)]
    pub throughput_from_first_per_s: Option<f64>,
}

/// Waits until creditstream's replicas consumed `users` user commands between them.
fn users_consumed(probes: &[SocketAddr], users: u64, children: &mut Children, since: Instant) -> Result<(), String> {
    children.wait_until(since, RUN_TIMEOUT, || {
        let consumed: f64 = probes.iter().filter_map(|&a| probe::users_consumed(a).ok()).sum();
        if consumed >= users as f64 {
            Ok(())
        } else {
            Err(format!("the {users} creates were not consumed ({consumed} were)"))
        }
    })
}

/// The reasons a repetition's output is wrong, from what the watcher saw.
pub fn verdict_of(watched: &Watched, expected: u64) -> Result<(), String> {
    if let Some(e) = &watched.error {
        return Err(format!("reading the decisions: {e}"));
    }
    if watched.duplicates > 0 {
        return Err(format!("{} orders were decided more than once", watched.duplicates));
    }
    if watched.unreadable > 0 {
        return Err(format!("{} outputs could not be read", watched.unreadable));
    }
    if watched.unknown_user > 0 {
        return Err(format!(
            "{} orders declined as unknown user although every user was created before them",
            watched.unknown_user
        ));
    }
    if watched.mismatches > 0 {
        return Err(format!(
            "{} decisions differ from the reference; first: {}",
            watched.mismatches,
            watched.first_mismatch.clone().unwrap_or_default()
        ));
    }
    if watched.seen != expected {
        return Err(format!("{} of {expected} orders were decided", watched.seen));
    }
    Ok(())
}

/// Measures one repetition. Never fails: every problem ends up in the result's `error`.
pub fn run_one(config: &Config, base: &TopologyDefinition, opts: &BenchOptions, spec: &RunSpec) -> RunResult {
    let workload = Workload::new(spec.users, spec.orders, opts.uids);
    let reference = Arc::new(workload.reference(spec.orders));
    let (interval, max_records) = systems::creditstream_commits(config, spec.cadence);
    let mut result = RunResult {
        section: spec.section.to_string(),
        system: spec.system,
        guarantee: spec.guarantee.as_str().to_string(),
        cadence: spec.cadence,
        replicas: spec.replicas,
        repetition: spec.repetition,
        users: workload.users,
        orders: spec.orders,
        uids: opts.uids.label(),
        started_at_ms: crate::load::now_ms(),
        ok: false,
        error: None,
        commit_setting: match spec.system {
            System::KafkaStreams => format!("commit.interval.ms={}", spec.peer_commit_interval_ms),
            _ => format!("commit_interval_ms={interval}, commit_max_records={max_records}"),
        },
        peer_threads: (spec.system == System::KafkaStreams).then_some(spec.peer_threads),
        stream_threads: (spec.system == System::Creditstream).then(|| {
            spec.stream_threads
                .unwrap_or(config.processor.num_stream_threads as u32)
        }),
        throughput_per_s: None,
        window_s: None,
        commits: None,
        achieved_commit_interval_ms: None,
        probe_error: None,
        cpu_seconds: None,
        cpu_seconds_total: None,
        cpu_seconds_per_million_orders: None,
        peak_rss_mib: None,
        machine_cores_busy: None,
        peak_rss_mib_per_million_orders: None,
        completed_orders: reference.completed,
        outputs: Vec::new(),
        output_records_per_order: None,
        output_bytes_per_order: None,
        output_records_per_s: None,
        output_bytes_per_s: None,
        decisions_digest: None,
        affinity: Vec::new(),
        commit_phases_ms: Vec::new(),
        commit_share: None,
        settled_window: None,
        window_delay_s: None,
        throughput_from_first_per_s: None,
    };
    match measure(config, base, opts, spec, &workload, reference, &mut result) {
        Ok(()) => result.ok = true,
        Err(e) => result.error = Some(e),
    }
    result
}

fn measure(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    spec: &RunSpec,
    workload: &Workload,
    reference: Arc<Reference>,
    result: &mut RunResult,
) -> Result<(), String> {
    let (def, dir) = prepare(config, base, opts, &spec.tag, spec.guarantee).map_err(|e| e.to_string())?;
    let outcome = measure_on(config, opts, spec, workload, reference, result, &def, &dir);
    clean_up(&config.kafka, &def, spec.system);
    outcome
}

#[allow(clippy::too_many_arguments)]
fn measure_on(
    config: &Config,
    opts: &BenchOptions,
    spec: &RunSpec,
    workload: &Workload,
    reference: Arc<Reference>,
    result: &mut RunResult,
    def: &TopologyDefinition,
    dir: &std::path::Path,
) -> Result<(), String> {
    let loader = Loader::new(&config.kafka).map_err(|e| e.to_string())?;
    if spec.users_first {
        produce_input(&loader, def, workload, 0).map_err(|e| e.to_string())?;
    } else {
        produce_input(&loader, def, workload, spec.orders).map_err(|e| e.to_string())?;
    }
    let completed = reference.completed;
    let watcher = watcher::spawn(
        &config.kafka,
        WatchSpec {
            system: spec.system,
            topic: def.outputs.decisions.clone(),
            partitions: def.partitions,
            expected: spec.orders,
            timeout: RUN_TIMEOUT,
            reference,
            keep_latency: false,
        },
        vec![1, spec.orders],
    );
    let topology_file = dir.join("topology.toml");
    let launch = Launch {
        system: spec.system,
        cadence: spec.cadence,
        def,
        topology_file: &topology_file,
        dir,
        replicas: spec.replicas,
        pinned: spec.pinned.clone(),
        peer_commit_interval_ms: spec.peer_commit_interval_ms,
        peer_threads: spec.peer_threads,
        stream_threads: spec.stream_threads,
        passthrough: (workload.users, spec.orders, completed),
        caught_up_commit_ms: None,
    };
    let mut started = match systems::start(&launch, config, opts) {
        Ok(s) => s,
        Err(e) => {
            watcher.stop();
            return Err(e.to_string());
        }
    };
    let begun = Instant::now();
    let group = Group::of(config, spec, def);
    if spec.users_first {
        let orders = users_consumed(&started.probes, workload.users, &mut started.children, begun).and_then(|()| {
            group.settle(config, &mut started.children, begun)?;
            loader
                .produce(&def.inputs.orders, spec.orders as usize, None, |i| {
                    workload.order_record(i as u64, def.partitions)
                })
                .map_err(|e| e.to_string())
        });
        if let Err(e) = orders {
            watcher.stop();
            return Err(e);
        }
    }
    drop(loader);
    let window = window::measure(config, spec, &group, &watcher, &mut started, begun);
    result.affinity = started.children.affinities();
    let exited = started.children.any_exited();
    let total = started.children.usage();
    watcher.stop();
    drop(started.children);
    let watched = watcher.finish();
    let window = match window {
        Ok(window) => window,
        Err(Missed::Unsettled(how)) => return Err(how),
        Err(Missed::NotDecided) => {
            return Err(if exited {
                format!("a replica exited; see {}", dir.display())
            } else {
                verdict_of(&watched, spec.orders)
                    .err()
                    .unwrap_or_else(|| "the backlog was not decided in time".into())
            })
        }
    };
    let window_s = window.seconds();
    let decided = spec.orders.saturating_sub(window.counted_from) as f64;
    let throughput = decided / window_s;
    result.settled_window = Some(window.settled);
    result.window_delay_s = Some(window.start.duration_since(window.first).as_secs_f64());
    result.throughput_from_first_per_s = Some(spec.orders.saturating_sub(1) as f64 / window.seconds_from_first());
    result.machine_cores_busy = window.machine_cores_busy;
    result.commit_phases_ms = window.commit_phases_ms;
    result.commit_share = window.commit_share;
    let (u0, u1) = window.usage;
    result.window_s = Some(window_s);
    result.throughput_per_s = Some(throughput);
    record_usage(result, u0, u1, total, decided);
    match window.commits {
        (Ok(c0), Ok(c1)) => {
            let commits = c1.saturating_sub(c0);
            let committers = spec.replicas
                * match spec.system {
                    System::KafkaStreams => spec.peer_threads,
                    System::Creditstream => result.stream_threads.unwrap_or(1),
                    System::Passthrough => 1,
                };
            result.commits = Some(commits);
            result.achieved_commit_interval_ms =
                (commits > 0).then(|| window_s * 1000.0 / (commits as f64 / f64::from(committers)));
        }
        (Err(e), _) | (_, Err(e)) => result.probe_error = Some(e),
    }
    result.decisions_digest = (spec.system != System::Passthrough).then(|| format!("{:016x}", watched.digest));
    verdict_of(&watched, spec.orders)?;
    count_outputs(config, spec, def, workload, completed, result)
}

fn record_usage(result: &mut RunResult, u0: Option<Usage>, u1: Option<Usage>, total: Option<Usage>, orders: f64) {
    let per_million = |v: f64| v / orders.max(1.0) * 1e6;
    if let (Some(u0), Some(u1)) = (u0, u1) {
        let cpu = u1.cpu_seconds - u0.cpu_seconds;
        result.cpu_seconds = Some(cpu);
        result.cpu_seconds_per_million_orders = Some(per_million(cpu));
        result.peak_rss_mib = Some(u1.peak_rss_mib);
        result.peak_rss_mib_per_million_orders = Some(per_million(u1.peak_rss_mib));
    }
    result.cpu_seconds_total = total.map(|u| u.cpu_seconds);
}

fn count_outputs(
    config: &Config,
    spec: &RunSpec,
    def: &TopologyDefinition,
    workload: &Workload,
    completed: u64,
    result: &mut RunResult,
) -> Result<(), String> {
    let changelog = changelog_of(spec.system, def);
    for (role, topic) in [
        ("decisions", &def.outputs.decisions),
        ("user_changes", &def.outputs.user_changes),
        ("dead_letters", &def.outputs.dead_letters),
        ("changelog", &changelog),
    ] {
        let counted = outputs::count(&config.kafka, role, topic, def.partitions, COUNT_TIMEOUT)?;
        result.outputs.push(counted);
    }
    let records: u64 = result.outputs.iter().map(|c| c.records).sum();
    let bytes: u64 = result.outputs.iter().map(|c| c.bytes).sum();
    let orders = spec.orders.max(1) as f64;
    result.output_records_per_order = Some(records as f64 / orders);
    result.output_bytes_per_order = Some(bytes as f64 / orders);
    if let Some(t) = result.throughput_per_s {
        result.output_records_per_s = Some(records as f64 / orders * t);
        result.output_bytes_per_s = Some(bytes as f64 / orders * t);
    }
    ExpectedCounts {
        users: workload.users,
        orders: spec.orders,
        completed,
        partitions: def.partitions,
        cached_changelog: spec.system == System::KafkaStreams,
        user_changes_per_user: if spec.system == System::KafkaStreams { 1 } else { 2 },
    }
    .check(&result.outputs)
}
