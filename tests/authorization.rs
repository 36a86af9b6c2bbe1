//! An authorization error is a deployment error, not an outage: on the real broker with
//! ACLs enforced (scripts/stack.sh runs the StandardAuthorizer, open by default), a
//! replica denied writing to its decisions topic stops at once with a message that says
//! so, instead of rolling back and retrying forever.

mod common;

use common::scenario::Scenario;
use common::*;
use std::time::Duration;

/// Denies `User:ANONYMOUS` (every client of the local broker) `operation` on `topic`.
fn deny(operation: &str, topic: &str) {
    stack(&[
        "tool",
        "org.apache.kafka.tools.AclCommand",
        "--bootstrap-server",
        &bootstrap(),
        "--add",
        "--deny-principal",
        "User:ANONYMOUS",
        "--operation",
        operation,
        "--topic",
        topic,
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_denied_its_output_topic_stops_with_a_clear_error_instead_of_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(5).await;
    deny("Write", &scenario.def.outputs.decisions);
    let mut replica = scenario.replica(&dir.path().join("r"));
    scenario.orders(5, 20);
    assert!(
        wait_until(Duration::from_secs(120), || replica.exited().is_some()),
        "the replica stopped:\n{}",
        replica.log_tail()
    );
    let status = replica.exited().expect("exited");
    assert!(!status.success(), "it exits with an error: {status:?}");
    let log = replica.log_tail().to_lowercase();
    assert!(log.contains("authorization"), "the log names the cause:\n{log}");
    assert!(
        log.matches("rolling back to the last commit").count() == 0,
        "a fatal error is not retried:\n{log}"
    );
}
