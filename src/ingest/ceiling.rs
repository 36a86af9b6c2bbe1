//! The HTTP ceiling of the benchmark: the same warp server answering `POST /v1/orders`
//! with a fixed 202 and nothing else (no validation, no id, no Kafka). What a load tool
//! reaches here is the most the ingest could reach on the machine; the real route's
//! figure over this one is what validating and producing cost.

use super::IngestError;
use crate::shutdown::Shutdown;
use std::net::SocketAddr;
use warp::http::StatusCode;
use warp::Filter;

/// Serves the ceiling route on `addr` until `shutdown`.
pub async fn run(addr: SocketAddr, shutdown: Shutdown) -> Result<(), IngestError> {
    let route = warp::post()
        .and(warp::path!("v1" / "orders"))
        .and(warp::body::bytes())
        .map(|_body: bytes::Bytes| {
            warp::reply::with_status(
                warp::reply::with_header(r#"{"status":"Initialised"}"#, "content-type", "application/json"),
                StatusCode::ACCEPTED,
            )
        });
    let (_, server) = warp::serve(route)
        .try_bind_with_graceful_shutdown(addr, shutdown.wait())
        .map_err(|e| IngestError::Bind {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    server.await;
    Ok(())
}
