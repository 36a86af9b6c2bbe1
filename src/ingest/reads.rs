//! The reads: users, orders and command outcomes through the [`super::ports::Read`] port,
//! with the long polls (`wait_ms`) and read-your-writes: a read of a user (by uid, or by a
//! condition naming its uid, as the seed's `type=R` does) or of an order this replica just
//! wrote waits, bounded, until the write reached MySQL.

use super::command_status::{self, CommandView};
use super::ids;
use super::ports::MAX_ROWS;
use super::reply::{eventual, json_reply, unavailable};
use super::requests::ApiError;
use super::state::IngestState;
use crate::topology::record::{Column, Predicate, UserRow, Value};
use serde_json::json;
use std::time::{Duration, Instant};
use warp::http::StatusCode;
use warp::reply::Response;

/// How often a long poll reads again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The users matching `condition`, at most `limit`; a failed read is 503.
async fn users(state: &IngestState, condition: &[Predicate], limit: usize) -> Result<Vec<UserRow>, ApiError> {
    state
        .reader
        .users(condition, limit)
        .await
        .map_err(|e| unavailable(e.to_string()))
}

/// The users matching `condition` (the seed's `type=R`, `GET /v1/users?...`). A condition
/// naming a uid reads this replica's own writes to that user, as `GET /v1/users/{uid}`
/// does; a condition on other columns reads what MySQL holds now.
pub(super) async fn read_users(state: &IngestState, condition: &[Predicate]) -> Result<Response, ApiError> {
    for predicate in condition.iter().filter(|p| p.column == Column::Uid) {
        if let Value::Int(uid) = predicate.value {
            await_own_write(state, uid).await;
        }
    }
    let users = users(state, condition, MAX_ROWS).await?;
    Ok(eventual(json_reply(StatusCode::OK, &users)))
}

/// Waits, up to the read-your-writes bound, until the command this replica last accepted
/// for `uid` is finished, so a client reads what it wrote; notes a delete it saw applied
/// (also one that found no user).
async fn await_own_write(state: &IngestState, uid: i64) {
    let Some(write) = state.pending.users.get(&uid) else {
        return;
    };
    let command_id = write.command_id;
    let deadline = Instant::now() + Duration::from_millis(state.read_your_writes_ms);
    loop {
        let view = match state.reader.command(command_id).await {
            Ok(record) => command_status::view(command_id, record, true),
            Err(_) => return,
        };
        if let Some(view) = view.filter(CommandView::is_finished) {
            state.pending.users.remove_if(&uid, &write);
            // After a delete the user is gone, whether or not there was one to delete
            // (a write after it is then judged against what MySQL holds).
            if write.is_delete || view.changed.iter().any(|u| u.uid == uid && u.deleted) {
                state.pending.deleted.insert(uid, ());
            }
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A write by uid to a user this replica deleted, and that is still gone, is 404: the
/// client that deleted it learns at once that there is nothing to change. Only a pending
/// delete is waited for, so writes after other writes are never slowed. (A user deleted
/// through another replica is judged by the processor, and the command outcome says so.)
pub(super) async fn refuse_write_after_own_delete(state: &IngestState, uid: i64) -> Result<(), ApiError> {
    if state.pending.users.get(&uid).is_some_and(|w| w.is_delete) {
        await_own_write(state, uid).await;
    }
    if !state.pending.deleted.contains(&uid) {
        return Ok(());
    }
    if read_user(state, uid).await?.is_some() {
        state.pending.deleted.remove_if(&uid, &());
        return Ok(());
    }
    Err(ApiError::new(404, format!("user {uid} was deleted")))
}

async fn read_user(state: &IngestState, uid: i64) -> Result<Option<UserRow>, ApiError> {
    let condition = [Predicate {
        column: Column::Uid,
        value: Value::Int(uid),
    }];
    Ok(users(state, &condition, 1).await?.into_iter().next())
}

pub(super) async fn get_user(state: &IngestState, uid: i64) -> Result<Response, ApiError> {
    await_own_write(state, uid).await;
    match read_user(state, uid).await? {
        Some(user) => Ok(eventual(json_reply(StatusCode::OK, &user))),
        None => Err(ApiError::new(
            404,
            format!("no user {uid} (reads are eventually consistent)"),
        )),
    }
}

/// An order's events; waits up to `wait` for its decision, and up to the read-your-writes
/// bound for an order this replica accepted to appear at all.
pub(super) async fn get_order(state: &IngestState, order_id: i64, wait: Duration) -> Result<Response, ApiError> {
    let started = Instant::now();
    let own = state.pending.orders.contains(&order_id);
    let appear_by = started + Duration::from_millis(if own { state.read_your_writes_ms } else { 0 });
    let decided_by = started + wait;
    loop {
        let events = state
            .reader
            .order_events(order_id)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let decided = events.iter().any(|e| e.order_status != "Initialised");
        let now = Instant::now();
        if decided || (now >= decided_by && (!events.is_empty() || now >= appear_by)) {
            if events.is_empty() {
                return Err(ApiError::new(
                    404,
                    format!("no order {order_id} yet (reads are eventually consistent)"),
                ));
            }
            if decided {
                state.pending.orders.remove_if(&order_id, &());
            }
            let status = events.last().map(|e| e.order_status.clone()).unwrap_or_default();
            return Ok(eventual(json_reply(
                StatusCode::OK,
                &json!({"order_id": order_id, "status": status, "events": events}),
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How long after its id was minted a command may still be on its way (published, not yet
/// decided or not yet in MySQL, through an outage): a long poll waits only for such ids.
const COMMAND_IN_FLIGHT_MS: i64 = 15 * 60 * 1000;
/// How far ahead of this replica's clock another ingest replica's clock may run.
const CLOCK_SKEW_MS: i64 = 5_000;

/// A command's outcome; waits up to `wait` for it to finish, when it can be on its way (an
/// id minted in the last [`COMMAND_IN_FLIGHT_MS`]); an id no one can have issued lately
/// (minted long ago, in the future, or not by an ingest at all) is answered at once.
pub(super) async fn get_command(state: &IngestState, command_id: i64, wait: Duration) -> Result<CommandView, ApiError> {
    let accepted_here = state.pending.commands.contains(&command_id);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let in_flight = accepted_here || ids::may_be_in_flight(command_id, now_ms, COMMAND_IN_FLIGHT_MS, CLOCK_SKEW_MS);
    let deadline = Instant::now() + if in_flight { wait } else { Duration::ZERO };
    loop {
        let record = state
            .reader
            .command(command_id)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let view = command_status::view(command_id, record, accepted_here);
        match view {
            Some(view) if view.is_finished() || Instant::now() >= deadline => return Ok(view),
            None if Instant::now() >= deadline => {
                return Err(ApiError::new(
                    404,
                    format!("no command {command_id} known yet (reads are eventually consistent)"),
                ))
            }
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}
