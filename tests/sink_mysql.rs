//! The MySQL sink on the real broker and MariaDB: the tables equal what the topics say,
//! a replay from offset 0 changes nothing, and a sink killed with SIGKILL mid-batch and
//! restarted leaves no row missing and none duplicated.

mod common;

use common::*;
use creditstream::app;
use creditstream::ingest::mysql::MySqlReader;
use creditstream::ingest::ports::{CommandRecord, CommandUser, Read};
use creditstream::shutdown;
use creditstream::topology::codec::{encode_order, to_json};
use creditstream::topology::credit_check::CreditOutput;
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::driver::TestDriver;
use creditstream::topology::partitioner::{partition_for, uid_key};
use creditstream::topology::record::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;

/// Topic contents as the processor would have written them, and the rows they mean.
struct Fixture {
    driver: TestDriver,
    orders: usize,
}

/// Runs `users` users and `orders` orders (plus updates and deletes) through the driver
/// and puts the orders and the driver's outputs on the test's topics.
fn publish_fixture(def: &TopologyDefinition, users: i64, orders: i64, order_offset: i64) -> Fixture {
    let mut driver = TestDriver::new(PARTITIONS);
    let mut order_records = Vec::new();
    for uid in 1..=users {
        driver
            .pipe_command(&UserCommand::Create {
                command_id: uid,
                user: UserRow {
                    uid,
                    name: format!("N{uid}"),
                    lname: "Sharma".into(),
                    credit_limit: 500,
                    credit_balance: 200,
                },
            })
            .unwrap();
    }
    for i in 1..=orders {
        let order = Order {
            order_id: order_offset + i,
            uid: i % users + 1,
            amount: (i * 31) % 70 + 1,
            timestamp_ms: 1_700_000_000_000 + i,
        };
        driver.pipe_order(&order).unwrap();
        let (k, v) = encode_order(&order);
        order_records.push((Some(partition_for(&k, PARTITIONS) as i32), Some(k), Some(v)));
    }
    driver
        .pipe_command(&UserCommand::Update {
            command_id: 1,
            target: Target::Uid(1),
            set: vec![Predicate {
                column: Column::Name,
                value: Value::Text("Renamed".into()),
            }],
        })
        .unwrap();
    driver
        .pipe_command(&UserCommand::Delete {
            command_id: 2,
            target: Target::Uid(2),
        })
        .unwrap();
    let mut decisions = Vec::new();
    let mut changes = Vec::new();
    for output in driver.outputs() {
        match output {
            CreditOutput::Decision(d) => {
                let k = uid_key(d.uid);
                decisions.push((Some(partition_for(&k, PARTITIONS) as i32), Some(k), Some(to_json(d))));
            }
            CreditOutput::UserChange(c) => {
                let k = uid_key(c.uid().unwrap_or_default());
                changes.push((Some(partition_for(&k, PARTITIONS) as i32), Some(k), Some(to_json(c))));
            }
            CreditOutput::DeadLetter(_) => {}
        }
    }
    produce(&def.inputs.orders, &order_records);
    produce(&def.outputs.decisions, &decisions);
    produce(&def.outputs.user_changes, &changes);
    Fixture {
        driver,
        orders: orders as usize,
    }
}

impl Fixture {
    fn expected_users(&self, users: i64) -> UserRows {
        (1..=users)
            .filter_map(|uid| self.driver.user_state(uid).and_then(|s| s.user))
            .map(|u| (u.uid, u.name, u.lname, u.credit_limit, u.credit_balance))
            .collect()
    }

    fn check_orders(&self, orders: &OrderRows) {
        assert_eq!(
            orders.len(),
            self.orders * 2,
            "one Initialised and one final row per order"
        );
        let decisions = self.driver.decisions();
        for d in decisions {
            let rows: Vec<_> = orders.iter().filter(|r| r.1 == d.order_id).collect();
            assert_eq!(rows.len(), 2, "order {}", d.order_id);
            assert!(rows
                .iter()
                .any(|r| r.3 == "Initialised" && r.4 == d.amount && r.2 == d.uid));
            assert!(rows.iter().any(|r| r.3 == d.status.as_str() && r.5 == d.note));
        }
    }
}

async fn run_sink_until(
    config: creditstream::config::Config,
    def: TopologyDefinition,
    done: impl std::future::Future<Output = ()>,
) {
    let (trigger, _) = shutdown::channel();
    let stopper = trigger.clone();
    let sink = tokio::spawn(async move { app::sink(&config, def, &trigger, false).await });
    done.await;
    stopper.trigger();
    sink.await.expect("sink task").expect("sink ran without error");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_equal_the_topics_and_a_replay_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let def = topology(PARTITIONS).await;
    let mysql = database().await;
    let fixture = publish_fixture(&def, 25, 300, 0);
    let expected_users = fixture.expected_users(25);
    let config = config(&def, Some(&mysql), dir.path(), "");
    let wanted = (expected_users.clone(), fixture.orders * 2);
    let first = {
        let mysql = mysql.clone();
        let mut snap = None;
        run_sink_until(config.clone(), def.clone(), async {
            snap = Some(snapshot_until(&mysql, WAIT, |(u, o)| *u == wanted.0 && o.len() == wanted.1).await);
        })
        .await;
        snap.unwrap()
    };
    assert_eq!(first.0, expected_users, "User equals the user-changes topic");
    assert!(!first.0.iter().any(|u| u.0 == 2), "the deleted user is gone");
    assert_eq!(first.0.iter().find(|u| u.0 == 1).map(|u| u.1.as_str()), Some("Renamed"));
    fixture.check_orders(&first.1);
    // Each command's outcome, as GET /v1/commands reads it.
    let reader = MySqlReader::new(mysql_async::Pool::new(mysql.url.as_str()));
    let created = CommandRecord {
        partitions_done: 1,
        partitions: Some(1),
        users: vec![CommandUser {
            uid: 5,
            version: Some(1),
            deleted: false,
            reason: None,
        }],
        truncated: false,
    };
    assert!(
        eventually(WAIT, || async { reader.command(5).await.ok() == Some(created.clone()) }).await,
        "the create's outcome: {:?}",
        reader.command(5).await
    );

    // A second sink in a new group replays every topic from offset 0 into the same tables.
    let mut replay = config.clone();
    replay.sink.group_id = unique("replay");
    let group = replay.sink.group_id.clone();
    // The sink reads the decisions (both rows of an order come from its decision) and the
    // user changes, never the orders topic.
    let topics = [def.outputs.decisions.clone(), def.outputs.user_changes.clone()];
    run_sink_until(replay, def.clone(), async {
        assert!(
            wait_until(WAIT, || group_caught_up(&group, &topics)),
            "the replay reached the end of every topic"
        );
    })
    .await;
    let second = snapshot(&mysql).await;
    assert_eq!(
        second, first,
        "replaying the topics changed nothing (not even event ids)"
    );
    assert_eq!(reader.command(5).await.ok(), Some(created), "nor the outcomes");
}

/// Whether `group` committed the log-end offset of every partition of `topics`.
fn group_caught_up(group: &str, topics: &[String]) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in topics {
        for p in 0..PARTITIONS as i32 {
            tpl.add_partition(topic, p);
        }
    }
    let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(5)) else {
        return false;
    };
    committed.elements().iter().all(|e| {
        let Ok((_, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5)) else {
            return false;
        };
        match e.offset() {
            rdkafka::Offset::Offset(o) => o >= high,
            _ => high == 0,
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_killed_mid_batch_and_restarted_leaves_nothing_missing_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let def = topology(PARTITIONS).await;
    let mysql = database().await;
    let fixture = publish_fixture(&def, 50, 3000, 10_000);
    let expected_users = fixture.expected_users(50);
    let topology_path = topology_file(&def, dir.path());
    let port = free_port();
    let env = vec![
        (
            "CREDITSTREAM__TOPOLOGY_FILE".to_string(),
            topology_path.display().to_string(),
        ),
        ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS".to_string(), bootstrap()),
        ("CREDITSTREAM__MYSQL__URL".to_string(), mysql.url.clone()),
        ("CREDITSTREAM__SINK__GROUP_ID".to_string(), unique("sink")),
        ("CREDITSTREAM__SINK__BATCH_SIZE".to_string(), "100".to_string()),
        ("CREDITSTREAM__SINK__LINGER_MS".to_string(), "1".to_string()),
        (
            "CREDITSTREAM__SINK__METRICS_LISTEN".to_string(),
            format!("127.0.0.1:{port}"),
        ),
    ];
    // Hold the sink in the middle of its work: an open transaction of the test's own has
    // inserted one of the rows the sink will write, so the batch holding that row waits for
    // its lock. Then kill the sink there.
    use mysql_async::prelude::Queryable;
    let pool = mysql_async::Pool::new(mysql.url.as_str());
    let mut blocker = pool.get_conn().await.expect("connect");
    creditstream::sink::schema::apply(&pool).await.expect("schema");
    blocker.query_drop("START TRANSACTION").await.unwrap();
    blocker
        .query_drop(
            "INSERT INTO `Order_details` (orderid, uid, order_status, event_timestamp, order_amount, order_notes) \
             VALUES (12000, 1, 'Initialised', 'held', 1, 'held by the test')",
        )
        .await
        .unwrap();
    let mut sink = spawn("sink", &env, port, &dir.path().join("sink-1.log"));
    let mut watcher = pool.get_conn().await.expect("connect");
    let mut waiting = false;
    for _ in 0..600 {
        let waits: Option<i64> = watcher
            .query_first("SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'")
            .await
            .unwrap();
        if waits.unwrap_or(0) > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(waiting, "the sink reached the held row:\n{}", sink.log_tail());
    sink.sigkill();
    blocker.query_drop("ROLLBACK").await.unwrap();
    drop((blocker, watcher));
    let _ = pool.disconnect().await;
    let partial = snapshot(&mysql).await;
    assert!(
        partial.1.len() < fixture.orders * 2,
        "killed before it finished ({} rows)",
        partial.1.len()
    );
    let _sink = spawn("sink", &env, port, &dir.path().join("sink-2.log"));
    let done = snapshot_until(&mysql, WAIT, |(u, o)| {
        *u == expected_users && o.len() >= fixture.orders * 2
    })
    .await;
    assert_eq!(done.0, expected_users);
    fixture.check_orders(&done.1);
}
