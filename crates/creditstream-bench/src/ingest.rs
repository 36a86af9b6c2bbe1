//! The ingest, measured with a real HTTP load tool (wrk) on `POST /v1/orders`: the real
//! ingest (validating, assigning ids, producing to Kafka and answering 202 once the broker
//! acknowledged) against the ceiling route (the same warp server answering 202 and doing
//! nothing else). Both run as child processes; wrk gets the same connections, threads and
//! duration for each. Checked: the ingest answered only 2xx, and the orders topic holds at
//! least one record per 202.

use crate::children::{self, Children};
use crate::error::BenchError;
use crate::options::BenchOptions;
use crate::run;
use crate::systems::own_command;
use creditstream::config::Config;
use creditstream::runtime::{admin, topic_reader};
use creditstream::topology::definition::TopologyDefinition;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// wrk's connections and threads: enough concurrency to saturate the server on two cores.
const CONNECTIONS: u32 = 64;
const THREADS: u32 = 1;

const WRK_SCRIPT: &str = r#"wrk.method = "POST"
wrk.body = '{"uid": 42, "amount": 7}'
wrk.headers["Content-Type"] = "application/json"
"#;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpFigures {
    pub requests_per_s: f64,
    pub requests: u64,
    pub non_2xx: u64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestResult {
    pub repetition: u32,
    pub seconds: u64,
    pub connections: u32,
    pub correct: bool,
    pub problem: Option<String>,
    pub ingest: Option<HttpFigures>,
    pub ceiling: Option<HttpFigures>,
}

/// `wrk` on PATH, if installed.
pub fn find_wrk() -> Option<PathBuf> {
    children::find_on_path("wrk")
}

fn free_port() -> Result<SocketAddr, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_listening(addr: SocketAddr, server: &mut Children) -> Result<(), BenchError> {
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if server.any_exited() || started.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Setup(format!("nothing listens on {addr}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// "3.21ms" → 3.21; wrk prints us, ms, s or m.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(value / 1000.0),
        "ms" => Some(value),
        "s" => Some(value * 1000.0),
        "m" => Some(value * 60_000.0),
        _ => None,
    }
}

/// The figures of wrk's `--latency` report.
fn parse_wrk(output: &str) -> Option<HttpFigures> {
    let mut figures = HttpFigures {
        requests_per_s: 0.0,
        requests: 0,
        non_2xx: 0,
        latency_ms_p50: None,
        latency_ms_p99: None,
    };
    let mut found_rate = false;
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rate] => {
                figures.requests_per_s = rate.parse().ok()?;
                found_rate = true;
            }
            [count, "requests", "in", ..] => figures.requests = count.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", count] => figures.non_2xx = count.parse().ok()?,
            ["50%", value] => figures.latency_ms_p50 = duration_ms(value),
            ["99%", value] => figures.latency_ms_p99 = duration_ms(value),
            _ => {}
        }
    }
    found_rate.then_some(figures)
}

fn wrk(wrk: &Path, script: &Path, addr: SocketAddr, seconds: u64) -> Result<HttpFigures, BenchError> {
    let output = Command::new(wrk)
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/v1/orders"))
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_wrk(&text).ok_or_else(|| BenchError::Setup(format!("could not read wrk's report: {text}")))
}

/// Measures the ingest and the ceiling route for `opts.ingest_seconds` each.
pub fn run(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    tag: &str,
    repetition: u32,
) -> Result<IngestResult, BenchError> {
    let Some(wrk_path) = opts.wrk.clone() else {
        return Err(BenchError::Setup("wrk is not installed".into()));
    };
    let runtime = tokio::runtime::Handle::current();
    let (def, dir) = run::prepare(config, base, opts, tag, base.processing_guarantee)?;
    let topology = dir.join("topology.toml");
    let script = dir.join("post.lua");
    std::fs::write(&script, WRK_SCRIPT)?;

    let measure = |subcommand: &str, env: &str| -> Result<HttpFigures, BenchError> {
        let addr = free_port()?;
        let program = if subcommand == "http-ceiling" {
            &opts.bench_bin
        } else {
            &opts.creditstream_bin
        };
        let mut command = own_command(
            program,
            subcommand,
            &topology,
            config,
            &dir.join(format!("{subcommand}.log")),
        )?;
        command.env(env, addr.to_string());
        if subcommand == "http-ceiling" {
            command.arg("--listen").arg(addr.to_string());
        }
        let mut server = Children::new();
        server.spawn(command)?;
        wait_listening(addr, &mut server)?;
        wrk(&wrk_path, &script, addr, opts.ingest_seconds)
    };
    let ingest = measure("ingest", "CREDITSTREAM__INGEST__LISTEN");
    let ceiling = measure("http-ceiling", "CREDITSTREAM__INGEST__LISTEN");
    let produced =
        topic_reader::read_to_end(&config.kafka, &def.inputs.orders, Duration::from_secs(120)).map(|r| r.len());
    let _ = runtime.block_on(admin::delete_topics(&config.kafka, &def));
    let (ingest, ceiling) = (ingest?, ceiling?);
    let accepted = ingest.requests.saturating_sub(ingest.non_2xx);
    let verdict = match produced {
        Err(e) => Err(format!("reading the orders topic: {e}")),
        Ok(_) if ingest.non_2xx > 0 => Err(format!("the ingest answered {} requests with non-2xx", ingest.non_2xx)),
        Ok(n) if (n as u64) < accepted => Err(format!("{accepted} orders accepted but {n} on the topic")),
        Ok(_) => Ok(()),
    };
    let ok = verdict.is_ok();
    Ok(IngestResult {
        repetition,
        seconds: opts.ingest_seconds,
        connections: CONNECTIONS,
        correct: ok,
        problem: verdict.err(),
        ingest: ok.then_some(ingest),
        ceiling: ok.then_some(ceiling),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 10s test @ http://127.0.0.1:5000/v1/orders
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  512.00us  14.00ms   90.00%
    Req/Sec    30.12k     1.20k   32.00k    80.00%
  Latency Distribution
     50%    2.05ms
     75%    2.30ms
     90%    2.60ms
     99%  850.00us
  301234 requests in 10.00s, 40.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  30123.40
Transfer/sec:      4.00MB
";
        let figures = parse_wrk(report).expect("a full report");
        assert_eq!(figures.requests, 301_234);
        assert_eq!(figures.non_2xx, 12);
        assert!((figures.requests_per_s - 30_123.4).abs() < 1e-6);
        assert_eq!(figures.latency_ms_p50, Some(2.05));
        assert_eq!(figures.latency_ms_p99, Some(0.85));
    }

    #[test]
    fn a_report_without_a_rate_is_not_read() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused").is_none());
    }
}
