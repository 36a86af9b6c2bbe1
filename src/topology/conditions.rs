//! Conditions and assignments from loosely typed input (HTTP parameters, the seed's JSON
//! and Python dict literals) to typed predicates. Column names pass the allow-list in
//! [`Column::parse`]; values are coerced to the column's type or refused.

use super::record::{Column, Predicate, Value};

/// A refused field, named so a client can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The column a field names, or an error that lists the allowed ones.
pub fn column(name: &str) -> Result<Column, FieldError> {
    Column::parse(name).ok_or_else(|| {
        FieldError::new(
            name,
            "unknown column; allowed: uid, name, lname, credit_limit, credit_balance",
        )
    })
}

/// Coerces a textual value to the column's type.
pub fn value_from_text(column: Column, text: &str) -> Result<Value, FieldError> {
    if column.is_text() {
        Ok(Value::Text(text.to_string()))
    } else {
        text.trim()
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| FieldError::new(column.as_str(), format!("expected an integer within i64, got {text:?}")))
    }
}

/// Coerces a JSON value to the column's type (numbers may come as strings, as the seed sent them).
pub fn value_from_json(column: Column, value: &serde_json::Value) -> Result<Value, FieldError> {
    match value {
        serde_json::Value::String(s) => value_from_text(column, s),
        serde_json::Value::Number(n) if !column.is_text() => n
            .as_i64()
            .map(Value::Int)
            .ok_or_else(|| FieldError::new(column.as_str(), format!("expected an integer within i64, got {n}"))),
        serde_json::Value::Number(n) => Ok(Value::Text(n.to_string())),
        other => Err(FieldError::new(
            column.as_str(),
            format!("expected a scalar value, got {other}"),
        )),
    }
}

/// Predicates from a JSON object `{column: value, ...}`.
pub fn predicates_from_json(object: &serde_json::Value) -> Result<Vec<Predicate>, FieldError> {
    let map = object
        .as_object()
        .ok_or_else(|| FieldError::new("condition", "expected an object of column: value"))?;
    map.iter()
        .map(|(name, value)| {
            let column = column(name)?;
            Ok(Predicate {
                column,
                value: value_from_json(column, value)?,
            })
        })
        .collect()
}

/// Predicates from `(column, text)` pairs, such as query parameters.
pub fn predicates_from_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Predicate>, FieldError> {
    pairs
        .into_iter()
        .map(|(name, text)| {
            let column = column(name)?;
            Ok(Predicate {
                column,
                value: value_from_text(column, text)?,
            })
        })
        .collect()
}

/// The uid a condition pins down, when it is exactly `uid = N`: such a command can be
/// routed to one partition instead of broadcast.
pub fn single_uid(condition: &[Predicate]) -> Option<i64> {
    match condition {
        [Predicate {
            column: Column::Uid,
            value: Value::Int(uid),
        }] => Some(*uid),
        _ => None,
    }
}
