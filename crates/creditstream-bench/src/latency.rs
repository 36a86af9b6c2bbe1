//! One system's end-to-end latency at fixed rates, the same rates for every system: the
//! order's produce time to its decision visible to a read_committed consumer. The system
//! starts on fresh topics with its users; orders trickle in (10/s) until its first decision
//! is visible, so its start-up is not measured; then, for each rate, orders go out at that
//! rate for a warm-up and then for the measured window. Every system commits every 100 ms
//! here (Kafka Streams' default under exactly-once).
//! Every decision is checked against the reference, as in the throughput runs.

use crate::error::BenchError;
use crate::load::Loader;
use crate::options::{BenchOptions, Cadence, LatencyOptions, System};
use crate::probe;
use crate::report::{BenchReport, Key};
use crate::run::{self, verdict_of, RUN_TIMEOUT};
use crate::systems::{self, Launch};
use crate::watcher::{self, percentile, WatchSpec};
use crate::workload::Workload;
use creditstream::config::Config;
use creditstream::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The commit cadence of every system in the latency runs, caught up: Kafka Streams'
/// exactly-once default commit.interval.ms.
const LATENCY_COMMIT_MS: u64 = 100;

/// Orders sent at most while waiting for the system's first decision (one per 100 ms).
const READINESS_ORDERS: u64 = 1200;
/// How long the last decisions may take to show after the last order was sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// One rate's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyPhase {
    pub rate_per_s: u64,
    /// The rate as a share of Kafka Streams' median maximum, when it was derived from it.
    pub share_of_peer_max: Option<f64>,
    pub orders_measured: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// creditstream only: the mean of each phase over the measured window, ms
    /// (`decision:queued`, `decision:awaiting_commit`, `commit:flush`, ...; absent in
    /// older reports).
    #[serde(default)]
    pub breakdown_ms: Vec<(String, f64)>,
}

/// One system's latency runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyResult {
    pub system: System,
    /// Which repetition (0 in reports made before latency was repeated).
    #[serde(default)]
    pub repetition: u32,
    pub guarantee: String,
    pub cadence: Cadence,
    pub users: u64,
    pub warmup_s: u64,
    pub measured_s: u64,
    pub ok: bool,
    pub error: Option<String>,
    pub phases: Vec<LatencyPhase>,
    pub affinity: Vec<String>,
}

/// A rate and, when derived, its share of the peer's maximum.
pub type Rate = (u64, Option<f64>);

#[allow(clippy::too_many_arguments)]
pub fn run_latency(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    latency: &LatencyOptions,
    system: System,
    guarantee: ProcessingGuarantee,
    rates: &[Rate],
    peer_threads: u32,
    repetition: u32,
    tag: &str,
) -> LatencyResult {
    let mut result = LatencyResult {
        system,
        repetition,
        guarantee: guarantee.as_str().to_string(),
        cadence: Cadence::Every100Ms,
        users: opts.users,
        warmup_s: latency.warmup_seconds,
        measured_s: latency.seconds,
        ok: false,
        error: None,
        phases: Vec::new(),
        affinity: Vec::new(),
    };
    let outcome = prepare_and_measure(
        config,
        base,
        opts,
        latency,
        system,
        guarantee,
        rates,
        peer_threads,
        tag,
        &mut result,
    );
    match outcome {
        Ok(()) => result.ok = true,
        Err(e) => result.error = Some(e),
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn prepare_and_measure(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    latency: &LatencyOptions,
    system: System,
    guarantee: ProcessingGuarantee,
    rates: &[Rate],
    peer_threads: u32,
    tag: &str,
    result: &mut LatencyResult,
) -> Result<(), String> {
    let (def, dir) = run::prepare(config, base, opts, tag, guarantee).map_err(|e: BenchError| e.to_string())?;
    let outcome = measure(config, opts, latency, system, rates, peer_threads, &def, &dir, result);
    run::clean_up(&config.kafka, &def, system);
    outcome
}

#[allow(clippy::too_many_arguments)]
fn measure(
    config: &Config,
    opts: &BenchOptions,
    latency: &LatencyOptions,
    system: System,
    rates: &[Rate],
    peer_threads: u32,
    def: &TopologyDefinition,
    dir: &std::path::Path,
    result: &mut LatencyResult,
) -> Result<(), String> {
    let per_rate = |rate: u64| rate * (latency.warmup_seconds + latency.seconds);
    let most = READINESS_ORDERS + rates.iter().map(|&(r, _)| per_rate(r)).sum::<u64>();
    let workload = Workload::new(opts.users, most, opts.uids);
    let reference = Arc::new(workload.reference(most));
    let loader = Loader::new(&config.kafka).map_err(|e| e.to_string())?;
    run::produce_input(&loader, def, &workload, 0).map_err(|e| e.to_string())?;
    let watcher = watcher::spawn(
        &config.kafka,
        WatchSpec {
            system,
            topic: def.outputs.decisions.clone(),
            partitions: def.partitions,
            expected: most,
            timeout: RUN_TIMEOUT,
            reference: reference.clone(),
            keep_latency: true,
        },
        vec![1],
    );
    let topology_file = dir.join("topology.toml");
    let launch = Launch {
        system,
        cadence: Cadence::Every100Ms,
        def,
        topology_file: &topology_file,
        dir,
        replicas: 1,
        pinned: None,
        peer_commit_interval_ms: LATENCY_COMMIT_MS,
        peer_threads,
        stream_threads: None,
        passthrough: (workload.users, most, reference.completed),
        caught_up_commit_ms: Some(LATENCY_COMMIT_MS),
    };
    let mut started = match systems::start(&launch, config, opts) {
        Ok(s) => s,
        Err(e) => {
            watcher.stop();
            return Err(e.to_string());
        }
    };
    result.affinity = started.children.affinities();
    let partitions = def.partitions;
    let topic = &def.inputs.orders;
    let mut sent = 0u64;
    let send = |from: u64, count: u64, rate: u64| {
        loader
            .produce(topic, count as usize, Some(rate), |i| {
                workload.order_record(from + i as u64, partitions)
            })
            .map_err(|e| e.to_string())
    };
    // Orders trickle in until the first decision shows: the system has joined and restored.
    let ready = loop {
        if watcher.seen() > 0 {
            break true;
        }
        if sent >= READINESS_ORDERS || started.children.any_exited() {
            break false;
        }
        send(sent, 1, 1)?;
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut windows = Vec::new();
    if ready {
        // creditstream's phase histograms, read as its measured window begins and ends.
        let phases = |started: &systems::Started| {
            (system == System::Creditstream)
                .then(|| started.probes.first().and_then(|addr| probe::phases(*addr).ok()))
                .flatten()
        };
        for &(rate, share) in rates {
            let warm = rate * latency.warmup_seconds;
            let measured = rate * latency.seconds;
            send(sent, warm, rate)?;
            let before = phases(&started);
            send(sent + warm, measured, rate)?;
            let breakdown = match (before, phases(&started)) {
                (Some(before), Some(after)) => probe::phase_means(&before, &after),
                _ => Vec::new(),
            };
            windows.push((rate, share, sent + warm, sent + warm + measured, breakdown));
            sent += warm + measured;
        }
        let drained = Instant::now();
        while watcher.seen() < sent && drained.elapsed() < DRAIN_TIMEOUT && !started.children.any_exited() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let exited = started.children.any_exited();
    watcher.stop();
    drop(started.children);
    let watched = watcher.finish();
    if !ready {
        return Err(format!("no decision after {sent} orders; see {}", dir.display()));
    }
    for (rate, share, from, to, breakdown_ms) in windows {
        let slice = &watched.latency_ms[from as usize..to as usize];
        result.phases.push(LatencyPhase {
            rate_per_s: rate,
            share_of_peer_max: share,
            orders_measured: to - from,
            p50_ms: percentile(slice, 50.0),
            p99_ms: percentile(slice, 99.0),
            p999_ms: percentile(slice, 99.9),
            max_ms: percentile(slice, 100.0),
            breakdown_ms,
        });
    }
    if exited {
        return Err(format!("a replica exited; see {}", dir.display()));
    }
    verdict_of(&watched, sent)
}

/// The latency rates of a guarantee: given, or shares of the peer's median maximum at
/// 100 ms (creditstream's when the peer was not measured).
pub fn rates_for(report: &BenchReport, latency: &LatencyOptions, guarantee: &str) -> (Vec<Rate>, String) {
    if !latency.rates.is_empty() {
        return (
            latency.rates.iter().map(|&r| (r, None)).collect(),
            "rates given with --latency-rates".into(),
        );
    }
    let median_of = |system| {
        report
            .spread(
                Key {
                    system,
                    guarantee,
                    cadence: Cadence::Every100Ms,
                    replicas: 1,
                },
                |r| r.throughput_per_s,
            )
            .map(|s| s.median)
    };
    let (max, basis) = match (median_of(System::KafkaStreams), median_of(System::Creditstream)) {
        (Some(ks), _) => (
            ks,
            format!("shares of Kafka Streams' median maximum at 100 ms, {ks:.0} orders/s"),
        ),
        (None, Some(cs)) => (
            cs,
            format!(
                "shares of creditstream's median maximum at 100 ms, {cs:.0} orders/s (Kafka Streams was not measured)"
            ),
        ),
        (None, None) => (1000.0, "no maximum was measured; shares of 1000 orders/s".into()),
    };
    let rates = latency
        .shares
        .iter()
        .map(|&s| (((max * s).round() as u64).max(1), Some(s)))
        .collect();
    (rates, basis)
}
