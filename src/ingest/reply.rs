//! Replies: JSON bodies, the headers that go with them, and every error as JSON
//! `{error, field}`, with `Allow` on a 405 and `Retry-After` on a 503.

use super::contract;
use super::requests::ApiError;
use crate::metrics::metrics;
use serde::Serialize;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

pub(super) fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

pub(super) fn with_header(mut response: Response, name: &'static str, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

pub(super) fn error_reply(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    let response = json_reply(status, error);
    match (error.status, &error.allow) {
        (503, _) => with_header(response, "retry-after", "1"),
        (405, Some(allow)) => with_header(response, "allow", allow),
        _ => response,
    }
}

pub(super) fn eventual(response: Response) -> Response {
    with_header(response, "x-consistency", "eventual")
}

pub(super) fn unavailable(message: impl Into<String>) -> ApiError {
    metrics().ingest_unavailable.inc();
    ApiError::new(503, message)
}

pub(super) fn publish_failed(e: super::ports::PublishError) -> ApiError {
    if e.is_retriable() {
        unavailable(e.to_string())
    } else {
        ApiError::new(500, e.to_string())
    }
}

impl ApiError {
    pub(super) fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// 405, with the `Allow` header the route's methods make.
    pub(super) fn method_not_allowed(route: &str, method: &str) -> Self {
        let allow = contract::allowed_methods(route);
        let mut error = ApiError::new(405, format!("method {method} is not allowed here; allowed: {allow}"));
        error.allow = Some(allow);
        error
    }
}
