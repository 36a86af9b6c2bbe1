//! The state updater against the real broker: a restore ends when the read's position
//! reaches the changelog's end, whatever lies between (aborted records, transaction
//! markers), also when a partition is read again from below where it was read before; a
//! read that falls below the changelog's start begins again from it, into a wiped store.

mod common;

use common::{bootstrap, kafka, unique, wait_until};
use creditstream::config::KafkaConfig;
use creditstream::runtime::activity;
use creditstream::runtime::rocks_store::{RocksStore, StoreResources};
use creditstream::runtime::store_reader;
use creditstream::runtime::streams::state_updater::{Command, Event, StateUpdater, UpdaterConfig};
use creditstream::topology::codec::InputTopic;
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::store::KeyValueStore;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const COMMITTED: usize = 20;

fn updater(def: &TopologyDefinition, dir: &std::path::Path) -> StateUpdater {
    updater_on(kafka(), def, dir)
}

fn updater_on(kafka: KafkaConfig, def: &TopologyDefinition, dir: &std::path::Path) -> StateUpdater {
    StateUpdater::start(UpdaterConfig {
        kafka,
        changelog: def.store.changelog.clone(),
        store_root: dir.to_path_buf(),
        resources: StoreResources::new(8, 8),
        standby_copies: 0,
        group_id: def.application_id.clone(),
        leader_topic: def.input_name(InputTopic::Orders).to_string(),
        transactional_id: unique("restore-test-"),
        inputs: vec![
            def.input_name(InputTopic::Orders).to_string(),
            def.input_name(InputTopic::UserCommands).to_string(),
        ],
        transaction_timeout_ms: 10_000,
        thread: 0,
    })
    .expect("the state updater starts")
}

/// Asks `updater` to restore partition 0's store from scratch for `ticket`.
fn restore_from_scratch(updater: &StateUpdater, ticket: u64) {
    updater.send(Command::Restore {
        partition: 0,
        ticket,
        store: None,
    });
}

/// Waits for the hand-over of `ticket`'s store.
fn restored(updater: &StateUpdater, ticket: u64, within: Duration) -> Option<RocksStore> {
    let started = Instant::now();
    while started.elapsed() < within {
        match updater.next_event() {
            Some(Event::Restored { ticket: t, store, .. }) if t == ticket => return Some(store),
            Some(Event::Failed { error, .. }) => panic!("the state updater failed: {error}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

/// Writes `COMMITTED` records to changelog partition 0, then a transaction that is
/// aborted: the partition ends in aborted records and their abort marker. Returns the end.
fn changelog_ending_in_an_abort(changelog: &str) -> i64 {
    let plain = common::producer();
    let records: Vec<common::RawRecord> = (0..COMMITTED)
        .map(|i| (Some(0), Some(format!("k{i}").into_bytes()), Some(b"v".to_vec())))
        .collect();
    common::produce_through(&plain, changelog, &records);
    let txn: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", unique("aborting-"))
        .create()
        .expect("a transactional producer");
    txn.init_transactions(Duration::from_secs(30)).expect("init");
    txn.begin_transaction().expect("begin");
    for i in 0..3 {
        let key = format!("aborted{i}");
        txn.send(
            BaseRecord::<str, str>::to(changelog)
                .partition(0)
                .key(&key)
                .payload("x"),
        )
        .expect("send");
    }
    txn.flush(Duration::from_secs(30)).expect("flush");
    txn.abort_transaction(Duration::from_secs(30)).expect("abort");
    // The coordinator writes the abort marker after it answered: wait until it is there.
    let end = COMMITTED as i64 + 4;
    let marked = common::wait_until(Duration::from_secs(30), || {
        plain
            .client()
            .fetch_watermarks(changelog, 0, Duration::from_secs(10))
            .is_ok_and(|(_, high)| high == end)
    });
    assert!(marked, "3 aborted records and their marker follow the committed ones");
    end
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_whose_changelog_ends_in_an_aborted_transaction_completes_also_when_read_again_from_below() {
    let def = common::topology(1).await;
    let end = changelog_ending_in_an_abort(&def.store.changelog);
    let dir = tempfile::tempdir().expect("tempdir");
    let updater = updater(&def, dir.path());

    restore_from_scratch(&updater, 1);
    let mut store = restored(&updater, 1, Duration::from_secs(30)).expect("the first restore completes");
    assert_eq!(
        store.checkpoint().expect("checkpoint"),
        Some(end),
        "restored to the end, past the marker"
    );

    // The same store comes back with its checkpoint in the committed part: the partition is
    // read again below where the reader stood, and only aborted records and the marker lie
    // between the last committed record and the end.
    store
        .apply_restored(&[], COMMITTED as i64)
        .expect("checkpoint moved back");
    updater.send(Command::Restore {
        partition: 0,
        ticket: 2,
        store: Some(store),
    });
    let store = restored(&updater, 2, Duration::from_secs(20))
        .expect("the second restore completes once its position reaches the end, no data record needed");
    assert_eq!(store.checkpoint().expect("checkpoint"), Some(end));
}

/// A state updater asked to stop while its broker does not answer stops once the call it is
/// in returns, not after one call per task it was asked for. (During a rolling restart a
/// replica did not stop within 20 s of SIGTERM: its updater asked a broker that could not
/// answer about each partition in turn, each call waiting out its 10 s timeout.) The silent
/// broker is a listener that never accepts: connections complete in its backlog and no
/// request is ever answered, as with a frozen broker.
#[test]
fn a_state_updater_asked_to_stop_does_not_first_ask_a_silent_broker_about_every_task() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = silent.local_addr().expect("its address");
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("silent"));
    def.partitions = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka = KafkaConfig {
        bootstrap_servers: address.to_string(),
        ..kafka()
    };
    let updater = updater_on(kafka, &def, dir.path());
    for partition in 0..6 {
        updater.send(Command::Restore {
            partition,
            ticket: partition as u64,
            store: None,
        });
    }
    let asking = wait_until(Duration::from_secs(20), || {
        activity::long_calls(Duration::from_millis(200))
            .iter()
            .any(|(call, _)| call.thread.starts_with("state-updater") && call.call == "changelog_watermarks")
    });
    assert!(asking, "the updater asks the silent broker for a changelog's offsets");

    let stopping = Instant::now();
    drop(updater);
    let took = stopping.elapsed();
    // One call's timeout (10 s) and the close, against 6 x 10 s if it asked about each task.
    assert!(
        took < Duration::from_secs(16),
        "the state updater took {took:?} to stop"
    );
}

/// A state updater that dies leaves every restoring task waiting for a store that never
/// comes: the replica must stop with a clear error (so its tasks move to other replicas and
/// its supervisor restarts it), not sit in the group owning partitions it never decides.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_state_updater_dies_stops_with_an_error_instead_of_holding_its_tasks() {
    let scenario = common::scenario::Scenario::new(10).await;
    let dir = common::KeptOnFailure::new("updater_dies");
    let mut replica = scenario.replica_with(
        &dir.path().join("r1"),
        &[("CREDITSTREAM_TEST_FAULTS", "updater_panic=1")],
    );
    let stopped = common::wait_until(Duration::from_secs(60), || replica.exited().is_some());
    assert!(
        stopped,
        "the replica kept running without its state updater:\n{}",
        replica.log_tail()
    );
    let status = replica.exited().expect("exited");
    assert!(!status.success(), "a dead state updater is a failure, not a clean stop");
    let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
    assert!(
        log.contains("state updater stopped"),
        "the log says why the replica stopped:\n{}",
        replica.log_tail()
    );
}

/// A task taken over while a previous owner's open transaction holds its committed offsets
/// starts once that transaction ends, without rolling the replica back. librdkafka starts
/// an assigned partition's fetcher only once it has read the committed offset, a look-up
/// it retries at its own pace while a transaction holds it; a task handed over before then
/// finds its input not fetched yet. Seeking such an input failed ("Erroneous state"), and
/// the failure rolled back every task of the replica, again at each retry while the
/// fetcher did not start (seen in the chaos run after a broker restart: a replica rolling
/// back every 5 s for minutes, none of its partitions deciding).
#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_input_is_not_fetched_yet_starts_without_rolling_the_replica_back() {
    let mut scenario = common::scenario::Scenario::new(10).await;
    let def = scenario.def.clone();
    let holder = transactional(&unique("previous-owner-"));
    holder.begin_transaction().expect("begin");
    let member: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &def.application_id)
        .create()
        .expect("a consumer of the application's group");
    let group = member.group_metadata().expect("group metadata");
    let mut offsets = TopicPartitionList::new();
    for partition in 0..def.partitions as i32 {
        for topic in [&def.inputs.orders, &def.inputs.user_commands] {
            offsets
                .add_partition_offset(topic, partition, Offset::Offset(0))
                .expect("offset");
        }
    }
    holder
        .send_offsets_to_transaction(&offsets, &group, Duration::from_secs(30))
        .expect("offsets sent to the open transaction");

    let dir = common::KeptOnFailure::new("not_fetched_yet");
    let replica = scenario.replica(&dir.path().join("r"));
    let log = || std::fs::read_to_string(&replica.log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(60), || log().contains("tasks assigned")),
        "the replica joins its group:\n{}",
        replica.log_tail()
    );
    // librdkafka asks again for the held offsets with a growing backoff (up to 1 s); once
    // it has grown, the restore (which looks every round) sees the offsets stable first.
    // librdkafka's backoff cannot be observed from outside, so this one waits.
    std::thread::sleep(Duration::from_secs(2));
    holder
        .commit_transaction(Duration::from_secs(30))
        .expect("the previous owner's transaction ends");

    scenario.orders(10, 60);
    let decisions = scenario.decisions(60);
    scenario.check(&decisions);
    assert!(
        !log().contains("rolling back to the last commit"),
        "a task whose input was not fetched yet rolled the replica back:\n{}",
        replica.log_tail()
    );
}

fn transactional(id: &str) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", id)
        .create()
        .expect("a transactional producer");
    producer.init_transactions(Duration::from_secs(30)).expect("init");
    producer
}

fn send(producer: &BaseProducer, topic: &str, key: &str) {
    producer
        .send(BaseRecord::<str, str>::to(topic).partition(0).key(key).payload("v"))
        .expect("send");
}

/// A restore whose position falls below the changelog's start while it reads (records
/// deleted under it: `kafka-delete-records`, or a retention put on the changelog by
/// mistake) wipes the store and reads the changelog again from its new start, as Kafka
/// Streams does with a corrupted task: the store then holds what the changelog holds, as
/// a restore on any other replica would, never records the changelog no longer has.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_falls_below_the_changelog_start_wipes_the_store_and_reads_it_again() {
    let def = common::topology(1).await;
    let changelog = def.store.changelog.clone();
    // Ten committed records (offsets 0-9, marker 10), then a transaction left open, whose
    // first record (11) holds every read_committed read at 11.
    let first = transactional(&unique("committed-"));
    first.begin_transaction().expect("begin");
    for i in 0..10 {
        send(&first, &changelog, &format!("gone{i}"));
    }
    first.commit_transaction(Duration::from_secs(30)).expect("commit");
    let open = transactional(&unique("open-"));
    open.begin_transaction().expect("begin");
    send(&open, &changelog, "held");
    open.flush(Duration::from_secs(30)).expect("flush");

    let dir = tempfile::tempdir().expect("tempdir");
    let updater = updater(&def, dir.path());
    restore_from_scratch(&updater, 1);
    let waiting = wait_until(Duration::from_secs(30), || {
        store_reader::open_local(dir.path(), 0).is_ok_and(|state| state.checkpoint == Some(11))
    });
    assert!(
        waiting,
        "the restore applied the committed records and waits at the open transaction"
    );

    // A retention put on the changelog by mistake (the broker refuses to delete records of
    // a topic that is compacted only) deletes everything below the log's end under the
    // waiting read; then the transaction commits (its marker at 12).
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin");
    let policy = AlterConfig::new(ResourceSpecifier::Topic(&changelog)).set("cleanup.policy", "compact,delete");
    let altered = admin
        .alter_configs(&[policy], &AdminOptions::new())
        .await
        .expect("alter configs");
    assert!(altered.iter().all(Result::is_ok), "cleanup.policy altered: {altered:?}");
    let mut below = TopicPartitionList::new();
    below
        .add_partition_offset(&changelog, 0, Offset::Offset(12))
        .expect("offset");
    // The broker applies the new policy a moment after it answered: delete until it does.
    let started = Instant::now();
    loop {
        let deleted = admin
            .delete_records(&below, &AdminOptions::new())
            .await
            .expect("delete records");
        let refused = deleted.elements().iter().find_map(|e| e.error().err());
        match refused {
            None => break,
            Some(error) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("delete records refused for now: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(error) => panic!("delete records of the changelog: {error}"),
        }
    }
    open.commit_transaction(Duration::from_secs(30)).expect("commit");

    let store = restored(&updater, 1, Duration::from_secs(30)).expect("the restore completes");
    assert_eq!(
        store.get(b"gone0").expect("get"),
        None,
        "the store kept records the changelog no longer has"
    );
    assert_eq!(
        store.checkpoint().expect("checkpoint"),
        Some(13),
        "read again from the new start to the end"
    );
}
