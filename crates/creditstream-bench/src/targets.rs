//! The targets, each a paired ratio of two systems' figures (repetition i over
//! repetition i) or a latency ratio at one fixed rate, with its goal and whether it is met.

use crate::latency::LatencyResult;
use crate::options::{Cadence, System};
use crate::report::{BenchReport, Key};
use crate::run::RunResult;
use crate::stats::{self, Spread};
use serde::{Deserialize, Serialize};

const EOS: &str = "exactly_once_v2";
const ALO: &str = "at_least_once";

fn throughput(r: &RunResult) -> Option<f64> {
    r.throughput_per_s
}
fn cpu_per_million(r: &RunResult) -> Option<f64> {
    r.cpu_seconds_per_million_orders
}

/// One target: what, the measured value, the goal, whether it is met.
pub struct Target {
    pub what: String,
    pub measured: Option<Spread>,
    pub goal: String,
    pub met: Option<bool>,
}

/// The goals a run is judged against. A report keeps the goals in force when it was made,
/// so a kept run renders with the goals it was measured for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Goals {
    /// creditstream's throughput over Kafka Streams', at least.
    pub throughput_over_peer: f64,
    /// creditstream's CPU per order over Kafka Streams', at most.
    pub cpu_over_peer: f64,
    /// creditstream's throughput over the workload-matched limit's, at least.
    pub share_of_limit: f64,
    /// creditstream's p99 over Kafka Streams' at each fixed rate, at most.
    pub p99_over_peer: f64,
    /// 2 stream threads' throughput over 1 thread's, at least.
    pub two_threads_over_one: f64,
}

impl Goals {
    /// The hardware issue's goals, for every run made now.
    pub const CURRENT: Goals = Goals {
        throughput_over_peer: 3.0,
        cpu_over_peer: 0.2,
        share_of_limit: 0.75,
        p99_over_peer: 0.5,
        two_threads_over_one: 1.3,
    };
    /// The goals of reports that do not name theirs (made before the hardware issue).
    pub const EARLIER: Goals = Goals {
        cpu_over_peer: 0.25,
        share_of_limit: 0.9,
        ..Goals::CURRENT
    };
}

fn at_least(goal: f64, measured: Option<Spread>) -> (String, Option<bool>) {
    (format!("≥ {goal}"), measured.map(|r| r.median >= goal))
}

fn at_most(goal: f64, measured: Option<Spread>) -> (String, Option<bool>) {
    (format!("≤ {goal}"), measured.map(|r| r.median <= goal))
}

pub fn key(system: System, guarantee: &str, cadence: Cadence) -> Key<'_> {
    Key {
        system,
        guarantee,
        cadence,
        replicas: 1,
    }
}

/// The targets, each with its paired figure and verdict.
pub fn targets(report: &BenchReport) -> Vec<Target> {
    let goals = report.goals.unwrap_or(Goals::EARLIER);
    let mut out = Vec::new();
    let mut cadences: Vec<Cadence> = report.runs.iter().map(|r| r.cadence).collect();
    cadences.sort();
    cadences.dedup();
    for guarantee in [EOS, ALO] {
        for &cadence in &cadences {
            let cs = key(System::Creditstream, guarantee, cadence);
            let ks = key(System::KafkaStreams, guarantee, cadence);
            let pt = key(System::Passthrough, guarantee, cadence);
            let at = format!("{guarantee}, {}, 1 replica", cadence.label());
            let ratio = report.paired(cs, ks, throughput);
            let (goal, met) = at_least(goals.throughput_over_peer, ratio);
            out.push(Target {
                what: format!("creditstream / Kafka Streams throughput, {at}"),
                measured: ratio,
                goal,
                met,
            });
            let cpu = report.paired(cs, ks, cpu_per_million);
            let (goal, met) = at_most(goals.cpu_over_peer, cpu);
            out.push(Target {
                what: format!("creditstream / Kafka Streams CPU s per million orders, {at}"),
                measured: cpu,
                goal,
                met,
            });
            let share = report.paired(cs, pt, throughput);
            let (goal, met) = at_least(goals.share_of_limit, share);
            out.push(Target {
                what: format!("creditstream / workload-matched limit, {at}"),
                measured: share,
                goal,
                met,
            });
        }
    }
    if let Some(probe) = &report.stream_threads {
        let ratio = probe.stream_thread_ratio(2);
        let (goal, met) = at_least(goals.two_threads_over_one, ratio);
        out.push(Target {
            what: "creditstream 2 stream threads / 1, one replica, exactly_once_v2, creditstream's backlog cadence"
                .into(),
            measured: ratio,
            goal,
            met,
        });
    }
    for guarantee in [EOS, ALO] {
        let rates: Vec<u64> = report
            .latency
            .iter()
            .find(|l| l.system == System::Creditstream && l.guarantee == guarantee)
            .map(|l| l.phases.iter().map(|p| p.rate_per_s).collect())
            .unwrap_or_default();
        let peer_measured = report
            .latency
            .iter()
            .any(|l| l.system == System::KafkaStreams && l.guarantee == guarantee);
        if !peer_measured {
            continue;
        }
        for (i, rate) in rates.into_iter().enumerate() {
            let ratio = p99_ratio(&report.latency, guarantee, i);
            let (goal, met) = at_most(goals.p99_over_peer, ratio);
            out.push(Target {
                what: format!("creditstream p99 / Kafka Streams p99 at {rate} orders/s, {guarantee}"),
                measured: ratio,
                goal,
                met,
            });
        }
    }
    out
}

/// creditstream's p99 over Kafka Streams' at the `rate`-th latency rate of `guarantee`:
/// the ratio of each repetition both passed, and their spread.
fn p99_ratio(latency: &[LatencyResult], guarantee: &str, rate: usize) -> Option<Spread> {
    let p99s = |system: System| -> Vec<(u32, f64)> {
        latency
            .iter()
            .filter(|l| l.system == system && l.guarantee == guarantee && l.ok)
            .filter_map(|l| Some((l.repetition, l.phases.get(rate)?.p99_ms?)))
            .collect()
    };
    stats::paired_ratio(&p99s(System::Creditstream), &p99s(System::KafkaStreams))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencyPhase;

    fn run(system: System, repetition: u32, ok: bool, p99s: &[f64]) -> LatencyResult {
        LatencyResult {
            system,
            repetition,
            guarantee: EOS.into(),
            cadence: Cadence::Every100Ms,
            users: 1,
            warmup_s: 1,
            measured_s: 1,
            ok,
            error: None,
            phases: p99s
                .iter()
                .map(|&p99| LatencyPhase {
                    rate_per_s: 1000,
                    share_of_peer_max: None,
                    orders_measured: 1,
                    p50_ms: None,
                    p99_ms: Some(p99),
                    p999_ms: None,
                    max_ms: None,
                    breakdown_ms: Vec::new(),
                })
                .collect(),
            affinity: Vec::new(),
        }
    }

    #[test]
    fn the_p99_ratio_pairs_repetitions_both_systems_passed() {
        let latency = [
            run(System::Creditstream, 0, true, &[100.0, 50.0]),
            run(System::KafkaStreams, 0, true, &[200.0, 200.0]),
            run(System::Creditstream, 1, false, &[10.0, 10.0]),
            run(System::KafkaStreams, 1, true, &[200.0, 200.0]),
            run(System::Creditstream, 2, true, &[300.0, 100.0]),
            run(System::KafkaStreams, 2, true, &[400.0, 100.0]),
        ];
        let first = p99_ratio(&latency, EOS, 0).expect("two pairs");
        assert_eq!((first.n, first.min, first.max), (2, 0.5, 0.75));
        let second = p99_ratio(&latency, EOS, 1).expect("two pairs");
        assert_eq!((second.n, second.median), (2, 0.625));
        assert!(p99_ratio(&latency, ALO, 0).is_none());
    }
}
