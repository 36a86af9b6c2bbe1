//! The application's handlers: a request, already routed and with its query, body and
//! headers extracted, becomes a published command or order (answered 202 with a
//! `Location` once Kafka acknowledged it) or a read. Auth guards the writes; every
//! rejection names the field at fault.

use super::contract::Rule;
use super::reads::{get_command, get_order, get_user, read_users, refuse_write_after_own_delete};
use super::reply::{error_reply, json_reply, publish_failed, with_header};
use super::requests::{self, ApiError, SeedUserRequest};
use super::state::{IngestState, OwnWrite};
use crate::metrics::metrics;
use crate::topology::codec::{encode_command, encode_order};
use crate::topology::partitioner::partition_for;
use crate::topology::record::{Order, Target, UserCommand, Value, BROADCAST_KEY};
use bytes::Bytes;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use warp::http::StatusCode;
use warp::reply::Response;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Publishes a command: to its uid's partition, or to every partition when it is by
/// condition; then remembers it as this replica's pending write.
async fn publish_command(state: &IngestState, command: &UserCommand) -> Result<(), ApiError> {
    let (key, value) = encode_command(command);
    let topic = &state.topology.inputs.user_commands;
    let partitions = state.topology.partitions;
    if key == BROADCAST_KEY {
        let sends = (0..partitions as i32).map(|p| state.publisher.publish(topic, Some(p), &key, &value));
        futures::future::try_join_all(sends).await.map_err(publish_failed)?;
    } else {
        let p = partition_for(&key, partitions) as i32;
        state
            .publisher
            .publish(topic, Some(p), &key, &value)
            .await
            .map_err(publish_failed)?;
    }
    state.pending.commands.insert(command.command_id(), ());
    if let Some(uid) = command.routing_uid() {
        let write = OwnWrite {
            command_id: command.command_id(),
            is_delete: matches!(command, UserCommand::Delete { .. }),
        };
        state.pending.users.insert(uid, write);
        if matches!(command, UserCommand::Create { .. }) {
            state.pending.deleted.remove_if(&uid, &());
        }
    }
    Ok(())
}

async fn publish_order(state: &IngestState, order: &Order) -> Result<(), ApiError> {
    let (key, value) = encode_order(order);
    let partition = partition_for(&key, state.topology.partitions) as i32;
    state
        .publisher
        .publish(&state.topology.inputs.orders, Some(partition), &key, &value)
        .await
        .map_err(publish_failed)?;
    state.pending.orders.insert(order.order_id, ());
    Ok(())
}

/// 202 with the command's id and a `Location` where its outcome can be read.
fn command_accepted(command: &UserCommand) -> Response {
    let command_id = command.command_id();
    let body = match command.routing_uid() {
        Some(uid) => json!({"uid": uid, "command_id": command_id, "status": "accepted"}),
        None => json!({"command_id": command_id, "status": "accepted"}),
    };
    with_header(
        json_reply(StatusCode::ACCEPTED, &body),
        "location",
        &format!("/v1/commands/{command_id}"),
    )
}

async fn accept_command(state: &IngestState, command: UserCommand) -> Result<Response, ApiError> {
    publish_command(state, &command).await?;
    Ok(command_accepted(&command))
}

fn order_accepted(order: &Order) -> Response {
    with_header(
        json_reply(
            StatusCode::ACCEPTED,
            &json!({"order_id": order.order_id, "uid": order.uid, "amount": order.amount, "status": "Initialised"}),
        ),
        "location",
        &format!("/v1/orders/{}", order.order_id),
    )
}

async fn place_order(state: &IngestState, order: Order, idempotency_key: Option<String>) -> Result<Response, ApiError> {
    if let Some(key) = &idempotency_key {
        if state.idempotency.contains(&(order.uid, key.clone())) {
            return Ok(order_accepted(&order));
        }
    }
    publish_order(state, &order).await?;
    if let Some(key) = idempotency_key {
        state.idempotency.insert((order.uid, key), ());
    }
    Ok(order_accepted(&order))
}

fn check_auth(state: &IngestState, authorization: Option<&str>) -> Result<(), ApiError> {
    if state.auth_token.is_empty() {
        return Ok(());
    }
    let expected = format!("Bearer {}", state.auth_token);
    match authorization {
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(401, "missing or wrong bearer token")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Everything a handler may be given.
pub(super) struct Request {
    pub(super) route: &'static str,
    pub(super) method: warp::http::Method,
    pub(super) params: Vec<(String, String)>,
    pub(super) body: Bytes,
    pub(super) authorization: Option<String>,
    pub(super) idempotency_key: Option<String>,
    pub(super) tail: Vec<String>,
}

impl Request {
    /// The id in the path, under the id rule.
    fn id(&self, field: &str) -> Result<i64, ApiError> {
        match Rule::Id.parse(field, &self.tail[0])? {
            Value::Int(id) => Ok(id),
            Value::Text(_) => Err(ApiError::bad_request(field, "expected an integer id")),
        }
    }

    /// Refuses every query parameter but `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((key, _)) if allowed.is_empty() => {
                Err(ApiError::bad_request(key.clone(), "this route takes no parameters"))
            }
            Some((key, _)) => Err(ApiError::bad_request(
                key.clone(),
                format!("unknown parameter; allowed: {}", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// The `wait_ms` parameter (the only one a long poll takes), capped by the config.
    fn wait(&self, max_wait_ms: u64) -> Result<Duration, ApiError> {
        self.only(&["wait_ms"])?;
        match self.params.iter().find(|(k, _)| k == "wait_ms") {
            None => Ok(Duration::ZERO),
            Some((_, text)) => match Rule::WaitMs(max_wait_ms).parse("wait_ms", text)? {
                Value::Int(ms) => Ok(Duration::from_millis(ms.max(0) as u64)),
                Value::Text(_) => Err(ApiError::bad_request("wait_ms", "expected an integer")),
            },
        }
    }
}

async fn handle(state: Arc<IngestState>, req: Request) -> Result<Response, ApiError> {
    use warp::http::Method;
    let is_write = !matches!(req.method, Method::GET) || matches!(req.route, "/order" | "/user") && !is_seed_read(&req);
    if is_write {
        check_auth(&state, req.authorization.as_deref())?;
    }
    match (req.route, &req.method) {
        ("/order", &Method::GET | &Method::POST) => {
            let order = requests::seed_order(&req.params, &state.ids, now_ms())?;
            place_order(&state, order, None).await
        }
        ("/user", &Method::GET | &Method::POST) => match requests::seed_user(&req.params, &state.ids)? {
            SeedUserRequest::Read(condition) => read_users(&state, &condition).await,
            SeedUserRequest::Write(command) => accept_command(&state, command).await,
        },
        ("/v1/orders", &Method::POST) => {
            req.only(&[])?;
            let (order, key) = requests::rest_order(&req.body, req.idempotency_key.as_deref(), &state.ids, now_ms())?;
            place_order(&state, order, key).await
        }
        ("/v1/orders/{order_id}", &Method::GET) => {
            let order_id = req.id("order_id")?;
            get_order(&state, order_id, req.wait(state.max_wait_ms)?).await
        }
        ("/v1/commands/{command_id}", &Method::GET) => {
            let command_id = req.id("command_id")?;
            let view = get_command(&state, command_id, req.wait(state.max_wait_ms)?).await?;
            Ok(json_reply(StatusCode::OK, &view))
        }
        ("/v1/users", &Method::POST) => {
            req.only(&[])?;
            accept_command(&state, requests::rest_create_user(&req.body, &state.ids)?).await
        }
        ("/v1/users", &Method::GET) => read_users(&state, &requests::conditions_from_params(&req.params)?).await,
        ("/v1/users", &Method::PATCH) => {
            let target = requests::condition_target(&req.params)?;
            accept_command(&state, requests::rest_update(target, &req.body, &state.ids)?).await
        }
        ("/v1/users", &Method::DELETE) => {
            let target = requests::condition_target(&req.params)?;
            let command_id = state.ids.next_id();
            accept_command(&state, UserCommand::Delete { command_id, target }).await
        }
        ("/v1/users/{uid}", &Method::GET) => {
            req.only(&[])?;
            get_user(&state, req.id("uid")?).await
        }
        ("/v1/users/{uid}", &Method::PATCH) => {
            req.only(&[])?;
            let uid = req.id("uid")?;
            refuse_write_after_own_delete(&state, uid).await?;
            accept_command(&state, requests::rest_update(Target::Uid(uid), &req.body, &state.ids)?).await
        }
        ("/v1/users/{uid}", &Method::DELETE) => {
            req.only(&[])?;
            let uid = req.id("uid")?;
            refuse_write_after_own_delete(&state, uid).await?;
            let target = Target::Uid(uid);
            let command_id = state.ids.next_id();
            accept_command(&state, UserCommand::Delete { command_id, target }).await
        }
        (route, method) => Err(ApiError::method_not_allowed(route, method.as_str())),
    }
}

fn is_seed_read(req: &Request) -> bool {
    req.route == "/user" && req.params.iter().any(|(k, v)| k == "type" && v == "R")
}

/// Counts and times a request, and turns an `ApiError` into its JSON reply.
pub(super) async fn respond(state: Arc<IngestState>, req: Request) -> Result<Response, Infallible> {
    let started = Instant::now();
    let route = req.route;
    let response = match handle(state, req).await {
        Ok(response) => response,
        Err(error) => error_reply(&error),
    };
    let m = metrics();
    m.ingest_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    m.ingest_request_duration
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}
