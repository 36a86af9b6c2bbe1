//! The whole benchmark, in the order it runs:
//! 1. the peer's stream threads: 1 against 2 in a small run, unless given;
//! 2. creditstream's stream threads: 1 against 2, interleaved, unless skipped;
//! 3. throughput: for each guarantee and cadence (and replica count that can mean
//!    something on this machine), repetition i of every system before repetition i + 1 of
//!    any (A B C A B C ...), so drift of the machine touches every system alike; at the
//!    backlog cadence the peer's commit interval is what creditstream achieved in the
//!    same repetition;
//! 4. latency at fixed rates, the same for every system: shares of the peer's median
//!    maximum throughput;
//! 5. scaling over the number of users, the sink and the ingest, repeated likewise.
//!
//! The report is saved after every repetition.

use crate::children::Cores;
use crate::error::BenchError;
use crate::ingest;
use crate::latency;
use crate::options::{BenchOptions, Cadence, LatencyOptions, System};
use crate::plan;
use crate::report::{self, BenchReport, Key, LatencyRates, FORMAT};
use crate::run::{self, RunResult, RunSpec};
use crate::sink::{self, SinkResult};
use crate::stats;
use crate::systems;
use crate::targets::Goals;
use creditstream::config::Config;
use creditstream::topology::definition::{ProcessingGuarantee, TopologyDefinition};

pub(crate) struct Context<'a> {
    pub(crate) config: &'a Config,
    pub(crate) base: &'a TopologyDefinition,
    pub(crate) opts: &'a BenchOptions,
    /// This run's id: in every topic, group, database and work directory it makes.
    pub(crate) stamp: String,
    pub(crate) report: BenchReport,
}

impl Context<'_> {
    pub(crate) fn save(&self) {
        if let Some(path) = &self.opts.out {
            if let Err(e) = self.report.save(path) {
                eprintln!("bench: cannot write {}: {e}", path.display());
            }
        }
    }

    pub(crate) fn tag(&self, what: &str) -> String {
        format!("b{}-{what}", self.stamp).to_lowercase()
    }

    pub(crate) fn run(&mut self, spec: &RunSpec) -> RunResult {
        eprintln!(
            "bench: {} {} {} x{} rep {} ({}, {} orders) ...",
            spec.system.name(),
            spec.guarantee.as_str(),
            spec.cadence.label(),
            spec.replicas,
            spec.repetition,
            spec.section,
            spec.orders
        );
        let result = run::run_one(self.config, self.base, self.opts, spec);
        let dir = self.opts.work_dir.join(&spec.tag);
        if spec.system == System::KafkaStreams {
            let printed = std::fs::read_to_string(dir.join("peer-config-0.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            if let Some(config) = printed {
                // The latest throughput run's (the thread probe's only until one exists).
                if spec.section == "throughput" || self.report.kafka_streams.is_none() {
                    self.report.kafka_streams = Some(config);
                }
            }
        }
        tidy(&dir, result.ok);
        match &result.error {
            None => eprintln!(
                "bench:   {:.0} orders/s, commit every {:.0} ms, {:.1} CPU s / M orders",
                result.throughput_per_s.unwrap_or(0.0),
                result.achieved_commit_interval_ms.unwrap_or(0.0),
                result.cpu_seconds_per_million_orders.unwrap_or(0.0)
            ),
            Some(e) => eprintln!("bench:   FAILED: {e}"),
        }
        result
    }
}

/// Removes a repetition's folder; a failed one keeps its logs.
fn tidy(dir: &std::path::Path, ok: bool) {
    if ok {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn short(g: ProcessingGuarantee) -> &'static str {
    match g {
        ProcessingGuarantee::ExactlyOnceV2 => "eos",
        ProcessingGuarantee::AtLeastOnce => "alo",
    }
}

/// The id of one benchmark process: its start and its process id, so that two benchmarks
/// started in the same millisecond (two smoke tests, side by side) never share a topic.
pub(crate) fn run_id(started_at_ms: i64, pid: u32) -> String {
    format!("{started_at_ms}p{pid}")
}

fn system_tag(s: System) -> &'static str {
    match s {
        System::Creditstream => "cs",
        System::KafkaStreams => "ks",
        System::Passthrough => "pt",
    }
}

fn cadence_tag(c: Cadence) -> &'static str {
    match c {
        Cadence::Every100Ms => "c100",
        Cadence::Backlog => "cbl",
    }
}

fn throughput(cx: &mut Context<'_>, peer_threads: u32) {
    let plan = plan::replica_plan(cx);
    let opts = cx.opts;
    for &guarantee in &opts.guarantees {
        for &cadence in &opts.cadences {
            for (replicas, pinned) in &plan {
                for repetition in 0..opts.repetitions {
                    for &system in &opts.systems {
                        if system == System::Passthrough && *replicas > 1 {
                            continue;
                        }
                        let achieved = cx
                            .report
                            .runs
                            .iter()
                            .rev()
                            .filter(|r| {
                                r.system == System::Creditstream
                                    && r.guarantee == guarantee.as_str()
                                    && r.cadence == cadence
                                    && r.replicas == *replicas
                            })
                            .find_map(|r| {
                                if r.repetition == repetition {
                                    r.achieved_commit_interval_ms
                                } else {
                                    None
                                }
                            })
                            .or_else(|| {
                                let earlier: Vec<f64> = cx
                                    .report
                                    .figures(
                                        Key {
                                            system: System::Creditstream,
                                            guarantee: guarantee.as_str(),
                                            cadence,
                                            replicas: *replicas,
                                        },
                                        |r| r.achieved_commit_interval_ms,
                                    )
                                    .into_iter()
                                    .map(|(_, v)| v)
                                    .collect();
                                stats::median(&earlier)
                            });
                        let spec = RunSpec {
                            section: "throughput",
                            system,
                            guarantee,
                            cadence,
                            replicas: *replicas,
                            repetition,
                            users: opts.users,
                            orders: opts.orders,
                            peer_commit_interval_ms: systems::peer_commit_interval_ms(cadence, achieved),
                            peer_threads,
                            stream_threads: None,
                            pinned: pinned.clone(),
                            tag: cx.tag(&format!(
                                "{}-{}-{}-r{replicas}-n{repetition}",
                                short(guarantee),
                                cadence_tag(cadence),
                                system_tag(system)
                            )),
                            users_first: false,
                        };
                        let result = cx.run(&spec);
                        cx.report.runs.push(result);
                        cx.save();
                    }
                }
            }
        }
    }
}

fn latencies(cx: &mut Context<'_>, latency: &LatencyOptions, peer_threads: u32) {
    let opts = cx.opts;
    let measured = if latency.guarantees.is_empty() {
        &opts.guarantees
    } else {
        &latency.guarantees
    };
    for &guarantee in measured {
        let (rates, basis) = latency::rates_for(&cx.report, latency, guarantee.as_str());
        cx.report.latency_rates.push(LatencyRates {
            guarantee: guarantee.as_str().into(),
            rates: rates.clone(),
            basis,
        });
        // Interleaved like the throughput runs: repetition i of every system before i + 1.
        for repetition in 0..opts.repetitions {
            for &system in &opts.systems {
                eprintln!(
                    "bench: latency, {} {} at {:?} orders/s, rep {repetition} ...",
                    system.name(),
                    guarantee.as_str(),
                    rates.iter().map(|r| r.0).collect::<Vec<_>>()
                );
                let tag = cx.tag(&format!(
                    "lat-{}-{}-n{repetition}",
                    short(guarantee),
                    system_tag(system)
                ));
                let result = latency::run_latency(
                    cx.config,
                    cx.base,
                    opts,
                    latency,
                    system,
                    guarantee,
                    &rates,
                    peer_threads,
                    repetition,
                    &tag,
                );
                tidy(&opts.work_dir.join(&tag), result.ok);
                if let Some(e) = &result.error {
                    eprintln!("bench:   FAILED: {e}");
                }
                cx.report.latency.push(result);
                cx.save();
            }
        }
    }
}

fn failed_sink(repetition: u32, opts: &BenchOptions, problem: String) -> SinkResult {
    SinkResult {
        repetition,
        orders: opts.sink_orders,
        users: 0,
        rows: 0,
        batch_size: 0,
        correct: false,
        problem: Some(problem),
        sink_rows_per_s: None,
        loader_rows_per_s: None,
    }
}

fn others(cx: &mut Context<'_>) {
    let opts = cx.opts;
    for repetition in 0..opts.repetitions {
        for &users in &opts.scaling_users {
            let spec = RunSpec::scaling(
                users,
                opts.orders,
                repetition,
                cx.tag(&format!("scale-u{users}-n{repetition}")),
            );
            let result = cx.run(&spec);
            cx.report.scaling.push(result);
            cx.save();
        }
    }
    for repetition in (0..opts.repetitions).filter(|_| opts.sink_orders > 0) {
        eprintln!("bench: sink against the plain loader, rep {repetition} ...");
        let tag = cx.tag(&format!("sink-n{repetition}"));
        let result = sink::run(cx.config, cx.base, opts, &tag, repetition)
            .unwrap_or_else(|e| failed_sink(repetition, opts, e.to_string()));
        tidy(&opts.work_dir.join(&tag), result.correct);
        cx.report.sink.push(result);
        cx.save();
    }
    for repetition in (0..opts.repetitions).filter(|_| opts.ingest_seconds > 0) {
        eprintln!("bench: ingest against the 202-only route, rep {repetition} ...");
        let tag = cx.tag(&format!("ingest-n{repetition}"));
        let result = ingest::run(cx.config, cx.base, opts, &tag, repetition).unwrap_or_else(|e| ingest::IngestResult {
            repetition,
            seconds: opts.ingest_seconds,
            connections: 0,
            correct: false,
            problem: Some(e.to_string()),
            ingest: None,
            ceiling: None,
        });
        tidy(&opts.work_dir.join(&tag), result.correct);
        cx.report.ingest.push(result);
        cx.save();
    }
}

/// Runs every section of `opts`. Blocking: call it from `spawn_blocking` (it enters the
/// async runtime for topic and database administration).
pub fn run(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    skipped: Vec<String>,
) -> Result<BenchReport, BenchError> {
    std::fs::create_dir_all(&opts.work_dir)?;
    let started_at_ms = crate::load::now_ms();
    let stamp = run_id(started_at_ms, std::process::id());
    let report = BenchReport {
        format: FORMAT.into(),
        label: opts.label.clone(),
        machine: report::machine(),
        cores: Cores::detect(),
        started_at_ms,
        finished_at_ms: None,
        users: opts.users,
        orders: opts.orders,
        uids: opts.uids.label(),
        repetitions: opts.repetitions,
        creditstream: opts
            .cadences
            .iter()
            .map(|&c| systems::creditstream_settings(config, c))
            .collect(),
        kafka_streams: None,
        peer_threads: None,
        stream_threads: None,
        cadence_matching: format!(
            "every system of a comparison commits alike. At 100 ms: Kafka Streams commit.interval.ms=100; creditstream \
             (and the pass-through) commit_interval_ms={} with commit_max_records={} — creditstream commits a backlog at \
             most every 10 × commit_interval_ms, so this gives a commit every 100 ms, time alone triggering (with \
             commit_interval_ms=100 it would commit only every 1 s). At creditstream's backlog cadence: creditstream and the \
             pass-through keep commit_interval_ms={} and commit_max_records={} (a commit every {} records, at most every {} ms); \
             Kafka Streams gets commit.interval.ms = the interval creditstream achieved in the same repetition (window ÷ \
             commits, from its commit counter), rounded to the millisecond. Each run's achieved interval is in the table.",
            systems::EVERY_100MS_INTERVAL_MS,
            systems::EVERY_100MS_MAX_RECORDS,
            config.processor.commit_interval_ms,
            config.processor.commit_max_records,
            config.processor.commit_max_records,
            config.processor.commit_interval_ms * 10
        ),
        replica_scaling: String::new(),
        runs: Vec::new(),
        latency_rates: Vec::new(),
        latency: Vec::new(),
        scaling: Vec::new(),
        sink: Vec::new(),
        ingest: Vec::new(),
        skipped,
        goals: Some(Goals::CURRENT),
    };
    let mut cx = Context {
        config,
        base,
        opts,
        stamp,
        report,
    };
    cx.save();
    let peer_threads = plan::choose_threads(&mut cx).unwrap_or(1);
    plan::probe_stream_threads(&mut cx);
    throughput(&mut cx, peer_threads);
    if let Some(latency) = &opts.latency {
        latencies(&mut cx, latency, peer_threads);
    }
    others(&mut cx);
    cx.report.finished_at_ms = Some(crate::load::now_ms());
    cx.save();
    Ok(cx.report)
}

#[cfg(test)]
mod tests {
    use super::run_id;

    #[test]
    fn two_benchmarks_started_in_one_millisecond_get_different_ids() {
        assert_ne!(run_id(1_764_000_000_000, 41), run_id(1_764_000_000_000, 42));
        assert!(run_id(1_764_000_000_000, 41).starts_with("1764000000000"));
    }
}
