//! The benchmark's report: every figure as JSON, and Markdown tables with the ratios the
//! targets are stated in (creditstream over each peer, measured in the same run).

use super::ingest::{HttpFigures, IngestResult};
use super::processor::ProcessorResult;
use super::sink::SinkResult;
use super::{BenchOptions, Peer};
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub label: String,
    pub machine: String,
    pub started_at_ms: i64,
    pub users: u64,
    pub orders: u64,
    pub uids: String,
    pub processor: Vec<ProcessorResult>,
    pub scaling: Vec<ProcessorResult>,
    pub sink: Option<SinkResult>,
    pub ingest: Option<IngestResult>,
    /// Sections left out, and why.
    pub skipped: Vec<String>,
}

/// Cores, memory and CPU model, from /proc.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({model}), {memory_gib:.0} GiB")
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.digits$}"))
}

fn verdict(correct: bool, problem: &Option<String>) -> String {
    if correct {
        "yes".into()
    } else {
        format!("NO: {}", problem.clone().unwrap_or_default())
    }
}

const PROCESSOR_HEADER: &str = "| peer | guarantee | replicas | users | orders | decided/s | latency run /s | p50 ms | p95 ms | p99 ms | max ms | peak RSS MiB | CPU s | correct |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

pub fn processor_row(r: &ProcessorResult) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.peer.name(),
        r.guarantee,
        r.replicas,
        r.users,
        r.orders,
        cell(r.throughput_per_s, 0),
        cell(r.latency_rate_per_s, 0),
        cell(r.latency_ms_p50, 0),
        cell(r.latency_ms_p95, 0),
        cell(r.latency_ms_p99, 0),
        cell(r.latency_ms_max, 0),
        cell(r.peak_rss_mb, 0),
        cell(r.cpu_seconds, 1),
        verdict(r.correct, &r.problem),
    )
}

fn http_row(name: &str, f: &HttpFigures) -> String {
    format!(
        "| {name} | {:.0} | {} | {} | {} |",
        f.requests_per_s,
        f.requests,
        cell(f.latency_ms_p50, 2),
        cell(f.latency_ms_p99, 2)
    )
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

impl BenchReport {
    pub fn new(opts: &BenchOptions, started_at_ms: i64) -> Self {
        Self {
            label: opts.label.clone(),
            machine: machine(),
            started_at_ms,
            users: opts.users,
            orders: opts.orders,
            uids: opts.uids.label(),
            processor: Vec::new(),
            scaling: Vec::new(),
            sink: None,
            ingest: None,
            skipped: Vec::new(),
        }
    }

    /// Whether every measured section passed its check.
    pub fn correct(&self) -> bool {
        self.processor.iter().chain(&self.scaling).all(|r| r.correct)
            && self.sink.as_ref().is_none_or(|s| s.correct)
            && self.ingest.as_ref().is_none_or(|i| i.correct)
    }

    fn throughput(&self, peer: Peer, guarantee: &str, replicas: u32) -> Option<f64> {
        self.processor
            .iter()
            .find(|r| r.peer == peer && r.guarantee == guarantee && r.replicas == replicas)
            .and_then(|r| r.throughput_per_s)
    }

    /// The figures the targets are stated in (mostly ratios), as (what, value, goal).
    pub fn ratios(&self) -> Vec<(String, Option<f64>, &'static str)> {
        let mut out = Vec::new();
        let mut replica_counts: Vec<u32> = self.processor.iter().map(|r| r.replicas).collect();
        replica_counts.sort_unstable();
        replica_counts.dedup();
        for guarantee in ["exactly_once_v2", "at_least_once"] {
            for &replicas in &replica_counts {
                let cs = self.throughput(Peer::Creditstream, guarantee, replicas);
                let ks = self.throughput(Peer::KafkaStreams, guarantee, replicas);
                if cs.is_some() && ks.is_some() {
                    out.push((
                        format!("creditstream / Kafka Streams, {guarantee}, {replicas} replica(s)"),
                        ratio(cs, ks),
                        "≥ 2.0",
                    ));
                }
            }
            let cs = self.throughput(Peer::Creditstream, guarantee, 1);
            let raw = self.throughput(Peer::Passthrough, guarantee, 1);
            if cs.is_some() && raw.is_some() {
                out.push((
                    format!("creditstream / raw pass-through, {guarantee}, 1 replica"),
                    ratio(cs, raw),
                    "≥ 0.8",
                ));
            }
        }
        let by_users = |pick: fn(&[ProcessorResult]) -> Option<&ProcessorResult>| {
            pick(&self.scaling).and_then(|r| r.throughput_per_s.map(|t| (r.users, t)))
        };
        let fewest = by_users(|s| s.iter().min_by_key(|r| r.users));
        let most = by_users(|s| s.iter().max_by_key(|r| r.users));
        if let (Some((few, t_few)), Some((many, t_many))) = (fewest, most) {
            if many > few {
                out.push((
                    format!("throughput at {many} users / at {few} users"),
                    ratio(Some(t_many), Some(t_few)),
                    "≥ 0.8",
                ));
            }
        }
        let cs_latency = self
            .processor
            .iter()
            .find(|r| r.peer == Peer::Creditstream && r.guarantee == "exactly_once_v2" && r.replicas == 1)
            .and_then(|r| r.latency_ms_p99);
        if cs_latency.is_some() {
            out.push((
                "creditstream p99 latency (ms) at half its rate, exactly_once_v2, 1 replica".into(),
                cs_latency,
                "≤ 50",
            ));
        }
        if let Some(s) = &self.sink {
            out.push((
                "sink / plain INSERT loader (rows/s)".into(),
                ratio(s.sink_rows_per_s, s.loader_rows_per_s),
                "≥ 0.7",
            ));
        }
        if let Some(i) = &self.ingest {
            if let (Some(real), Some(ceiling)) = (&i.ingest, &i.ceiling) {
                out.push((
                    "ingest / 202-only route (requests/s)".into(),
                    ratio(Some(real.requests_per_s), Some(ceiling.requests_per_s)),
                    "(no target)",
                ));
            }
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Run {} on {}; {} users, {} orders, {} uids.\n",
            self.label, self.machine, self.users, self.orders, self.uids
        );
        out.push_str(PROCESSOR_HEADER);
        for r in &self.processor {
            out.push_str(&processor_row(r));
            out.push('\n');
        }
        if !self.scaling.is_empty() {
            out.push_str("\nScaling (creditstream, exactly_once_v2, 1 replica):\n\n");
            out.push_str(PROCESSOR_HEADER);
            for r in &self.scaling {
                out.push_str(&processor_row(r));
                out.push('\n');
            }
        }
        if let Some(s) = &self.sink {
            let _ = write!(
                out,
                "\nSink: {} rows ({} orders × 2 events + {} users), batches of {} records.\n\n\
                 | writer | rows/s | correct |\n|---|---|---|\n\
                 | creditstream sink (Kafka → MariaDB, idempotent) | {} | {} |\n\
                 | plain multi-row INSERT loader | {} | {} |\n",
                s.rows,
                s.orders,
                s.users,
                s.batch_size,
                cell(s.sink_rows_per_s, 0),
                verdict(s.correct, &s.problem),
                cell(s.loader_rows_per_s, 0),
                verdict(s.correct, &s.problem),
            );
        }
        if let Some(i) = &self.ingest {
            let _ = write!(
                out,
                "\nIngest: wrk, {} connections, {} s per route, POST /v1/orders.\n\n\
                 | route | requests/s | requests | p50 ms | p99 ms |\n|---|---|---|---|---|\n",
                i.connections, i.seconds
            );
            match (&i.ingest, &i.ceiling) {
                (Some(real), Some(ceiling)) => {
                    let _ = writeln!(out, "{}", http_row("ingest (validate, produce, 202 on ack)", real));
                    let _ = writeln!(out, "{}", http_row("202-only route (the HTTP ceiling)", ceiling));
                }
                _ => {
                    let _ = writeln!(out, "| — | — | — | — | — |\n\n{}", verdict(i.correct, &i.problem));
                }
            }
        }
        out.push_str("\n| target | measured | goal |\n|---|---|---|\n");
        for (what, value, target) in self.ratios() {
            let _ = writeln!(out, "| {what} | {} | {target} |", cell(value, 2));
        }
        for skipped in &self.skipped {
            let _ = writeln!(out, "\nNot measured: {skipped}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::uids::UidDistribution;

    fn result(peer: Peer, guarantee: &'static str, replicas: u32, users: u64, throughput: f64) -> ProcessorResult {
        ProcessorResult {
            peer,
            guarantee,
            replicas,
            users,
            orders: 1000,
            uids: "uniform".into(),
            correct: true,
            unknown_user_declines: 0,
            problem: None,
            throughput_per_s: Some(throughput),
            latency_rate_per_s: Some(throughput / 2.0),
            latency_ms_p50: Some(10.0),
            latency_ms_p95: Some(20.0),
            latency_ms_p99: Some(30.0),
            latency_ms_max: Some(40.0),
            peak_rss_mb: Some(100.0),
            cpu_seconds: Some(1.0),
        }
    }

    fn report() -> BenchReport {
        let opts = BenchOptions {
            users: 1000,
            orders: 1000,
            latency_orders: 10,
            latency_rate: None,
            uids: UidDistribution::Uniform,
            replicas: vec![1],
            guarantees: Vec::new(),
            peers: Vec::new(),
            kafka_streams_classpath: None,
            scaling_users: Vec::new(),
            sink_orders: 0,
            ingest_seconds: 0,
            wrk: None,
            work_dir: std::env::temp_dir(),
            label: "test".into(),
        };
        BenchReport::new(&opts, 0)
    }

    #[test]
    fn ratios_compare_peers_measured_at_the_same_guarantee_and_replicas() {
        let mut r = report();
        r.processor = vec![
            result(Peer::Creditstream, "exactly_once_v2", 1, 1000, 300.0),
            result(Peer::KafkaStreams, "exactly_once_v2", 1, 1000, 100.0),
            result(Peer::Passthrough, "exactly_once_v2", 1, 1000, 600.0),
            result(Peer::KafkaStreams, "at_least_once", 1, 1000, 100.0),
        ];
        r.scaling = vec![
            result(Peer::Creditstream, "exactly_once_v2", 1, 10, 200.0),
            result(Peer::Creditstream, "exactly_once_v2", 1, 1000, 150.0),
        ];
        let ratios = r.ratios();
        let find = |what: &str| {
            ratios
                .iter()
                .find(|(w, ..)| w.starts_with(what))
                .and_then(|(_, v, _)| *v)
        };
        assert_eq!(find("creditstream / Kafka Streams, exactly_once_v2, 1"), Some(3.0));
        assert_eq!(find("creditstream / raw pass-through, exactly_once_v2"), Some(0.5));
        assert_eq!(find("throughput at 1000 users / at 10 users"), Some(0.75));
        // No creditstream figure at at_least_once: no ratio rather than a made-up one.
        assert!(ratios.iter().all(|(w, ..)| !w.contains("at_least_once")));
        assert!(r.correct());
    }

    #[test]
    fn a_failed_run_makes_the_report_fail_and_shows_its_problem() {
        let mut r = report();
        let mut failed = result(Peer::Creditstream, "exactly_once_v2", 1, 1000, 0.0);
        failed.correct = false;
        failed.problem = Some("3 orders have more than one output".into());
        failed.throughput_per_s = None;
        r.processor = vec![failed];
        assert!(!r.correct());
        assert!(r.markdown().contains("NO: 3 orders have more than one output"));
    }
}
