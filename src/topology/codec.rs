//! Turns raw input records (key and value bytes) into typed inputs, or says precisely
//! why one cannot be processed. Pure and total: every byte string gets an answer, never
//! a panic, so a poison pill becomes a dead letter instead of a stuck partition.

use super::partitioner::partition_for;
use super::processor::RecordMeta;
use super::record::{Order, UserCommand, BROADCAST_KEY};
use super::task_id::SubTopology;
use serde::{Deserialize, Serialize};

/// The input topics of the topology: the credit check's two keyed inputs, and the seed's
/// two unkeyed topics, which the seed bridge repartitions into them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InputTopic {
    UserCommands,
    Orders,
    SeedUsers,
    SeedOrders,
}

impl InputTopic {
    pub const ALL: [InputTopic; 4] = [
        InputTopic::UserCommands,
        InputTopic::Orders,
        InputTopic::SeedUsers,
        InputTopic::SeedOrders,
    ];

    /// The sub-topology that reads this topic.
    pub fn subtopology(self) -> SubTopology {
        match self {
            InputTopic::UserCommands | InputTopic::Orders => SubTopology::CreditCheck,
            InputTopic::SeedUsers | InputTopic::SeedOrders => SubTopology::SeedBridge,
        }
    }

    /// Whether it carries user operations (0) or orders (1): on a timestamp tie, user
    /// operations go first (see `PartitionGroup`).
    pub fn slot(self) -> usize {
        match self {
            InputTopic::UserCommands | InputTopic::SeedUsers => 0,
            InputTopic::Orders | InputTopic::SeedOrders => 1,
        }
    }

    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            InputTopic::UserCommands => "user_commands",
            InputTopic::Orders => "orders",
            InputTopic::SeedUsers => "seed_users",
            InputTopic::SeedOrders => "seed_orders",
        }
    }

    /// The position of this topic in [`InputTopic::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An input record as it came off a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub topic: InputTopic,
    pub meta: RecordMeta,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A decoded input of the credit-check processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditInput {
    Command(UserCommand),
    Order(Order),
}

/// Why a record went to the dead-letter topic (a bounded set: it labels a metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// No value, or a value that is not JSON.
    Undecodable,
    /// JSON, but not the shape of the topic's records.
    SchemaMismatch,
    /// No key, or an empty one.
    MissingKey,
    /// A key that is neither a uid nor the broadcast key where one is allowed.
    InvalidKey,
    /// The key's uid differs from the uid in the value.
    KeyMismatch,
    /// The key belongs on another partition than the one the record was read from.
    WrongPartition,
    /// Well-formed, but a value out of range (for example a non-positive amount).
    InvalidValue,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::SchemaMismatch => "schema_mismatch",
            DeadLetterReason::MissingKey => "missing_key",
            DeadLetterReason::InvalidKey => "invalid_key",
            DeadLetterReason::KeyMismatch => "key_mismatch",
            DeadLetterReason::WrongPartition => "wrong_partition",
            DeadLetterReason::InvalidValue => "invalid_value",
        }
    }
}

/// Why one record cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: DeadLetterReason,
    pub detail: String,
}

fn reject(reason: DeadLetterReason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}

/// What a record's key says about where it belongs.
enum KeyKind {
    Uid(i64),
    Broadcast,
}

fn parse_key(key: Option<&[u8]>) -> Result<KeyKind, Rejection> {
    let key = match key {
        None | Some([]) => return Err(reject(DeadLetterReason::MissingKey, "record has no key")),
        Some(k) => k,
    };
    if key == BROADCAST_KEY {
        return Ok(KeyKind::Broadcast);
    }
    std::str::from_utf8(key)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map(KeyKind::Uid)
        .ok_or_else(|| {
            reject(
                DeadLetterReason::InvalidKey,
                format!("key {:?} is not a decimal uid", String::from_utf8_lossy(key)),
            )
        })
}

fn parse_json<T: for<'de> Deserialize<'de>>(value: Option<&[u8]>) -> Result<T, Rejection> {
    let bytes = value.ok_or_else(|| reject(DeadLetterReason::Undecodable, "record has no value"))?;
    // One pass straight into `T`; only a failure pays for telling bad JSON from a wrong shape.
    serde_json::from_slice(bytes).map_err(|e| {
        let is_json = e.classify() == serde_json::error::Category::Data
            && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if is_json {
            reject(DeadLetterReason::SchemaMismatch, format!("wrong schema: {e}"))
        } else {
            reject(DeadLetterReason::Undecodable, format!("not JSON: {e}"))
        }
    })
}

/// Decodes and checks one record of the credit-check topology's inputs.
pub fn decode(raw: &RawRecord, partition_count: u32) -> Result<CreditInput, Rejection> {
    let key = parse_key(raw.key.as_deref())?;
    let (input, routing_uid) = match raw.topic {
        InputTopic::Orders => {
            let order: Order = parse_json(raw.value.as_deref())?;
            if order.amount <= 0 {
                return Err(reject(
                    DeadLetterReason::InvalidValue,
                    format!("order amount must be positive, got {}", order.amount),
                ));
            }
            let uid = order.uid;
            (CreditInput::Order(order), Some(uid))
        }
        InputTopic::UserCommands => {
            let command: UserCommand = parse_json(raw.value.as_deref())?;
            let uid = command.routing_uid();
            (CreditInput::Command(command), uid)
        }
        InputTopic::SeedUsers | InputTopic::SeedOrders => {
            return Err(reject(
                DeadLetterReason::SchemaMismatch,
                "a seed record reaches the credit check only through the seed bridge",
            ))
        }
    };
    match (key, routing_uid) {
        (KeyKind::Broadcast, None) => Ok(input),
        (KeyKind::Broadcast, Some(uid)) => Err(reject(
            DeadLetterReason::KeyMismatch,
            format!("broadcast key on a record for uid {uid}"),
        )),
        (KeyKind::Uid(k), None) => Err(reject(
            DeadLetterReason::KeyMismatch,
            format!("key {k} on a condition command, which must use the broadcast key"),
        )),
        (KeyKind::Uid(k), Some(uid)) if k != uid => Err(reject(
            DeadLetterReason::KeyMismatch,
            format!("key {k} differs from the value's uid {uid}"),
        )),
        (KeyKind::Uid(_), Some(_)) => {
            let key_bytes = raw.key.as_deref().unwrap_or_default();
            let expected = partition_for(key_bytes, partition_count);
            if expected != raw.meta.partition {
                return Err(reject(
                    DeadLetterReason::WrongPartition,
                    format!(
                        "key belongs on partition {expected}, record was on partition {}",
                        raw.meta.partition
                    ),
                ));
            }
            Ok(input)
        }
    }
}

/// JSON of a value whose serialization cannot fail (derived structs with string keys).
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    match serde_json::to_vec(value) {
        Ok(bytes) => bytes,
        Err(e) => unreachable!("serializing a record type to JSON failed: {e}"),
    }
}

/// Key and value of a user command as it goes on the user-commands topic.
pub fn encode_command(command: &UserCommand) -> (Vec<u8>, Vec<u8>) {
    let key = match command.routing_uid() {
        Some(uid) => super::partitioner::uid_key(uid),
        None => BROADCAST_KEY.to_vec(),
    };
    (key, to_json(command))
}

/// Key and value of an order as it goes on the orders topic.
pub fn encode_order(order: &Order) -> (Vec<u8>, Vec<u8>) {
    (super::partitioner::uid_key(order.uid), to_json(order))
}
