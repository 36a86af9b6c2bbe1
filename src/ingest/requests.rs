//! Turns HTTP requests (the seed's query strings, the REST API's JSON) into validated
//! commands and orders, with the rules of [`super::contract`]. Pure: no I/O, so every
//! rejection rule is tested directly. Invariant: whatever this returns `Ok` for is a
//! record the processor can judge, and nothing the request alone shows can never apply is
//! accepted (a new user's balance above its limit is refused here, not left for the
//! processor to refuse later); rules that need the stored user (an update that would
//! lift a balance above a limit) are the processor's, reported by the command's outcome.
//! Whatever it rejects names the offending field.
//! JSON is strict (no coercion); the seed's query strings and dict literals keep the
//! seed's loose typing (numbers may come as strings).

use super::contract::Rule;
use super::dict_literal::parse_dict;
use super::ids::{idempotent_order_id, IdGenerator};
use crate::topology::conditions::{self, FieldError};
use crate::topology::record::{Column, Order, Predicate, Target, UserCommand, UserRow, Value};
use crate::topology::seed::target_of;
use serde::Serialize;

/// A rejected request: the HTTP status and a JSON body `{error, field}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The methods a 405 names in its `Allow` header.
    #[serde(skip)]
    pub allow: Option<String>,
}

impl ApiError {
    pub fn bad_request(field: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: error.into(),
            field: Some(field.into()),
            allow: None,
        }
    }

    pub fn new(status: u16, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            field: None,
            allow: None,
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::bad_request(e.field, e.message)
    }
}

/// Decodes a query string into pairs; bad percent-encoding or non-UTF-8 is a 400.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((percent_decode(key)?, percent_decode(value)?));
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Result<String, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => out.push(byte),
                    None => return Err(ApiError::bad_request("query", "malformed percent-encoding")),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("query", "query string is not UTF-8"))
}

/// Query parameters as they arrived, in order.
pub type Params = [(String, String)];

fn get<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn no_duplicates(params: &Params) -> Result<(), ApiError> {
    for (i, (key, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(k, _)| k == key) {
            return Err(ApiError::bad_request(key.clone(), "parameter given more than once"));
        }
    }
    Ok(())
}

fn only_allowed(params: &Params, allowed: &[&str]) -> Result<(), ApiError> {
    no_duplicates(params)?;
    match params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((key, _)) => Err(ApiError::bad_request(
            key.clone(),
            format!("unknown parameter; allowed: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn required(params: &Params, name: &str, rule: Rule) -> Result<Value, ApiError> {
    let text = get(params, name).ok_or_else(|| ApiError::bad_request(name, "required"))?;
    rule.parse(name, text)
}

/// The value of an integer rule ([`Rule::parse`] and [`Rule::from_json`] give `Int` for
/// every rule that is not text, and `Text` for the others).
fn int(value: Value) -> i64 {
    match value {
        Value::Int(v) => v,
        Value::Text(_) => 0,
    }
}

fn text(value: Value) -> String {
    match value {
        Value::Text(t) => t,
        Value::Int(v) => v.to_string(),
    }
}

/// Checks each predicate's value against its column's rule.
fn checked(predicates: Vec<Predicate>) -> Result<Vec<Predicate>, ApiError> {
    for p in &predicates {
        let rule = Rule::for_column(p.column);
        match &p.value {
            Value::Int(v) => rule.check_int(p.column.as_str(), *v).map(|_| ())?,
            Value::Text(t) => rule.check_text(p.column.as_str(), t)?,
        }
    }
    Ok(predicates)
}

/// Assignments for an update: at least one, never the uid.
fn checked_assignments(set: Vec<Predicate>) -> Result<Vec<Predicate>, ApiError> {
    if set.is_empty() {
        return Err(ApiError::bad_request(
            "new_val",
            "at least one column to set is required",
        ));
    }
    if set.iter().any(|p| p.column == Column::Uid) {
        return Err(ApiError::bad_request("uid", "uid cannot be changed"));
    }
    checked(set)
}

/// `/order?uid=U&amount=A`.
pub fn seed_order(params: &Params, ids: &IdGenerator, now_ms: i64) -> Result<Order, ApiError> {
    only_allowed(params, &["uid", "amount"])?;
    Ok(Order {
        order_id: ids.next_id(),
        uid: int(required(params, "uid", Rule::Id)?),
        amount: int(required(params, "amount", Rule::Amount)?),
        timestamp_ms: now_ms,
    })
}

/// What a `/user?type=...` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedUserRequest {
    Write(UserCommand),
    Read(Vec<Predicate>),
}

/// `col=val` pairs of a query string, through the allow-list and the columns' rules.
pub fn conditions_from_params(params: &Params) -> Result<Vec<Predicate>, ApiError> {
    no_duplicates(params)?;
    params
        .iter()
        .map(|(name, text)| {
            let column = conditions::column(name)?;
            Ok(Predicate {
                column,
                value: Rule::for_column(column).parse(name, text)?,
            })
        })
        .collect()
}

fn dict_param(params: &Params, name: &str) -> Result<Vec<Predicate>, ApiError> {
    let text = get(params, name).ok_or_else(|| ApiError::bad_request(name, "required"))?;
    if !super::contract::is_dict_literal_shaped(text) {
        return Err(ApiError::bad_request(
            name,
            "expected a dict literal with at least one entry, on one line, from { to }",
        ));
    }
    let map = parse_dict(text).map_err(|e| ApiError::bad_request(name, e.to_string()))?;
    conditions::predicates_from_json(&serde_json::Value::Object(map)).map_err(ApiError::from)
}

/// The parameters each seed `type` takes (besides `type`).
pub const SEED_USER_PARAMS: &[(&str, &[&str])] = &[
    ("C", &["uid", "name", "lname", "credit_limit", "credit_balance"]),
    ("R", &["uid", "name", "lname", "credit_limit", "credit_balance"]),
    ("U", &["condition", "new_val"]),
    ("D", &["uid", "name", "lname", "credit_limit", "credit_balance"]),
];

/// A user to create, refused when its balance exceeds its limit: the processor would
/// never create it, so accepting it would only answer 202 for a write that cannot apply.
fn new_user(user: UserRow) -> Result<UserRow, ApiError> {
    if user.credit_balance > user.credit_limit {
        return Err(ApiError::bad_request(
            "credit_balance",
            format!(
                "must not exceed credit_limit ({}), got {}",
                user.credit_limit, user.credit_balance
            ),
        ));
    }
    Ok(user)
}

/// `/user?type=C|R|U|D&...`, the seed's user operations.
pub fn seed_user(params: &Params, ids: &IdGenerator) -> Result<SeedUserRequest, ApiError> {
    let kind = get(params, "type").ok_or_else(|| ApiError::bad_request("type", "required: one of C, R, U, D"))?;
    let rest: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "type").cloned().collect();
    no_duplicates(params)?;
    let allowed = SEED_USER_PARAMS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, allowed)| *allowed)
        .ok_or_else(|| ApiError::bad_request("type", format!("expected one of C, R, U, D, got {kind:?}")))?;
    only_allowed(&rest, allowed)?;
    match kind {
        "C" => {
            let uid = match get(&rest, "uid") {
                Some(_) => int(required(&rest, "uid", Rule::Id)?),
                None => ids.next_id(),
            };
            let user = new_user(UserRow {
                uid,
                name: text(required(&rest, "name", Rule::Name)?),
                lname: text(required(&rest, "lname", Rule::Name)?),
                credit_limit: int(required(&rest, "credit_limit", Rule::Credit)?),
                credit_balance: int(required(&rest, "credit_balance", Rule::Credit)?),
            })?;
            Ok(SeedUserRequest::Write(UserCommand::Create {
                command_id: ids.next_id(),
                user,
            }))
        }
        "R" => Ok(SeedUserRequest::Read(conditions_from_params(&rest)?)),
        "U" => {
            let condition = checked(dict_param(&rest, "condition")?)?;
            if condition.is_empty() {
                return Err(ApiError::bad_request("condition", "at least one condition is required"));
            }
            let set = checked_assignments(dict_param(&rest, "new_val")?)?;
            Ok(SeedUserRequest::Write(UserCommand::Update {
                command_id: ids.next_id(),
                target: target_of(condition),
                set,
            }))
        }
        _ => {
            let condition = conditions_from_params(&rest)?;
            if condition.is_empty() {
                return Err(ApiError::bad_request("condition", "at least one condition is required"));
            }
            Ok(SeedUserRequest::Write(UserCommand::Delete {
                command_id: ids.next_id(),
                target: target_of(condition),
            }))
        }
    }
}

type JsonMap = serde_json::Map<String, serde_json::Value>;

fn json_object(body: &[u8]) -> Result<JsonMap, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body", "body is not UTF-8"))?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("body", "expected a JSON object")),
        Err(e) => Err(ApiError::bad_request("body", format!("malformed JSON: {e}"))),
    }
}

/// A field of a JSON body under its rule; `None` when absent.
fn json_field(map: &JsonMap, name: &str, rule: Rule) -> Result<Option<Value>, ApiError> {
    map.get(name).map(|v| rule.from_json(name, v)).transpose()
}

fn json_required(map: &JsonMap, name: &str, rule: Rule) -> Result<Value, ApiError> {
    json_field(map, name, rule)?.ok_or_else(|| ApiError::bad_request(name, "required"))
}

fn json_only(map: &JsonMap, allowed: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(ApiError::bad_request(
            key.clone(),
            format!("unknown field; allowed: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// `POST /v1/orders` with `{uid, amount, idempotency_key?}` (or an `Idempotency-Key` header).
pub fn rest_order(
    body: &[u8],
    header_key: Option<&str>,
    ids: &IdGenerator,
    now_ms: i64,
) -> Result<(Order, Option<String>), ApiError> {
    let map = json_object(body)?;
    json_only(&map, &["uid", "amount", "idempotency_key"])?;
    let uid = int(json_required(&map, "uid", Rule::Id)?);
    let amount = int(json_required(&map, "amount", Rule::Amount)?);
    // Both are checked; the body's key wins over the header's.
    let header = header_key
        .map(|h| Rule::IdempotencyKey.parse("Idempotency-Key", h).map(text))
        .transpose()?;
    let key = json_field(&map, "idempotency_key", Rule::IdempotencyKey)?
        .map(text)
        .or(header);
    let order_id = match &key {
        Some(k) => idempotent_order_id(uid, k),
        None => ids.next_id(),
    };
    Ok((
        Order {
            order_id,
            uid,
            amount,
            timestamp_ms: now_ms,
        },
        key,
    ))
}

/// `POST /v1/users` with `{name, lname, credit_limit, credit_balance, uid?}`.
pub fn rest_create_user(body: &[u8], ids: &IdGenerator) -> Result<UserCommand, ApiError> {
    let map = json_object(body)?;
    json_only(&map, &["uid", "name", "lname", "credit_limit", "credit_balance"])?;
    let uid = match json_field(&map, "uid", Rule::Id)? {
        Some(uid) => int(uid),
        None => ids.next_id(),
    };
    let user = new_user(UserRow {
        uid,
        name: text(json_required(&map, "name", Rule::Name)?),
        lname: text(json_required(&map, "lname", Rule::Name)?),
        credit_limit: int(json_required(&map, "credit_limit", Rule::Credit)?),
        credit_balance: int(json_required(&map, "credit_balance", Rule::Credit)?),
    })?;
    Ok(UserCommand::Create {
        command_id: ids.next_id(),
        user,
    })
}

/// The columns a PATCH may set.
pub const PATCH_FIELDS: &[Column] = &[Column::Name, Column::Lname, Column::CreditLimit, Column::CreditBalance];

/// `PATCH /v1/users/{uid}` or `PATCH /v1/users?cond` with a JSON object of new values.
pub fn rest_update(target: Target, body: &[u8], ids: &IdGenerator) -> Result<UserCommand, ApiError> {
    let map = json_object(body)?;
    let allowed: Vec<&str> = PATCH_FIELDS.iter().map(|c| c.as_str()).collect();
    json_only(&map, &allowed)?;
    let set = map
        .iter()
        .map(|(name, value)| {
            let column = conditions::column(name)?;
            Ok(Predicate {
                column,
                value: Rule::for_column(column).from_json(name, value)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(UserCommand::Update {
        command_id: ids.next_id(),
        target,
        set: checked_assignments(set)?,
    })
}

/// The target of a conditional PATCH or DELETE: at least one condition.
pub fn condition_target(params: &Params) -> Result<Target, ApiError> {
    let condition = conditions_from_params(params)?;
    if condition.is_empty() {
        return Err(ApiError::bad_request("condition", "at least one condition is required"));
    }
    Ok(target_of(condition))
}
