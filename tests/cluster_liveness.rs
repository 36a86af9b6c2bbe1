//! Liveness on a real cluster: three brokers, replication factor 3, min.insync.replicas 2
//! (`scripts/stack.sh up --brokers 3`), two processor replicas with the shipped
//! configuration (standbys, the seed bridge) under a steady order load, while brokers
//! meet the faults operators see: a partition leader that coordinates as little as it can killed (kill -9), the
//! replicas' transaction and group coordinator killed, a rolling restart (SIGTERM one
//! broker at a time, waiting for full ISRs), a broker frozen (SIGSTOP) past its session,
//! and the replicas' transaction coordinator and group coordinator frozen.
//!
//! The load produces as the ingest does (its producer configuration) and the watching
//! reader reads as creditstream's readers do, so a stall of either is the product's.
//! Each fault is checked for safety and liveness, on the decisions a `read_committed`
//! reader sees, by the time it sees them:
//! - after a kill -9 or a freeze of one broker of three, every partition decides again
//!   within 15 s, while that broker is still down or frozen;
//! - once every ISR is full again, every partition decides within 10 s;
//! - during a rolling restart no partition pauses more than 5 s;
//! - every acknowledged order is decided, exactly once;
//! - no replica reports a stalled read, and each stops on SIGTERM within 20 s.
//!
//! `CREDITSTREAM_LIVENESS_FAULTS` (comma-separated: leader, coordinator, rolling, freeze,
//! freeze-transaction-coordinator, freeze-coordinator; all by default) chooses the faults
//! and `CREDITSTREAM_LIVENESS_ROUNDS` the rounds.
//! `CREDITSTREAM_LIVENESS_ROLLING_PAUSE_SECS` adds a pause between a rolling restart's steps.
//! `scripts/test.sh` runs one round of the leader kill. The others run in
//! `scripts/chaos.sh --long`, which fails until each meets its bound. In the latest runs
//! the leader and coordinator kills met theirs every time and the three freezes nearly
//! every time (5.2-13.6 s; once 15.5 s, a transaction caught by the freeze of its
//! coordinator before its commit); the rolling restart (5.5-6.7 s in the last long run)
//! did not; see benches/results/liveness/README.md.

mod common;

use common::cluster::Cluster;
use common::scenario::assigned;
use common::*;
use creditstream::config::Config;
use creditstream::runtime::{admin, client};
use creditstream::topology::codec::encode_order;
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::partitioner::partition_for;
use creditstream::topology::record::{Decision, Order};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 6;
const USERS: i64 = 600;
/// Orders a second, over all partitions.
const RATE: u64 = 100;
/// How long a killed or frozen broker stays away.
const OUTAGE: Duration = Duration::from_secs(20);
const AFTER_FAULT: Duration = Duration::from_secs(15);
const AFTER_HEALTHY: Duration = Duration::from_secs(10);
const ROLLING: Duration = Duration::from_secs(5);
const ISR_FULL_WITHIN: Duration = Duration::from_secs(120);

/// The delivery reports of the load: the order ids the cluster acknowledged.
#[derive(Default)]
struct Acks(Mutex<BTreeSet<i64>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<i64>;

    fn delivery(&self, result: &DeliveryResult<'_>, order_id: Box<i64>) {
        if result.is_ok() {
            if let Ok(mut acked) = self.0.lock() {
                acked.insert(*order_id);
            }
        }
    }
}

/// A steady load of orders, one per user in turn, until stopped; the acknowledged ones.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<BTreeSet<i64>>>,
}

impl Load {
    fn start(topic: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // Exactly the ingest's producer: the load stands for clients of the ingest, so a
            // partition it cannot produce to is one the ingest could not accept orders for.
            let ingest = Config::load_from(None, Vec::new())
                .expect("the default configuration")
                .ingest;
            let producer: BaseProducer<Acks> = creditstream::ingest::kafka::producer_config(&cluster_kafka(), &ingest)
                .create_with_context(Acks::default())
                .expect("load producer");
            let pause = Duration::from_micros(1_000_000 / RATE);
            let mut next = 1_i64;
            while !flag.load(Ordering::Relaxed) {
                let (key, value) = encode_order(&Order {
                    order_id: next,
                    uid: next % USERS + 1,
                    amount: 1,
                    timestamp_ms: 0,
                });
                let record = BaseRecord::with_opaque_to(&topic, Box::new(next))
                    .partition(partition_for(&key, PARTITIONS) as i32)
                    .key(&key[..])
                    .payload(&value[..]);
                if producer.send(record).is_ok() {
                    next += 1;
                }
                producer.poll(Duration::ZERO);
                std::thread::sleep(pause);
            }
            // What is still queued gets its answer (the cluster is healthy by now).
            let _ = producer.flush(Duration::from_secs(60));
            let acked = producer.context().0.lock().map(|a| a.clone()).unwrap_or_default();
            acked
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> BTreeSet<i64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().expect("running").join().expect("load thread")
    }
}

/// One decision as the reader saw it.
struct SeenDecision {
    partition: i32,
    order_id: i64,
    /// When the reader saw it, and when the replica produced it (its record's timestamp,
    /// ms since the epoch): far apart, the decision waited for its transaction's commit.
    at: Instant,
    produced_ms: i64,
}

/// Every decision a `read_committed` reader sees, with the partition and when it saw it.
#[derive(Default)]
struct Seen {
    decisions: Vec<SeenDecision>,
}

struct Watch {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(topic: String) -> Watch {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, flag) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // A read_committed reader configured as creditstream configures its own (the
            // sink's, the verifier's), so its own stalls are the product's, not the harness's.
            let consumer: BaseConsumer = client::standalone_consumer(&cluster_kafka(), true)
                .set("fetch.wait.max.ms", "20")
                .create()
                .expect("watcher");
            let mut tpl = TopicPartitionList::new();
            for p in 0..PARTITIONS as i32 {
                tpl.add_partition_offset(&topic, p, Offset::Beginning).expect("tpl");
            }
            consumer.assign(&tpl).expect("assign");
            while !flag.load(Ordering::Relaxed) {
                let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let Some(decision) = message
                    .payload()
                    .and_then(|v| serde_json::from_slice::<Decision>(v).ok())
                else {
                    continue;
                };
                if let Ok(mut seen) = into.lock() {
                    seen.decisions.push(SeenDecision {
                        partition: message.partition(),
                        order_id: decision.order_id,
                        at: Instant::now(),
                        produced_ms: message.timestamp().to_millis().unwrap_or(0),
                    });
                }
            }
        });
        Watch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The longest stretch within `[from, to]` in which the reader saw no decision of
    /// `partition`.
    fn longest_gap(&self, partition: i32, from: Instant, to: Instant) -> Duration {
        self.longest_gap_from(partition, from, to).0
    }

    /// The longest gap of `partition` within `[from, to]`, when it began, and when the
    /// decision that ended it was produced (ms since the epoch; 0 if none ended it).
    fn longest_gap_from(&self, partition: i32, from: Instant, to: Instant) -> (Duration, Instant, i64) {
        let seen = self.seen.lock().expect("seen");
        let mut previous = from;
        let mut longest = (Duration::ZERO, from, 0);
        for decision in seen
            .decisions
            .iter()
            .filter(|d| d.partition == partition && d.at >= from && d.at <= to)
        {
            longest = longest.max((decision.at.duration_since(previous), previous, decision.produced_ms));
            previous = decision.at;
        }
        longest.max((to.saturating_duration_since(previous), previous, 0))
    }

    /// The partitions that went longer than `bound` without a decision within `[from, to]`.
    fn stalls(&self, from: Instant, to: Instant, bound: Duration) -> BTreeMap<i32, Duration> {
        (0..PARTITIONS as i32)
            .map(|p| (p, self.longest_gap(p, from, to)))
            .filter(|(_, gap)| *gap > bound)
            .collect()
    }

    /// How many times each order id was decided.
    fn counts(&self) -> HashMap<i64, usize> {
        let mut counts = HashMap::new();
        for decision in &self.seen.lock().expect("seen").decisions {
            *counts.entry(decision.order_id).or_default() += 1;
        }
        counts
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The shipped topology on this test's own topics at replication factor 3, with rich users.
/// The Kafka configuration of the test's topics: replication factor 3, min ISR 2.
fn cluster_kafka() -> creditstream::config::KafkaConfig {
    let mut kafka = kafka();
    kafka.replication_factor = 3;
    kafka.min_insync_replicas = 2;
    kafka
}

async fn cluster_topology() -> TopologyDefinition {
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("live"));
    def.partitions = PARTITIONS;
    let kafka = cluster_kafka();
    let topics = admin::ensure_topics(&kafka, &def)
        .await
        .expect("creating the test's topics at replication factor 3");
    assert!(
        topics
            .iter()
            .all(|t| t.replication_factor == 3 && t.brokers_it_survives() == Some(1)),
        "every topic has 3 replicas and takes writes with one broker down"
    );
    let users: Vec<RawRecord> = (1..=USERS)
        .map(|uid| create_record(uid, &format!("N{uid}"), "L", 1_000_000_000, PARTITIONS))
        .collect();
    produce(&def.inputs.user_commands, &users);
    def
}

fn replica(def: &TopologyDefinition, dir: &Path, name: &str) -> Running {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).expect("replica dir");
    let port = free_port();
    let env: Vec<(String, String)> = [
        (
            "CREDITSTREAM__TOPOLOGY_FILE",
            topology_file(def, &dir).display().to_string(),
        ),
        ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS", bootstrap()),
        (
            "CREDITSTREAM__PROCESSOR__STATE_DIR",
            dir.join("state").display().to_string(),
        ),
        ("CREDITSTREAM__PROCESSOR__METRICS_LISTEN", format!("127.0.0.1:{port}")),
        ("CREDITSTREAM__PROCESSOR__REPLICA_ID", name.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    spawn("process", &env, port, &dir.join("replica.log"))
}

/// The broker leading most of `topic`'s partitions.
fn busiest_leader(cluster: &Cluster, topic: &str) -> u32 {
    leaders(cluster, topic)
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or(1, |(b, _)| b)
}

/// How many of `topic`'s partitions each broker leads.
fn leaders(cluster: &Cluster, topic: &str) -> BTreeMap<u32, usize> {
    let mut led: BTreeMap<u32, usize> = BTreeMap::new();
    for p in 0..PARTITIONS as i32 {
        if let Some(broker) = cluster.leader(topic, p) {
            *led.entry(broker).or_default() += 1;
        }
    }
    led
}

/// The broker a leader kill takes away: one that leads partitions and coordinates as little
/// as it can (the coordinator kill is a fault of its own), the busiest such.
fn leader_not_coordinator(cluster: &Cluster, def: &TopologyDefinition) -> u32 {
    let coordinators: Vec<u32> = ["a", "b"]
        .iter()
        .filter_map(|r| cluster.transaction_coordinator(&format!("{}-{r}-stream-thread-0", def.application_id)))
        .chain(cluster.group_coordinator(&def.application_id))
        .collect();
    let roles = |b: u32| coordinators.iter().filter(|c| **c == b).count();
    leaders(cluster, &def.inputs.orders)
        .into_iter()
        .min_by_key(|(b, n)| (roles(*b), std::cmp::Reverse(*n)))
        .map_or(1, |(b, _)| b)
}

/// What went wrong, collected so one run reports every fault's outcome.
#[derive(Default)]
struct Findings(Vec<String>);

/// Prints the longest gap of any partition within `[from, to]`, and when it began (UTC,
/// to find it in the replicas' and brokers' logs), for the record.
fn report(watch: &Watch, what: &str, from: Instant, to: Instant) {
    let (gap, began, ended_by, partition) = (0..PARTITIONS as i32)
        .map(|p| {
            let (gap, began, ended_by) = watch.longest_gap_from(p, from, to);
            (gap, began, ended_by, p)
        })
        .max()
        .unwrap_or((Duration::ZERO, from, 0, 0));
    eprintln!(
        "liveness: {what}: longest gap {} ms (partition {partition}, from {}, ended by a decision produced at {})",
        gap.as_millis(),
        utc_time_of(began),
        utc_ms_of_day(ended_by as u128)
    );
}

/// `at` as the UTC time of day, `HH:MM:SS.mmm`.
fn utc_time_of(at: Instant) -> String {
    let wall = std::time::SystemTime::now() - Instant::now().saturating_duration_since(at);
    utc_ms_of_day(
        wall.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
}

/// Milliseconds since the epoch as the UTC time of day, `HH:MM:SS.mmm`.
fn utc_ms_of_day(epoch_ms: u128) -> String {
    let ms = epoch_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl Findings {
    /// Explains the stalls found since `found_before` by the brokers the fault did not
    /// touch that the controller fenced meanwhile for lapsed heartbeats (printed whether or
    /// not there were stalls). Such a broker takes every partition it leads or follows
    /// below full ISR, whatever the replicas do: the machine was too busy for the brokers'
    /// 2 s session, and a stall of that window is the cluster's as much as the replicas'.
    fn explain_by_fencing(&mut self, found_before: usize, what: &str, fenced: &[(u32, String)]) {
        for (broker, line) in fenced {
            eprintln!("liveness: {what}: broker {broker}, not under fault, was fenced by the controller: {line}");
        }
        if self.0.len() > found_before && !fenced.is_empty() {
            let brokers: Vec<u32> = fenced.iter().map(|(broker, _)| *broker).collect();
            self.0.push(format!(
                "{what}: meanwhile the controller fenced brokers {brokers:?}, not under fault, for lapsed heartbeats (the cluster itself lost ISRs)"
            ));
        }
    }

    fn stalls(&mut self, what: &str, stalls: BTreeMap<i32, Duration>, bound: Duration) {
        if !stalls.is_empty() {
            let ms: BTreeMap<i32, u128> = stalls.into_iter().map(|(p, d)| (p, d.as_millis())).collect();
            self.0.push(format!(
                "{what}: partitions without a decision for more than {bound:?} (ms): {ms:?}"
            ));
        }
    }
}

/// A broker killed (or frozen) for [`OUTAGE`], then back: every partition decides within
/// [`AFTER_FAULT`] while it is away, and within [`AFTER_HEALTHY`] of full ISRs.
fn outage(cluster: &Cluster, watch: &Watch, findings: &mut Findings, what: &str, broker: u32, freeze: bool) {
    eprintln!("liveness: {what}: broker {broker}");
    let (mark, found_before) = (cluster.controller_log_mark(), findings.0.len());
    let from = Instant::now();
    if freeze {
        cluster.freeze(broker);
    } else {
        cluster.kill(broker);
    }
    std::thread::sleep(OUTAGE);
    report(watch, &format!("{what}, broker away"), from, Instant::now());
    findings.stalls(
        &format!("{what}, broker {broker} away"),
        watch.stalls(from, Instant::now(), AFTER_FAULT),
        AFTER_FAULT,
    );
    if freeze {
        cluster.thaw(broker);
    } else {
        cluster.start(broker);
    }
    healthy_again(cluster, watch, findings, what);
    let others = fenced_others(cluster, mark, broker);
    findings.explain_by_fencing(found_before, what, &others);
}

/// The brokers other than `faulted` the controller fenced for lapsed heartbeats since `mark`.
fn fenced_others(cluster: &Cluster, mark: u64, faulted: u32) -> Vec<(u32, String)> {
    cluster
        .fenced_since(mark)
        .into_iter()
        .filter(|(broker, _)| *broker != faulted)
        .collect()
}

/// Waits for full ISRs, then checks every partition decides within [`AFTER_HEALTHY`].
fn healthy_again(cluster: &Cluster, watch: &Watch, findings: &mut Findings, what: &str) {
    let Some(took) = cluster.wait_isr_full(ISR_FULL_WITHIN) else {
        findings
            .0
            .push(format!("{what}: ISRs not full within {ISR_FULL_WITHIN:?}"));
        return;
    };
    let healthy = Instant::now();
    eprintln!("liveness: {what}: ISRs full again after {took:?}");
    // A window longer than the bound: within one exactly as long, no gap could exceed it.
    let window = AFTER_HEALTHY + Duration::from_secs(2);
    std::thread::sleep(window);
    report(watch, &format!("{what}, after full ISRs"), healthy, healthy + window);
    findings.stalls(
        &format!("{what}, after full ISRs"),
        watch.stalls(healthy, healthy + window, AFTER_HEALTHY),
        AFTER_HEALTHY,
    );
}

/// `pause`: how long to wait after every ISR is full again before stopping the next broker
/// (0 by default: the next goes as soon as the cluster is healthy, the procedure the 5 s
/// bound is stated for).
fn rolling_restart(cluster: &Cluster, watch: &Watch, findings: &mut Findings, pause: Duration) {
    eprintln!("liveness: rolling restart");
    let (from, found_before) = (Instant::now(), findings.0.len());
    let mut fenced = Vec::new();
    for broker in cluster.brokers() {
        let mark = cluster.controller_log_mark();
        // When each step began and ended, to read the replicas' logs against.
        let stopping = Instant::now();
        cluster.stop(broker);
        let starting = Instant::now();
        cluster.start(broker);
        eprintln!(
            "liveness: rolling restart: broker {broker} SIGTERM at {}, exited by {}, answering again at {}",
            utc_time_of(stopping),
            utc_time_of(starting),
            utc_time_of(Instant::now())
        );
        if cluster.wait_isr_full(ISR_FULL_WITHIN).is_none() {
            findings
                .0
                .push(format!("rolling restart: ISRs not full after broker {broker}"));
        }
        fenced.extend(fenced_others(cluster, mark, broker));
        // An operator's pause before the next broker, if one is asked for: the time the
        // restarted broker has to warm up before it may take over coordinators.
        std::thread::sleep(pause);
    }
    // Settled: the last partition's move shows in the window too.
    std::thread::sleep(ROLLING);
    report(watch, "rolling restart", from, Instant::now());
    findings.stalls("rolling restart", watch.stalls(from, Instant::now(), ROLLING), ROLLING);
    findings.explain_by_fencing(found_before, "rolling restart", &fenced);
}

/// The number environment variable `name` holds, or `default` if it is unset or not one.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// SIGTERM, and the replica must be gone within 20 s.
fn stops_on_sigterm(replica: &mut Running, name: &str, findings: &mut Findings) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &replica.child.id().to_string()])
        .status();
    if !wait_until(Duration::from_secs(20), || replica.exited().is_some()) {
        findings.0.push(format!(
            "replica {name} did not stop within 20 s of SIGTERM:\n{}",
            replica.log_tail()
        ));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_three_brokers_every_partition_keeps_deciding_through_broker_faults() {
    let cluster = Cluster::attach();
    let rounds: usize = env_number("CREDITSTREAM_LIVENESS_ROUNDS", 1);
    let pause = Duration::from_secs(env_number("CREDITSTREAM_LIVENESS_ROLLING_PAUSE_SECS", 0));
    let dir = KeptOnFailure::new("cluster_liveness");
    let def = cluster_topology().await;
    let mut a = replica(&def, dir.path(), "a");
    let mut b = replica(&def, dir.path(), "b");
    let watch = Watch::start(def.outputs.decisions.clone());
    let load = Load::start(def.inputs.orders.clone());
    // Both replicas run tasks (a alone deciding every partition would pass the second
    // check before b joined) and every partition decides before the first fault.
    let warm = wait_until(Duration::from_secs(120), || {
        let (on_a, on_b) = (assigned(&a), assigned(&b));
        on_a > 0.0
            && on_b > 0.0
            && on_a + on_b == PARTITIONS as f64
            && watch
                .stalls(
                    Instant::now() - Duration::from_secs(3),
                    Instant::now(),
                    Duration::from_secs(2),
                )
                .is_empty()
    });
    assert!(
        warm,
        "the replicas never decided on every partition:\n{}\n{}",
        a.log_tail(),
        b.log_tail()
    );

    let mut findings = Findings::default();
    let transactional_id = format!("{}-a-stream-thread-0", def.application_id);
    let faults = std::env::var("CREDITSTREAM_LIVENESS_FAULTS").unwrap_or_else(|_| {
        "leader,coordinator,rolling,freeze,freeze-transaction-coordinator,freeze-coordinator".into()
    });
    let chosen = |fault: &str| faults.split(',').any(|f| f.trim() == fault);
    for round in 1..=rounds {
        eprintln!("liveness: round {round} of {rounds} ({faults})");
        if chosen("leader") {
            let leader = leader_not_coordinator(&cluster, &def);
            outage(&cluster, &watch, &mut findings, "leader kill -9", leader, false);
        }
        if chosen("coordinator") {
            let coordinator = cluster
                .transaction_coordinator(&transactional_id)
                .or_else(|| cluster.group_coordinator(&def.application_id))
                .expect("a coordinator of the replicas");
            outage(
                &cluster,
                &watch,
                &mut findings,
                "coordinator kill -9",
                coordinator,
                false,
            );
        }
        if chosen("rolling") {
            rolling_restart(&cluster, &watch, &mut findings, pause);
        }
        if chosen("freeze") {
            let leader = busiest_leader(&cluster, &def.inputs.orders);
            outage(&cluster, &watch, &mut findings, "broker frozen", leader, true);
        }
        if chosen("freeze-transaction-coordinator") {
            // A commits every few milliseconds, so the freeze finds one of its commits (its
            // offsets or its end) in flight to the coordinator.
            let coordinator = cluster
                .transaction_coordinator(&transactional_id)
                .expect("the transaction coordinator of replica a");
            outage(
                &cluster,
                &watch,
                &mut findings,
                "transaction coordinator frozen",
                coordinator,
                true,
            );
        }
        if chosen("freeze-coordinator") {
            let coordinator = cluster
                .group_coordinator(&def.application_id)
                .expect("the group coordinator of the replicas");
            outage(
                &cluster,
                &watch,
                &mut findings,
                "group coordinator frozen",
                coordinator,
                true,
            );
        }
    }

    let acked = load.finish();
    let all_decided = wait_until(Duration::from_secs(60), || {
        let counts = watch.counts();
        acked.iter().all(|id| counts.contains_key(id))
    });
    let counts = watch.counts();
    if !all_decided {
        let missing: Vec<&i64> = acked.iter().filter(|id| !counts.contains_key(id)).collect();
        findings.0.push(format!(
            "{} of {} acknowledged orders never decided, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    let twice: Vec<(&i64, &usize)> = counts.iter().filter(|(_, n)| **n > 1).take(10).collect();
    if !twice.is_empty() {
        findings.0.push(format!("orders decided more than once: {twice:?}"));
    }
    for (name, replica) in [("a", &a), ("b", &b)] {
        for metric in [
            "creditstream_processor_changelog_read_stalls_total",
            "creditstream_processor_input_read_stalls_total",
        ] {
            let stalled = replica.metric(metric).unwrap_or(0.0);
            if stalled > 0.0 {
                findings.0.push(format!("replica {name}: {metric} = {stalled}"));
            }
        }
    }
    stops_on_sigterm(&mut a, "a", &mut findings);
    stops_on_sigterm(&mut b, "b", &mut findings);
    watch.finish();
    eprintln!("liveness: {} orders acknowledged and decided", acked.len());
    // The cluster outlives the test: topics left behind make every later broker restart
    // move their leaders too, and so lengthen the next run's gaps.
    if let Err(error) = admin::delete_topics(&cluster_kafka(), &def).await {
        eprintln!("liveness: could not delete the test's topics: {error}");
    }
    assert!(
        findings.0.is_empty(),
        "liveness findings:\n- {}",
        findings.0.join("\n- ")
    );
}
