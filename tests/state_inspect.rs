//! `creditstream state` on the real broker: what it prints for a user, an order and the
//! partitions, read from a running replica's stores (without disturbing it) and from the
//! changelog, and agreeing with what the topology driver computed for the same input.

mod common;

use common::scenario::{Scenario, WAIT};
use common::*;
use creditstream::topology::record::Decision;
use std::path::Path;
use std::process::Command;

/// Runs `creditstream state ARGS` with the scenario's configuration; (exit ok, stdout, stderr).
fn state(scenario: &Scenario, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_creditstream"));
    command.arg("state").args(args).env("RUST_LOG", "warn");
    for (k, v) in scenario.env(dir, free_port()) {
        command.env(k, v);
    }
    let out = command.output().expect("run creditstream state");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn state_shows_what_a_running_replica_holds_and_what_the_changelog_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let mut scenario = Scenario::new(5).await;
    let mut replica = scenario.replica(&dir);
    scenario.orders(5, 20);
    let decisions = scenario.decisions(20);
    scenario.check(&decisions);
    let expected = scenario.driver.user_state(3).expect("uid 3 exists");
    let balance = |v: &serde_json::Value| v["state"]["user"]["credit_balance"].as_i64();
    let want = expected.user.as_ref().map(|u| u.credit_balance);

    // From the running replica's store: it is written right after each commit, so poll.
    let mut local = serde_json::Value::Null;
    assert!(
        wait_until(WAIT, || {
            let (ok, out, _) = state(&scenario, &dir, &["get", "3"]);
            local = json_lines(&out).pop().unwrap_or_default();
            ok && balance(&local) == want
        }),
        "state get 3 from the local store: {local}\n{}",
        replica.log_tail()
    );
    assert_eq!(local["source"], "local");
    assert_eq!(local["state"]["version"], expected.version);
    // Its latest decisions, as the decisions topic has them, with why.
    let mine: Vec<&Decision> = decisions.iter().filter(|d| d.uid == 3).collect();
    let recent = local["recent_decisions"].as_array().expect("recent decisions");
    assert_eq!(recent.len(), mine.len().min(5), "{local}");
    let last = mine.last().unwrap();
    let shown = recent.last().unwrap();
    assert_eq!(shown["order_id"], last.order_id);
    assert_eq!(shown["note"], last.note.as_str());

    let (ok, out, err) = state(&scenario, &dir, &["--from-changelog", "get", "3"]);
    assert!(ok, "{err}");
    let from_log = json_lines(&out).pop().unwrap();
    assert_eq!(
        (from_log["source"].as_str(), balance(&from_log)),
        (Some("changelog"), want)
    );

    let decided = &decisions[0];
    let (ok, out, err) = state(&scenario, &dir, &["order", &decided.order_id.to_string()]);
    assert!(ok, "{err}");
    let order = json_lines(&out).pop().unwrap();
    assert_eq!(order["status"], serde_json::to_value(decided.status).unwrap());

    let (ok, out, err) = state(&scenario, &dir, &["--from-changelog", "stats"]);
    assert!(ok, "{err}");
    let stats = json_lines(&out);
    assert_eq!(stats.len(), 6, "one line per partition");
    let sum = |field: &str| stats.iter().map(|s| s[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("users"), sum("orders_decided")), (5, 20));

    let (ok, out, _) = state(&scenario, &dir, &["--from-changelog", "dump"]);
    assert!(ok);
    assert_eq!(json_lines(&out).len(), 5, "one line per user");
    assert!(matches!(replica.child.try_wait(), Ok(None)), "the replica still runs");

    // Where no replica ever ran there is no local store: the error says what to do.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, out, err) = state(&scenario, &empty, &["get", "3"]);
    assert!(!ok, "{out}");
    assert!(err.contains("--from-changelog"), "{err}");
}
