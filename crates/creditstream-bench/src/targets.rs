//! The targets, each a paired ratio of two systems' figures (repetition i over
//! repetition i) or a latency ratio at one fixed rate, with its goal and whether it is met.

use crate::options::{Cadence, System};
use crate::report::{BenchReport, Key};
use crate::run::RunResult;
use crate::stats::Spread;

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
    pub goal: &'static str,
    pub met: Option<bool>,
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
            out.push(Target {
                what: format!("creditstream / Kafka Streams throughput, {at}"),
                measured: ratio,
                goal: "≥ 3",
                met: ratio.map(|r| r.median >= 3.0),
            });
            let cpu = report.paired(cs, ks, cpu_per_million);
            out.push(Target {
                what: format!("creditstream / Kafka Streams CPU s per million orders, {at}"),
                measured: cpu,
                goal: "≤ 0.25",
                met: cpu.map(|r| r.median <= 0.25),
            });
            let share = report.paired(cs, pt, throughput);
            out.push(Target {
                what: format!("creditstream / workload-matched limit, {at}"),
                measured: share,
                goal: "≥ 0.9",
                met: share.map(|r| r.median >= 0.9),
            });
        }
    }
    if let Some(probe) = &report.stream_threads {
        let ratio = probe.stream_thread_ratio(2);
        out.push(Target {
            what: "creditstream 2 stream threads / 1, one replica, exactly_once_v2, creditstream's backlog cadence"
                .into(),
            measured: ratio,
            goal: "≥ 1.3",
            met: ratio.map(|r| r.median >= 1.3),
        });
    }
    for guarantee in [EOS, ALO] {
        let of = |system: System| {
            report
                .latency
                .iter()
                .find(|l| l.system == system && l.guarantee == guarantee)
        };
        let (Some(cs), Some(ks)) = (of(System::Creditstream), of(System::KafkaStreams)) else {
            continue;
        };
        for (a, b) in cs.phases.iter().zip(&ks.phases) {
            let ratio = match (a.p99_ms, b.p99_ms, cs.ok && ks.ok) {
                (Some(x), Some(y), true) if y > 0.0 => Some(x / y),
                _ => None,
            };
            out.push(Target {
                what: format!(
                    "creditstream p99 / Kafka Streams p99 at {} orders/s, {guarantee}",
                    a.rate_per_s
                ),
                measured: ratio.map(|r| Spread {
                    median: r,
                    min: r,
                    max: r,
                    n: 1,
                }),
                goal: "≤ 0.5",
                met: ratio.map(|r| r <= 0.5),
            });
        }
    }
    out
}
