//! The MySQL schema: the seed's `User` and `Order_details` tables with its DDL mistakes
//! fixed, BIGINT ids, a per-row version on `User`, a unique key per order event, a
//! tombstone table that keeps deletes from being undone by a replay, and the command
//! outcomes the HTTP API reports (`Command_outcome`, `Command_user`). `apply` is
//! idempotent (every statement is `IF NOT EXISTS`) and records the schema version.

use super::DbError;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;

/// The version `apply` brings a database to.
pub const SCHEMA_VERSION: u32 = 2;

pub const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS `User` (
        `uid` BIGINT NOT NULL,
        `lname` VARCHAR(15) NOT NULL,
        `name` VARCHAR(15) NOT NULL,
        `credit_limit` BIGINT NOT NULL,
        `credit_balance` BIGINT NOT NULL,
        `version` BIGINT UNSIGNED NOT NULL DEFAULT 0,
        PRIMARY KEY (`uid`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS `Order_details` (
        `eventid` BIGINT NOT NULL AUTO_INCREMENT,
        `orderid` BIGINT NOT NULL,
        `uid` BIGINT NOT NULL,
        `order_status` VARCHAR(15) NOT NULL,
        `event_timestamp` VARCHAR(40) NOT NULL,
        `order_amount` BIGINT NOT NULL,
        `order_notes` VARCHAR(100) NOT NULL,
        PRIMARY KEY (`eventid`),
        UNIQUE KEY `uq_order_event` (`orderid`, `order_status`),
        KEY `ix_order_uid` (`uid`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS `User_tombstone` (
        `uid` BIGINT NOT NULL,
        `version` BIGINT UNSIGNED NOT NULL,
        PRIMARY KEY (`uid`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS `Command_outcome` (
        `command_id` BIGINT NOT NULL,
        `partition_id` INT NOT NULL,
        `partitions` INT NOT NULL,
        PRIMARY KEY (`command_id`, `partition_id`)
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS `Command_user` (
        `command_id` BIGINT NOT NULL,
        `uid` BIGINT NOT NULL,
        `version` BIGINT UNSIGNED NULL,
        `deleted` BOOLEAN NOT NULL DEFAULT FALSE,
        `reason` VARCHAR(255) NULL,
        PRIMARY KEY (`command_id`, `uid`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    "CREATE TABLE IF NOT EXISTS `creditstream_schema` (
        `version` INT NOT NULL,
        `applied_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        PRIMARY KEY (`version`)
    ) ENGINE=InnoDB",
];

/// Creates or migrates the tables; safe to run any number of times.
pub async fn apply(pool: &Pool) -> Result<u32, DbError> {
    let mut conn = pool.get_conn().await?;
    for statement in STATEMENTS {
        conn.query_drop(*statement).await?;
    }
    conn.exec_drop(
        "INSERT IGNORE INTO `creditstream_schema` (`version`) VALUES (?)",
        (SCHEMA_VERSION,),
    )
    .await?;
    let version: Option<u32> = conn
        .query_first("SELECT MAX(`version`) FROM `creditstream_schema`")
        .await?;
    Ok(version.unwrap_or(0))
}
