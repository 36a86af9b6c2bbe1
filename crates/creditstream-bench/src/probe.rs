//! The commit counters of a running system, read over HTTP on the loopback: creditstream
//! (and the pass-through, which runs its runtime) from its Prometheus `/metrics` (the
//! count of `creditstream_processor_commit_duration_seconds`), the Kafka Streams peer
//! from its `/stats` (the sum of its threads' `commit-total`). Read at the start and the
//! end of a throughput window, they give the commit cadence each system achieved. And
//! creditstream's count of user commands consumed, which the scaling runs wait for.

use crate::options::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);
const COMMITS_METRIC: &str = "creditstream_processor_commit_duration_seconds_count";
const USERS_CONSUMED_METRIC: &str = "creditstream_processor_records_consumed_total{topic=\"user_commands\"}";

/// The body of `GET path` on `addr` (HTTP/1.0, so the server closes after the answer).
pub fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1).is_none_or(|s| s != "200") {
        return Err(format!("{addr}{path}: {}", head.lines().next().unwrap_or_default()));
    }
    Ok(body.to_string())
}

/// The value of an unlabelled sample `name` in Prometheus text.
fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The `_sum` and `_count` of histogram `name` per value of its one label (`phase`).
pub type PhaseTotals = std::collections::BTreeMap<String, (f64, f64)>;

/// Every phase of histogram `name` in Prometheus text: its sum of seconds and its count.
fn phase_totals(text: &str, name: &str) -> PhaseTotals {
    let mut totals = PhaseTotals::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (field, rest) = match (rest.strip_prefix("_sum{phase=\""), rest.strip_prefix("_count{phase=\"")) {
            (Some(r), _) => (0, r),
            (_, Some(r)) => (1, r),
            _ => continue,
        };
        let Some((phase, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let entry = totals.entry(phase.to_string()).or_insert((0.0, 0.0));
        if field == 0 {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    totals
}

/// creditstream's decision and commit phase histograms on `addr`, as `(metric, totals)`.
pub fn phases(addr: SocketAddr) -> Result<Vec<(&'static str, PhaseTotals)>, String> {
    let text = get(addr, "/metrics")?;
    Ok(PHASE_METRICS.iter().map(|m| (*m, phase_totals(&text, m))).collect())
}

/// The histograms whose phases the latency runs break a decision's time into.
const PHASE_METRICS: [&str; 2] = [
    "creditstream_processor_decision_phase_seconds",
    "creditstream_processor_commit_phase_seconds",
];

/// The mean of each phase between two readings, ms, as `decision:queued` or `commit:flush`.
pub fn phase_means(before: &[(&str, PhaseTotals)], after: &[(&str, PhaseTotals)]) -> Vec<(String, f64)> {
    let mut means = Vec::new();
    for ((metric, b), (_, a)) in before.iter().zip(after) {
        let kind = if metric.contains("decision") {
            "decision"
        } else {
            "commit"
        };
        for (phase, (sum, count)) in a {
            let (sum0, count0) = b.get(phase).copied().unwrap_or((0.0, 0.0));
            if count - count0 > 0.0 {
                means.push((format!("{kind}:{phase}"), (sum - sum0) / (count - count0) * 1000.0));
            }
        }
    }
    means
}

/// Seconds spent in every commit phase between two readings (all phases of the commit
/// histogram, summed).
pub fn commit_seconds(before: &[(&str, PhaseTotals)], after: &[(&str, PhaseTotals)]) -> f64 {
    let commit = |readings: &[(&str, PhaseTotals)]| -> f64 {
        readings
            .iter()
            .filter(|(metric, _)| metric.contains("commit"))
            .flat_map(|(_, totals)| totals.values().map(|(sum, _)| *sum))
            .sum()
    };
    (commit(after) - commit(before)).max(0.0)
}

/// User commands creditstream on `addr` has consumed so far.
pub fn users_consumed(addr: SocketAddr) -> Result<f64, String> {
    let text = get(addr, "/metrics")?;
    prometheus_value(&text, USERS_CONSUMED_METRIC).ok_or_else(|| format!("{USERS_CONSUMED_METRIC} missing"))
}

/// Commits the system on `addr` has made so far.
pub fn commits(system: System, addr: SocketAddr) -> Result<u64, String> {
    match system {
        System::Creditstream | System::Passthrough => {
            let text = get(addr, "/metrics")?;
            prometheus_value(&text, COMMITS_METRIC)
                .map(|v| v as u64)
                .ok_or_else(|| format!("{COMMITS_METRIC} missing"))
        }
        System::KafkaStreams => {
            let stats: serde_json::Value = serde_json::from_str(&get(addr, "/stats")?).map_err(|e| e.to_string())?;
            stats["commit_total"]
                .as_f64()
                .map(|v| v as u64)
                .ok_or_else(|| "commit_total missing".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_counter_and_skips_comments_and_look_alikes() {
        let text = "# HELP creditstream_processor_commit_duration_seconds x\n\
                    creditstream_processor_commit_duration_seconds_sum 1.5\n\
                    creditstream_processor_commit_duration_seconds_count 42\n\
                    creditstream_processor_commit_duration_seconds_count_other 7\n";
        assert_eq!(prometheus_value(text, COMMITS_METRIC), Some(42.0));
        assert_eq!(prometheus_value("", COMMITS_METRIC), None);
    }

    #[test]
    fn phase_means_are_the_window_s_sum_over_its_count() {
        let metric = "creditstream_processor_commit_phase_seconds";
        let at = |flush_sum: f64, flush_count: f64| {
            let text = format!(
                "{metric}_bucket{{phase=\"flush\",le=\"0.1\"}} 3\n{metric}_sum{{phase=\"flush\"}} {flush_sum}\n{metric}_count{{phase=\"flush\"}} {flush_count}\n"
            );
            vec![(PHASE_METRICS[1], phase_totals(&text, metric))]
        };
        let means = phase_means(&at(1.0, 10.0), &at(1.5, 20.0));
        assert_eq!(means, vec![("commit:flush".to_string(), 50.0)]);
        assert!(
            phase_means(&at(1.0, 10.0), &at(1.0, 10.0)).is_empty(),
            "no commit in the window"
        );
    }
}
