//! Offset look-ups on a real cluster (`scripts/stack.sh up --brokers 3`), when the broker a
//! client last saw leading a partition freezes: once the cluster has fenced that broker and
//! moved the partition's leader, a look-up answers while the broker is still frozen. A
//! restore asks the changelog's offsets before it reads; one that waited on the frozen
//! broker held its task until the broker came back (a frozen group coordinator stopped
//! three partitions for 20 s that way, tests/cluster_liveness.rs `freeze-coordinator`).

mod common;

use common::cluster::Cluster;
use common::*;
use creditstream::runtime::admin;
use creditstream::runtime::streams::changelog_reader::ChangelogReader;
use creditstream::topology::definition::TopologyDefinition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::time::Duration;

const PARTITIONS: u32 = 6;
/// The state updater's bound on one look-up (`state_updater::CALL_TIMEOUT`).
const LOOKUP: Duration = Duration::from_secs(10);

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

#[tokio::test(flavor = "multi_thread")]
async fn on_three_brokers_a_changelog_look_up_answers_while_the_old_leader_is_frozen() {
    let cluster = Cluster::attach();
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("lookup"));
    def.partitions = PARTITIONS;
    admin::ensure_topics(&cluster_kafka(), &def)
        .await
        .expect("creating the test's topics at replication factor 3");
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
    drop(thaw);
    assert!(
        cluster.wait_isr_full(Duration::from_secs(120)).is_some(),
        "the cluster's ISRs never filled again after the thaw"
    );
    if let Err(error) = admin::delete_topics(&cluster_kafka(), &def).await {
        eprintln!("could not delete the test's topics: {error}");
    }
}
