//! The HTTP routes (warp): the seed's `/order` and `/user`, the `/v1` REST API, health,
//! readiness, metrics and the OpenAPI document. Writes answer 202 only after Kafka
//! acknowledged every record they publish; reads come from MySQL and say they are
//! eventually consistent. Every rejection is JSON `{error, field}`.

use super::requests::{self, ApiError, SeedUserRequest};
use super::state::{IngestState, Publish};
use crate::metrics::{self, metrics};
use crate::sink::reader;
use crate::topology::codec::{encode_command, encode_order};
use crate::topology::partitioner::partition_for;
use crate::topology::record::{Column, Order, Predicate, Target, UserCommand, Value, BROADCAST_KEY};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The OpenAPI 3 document, kept in the repository and served as-is.
pub const OPENAPI: &str = include_str!("openapi.json");

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn error_reply(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_reply(status, error);
    if error.status == 503 {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

fn eventual(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("x-consistency", HeaderValue::from_static("eventual"));
    response
}

fn unavailable(message: impl Into<String>) -> ApiError {
    metrics().ingest_unavailable.inc();
    ApiError::new(503, message)
}

/// Publishes a command: to its uid's partition, or to every partition when it is by condition.
async fn publish_command<P: Publish>(state: &IngestState<P>, command: &UserCommand) -> Result<(), ApiError> {
    let (key, value) = encode_command(command);
    let topic = &state.topology.inputs.user_commands;
    let partitions = state.topology.partitions;
    let result = if key == BROADCAST_KEY {
        let sends = (0..partitions as i32).map(|p| state.publisher.publish(topic, Some(p), &key, &value));
        futures::future::try_join_all(sends).await.map(|_| ())
    } else {
        let p = partition_for(&key, partitions) as i32;
        state.publisher.publish(topic, Some(p), &key, &value).await.map(|_| ())
    };
    result.map_err(|e| {
        if e.is_retriable() {
            unavailable(e.to_string())
        } else {
            ApiError::new(500, e.to_string())
        }
    })
}

async fn publish_order<P: Publish>(state: &IngestState<P>, order: &Order) -> Result<(), ApiError> {
    let (key, value) = encode_order(order);
    let partition = partition_for(&key, state.topology.partitions) as i32;
    state
        .publisher
        .publish(&state.topology.inputs.orders, Some(partition), &key, &value)
        .await
        .map(|_| ())
        .map_err(|e| {
            if e.is_retriable() {
                unavailable(e.to_string())
            } else {
                ApiError::new(500, e.to_string())
            }
        })
}

fn command_accepted(command: &UserCommand) -> Response {
    let body = match command {
        UserCommand::Create { command_id, user } => {
            json!({"uid": user.uid, "command_id": command_id, "status": "accepted"})
        }
        UserCommand::Update { command_id, target, .. } | UserCommand::Delete { command_id, target } => match target {
            Target::Uid(uid) => json!({"uid": uid, "command_id": command_id, "status": "accepted"}),
            Target::Condition(_) => json!({"command_id": command_id, "status": "accepted"}),
        },
    };
    json_reply(StatusCode::ACCEPTED, &body)
}

fn order_accepted(order: &Order) -> Response {
    let mut response = json_reply(
        StatusCode::ACCEPTED,
        &json!({"order_id": order.order_id, "uid": order.uid, "amount": order.amount, "status": "Initialised"}),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/orders/{}", order.order_id)) {
        response.headers_mut().insert("location", location);
    }
    response
}

async fn place_order<P: Publish>(
    state: &IngestState<P>,
    order: Order,
    idempotency_key: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(key) = &idempotency_key {
        if state.idempotency.contains(order.uid, key) {
            return Ok(order_accepted(&order));
        }
    }
    publish_order(state, &order).await?;
    if let Some(key) = idempotency_key {
        state.idempotency.remember(order.uid, key);
    }
    Ok(order_accepted(&order))
}

async fn read_users<P: Publish>(state: &IngestState<P>, condition: &[Predicate]) -> Result<Response, ApiError> {
    let users = reader::find_users(&state.pool, condition, Some(reader::MAX_ROWS))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(eventual(json_reply(StatusCode::OK, &users)))
}

fn check_auth<P: Publish>(state: &IngestState<P>, authorization: Option<&str>) -> Result<(), ApiError> {
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
struct Request {
    route: &'static str,
    method: warp::http::Method,
    params: Vec<(String, String)>,
    body: Bytes,
    authorization: Option<String>,
    idempotency_key: Option<String>,
    tail: Vec<String>,
}

fn parse_id(text: &str, field: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .map_err(|_| ApiError::bad_request(field, format!("expected an integer id, got {text:?}")))
}

async fn handle<P: Publish>(state: Arc<IngestState<P>>, req: Request) -> Result<Response, ApiError> {
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
            SeedUserRequest::Write(command) => {
                publish_command(&state, &command).await?;
                Ok(command_accepted(&command))
            }
        },
        ("/v1/orders", &Method::POST) => {
            let (order, key) = requests::rest_order(&req.body, req.idempotency_key.as_deref(), &state.ids, now_ms())?;
            place_order(&state, order, key).await
        }
        ("/v1/orders/{id}", &Method::GET) => {
            let order_id = parse_id(&req.tail[0], "order_id")?;
            get_order(&state, order_id, &req.params).await
        }
        ("/v1/users", &Method::POST) => {
            let command = requests::rest_create_user(&req.body, &state.ids)?;
            publish_command(&state, &command).await?;
            Ok(command_accepted(&command))
        }
        ("/v1/users", &Method::GET) => read_users(&state, &requests::conditions_from_params(&req.params)?).await,
        ("/v1/users", &Method::PATCH) => {
            let command = requests::rest_update(requests::condition_target(&req.params)?, &req.body, &state.ids)?;
            publish_command(&state, &command).await?;
            Ok(command_accepted(&command))
        }
        ("/v1/users", &Method::DELETE) => {
            let target = requests::condition_target(&req.params)?;
            let command = UserCommand::Delete {
                command_id: state.ids.next_id(),
                target,
            };
            publish_command(&state, &command).await?;
            Ok(command_accepted(&command))
        }
        ("/v1/users/{uid}", &Method::GET) => {
            let uid = parse_id(&req.tail[0], "uid")?;
            let condition = [Predicate {
                column: Column::Uid,
                value: Value::Int(uid),
            }];
            let users = reader::find_users(&state.pool, &condition, Some(1))
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            match users.first() {
                Some(user) => Ok(eventual(json_reply(StatusCode::OK, user))),
                None => Err(ApiError::new(
                    404,
                    format!("no user {uid} (reads are eventually consistent)"),
                )),
            }
        }
        ("/v1/users/{uid}", &Method::PATCH) => {
            let uid = parse_id(&req.tail[0], "uid")?;
            let command = requests::rest_update(Target::Uid(uid), &req.body, &state.ids)?;
            publish_command(&state, &command).await?;
            Ok(command_accepted(&command))
        }
        ("/v1/users/{uid}", &Method::DELETE) => {
            let uid = parse_id(&req.tail[0], "uid")?;
            let command = UserCommand::Delete {
                command_id: state.ids.next_id(),
                target: Target::Uid(uid),
            };
            publish_command(&state, &command).await?;
            Ok(command_accepted(&command))
        }
        (route, method) => Err(ApiError::new(405, format!("method {method} is not allowed on {route}"))),
    }
}

fn is_seed_read(req: &Request) -> bool {
    req.route == "/user" && req.params.iter().any(|(k, v)| k == "type" && v == "R")
}

async fn get_order<P: Publish>(
    state: &IngestState<P>,
    order_id: i64,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let mut wait_ms = 0u64;
    for (key, value) in params {
        match key.as_str() {
            "wait_ms" => {
                wait_ms = value
                    .parse::<u64>()
                    .map_err(|_| ApiError::bad_request("wait_ms", "expected a non-negative integer"))?
                    .min(state.max_wait_ms);
            }
            other => return Err(ApiError::bad_request(other, "unknown parameter; allowed: wait_ms")),
        }
    }
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    loop {
        let events = reader::order_events(&state.pool, order_id)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let decided = events.iter().any(|e| e.order_status != "Initialised");
        if decided || Instant::now() >= deadline {
            if events.is_empty() {
                return Err(ApiError::new(
                    404,
                    format!("no order {order_id} yet (reads are eventually consistent)"),
                ));
            }
            let status = events.last().map(|e| e.order_status.clone()).unwrap_or_default();
            return Ok(eventual(json_reply(
                StatusCode::OK,
                &json!({"order_id": order_id, "status": status, "events": events}),
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts and times a request, and turns an `ApiError` into its JSON reply.
async fn respond<P: Publish>(state: Arc<IngestState<P>>, req: Request) -> Result<Response, Infallible> {
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

type Route = warp::filters::BoxedFilter<(Response,)>;

/// One application route: path, then shared extraction of query, body and headers.
fn app_route<P: Publish>(
    state: Arc<IngestState<P>>,
    route: &'static str,
    path: warp::filters::BoxedFilter<(Vec<String>,)>,
    max_body: u64,
) -> Route {
    let with_state = warp::any().map(move || state.clone());
    path.and(warp::method())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(bounded_body(max_body))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(with_state)
        .and_then(
            move |tail, method, query: String, body, authorization, idempotency_key, state| async move {
                let params = match requests::parse_query(&query) {
                    Ok(p) => p,
                    Err(error) => return Ok::<Response, Infallible>(error_reply(&error)),
                };
                respond(
                    state,
                    Request {
                        route,
                        method,
                        params,
                        body,
                        authorization,
                        idempotency_key,
                        tail,
                    },
                )
                .await
            },
        )
        .boxed()
}

/// The request body refused for its size.
#[derive(Debug)]
struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

/// The request body, read up to `limit` bytes: a larger one is refused (413) whether or
/// not it declares its length, so no request can make the server buffer without bound.
fn bounded_body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, stream| collect_limited(declared, stream, limit))
}

async fn collect_limited<S, B>(declared: Option<u64>, stream: S, limit: u64) -> Result<Bytes, Rejection>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::StreamExt;
    if declared.is_some_and(|length| length > limit) {
        return Err(warp::reject::custom(BodyTooLarge));
    }
    let mut stream = Box::pin(stream);
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| warp::reject::custom(BodyUnreadable))?;
        if (body.len() + chunk.remaining()) as u64 > limit {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(body))
}

/// The request body could not be read (the client went away mid-body).
#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

fn exact(segments: &'static [&'static str]) -> warp::filters::BoxedFilter<(Vec<String>,)> {
    let mut filter = warp::any().boxed();
    for segment in segments {
        filter = filter.and(warp::path(*segment)).boxed();
    }
    filter.and(warp::path::end()).map(Vec::new).boxed()
}

fn with_id(segments: &'static [&'static str]) -> warp::filters::BoxedFilter<(Vec<String>,)> {
    let mut filter = warp::any().boxed();
    for segment in segments {
        filter = filter.and(warp::path(*segment)).boxed();
    }
    filter
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .map(|id: String| vec![id])
        .boxed()
}

/// Every route of the ingest, with JSON errors for anything unmatched.
pub fn routes<P: Publish>(
    state: Arc<IngestState<P>>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let max_body = state.max_body_bytes;
    let s = || state.clone();
    let ready_state = state.clone();
    let health = warp::path("healthz")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| json_reply(StatusCode::OK, &json!({"status": "ok"})));
    let ready = warp::path("readyz")
        .and(warp::path::end())
        .and(warp::get())
        .and_then(move || {
            let state = ready_state.clone();
            async move {
                let kafka = state.publisher.is_reachable();
                let mysql = reader::ping(&state.pool).await;
                let status = if kafka && mysql {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                Ok::<Response, Infallible>(json_reply(status, &json!({"kafka": kafka, "mysql": mysql})))
            }
        });
    let openapi = warp::path("openapi.json")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response());
    let metrics_route = metrics::route().map(Reply::into_response);
    let app = app_route(s(), "/order", exact(&["order"]), max_body)
        .or(app_route(s(), "/user", exact(&["user"]), max_body))
        .unify()
        .or(app_route(s(), "/v1/orders", exact(&["v1", "orders"]), max_body))
        .unify()
        .or(app_route(s(), "/v1/orders/{id}", with_id(&["v1", "orders"]), max_body))
        .unify()
        .or(app_route(s(), "/v1/users", exact(&["v1", "users"]), max_body))
        .unify()
        .or(app_route(s(), "/v1/users/{uid}", with_id(&["v1", "users"]), max_body))
        .unify();
    health
        .or(ready)
        .unify()
        .or(openapi)
        .unify()
        .or(metrics_route)
        .unify()
        .or(app)
        .unify()
        .recover(recover)
        .unify()
}

/// Warp's own rejections (no route, body too large, ...) as JSON errors.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if rejection.is_not_found() {
        ApiError::new(404, "no such route; see /openapi.json")
    } else if rejection.find::<BodyTooLarge>().is_some() || rejection.find::<warp::reject::PayloadTooLarge>().is_some()
    {
        ApiError::bad_request("body", "body too large").with_status(413)
    } else if rejection.find::<BodyUnreadable>().is_some() {
        ApiError::bad_request("body", "the body could not be read")
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::bad_request("body", "a Content-Length header is required").with_status(411)
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(405, "method not allowed on this route")
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some() {
        ApiError::bad_request("header", "a header is not valid text")
    } else {
        ApiError::new(400, format!("bad request: {rejection:?}"))
    };
    Ok(error_reply(&error))
}

impl ApiError {
    fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}
