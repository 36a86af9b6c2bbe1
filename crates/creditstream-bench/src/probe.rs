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
}
