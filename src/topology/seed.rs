//! The seed's wire format: unkeyed JSON on topics `order` ({"uid":..,"amount":..}) and
//! `user` ({"type":"C"|"U"|"D",...}). The bridge turns each into a keyed command of this
//! topology. Ids are derived from the record's coordinates, so a replayed seed record
//! gets the same order id and is decided once.

use super::conditions::{predicates_from_json, value_from_json, FieldError};
use super::record::{Column, Order, Target, UserCommand, UserRow, Value};

/// A seed record translated into this topology's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedInput {
    Order(Order),
    Command(UserCommand),
    /// A read (`type=R`) has no effect on state; the bridge skips it.
    Ignored,
}

/// Bit 62 marks ids derived from coordinates; generated ids stay below it for centuries.
const DERIVED_ID_BIT: i64 = 1 << 62;

/// A stable id for the record at (topic, partition, offset): FNV-1a, in the derived range.
pub fn derived_id(topic: &str, partition: i32, offset: i64) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes().chain(partition.to_be_bytes()).chain(offset.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    DERIVED_ID_BIT | (hash as i64 & (DERIVED_ID_BIT - 1))
}

fn parse(value: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, FieldError> {
    let json: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| FieldError::new("value", format!("not JSON: {e}")))?;
    match json {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(FieldError::new("value", "expected a JSON object")),
    }
}

fn int_field(map: &serde_json::Map<String, serde_json::Value>, column: Column) -> Result<i64, FieldError> {
    let raw = map
        .get(column.as_str())
        .ok_or_else(|| FieldError::new(column.as_str(), "missing"))?;
    match value_from_json(column, raw)? {
        Value::Int(v) => Ok(v),
        Value::Text(_) => Err(FieldError::new(column.as_str(), "expected an integer")),
    }
}

fn text_field(map: &serde_json::Map<String, serde_json::Value>, column: Column) -> Result<String, FieldError> {
    match map.get(column.as_str()) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(FieldError::new(column.as_str(), "expected a string")),
        None => Err(FieldError::new(column.as_str(), "missing")),
    }
}

/// A seed order (`{"uid":..,"amount":..}`) read at the given coordinates.
pub fn decode_seed_order(value: &[u8], id: i64, timestamp_ms: i64) -> Result<SeedInput, FieldError> {
    let map = parse(value)?;
    let uid = int_field(&map, Column::Uid)?;
    let amount = match map.get("amount") {
        Some(v) => match value_from_json(Column::CreditBalance, v) {
            Ok(Value::Int(a)) if a > 0 => a,
            _ => return Err(FieldError::new("amount", "expected a positive integer")),
        },
        None => return Err(FieldError::new("amount", "missing")),
    };
    Ok(SeedInput::Order(Order {
        order_id: id,
        uid,
        amount,
        timestamp_ms,
    }))
}

/// A seed user operation (`{"type":"C"|"R"|"U"|"D",...}`) read at the given coordinates.
pub fn decode_seed_user(value: &[u8], id: i64) -> Result<SeedInput, FieldError> {
    let mut map = parse(value)?;
    let kind = match map.remove("type") {
        Some(serde_json::Value::String(s)) => s,
        _ => return Err(FieldError::new("type", "expected one of C, R, U, D")),
    };
    match kind.as_str() {
        "C" => {
            let uid = match map.get("uid") {
                Some(_) => int_field(&map, Column::Uid)?,
                None => id,
            };
            let user = UserRow {
                uid,
                name: text_field(&map, Column::Name)?,
                lname: text_field(&map, Column::Lname)?,
                credit_limit: int_field(&map, Column::CreditLimit)?,
                credit_balance: int_field(&map, Column::CreditBalance)?,
            };
            Ok(SeedInput::Command(UserCommand::Create { command_id: id, user }))
        }
        "R" => Ok(SeedInput::Ignored),
        "U" => {
            let condition = predicates_from_json(map.get("condition").unwrap_or(&serde_json::Value::Null))?;
            let set = predicates_from_json(map.get("new_val").unwrap_or(&serde_json::Value::Null))?;
            let target = target_of(condition);
            Ok(SeedInput::Command(UserCommand::Update {
                command_id: id,
                target,
                set,
            }))
        }
        "D" => {
            let condition = predicates_from_json(&serde_json::Value::Object(map))?;
            if condition.is_empty() {
                return Err(FieldError::new("condition", "a delete needs at least one condition"));
            }
            Ok(SeedInput::Command(UserCommand::Delete {
                command_id: id,
                target: target_of(condition),
            }))
        }
        other => Err(FieldError::new(
            "type",
            format!("expected one of C, R, U, D, got {other:?}"),
        )),
    }
}

/// `uid = N` alone targets one user; anything else is a broadcast condition.
pub fn target_of(condition: Vec<super::record::Predicate>) -> Target {
    match super::conditions::single_uid(&condition) {
        Some(uid) => Target::Uid(uid),
        None => Target::Condition(condition),
    }
}
