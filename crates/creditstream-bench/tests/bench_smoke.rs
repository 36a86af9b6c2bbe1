//! The benchmark at a tiny size, against the real broker and MariaDB, so that
//! `scripts/bench.sh` does not rot between runs. Its figures mean nothing here and are not
//! asserted; its correctness checks and its report's structure are. The Kafka Streams peer
//! is left to scripts/bench.sh (it needs a Maven build), so the report must list it as
//! skipped; so must it the ingest run when wrk is missing (never installed by hand here).
//!
//! The `creditstream` binary must sit beside `creditstream-bench`: scripts/test.sh builds
//! the workspace's binaries first (`cargo build --release --workspace --bins`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bootstrap() -> String {
    std::env::var("CREDITSTREAM_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn mysql_base() -> String {
    std::env::var("CREDITSTREAM_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://creditstream:creditstream@127.0.0.1:3306".into())
}

fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_creditstream-bench"))
}

/// `creditstream-bench run ARGS --out OUT` against the test stack.
fn run_bench(args: &[&str], out: &Path) -> Output {
    let product = bench_bin().with_file_name("creditstream");
    assert!(
        product.is_file(),
        "{} is missing: build the workspace's binaries first (cargo build --release --workspace --bins)",
        product.display()
    );
    // From the workspace root, where the configuration's topology file is.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(bench_bin())
        .current_dir(root)
        .arg("run")
        .args(args)
        .args(["--label", "smoke", "--out"])
        .arg(out)
        .env("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS", bootstrap())
        .env("CREDITSTREAM__MYSQL__URL", format!("{}/demodb", mysql_base()))
        .output()
        .expect("running creditstream-bench")
}

fn report_of(output: &Output, out: &Path) -> (Value, String) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "creditstream-bench failed:\n{stderr}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out).expect("the JSON report")).expect("the report is JSON");
    assert_eq!(report["format"], "creditstream-bench/2");
    let table = std::fs::read_to_string(out.with_extension("md")).expect("the Markdown beside the JSON");
    (report, table)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn the_benchmark_runs_end_to_end_at_a_tiny_size() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("report.json");
    let wrk_installed = creditstream_bench::ingest::find_wrk().is_some();
    let output = run_bench(
        &[
            "--users",
            "200",
            "--orders",
            "3000",
            "--repetitions",
            "2",
            "--uids",
            "zipf",
            "--guarantees",
            "exactly_once_v2",
            "--cadences",
            "100ms,backlog",
            "--replicas",
            "1",
            "--latency-seconds",
            "2",
            "--latency-warmup-seconds",
            "1",
            "--scaling-users",
            "100,400",
            "--sink-orders",
            "500",
            "--ingest-seconds",
            "1",
            "--stream-thread-probe-orders",
            "2000",
        ],
        &out,
    );
    let (report, table) = report_of(&output, &out);

    // The stream-thread probe: 1 thread against 2, interleaved, every run checked.
    let probe = report["stream_threads"]["probe"]
        .as_array()
        .expect("the stream-thread probe");
    let threads: Vec<u64> = probe.iter().filter_map(|r| r["stream_threads"].as_u64()).collect();
    assert_eq!(threads, [1, 2, 1, 2]);
    assert!(probe.iter().all(|r| r["ok"] == true), "{probe:?}");

    // Interleaved: repetition i of every system before repetition i + 1 of any.
    let runs = report["runs"].as_array().expect("runs");
    // Every window says whether it began once the group had settled.
    assert!(runs.iter().all(|r| r["settled_window"].is_boolean()), "{runs:?}");
    let order: Vec<(String, String, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["system"].as_str().unwrap_or_default().to_string(),
                r["cadence"].as_str().unwrap_or_default().to_string(),
                r["repetition"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for cadence in ["every100_ms", "backlog"] {
        for repetition in 0..2 {
            for system in ["creditstream", "passthrough"] {
                expected.push((system.to_string(), cadence.to_string(), repetition));
            }
        }
    }
    assert_eq!(order, expected);
    for r in runs {
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["throughput_per_s"].as_f64().is_some_and(|t| t > 0.0), "{r}");
        assert!(r["cpu_seconds_per_million_orders"].as_f64().is_some(), "{r}");
        assert!(r["peak_rss_mib"].as_f64().is_some_and(|m| m > 0.0), "{r}");
        assert!(r["output_bytes_per_s"].as_f64().is_some(), "{r}");
        assert_eq!(r["uids"], "zipf(1)");
        let roles: Vec<&str> = r["outputs"]
            .as_array()
            .map_or(Vec::new(), |o| o.iter().filter_map(|c| c["role"].as_str()).collect());
        assert_eq!(roles, ["decisions", "user_changes", "dead_letters", "changelog"], "{r}");
    }

    let latency = report["latency"].as_array().expect("latency results");
    let systems: Vec<(&str, u64)> = latency
        .iter()
        .map(|l| {
            (
                l["system"].as_str().unwrap_or_default(),
                l["repetition"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        systems,
        [
            ("creditstream", 0),
            ("passthrough", 0),
            ("creditstream", 1),
            ("passthrough", 1)
        ],
        "each system once per repetition, interleaved"
    );
    for l in latency {
        assert_eq!(l["ok"], true, "{l}");
        let phases = l["phases"].as_array().expect("phases");
        assert_eq!(phases.len(), 3, "25, 50 and 75 %: {l}");
        assert!(
            phases
                .iter()
                .all(|p| p["p99_ms"].as_f64().is_some() && p["p999_ms"].as_f64().is_some()),
            "{l}"
        );
    }

    let scaling = report["scaling"].as_array().expect("scaling results");
    let users: Vec<u64> = scaling.iter().filter_map(|r| r["users"].as_u64()).collect();
    assert_eq!(users, [100, 400, 100, 400]);
    assert!(scaling.iter().all(|r| r["ok"] == true), "{scaling:?}");

    let sink = report["sink"].as_array().expect("sink results");
    assert_eq!(sink.len(), 2);
    for s in sink {
        assert_eq!(s["correct"], true, "{s}");
        assert!(s["sink_rows_per_s"].as_f64().is_some() && s["loader_rows_per_s"].as_f64().is_some());
    }

    let skipped = strings(&report["skipped"]).join("\n");
    assert!(skipped.contains("Kafka Streams"), "{skipped}");
    if wrk_installed {
        let ingest = report["ingest"].as_array().expect("ingest results");
        assert!(
            ingest.len() == 2 && ingest.iter().all(|i| i["correct"] == true),
            "{ingest:?}"
        );
    } else {
        assert!(skipped.contains("wrk is not installed"), "{skipped}");
        assert_eq!(report["ingest"], serde_json::json!([]));
    }
    assert!(report["cores"]["nproc"].as_u64().is_some_and(|n| n >= 1));
    assert!(report["replica_scaling"].as_str().is_some_and(|s| !s.is_empty()));

    for heading in [
        "#### Configuration",
        "#### Throughput and efficiency",
        "#### Targets",
        "#### Latency",
        "#### Correctness",
        "#### Scaling",
        "#### Sink",
    ] {
        assert!(table.contains(heading), "{heading} missing from:\n{table}");
    }
    assert!(
        table.contains("creditstream / workload-matched limit, exactly_once_v2, 100 ms, 1 replica"),
        "{table}"
    );
}

#[test]
fn without_wrk_the_ingest_run_is_reported_skipped() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("report.json");
    let output = run_bench(
        &[
            "--users",
            "50",
            "--orders",
            "500",
            "--repetitions",
            "1",
            "--systems",
            "creditstream",
            "--guarantees",
            "at_least_once",
            "--cadences",
            "backlog",
            "--replicas",
            "1",
            "--latency-seconds",
            "0",
            "--sink-orders",
            "0",
            "--ingest-seconds",
            "1",
            "--wrk",
            "none",
            "--stream-thread-probe-orders",
            "0",
        ],
        &out,
    );
    let (report, table) = report_of(&output, &out);
    let skipped = strings(&report["skipped"]);
    assert!(
        skipped.iter().any(|s| s.contains("ingest") && s.contains("--wrk none")),
        "{skipped:?}"
    );
    assert_eq!(report["ingest"], serde_json::json!([]));
    assert!(
        table.contains("--wrk none"),
        "the Markdown lists what was skipped:\n{table}"
    );
    assert_eq!(report["runs"][0]["ok"], true, "{}", report["runs"][0]);
}
