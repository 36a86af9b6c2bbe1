//! The credit-check processor: user commands maintain per-uid credit state (applied by
//! [`super::user_commands`]), orders are joined against it and decided. It keeps the seed's words and adds what a stream needs:
//! every user change carries a per-uid version, and an order id is decided at most once.
//! Invariant: 0 <= credit_balance <= credit_limit holds for every stored user, and a
//! balance only falls by the amount of a `Completed` order.

use super::codec::{decode, to_json, CreditInput, DeadLetterReason, InputTopic, RawRecord};
use super::order_filter::DecidedOrders;
use super::output::{Observation, OutputRecord, OutputTopic, Provenance, Routed};
use super::partitioner::uid_key;
use super::processor::{Context, ProcessError, Processor, Progress, RecordMeta};
use super::record::{
    ChangeCause, Decision, Order, OrderStatus, Uid, UserChange, NOTE_COMPLETED, NOTE_DECLINED, NOTE_UNKNOWN_USER,
};
use super::state::{self, OrderSeen, UserState, ORDER_PREFIX};
use super::task_id::TaskId;
use super::user_commands::apply_command;
use std::collections::HashMap;

/// A record the processor could not use, with its coordinates, for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub source: InputTopic,
    pub meta: RecordMeta,
    pub reason: DeadLetterReason,
    pub detail: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Everything the credit-check topology emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditOutput {
    Decision(Decision),
    UserChange(UserChange),
    DeadLetter(DeadLetter),
}

impl Routed for CreditOutput {
    /// Decisions and user changes go to their topics keyed by uid; a dead letter keeps
    /// the original key and value, with where it came from and why.
    fn into_record(self) -> OutputRecord {
        match self {
            CreditOutput::Decision(decision) => OutputRecord {
                topic: OutputTopic::Decisions,
                partition: None,
                timestamp_ms: None,
                key: Some(uid_key(decision.uid)),
                value: Some(to_json(&decision)),
                provenance: None,
                observation: Observation::Decision {
                    status: decision.status.as_str(),
                    event_time_ms: decision.order_timestamp_ms,
                },
            },
            CreditOutput::UserChange(change) => OutputRecord {
                topic: OutputTopic::UserChanges,
                partition: None,
                timestamp_ms: None,
                key: change.uid().map(uid_key),
                value: Some(to_json(&change)),
                provenance: None,
                observation: Observation::Nothing,
            },
            CreditOutput::DeadLetter(letter) => OutputRecord {
                topic: OutputTopic::DeadLetters,
                partition: None,
                timestamp_ms: None,
                key: letter.key,
                value: letter.value,
                observation: Observation::DeadLetter {
                    reason: letter.reason.as_str(),
                },
                provenance: Some(Provenance {
                    source: letter.source,
                    meta: letter.meta,
                    reason: letter.reason.as_str(),
                    detail: letter.detail,
                }),
            },
        }
    }
}

/// How long an order id is remembered by default: a week.
pub const DEFAULT_DEDUP_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Order entries a punctuation looks at, at least.
const SWEEP_MIN: usize = 1000;

/// The credit-check processor. All state that matters lives in the context's store; what
/// it keeps in memory per partition can be lost at any time.
#[derive(Debug, Clone)]
pub struct CreditCheck {
    /// How long an order id is remembered (and a repeat of it ignored), ms.
    dedup_retention_ms: i64,
    partitions: HashMap<u32, PartitionMemory>,
}

/// What the processor remembers of one partition between records.
#[derive(Debug, Clone, Default)]
struct PartitionMemory {
    /// The last order key the sweep looked at (`None`: the next sweep starts a pass).
    after: Option<Vec<u8>>,
    /// Orders decided since the last sweep (the next sweep looks at twice as many
    /// entries, so it keeps up).
    decided: usize,
    /// The order ids the store holds, as far as a completed pass knows them.
    orders: DecidedOrders,
}

impl Default for CreditCheck {
    fn default() -> Self {
        Self::new(DEFAULT_DEDUP_RETENTION_MS)
    }
}

impl CreditCheck {
    pub fn new(dedup_retention_ms: i64) -> Self {
        Self {
            dedup_retention_ms,
            partitions: HashMap::new(),
        }
    }
}

impl Processor for CreditCheck {
    type Input = RawRecord;
    type Output = CreditOutput;

    fn process(
        &mut self,
        ctx: &mut dyn Context<CreditOutput>,
        meta: RecordMeta,
        raw: &RawRecord,
    ) -> Result<Progress, ProcessError> {
        match decode(raw, ctx.partition_count()) {
            Ok(CreditInput::Order(order)) => {
                let memory = self.partitions.entry(ctx.partition()).or_default();
                memory.decided += 1;
                decide_order(ctx, &mut memory.orders, order).map(|()| Progress::Done)
            }
            Ok(CreditInput::Command(command)) => apply_command(ctx, command),
            Err(rejection) => {
                ctx.forward(CreditOutput::DeadLetter(DeadLetter {
                    source: raw.topic,
                    meta,
                    reason: rejection.reason,
                    detail: rejection.detail,
                    key: raw.key.clone(),
                    value: raw.value.clone(),
                }));
                Ok(Progress::Done)
            }
        }
    }

    /// Expires order entries older than the retention: each call looks at the next
    /// entries of the partition's order keys (twice as many as orders were decided since
    /// the last call, at least [`SWEEP_MIN`]) and deletes the expired ones, so the store and
    /// the changelog (tombstones, which compaction then drops) stay bounded. An entry from
    /// before entries carried their time is stamped with the current time once. A pass over
    /// every entry also builds the filter of the order ids the store holds.
    fn punctuate(&mut self, ctx: &mut dyn Context<CreditOutput>) -> Result<usize, ProcessError> {
        let now = ctx.now_ms();
        let memory = self.partitions.entry(ctx.partition()).or_default();
        let limit = (memory.decided * 2).max(SWEEP_MIN);
        memory.decided = 0;
        if memory.after.is_none() {
            memory.orders.pass_started();
        }
        let page = ctx.store().scan(ORDER_PREFIX, memory.after.as_deref(), limit)?;
        let completed = page.len() < limit;
        memory.after = if completed {
            None
        } else {
            page.last().map(|(key, _)| key.clone())
        };
        let mut expired = 0;
        for (key, bytes) in page {
            let seen = state::decode_order_seen(&bytes).map_err(corrupt(key.clone()))?;
            match seen.decided_at_ms {
                Some(at) if now.saturating_sub(at) > self.dedup_retention_ms => {
                    ctx.store().delete(&key)?;
                    expired += 1;
                    continue;
                }
                Some(_) => {}
                None => {
                    let stamped = OrderSeen {
                        decided_at_ms: Some(now),
                        ..seen
                    };
                    ctx.store().put(&key, state::encode_order_seen(&stamped))?;
                }
            }
            if let Some(order_id) = state::order_id_of_key(&key) {
                memory.orders.kept(order_id);
            }
        }
        if completed {
            memory.orders.pass_completed();
        }
        Ok(expired)
    }

    /// The task's store may have changed behind the processor's back (restored, moved,
    /// rolled back): what it remembered of the partition goes.
    fn forget(&mut self, task: TaskId) {
        self.partitions.remove(&task.partition);
    }
}

pub(super) fn load_user(ctx: &mut dyn Context<CreditOutput>, uid: Uid) -> Result<Option<UserState>, ProcessError> {
    let key = state::user_key(uid);
    match ctx.store().get(&key)? {
        None => Ok(None),
        Some(bytes) => state::decode(&bytes).map(Some).map_err(|e| ProcessError::CorruptState {
            key,
            reason: e.to_string(),
        }),
    }
}

pub(super) fn save_user(ctx: &mut dyn Context<CreditOutput>, uid: Uid, state: &UserState) -> Result<(), ProcessError> {
    ctx.store().put(&state::user_key(uid), state::encode(state))?;
    Ok(())
}

fn decide_order(
    ctx: &mut dyn Context<CreditOutput>,
    decided: &mut DecidedOrders,
    order: Order,
) -> Result<(), ProcessError> {
    let seen_key = state::order_key(order.order_id);
    // Almost every order is new: the filter says so without reading the store.
    if decided.may_hold(order.order_id) && ctx.store().get(&seen_key)?.is_some() {
        // A client retry or a replayed duplicate: it was decided once, and only once.
        return Ok(());
    }
    let current = load_user(ctx, order.uid)?;
    let (status, note, balance_after) = match current {
        Some(UserState {
            version,
            user: Some(mut user),
        }) => {
            if user.credit_balance >= order.amount {
                user.credit_balance -= order.amount;
                let balance = user.credit_balance;
                let next = UserState {
                    version: version + 1,
                    user: Some(user.clone()),
                };
                save_user(ctx, order.uid, &next)?;
                ctx.forward(CreditOutput::UserChange(UserChange::Upserted {
                    version: next.version,
                    cause: ChangeCause::Order {
                        order_id: order.order_id,
                    },
                    user,
                }));
                (OrderStatus::Completed, NOTE_COMPLETED, Some(balance))
            } else {
                (OrderStatus::Declined, NOTE_DECLINED, Some(user.credit_balance))
            }
        }
        _ => (OrderStatus::Declined, NOTE_UNKNOWN_USER, None),
    };
    let seen = OrderSeen {
        status,
        decided_at_ms: Some(ctx.now_ms()),
    };
    ctx.store().put(&seen_key, state::encode_order_seen(&seen))?;
    decided.decided(order.order_id);
    ctx.forward(CreditOutput::Decision(Decision {
        order_id: order.order_id,
        uid: order.uid,
        amount: order.amount,
        status,
        note: note.to_string(),
        balance_after,
        order_timestamp_ms: order.timestamp_ms,
        decided_at_ms: ctx.now_ms(),
    }));
    Ok(())
}

/// Maps a stored value that does not decode to the error naming its key.
pub(super) fn corrupt(key: Vec<u8>) -> impl FnOnce(state::StateCodecError) -> ProcessError {
    move |e| ProcessError::CorruptState {
        key,
        reason: e.to_string(),
    }
}
