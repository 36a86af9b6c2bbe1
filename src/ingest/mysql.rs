//! The ingest's [`Read`] port on MySQL: the tables the sink writes, so reads are
//! eventually consistent with the topics. Column names come from `Column::as_str` (the
//! allow-list); every value is a parameter.

use super::ports::{CommandRecord, CommandUser, OrderEvent, Read, ReadError, MAX_COMMAND_USERS};
use crate::sink::DbError;
use crate::topology::record::{Predicate, UserRow, Value as ColumnValue};
use futures::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Value};

/// Reads through a connection pool.
#[derive(Clone)]
pub struct MySqlReader {
    pool: Pool,
}

impl MySqlReader {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn unavailable(e: DbError) -> ReadError {
    ReadError(e.to_string())
}

impl Read for MySqlReader {
    fn users<'a>(&'a self, condition: &'a [Predicate], limit: usize) -> BoxFuture<'a, Result<Vec<UserRow>, ReadError>> {
        Box::pin(async move {
            find_users(&self.pool, condition, Some(limit))
                .await
                .map_err(unavailable)
        })
    }

    fn order_events(&self, order_id: i64) -> BoxFuture<'_, Result<Vec<OrderEvent>, ReadError>> {
        Box::pin(async move { order_events(&self.pool, order_id).await.map_err(unavailable) })
    }

    fn command(&self, command_id: i64) -> BoxFuture<'_, Result<CommandRecord, ReadError>> {
        Box::pin(async move { command(&self.pool, command_id).await.map_err(unavailable) })
    }

    fn is_reachable(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            match self.pool.get_conn().await {
                Ok(mut conn) => conn.ping().await.is_ok(),
                Err(_) => false,
            }
        })
    }
}

fn param(value: &ColumnValue) -> Value {
    match value {
        ColumnValue::Int(v) => Value::from(*v),
        ColumnValue::Text(t) => Value::from(t.as_str()),
    }
}

/// The users matching every predicate (all users when there are none), by uid, at most
/// `limit` of them when a limit is given.
pub async fn find_users(pool: &Pool, condition: &[Predicate], limit: Option<usize>) -> Result<Vec<UserRow>, DbError> {
    let mut sql = String::from("SELECT `uid`, `name`, `lname`, `credit_limit`, `credit_balance` FROM `User`");
    for (i, predicate) in condition.iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push('`');
        sql.push_str(predicate.column.as_str());
        sql.push_str("` = ?");
    }
    sql.push_str(" ORDER BY `uid`");
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let params: Vec<Value> = condition.iter().map(|p| param(&p.value)).collect();
    let mut conn = pool.get_conn().await?;
    let rows: Vec<(i64, String, String, i64, i64)> = conn.exec(sql, params).await?;
    Ok(rows
        .into_iter()
        .map(|(uid, name, lname, credit_limit, credit_balance)| UserRow {
            uid,
            name,
            lname,
            credit_limit,
            credit_balance,
        })
        .collect())
}

/// Every event of one order, oldest first.
async fn order_events(pool: &Pool, order_id: i64) -> Result<Vec<OrderEvent>, DbError> {
    let mut conn = pool.get_conn().await?;
    let rows: Vec<(i64, i64, i64, String, String, i64, String)> = conn
        .exec(
            "SELECT `eventid`, `orderid`, `uid`, `order_status`, `event_timestamp`, `order_amount`, `order_notes` \
             FROM `Order_details` WHERE `orderid` = ? ORDER BY `eventid`",
            (order_id,),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(eventid, orderid, uid, order_status, event_timestamp, order_amount, order_notes)| OrderEvent {
                eventid,
                orderid,
                uid,
                order_status,
                event_timestamp,
                order_amount,
                order_notes,
            },
        )
        .collect())
}

/// The partitions that finished a command and the users it changed or refused.
async fn command(pool: &Pool, command_id: i64) -> Result<CommandRecord, DbError> {
    let mut conn = pool.get_conn().await?;
    let done: Option<(i64, Option<i64>)> = conn
        .exec_first(
            "SELECT COUNT(*), MAX(`partitions`) FROM `Command_outcome` WHERE `command_id` = ?",
            (command_id,),
        )
        .await?;
    let rows: Vec<(i64, Option<u64>, bool, Option<String>)> = conn
        .exec(
            format!(
                "SELECT `uid`, `version`, `deleted`, `reason` FROM `Command_user` WHERE `command_id` = ? \
                 ORDER BY `uid` LIMIT {}",
                MAX_COMMAND_USERS + 1
            ),
            (command_id,),
        )
        .await?;
    let (partitions_done, partitions) = done.unwrap_or((0, None));
    let truncated = rows.len() > MAX_COMMAND_USERS;
    Ok(CommandRecord {
        partitions_done: u32::try_from(partitions_done).unwrap_or(u32::MAX),
        partitions: partitions.and_then(|p| u32::try_from(p).ok()),
        users: rows
            .into_iter()
            .take(MAX_COMMAND_USERS)
            .map(|(uid, version, deleted, reason)| CommandUser {
                uid,
                version,
                deleted,
                reason,
            })
            .collect(),
        truncated,
    })
}
