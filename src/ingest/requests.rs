//! Turns HTTP requests (the seed's query strings, the REST API's JSON) into validated
//! commands and orders. Pure: no I/O, so every rejection rule is tested directly.
//! Invariant: whatever this returns `Ok` for is a record the processor will accept;
//! whatever it rejects names the offending field.

use super::dict_literal::parse_dict;
use super::ids::{idempotent_order_id, IdGenerator};
use crate::topology::conditions::{self, FieldError};
use crate::topology::credit_check::validate_user;
use crate::topology::record::{Column, Order, Predicate, Target, UserCommand, UserRow, Value, MAX_NAME_CHARS};
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
}

impl ApiError {
    pub fn bad_request(field: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    pub fn new(status: u16, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            field: None,
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

fn required_int(params: &Params, name: &str) -> Result<i64, ApiError> {
    let text = get(params, name).ok_or_else(|| ApiError::bad_request(name, "required"))?;
    text.trim()
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request(name, format!("expected an integer within i64, got {text:?}")))
}

/// Text values must be short, printable and non-empty (names are `varchar(15)` in the seed).
fn check_text(column: Column, value: &Value) -> Result<(), ApiError> {
    if let Value::Text(text) = value {
        let chars = text.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(ApiError::bad_request(
                column.as_str(),
                format!("must be 1 to {MAX_NAME_CHARS} characters, got {chars}"),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                column.as_str(),
                "must not contain control characters",
            ));
        }
    }
    Ok(())
}

fn checked(predicates: Vec<Predicate>) -> Result<Vec<Predicate>, ApiError> {
    for p in &predicates {
        check_text(p.column, &p.value)?;
    }
    Ok(predicates)
}

/// Assignments for an update: never the uid, numbers not negative.
fn checked_assignments(set: Vec<Predicate>) -> Result<Vec<Predicate>, ApiError> {
    if set.is_empty() {
        return Err(ApiError::bad_request(
            "new_val",
            "at least one column to set is required",
        ));
    }
    for p in &set {
        if p.column == Column::Uid {
            return Err(ApiError::bad_request("uid", "uid cannot be changed"));
        }
        if let Value::Int(v) = p.value {
            if v < 0 {
                return Err(ApiError::bad_request(p.column.as_str(), "must not be negative"));
            }
        }
    }
    checked(set)
}

fn validated_user(user: UserRow) -> Result<UserRow, ApiError> {
    for column in [Column::Name, Column::Lname] {
        check_text(column, &user.get(column))?;
    }
    validate_user(&user).map_err(|message| {
        let field = message.split_whitespace().next().unwrap_or("user").to_string();
        ApiError::bad_request(field, message)
    })?;
    Ok(user)
}

fn positive_amount(amount: i64) -> Result<i64, ApiError> {
    if amount <= 0 {
        return Err(ApiError::bad_request(
            "amount",
            format!("must be a positive integer, got {amount}"),
        ));
    }
    Ok(amount)
}

/// `/order?uid=U&amount=A`.
pub fn seed_order(params: &Params, ids: &IdGenerator, now_ms: i64) -> Result<Order, ApiError> {
    only_allowed(params, &["uid", "amount"])?;
    let uid = required_int(params, "uid")?;
    let amount = positive_amount(required_int(params, "amount")?)?;
    Ok(Order {
        order_id: ids.next_id(),
        uid,
        amount,
        timestamp_ms: now_ms,
    })
}

/// What a `/user?type=...` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedUserRequest {
    Write(UserCommand),
    Read(Vec<Predicate>),
}

/// `col=val` pairs of a query string, through the allow-list.
pub fn conditions_from_params(params: &Params) -> Result<Vec<Predicate>, ApiError> {
    no_duplicates(params)?;
    checked(conditions::predicates_from_pairs(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?)
}

fn dict_param(params: &Params, name: &str) -> Result<Vec<Predicate>, ApiError> {
    let text = get(params, name).ok_or_else(|| ApiError::bad_request(name, "required"))?;
    let map = parse_dict(text).map_err(|e| ApiError::bad_request(name, e.to_string()))?;
    conditions::predicates_from_json(&serde_json::Value::Object(map)).map_err(ApiError::from)
}

/// `/user?type=C|R|U|D&...`, the seed's user operations.
pub fn seed_user(params: &Params, ids: &IdGenerator) -> Result<SeedUserRequest, ApiError> {
    let kind = get(params, "type").ok_or_else(|| ApiError::bad_request("type", "required: one of C, R, U, D"))?;
    let rest: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "type").cloned().collect();
    no_duplicates(params)?;
    match kind {
        "C" => {
            only_allowed(&rest, &["uid", "name", "lname", "credit_limit", "credit_balance"])?;
            let uid = match get(&rest, "uid") {
                Some(_) => required_int(&rest, "uid")?,
                None => ids.next_id(),
            };
            let text = |name: &str| {
                get(&rest, name)
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request(name, "required"))
            };
            let user = validated_user(UserRow {
                uid,
                name: text("name")?,
                lname: text("lname")?,
                credit_limit: required_int(&rest, "credit_limit")?,
                credit_balance: required_int(&rest, "credit_balance")?,
            })?;
            Ok(SeedUserRequest::Write(UserCommand::Create {
                command_id: ids.next_id(),
                user,
            }))
        }
        "R" => Ok(SeedUserRequest::Read(conditions_from_params(&rest)?)),
        "U" => {
            only_allowed(&rest, &["condition", "new_val"])?;
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
        "D" => {
            let condition = conditions_from_params(&rest)?;
            if condition.is_empty() {
                return Err(ApiError::bad_request("condition", "at least one condition is required"));
            }
            Ok(SeedUserRequest::Write(UserCommand::Delete {
                command_id: ids.next_id(),
                target: target_of(condition),
            }))
        }
        other => Err(ApiError::bad_request(
            "type",
            format!("expected one of C, R, U, D, got {other:?}"),
        )),
    }
}

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body", "body is not UTF-8"))?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("body", "expected a JSON object")),
        Err(e) => Err(ApiError::bad_request("body", format!("malformed JSON: {e}"))),
    }
}

fn json_int(map: &serde_json::Map<String, serde_json::Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match map.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(name, format!("expected an integer within i64, got {n}"))),
        Some(other) => Err(ApiError::bad_request(name, format!("expected an integer, got {other}"))),
    }
}

fn json_text(map: &serde_json::Map<String, serde_json::Value>, name: &str) -> Result<String, ApiError> {
    match map.get(name) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ApiError::bad_request(name, format!("expected a string, got {other}"))),
        None => Err(ApiError::bad_request(name, "required")),
    }
}

fn json_only(map: &serde_json::Map<String, serde_json::Value>, allowed: &[&str]) -> Result<(), ApiError> {
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
    let uid = json_int(&map, "uid")?.ok_or_else(|| ApiError::bad_request("uid", "required"))?;
    let amount =
        positive_amount(json_int(&map, "amount")?.ok_or_else(|| ApiError::bad_request("amount", "required"))?)?;
    let key = match (map.get("idempotency_key"), header_key) {
        (Some(serde_json::Value::String(k)), _) => Some(k.clone()),
        (Some(serde_json::Value::Null) | None, Some(h)) => Some(h.to_string()),
        (Some(serde_json::Value::Null) | None, None) => None,
        (Some(other), _) => {
            return Err(ApiError::bad_request(
                "idempotency_key",
                format!("expected a string, got {other}"),
            ))
        }
    };
    if let Some(k) = &key {
        if k.is_empty() || k.len() > 200 {
            return Err(ApiError::bad_request("idempotency_key", "must be 1 to 200 bytes"));
        }
    }
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
    let uid = json_int(&map, "uid")?.unwrap_or_else(|| ids.next_id());
    let required = |name: &str| json_int(&map, name)?.ok_or_else(|| ApiError::bad_request(name, "required"));
    let user = validated_user(UserRow {
        uid,
        name: json_text(&map, "name")?,
        lname: json_text(&map, "lname")?,
        credit_limit: required("credit_limit")?,
        credit_balance: required("credit_balance")?,
    })?;
    Ok(UserCommand::Create {
        command_id: ids.next_id(),
        user,
    })
}

/// `PATCH /v1/users/{uid}` or `PATCH /v1/users?cond` with a JSON object of new values.
pub fn rest_update(target: Target, body: &[u8], ids: &IdGenerator) -> Result<UserCommand, ApiError> {
    let map = json_object(body)?;
    let set = checked_assignments(conditions::predicates_from_json(&serde_json::Value::Object(map))?)?;
    Ok(UserCommand::Update {
        command_id: ids.next_id(),
        target,
        set,
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
