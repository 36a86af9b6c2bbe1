//! How the credit-check processor lays out its state in a byte-keyed store.
//! Keys: `u` + uid (big-endian) for users, `o` + order id for orders already decided,
//! `c` + command id for a condition command applied in part (how far it got).
//! Values: one format-version byte, then bincode. A value of an unknown version is an
//! error, never silently misread. Order entries are at version 2 (they carry the time of
//! their decision, so they can expire); version 1 entries, written before, still read.

use super::record::{OrderId, OrderStatus, Uid, UserRow};
use serde::{Deserialize, Serialize};

/// Version byte written before every state value.
pub const STATE_FORMAT_VERSION: u8 = 1;

/// Largest state value decoded, bytes: a corrupt length prefix must not make decoding
/// allocate without bound (found by fuzzing).
const MAX_STATE_VALUE_BYTES: usize = 1 << 20;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_STATE_VALUE_BYTES>()
}

pub const USER_PREFIX: &[u8] = b"u";
pub const ORDER_PREFIX: &[u8] = b"o";
pub const CURSOR_PREFIX: &[u8] = b"c";

/// A user as the processor keeps it. `user` is `None` after a delete, so the version
/// sequence of the uid continues if it is created again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub version: u64,
    pub user: Option<UserRow>,
}

/// The decision already taken for an order id (the dedup record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSeen {
    pub status: OrderStatus,
    /// When it was decided, ms since the Unix epoch; `None` for an entry written before
    /// entries expired (format version 1).
    pub decided_at_ms: Option<i64>,
}

/// The format version of order entries.
pub const ORDER_SEEN_VERSION: u8 = 2;

/// An order entry as format version 1 wrote it.
#[derive(Deserialize)]
struct OrderSeenV1 {
    status: OrderStatus,
}

/// How far a condition command got on this partition: the last user key it handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionCursor {
    pub after: Vec<u8>,
}

pub fn cursor_key(command_id: i64) -> Vec<u8> {
    let mut key = CURSOR_PREFIX.to_vec();
    key.extend_from_slice(&command_id.to_be_bytes());
    key
}

pub fn user_key(uid: Uid) -> Vec<u8> {
    let mut key = USER_PREFIX.to_vec();
    key.extend_from_slice(&uid.to_be_bytes());
    key
}

pub fn order_key(order_id: OrderId) -> Vec<u8> {
    let mut key = ORDER_PREFIX.to_vec();
    key.extend_from_slice(&order_id.to_be_bytes());
    key
}

/// The order id of an [`order_key`]; `None` for any other key.
pub fn order_id_of_key(key: &[u8]) -> Option<OrderId> {
    let id = key.strip_prefix(ORDER_PREFIX)?;
    Some(OrderId::from_be_bytes(id.try_into().ok()?))
}

/// Why a state value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateCodecError {
    #[error("empty state value")]
    Empty,
    #[error("state format version {0} is not supported (expected {STATE_FORMAT_VERSION})")]
    UnknownVersion(u8),
    #[error("state value does not decode: {0}")]
    Decode(String),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(STATE_FORMAT_VERSION, value)
}

pub fn encode_order_seen(seen: &OrderSeen) -> Vec<u8> {
    encode_as(ORDER_SEEN_VERSION, seen)
}

/// An order entry of either format version.
pub fn decode_order_seen(bytes: &[u8]) -> Result<OrderSeen, StateCodecError> {
    match bytes.first() {
        Some(&ORDER_SEEN_VERSION) => decode_payload(&bytes[1..]),
        Some(&STATE_FORMAT_VERSION) => decode_payload::<OrderSeenV1>(&bytes[1..]).map(|v1| OrderSeen {
            status: v1.status,
            decided_at_ms: None,
        }),
        Some(&other) => Err(StateCodecError::UnknownVersion(other)),
        None => Err(StateCodecError::Empty),
    }
}

fn encode_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    // Encoding plain structs into a Vec cannot fail; an error here would be a bug.
    match bincode::serde::encode_to_vec(value, bincode_config()) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(e) => unreachable!("bincode encoding into a Vec failed: {e}"),
    }
    out
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StateCodecError> {
    let (&version, payload) = bytes.split_first().ok_or(StateCodecError::Empty)?;
    if version != STATE_FORMAT_VERSION {
        return Err(StateCodecError::UnknownVersion(version));
    }
    decode_payload(payload)
}

fn decode_payload<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, StateCodecError> {
    let (value, read) = bincode::serde::decode_from_slice(payload, bincode_config())
        .map_err(|e| StateCodecError::Decode(e.to_string()))?;
    if read != payload.len() {
        return Err(StateCodecError::Decode(format!(
            "{} trailing bytes",
            payload.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_state_round_trips() {
        let state = UserState {
            version: 7,
            user: Some(UserRow {
                uid: 42,
                name: "Ada".into(),
                lname: "Lovelace".into(),
                credit_limit: 100,
                credit_balance: 60,
            }),
        };
        assert_eq!(decode::<UserState>(&encode(&state)).unwrap(), state);
    }

    #[test]
    fn order_entries_of_both_versions_read() {
        let seen = OrderSeen {
            status: OrderStatus::Completed,
            decided_at_ms: Some(1_700_000_000_000),
        };
        assert_eq!(decode_order_seen(&encode_order_seen(&seen)).unwrap(), seen);
        #[derive(Serialize)]
        struct V1 {
            status: OrderStatus,
        }
        let old = encode(&V1 {
            status: OrderStatus::Declined,
        });
        assert_eq!(
            decode_order_seen(&old).unwrap(),
            OrderSeen {
                status: OrderStatus::Declined,
                decided_at_ms: None
            }
        );
        assert!(matches!(
            decode_order_seen(&[7, 0]),
            Err(StateCodecError::UnknownVersion(7))
        ));
    }

    #[test]
    fn unknown_version_and_garbage_are_errors() {
        assert!(matches!(
            decode::<UserState>(&[9, 1, 2]),
            Err(StateCodecError::UnknownVersion(9))
        ));
        assert!(decode::<UserState>(&[]).is_err());
        assert!(decode::<UserState>(&[STATE_FORMAT_VERSION, 0xff, 0xff, 0xff]).is_err());
        // A huge length prefix is refused, not allocated (the fuzzer's find).
        let mut huge = vec![STATE_FORMAT_VERSION, 1, 1, 42, 0xfd];
        huge.extend_from_slice(&0x5858_5858_0000_0003_u64.to_le_bytes());
        assert!(decode::<UserState>(&huge).is_err());
        let found = include_bytes!("../../tests/fuzz/regressions/state_values-huge-length.bin");
        assert!(decode::<UserState>(found).is_err());
    }

    #[test]
    fn user_keys_sort_by_prefix() {
        assert!(user_key(5).starts_with(USER_PREFIX));
        assert!(order_key(5).starts_with(ORDER_PREFIX));
        assert_eq!(order_id_of_key(&order_key(-77)), Some(-77));
        assert_eq!(order_id_of_key(&user_key(5)), None);
        assert_ne!(user_key(5), order_key(5));
    }
}
