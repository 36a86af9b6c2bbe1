//! The reads behind the HTTP API. They see what the sink has written, so they are
//! eventually consistent with the topics. Column names come from [`Column::as_str`] (the
//! allow-list); every value is a parameter.

use super::DbError;
use crate::topology::record::{Predicate, UserRow, Value as ColumnValue};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Value};
use serde::Serialize;

/// Most rows a condition read returns.
pub const MAX_ROWS: usize = 1000;

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
pub async fn order_events(pool: &Pool, order_id: i64) -> Result<Vec<OrderEvent>, DbError> {
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

/// Whether the database answers.
pub async fn ping(pool: &Pool) -> bool {
    match pool.get_conn().await {
        Ok(mut conn) => conn.ping().await.is_ok(),
        Err(_) => false,
    }
}

/// `(orderid, order_status)` of every order event, for the invariant checker.
pub async fn all_order_events(pool: &Pool) -> Result<Vec<(i64, String)>, DbError> {
    let mut conn = pool.get_conn().await?;
    Ok(conn
        .query("SELECT `orderid`, `order_status` FROM `Order_details`")
        .await?)
}
