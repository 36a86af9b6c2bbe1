//! `creditstream verify`: reads the topics (read_committed), the changelog and the MySQL
//! tables, and reports every broken invariant ([`checks`]). Used by the fault runner after
//! the system has gone quiet; it must find nothing.

pub mod checks;

use crate::config::Config;
use crate::ingest::mysql::find_users;
use crate::runtime::topic_reader::{read_to_end, ReadError, TopicRecord};
use crate::sink::DbError;
use crate::topology::codec::{decode, CreditInput, InputTopic, RawRecord};
use crate::topology::definition::TopologyDefinition;
use crate::topology::processor::RecordMeta;
use crate::topology::record::{Decision, Order, OrderId, UserChange};
use crate::topology::state::{self, UserState, USER_PREFIX};
use checks::{check, decided_without_acknowledgement, Observed, Violation};
use mysql_async::prelude::Queryable;
use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a verification found, with the counts it looked at.
#[derive(Debug)]
pub struct Report {
    pub orders: usize,
    pub decisions: usize,
    pub user_changes: usize,
    pub undecodable: usize,
    /// Decided orders the ingest had answered 503 for (see [`decided_without_acknowledgement`]).
    pub decided_unacknowledged: usize,
    pub violations: Vec<Violation>,
}

fn decode_all<T: DeserializeOwned>(records: &[TopicRecord], undecodable: &mut usize) -> Vec<T> {
    records
        .iter()
        .filter_map(|r| match r.value.as_deref().map(serde_json::from_slice::<T>) {
            Some(Ok(v)) => Some(v),
            _ => {
                *undecodable += 1;
                None
            }
        })
        .collect()
}

/// Sorts records by (partition, offset), the order each partition was written in.
fn in_partition_order(mut records: Vec<TopicRecord>) -> Vec<TopicRecord> {
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// Collects everything and checks it. `acknowledged` are the order ids the load generator got 202s for.
pub async fn verify(
    config: &Config,
    def: &TopologyDefinition,
    acknowledged: Option<Vec<OrderId>>,
) -> Result<Report, VerifyError> {
    let timeout = Duration::from_secs(120);
    let kafka = config.kafka.clone();
    let def2 = def.clone();
    let topics = tokio::task::spawn_blocking(move || -> Result<_, ReadError> {
        Ok((
            in_partition_order(read_to_end(&kafka, &def2.inputs.orders, timeout)?),
            in_partition_order(read_to_end(&kafka, &def2.outputs.decisions, timeout)?),
            in_partition_order(read_to_end(&kafka, &def2.outputs.user_changes, timeout)?),
            in_partition_order(read_to_end(&kafka, &def2.store.changelog, timeout)?),
            read_to_end(&kafka, &def2.outputs.dead_letters, timeout)?,
        ))
    })
    .await
    .map_err(|e| ReadError::Timeout {
        topic: format!("reader task: {e}"),
        waited: timeout,
    })??;
    let (orders, decisions, changes, changelog, dead_letters) = topics;
    let mut undecodable = 0;
    // An order record is what the processor's own decoder makes of it: an order to decide,
    // or a record it must reject (and dead-letter).
    let mut rejected_orders = Vec::new();
    let orders: Vec<Order> = orders
        .iter()
        .filter_map(|r| {
            let raw = RawRecord {
                topic: InputTopic::Orders,
                meta: RecordMeta {
                    partition: r.partition as u32,
                    offset: r.offset,
                    timestamp_ms: 0,
                },
                key: r.key.clone(),
                value: r.value.clone(),
            };
            match decode(&raw, def.partitions) {
                Ok(CreditInput::Order(order)) => Some(order),
                _ => {
                    rejected_orders.push((r.partition, r.offset));
                    None
                }
            }
        })
        .collect();
    let order_dead_letters: Vec<(i32, i64)> = dead_letters
        .iter()
        .filter(|l| l.header("source.topic") == Some(def.inputs.orders.as_str()))
        .filter_map(|l| {
            let partition = l.header("source.partition")?.parse().ok()?;
            let offset = l.header("source.offset")?.parse().ok()?;
            Some((partition, offset))
        })
        .collect();
    let decisions: Vec<Decision> = decode_all(&decisions, &mut undecodable);
    let user_changes: Vec<UserChange> = decode_all(&changes, &mut undecodable);
    let mut state_by_uid = std::collections::BTreeMap::new();
    for record in changelog {
        let Some(key) = record.key.as_deref() else { continue };
        if !key.starts_with(USER_PREFIX) || key.len() != 9 {
            continue;
        }
        let uid = i64::from_be_bytes(key[1..9].try_into().unwrap_or_default());
        match record.value.as_deref().map(state::decode::<UserState>) {
            Some(Ok(s)) => {
                state_by_uid.insert(uid, s);
            }
            Some(Err(_)) => undecodable += 1,
            None => {
                state_by_uid.remove(&uid);
            }
        }
    }
    let pool = crate::sink::pool(&config.mysql)?;
    let db_users = find_users(&pool, &[], None).await?;
    let mut conn = pool.get_conn().await.map_err(DbError::from)?;
    let db_order_events: Vec<(i64, String)> = conn
        .query("SELECT `orderid`, `order_status` FROM `Order_details`")
        .await
        .map_err(DbError::from)?;
    drop(conn);
    let _ = pool.disconnect().await;
    let observed = Observed {
        acknowledged,
        orders,
        rejected_orders,
        order_dead_letters,
        decisions,
        user_changes,
        state: state_by_uid,
        db_users,
        db_order_events,
    };
    Ok(Report {
        orders: observed.orders.len(),
        decisions: observed.decisions.len(),
        user_changes: observed.user_changes.len(),
        undecodable,
        decided_unacknowledged: decided_without_acknowledgement(&observed),
        violations: check(&observed),
    })
}
