//! A credit-check scenario on the real broker: users and orders produced to a test's own
//! topics, the same input run through the test driver, replicas of `creditstream process`
//! started as child processes, and the check that the broker's decisions are the driver's.

use super::*;
use creditstream::topology::codec::{encode_command, encode_order};
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::driver::TestDriver;
use creditstream::topology::partitioner::partition_for;
use creditstream::topology::record::{Decision, Order, OrderStatus, UserChange, UserCommand, UserRow};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(120);

pub struct Scenario {
    pub def: TopologyDefinition,
    pub driver: TestDriver,
    next_order: i64,
    orders: usize,
}

impl Scenario {
    pub async fn new(users: i64) -> Self {
        let def = topology(6).await;
        let mut scenario = Scenario {
            driver: TestDriver::new(6),
            def,
            next_order: 0,
            orders: 0,
        };
        let commands: Vec<UserCommand> = (1..=users)
            .map(|uid| UserCommand::Create {
                command_id: uid,
                user: UserRow {
                    uid,
                    name: format!("N{uid}"),
                    lname: "L".into(),
                    credit_limit: 1000,
                    credit_balance: 300,
                },
            })
            .collect();
        let records: Vec<_> = commands
            .iter()
            .map(|c| {
                scenario.driver.pipe_command(c).unwrap();
                let (k, v) = encode_command(c);
                (Some(partition_for(&k, 6) as i32), Some(k), Some(v))
            })
            .collect();
        produce(&scenario.def.inputs.user_commands, &records);
        scenario
    }

    /// A scenario on topics that exist already (`def`'s), with no users.
    pub fn with_definition(def: TopologyDefinition) -> Self {
        Scenario {
            driver: TestDriver::new(def.partitions),
            def,
            next_order: 0,
            orders: 0,
        }
    }

    /// Produces `count` orders spread over the users, with amounts that exhaust some balances.
    pub fn orders(&mut self, users: i64, count: usize) {
        let mut records = Vec::new();
        for _ in 0..count {
            self.next_order += 1;
            let uid = self.next_order % users + 1;
            let order = Order {
                order_id: self.next_order,
                uid,
                amount: (self.next_order * 37) % 90 + 1,
                timestamp_ms: 0,
            };
            self.driver.pipe_order(&order).unwrap();
            let (k, v) = encode_order(&order);
            records.push((Some(partition_for(&k, 6) as i32), Some(k), Some(v)));
        }
        self.orders += count;
        produce(&self.def.inputs.orders, &records);
    }

    /// Produces one order for each of `uids`.
    pub fn orders_for(&mut self, uids: impl Iterator<Item = i64>) {
        let mut records = Vec::new();
        for uid in uids {
            self.next_order += 1;
            let order = Order {
                order_id: self.next_order,
                uid,
                amount: 10,
                timestamp_ms: 0,
            };
            self.driver.pipe_order(&order).unwrap();
            let (k, v) = encode_order(&order);
            records.push((Some(partition_for(&k, 6) as i32), Some(k), Some(v)));
            self.orders += 1;
        }
        produce(&self.def.inputs.orders, &records);
    }

    pub fn env(&self, dir: &Path, metrics_port: u16) -> Vec<(String, String)> {
        let topology = topology_file(&self.def, dir);
        vec![
            ("CREDITSTREAM__TOPOLOGY_FILE".into(), topology.display().to_string()),
            ("CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS".into(), bootstrap()),
            (
                "CREDITSTREAM__PROCESSOR__STATE_DIR".into(),
                dir.join("state").display().to_string(),
            ),
            (
                "CREDITSTREAM__PROCESSOR__METRICS_LISTEN".into(),
                format!("127.0.0.1:{metrics_port}"),
            ),
            ("CREDITSTREAM__PROCESSOR__RUN_SEED_BRIDGE".into(), "false".into()),
        ]
    }

    pub fn replica(&self, dir: &Path) -> Running {
        self.replica_with(dir, &[])
    }

    /// A replica with more environment (configuration overrides, injected faults).
    pub fn replica_with(&self, dir: &Path, extra: &[(&str, &str)]) -> Running {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let mut env = self.env(dir, port);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        spawn("process", &env, port, &dir.join("replica.log"))
    }

    pub fn decisions(&self, expected: usize) -> Vec<Decision> {
        read_until(&self.def.outputs.decisions, 6, WAIT, |r| r.len() >= expected)
            .into_iter()
            .map(|r| serde_json::from_slice(&r.value.unwrap()).unwrap())
            .collect()
    }

    /// Exactly one decision per order, each the one the driver took, balances consistent.
    pub fn check(&self, decisions: &[Decision]) {
        let mut by_order: HashMap<i64, &Decision> = HashMap::new();
        for d in decisions {
            assert!(
                by_order.insert(d.order_id, d).is_none(),
                "order {} decided twice",
                d.order_id
            );
        }
        assert_eq!(by_order.len(), self.orders, "every order decided once");
        for expected in self.driver.decisions() {
            let actual = by_order[&expected.order_id];
            assert_eq!(
                (actual.status, actual.balance_after),
                (expected.status, expected.balance_after),
                "order {}",
                expected.order_id
            );
        }
        // Balances on the user-changes topic: initial minus the Completed amounts, never negative.
        let changes = read_until(&self.def.outputs.user_changes, 6, WAIT, |_| true);
        let mut latest: BTreeMap<i64, (u64, i64)> = BTreeMap::new();
        for change in changes {
            if let Ok(UserChange::Upserted { version, user, .. }) = serde_json::from_slice(&change.value.unwrap()) {
                assert!(user.credit_balance >= 0);
                let entry = latest.entry(user.uid).or_insert((0, 0));
                if version > entry.0 {
                    *entry = (version, user.credit_balance);
                }
            }
        }
        let mut completed: BTreeMap<i64, i64> = BTreeMap::new();
        for d in decisions.iter().filter(|d| d.status == OrderStatus::Completed) {
            *completed.entry(d.uid).or_default() += d.amount;
        }
        for (uid, (_, balance)) in latest {
            assert_eq!(balance, 300 - completed.get(&uid).copied().unwrap_or(0), "uid {uid}");
        }
    }
}

pub fn assigned(replica: &Running) -> f64 {
    replica
        .metric("creditstream_processor_assigned_partitions")
        .unwrap_or(0.0)
}
