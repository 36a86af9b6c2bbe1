//! The benchmark at a tiny size, against the real broker and MariaDB, so that
//! `scripts/bench.sh` does not rot between runs. Its figures mean nothing here and are not
//! asserted; its correctness checks and its report are. The Kafka Streams peer is left to
//! scripts/bench.sh (it needs a Maven build); the ingest run needs wrk and is skipped
//! without it, which the report must say.

mod common;

use serde_json::Value;
use std::process::Command;

fn figures_of(result: &Value) -> (bool, Option<f64>) {
    (
        result["correct"].as_bool().unwrap_or(false),
        result["throughput_per_s"].as_f64(),
    )
}

#[test]
fn the_benchmark_runs_end_to_end_at_a_tiny_size() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("report.json");
    let wrk = creditstream::bench::ingest::find_wrk().is_some();
    let output = Command::new(env!("CARGO_BIN_EXE_creditstream"))
        .args(["bench", "--users", "200", "--orders", "3000", "--latency-orders", "300"])
        .args(["--replicas", "1", "--uids", "zipf", "--scaling-users", "100,400"])
        // One second of wrk when it is installed; without it the report must say it was skipped.
        .args(["--sink-orders", "500", "--ingest-seconds", "1"])
        .args(["--label", "smoke", "--out"])
        .arg(&out)
        .env("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS", common::bootstrap())
        .env("CREDITSTREAM__MYSQL__URL", format!("{}/demodb", common::mysql_base()))
        .output()
        .expect("running creditstream bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stderr}");

    let report: Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON report")).expect("the report is JSON");
    let processor = report["processor"].as_array().expect("processor results");
    let peers: Vec<(&str, &str)> = processor
        .iter()
        .map(|r| (r["peer"].as_str().unwrap_or(""), r["guarantee"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        peers,
        [
            ("creditstream", "exactly_once_v2"),
            ("passthrough", "exactly_once_v2"),
            ("creditstream", "at_least_once"),
            ("passthrough", "at_least_once"),
        ]
    );
    for result in processor {
        let (correct, throughput) = figures_of(result);
        assert!(correct, "{result}");
        assert!(throughput.is_some_and(|t| t > 0.0), "{result}");
        assert!(result["latency_ms_p99"].as_f64().is_some(), "{result}");
        assert_eq!(result["uids"], "zipf(1)");
    }
    let scaling = report["scaling"].as_array().expect("scaling results");
    let users: Vec<u64> = scaling.iter().filter_map(|r| r["users"].as_u64()).collect();
    assert_eq!(users, [100, 400]);
    assert!(scaling.iter().all(|r| figures_of(r).0), "{scaling:?}");

    let sink = &report["sink"];
    assert_eq!(sink["correct"], true, "{sink}");
    assert_eq!(sink["rows"], 2 * 500 + 200);
    assert!(sink["sink_rows_per_s"].as_f64().is_some() && sink["loader_rows_per_s"].as_f64().is_some());

    let skipped = report["skipped"].to_string();
    assert!(skipped.contains("Kafka Streams"), "{skipped}");
    if wrk {
        assert_eq!(report["ingest"]["correct"], true, "{}", report["ingest"]);
    } else {
        assert!(skipped.contains("wrk"), "{skipped}");
    }

    let table = std::fs::read_to_string(out.with_extension("md")).expect("the Markdown table");
    assert!(table.contains("creditstream / raw pass-through, exactly_once_v2, 1 replica"));
    assert!(table.contains("throughput at 400 users / at 100 users"));
    assert!(table.contains("sink / plain INSERT loader"));
}
