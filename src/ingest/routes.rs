//! The HTTP routes (warp): the seed's `/order` and `/user`, the `/v1` REST API, health,
//! readiness, metrics and the OpenAPI document. This file is the plumbing: which path goes
//! to which handler ([`super::handlers`]), the bounded body, GET-only fixed routes, and
//! warp's own rejections as JSON errors ([`super::reply`]).

use super::handlers::{respond, Request};
use super::reply::{error_reply, json_reply, with_header};
use super::requests::{self, ApiError};
use super::state::IngestState;
use crate::metrics;
use bytes::Bytes;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

type Route = warp::filters::BoxedFilter<(Response,)>;

/// One application route: path, then shared extraction of query, body and headers.
fn app_route(
    state: Arc<IngestState>,
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

/// A fixed route that serves only GET: other methods get 405 with `Allow: GET`.
fn get_only<F, Fut>(name: &'static str, serve: F) -> Route
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send,
{
    warp::path(name)
        .and(warp::path::end())
        .and(warp::method())
        .and_then(move |method: warp::http::Method| {
            let serve = serve.clone();
            async move {
                Ok::<Response, Infallible>(if method == warp::http::Method::GET {
                    serve().await
                } else {
                    error_reply(&ApiError::method_not_allowed(&format!("/{name}"), method.as_str()))
                })
            }
        })
        .boxed()
}

/// 200 when Kafka and MySQL answer, else 503 with `Retry-After`.
async fn readiness(state: Arc<IngestState>) -> Response {
    let (kafka, mysql) = futures::join!(state.publisher.is_reachable(), state.reader.is_reachable());
    if kafka && mysql {
        json_reply(StatusCode::OK, &json!({"kafka": kafka, "mysql": mysql}))
    } else {
        with_header(
            json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "not ready", "kafka": kafka, "mysql": mysql}),
            ),
            "retry-after",
            "1",
        )
    }
}

/// Every route of the ingest, with JSON errors for anything unmatched.
pub fn routes(state: Arc<IngestState>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let max_body = state.max_body_bytes;
    let s = || state.clone();
    let ready_state = state.clone();
    let document: Arc<str> = super::openapi::document(state.max_wait_ms).to_string().into();
    let health = get_only("healthz", || async {
        json_reply(StatusCode::OK, &json!({"status": "ok"}))
    });
    let ready = get_only("readyz", move || readiness(ready_state.clone()));
    let openapi = get_only("openapi.json", move || {
        let document = document.clone();
        async move { with_header(document.to_string().into_response(), "content-type", "application/json") }
    });
    let metrics_route = get_only("metrics", || async {
        with_header(
            metrics::render().into_response(),
            "content-type",
            "text/plain; version=0.0.4",
        )
    });
    let app = app_route(s(), "/order", exact(&["order"]), max_body)
        .or(app_route(s(), "/user", exact(&["user"]), max_body))
        .unify()
        .or(app_route(s(), "/v1/orders", exact(&["v1", "orders"]), max_body))
        .unify()
        .or(app_route(
            s(),
            "/v1/orders/{order_id}",
            with_id(&["v1", "orders"]),
            max_body,
        ))
        .unify()
        .or(app_route(
            s(),
            "/v1/commands/{command_id}",
            with_id(&["v1", "commands"]),
            max_body,
        ))
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
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some() {
        ApiError::bad_request("header", "a header is not valid text")
    } else {
        ApiError::new(400, format!("bad request: {rejection:?}"))
    };
    Ok(error_reply(&error))
}
