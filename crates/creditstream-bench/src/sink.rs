//! The sink, measured against a plain loader on the same MariaDB server and the same rows.
//! The rows: per order an `Initialised` and a decision event (`Order_details`, both from
//! the order's decision record), and one `User` row per user. The sink (a child process, its own group and database) reads them
//! from fresh topics; its rate runs from the first row visible to the last. The loader
//! writes the same rows from memory with plain multi-row INSERTs, one transaction per
//! sink-sized batch, into a second database: no Kafka, no idempotence guards.

use crate::children::Children;
use crate::error::BenchError;
use crate::load;
use crate::options::BenchOptions;
use crate::run;
use crate::systems::own_command;
use creditstream::config::{Config, MysqlConfig};
use creditstream::runtime::admin;
use creditstream::sink::consumer::{SinkRecord, SinkTopic};
use creditstream::sink::rows::rows_of;
use creditstream::sink::writer::order_events_statement;
use creditstream::sink::{schema, DbError};
use creditstream::topology::codec::to_json;
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::partitioner::{partition_for, uid_key};
use creditstream::topology::record::{ChangeCause, Decision, OrderStatus, UserChange, UserRow, NOTE_COMPLETED};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Rows per INSERT statement, the same as the sink's writer.
const ROWS_PER_STATEMENT: usize = 500;
const TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkResult {
    pub repetition: u32,
    pub orders: u64,
    pub users: u64,
    pub rows: u64,
    pub batch_size: usize,
    pub correct: bool,
    pub problem: Option<String>,
    pub sink_rows_per_s: Option<f64>,
    pub loader_rows_per_s: Option<f64>,
}

/// The records the sink reads, in the order they are produced.
fn records(orders: u64, users: u64) -> Vec<SinkRecord> {
    let users = users.clamp(1, orders.max(1));
    let mut out = Vec::with_capacity((2 * orders + users) as usize);
    let record = |topic, value| SinkRecord {
        topic,
        partition: 0,
        offset: 0,
        value: Some(value),
    };
    let now = load::now_ms();
    for uid in 1..=users as i64 {
        let user = UserRow {
            uid,
            name: format!("U{uid}"),
            lname: "Bench".into(),
            credit_limit: 500,
            credit_balance: 500,
        };
        let change = UserChange::Upserted {
            version: 1,
            cause: ChangeCause::Created,
            user,
        };
        out.push(record(SinkTopic::UserChanges, to_json(&change)));
    }
    for n in 0..orders as i64 {
        let uid = n % users as i64 + 1;
        let decision = Decision {
            order_id: n + 1,
            uid,
            amount: 1,
            status: OrderStatus::Completed,
            note: NOTE_COMPLETED.into(),
            balance_after: Some(499),
            order_timestamp_ms: now,
            decided_at_ms: now,
        };
        out.push(record(SinkTopic::Decisions, to_json(&decision)));
    }
    out
}

fn uid_of(record: &SinkRecord) -> i64 {
    let value = record.value.as_deref().unwrap_or_default();
    match record.topic {
        SinkTopic::UserChanges => serde_json::from_slice::<UserChange>(value)
            .ok()
            .and_then(|c| c.uid())
            .unwrap_or(0),
        SinkTopic::Decisions => serde_json::from_slice::<serde_json::Value>(value)
            .ok()
            .and_then(|v| v.get("uid")?.as_i64())
            .unwrap_or(0),
    }
}

fn produce(config: &Config, def: &TopologyDefinition, records: &[SinkRecord]) -> Result<(), BenchError> {
    let loader = load::Loader::new(&config.kafka)?;
    for (topic, name) in [
        (SinkTopic::UserChanges, &def.outputs.user_changes),
        (SinkTopic::Decisions, &def.outputs.decisions),
    ] {
        let of_topic: Vec<&SinkRecord> = records.iter().filter(|r| r.topic == topic).collect();
        loader.produce(name, of_topic.len(), None, |i| {
            let key = uid_key(uid_of(of_topic[i]));
            load::Outgoing {
                partition: partition_for(&key, def.partitions) as i32,
                key,
                value: of_topic[i].value.clone().unwrap_or_default(),
            }
        })?;
    }
    Ok(())
}

/// `mysql.url` with its database replaced by `database`.
fn url_for(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let host_end = base
        .strip_prefix("mysql://")
        .and_then(|rest| rest.find('/'))
        .map_or(base.len(), |i| i + "mysql://".len());
    format!("{}/{database}{query}", &base[..host_end])
}

fn pool_for(url: &str) -> Result<Pool, DbError> {
    creditstream::sink::pool(&MysqlConfig {
        url: url.to_string(),
        pool_max: 4,
    })
}

async fn count_rows(pool: &Pool) -> Result<u64, DbError> {
    let mut conn = pool.get_conn().await?;
    let events: Option<u64> = conn.query_first("SELECT COUNT(*) FROM `Order_details`").await?;
    let users: Option<u64> = conn.query_first("SELECT COUNT(*) FROM `User`").await?;
    Ok(events.unwrap_or(0) + users.unwrap_or(0))
}

/// The plain loader: the same rows, batch by batch, plain INSERTs.
async fn load_plainly(pool: &Pool, records: &[SinkRecord], batch_size: usize) -> Result<Duration, DbError> {
    let started = Instant::now();
    let mut conn = pool.get_conn().await?;
    for batch in records.chunks(batch_size.max(1)) {
        let rows = rows_of(batch);
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        for chunk in rows.order_events.chunks(ROWS_PER_STATEMENT) {
            let (sql, params) = order_events_statement("INSERT", chunk);
            tx.exec_drop(sql, params).await?;
        }
        let users: Vec<&UserRow> = rows
            .users
            .values()
            .filter_map(|w| match w {
                creditstream::sink::rows::UserWrite::Upsert { user, .. } => Some(user),
                creditstream::sink::rows::UserWrite::Delete { .. } => None,
            })
            .collect();
        for chunk in users.chunks(ROWS_PER_STATEMENT) {
            let placeholders = vec!["(?, ?, ?, ?, ?, 1)"; chunk.len()].join(", ");
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|u| {
                    [
                        Value::from(u.uid),
                        Value::from(u.lname.as_str()),
                        Value::from(u.name.as_str()),
                        Value::from(u.credit_limit),
                        Value::from(u.credit_balance),
                    ]
                })
                .collect();
            tx.exec_drop(
                format!(
                    "INSERT INTO `User` (`uid`, `lname`, `name`, `credit_limit`, `credit_balance`, `version`) VALUES {placeholders}"
                ),
                params,
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

/// Waits until `pool`'s tables hold `expected` rows; the time from the first row to the last.
async fn watch_rows(pool: &Pool, expected: u64, sink: &mut Children) -> Result<Duration, String> {
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    loop {
        let rows = count_rows(pool).await.map_err(|e| e.to_string())?;
        if rows > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if rows >= expected {
            return Ok(first.map_or(Duration::ZERO, |f| f.elapsed()));
        }
        if sink.any_exited() {
            return Err("the sink exited".into());
        }
        if started.elapsed() > TIMEOUT {
            return Err(format!("{rows} of {expected} rows after {TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Measures the sink and the plain loader on `orders` orders and `users` users.
pub fn run(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    tag: &str,
    repetition: u32,
) -> Result<SinkResult, BenchError> {
    let runtime = tokio::runtime::Handle::current();
    let (def, dir) = run::prepare(config, base, opts, tag, base.processing_guarantee)?;
    let topology = dir.join("topology.toml");
    let records = records(opts.sink_orders, opts.users);
    let users = opts.users.clamp(1, opts.sink_orders.max(1));
    let expected = 2 * opts.sink_orders + users;
    produce(config, &def, &records)?;

    let database = |suffix: &str| format!("{}_{suffix}", tag.replace('-', "_"));
    let (sink_db, loader_db) = (database("sink"), database("loader"));
    let admin_pool = pool_for(&config.mysql.url).map_err(|e| BenchError::Setup(e.to_string()))?;
    let batch_size = config.sink.batch_size;
    let outcome = runtime.block_on(async {
        let mut conn = admin_pool.get_conn().await?;
        for db in [&sink_db, &loader_db] {
            conn.query_drop(format!("CREATE DATABASE `{db}`")).await?;
        }
        drop(conn);
        let sink_url = url_for(&config.mysql.url, &sink_db);
        let loader_url = url_for(&config.mysql.url, &loader_db);
        let sink_pool = pool_for(&sink_url)?;
        let loader_pool = pool_for(&loader_url)?;
        schema::apply(&sink_pool).await?;
        schema::apply(&loader_pool).await?;

        let mut command = own_command(&opts.creditstream_bin, "sink", &topology, config, &dir.join("sink.log"))
            .map_err(|e| DbError::Fatal(e.to_string()))?;
        command
            .env("CREDITSTREAM__MYSQL__URL", &sink_url)
            .env("CREDITSTREAM__SINK__GROUP_ID", format!("{tag}-sink"))
            .env("CREDITSTREAM__SINK__METRICS_LISTEN", "127.0.0.1:0");
        let mut sink = Children::new();
        sink.spawn(command).map_err(|e| DbError::Fatal(e.to_string()))?;
        let sink_time = watch_rows(&sink_pool, expected, &mut sink).await;
        drop(sink);
        let sink_rows = count_rows(&sink_pool).await?;
        let loader_time = load_plainly(&loader_pool, &records, batch_size).await?;
        let loader_rows = count_rows(&loader_pool).await?;
        let _ = sink_pool.disconnect().await;
        let _ = loader_pool.disconnect().await;
        Ok::<_, DbError>((sink_time, sink_rows, loader_time, loader_rows))
    });
    let _ = runtime.block_on(async {
        if let Ok(mut conn) = admin_pool.get_conn().await {
            for db in [&sink_db, &loader_db] {
                let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{db}`")).await;
            }
        }
        admin_pool.disconnect().await
    });
    let _ = runtime.block_on(admin::delete_topics(&config.kafka, &def));
    let rate = |rows: u64, time: Duration| rows as f64 / time.as_secs_f64().max(1e-3);
    let (verdict, sink_rate, loader_rate) = match outcome {
        Err(e) => (Err(e.to_string()), None, None),
        Ok((Err(problem), ..)) => (Err(problem), None, None),
        Ok((Ok(sink_time), sink_rows, loader_time, loader_rows)) => {
            if sink_rows != expected || loader_rows != expected {
                (
                    Err(format!(
                        "expected {expected} rows; the sink wrote {sink_rows}, the loader {loader_rows}"
                    )),
                    None,
                    None,
                )
            } else {
                (
                    Ok(()),
                    Some(rate(expected, sink_time)),
                    Some(rate(expected, loader_time)),
                )
            }
        }
    };
    Ok(SinkResult {
        repetition,
        orders: opts.sink_orders,
        users,
        rows: expected,
        batch_size,
        correct: verdict.is_ok(),
        problem: verdict.err(),
        sink_rows_per_s: sink_rate,
        loader_rows_per_s: loader_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            url_for("mysql://u:p@127.0.0.1:3306/demodb", "other"),
            "mysql://u:p@127.0.0.1:3306/other"
        );
        assert_eq!(
            url_for("mysql://u:p@h:1/demodb?pool_min=1", "x"),
            "mysql://u:p@h:1/x?pool_min=1"
        );
        assert_eq!(url_for("mysql://u:p@h:1", "x"), "mysql://u:p@h:1/x");
    }

    #[test]
    fn the_rows_are_two_events_per_order_and_one_row_per_user() {
        let rows = rows_of(&records(10, 4));
        assert_eq!(rows.order_events.len(), 20);
        assert_eq!(rows.users.len(), 4);
    }
}
