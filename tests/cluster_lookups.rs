//! Offset look-ups on a real cluster (`scripts/stack.sh up --brokers 3`), when the broker a
//! client last saw leading a partition freezes: once the cluster has fenced that broker and
//! moved the partition's leader, a look-up answers while the broker is still frozen. A
//! restore asks the changelog's offsets before it reads; one that waited on the frozen
//! broker held its task until the broker came back (a frozen group coordinator stopped
//! three partitions for 20 s that way, tests/cluster_liveness.rs `freeze-coordinator`).
//! And the group's description (standby placement, fencing a departed owner): it answers
//! from the group's coordinator while a broker the group does not need is frozen; it
//! waited on every broker and failed after 10 s, holding the state updater all that time.
//! And the ingest's readiness: one frozen broker of three does not make it unready (its
//! metadata request went to the broker the producer used last, the frozen one). And the
//! group's committed offsets, which a restored task waits for: once the cluster has moved
//! the group's coordinator off a frozen broker, a reader that knew the old one reads them.

mod common;

use common::cluster::Cluster;
use common::*;
use creditstream::config::Config;
use creditstream::ingest::kafka::KafkaPublisher;
use creditstream::runtime::streams::changelog_reader::ChangelogReader;
use creditstream::runtime::streams::group_view::GroupView;
use creditstream::runtime::{admin, client, group_members};
use creditstream::topology::definition::TopologyDefinition;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One test at a time freezes a broker of the shared cluster.
static ONE_FREEZE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PARTITIONS: u32 = 6;
/// The state updater's bound on one look-up (`state_updater::CALL_TIMEOUT`).
const LOOKUP: Duration = Duration::from_secs(10);
/// How soon after a broker freezes a look-up that the cluster can answer without it must
/// answer: a restored task waits for it, and its partition must decide again within 15 s.
const AFTER_FREEZE: Duration = Duration::from_secs(12);

fn cluster_kafka() -> creditstream::config::KafkaConfig {
    let mut kafka = kafka();
    kafka.replication_factor = 3;
    kafka.min_insync_replicas = 2;
    kafka
}

/// The node leading `topic`/`partition` as a client bootstrapped now is told (the cluster
/// lists only brokers it has not fenced), if one answered within a few seconds.
fn leader_now(topic: &str, partition: i32) -> Option<i32> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", "creditstream-test-leader")
        .create()
        .ok()?;
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(3)).ok()?;
    let leader = metadata
        .topics()
        .first()?
        .partitions()
        .get(partition as usize)?
        .leader();
    (leader >= 0).then_some(leader)
}

/// Thaws the broker when the test ends, failed or not: the cluster outlives the test.
struct Frozen<'a>(&'a Cluster, u32);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.thaw(self.1);
    }
}

/// The topology's topics under a prefix of their own, at replication factor 3.
async fn cluster_topics(prefix: &str) -> TopologyDefinition {
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique(prefix));
    def.partitions = PARTITIONS;
    admin::ensure_topics(&cluster_kafka(), &def)
        .await
        .expect("creating the test's topics at replication factor 3");
    def
}

/// Thaws the broker, waits until the cluster is whole again (the next test needs it so)
/// and deletes the test's topics.
async fn thaw_and_clean_up(thaw: Frozen<'_>, def: &TopologyDefinition) {
    let cluster = thaw.0;
    drop(thaw);
    assert!(
        cluster.wait_isr_full(Duration::from_secs(120)).is_some(),
        "the cluster's ISRs never filled again after the thaw"
    );
    if let Err(error) = admin::delete_topics(&cluster_kafka(), def).await {
        eprintln!("could not delete the test's topics: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_brokers_a_changelog_look_up_answers_while_the_old_leader_is_frozen() {
    let _one = ONE_FREEZE.lock().await;
    let cluster = Cluster::attach();
    let def = cluster_topics("lookup").await;
    let changelog = def.store.changelog.clone();
    let reader = ChangelogReader::new(&cluster_kafka(), &changelog).expect("a changelog reader");
    // The reader asks every partition once, so its client knows each partition's leader
    // (a topic created a moment ago may not be known to every broker yet: asked again).
    for partition in 0..PARTITIONS {
        let answered = wait_until(Duration::from_secs(30), || reader.watermarks(partition, LOOKUP).is_ok());
        assert!(answered, "partition {partition}'s offsets on a healthy cluster");
    }

    let partition = 0;
    let node = leader_now(&changelog, partition as i32).expect("the partition's leader");
    let broker = node as u32 - 1;
    cluster.freeze(broker);
    let thaw = Frozen(&cluster, broker);
    let moved = wait_until(Duration::from_secs(60), || {
        leader_now(&changelog, partition as i32).is_some_and(|now| now != node)
    });
    assert!(
        moved,
        "the cluster never moved partition {partition}'s leader off frozen broker {broker}"
    );

    let answer = reader.watermarks(partition, LOOKUP);
    assert!(
        answer.is_ok(),
        "a look-up with the partition's new leader live, broker {broker} still frozen, got {answer:?}"
    );
    thaw_and_clean_up(thaw, &def).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_brokers_the_group_is_described_while_a_broker_it_does_not_need_is_frozen() {
    let _one = ONE_FREEZE.lock().await;
    let cluster = Cluster::attach();
    let def = cluster_topics("describe").await;
    let group = unique("describe-group");

    // The group's one member, polled on a thread of its own until the test ends.
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &group)
        .set("client.id", "the-member")
        .create()
        .expect("a member");
    member.subscribe(&[def.inputs.orders.as_str()]).expect("subscribing");
    let done = Arc::new(AtomicBool::new(false));
    let polling = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let _ = member.poll(Duration::from_millis(100));
            }
        })
    };
    // Stable, with the member holding every partition of the topic (read from the
    // consumer-protocol assignment librdkafka hands over as bytes).
    let stable = |g: &group_members::Group| {
        g.is_stable()
            && g.members
                .iter()
                .any(|m| m.client_id == "the-member" && m.assigned.len() == PARTITIONS as usize)
    };

    let describer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("a client");
    let joined = wait_until(Duration::from_secs(60), || {
        group_members::describe(&describer, &group, group_members::DESCRIBE_WAIT).is_ok_and(|g| stable(&g))
    });
    assert!(joined, "the member never showed in a stable group on a healthy cluster");
    let view = GroupView::start(&cluster_kafka(), &group, "group-view-test".into()).expect("a group view");

    let coordinator = cluster.group_coordinator(&group).expect("the group's coordinator");
    let broker = (1..=3)
        .find(|b| *b != coordinator)
        .expect("a broker that does not coordinate");
    cluster.freeze(broker);
    let thaw = Frozen(&cluster, broker);

    let asked = Instant::now();
    let answer = group_members::describe(&describer, &group, group_members::DESCRIBE_WAIT);
    let took = asked.elapsed();
    assert!(
        answer.as_ref().is_ok_and(stable),
        "a description with the group's coordinator live, broker {broker} frozen, got {answer:?} after {took:?}"
    );
    // The view the state updater reads keeps being refreshed while the broker is frozen.
    let frozen_at = Instant::now();
    let fresh = wait_until(Duration::from_secs(15), || {
        view.latest(Duration::from_secs(5))
            .is_some_and(|seen| seen.at > frozen_at && stable(&seen.group))
    });
    assert!(
        fresh,
        "the group view was not refreshed while broker {broker} was frozen"
    );
    thaw_and_clean_up(thaw, &def).await;
    done.store(true, Ordering::Relaxed);
    let _ = polling.join();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_brokers_the_ingest_stays_ready_while_one_broker_is_frozen() {
    let _one = ONE_FREEZE.lock().await;
    let cluster = Cluster::attach();
    let def = cluster_topics("ready").await;
    let config = Config::load_from(None, Vec::new()).expect("the shipped configuration");
    let publisher = KafkaPublisher::new(&cluster_kafka(), &config.ingest).expect("the ingest's producer");
    let topic = def.inputs.orders.clone();
    // A topic created a moment ago may not be known to every broker yet: published again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = publisher.publish(&topic, Some(0), b"1", b"{}").await {
        assert!(Instant::now() < deadline, "publishing on a healthy cluster: {error}");
    }
    // The broker the producer used last: partition 0's leader, which got the record.
    let broker = cluster.leader(&topic, 0).expect("partition 0's leader");
    let probe = publisher.clone();
    assert!(
        tokio::task::spawn_blocking(move || probe.is_reachable(Duration::from_secs(2)))
            .await
            .unwrap_or(false),
        "the cluster is reachable before the freeze"
    );
    cluster.freeze(broker);
    let thaw = Frozen(&cluster, broker);
    // Several probes, as an orchestrator makes them: each must say ready.
    for probe_no in 0..3 {
        let probe = publisher.clone();
        let asked = Instant::now();
        let ready = tokio::task::spawn_blocking(move || probe.is_reachable(Duration::from_secs(2)))
            .await
            .unwrap_or(false);
        assert!(
            ready,
            "probe {probe_no}: not ready after {:?} with broker {broker} frozen and two of three brokers live",
            asked.elapsed()
        );
    }
    thaw_and_clean_up(thaw, &def).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_brokers_the_committed_offsets_are_read_while_the_old_group_coordinator_is_frozen() {
    let _one = ONE_FREEZE.lock().await;
    let cluster = Cluster::attach();
    let def = cluster_topics("offsets").await;
    let group = unique("offsets-group");
    let mut committed = TopicPartitionList::new();
    committed
        .add_partition_offset(&def.inputs.orders, 0, Offset::Offset(1))
        .expect("an offset");
    // A client of the group that commits without joining it (the group reader below only
    // reads).
    let committer: BaseConsumer = client::consumer(&cluster_kafka(), &group, true)
        .create()
        .expect("a committer");
    let stored = wait_until(Duration::from_secs(30), || {
        committer.commit(&committed, CommitMode::Sync).is_ok()
    });
    assert!(stored, "committing an offset of group {group} on a healthy cluster");

    // What the state updater asks before it hands a restored task over: the group's
    // committed offsets, through a client that knows the group's coordinator already.
    let reader: BaseConsumer = client::group_reader(&cluster_kafka(), &group)
        .create()
        .expect("a group reader");
    let mut asked = TopicPartitionList::new();
    asked.add_partition(&def.inputs.orders, 0);
    let reads = |reader: &BaseConsumer| {
        reader
            .committed_offsets(asked.clone(), Duration::from_millis(500))
            .is_ok_and(|tpl| tpl.elements().first().is_some_and(|e| e.offset() == Offset::Offset(1)))
    };
    assert!(
        wait_until(Duration::from_secs(30), || reads(&reader)),
        "reading the committed offset on a healthy cluster"
    );

    let coordinator = cluster.group_coordinator(&group).expect("the group's coordinator");
    cluster.freeze(coordinator);
    let thaw = Frozen(&cluster, coordinator);
    let frozen_at = Instant::now();
    // The controller fences the frozen broker after its session and another broker takes
    // the group over; a reader that keeps asking the frozen one waits until the thaw.
    let answered = wait_until(AFTER_FREEZE, || reads(&reader));
    let took = frozen_at.elapsed();
    assert!(
        answered && took <= AFTER_FREEZE,
        "no committed offset within {AFTER_FREEZE:?} of freezing the group's coordinator (broker {coordinator}; answered: {answered}, after {took:?})"
    );
    eprintln!("committed offsets read again {took:?} after the group coordinator froze");
    thaw_and_clean_up(thaw, &def).await;
}
