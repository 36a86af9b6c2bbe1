//! Helpers shared by the integration tests: the real broker and MariaDB from
//! scripts/stack.sh, unique topic/group/database names per test, reading topics,
//! and starting the real binary as a child process.
#![allow(dead_code)]

pub mod cluster;
pub mod scenario;

use creditstream::config::{KafkaConfig, MysqlConfig};
use creditstream::runtime::admin;
use creditstream::topology::definition::TopologyDefinition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Writes the topology to a file a child process can be pointed at.
pub fn topology_file(def: &TopologyDefinition, dir: &Path) -> PathBuf {
    let path = dir.join("topology.toml");
    std::fs::write(&path, toml::to_string(def).expect("topology to TOML")).expect("write topology");
    path
}

/// A `creditstream` child process, killed when dropped.
pub struct Running {
    pub child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Running {
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but does nothing, heartbeats
    /// included, until [`Running::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// How the child exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }

    /// The end of the child's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = http_get(self.metrics_port, "/metrics")?;
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(|a, b| a + b)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `creditstream <subcommand>` with the given config overrides (CREDITSTREAM__ keys).
/// It logs at `info`, or as `CREDITSTREAM_TEST_PROCESS_LOG` says (an `EnvFilter`, e.g.
/// `info,librdkafka=debug` beside `CREDITSTREAM__KAFKA__CLIENT__DEBUG=eos,broker`, which
/// turns librdkafka's debug contexts on).
pub fn spawn(subcommand: &str, env: &[(String, String)], metrics_port: u16, log: &Path) -> Running {
    let log_file = std::fs::File::create(log).expect("log file");
    let err_file = log_file.try_clone().expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_creditstream"));
    command
        .arg(subcommand)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .env(
            "RUST_LOG",
            std::env::var("CREDITSTREAM_TEST_PROCESS_LOG").unwrap_or_else(|_| "info".into()),
        );
    for (k, v) in env {
        command.env(k, v);
    }
    Running {
        child: command.spawn().expect("spawn creditstream"),
        metrics_port,
        log: log.to_path_buf(),
    }
}

/// A plain HTTP GET on 127.0.0.1:port, without a client library; the body of a 2xx answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    match http(port, "GET", path, "") {
        Some((status, body)) if (200..300).contains(&status) => Some(body),
        _ => None,
    }
}

/// A plain HTTP request on 127.0.0.1:port: the status and the body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Some((status, dechunk(body)));
    }
    Some((status, body.to_string()))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query-string value.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A test's directory (every process's log), removed only if the test passes (or kept
/// anyway when `CREDITSTREAM_TEST_KEEP_LOGS` is set, to read a passing run's logs).
pub struct KeptOnFailure(tempfile::TempDir);

impl KeptOnFailure {
    pub fn new(test: &str) -> Self {
        Self(
            tempfile::Builder::new()
                .prefix(&format!("{test}-"))
                .tempdir()
                .expect("a temporary directory"),
        )
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("CREDITSTREAM_TEST_KEEP_LOGS").is_some() {
            self.0.disable_cleanup(true);
            eprintln!("logs kept in {}", self.0.path().display());
        }
    }
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

pub fn stack(args: &[&str]) {
    let script = std::env::var("CREDITSTREAM_STACK")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh").into());
    let status = Command::new(script)
        .args(args)
        .status()
        .expect("running scripts/stack.sh");
    assert!(status.success(), "scripts/stack.sh {args:?} failed");
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

/// `(uid, name, lname, credit_limit, credit_balance)` rows of `User`, by uid.
pub type UserRows = Vec<(i64, String, String, i64, i64)>;
/// `(eventid, orderid, uid, order_status, order_amount, order_notes)` rows of `Order_details`.
pub type OrderRows = Vec<(i64, i64, i64, String, i64, String)>;

pub async fn snapshot(mysql: &MysqlConfig) -> (UserRows, OrderRows) {
    use mysql_async::prelude::Queryable;
    let pool = mysql_async::Pool::new(mysql.url.as_str());
    let mut conn = pool.get_conn().await.expect("connect");
    let users: UserRows = conn
        .query("SELECT uid, name, lname, credit_limit, credit_balance FROM `User` ORDER BY uid")
        .await
        .unwrap_or_default();
    let orders: OrderRows = conn
        .query("SELECT eventid, orderid, uid, order_status, order_amount, order_notes FROM `Order_details` ORDER BY orderid, order_status")
        .await
        .unwrap_or_default();
    drop(conn);
    let _ = pool.disconnect().await;
    (users, orders)
}

/// Polls the tables until `done` holds for a snapshot, or `timeout` passes.
pub async fn snapshot_until(
    mysql: &MysqlConfig,
    timeout: Duration,
    done: impl Fn(&(UserRows, OrderRows)) -> bool,
) -> (UserRows, OrderRows) {
    let started = Instant::now();
    loop {
        let snap = snapshot(mysql).await;
        if done(&snap) || started.elapsed() > timeout {
            return snap;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `go` for the Go checks (tests/grafana_schema, tests/k8s_manifests): from PATH, else where
/// Go's own tarball installs it. Fails (never skips) without it, or with a Go older than
/// `min_minor` (1.`min_minor`).
pub fn go(min_minor: u32) -> String {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("go"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let go = on_path
        .into_iter()
        .chain([std::path::PathBuf::from("/usr/local/go/bin/go")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("go is not installed: the Go checks in tests/ need Go (scripts/setup.sh installs Debian's golang-go when go is missing)")
        });
    let go = go.display().to_string();
    let version = std::process::Command::new(&go)
        .args(["env", "GOVERSION"])
        .output()
        .expect("run go env");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let minor: u32 = version
        .strip_prefix("go1.")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|minor| minor.parse().ok())
        .unwrap_or(0);
    assert!(
        minor >= min_minor,
        "{go} is {version:?}; this check needs Go >= 1.{min_minor}"
    );
    go
}

/// `creditstream all` (ingest, processor, sink in one process) on fresh topics of 6
/// partitions and a fresh database, listening on a free port, ready; `extra` are more
/// `CREDITSTREAM__` settings. Returns the process and its port.
pub async fn start_all(dir: &Path, extra: &[(&str, &str)]) -> (Running, u16) {
    let def = topology(6).await;
    let mysql = database().await;
    let port = free_port();
    let mut env: Vec<(String, String)> = vec![
        (
            "CREDITSTREAM__TOPOLOGY_FILE".into(),
            topology_file(&def, dir).display().to_string(),
        ),
        ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS".into(), bootstrap()),
        ("CREDITSTREAM__MYSQL__URL".into(), mysql.url.clone()),
        ("CREDITSTREAM__INGEST__LISTEN".into(), format!("127.0.0.1:{port}")),
        (
            "CREDITSTREAM__PROCESSOR__STATE_DIR".into(),
            dir.join("state").display().to_string(),
        ),
        ("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE".into(), "false".into()),
        ("CREDITSTREAM__SINK__GROUP_ID".into(), unique("sink")),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let system = spawn("all", &env, port, &dir.join("all.log"));
    assert!(
        wait_until(Duration::from_secs(120), || http_get(port, "/readyz").is_some()),
        "creditstream all is ready:\n{}",
        system.log_tail()
    );
    (system, port)
}
