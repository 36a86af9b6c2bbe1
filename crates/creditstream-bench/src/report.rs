//! The JSON report of one benchmark invocation: every repetition's raw figures (failures
//! included, with their error), the configuration of every system, how the cores were
//! used, and the choices the run made (the peer's threads, the cadence it was given, the
//! latency rates). It is written again after every repetition, so an interrupted run
//! keeps what it measured. [`crate::markdown`] turns it into tables.

use crate::children::Cores;
use crate::ingest::IngestResult;
use crate::latency::LatencyResult;
use crate::options::{Cadence, System};
use crate::run::RunResult;
use crate::sink::SinkResult;
use crate::stats::{self, Spread};
use crate::systems::CreditstreamSettings;
use crate::targets::Goals;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Marks the reports of this layout (older files in benches/results have another).
pub const FORMAT: &str = "creditstream-bench/2";

/// Which stream-thread count a system ran with, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadsChoice {
    pub threads: u32,
    pub reason: String,
    /// The probe's repetitions (empty when the count was given).
    pub probe: Vec<RunResult>,
}

impl ThreadsChoice {
    /// creditstream's throughput with `threads` stream threads over one thread, paired by
    /// repetition, from a stream-thread probe.
    pub fn stream_thread_ratio(&self, threads: u32) -> Option<Spread> {
        let of = |n: u32| -> Vec<(u32, f64)> {
            self.probe
                .iter()
                .filter(|r| r.ok && r.stream_threads == Some(n))
                .filter_map(|r| Some((r.repetition, r.throughput_per_s?)))
                .collect()
        };
        stats::paired_ratio(&of(threads), &of(1))
    }
}

/// The rates of the latency runs of one guarantee, and where they came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyRates {
    pub guarantee: String,
    pub rates: Vec<(u64, Option<f64>)>,
    pub basis: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub format: String,
    pub label: String,
    pub machine: String,
    pub cores: Cores,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub users: u64,
    pub orders: u64,
    pub uids: String,
    pub repetitions: u32,
    pub creditstream: Vec<CreditstreamSettings>,
    /// The peer's effective configuration as it printed it (explicit settings, every
    /// Streams, producer and consumer value, JVM, RocksDB).
    pub kafka_streams: Option<serde_json::Value>,
    pub peer_threads: Option<ThreadsChoice>,
    /// creditstream's stream threads, 1 against 2 (absent in older reports or when skipped).
    #[serde(default)]
    pub stream_threads: Option<ThreadsChoice>,
    /// How the peer's commit interval was matched to creditstream's cadence.
    pub cadence_matching: String,
    /// Whether replicas were compared, on which cores, and why.
    pub replica_scaling: String,
    pub runs: Vec<RunResult>,
    pub latency_rates: Vec<LatencyRates>,
    pub latency: Vec<LatencyResult>,
    pub scaling: Vec<RunResult>,
    pub sink: Vec<SinkResult>,
    pub ingest: Vec<IngestResult>,
    /// Sections left out, and why.
    pub skipped: Vec<String>,
    /// The goals this run is judged against (absent in reports made before the hardware
    /// issue's goals: those render with [`Goals::EARLIER`]).
    #[serde(default)]
    pub goals: Option<Goals>,
}

/// Writes `value` as pretty JSON to `path`, whole or not at all (through a temporary file).
pub fn save_json<T: Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, path)
}

/// Reads a JSON report; the error names the file.
pub fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Cores, memory and CPU model, from /proc.
pub fn machine() -> String {
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

/// One configuration's repetitions: which system, at which guarantee, cadence, replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    pub system: System,
    pub guarantee: &'a str,
    pub cadence: Cadence,
    pub replicas: u32,
}

impl BenchReport {
    /// Whether every repetition of every section passed.
    pub fn correct(&self) -> bool {
        self.runs.iter().chain(&self.scaling).all(|r| r.ok)
            && self.peer_threads.iter().flat_map(|t| &t.probe).all(|r| r.ok)
            && self.stream_threads.iter().flat_map(|t| &t.probe).all(|r| r.ok)
            && self.latency.iter().all(|l| l.ok)
            && self.sink.iter().all(|s| s.correct)
            && self.ingest.iter().all(|i| i.correct)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        save_json(self, path)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let report: Self = load_json(path)?;
        if report.format != FORMAT {
            return Err(format!(
                "{}: format {:?}, expected {FORMAT}",
                path.display(),
                report.format
            ));
        }
        Ok(report)
    }

    /// The repetitions of one configuration, in order.
    pub fn of<'a>(&'a self, key: Key<'_>) -> impl Iterator<Item = &'a RunResult> + 'a {
        let (system, guarantee, cadence, replicas) = (key.system, key.guarantee.to_string(), key.cadence, key.replicas);
        self.runs.iter().filter(move |r| {
            r.system == system && r.guarantee == guarantee && r.cadence == cadence && r.replicas == replicas
        })
    }

    /// (repetition, figure) of one configuration's successful repetitions.
    pub fn figures(&self, key: Key<'_>, figure: fn(&RunResult) -> Option<f64>) -> Vec<(u32, f64)> {
        self.of(key)
            .filter(|r| r.ok)
            .filter_map(|r| figure(r).map(|v| (r.repetition, v)))
            .collect()
    }

    pub fn spread(&self, key: Key<'_>, figure: fn(&RunResult) -> Option<f64>) -> Option<Spread> {
        let values: Vec<f64> = self.figures(key, figure).into_iter().map(|(_, v)| v).collect();
        stats::spread(&values)
    }

    /// Median of the paired ratios a_i / b_i of one figure.
    pub fn paired(&self, a: Key<'_>, b: Key<'_>, figure: fn(&RunResult) -> Option<f64>) -> Option<Spread> {
        stats::paired_ratio(&self.figures(a, figure), &self.figures(b, figure))
    }

    /// The configurations measured, in the order they first ran.
    pub fn keys(&self) -> Vec<Key<'_>> {
        let mut keys: Vec<Key<'_>> = Vec::new();
        for r in &self.runs {
            let key = Key {
                system: r.system,
                guarantee: &r.guarantee,
                cadence: r.cadence,
                replicas: r.replicas,
            };
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// Whether creditstream and the peer decided every order alike in every repetition
    /// (same digest of all decisions); `None` when they were not both measured.
    pub fn decisions_agree(&self) -> Option<bool> {
        let digests = |system: System| -> Vec<&str> {
            self.runs
                .iter()
                .filter(|r| r.system == system && r.ok)
                .filter_map(|r| r.decisions_digest.as_deref())
                .collect()
        };
        let (cs, ks) = (digests(System::Creditstream), digests(System::KafkaStreams));
        if cs.is_empty() || ks.is_empty() {
            return None;
        }
        // Every throughput run has the same input, so every digest must be the same.
        Some(cs.iter().chain(&ks).all(|d| *d == cs[0]))
    }
}
