//! The ingest's two ports: [`Publish`], where accepted writes go (Kafka in production,
//! [`super::kafka::KafkaPublisher`]), and [`Read`], where reads come from (the tables the
//! sink maintains, [`super::mysql::MySqlReader`]). The HTTP handlers see only these
//! traits, so they are tested with neither a broker nor a database.

use crate::topology::record::{Predicate, UserRow};
use futures::future::BoxFuture;
use serde::Serialize;

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker did not acknowledge in time or is unreachable: retry later (HTTP 503).
    #[error("kafka unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the record itself (too large, no such topic): retrying will not help.
    #[error("kafka refused the record: {0}")]
    Refused(String),
}

impl PublishError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, PublishError::Unavailable(_))
    }
}

/// Publishes records and reports broker acknowledgement.
pub trait Publish: Send + Sync + 'static {
    /// Completes once the broker acknowledged the record, or fails.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        partition: Option<i32>,
        key: &'a [u8],
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<Delivered, PublishError>>;
    fn is_reachable(&self) -> BoxFuture<'_, bool>;
}

/// A read failed; the client may retry (HTTP 503).
#[derive(Debug, thiserror::Error)]
#[error("reads unavailable: {0}")]
pub struct ReadError(pub String);

/// One event of an order, as `Order_details` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderEvent {
    pub eventid: i64,
    pub orderid: i64,
    pub uid: i64,
    pub order_status: String,
    pub event_timestamp: String,
    pub order_amount: i64,
    pub order_notes: String,
}

/// A user a command changed (`version` set) or refused (`reason` set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandUser {
    pub uid: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What has been recorded of a command's outcome so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandRecord {
    /// Partitions that finished the command.
    pub partitions_done: u32,
    /// How many partitions report on it; `None` until the first one did.
    pub partitions: Option<u32>,
    /// The users it changed or refused, by uid, at most [`MAX_COMMAND_USERS`].
    pub users: Vec<CommandUser>,
    /// More users than `users` holds were recorded.
    pub truncated: bool,
}

/// Most users a command's outcome lists.
pub const MAX_COMMAND_USERS: usize = 1000;

/// Most rows a condition read returns.
pub const MAX_ROWS: usize = 1000;

/// Reads what the sink has written: eventually consistent with the topics.
pub trait Read: Send + Sync + 'static {
    /// The users matching every predicate (all when there are none), by uid, at most `limit`.
    fn users<'a>(&'a self, condition: &'a [Predicate], limit: usize) -> BoxFuture<'a, Result<Vec<UserRow>, ReadError>>;
    /// Every event of one order, oldest first.
    fn order_events(&self, order_id: i64) -> BoxFuture<'_, Result<Vec<OrderEvent>, ReadError>>;
    /// What the processor reported of one command.
    fn command(&self, command_id: i64) -> BoxFuture<'_, Result<CommandRecord, ReadError>>;
    fn is_reachable(&self) -> BoxFuture<'_, bool>;
}
