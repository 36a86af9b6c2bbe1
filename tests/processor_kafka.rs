//! The processor on the real broker: replicas of `creditstream process` sharing one
//! consumer group, a replica killed with SIGKILL mid-stream, a restart on the same state,
//! and poison pills. Decisions are read back with read_committed and compared with what
//! the test driver decides for the same input.

mod common;

use common::scenario::{assigned, Scenario, WAIT};
use common::*;
use creditstream::topology::codec::encode_order;
use creditstream::topology::partitioner::partition_for;
use creditstream::topology::record::Order;

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_the_partitions_and_decide_every_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(40).await;
    let a = scenario.replica(&dir.path().join("a"));
    let b = scenario.replica(&dir.path().join("b"));
    assert!(
        wait_until(WAIT, || assigned(&a) >= 1.0
            && assigned(&b) >= 1.0
            && assigned(&a) + assigned(&b) == 6.0),
        "both replicas own partitions: a={} b={}",
        assigned(&a),
        assigned(&b)
    );
    scenario.orders(40, 400);
    let decisions = scenario.decisions(400);
    scenario.check(&decisions);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(30).await;
    let mut a = scenario.replica(&dir.path().join("a"));
    let b = scenario.replica(&dir.path().join("b"));
    assert!(wait_until(WAIT, || {
        assigned(&a) + assigned(&b) == 6.0 && assigned(&a) >= 1.0 && assigned(&b) >= 1.0
    }));
    scenario.orders(30, 300);
    // Wait until the stream is under way, then kill one replica without warning.
    let _ = read_until(&scenario.def.outputs.decisions, 6, WAIT, |r| r.len() >= 50);
    scenario.orders(30, 300);
    a.sigkill();
    scenario.orders(30, 300);
    assert!(
        wait_until(WAIT, || assigned(&b) == 6.0),
        "the survivor takes every partition"
    );
    let decisions = scenario.decisions(900);
    scenario.check(&decisions);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_restarted_on_its_state_resumes_without_replaying() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(20).await;
    let mut first = scenario.replica(&dir.path().join("r"));
    scenario.orders(20, 200);
    let _ = scenario.decisions(200);
    assert!(first.sigterm().success(), "graceful stop");
    let second = scenario.replica(&dir.path().join("r"));
    scenario.orders(20, 200);
    let decisions = scenario.decisions(400);
    scenario.check(&decisions);
    assert!(wait_until(WAIT, || assigned(&second) == 6.0));
    // Its local state was complete: nothing had to be restored from the changelog.
    assert_eq!(
        second.metric("creditstream_processor_restored_records_total"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_wait_for_the_user_commands_that_were_on_the_broker_before_them() {
    // A replica that starts behind (after downtime, or a new deployment) finds a backlog on
    // both inputs. More user commands are waiting on each partition than one fetch brings;
    // the orders are for the users created last. None may be declined as unknown.
    let dir = tempfile::tempdir().unwrap();
    let users = 60_000;
    let mut scenario = Scenario::new(users).await;
    scenario.orders_for(users - 3_000 + 1..=users);
    let replica = scenario.replica(&dir.path().join("r"));
    let decisions = scenario.decisions(3_000);
    let unknown = decisions.iter().filter(|d| d.balance_after.is_none()).count();
    assert_eq!(
        unknown, 0,
        "orders declined as unknown user although created before them"
    );
    scenario.check(&decisions);
    drop(replica);
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_pills_go_to_the_dead_letter_topic_and_processing_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = Scenario::new(5).await;
    let _replica = scenario.replica(&dir.path().join("r"));
    let p1 = partition_for(b"1", 6) as i32;
    let wrong = (p1 + 1) % 6;
    let good = encode_order(&Order {
        order_id: 999_999,
        uid: 1,
        amount: 1,
        timestamp_ms: 0,
    })
    .1;
    let garbage: Vec<RawRecord> = vec![
        (Some(p1), Some(b"1".to_vec()), Some(vec![0xde, 0xad, 0xbe, 0xef])),
        (Some(p1), Some(b"1".to_vec()), Some(br#"{"order":"yes"}"#.to_vec())),
        (Some(p1), None, Some(good.clone())),
        (Some(p1), Some(b"abc".to_vec()), Some(good.clone())),
        (Some(wrong), Some(b"1".to_vec()), Some(good.clone())),
        (
            Some(p1),
            Some(b"1".to_vec()),
            Some(
                encode_order(&Order {
                    order_id: 999_998,
                    uid: 2,
                    amount: 1,
                    timestamp_ms: 0,
                })
                .1,
            ),
        ),
    ];
    produce(&scenario.def.inputs.orders, &garbage);
    produce(
        &scenario.def.inputs.user_commands,
        &[(Some(p1), Some(b"1".to_vec()), Some(b"not json".to_vec()))],
    );
    scenario.orders(5, 50);
    let letters = read_until(&scenario.def.outputs.dead_letters, 6, WAIT, |r| r.len() >= 7);
    assert_eq!(letters.len(), 7);
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.headers["error.reason"].as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "invalid_key",
            "key_mismatch",
            "missing_key",
            "schema_mismatch",
            "undecodable",
            "undecodable",
            "wrong_partition"
        ]
    );
    for letter in &letters {
        assert!(letter.headers["source.topic"].starts_with('t'));
        assert!(letter.headers.contains_key("source.offset"));
        assert!(letter.headers.contains_key("error.detail"));
    }
    // The raw bytes travel unchanged.
    assert!(letters
        .iter()
        .any(|l| l.value.as_deref() == Some(&[0xde, 0xad, 0xbe, 0xef][..])));
    let decisions = scenario.decisions(50);
    scenario.check(&decisions);
}
