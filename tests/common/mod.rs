//! Helpers shared by the integration tests: the real broker and MariaDB from
//! scripts/stack.sh, unique topic/group/database names per test, reading and writing
//! topics, and waiting on conditions. The real binary as a child process is in
//! [`process`], plain HTTP in [`http`], the tables as the tests read them in [`mysql`].
#![allow(dead_code, unused_imports)]

pub mod cluster;
mod http;
mod mysql;
mod process;
pub mod scenario;

pub use http::*;
pub use mysql::*;
pub use process::*;

use creditstream::config::{KafkaConfig, MysqlConfig};
use creditstream::runtime::admin;
use creditstream::topology::definition::TopologyDefinition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The broker every helper talks to: the single-broker stack's, unless a test pointed
/// this test binary at another cluster (see [`cluster::Cluster::attach`]).
pub fn bootstrap() -> String {
    if let Some(servers) = BOOTSTRAP.get() {
        return servers.clone();
    }
    std::env::var("CREDITSTREAM_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

static BOOTSTRAP: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Points every helper of this test binary at `servers` (once; later calls must agree).
pub fn use_bootstrap(servers: &str) {
    let set = BOOTSTRAP.get_or_init(|| servers.to_string());
    assert_eq!(set, servers, "one test binary talks to one cluster");
}

pub fn mysql_base() -> String {
    std::env::var("CREDITSTREAM_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://creditstream:creditstream@127.0.0.1:3306".into())
}

pub fn kafka() -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: bootstrap(),
        admin_timeout_ms: 30_000,
        replication_factor: 0,
        min_insync_replicas: 0,
        client: BTreeMap::new(),
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        % 1_000_000_000_000;
    format!(
        "{prefix}{}x{nanos}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The shipped topology with topics of this test's own, created on the broker.
pub async fn topology(partitions: u32) -> TopologyDefinition {
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("t"));
    def.partitions = partitions;
    def.seed_bridge.enabled = false;
    admin::ensure_topics(&kafka(), &def)
        .await
        .expect("creating the test's topics on the real broker");
    def
}

/// A database of this test's own on the real MariaDB.
pub async fn database() -> MysqlConfig {
    let name = unique("creditstream_test_");
    let pool = mysql_async::Pool::new(format!("{}/mysql", mysql_base()).as_str());
    let mut conn = pool.get_conn().await.expect("connecting to the real MariaDB");
    use mysql_async::prelude::Queryable;
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .expect("creating the test database");
    drop(conn);
    let _ = pool.disconnect().await;
    MysqlConfig {
        url: format!("{}/{name}", mysql_base()),
        pool_max: 8,
    }
}

pub fn producer() -> BaseProducer {
    producer_with(&[])
}

/// A producer with more librdkafka properties (for example a larger `message.max.bytes`).
pub fn producer_with(extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap())
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("producer")
}

/// A client of `group` that never joins it: reads and commits its offsets.
fn group_client(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// The offset consumer group `group` committed on `topic` `partition`, if any.
pub fn committed_offset(group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer = group_client(group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets");
    match committed.find_partition(topic, partition)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// Commits `(topic, partition, next offset)` for `group`, as a consumer of it would have.
pub fn commit_offsets(group: &str, offsets: &[(&str, i32, i64)]) {
    let consumer = group_client(group);
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .expect("offset");
    }
    consumer
        .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
}

/// A record to produce: (`partition`, key, value); `None` leaves each to the client.
pub type RawRecord = (Option<i32>, Option<Vec<u8>>, Option<Vec<u8>>);

/// A user's Create command (command id = uid, limit = balance = `credit`) as the ingest
/// publishes it: keyed by uid, on the uid's partition of `partitions`.
pub fn create_record(uid: i64, name: &str, lname: &str, credit: i64, partitions: u32) -> RawRecord {
    use creditstream::topology::codec::encode_command;
    use creditstream::topology::record::{UserCommand, UserRow};
    let (key, value) = encode_command(&UserCommand::Create {
        command_id: uid,
        user: UserRow {
            uid,
            name: name.into(),
            lname: lname.into(),
            credit_limit: credit,
            credit_balance: credit,
        },
    });
    let partition = creditstream::topology::partitioner::partition_for(&key, partitions) as i32;
    (Some(partition), Some(key), Some(value))
}

/// A `Completed` decision for order `order_id` as the processor writes it (uid
/// `order_id % 17`, an amount of 1 to 9): keyed by uid, on the uid's partition of
/// `partitions`. The sink makes two rows of it (Initialised, then Completed).
pub fn completed_decision_record(order_id: i64, partitions: u32) -> RawRecord {
    use creditstream::topology::codec::to_json;
    use creditstream::topology::partitioner::{partition_for, uid_key};
    use creditstream::topology::record::{Decision, OrderStatus, NOTE_COMPLETED};
    let decision = Decision {
        order_id,
        uid: order_id % 17,
        amount: 1 + order_id % 9,
        status: OrderStatus::Completed,
        note: NOTE_COMPLETED.to_string(),
        balance_after: Some(0),
        order_timestamp_ms: 1_700_000_000_000 + order_id,
        decided_at_ms: 1_700_000_000_000 + order_id,
    };
    let key = uid_key(decision.uid);
    (
        Some(partition_for(&key, partitions) as i32),
        Some(key),
        Some(to_json(&decision)),
    )
}

/// Produces records and waits until all are acknowledged.
pub fn produce(topic: &str, records: &[RawRecord]) {
    produce_through(&producer(), topic, records);
}

/// Produces records with `producer` and waits until all are acknowledged.
pub fn produce_through(producer: &BaseProducer, topic: &str, records: &[RawRecord]) {
    for (partition, key, value) in records {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(p) = partition {
            record = record.partition(*p);
        }
        if let Some(k) = key {
            record = record.key(&k[..]);
        }
        if let Some(v) = value {
            record = record.payload(&v[..]);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

impl Read {
    /// A command's outcome on the user-changes topic, rather than a change of a user.
    pub fn is_outcome(&self) -> bool {
        self.value
            .as_deref()
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
            .is_some_and(|v| v["kind"] == "outcome")
    }
}

/// The changes of users among `reads` of the user-changes topic (its command outcomes left out).
pub fn changes_only(reads: &[Read]) -> Vec<&Read> {
    reads.iter().filter(|r| !r.is_outcome()).collect()
}

/// Reads `topic` (read_committed) from the beginning until `done` holds for what was read,
/// or `timeout` passes; returns everything read.
pub fn read_until(topic: &str, partitions: u32, timeout: Duration, done: impl Fn(&[Read]) -> bool) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let mut read = Vec::new();
    while started.elapsed() < timeout {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            read.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
            continue;
        }
        if done(&read) {
            return read;
        }
    }
    read
}

/// Writes the topology to a file a child process can be pointed at.
pub fn topology_file(def: &TopologyDefinition, dir: &Path) -> PathBuf {
    let path = dir.join("topology.toml");
    std::fs::write(&path, toml::to_string(def).expect("topology to TOML")).expect("write topology");
    path
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    condition()
}

/// Awaits `check` every 100 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A configuration for in-process components against the test's topics and database.
pub fn config(
    def: &TopologyDefinition,
    mysql: Option<&MysqlConfig>,
    dir: &Path,
    extra: &str,
) -> creditstream::config::Config {
    let topology = topology_file(def, dir);
    let mysql_url = mysql.map_or_else(|| format!("{}/demodb", mysql_base()), |m| m.url.clone());
    let overlay = format!(
        "topology_file = {:?}\n[kafka]\nbootstrap_servers = {:?}\n[mysql]\nurl = {mysql_url:?}\n{extra}",
        topology.display().to_string(),
        bootstrap(),
    );
    let mut config = creditstream::config::Config::from_toml_overlay(&overlay).expect("test config");
    config.processor.state_dir = dir.join("state");
    config.processor.run_seed_bridge = false;
    config.sink.group_id = unique("sink");
    config
}
