//! Sinks sharing one consumer group, as real processes: a second sink joining and leaving
//! moves partitions between them, every move is logged and counted
//! (`creditstream_sink_rebalances_total`), the sink that stays takes the partitions back,
//! and every decision lands in MySQL once.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const PARTITIONS: u32 = 3;

/// Decisions `from..to` as the processor writes them; each becomes two rows
/// (Initialised, then its outcome).
fn decisions(from: i64, to: i64) -> Vec<RawRecord> {
    (from..to).map(|i| completed_decision_record(i, PARTITIONS)).collect()
}

fn sink(dir: &Path, name: &str, topology: &Path, mysql_url: &str, group: &str) -> Running {
    let port = free_port();
    let env: Vec<(String, String)> = [
        ("CREDITSTREAM__TOPOLOGY_FILE", topology.display().to_string()),
        ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS", bootstrap()),
        ("CREDITSTREAM__MYSQL__URL", mysql_url.to_string()),
        ("CREDITSTREAM__SINK__GROUP_ID", group.to_string()),
        ("CREDITSTREAM__SINK__METRICS_LISTEN", format!("127.0.0.1:{port}")),
        ("CREDITSTREAM__SINK__BATCH_SIZE", "200".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    spawn("sink", &env, port, &dir.join(format!("{name}.log")))
}

/// How many rebalances of `kind` (assign, revoke, lost, error) `sink` has counted.
fn rebalances(sink: &Running, kind: &str) -> f64 {
    sink.metric(&format!("creditstream_sink_rebalances_total{{kind=\"{kind}\"}}"))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sinks_of_one_group_count_every_rebalance_and_land_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let def = topology(PARTITIONS).await;
    let mysql = database().await;
    let topology = topology_file(&def, dir.path());
    let group = unique("sink-group");

    let a = sink(dir.path(), "a", &topology, &mysql.url, &group);
    produce(&def.outputs.decisions, &decisions(0, 1000));
    let first = snapshot_until(&mysql, Duration::from_secs(60), |(_, orders)| orders.len() >= 2000).await;
    assert_eq!(first.1.len(), 2000, "sink a alone: {}", a.log_tail());
    assert!(rebalances(&a, "assign") >= 1.0, "a counted its first assignment");

    // A second sink joins: a gives partitions up, b takes them, both count it.
    let mut b = sink(dir.path(), "b", &topology, &mysql.url, &group);
    assert!(
        wait_until(Duration::from_secs(60), || rebalances(&b, "assign") >= 1.0
            && rebalances(&a, "revoke") >= 1.0),
        "b joined and a gave partitions up, counted; a:\n{}\nb:\n{}",
        a.log_tail(),
        b.log_tail()
    );
    let a_assigned = rebalances(&a, "assign");
    produce(&def.outputs.decisions, &decisions(1000, 2000));
    let second = snapshot_until(&mysql, Duration::from_secs(60), |(_, orders)| orders.len() >= 4000).await;
    assert_eq!(
        second.1.len(),
        4000,
        "two sinks: a:\n{}\nb:\n{}",
        a.log_tail(),
        b.log_tail()
    );

    // b leaves (SIGTERM): a takes every partition back and goes on.
    assert!(b.sigterm().success(), "b stopped cleanly: {}", b.log_tail());
    assert!(
        wait_until(Duration::from_secs(60), || rebalances(&a, "assign") > a_assigned),
        "a was assigned b's partitions again: {}",
        a.log_tail()
    );
    produce(&def.outputs.decisions, &decisions(2000, 3000));
    let done = snapshot_until(&mysql, Duration::from_secs(60), |(_, orders)| orders.len() >= 6000).await;
    let mut ids: Vec<i64> = done.1.iter().map(|r| r.1).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(done.1.len(), 6000, "no row missing, none doubled: {}", a.log_tail());
    assert_eq!(ids, (0..3000).collect::<Vec<_>>());
}
