//! The changelog reader: opens a task's RocksDB store and brings it up to the end of its
//! changelog partition, from the store's checkpoint, reading only committed records.
//! Invariant: a store handed to a task holds exactly what the committed changelog holds
//! up to its end at the time of the restore; local state the changelog cannot vouch for
//! (a checkpoint outside the changelog's offsets) is wiped and rebuilt from the start.

use super::error::StreamsError;
use super::record_collector::KAFKA_CALL_TIMEOUT;
use crate::config::KafkaConfig;
use crate::metrics::metrics;
use crate::runtime::client;
use crate::runtime::rocks_store::{RocksStore, StoreResources};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Records applied to RocksDB per write batch while restoring.
const RESTORE_BATCH: usize = 10_000;

/// Counts a restore in `creditstream_processor_restoring_tasks` for as long as it lives,
/// however the restore ends.
struct Restoring;

impl Restoring {
    fn start() -> Self {
        metrics().restoring_tasks.inc();
        Restoring
    }
}

impl Drop for Restoring {
    fn drop(&mut self) {
        metrics().restoring_tasks.dec();
    }
}

/// Opens the store at `path` and restores it from `changelog` partition `partition`.
/// `stall_after` bounds a restore that stops making progress (the broker is away).
pub fn open_and_restore(
    kafka: &KafkaConfig,
    changelog: &str,
    partition: u32,
    path: &Path,
    resources: &StoreResources,
    stall_after: Duration,
) -> Result<RocksStore, StreamsError> {
    let started = Instant::now();
    let _restoring = Restoring::start();
    let consumer: BaseConsumer = client::standalone_consumer(kafka, true).create()?;
    let (low, high) = consumer.fetch_watermarks(changelog, partition as i32, KAFKA_CALL_TIMEOUT)?;
    let mut store = RocksStore::open(path, resources)?;
    let start = match store.checkpoint()? {
        Some(next) if next >= low && next <= high => next,
        None => low,
        Some(next) => {
            warn!(
                partition,
                checkpoint = next,
                low,
                high,
                "local state does not match the changelog; wiping it"
            );
            drop(store);
            RocksStore::destroy(path)?;
            store = RocksStore::open(path, resources)?;
            low
        }
    };
    if start >= high {
        return Ok(store);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(changelog, partition as i32, Offset::Offset(start))?;
    consumer.assign(&tpl)?;
    let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut position = start;
    let mut restored = 0u64;
    let mut progress_at = Instant::now();
    while position < high {
        if progress_at.elapsed() > stall_after {
            return Err(StreamsError::RestoreStalled {
                partition,
                waited: stall_after,
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                if let Some(key) = message.key() {
                    batch.push((key.to_vec(), message.payload().map(<[u8]>::to_vec)));
                }
                position = message.offset() + 1;
                progress_at = Instant::now();
            }
            Some(Err(error)) => return Err(error.into()),
            None => {}
        }
        // Aborted records and transaction markers are skipped by read_committed; the
        // position tells how far the log really was read.
        if let Ok(positions) = consumer.position() {
            if let Some(Offset::Offset(p)) = positions
                .find_partition(changelog, partition as i32)
                .map(|e| e.offset())
            {
                if p > position {
                    position = p;
                    progress_at = Instant::now();
                }
            }
        }
        if batch.len() >= RESTORE_BATCH || (position >= high && !batch.is_empty()) {
            restored += batch.len() as u64;
            store.apply_restored(&batch, position)?;
            batch.clear();
        }
    }
    if batch.is_empty() {
        store.apply_restored(&[], position)?;
    }
    metrics().restored_records.inc_by(restored);
    metrics().restore_duration.observe(started.elapsed().as_secs_f64());
    info!(
        partition,
        from = start,
        to = position,
        restored,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restored state from the changelog"
    );
    Ok(store)
}
