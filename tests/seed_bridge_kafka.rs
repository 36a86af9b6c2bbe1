//! The seed's own producers keep working: unkeyed JSON on the seed's `user` and `order`
//! topics is repartitioned by uid into the keyed inputs and decided like any order.

mod common;

use common::*;
use creditstream::app;
use creditstream::config::Config;
use creditstream::runtime::admin;
use creditstream::shutdown;
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::record::{Decision, OrderStatus};
use std::time::Duration;

/// A topology of the test's own with the seed bridge on, its topics, and a configuration
/// whose replica runs the bridge; the state dir lives as long as the returned guard.
async fn seed_setup() -> (tempfile::TempDir, TopologyDefinition, Config) {
    let dir = tempfile::tempdir().unwrap();
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("t"));
    def.seed_bridge.enabled = true;
    admin::ensure_topics(&kafka(), &def).await.unwrap();
    let mut config = config(&def, None, dir.path(), "");
    config.processor.run_seed_bridge = true;
    (dir, def, config)
}

type ProcessorTask = tokio::task::JoinHandle<Result<(), app::AppError>>;

/// Runs `creditstream process` in the test; trigger the returned shutdown to stop it.
fn start_processor(config: &Config, def: &TopologyDefinition) -> (shutdown::ShutdownTrigger, ProcessorTask) {
    let (trigger, _) = shutdown::channel();
    let stopper = trigger.clone();
    let (c, d) = (config.clone(), def.clone());
    (
        stopper,
        tokio::spawn(async move { app::process(&c, d, &trigger, false).await }),
    )
}

/// The dead letters of the topology, once there is at least one.
fn dead_letters(def: &TopologyDefinition) -> Vec<Read> {
    read_until(
        &def.outputs.dead_letters,
        def.partitions,
        Duration::from_secs(60),
        |r| !r.is_empty(),
    )
}

/// A seed create of user `uid` (balance 100) on partition 0 of the seed's `user` topic.
fn seed_create(def: &TopologyDefinition, uid: i64) {
    let value = format!(
        r#"{{"type":"C","uid":"{uid}","lname":"Rao","name":"Asha","credit_limit":"100","credit_balance":"100"}}"#
    );
    produce(&def.seed_bridge.users, &[(Some(0), None, Some(value.into_bytes()))]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unkeyed_seed_records_are_repartitioned_and_decided() {
    let (_dir, def, config) = seed_setup().await;

    let (stopper, processor) = start_processor(&config, &def);

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
        |r| !changes_only(r).is_empty(),
    );
    assert_eq!(
        changes_only(&created).len(),
        1,
        "the seed's create reached the processor"
    );
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
    let letters = dead_letters(&def);
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

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_seed_record_is_dead_lettered_cut_and_the_seed_orders_behind_it_are_decided() {
    let (_dir, def, config) = seed_setup().await;

    seed_create(&def, 601);
    // About 1 MB on the seed's order topic: the broker takes it, but not with dead-letter
    // headers added. The seed order behind it, on the same partition, must still be decided.
    let big = producer_with(&[("message.max.bytes", "2000000")]);
    produce_through(
        &big,
        &def.seed_bridge.orders,
        &[(Some(0), None, Some(vec![b'x'; 1_040_000]))],
    );
    produce(
        &def.seed_bridge.orders,
        &[(Some(0), None, Some(br#"{"uid": 601, "amount": 30}"#.to_vec()))],
    );

    let (stopper, processor) = start_processor(&config, &def);
    let decisions = read_until(&def.outputs.decisions, def.partitions, Duration::from_secs(120), |r| {
        !r.is_empty()
    });
    let letters = dead_letters(&def);
    stopper.trigger();
    let stopped = processor.await.unwrap();

    assert_eq!(
        decisions.len(),
        1,
        "the seed order behind the oversized record is decided"
    );
    let decision: Decision = serde_json::from_slice(decisions[0].value.as_ref().unwrap()).unwrap();
    assert_eq!(
        (decision.uid, decision.amount, decision.status),
        (601, 30, OrderStatus::Completed)
    );
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].headers["error.reason"], "seed_schema_mismatch");
    assert_eq!(letters[0].headers["error.value.bytes"], "1040000");
    let kept = letters[0].value.as_ref().map_or(0, Vec::len);
    assert!(
        kept > 0 && kept < 1_040_000,
        "the value is cut to a bounded size: {kept}"
    );
    stopped.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_records_the_former_bridge_group_committed_are_not_bridged_again() {
    let (_dir, def, config) = seed_setup().await;

    seed_create(&def, 701);
    let orders: Vec<RawRecord> = (1..=3)
        .map(|amount| {
            (
                Some(0),
                None,
                Some(format!(r#"{{"uid": 701, "amount": {amount}}}"#).into_bytes()),
            )
        })
        .collect();
    produce(&def.seed_bridge.orders, &orders);
    // What the bridge of the previous version had committed in its own group: the create
    // and the first two orders are done; the third order is not.
    commit_offsets(
        &format!("{}-seed-bridge", def.application_id),
        &[(&def.seed_bridge.users, 0, 1), (&def.seed_bridge.orders, 0, 2)],
    );
    // The user exists in the credit check already (the old bridge had bridged its create).
    let (key, value) =
        creditstream::topology::codec::encode_command(&creditstream::topology::record::UserCommand::Create {
            command_id: 1,
            user: creditstream::topology::record::UserRow {
                uid: 701,
                name: "Asha".into(),
                lname: "Rao".into(),
                credit_limit: 100,
                credit_balance: 100,
            },
        });
    let p = creditstream::topology::partitioner::partition_for(&key, def.partitions) as i32;
    produce(&def.inputs.user_commands, &[(Some(p), Some(key), Some(value))]);

    let (stopper, processor) = start_processor(&config, &def);
    let decisions = read_until(&def.outputs.decisions, def.partitions, Duration::from_secs(120), |r| {
        !r.is_empty()
    });
    stopper.trigger();
    processor.await.unwrap().unwrap();

    // The seed orders of one partition are bridged in order, so had the first two been
    // bridged again, their decisions would come first.
    let amounts: Vec<i64> = decisions
        .iter()
        .map(|r| {
            serde_json::from_slice::<Decision>(r.value.as_ref().unwrap())
                .unwrap()
                .amount
        })
        .collect();
    assert_eq!(amounts, vec![3], "only the order the former bridge had not committed");
}

#[test]
fn offsets_are_not_carried_over_into_a_group_that_has_members() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("t"));
    def.seed_bridge.enabled = true;
    runtime.block_on(admin::ensure_topics(&kafka(), &def)).unwrap();
    let (from, to) = (format!("{}-old", def.application_id), def.application_id.clone());
    commit_offsets(&from, &[(&def.seed_bridge.orders, 0, 5)]);
    // A member of the target group, as a replica of the previous version would be.
    let member: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &to)
        .create()
        .unwrap();
    rdkafka::consumer::Consumer::subscribe(&member, &[&def.inputs.orders]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rdkafka::consumer::Consumer::assignment(&member).unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the member never joined");
        member.poll(Duration::from_millis(100));
    }
    let mut partitions = rdkafka::TopicPartitionList::new();
    partitions.add_partition(&def.seed_bridge.orders, 0);

    let refused = creditstream::runtime::group_offsets::carry_over(&kafka(), &from, &to, &partitions);
    assert!(
        matches!(
            refused,
            Err(creditstream::runtime::group_offsets::CarryOverError::Commit { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(committed_offset(&to, &def.seed_bridge.orders, 0), None);

    drop(member);
    let carried = creditstream::runtime::group_offsets::carry_over(&kafka(), &from, &to, &partitions);
    assert_eq!(carried.unwrap(), 1, "once the group is empty");
    assert_eq!(committed_offset(&to, &def.seed_bridge.orders, 0), Some(5));
}
