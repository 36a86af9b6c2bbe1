//! Scaling is a non-event, on the real broker: replicas that join or leave under load
//! never pause the partitions that stay where they are, a killed replica's partitions
//! decide again within seconds on the replica that kept a standby of them, a replica can
//! join while another restores a large partition, topics whose partition counts differ
//! are refused, an order never overtakes its user's create under a backlog of commands,
//! order ids are forgotten after their retention, and with the seed bridge on the group
//! balances the credit-check tasks, each seed-bridge task beside its partition's.

mod common;

use common::scenario::{assigned, Scenario, WAIT};
use common::*;
use creditstream::runtime::admin;
use creditstream::topology::codec::{encode_command, encode_order};
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::partitioner::partition_for;
use creditstream::topology::record::{Decision, Order, UserCommand, UserRow};
use rdkafka::producer::{BaseRecord, Producer};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The tests of this file measure decision gaps of several replicas each: they run one at
/// a time, so none measures the CPU the others take.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the failover test asserts, ms, for replicas run with a 3 s session timeout (the
/// shipped 15 s outlasts a group coordinator's move on a three-broker cluster; a crash then
/// costs the session timeout, which this test does not measure). The target is 5 s after
/// the kill (3 s of it the session timeout), and on a quiet 2-core machine it decides again
/// after 3.5-4.5 s (benches/results/scale_out/); the bound leaves 2 s for a busy CI machine (timings are measured, not
/// asserted, elsewhere) while still failing a failover that restores from scratch or waits
/// out a transaction timeout (it took 18-37 s before the state updater and the fencing).
const FAILOVER_BOUND_MS: i64 = 7_000;

const USERS: i64 = 600;

/// Orders for every user in turn, `per_second` of them, until `stop`; order ids count up
/// from `first`; `sent` counts what was handed to the producer.
fn steady_orders(topic: String, per_second: u64, first: i64, stop: Arc<AtomicBool>, sent: Arc<AtomicI64>) {
    let producer = producer();
    let pause = Duration::from_micros(1_000_000 / per_second);
    let mut next = first;
    while !stop.load(Ordering::Relaxed) {
        let uid = next % USERS + 1;
        let (key, value) = encode_order(&Order {
            order_id: next,
            uid,
            amount: 1,
            timestamp_ms: 0,
        });
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic)
            .partition(partition_for(&key, 6) as i32)
            .key(&key[..])
            .payload(&value[..]);
        if producer.send(record).is_ok() {
            next += 1;
            sent.store(next - first, Ordering::Relaxed);
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(pause);
    }
    let _ = producer.flush(Duration::from_secs(60));
}

/// Users with balances no order of these tests exhausts.
async fn rich_users(users: i64) -> Scenario {
    let scenario = Scenario::new(0).await;
    let records: Vec<RawRecord> = (1..=users)
        .map(|uid| create_record(uid, &format!("N{uid}"), "L", 1_000_000, 6))
        .collect();
    produce(&scenario.def.inputs.user_commands, &records);
    scenario
}

/// Every task a replica runs now, from its `creditstream_processor_active_task` gauge.
fn active_tasks(replica: &Running) -> BTreeSet<String> {
    let Some(body) = http_get(replica.metrics_port, "/metrics") else {
        return BTreeSet::new();
    };
    body.lines()
        .filter(|l| l.starts_with("creditstream_processor_active_task{") && l.ends_with(" 1"))
        .filter_map(|l| Some(l.split("task=\"").nth(1)?.split('"').next()?.to_string()))
        .collect()
}

/// The credit-check tasks a replica runs now.
fn running(replica: &Running) -> BTreeSet<String> {
    active_tasks(replica)
        .into_iter()
        .filter(|task| task.starts_with("0_"))
        .collect()
}

/// The seed-bridge tasks a replica runs now (sub-topology 1), by partition.
fn bridging(replica: &Running) -> BTreeSet<String> {
    active_tasks(replica)
        .iter()
        .filter_map(|task| task.strip_prefix("1_").map(str::to_string))
        .collect()
}

/// Which replica runs each credit-check task, once every task runs exactly once.
fn owners(replicas: &[(&str, &Running)]) -> Option<BTreeMap<String, String>> {
    let mut owner = BTreeMap::new();
    for (name, replica) in replicas {
        for task in running(replica) {
            if owner.insert(task, name.to_string()).is_some() {
                return None;
            }
        }
    }
    (owner.len() == 6).then_some(owner)
}

/// Waits until every task runs once, every replica runs at least one (each has joined the
/// group: a replica started beside another can join seconds after the first took every task,
/// and an owner map that merely held still for `settle` before that was once taken as
/// settled), and the owners did not change for `settle`.
fn settled(replicas: &[(&str, &Running)], settle: Duration) -> BTreeMap<String, String> {
    let started = Instant::now();
    let mut last: Option<(BTreeMap<String, String>, Instant)> = None;
    let every_one_runs =
        |owner: &BTreeMap<String, String>| replicas.iter().all(|(name, _)| owner.values().any(|o| o == name));
    while started.elapsed() < WAIT {
        if let Some(now) = owners(replicas).filter(every_one_runs) {
            match &last {
                Some((previous, since)) if *previous == now && since.elapsed() >= settle => return now,
                Some((previous, _)) if *previous == now => {}
                _ => last = Some((now, Instant::now())),
            }
        } else {
            last = None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the tasks never settled on {:?}",
        replicas.iter().map(|r| r.0).collect::<Vec<_>>()
    );
}

/// Every committed decision, with the partition it was written to.
fn decisions(scenario: &Scenario, expected: usize) -> Vec<(i32, Decision)> {
    read_until(&scenario.def.outputs.decisions, 6, WAIT, |r| r.len() >= expected)
        .into_iter()
        .map(|r| (r.partition, serde_json::from_slice(&r.value.unwrap()).unwrap()))
        .collect()
}

/// Each order decided exactly once.
fn assert_each_decided_once(decided: &[(i32, Decision)], orders: i64, first: i64) {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for (_, d) in decided {
        *seen.entry(d.order_id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "orders decided more than once: {twice:?}");
    let missing: Vec<i64> = (first..first + orders)
        .filter(|id| !seen.contains_key(id))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "orders never decided: {missing:?} (of {orders})");
}

/// The longest stretch without a decision on `partition`, within `[from, to]` (ms).
fn longest_gap(decided: &[(i32, Decision)], partition: i32, from: i64, to: i64) -> i64 {
    let mut times: Vec<i64> = decided
        .iter()
        .filter(|(p, _)| *p == partition)
        .map(|(_, d)| d.decided_at_ms)
        .filter(|t| (from..=to).contains(t))
        .collect();
    times.sort_unstable();
    times.push(to);
    let mut previous = from;
    let mut longest = 0;
    for t in times {
        longest = longest.max(t - previous);
        previous = t;
    }
    longest
}

/// Task owners by task id.
type Owners = BTreeMap<String, String>;

/// A scaling step: its name, when it began and settled (ms), and the owners before and after.
type Step = (&'static str, i64, i64, Owners, Owners);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn replica(scenario: &Scenario, dir: &Path, name: &str) -> Running {
    scenario.replica(&dir.join(name))
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_joining_and_leaving_under_load_never_pause_the_partitions_that_stay() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = KeptOnFailure::new("scaling");
    let scenario = rich_users(USERS).await;
    let a = replica(&scenario, dir.path(), "a");
    assert!(wait_until(WAIT, || assigned(&a) == 6.0), "a owns everything");
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicI64::new(0)));
    let load = {
        let (topic, stop, sent) = (scenario.def.inputs.orders.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || steady_orders(topic, 150, 1, stop, sent))
    };
    let mut steps: Vec<Step> = Vec::new();
    let before = settled(&[("a", &a)], Duration::from_secs(2));

    let from = now_ms();
    let mut b = replica(&scenario, dir.path(), "b");
    let mut c = replica(&scenario, dir.path(), "c");
    let after = settled(&[("a", &a), ("b", &b), ("c", &c)], Duration::from_secs(3));
    steps.push(("1 -> 3", from, now_ms(), before, after.clone()));

    let from = now_ms();
    assert!(c.sigterm().success(), "c stops gracefully");
    let after_c = settled(&[("a", &a), ("b", &b)], Duration::from_secs(2));
    steps.push(("3 -> 2", from, now_ms(), after, after_c.clone()));

    let from = now_ms();
    assert!(b.sigterm().success(), "b stops gracefully");
    let alone = settled(&[("a", &a)], Duration::from_secs(2));
    steps.push(("2 -> 1", from, now_ms(), after_c, alone));

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let orders = sent.load(Ordering::Relaxed);
    let decided = decisions(&scenario, orders as usize);
    assert_each_decided_once(&decided, orders, 1);
    // A commit that meets a rebalance rolls back once; it must not leave the producer to fail
    // its next transaction too (seen: OUT_OF_ORDER_SEQUENCE_NUMBER after the refusal's purge).
    for (name, replica) in [("a", &a), ("b", &b), ("c", &c)] {
        let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
        assert!(
            !log.contains("OUT_OF_ORDER_SEQUENCE_NUMBER") && !log.contains("out of order sequence number"),
            "replica {name} wrote with spent sequence numbers:\n{}",
            replica.log_tail()
        );
    }
    for (step, from, to, before, after) in &steps {
        let moved: BTreeSet<&String> = before.keys().filter(|t| before.get(*t) != after.get(*t)).collect();
        for task in &moved {
            let partition: i32 = task[2..].parse().unwrap();
            let gap = longest_gap(&decided, partition, *from, *to);
            eprintln!(
                "step {step}: task {task} moved {} -> {}, longest gap {gap} ms",
                before[*task], after[*task]
            );
        }
        assert!(!moved.is_empty() || *step == "1 -> 3", "step {step} moved no task");
        for task in before.keys().filter(|t| !moved.contains(t)) {
            let partition: i32 = task[2..].parse().unwrap();
            let gap = longest_gap(&decided, partition, *from, *to);
            eprintln!(
                "step {step}: task {task} stayed on {}, longest gap {gap} ms",
                after[task]
            );
            assert!(
                gap <= 1_000,
                "step {step}: task {task} stayed on {} but made no decision for {gap} ms",
                after[task]
            );
        }
    }
}

/// Creates `count` more users with uids above the rich ones, to give every store some weight.
fn ballast_users(topic: &str, count: i64) {
    let records: Vec<RawRecord> = (0..count)
        .map(|i| {
            let uid = 1_000_000 + i;
            let (key, value) = encode_command(&UserCommand::Create {
                command_id: uid,
                user: UserRow {
                    uid,
                    name: "B".into(),
                    lname: "Ballast".into(),
                    credit_limit: 10,
                    credit_balance: 10,
                },
            });
            (Some(partition_for(&key, 6) as i32), Some(key), Some(value))
        })
        .collect();
    produce(topic, &records);
}

/// When (ms) a `read_committed` reader first sees, on each of `partitions`, a decision
/// made after `after` (ms).
fn first_decision_seen(topic: &str, mut partitions: BTreeSet<i32>, after: i64) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("visibility"))
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, rdkafka::Offset::End).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    while !partitions.is_empty() && started.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
            let decided_after = serde_json::from_slice::<Decision>(m.payload().unwrap_or_default())
                .is_ok_and(|d| d.decided_at_ms > after);
            if decided_after {
                partitions.remove(&m.partition());
            }
        }
    }
    now_ms()
}

fn metric_sum(replica: &Running, name: &str) -> f64 {
    replica.metric(name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_replicas_partitions_decide_again_within_seconds_on_its_standbys() {
    fail_over("failover", Death::AnyMoment).await;
}

/// A replica that dies with a transaction open (its records delivered, its offsets sent)
/// holds every `read_committed` reader of its partitions, and the committed offsets its
/// tasks restart from, until the transaction is aborted: the survivors must fence it, or its
/// tasks' decisions stay hidden for the whole transaction timeout (10 s). The failover test
/// above kills at whatever moment the load has reached, usually but not always inside a
/// transaction; this one kills inside one by construction. With the fencing switched off
/// (both the departed-owner check and the fence of an owner whose transaction holds a
/// restore up), both fail: 11.8 s and 10.5 s without a decision. With the departed-owner
/// check alone switched off, both pass: the held-up restore fences the owner.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_transaction_is_fenced_by_the_standbys_that_take_its_tasks() {
    fail_over("failover-mid-transaction", Death::MidTransaction).await;
}

/// When the failover test kills its replica.
enum Death {
    /// Wherever the replica is, 3 s into the load.
    AnyMoment,
    /// Once its stream thread left a transaction open (an injected fault).
    MidTransaction,
}

/// Three replicas with warm standbys under steady load; one (c) dies by SIGKILL as `death`
/// says; its tasks must decide again, and become visible, within [`FAILOVER_BOUND_MS`].
async fn fail_over(name: &str, death: Death) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = KeptOnFailure::new(name);
    let scenario = rich_users(USERS).await;
    ballast_users(&scenario.def.inputs.user_commands, 60_000);
    let short = [("CREDITSTREAM__PROCESSOR__SESSION_TIMEOUT_MS", "3000")];
    let trigger = dir.path().join("hang-now");
    let hang = format!("hang_in_transaction_once={}", trigger.display());
    let a = scenario.replica_with(&dir.path().join("a"), &short);
    let b = scenario.replica_with(&dir.path().join("b"), &short);
    let mut c = match death {
        Death::AnyMoment => scenario.replica_with(&dir.path().join("c"), &short),
        Death::MidTransaction => scenario.replica_with(
            &dir.path().join("c"),
            &[short[0], ("CREDITSTREAM_TEST_FAULTS", hang.as_str())],
        ),
    };
    let all = [("a", &a), ("b", &b), ("c", &c)];
    let before = settled(&all, Duration::from_secs(2));
    // Every replica keeps two standbys (one copy of each of the others' tasks), caught up.
    assert!(
        wait_until(WAIT, || all.iter().all(|(_, r)| {
            metric_sum(r, "creditstream_processor_standby_tasks") == 2.0
                && metric_sum(r, "creditstream_processor_standby_lag_records") == 0.0
        })),
        "standbys placed and warm"
    );
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicI64::new(0)));
    let load = {
        let (topic, stop, sent) = (scenario.def.inputs.orders.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || steady_orders(topic, 150, 1, stop, sent))
    };
    std::thread::sleep(Duration::from_secs(3));
    if let Death::MidTransaction = death {
        std::fs::write(&trigger, b"").expect("the fault's trigger file");
        let hanging = "injected fault: the open transaction stays open";
        assert!(
            wait_until(WAIT, || std::fs::read_to_string(&c.log)
                .unwrap_or_default()
                .contains(hanging)),
            "c left a transaction open:\n{}",
            c.log_tail()
        );
    }
    let killed_at = now_ms();
    c.sigkill();
    // How soon a read_committed reader sees c's partitions decide again: the survivors
    // must also fence c, whose open transaction would hide their decisions until it timed out.
    let c_partitions: BTreeSet<i32> = before
        .iter()
        .filter(|(_, owner)| *owner == "c")
        .map(|(task, _)| task[2..].parse().unwrap())
        .collect();
    assert!(!c_partitions.is_empty(), "c owned tasks before it died: {before:?}");
    let visible = {
        let (topic, partitions) = (scenario.def.outputs.decisions.clone(), c_partitions.clone());
        std::thread::spawn(move || first_decision_seen(&topic, partitions, killed_at) - killed_at)
    };
    let after = settled(&[("a", &a), ("b", &b)], Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2));
    let load_stopped_at = now_ms();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let orders = sent.load(Ordering::Relaxed);
    let decided = decisions(&scenario, orders as usize);
    assert_each_decided_once(&decided, orders, 1);
    let restored: f64 = [&a, &b]
        .iter()
        .map(|r| metric_sum(r, "creditstream_processor_restored_records_total"))
        .sum();
    for (task, owner) in before.iter().filter(|(_, owner)| *owner == "c") {
        let partition: i32 = task[2..].parse().unwrap();
        let gap = longest_gap(&decided, partition, killed_at - 1_000, load_stopped_at);
        eprintln!("task {task} of c went to {}: no decision for {gap} ms", after[task]);
        assert!(
            gap <= FAILOVER_BOUND_MS,
            "task {task} (was on {owner}) made no decision for {gap} ms"
        );
    }
    let visible_after = visible.join().unwrap();
    eprintln!(
        "records restored by the survivors: {restored}; their decisions visible {visible_after} ms after the kill"
    );
    assert!(
        visible_after <= FAILOVER_BOUND_MS,
        "decisions of c's partitions were visible to read_committed readers only {visible_after} ms after the kill"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_joins_while_another_restores_and_every_task_ends_up_deciding() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = KeptOnFailure::new("join-during-restore");
    let scenario = rich_users(USERS).await;
    ballast_users(&scenario.def.inputs.user_commands, 30_000);
    // A first replica builds the changelog, then goes away with its state.
    let mut first = replica(&scenario, dir.path(), "first");
    assert!(
        wait_until(WAIT, || metric_sum(
            &first,
            "creditstream_processor_records_consumed_total"
        ) >= 30_600.0),
        "the users are processed"
    );
    assert!(first.sigterm().success());
    // a starts on an empty state dir and restores about 5 000 records a partition at 2 000
    // a second: its restore takes a quarter of a minute, and b joins in the middle of it.
    let slow = [("CREDITSTREAM_TEST_FAULTS", "restore_rate=2000")];
    let a = scenario.replica_with(&dir.path().join("a"), &slow);
    assert!(
        wait_until(WAIT, || metric_sum(&a, "creditstream_processor_restoring_tasks") >= 3.0),
        "a restores"
    );
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicI64::new(0)));
    let load = {
        let (topic, stop, sent) = (scenario.def.inputs.orders.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || steady_orders(topic, 100, 1, stop, sent))
    };
    let b = replica(&scenario, dir.path(), "b");
    // b takes half of the tasks, a's restores of them stop, and a goes on with the rest;
    // meanwhile a keeps its membership (it polls while it restores).
    let split = settled(&[("a", &a), ("b", &b)], Duration::from_secs(2));
    assert!(
        split.values().any(|o| o == "a") && split.values().any(|o| o == "b"),
        "{split:?}"
    );
    assert_eq!(metric_sum(&a, "creditstream_processor_restoring_tasks"), 0.0);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let orders = sent.load(Ordering::Relaxed);
    let decided = decisions(&scenario, orders as usize);
    assert_each_decided_once(&decided, orders, 1);
    assert_eq!(
        a.metric("creditstream_processor_rebalances_total{kind=\"lost\"}")
            .unwrap_or(0.0),
        0.0,
        "a never lost its membership while restoring"
    );
    assert_eq!(a.metric("creditstream_processor_state").unwrap_or(-1.0), 0.0, "a runs");
    assert_eq!(b.metric("creditstream_processor_state").unwrap_or(-1.0), 0.0, "b runs");
}

/// With the seed bridge on, a second replica takes half of the credit-check tasks. The
/// group used to assign the seed's `order` topic beside `orders`, and librdkafka's
/// cooperative-sticky assignor balances partition counts over all subscribed topics, not
/// per topic: the replica that joined second got the six seed-bridge tasks and no credit
/// check (seen on the three-broker cluster). Now only `orders` is assigned and seed-bridge
/// task 1_p runs beside credit-check task 0_p.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_seed_bridge_on_a_second_replica_takes_half_of_the_credit_checks() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = KeptOnFailure::new("seed-bridge-balance");
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("t"));
    def.partitions = 6;
    def.seed_bridge.enabled = true;
    admin::ensure_topics(&kafka(), &def).await.unwrap();
    let scenario = Scenario::with_definition(def);
    let bridge = [("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE", "true")];
    let a = scenario.replica_with(&dir.path().join("a"), &bridge);
    let alone = settled(&[("a", &a)], Duration::from_secs(1));
    assert_eq!(alone.len(), 6);
    let b = scenario.replica_with(&dir.path().join("b"), &bridge);
    let split = settled(&[("a", &a), ("b", &b)], Duration::from_secs(3));
    let of = |name: &str| split.values().filter(|o| *o == name).count();
    assert_eq!((of("a"), of("b")), (3, 3), "credit-check tasks: {split:?}");
    for (name, replica) in [("a", &a), ("b", &b)] {
        let checks: BTreeSet<String> = running(replica)
            .iter()
            .filter_map(|t| t.strip_prefix("0_").map(str::to_string))
            .collect();
        // The gauges of one replica are read apart from its other tasks'.
        assert!(
            wait_until(WAIT, || bridging(replica) == checks),
            "{name}'s seed-bridge tasks sit beside its credit checks: {:?} vs {checks:?}",
            bridging(replica)
        );
    }
}
