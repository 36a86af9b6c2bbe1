//! The MySQL writer: one database transaction per batch, multi-row statements, and
//! idempotent by construction. An order event is `INSERT IGNORE`d under its unique key
//! (orderid, order_status); a user row changes only for a newer version, and a delete
//! leaves a tombstone that outranks any older upsert replayed later.
//! Invariant: writing the same batch twice, or any older batch again, changes nothing.

use super::rows::{rows_of, BatchRows, OrderEventRow, UserWrite};
use super::DbError;
use crate::metrics::metrics;
use crate::sink::consumer::{BatchWriter, SinkRecord};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};
use tracing::warn;

/// Rows per multi-row statement (well under the server's placeholder limit).
const ROWS_PER_STATEMENT: usize = 500;

pub struct MySqlWriter {
    pool: Pool,
}

impl MySqlWriter {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub async fn write_rows(&self, rows: &BatchRows) -> Result<(), DbError> {
        let mut conn = self.pool.get_conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        for chunk in rows.order_events.chunks(ROWS_PER_STATEMENT) {
            let (sql, params) = order_events_statement("INSERT IGNORE", chunk);
            tx.exec_drop(sql, params).await?;
        }
        let upserts: Vec<_> = rows
            .users
            .values()
            .filter_map(|w| match w {
                UserWrite::Upsert { version, user } => Some((version, user)),
                UserWrite::Delete { .. } => None,
            })
            .collect();
        let deletes: Vec<(i64, u64)> = rows
            .users
            .values()
            .filter_map(|w| match w {
                UserWrite::Delete { uid, version } => Some((*uid, *version)),
                UserWrite::Upsert { .. } => None,
            })
            .collect();
        for chunk in deletes.chunks(ROWS_PER_STATEMENT) {
            let placeholders = vec!["(?, ?)"; chunk.len()].join(", ");
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|(uid, v)| [Value::from(*uid), Value::from(*v)])
                .collect();
            tx.exec_drop(
                format!(
                    "INSERT INTO `User_tombstone` (`uid`, `version`) VALUES {placeholders} \
                     ON DUPLICATE KEY UPDATE `version` = GREATEST(`version`, VALUES(`version`))"
                ),
                params,
            )
            .await?;
        }
        for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
            let placeholders = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|(version, u)| {
                    [
                        Value::from(u.uid),
                        Value::from(u.lname.as_str()),
                        Value::from(u.name.as_str()),
                        Value::from(u.credit_limit),
                        Value::from(u.credit_balance),
                        Value::from(**version),
                    ]
                })
                .collect();
            // Each column is guarded by the version; `version` is assigned last, as MySQL
            // evaluates the assignments left to right.
            tx.exec_drop(
                format!(
                    "INSERT INTO `User` (`uid`, `lname`, `name`, `credit_limit`, `credit_balance`, `version`) VALUES {placeholders} \
                     ON DUPLICATE KEY UPDATE \
                     `lname` = IF(VALUES(`version`) > `version`, VALUES(`lname`), `lname`), \
                     `name` = IF(VALUES(`version`) > `version`, VALUES(`name`), `name`), \
                     `credit_limit` = IF(VALUES(`version`) > `version`, VALUES(`credit_limit`), `credit_limit`), \
                     `credit_balance` = IF(VALUES(`version`) > `version`, VALUES(`credit_balance`), `credit_balance`), \
                     `version` = GREATEST(`version`, VALUES(`version`))"
                ),
                params,
            )
            .await?;
        }
        // Deletes, and upserts older than a delete that came before them (a replay), end
        // with no row: a tombstone outranks every version up to its own.
        let touched: Vec<i64> = rows.users.keys().copied().collect();
        for chunk in touched.chunks(ROWS_PER_STATEMENT) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let params: Vec<Value> = chunk.iter().map(|uid| Value::from(*uid)).collect();
            tx.exec_drop(
                format!(
                    "DELETE `u` FROM `User` AS `u` JOIN `User_tombstone` AS `t` ON `t`.`uid` = `u`.`uid` \
                     WHERE `t`.`version` >= `u`.`version` AND `u`.`uid` IN ({placeholders})"
                ),
                params,
            )
            .await?;
        }
        for chunk in rows.command_users.chunks(ROWS_PER_STATEMENT) {
            let placeholders = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|r| {
                    [
                        Value::from(r.command_id),
                        Value::from(r.uid),
                        Value::from(r.version),
                        Value::from(r.deleted),
                        Value::from(r.reason.as_deref()),
                    ]
                })
                .collect();
            tx.exec_drop(
                format!(
                    "INSERT IGNORE INTO `Command_user` (`command_id`, `uid`, `version`, `deleted`, `reason`) \
                     VALUES {placeholders}"
                ),
                params,
            )
            .await?;
        }
        for chunk in rows.commands_done.chunks(ROWS_PER_STATEMENT) {
            let placeholders = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|r| {
                    [
                        Value::from(r.command_id),
                        Value::from(r.partition),
                        Value::from(r.partitions),
                    ]
                })
                .collect();
            tx.exec_drop(
                format!(
                    "INSERT IGNORE INTO `Command_outcome` (`command_id`, `partition_id`, `partitions`) \
                     VALUES {placeholders}"
                ),
                params,
            )
            .await?;
        }
        tx.commit().await?;
        let m = metrics();
        m.sink_rows
            .with_label_values(&["Order_details"])
            .inc_by(rows.order_events.len() as u64);
        m.sink_rows.with_label_values(&["User"]).inc_by(rows.users.len() as u64);
        Ok(())
    }
}

/// One multi-row insert of `chunk` into `Order_details`. The sink uses `INSERT IGNORE`
/// (idempotent under the unique key); the benchmark's plain loader, a bare `INSERT`.
pub fn order_events_statement(verb: &str, chunk: &[OrderEventRow]) -> (String, Vec<Value>) {
    let placeholders = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
    let params = chunk
        .iter()
        .flat_map(|r| {
            [
                Value::from(r.orderid),
                Value::from(r.uid),
                Value::from(r.status.as_str()),
                Value::from(r.event_timestamp.as_str()),
                Value::from(r.amount),
                Value::from(r.notes.as_str()),
            ]
        })
        .collect();
    (
        format!(
            "{verb} INTO `Order_details` \
             (`orderid`, `uid`, `order_status`, `event_timestamp`, `order_amount`, `order_notes`) VALUES {placeholders}"
        ),
        params,
    )
}

impl BatchWriter for MySqlWriter {
    type Error = DbError;

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), DbError> {
        let rows = rows_of(batch);
        if rows.undecodable > 0 {
            warn!(count = rows.undecodable, "sink skipped records it could not decode");
        }
        self.write_rows(&rows).await
    }
}
