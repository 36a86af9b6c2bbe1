//! The MySQL side: the Kafka consumer that feeds it ([`consumer`], with its rebalance and
//! commit reports in [`rebalance`]), the schema
//! ([`schema`]), the writer that keeps `User` and `Order_details` in step with the topics
//! ([`writer`]) and error classification ([`error`]); the reads the HTTP API serves live
//! with the ingest (`ingest::mysql`). Every statement is parameterised;
//! column names come only from the topology's allow-list.

pub mod consumer;
pub mod error;
pub mod rebalance;
pub mod rows;
pub mod schema;
pub mod writer;

use crate::config::MysqlConfig;
pub use error::DbError;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

/// A connection pool for `cfg.url` with at most `cfg.pool_max` connections.
pub fn pool(cfg: &MysqlConfig) -> Result<Pool, DbError> {
    let opts = Opts::from_url(&cfg.url).map_err(|e| DbError::Fatal(format!("mysql.url: {e}")))?;
    let constraints = PoolConstraints::new(1, cfg.pool_max.max(1)).unwrap_or_default();
    let builder = OptsBuilder::from_opts(opts)
        .pool_opts(PoolOpts::default().with_constraints(constraints))
        .prefer_socket(false)
        .wait_timeout(Some(28_800));
    Ok(Pool::new(builder))
}
