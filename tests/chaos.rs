//! The fault runner: the local stack with three processor replicas (each running the seed
//! bridge too), the sink and the ingest (each its own process) under a bounded load
//! through the HTTP API and the seed's `order` topic, while faults are injected on a
//! schedule: SIGKILL of a replica (and again while it restores), a replica whose record
//! fails mid-transaction (it stops; it is restarted), a graceful scale 3 → 1 → 3, SIGKILL
//! of the sink mid-batch, MariaDB stopped, SIGKILL and restart of the Kafka broker, the
//! broker frozen (SIGSTOP) past the transaction timeout, and a replica frozen past its
//! session timeout. Bad records go straight onto the orders topic all along (garbage, a
//! negative amount, a key that is not the uid, the wrong partition, about 1 MB of bytes).
//! Each round also updates 12 000 other users by condition, which every partition applies
//! in several bounded parts. Then the load stops, the system goes quiet, and the invariant
//! checker must find nothing: every good order decided once, every bad one dead-lettered
//! once and nowhere in MySQL, every seed order decided once, and every user of the
//! condition updates updated exactly once by each.
//!
//! The short run is part of scripts/test.sh; `scripts/chaos.sh --long` (environment
//! CREDITSTREAM_CHAOS_LONG=1) repeats the schedule and holds each outage longer.
//! Its own test binary: it takes the shared broker and database away.

mod common;

use common::scenario::assigned;
use common::*;
use creditstream::topology::codec::encode_command;
use creditstream::topology::partitioner::partition_for;
use creditstream::topology::record::{Column, Predicate, Target, UserCommand, Value};
use creditstream::topology::seed::derived_id;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USERS: i64 = 60;
/// Users touched only by the updates by condition: about 2 000 a partition, more than one
/// part (`CONDITION_CHUNK`, 1 000) each.
const BULK_USERS: i64 = 12_000;
const BULK_FIRST_UID: i64 = 100_001;

struct Stack {
    dir: PathBuf,
    topology: PathBuf,
    mysql_url: String,
    sink_group: String,
}

impl Stack {
    fn base_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "CREDITSTREAM__TOPOLOGY_FILE".into(),
                self.topology.display().to_string(),
            ),
            ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS".into(), bootstrap()),
            ("CREDITSTREAM__MYSQL__URL".into(), self.mysql_url.clone()),
            ("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE".into(), "true".into()),
            ("CREDITSTREAM__SINK__GROUP_ID".into(), self.sink_group.clone()),
        ]
    }

    fn processor(&self, name: &str) -> Running {
        self.processor_with(name, &[])
    }

    fn processor_with(&self, name: &str, extra: &[(&str, &str)]) -> Running {
        let port = free_port();
        let mut env = self.base_env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env.push((
            "CREDITSTREAM__PROCESSOR__STATE_DIR".into(),
            self.dir.join(name).display().to_string(),
        ));
        env.push((
            "CREDITSTREAM__PROCESSOR__METRICS_LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ));
        spawn("process", &env, port, &self.log(name))
    }

    fn sink(&self) -> Running {
        let port = free_port();
        let mut env = self.base_env();
        env.push(("CREDITSTREAM__SINK__METRICS_LISTEN".into(), format!("127.0.0.1:{port}")));
        env.push(("CREDITSTREAM__SINK__BATCH_SIZE".into(), "200".into()));
        env.push(("CREDITSTREAM__SINK__RETRY_MAX_MS".into(), "1000".into()));
        spawn("sink", &env, port, &self.log("sink"))
    }

    fn ingest(&self, port: u16) -> Running {
        let mut env = self.base_env();
        env.push(("CREDITSTREAM__INGEST__LISTEN".into(), format!("127.0.0.1:{port}")));
        env.push(("CREDITSTREAM__INGEST__PRODUCE_TIMEOUT_MS".into(), "3000".into()));
        spawn("ingest", &env, port, &self.log("ingest"))
    }

    fn log(&self, name: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        self.dir
            .join(format!("{name}-{}.log", N.fetch_add(1, Ordering::Relaxed)))
    }
}

/// What the load generator saw.
#[derive(Default)]
struct LoadFigures {
    sent: AtomicU64,
    unavailable: AtomicU64,
    failed: AtomicU64,
    acknowledged: Mutex<Vec<i64>>,
}

fn load(port: u16, stop: Arc<AtomicBool>, figures: Arc<LoadFigures>, worker: u64) {
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let uid = ((n * 7 + worker * 13) % USERS as u64) as i64 + 1;
        let amount = (n * 11 + worker) % 40 + 1;
        let body = format!(r#"{{"uid": {uid}, "amount": {amount}, "idempotency_key": "w{worker}-{n}"}}"#);
        figures.sent.fetch_add(1, Ordering::Relaxed);
        match http(port, "POST", "/v1/orders", &body) {
            Some((202, text)) => {
                if let Some(id) = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["order_id"].as_i64())
                {
                    figures.acknowledged.lock().unwrap().push(id);
                }
            }
            Some((503, _)) => {
                figures.unavailable.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {
                figures.failed.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::thread::sleep(Duration::from_millis(8));
    }
}

/// Puts bad records straight onto the orders topic, one every 1.5 s, cycling through the
/// kinds the processor must reject; the first is about 1 MB. Like the seed orders it never
/// waits on the broker, so a frozen or killed broker does not stop it; what it queued is
/// delivered before it returns. Returns how many it queued.
fn poison(topic: String, partitions: u32, stop: Arc<AtomicBool>) -> u64 {
    use rdkafka::producer::{BaseRecord, Producer};
    let big = producer_with(&[("message.max.bytes", "2000000"), ("message.timeout.ms", "0")]);
    let mut written = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let uid = (written as i64 % USERS) + 1;
        let key = uid.to_string().into_bytes();
        let p = partition_for(&key, partitions) as i32;
        let order = |amount: i64| {
            format!(
                r#"{{"order_id":{},"uid":{uid},"amount":{amount},"timestamp_ms":0}}"#,
                written + 1
            )
            .into_bytes()
        };
        let (partition, key, value): RawRecord = match written % 5 {
            0 if written == 0 => (Some(p), Some(key), Some(vec![b'x'; 1_040_000])),
            0 => (Some(p), Some(key), Some(vec![0xde, 0xad])),
            1 => (Some(p), Some(key), Some(order(-5))),
            2 => (Some(p), Some(b"999999".to_vec()), Some(order(5))),
            3 => (Some((p + 1) % partitions as i32), Some(key), Some(order(5))),
            _ => (Some(p), None, Some(order(5))),
        };
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = &key {
            record = record.key(&key[..]);
        }
        if let Some(value) = &value {
            record = record.payload(&value[..]);
        }
        if big.send(record).is_ok() {
            written += 1;
        }
        big.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1500));
    }
    big.flush(Duration::from_secs(180))
        .expect("the bad records reach the broker");
    written
}

/// Puts seed orders (unkeyed JSON, as the seed's kafka-python producer sent them) on the
/// seed's `order` topic, one every 100 ms, each partition in turn, without waiting for each
/// acknowledgement (a frozen broker must not stop it). Returns how many it sent; which of
/// them the broker has is read back from the topic afterwards.
fn seed_orders(topic: String, partitions: u32, stop: Arc<AtomicBool>) -> u64 {
    use rdkafka::producer::{BaseRecord, Producer};
    let producer = producer();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = sent as i64;
        let value = format!(r#"{{"uid": {}, "amount": {}}}"#, n * 5 % USERS + 1, n % 30 + 1);
        let partition = (n % i64::from(partitions)) as i32;
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic).partition(partition).payload(value.as_bytes());
        if producer.send(record).is_ok() {
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = producer.flush(Duration::from_secs(120));
    sent
}

/// The order ids the seed bridge gives the seed orders the broker has: they derive from
/// each record's coordinates.
fn seed_order_ids(topic: &str) -> Vec<i64> {
    let records = creditstream::runtime::topic_reader::read_to_end(&kafka(), topic, Duration::from_secs(60))
        .expect("read the seed's order topic");
    records
        .iter()
        .map(|r| derived_id(topic, r.partition, r.offset))
        .collect()
}

/// Creates the users the updates by condition touch, straight on the user-commands topic.
fn create_bulk_users(topic: &str, partitions: u32) {
    let records: Vec<RawRecord> = (BULK_FIRST_UID..BULK_FIRST_UID + BULK_USERS)
        .map(|uid| create_record(uid, "R0", "Bulk", 10, partitions))
        .collect();
    produce(topic, &records);
}

/// Renames every bulk user to `R<n>`: one command by condition, on every partition.
fn update_bulk_users(topic: &str, partitions: u32, n: i64) {
    let (key, value) = encode_command(&UserCommand::Update {
        command_id: 9_000_000 + n,
        target: Target::Condition(vec![Predicate {
            column: Column::Lname,
            value: Value::Text("Bulk".into()),
        }]),
        set: vec![Predicate {
            column: Column::Name,
            value: Value::Text(format!("R{n}")),
        }],
    });
    let broadcast: Vec<RawRecord> = (0..partitions as i32)
        .map(|p| (Some(p), Some(key.clone()), Some(value.clone())))
        .collect();
    produce(topic, &broadcast);
}

/// `(version, name, users)` of the bulk users in MySQL, one row per distinct pair.
async fn bulk_rows(mysql: &creditstream::config::MysqlConfig) -> Vec<(u64, String, i64)> {
    use mysql_async::prelude::Queryable;
    let pool = mysql_async::Pool::new(mysql.url.as_str());
    let Ok(mut conn) = pool.get_conn().await else {
        return Vec::new();
    };
    let rows = conn
        .query("SELECT version, name, COUNT(*) FROM `User` WHERE lname = 'Bulk' GROUP BY version, name")
        .await
        .unwrap_or_default();
    drop(conn);
    let _ = pool.disconnect().await;
    rows
}

fn owned_by(replicas: &[&Running]) -> f64 {
    replicas.iter().map(|r| assigned(r)).sum()
}

fn step(started: Instant, what: &str) {
    eprintln!("[chaos {:>6.1}s] {what}", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_under_load_break_no_invariant() {
    let long = std::env::var("CREDITSTREAM_CHAOS_LONG").is_ok_and(|v| v == "1");
    let rounds = if long { 3 } else { 1 };
    let outage = Duration::from_secs(if long { 10 } else { 4 });
    let tmp = KeptOnFailure::new("chaos");
    let mut def = topology(6).await;
    def.seed_bridge.enabled = true;
    creditstream::runtime::admin::ensure_topics(&kafka(), &def)
        .await
        .unwrap();
    let mysql = database().await;
    let system = Stack {
        dir: tmp.path().to_path_buf(),
        topology: topology_file(&def, tmp.path()),
        mysql_url: mysql.url.clone(),
        sink_group: unique("sink"),
    };
    let started = Instant::now();
    let mut a = system.processor("a");
    let mut b = system.processor("b");
    let mut c = system.processor("c");
    let mut sink = system.sink();
    let ingest_port = free_port();
    let _ingest = system.ingest(ingest_port);
    assert!(
        wait_until(Duration::from_secs(60), || http_get(ingest_port, "/readyz").is_some()),
        "ingest ready"
    );
    assert!(
        wait_until(Duration::from_secs(60), || owned_by(&[&a, &b, &c]) == 6.0),
        "replicas own the partitions"
    );
    for uid in 1..=USERS {
        let body = format!(
            r#"{{"uid": {uid}, "name": "N{uid}", "lname": "L", "credit_limit": 5000, "credit_balance": 2000}}"#
        );
        assert_eq!(http(ingest_port, "POST", "/v1/users", &body).map(|r| r.0), Some(202));
    }
    create_bulk_users(&def.inputs.user_commands, 6);
    let mut bulk_updates = 0;

    let stop = Arc::new(AtomicBool::new(false));
    let figures = Arc::new(LoadFigures::default());
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, figures) = (stop.clone(), figures.clone());
            std::thread::spawn(move || load(ingest_port, stop, figures, w))
        })
        .collect();
    let poisoner = {
        let (topic, stop) = (def.inputs.orders.clone(), stop.clone());
        std::thread::spawn(move || poison(topic, 6, stop))
    };
    let seeder = {
        let (topic, stop) = (def.seed_bridge.orders.clone(), stop.clone());
        std::thread::spawn(move || seed_orders(topic, 6, stop))
    };
    let mut faults = 0;
    let pause = |d: u64| std::thread::sleep(Duration::from_secs(d));
    // The broker is frozen past the transaction timeout (10 s) and the commit path's 30 s
    // call timeout, so a commit's answer is lost while the broker may apply it.
    let freeze = Duration::from_secs(35);
    // How long replicas may take to own every partition again. After the broker was frozen
    // a takeover can wait on blocking calls of a replica's rollback for over a minute (issue
    // 13); the invariants, not this wait, are what this run checks.
    let takeover = Duration::from_secs(if long { 180 } else { 60 });

    for round in 0..rounds {
        step(started, &format!("round {round}: SIGKILL replica a"));
        pause(3);
        a.sigkill();
        faults += 1;
        assert!(wait_until(takeover, || owned_by(&[&b, &c]) == 6.0), "b and c take over");
        // Back with a record that fails mid-transaction once it owns partitions: it stops
        // on the fatal error, nothing of that transaction is committed, and it is restarted.
        a = system.processor_with("a", &[("CREDITSTREAM_TEST_FAULTS", "process_error=50")]);
        step(started, "replica a back, to fail on its 50th record");
        assert!(
            wait_until(takeover * 2, || !matches!(a.child.try_wait(), Ok(None))),
            "a stops on its failed record:\n{}",
            a.log_tail()
        );
        faults += 1;
        let log = std::fs::read_to_string(&a.log).unwrap_or_default();
        assert!(log.contains("injected by CREDITSTREAM_TEST_FAULTS"), "{}", a.log_tail());
        a = system.processor("a");
        if long {
            // Killed again while it restores its tasks.
            assert!(wait_until(Duration::from_secs(30), || assigned(&a) > 0.0
                || a.metric("creditstream_processor_rebalances_total").is_some()));
            step(started, "SIGKILL replica a during restore");
            a.sigkill();
            faults += 1;
            a = system.processor("a");
        }
        assert!(wait_until(takeover, || owned_by(&[&a, &b, &c]) == 6.0));

        step(started, "graceful scale 3 -> 1");
        pause(2);
        assert!(b.sigterm().success(), "graceful stop of b:\n{}", b.log_tail());
        assert!(c.sigterm().success(), "graceful stop of c:\n{}", c.log_tail());
        faults += 1;
        assert!(wait_until(takeover, || assigned(&a) == 6.0), "a owns everything");
        pause(2);
        step(started, "scale 1 -> 3");
        b = system.processor("b");
        c = system.processor("c");
        assert!(wait_until(takeover, || owned_by(&[&a, &b, &c]) == 6.0 && assigned(&b) > 0.0));

        bulk_updates += 1;
        step(
            started,
            &format!("update by condition R{bulk_updates} of {BULK_USERS} users"),
        );
        update_bulk_users(&def.inputs.user_commands, 6, bulk_updates);

        step(started, "SIGKILL sink mid-batch");
        pause(2);
        sink.sigkill();
        faults += 1;
        pause(1);
        sink = system.sink();

        step(started, "MariaDB stopped");
        pause(2);
        stack(&["stop", "mariadb"]);
        faults += 1;
        std::thread::sleep(outage);
        stack(&["start", "mariadb"]);
        step(started, "MariaDB back");

        pause(2);
        step(started, "SIGKILL Kafka broker");
        stack(&["kill", "kafka"]);
        faults += 1;
        std::thread::sleep(outage / 2);
        stack(&["start", "kafka"]);
        step(started, "Kafka back");
        pause(5);

        if long {
            // The freezes run in the long run only: after a broker outage a takeover or the
            // sink's catch-up can take minutes on this machine (see docs/faults.md).
            step(started, "Kafka broker frozen (SIGSTOP)");
            stack(&["freeze", "kafka"]);
            faults += 1;
            std::thread::sleep(freeze);
            stack(&["thaw", "kafka"]);
            step(started, "Kafka thawed");
            pause(5);

            bulk_updates += 1;
            step(
                started,
                &format!("update by condition R{bulk_updates}, then a frozen replica"),
            );
            update_bulk_users(&def.inputs.user_commands, 6, bulk_updates);

            step(started, "replica b frozen past its session timeout");
            b.freeze();
            faults += 1;
            // Frozen past its session timeout (15 s as shipped) for sure, then until the
            // others own its partitions. How fast they take over is not the invariant here
            // (after a broker outage their rebalance can wait on slow recoveries); what they
            // decide is.
            std::thread::sleep(Duration::from_secs(16));
            if !wait_until(Duration::from_secs(45), || owned_by(&[&a, &c]) == 6.0) {
                step(started, "a and c had not taken over all partitions yet");
            }
            b.thaw();
            step(started, "replica b thawed");
            pause(3);
        }
    }

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let bad_records = poisoner.join().expect("the bad-record writer ran to the end");
    let seed_sent = seeder.join().expect("the seed-order writer ran to the end");
    let seeded = seed_order_ids(&def.seed_bridge.orders);
    let last_fault = Instant::now();
    let mut acknowledged = figures.acknowledged.lock().unwrap().clone();
    step(started, &format!("load stopped: {} acknowledged", acknowledged.len()));
    // The seed orders are acknowledged by the broker: they must be decided like the rest.
    acknowledged.extend(&seeded);

    // Quiescence: the invariant checker finds nothing once everything has caught up.
    let config = config(&def, Some(&mysql), tmp.path(), "");
    let mut report = None;
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        match creditstream::verify::verify(&config, &def, Some(acknowledged.clone())).await {
            Ok(r) if r.violations.is_empty() => {
                report = Some(r);
                break;
            }
            Ok(r) => report = Some(r),
            Err(e) => eprintln!("verify: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let report = report.expect("the checker ran");
    let quiet_after = last_fault.elapsed();
    // Every bulk user was created (version 1) and then updated once by each command by
    // condition: a part lost or applied twice shows as another version.
    let expected_bulk = vec![(1 + bulk_updates as u64, format!("R{bulk_updates}"), BULK_USERS)];
    let mut bulk = bulk_rows(&mysql).await;
    let bulk_deadline = Instant::now() + Duration::from_secs(120);
    while bulk != expected_bulk && Instant::now() < bulk_deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bulk = bulk_rows(&mysql).await;
    }
    eprintln!(
        "chaos: orders sent {} acknowledged {} (503 {}, failed {}), seed orders {} (of {seed_sent} sent), decided {} (of them answered 503: {}), bad records {bad_records}, updates by condition {bulk_updates} of {BULK_USERS} users, faults {}, violations {}, quiescence {:.1}s",
        figures.sent.load(Ordering::Relaxed),
        acknowledged.len() - seeded.len(),
        figures.unavailable.load(Ordering::Relaxed),
        figures.failed.load(Ordering::Relaxed),
        seeded.len(),
        report.decisions,
        report.decided_unacknowledged,
        faults,
        report.violations.len(),
        quiet_after.as_secs_f64()
    );
    for v in report.violations.iter().take(20) {
        eprintln!("VIOLATION [{}] {}", v.invariant, v.detail);
    }
    if !report.violations.is_empty() {
        for (name, r) in [("a", &a), ("b", &b), ("c", &c), ("sink", &sink)] {
            eprintln!("--- {name} ---\n{}", r.log_tail());
        }
    }
    assert!(
        report.violations.is_empty(),
        "{} invariant violations",
        report.violations.len()
    );
    assert!(acknowledged.len() > 100, "the load got through");
    assert_eq!(
        bulk, expected_bulk,
        "every bulk user updated exactly once by each update"
    );
    assert_eq!(report.undecodable, 0);
}
