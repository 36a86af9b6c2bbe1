//! The decisions of an elasticity run as a read_committed reader sees them, with when
//! each was made (the processor's `decided_at_ms`) and when it became visible; and what
//! they say about a membership change (pure): how long each partition went without a
//! decision, when a partition decided again, whether every order was decided once.

use crate::error::BenchError;
use creditstream::config::KafkaConfig;
use creditstream::runtime::client;
use creditstream::topology::record::Decision;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub partition: i32,
    pub order_id: i64,
    pub decided_at_ms: i64,
    pub seen_at_ms: i64,
}

type Shared = Arc<Mutex<Vec<Seen>>>;

/// A reader of the decisions topic from its end when started.
pub struct DecisionLog {
    seen: Shared,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Vec<Seen>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DecisionLog {
    /// Reads `topic` from each partition's current end (so only decisions made from now on).
    pub fn start(kafka: &KafkaConfig, topic: &str, partitions: u32) -> Result<Self, BenchError> {
        let consumer: BaseConsumer = client::standalone_consumer(kafka, true)
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
        }
        consumer.assign(&tpl)?;
        let (seen, stop) = (Shared::default(), Arc::new(AtomicBool::new(false)));
        let reader = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(Ok(message)) = consumer.poll(Duration::from_millis(20)) else {
                        continue;
                    };
                    let Ok(d) = serde_json::from_slice::<Decision>(message.payload().unwrap_or_default()) else {
                        continue;
                    };
                    lock(&seen).push(Seen {
                        partition: message.partition(),
                        order_id: d.order_id,
                        decided_at_ms: d.decided_at_ms,
                        seen_at_ms: crate::load::now_ms(),
                    });
                }
            })
        };
        Ok(Self {
            seen,
            stop,
            reader: Some(reader),
        })
    }

    /// Decisions seen so far.
    pub fn count(&self) -> usize {
        lock(&self.seen).len()
    }

    /// When a decision made after `after` was first seen on each of `partitions`;
    /// `None` for a partition that has none yet.
    pub fn first_seen_after(&self, partitions: &[i32], after: i64) -> Vec<Option<i64>> {
        first_seen_after(&lock(&self.seen), partitions, after)
    }

    /// Stops reading; everything seen.
    pub fn finish(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::mem::take(&mut *lock(&self.seen))
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn first_seen_after(seen: &[Seen], partitions: &[i32], after: i64) -> Vec<Option<i64>> {
    partitions
        .iter()
        .map(|&p| {
            seen.iter()
                .filter(|s| s.partition == p && s.decided_at_ms > after)
                .map(|s| s.seen_at_ms)
                .min()
        })
        .collect()
}

/// The longest stretch without a decision on `partition` within `[from, to]`, ms (by
/// when decisions were made).
pub fn longest_gap(seen: &[Seen], partition: i32, from: i64, to: i64) -> i64 {
    let mut times: Vec<i64> = seen
        .iter()
        .filter(|s| s.partition == partition && (from..=to).contains(&s.decided_at_ms))
        .map(|s| s.decided_at_ms)
        .collect();
    times.sort_unstable();
    times.push(to);
    let mut previous = from;
    let mut longest = 0;
    for t in times {
        longest = longest.max(t - previous);
        previous = t;
    }
    longest
}

/// Orders `first..first + count` decided more than once, and not at all.
pub fn twice_and_missing(seen: &[Seen], first: i64, count: i64) -> (usize, usize) {
    let mut times: HashMap<i64, usize> = HashMap::new();
    for s in seen {
        *times.entry(s.order_id).or_default() += 1;
    }
    let twice = times.values().filter(|n| **n > 1).count();
    let missing = (first..first + count).filter(|id| !times.contains_key(id)).count();
    (twice, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, order_id: i64, decided_at_ms: i64) -> Seen {
        Seen {
            partition,
            order_id,
            decided_at_ms,
            seen_at_ms: decided_at_ms + 5,
        }
    }

    #[test]
    fn the_longest_gap_counts_from_the_window_start_and_to_its_end() {
        let seen = [at(0, 1, 100), at(0, 2, 400), at(1, 3, 150), at(0, 4, 450)];
        assert_eq!(longest_gap(&seen, 0, 0, 1000), 550, "450 to the end at 1000");
        assert_eq!(longest_gap(&seen, 0, 0, 460), 300, "100 to 400");
        assert_eq!(longest_gap(&seen, 1, 200, 300), 100, "nothing in the window");
        assert_eq!(longest_gap(&seen, 2, 0, 50), 50);
    }

    #[test]
    fn a_partition_decides_again_when_a_decision_made_after_the_change_is_seen() {
        let seen = [at(0, 1, 100), at(0, 2, 300), at(1, 3, 120), at(0, 4, 250)];
        assert_eq!(first_seen_after(&seen, &[0, 1, 2], 200), vec![Some(255), None, None]);
    }

    #[test]
    fn counts_orders_decided_twice_and_never() {
        let seen = [at(0, 1, 1), at(0, 2, 2), at(1, 2, 3), at(0, 5, 4)];
        assert_eq!(twice_and_missing(&seen, 1, 4), (1, 2), "2 twice; 3 and 4 missing");
    }
}
