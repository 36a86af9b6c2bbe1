//! The HTTP ceiling: a warp server answering `POST /v1/orders` with a fixed 202 and
//! nothing else (no validation, no id, no Kafka). What a load tool reaches here is the
//! most the ingest could reach on the machine; the real route's figure over this one is
//! what validating and producing cost. Run as `creditstream-bench http-ceiling`.

use creditstream::shutdown::Shutdown;
use std::net::SocketAddr;
use warp::http::StatusCode;
use warp::Filter;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {message}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub message: String,
}

/// Serves the ceiling route on `addr` until `shutdown`.
pub async fn run(addr: SocketAddr, shutdown: Shutdown) -> Result<(), BindError> {
    let route = warp::post()
        .and(warp::path!("v1" / "orders"))
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .map(|_body: bytes::Bytes| {
            warp::reply::with_status(
                warp::reply::with_header(r#"{"status":"Initialised"}"#, "content-type", "application/json"),
                StatusCode::ACCEPTED,
            )
        });
    let (_, server) = warp::serve(route)
        .try_bind_with_graceful_shutdown(addr, shutdown.wait())
        .map_err(|e| BindError {
            addr,
            message: e.to_string(),
        })?;
    server.await;
    Ok(())
}
