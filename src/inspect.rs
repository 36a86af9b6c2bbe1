//! `creditstream state`: what the processor holds, read-only. One user by uid (with its
//! latest decisions, from the tail of its decisions partition), one order's decision by
//! id, every user of a partition, and per-partition counts, each printed as JSON. It reads
//! a replica's stores through [`store_reader`], which never disturbs a running replica, or
//! the state rebuilt from the changelog.
//! Invariant: it never writes anything anywhere.
//!
//! [`store_reader`]: crate::runtime::store_reader

use crate::config::Config;
use crate::runtime::store_reader::{self, PartitionState, StoreReadError};
use crate::runtime::topic_reader::read_tail;
use crate::topology::definition::TopologyDefinition;
use crate::topology::partitioner::{partition_for, uid_key};
use crate::topology::record::{Decision, OrderId, Uid};
use crate::topology::state::{self, OrderSeen, UserState, CURSOR_PREFIX, ORDER_PREFIX, USER_PREFIX};
use crate::topology::store::StoreError;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// Entries read per page while scanning a partition.
const PAGE: usize = 10_000;
/// How far back `get` looks on the user's decisions partition, and how many it shows.
const RECENT_SCAN: i64 = 20_000;
const RECENT_SHOWN: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] StoreReadError),
    #[error("partition {partition} does not exist (the topology has {partitions})")]
    NoSuchPartition { partition: u32, partitions: u32 },
    #[error("partition {partition}, key {key:?}: {reason}")]
    Corrupt {
        partition: u32,
        key: Vec<u8>,
        reason: String,
    },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// What `creditstream state` is asked for.
#[derive(Debug, Clone, Copy)]
pub enum Query {
    User(Uid),
    Order(OrderId),
    /// Every user of one partition, or of all.
    Dump(Option<u32>),
    /// Counts of one partition, or of each.
    Stats(Option<u32>),
}

/// Answers `query` from the stores under `processor.state_dir`, or from the changelog.
/// Partitions without a local store are skipped, unless the query needs that one.
pub fn run(
    config: &Config,
    def: &TopologyDefinition,
    query: Query,
    from_changelog: bool,
    out: &mut impl Write,
) -> Result<(), InspectError> {
    let wanted: Vec<u32> = match query {
        Query::User(uid) => vec![partition_for(&uid_key(uid), def.partitions)],
        Query::Dump(Some(p)) | Query::Stats(Some(p)) if p >= def.partitions => {
            return Err(InspectError::NoSuchPartition {
                partition: p,
                partitions: def.partitions,
            })
        }
        Query::Dump(Some(p)) | Query::Stats(Some(p)) => vec![p],
        Query::Order(_) | Query::Dump(None) | Query::Stats(None) => (0..def.partitions).collect(),
    };
    let views: Vec<PartitionState> = if from_changelog {
        let timeout = Duration::from_secs(60);
        store_reader::from_changelog(&config.kafka, &def.store.changelog, def.partitions, timeout)?
            .into_iter()
            .filter(|v| wanted.contains(&v.partition))
            .collect()
    } else {
        let dir = config.processor.state_dir.join(&def.application_id);
        let mut views = Vec::new();
        for &p in &wanted {
            match store_reader::open_local(&dir, p) {
                Ok(view) => views.push(view),
                Err(StoreReadError::NoLocalState { .. }) if wanted.len() > 1 => {}
                Err(error) => return Err(error.into()),
            }
        }
        if views.is_empty() {
            return Err(StoreReadError::NoLocalState {
                partition: wanted[0],
                path: dir,
            }
            .into());
        }
        views
    };
    match query {
        Query::User(uid) => {
            let mut found = user(&views[0], uid)?;
            found["recent_decisions"] = recent_decisions(config, def, views[0].partition, uid);
            writeln!(out, "{found}")?
        }
        Query::Order(id) => writeln!(out, "{}", order(&views, id)?)?,
        Query::Dump(_) => {
            for view in &views {
                dump(view, out)?;
            }
        }
        Query::Stats(_) => {
            for view in &views {
                writeln!(out, "{}", stats(view)?)?;
            }
        }
    }
    Ok(())
}

fn decode<T: for<'de> serde::Deserialize<'de>>(
    view: &PartitionState,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, InspectError> {
    state::decode(bytes).map_err(|e| InspectError::Corrupt {
        partition: view.partition,
        key: key.to_vec(),
        reason: e.to_string(),
    })
}

/// What the owning partition holds for `uid`: its version and row (`null` once deleted),
/// or `"found": false`.
pub fn user(view: &PartitionState, uid: Uid) -> Result<Value, InspectError> {
    let key = state::user_key(uid);
    let found = match view.store.get(&key)? {
        None => json!({"found": false}),
        Some(bytes) => {
            let user: UserState = decode(view, &key, &bytes)?;
            json!({"found": true, "version": user.version, "user": user.user})
        }
    };
    Ok(json!({"uid": uid, "partition": view.partition, "source": view.source, "state": found}))
}

/// The user's latest decisions (at most [`RECENT_SHOWN`], oldest first) among the last
/// [`RECENT_SCAN`] records of its decisions partition: amount, status, note and balance
/// after, which say why an order was declined. `{"error": ...}` if the broker cannot say.
fn recent_decisions(config: &Config, def: &TopologyDefinition, partition: u32, uid: Uid) -> Value {
    let tail = read_tail(
        &config.kafka,
        &def.outputs.decisions,
        partition as i32,
        RECENT_SCAN,
        Duration::from_secs(30),
    );
    match tail {
        Err(error) => json!({"error": error.to_string()}),
        Ok(records) => {
            let mine: Vec<Decision> = records
                .iter()
                .filter_map(|r| serde_json::from_slice::<Decision>(r.value.as_deref()?).ok())
                .filter(|d| d.uid == uid)
                .collect();
            json!(mine[mine.len().saturating_sub(RECENT_SHOWN)..])
        }
    }
}

/// The decision a partition remembers for `order_id`, if any of `views` holds one.
pub fn order(views: &[PartitionState], order_id: OrderId) -> Result<Value, InspectError> {
    let key = state::order_key(order_id);
    for view in views {
        if let Some(bytes) = view.store.get(&key)? {
            let seen: OrderSeen = state::decode_order_seen(&bytes).map_err(|e| InspectError::Corrupt {
                partition: view.partition,
                key: key.clone(),
                reason: e.to_string(),
            })?;
            return Ok(json!({
                "order_id": order_id,
                "partition": view.partition,
                "source": view.source,
                "found": true,
                "status": seen.status,
                "decided_at_ms": seen.decided_at_ms,
            }));
        }
    }
    Ok(json!({"order_id": order_id, "found": false}))
}

/// Calls `each` with every entry of `prefix`, a page at a time.
fn for_each(
    view: &PartitionState,
    prefix: &[u8],
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), InspectError>,
) -> Result<(), InspectError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = view.store.scan(prefix, after.as_deref(), PAGE)?;
        for (key, value) in &page {
            each(key, value)?;
        }
        match page.last() {
            Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
            _ => return Ok(()),
        }
    }
}

/// Writes every user of the partition as one JSON line; returns how many.
pub fn dump(view: &PartitionState, out: &mut impl Write) -> Result<usize, InspectError> {
    let mut written = 0;
    for_each(view, USER_PREFIX, |key, bytes| {
        let user: UserState = decode(view, key, bytes)?;
        let line = json!({"partition": view.partition, "version": user.version, "user": user.user});
        writeln!(out, "{line}")?;
        written += 1;
        Ok(())
    })?;
    Ok(written)
}

/// Counts of what the partition holds.
pub fn stats(view: &PartitionState) -> Result<Value, InspectError> {
    let (mut users, mut deleted, mut balance) = (0u64, 0u64, 0i64);
    for_each(view, USER_PREFIX, |key, bytes| {
        let user: UserState = decode(view, key, bytes)?;
        match user.user {
            Some(row) => {
                users += 1;
                balance = balance.saturating_add(row.credit_balance);
            }
            None => deleted += 1,
        }
        Ok(())
    })?;
    let count = |prefix: &[u8]| -> Result<u64, InspectError> {
        let mut n = 0u64;
        for_each(view, prefix, |_, _| {
            n += 1;
            Ok(())
        })?;
        Ok(n)
    };
    Ok(json!({
        "partition": view.partition,
        "source": view.source,
        "checkpoint": view.checkpoint,
        "users": users,
        "deleted_users": deleted,
        "total_balance": balance,
        "orders_decided": count(ORDER_PREFIX)?,
        "conditions_in_progress": count(CURSOR_PREFIX)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::record::{OrderStatus, UserRow};
    use crate::topology::store::{InMemoryStore, KeyValueStore};

    fn view() -> PartitionState {
        let mut store = InMemoryStore::new();
        let row = |uid: i64| UserRow {
            uid,
            name: "Asha".into(),
            lname: "Rao".into(),
            credit_limit: 100,
            credit_balance: 40,
        };
        for uid in [1, 2] {
            let user = UserState {
                version: 3,
                user: Some(row(uid)),
            };
            store.put(&state::user_key(uid), state::encode(&user)).unwrap();
        }
        let gone = UserState { version: 5, user: None };
        store.put(&state::user_key(3), state::encode(&gone)).unwrap();
        let seen = OrderSeen {
            status: OrderStatus::Declined,
            decided_at_ms: Some(1),
        };
        store
            .put(&state::order_key(77), state::encode_order_seen(&seen))
            .unwrap();
        PartitionState {
            partition: 4,
            source: "changelog",
            checkpoint: None,
            store: Box::new(store),
        }
    }

    #[test]
    fn a_user_an_order_a_dump_and_the_counts() {
        let v = view();
        let one = user(&v, 2).unwrap();
        assert_eq!(one["state"]["version"], 3);
        assert_eq!(one["state"]["user"]["credit_balance"], 40);
        assert_eq!(user(&v, 9).unwrap()["state"]["found"], false);
        assert_eq!(user(&v, 3).unwrap()["state"]["user"], Value::Null);

        let decided = order(std::slice::from_ref(&v), 77).unwrap();
        assert_eq!(
            (decided["status"].as_str(), decided["partition"].as_u64()),
            (Some("Declined"), Some(4))
        );
        assert_eq!(order(&[v], 78).unwrap()["found"], false);

        let v = view();
        let mut out = Vec::new();
        assert_eq!(dump(&v, &mut out).unwrap(), 3);
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
        let counts = stats(&v).unwrap();
        assert_eq!(
            (
                counts["users"].as_u64(),
                counts["deleted_users"].as_u64(),
                counts["total_balance"].as_i64()
            ),
            (Some(2), Some(1), Some(80))
        );
        assert_eq!(counts["orders_decided"], 1);
    }

    #[test]
    fn corrupt_state_is_named_with_its_key() {
        let mut store = InMemoryStore::new();
        store.put(&state::user_key(1), vec![9, 9]).unwrap();
        let v = PartitionState {
            partition: 0,
            source: "local",
            checkpoint: Some(10),
            store: Box::new(store),
        };
        assert!(matches!(user(&v, 1), Err(InspectError::Corrupt { partition: 0, .. })));
    }
}
