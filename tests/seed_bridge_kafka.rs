//! The seed's own producers keep working: unkeyed JSON on the seed's `user` and `order`
//! topics is repartitioned by uid into the keyed inputs and decided like any order.

mod common;

use common::*;
use creditstream::app;
use creditstream::runtime::admin;
use creditstream::shutdown;
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::record::{Decision, OrderStatus};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn unkeyed_seed_records_are_repartitioned_and_decided() {
    let dir = tempfile::tempdir().unwrap();
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("t"));
    def.seed_bridge.enabled = true;
    admin::ensure_topics(&kafka(), &def).await.unwrap();
    let mut config = config(&def, None, dir.path(), "");
    config.processor.run_seed_bridge = true;

    let (trigger, _) = shutdown::channel();
    let stopper = trigger.clone();
    let (c, d) = (config.clone(), def.clone());
    let processor = tokio::spawn(async move { app::process(&c, d, &trigger, false).await });

    // Exactly what the seed's kafka-python producers sent: JSON, no key.
    produce(&def.seed_bridge.users, &[(Some(0), None, Some(br#"{"type":"C","uid":"501","lname":"Sharma","name":"Arpana","credit_limit":"100","credit_balance":"100"}"#.to_vec()))]);
    produce(
        &def.seed_bridge.users,
        &[(Some(1), None, Some(br#"{"type":"R","uid":"501"}"#.to_vec()))],
    );
    let created = read_until(
        &def.outputs.user_changes,
        def.partitions,
        Duration::from_secs(120),
        |r| !r.is_empty(),
    );
    assert_eq!(created.len(), 1, "the seed's create reached the processor");
    produce(
        &def.seed_bridge.orders,
        &[(Some(2), None, Some(br#"{"uid": 501, "amount": 70}"#.to_vec()))],
    );
    produce(
        &def.seed_bridge.orders,
        &[(Some(3), None, Some(br#"{"uid": "501", "amount": "40"}"#.to_vec()))],
    );
    produce(
        &def.seed_bridge.orders,
        &[(Some(4), None, Some(br#"{"uid": 501}"#.to_vec()))],
    );
    let decisions: Vec<Decision> = read_until(&def.outputs.decisions, def.partitions, Duration::from_secs(120), |r| {
        r.len() >= 2
    })
    .into_iter()
    .map(|r| serde_json::from_slice(&r.value.unwrap()).unwrap())
    .collect();
    let letters = read_until(
        &def.outputs.dead_letters,
        def.partitions,
        Duration::from_secs(60),
        |r| !r.is_empty(),
    );
    stopper.trigger();
    processor.await.unwrap().unwrap();

    assert_eq!(decisions.len(), 2);
    let mut statuses: Vec<(i64, OrderStatus)> = decisions.iter().map(|d| (d.amount, d.status)).collect();
    statuses.sort_by_key(|s| s.0);
    // Which of the two came first is up to the partitions of the seed topic; one of them fits.
    assert!(decisions.iter().all(|d| d.uid == 501));
    assert_eq!(
        decisions.iter().filter(|d| d.status == OrderStatus::Completed).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(letters.len(), 1, "the order without an amount is a dead letter");
    assert_eq!(letters[0].headers["error.reason"], "seed_schema_mismatch");
}
