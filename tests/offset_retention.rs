//! The group's committed offsets never lapse, on the real broker. The group subscribes to
//! `orders` alone (every other input follows it, `src/runtime/streams/assignment.rs`), and
//! the group coordinator expires the committed offset of a topic its group does not
//! subscribe to `offsets.retention.minutes` after that offset was last committed, although
//! the group is alive (KIP-211, Kafka 2.1 on; `cleanupExpiredOffsets` in Kafka 4). A task
//! started from a lapsed offset would read its user commands again from the log's start and
//! apply them twice. So every input offset of every task is committed when the task starts
//! and every `processor.offsets_refresh_ms`, by an idle replica too, not only those it read
//! records of.
//! The commits are seen where the broker keeps them, on `__consumer_offsets`.

mod common;

use common::scenario::Scenario;
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const USERS: i64 = 60;
const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Where `__consumer_offsets` ends now, per partition.
fn offsets_topic_end() -> TopicPartitionList {
    let reader = offsets_reader();
    let metadata = reader
        .fetch_metadata(Some(OFFSETS_TOPIC), Duration::from_secs(10))
        .expect("metadata of __consumer_offsets");
    let mut end = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        let (_, high) = reader
            .fetch_watermarks(OFFSETS_TOPIC, partition.id(), Duration::from_secs(10))
            .expect("watermarks of __consumer_offsets");
        end.add_partition_offset(OFFSETS_TOPIC, partition.id(), Offset::Offset(high))
            .unwrap();
    }
    end
}

fn offsets_reader() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("offsets-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("a reader of __consumer_offsets")
}

/// A committed offset's key on `__consumer_offsets` (key versions 0 and 1): the group, the
/// topic and the partition. Other keys (group metadata, the coordinator's own records) are
/// `None`.
fn offset_commit_key(key: &[u8]) -> Option<(String, String, i32)> {
    let version = i16::from_be_bytes(key.get(0..2)?.try_into().ok()?);
    if !(0..=1).contains(&version) {
        return None;
    }
    let mut at = 2;
    let mut string = || -> Option<String> {
        let len = i16::from_be_bytes(key.get(at..at + 2)?.try_into().ok()?) as usize;
        let text = String::from_utf8(key.get(at + 2..at + 2 + len)?.to_vec()).ok()?;
        at += 2 + len;
        Some(text)
    };
    let (group, topic) = (string()?, string()?);
    let partition = i32::from_be_bytes(key.get(at..at + 4)?.try_into().ok()?);
    Some((group, topic, partition))
}

/// Reads `__consumer_offsets` from `from` until `done` holds for the (topic, partition)s
/// `group` committed since, or `wait` passes; returns them.
fn commits_since(
    from: &TopicPartitionList,
    group: &str,
    wait: Duration,
    done: impl Fn(&BTreeSet<(String, i32)>) -> bool,
) -> BTreeSet<(String, i32)> {
    let reader = offsets_reader();
    reader.assign(from).expect("assign __consumer_offsets");
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < wait && !done(&seen) {
        let Some(Ok(message)) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        if message.payload().is_none() {
            continue;
        }
        if let Some((g, topic, partition)) = message.key().and_then(offset_commit_key) {
            if g == group {
                seen.insert((topic, partition));
            }
        }
    }
    seen
}

/// Every partition of `topics`, as (topic, partition).
fn every_partition(topics: &[&str]) -> BTreeSet<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| (0..6).map(move |p| (t.to_string(), p)))
        .collect()
}

fn consumed(replica: &Running) -> f64 {
    replica
        .metric("creditstream_processor_records_consumed_total")
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_input_a_task_reads_has_its_offset_committed_again_busy_or_idle() {
    let dir = KeptOnFailure::new("offset-retention");
    let mut scenario = Scenario::new(USERS).await;
    let (group, orders, commands) = (
        scenario.def.application_id.clone(),
        scenario.def.inputs.orders.clone(),
        scenario.def.inputs.user_commands.clone(),
    );
    // A first replica reads every user command and commits their offsets.
    let mut first = scenario.replica(&dir.path().join("first"));
    assert!(
        wait_until(Duration::from_secs(60), || consumed(&first) >= USERS as f64),
        "the users are processed"
    );
    assert!(first.sigterm().success());

    // Its successor reads orders only: its commits carry the user commands' offsets too.
    let mark = offsets_topic_end();
    let mut busy = scenario.replica(&dir.path().join("busy"));
    scenario.orders(USERS, 600);
    let decided = scenario.decisions(600);
    assert_eq!(decided.len(), 600);
    let wanted = every_partition(&[&orders, &commands]);
    let seen = commits_since(&mark, &group, Duration::from_secs(20), |s| s.is_superset(&wanted));
    let missing: Vec<_> = wanted.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "a replica that read only orders committed no offset of {missing:?}"
    );
    assert!(busy.sigterm().success());

    // An idle replica (no record at all) commits every input's offset when it starts (its
    // claim of the tasks), and again at every refresh.
    let mark = offsets_topic_end();
    let idle = scenario.replica_with(
        &dir.path().join("idle"),
        &[("CREDITSTREAM__PROCESSOR__OFFSETS_REFRESH_MS", "1000")],
    );
    let seen = commits_since(&mark, &group, Duration::from_secs(30), |s| s.is_superset(&wanted));
    assert!(seen.is_superset(&wanted), "the idle replica took its tasks: {seen:?}");
    let mark = offsets_topic_end();
    let seen = commits_since(&mark, &group, Duration::from_secs(30), |s| s.is_superset(&wanted));
    let missing: Vec<_> = wanted.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "an idle replica did not commit the offsets of {missing:?} again"
    );
    assert_eq!(consumed(&idle), 0.0, "the idle replica read nothing");
}
