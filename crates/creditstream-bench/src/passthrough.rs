//! The workload-matched pass-through: creditstream's runtime (its stream thread, commits,
//! transactions and changelog) running a processor with no credit logic that writes, per
//! input record, precomputed records of the same topics, count and sizes as the credit
//! check: per order a decision, a user change for the Completed share and two changelog
//! records (the user's state and the order's de-dup entry); per user create a user change
//! and its command outcome, and the user's state. What it reaches is the limit of the runtime, the broker and the
//! client on this machine for the topology's traffic.
//!
//! Invariant: it writes as many records of each topic as the credit check does for the same
//! input: exactly `completed` of the `orders` order ids 1..=orders get a user change and a
//! user-state record, spread evenly. Its store writes go to two fixed keys (of the real
//! keys' length), so RocksDB holds two entries and the state's cost stays out of the limit.
//! Its "decision" is the order's own value padded with spaces to a decision's length, so
//! the benchmark reads the order id and time from it as from a decision.

use creditstream::config::{KafkaConfig, ProcessorConfig};
use creditstream::runtime::streams::{self, StreamsError};
use creditstream::shutdown::Shutdown;
use creditstream::topology::codec::{to_json, InputTopic, RawRecord};
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::output::{Observation, OutputRecord, OutputTopic};
use creditstream::topology::processor::{Context, ProcessError, Processor, Progress, RecordMeta};
use creditstream::topology::record::{
    ChangeCause, ChangedUser, CommandOutcome, Decision, OrderStatus, UserChange, UserRow, NOTE_COMPLETED,
};
use creditstream::topology::state::{self, OrderSeen, UserState};

/// The store keys the pass-through writes: the length of a user and an order key.
const USER_STATE_KEY: [u8; 9] = *b"u\xff\xff\xff\xff\xff\xff\xff\xff";
const ORDER_SEEN_KEY: [u8; 9] = *b"o\xff\xff\xff\xff\xff\xff\xff\xff";

/// The pass-through's application id (its consumer group and transactional ids) beside
/// creditstream's `base`, so the two never share a group.
pub fn application_id(base: &str) -> String {
    format!("{base}-passthrough")
}

/// Values shaped like the credit check's, made once.
#[derive(Debug, Clone)]
pub struct Templates {
    pub decision_len: usize,
    pub user_change: Vec<u8>,
    pub user_created: Vec<u8>,
    /// The create's command outcome (creditstream reports every user command's outcome).
    pub user_outcome: Vec<u8>,
    pub user_state: Vec<u8>,
    pub order_seen: Vec<u8>,
}

impl Templates {
    /// Typical values for a run of `users` users and `orders` orders, with the credit
    /// check's own encoders.
    pub fn new(users: u64, orders: u64, now_ms: i64) -> Self {
        let uid = (users / 2 + 1) as i64;
        let order_id = orders.max(1) as i64;
        let row = |balance: i64| UserRow {
            uid,
            name: format!("U{uid}"),
            lname: "Bench".into(),
            credit_limit: 500,
            credit_balance: balance,
        };
        let decision = Decision {
            order_id,
            uid,
            amount: 49,
            status: OrderStatus::Completed,
            note: NOTE_COMPLETED.into(),
            balance_after: Some(250),
            order_timestamp_ms: now_ms,
            decided_at_ms: now_ms,
        };
        Self {
            decision_len: to_json(&decision).len(),
            user_change: to_json(&UserChange::Upserted {
                version: 6,
                cause: ChangeCause::Order { order_id },
                user: row(250),
            }),
            user_created: to_json(&UserChange::Upserted {
                version: 1,
                cause: ChangeCause::Created,
                user: row(500),
            }),
            user_outcome: to_json(&UserChange::Outcome(CommandOutcome {
                command_id: uid,
                uid: Some(uid),
                partitions: 1,
                changed: vec![ChangedUser {
                    uid,
                    version: 1,
                    deleted: false,
                }],
                rejected: Vec::new(),
                done: true,
            })),
            user_state: state::encode(&UserState {
                version: 6,
                user: Some(row(250)),
            }),
            order_seen: state::encode_order_seen(&OrderSeen {
                status: OrderStatus::Completed,
                decided_at_ms: Some(now_ms),
            }),
        }
    }
}

/// The pass-through processor (one per stream thread).
#[derive(Clone)]
pub struct MatchedPassThrough {
    templates: Templates,
    orders: u64,
    completed: u64,
}

impl MatchedPassThrough {
    pub fn new(templates: Templates, orders: u64, completed: u64) -> Self {
        Self {
            templates,
            orders: orders.max(1),
            completed: completed.min(orders),
        }
    }

    /// Whether order `id` stands for a Completed one: exactly `completed` of 1..=orders.
    pub fn completes(&self, id: i64) -> bool {
        let Ok(i) = u64::try_from(id) else {
            return false;
        };
        if i == 0 || i > self.orders {
            return false;
        }
        let share = |n: u64| (u128::from(n) * u128::from(self.completed)) / u128::from(self.orders);
        share(i) > share(i - 1)
    }

    fn user_change(key: &Option<Vec<u8>>, value: &[u8]) -> OutputRecord {
        OutputRecord {
            topic: OutputTopic::UserChanges,
            partition: None,
            timestamp_ms: None,
            key: key.clone(),
            value: Some(value.to_vec()),
            provenance: None,
            observation: Observation::Nothing,
        }
    }
}

/// The number after `"order_id":` in an order's JSON, without parsing the rest.
pub fn order_id_of(value: &[u8]) -> Option<i64> {
    const FIELD: &[u8] = b"\"order_id\":";
    let at = value.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let digits: Vec<u8> = value[at..]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

impl Processor for MatchedPassThrough {
    type Input = RawRecord;
    type Output = OutputRecord;

    fn process(
        &mut self,
        ctx: &mut dyn Context<OutputRecord>,
        _: RecordMeta,
        raw: &RawRecord,
    ) -> Result<Progress, ProcessError> {
        match raw.topic {
            InputTopic::Orders => {
                let order = raw.value.as_deref().unwrap_or_default();
                let mut decision = Vec::with_capacity(self.templates.decision_len.max(order.len()));
                decision.extend_from_slice(order);
                decision.resize(self.templates.decision_len.max(order.len()), b' ');
                ctx.forward(OutputRecord {
                    topic: OutputTopic::Decisions,
                    partition: None,
                    timestamp_ms: None,
                    key: raw.key.clone(),
                    value: Some(decision),
                    provenance: None,
                    observation: Observation::Nothing,
                });
                if order_id_of(order).is_some_and(|id| self.completes(id)) {
                    ctx.forward(Self::user_change(&raw.key, &self.templates.user_change));
                    ctx.store().put(&USER_STATE_KEY, self.templates.user_state.clone())?;
                }
                ctx.store().put(&ORDER_SEEN_KEY, self.templates.order_seen.clone())?;
            }
            InputTopic::UserCommands => {
                ctx.forward(Self::user_change(&raw.key, &self.templates.user_created));
                ctx.forward(Self::user_change(&raw.key, &self.templates.user_outcome));
                ctx.store().put(&USER_STATE_KEY, self.templates.user_state.clone())?;
            }
            _ => {}
        }
        Ok(Progress::Done)
    }
}

/// Runs until `shutdown`; blocking. Its consumer group and transactional id are the
/// topology's with `-passthrough` appended, so it never joins a processor's group.
pub fn run(
    kafka: KafkaConfig,
    mut cfg: ProcessorConfig,
    def: &TopologyDefinition,
    processor: MatchedPassThrough,
    shutdown: Shutdown,
) -> Result<(), StreamsError> {
    let mut def = def.clone();
    def.application_id = application_id(&def.application_id);
    cfg.run_seed_bridge = false;
    streams::run(kafka, cfg, def, || processor.clone(), shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use creditstream::topology::codec::encode_order;
    use creditstream::topology::record::Order;

    #[test]
    fn exactly_the_completed_share_of_order_ids_completes() {
        let p = MatchedPassThrough::new(Templates::new(10, 1000, 0), 1000, 873);
        assert_eq!((1..=1000).filter(|&i| p.completes(i)).count(), 873);
        assert!(!p.completes(0) && !p.completes(1001) && !p.completes(-5));
        let none = MatchedPassThrough::new(Templates::new(10, 1000, 0), 1000, 0);
        assert_eq!((1..=1000).filter(|&i| none.completes(i)).count(), 0);
    }

    #[test]
    fn reads_the_order_id_of_an_encoded_order() {
        let (_, value) = encode_order(&Order {
            order_id: 123_456,
            uid: 7,
            amount: 3,
            timestamp_ms: 1,
        });
        assert_eq!(order_id_of(&value), Some(123_456));
        assert_eq!(order_id_of(b"{\"uid\":1}"), None);
    }

    #[test]
    fn templates_have_the_credit_checks_sizes() {
        let t = Templates::new(100_000, 1_000_000, 1_795_000_000_000);
        let order = encode_order(&Order {
            order_id: 1_000_000,
            uid: 50_001,
            amount: 49,
            timestamp_ms: 1_795_000_000_000,
        })
        .1;
        // A decision carries more than its order, so padding makes it a decision's length.
        assert!(t.decision_len > order.len());
        assert!(t.user_change.len() > t.user_created.len() / 2);
        assert_eq!(
            state::decode::<UserState>(&t.user_state).map(|s| s.version).ok(),
            Some(6)
        );
        assert!(state::decode_order_seen(&t.order_seen).is_ok());
    }
}
