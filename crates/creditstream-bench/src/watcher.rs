//! The reader of a run's decisions topic, on a thread of its own: read_committed from the
//! start, so a record counts when a consumer of the system could see it. It notes when
//! each milestone count of outputs became visible, checks every decision against the
//! [`Reference`] as it arrives, finds repeats, and keeps each order's end-to-end latency
//! (order produce time → visible) for the latency runs.
//! Invariant: the same reader and the same clock judge every system.

use crate::load::{self, now_ms};
use crate::options::System;
use crate::workload::Reference;
use creditstream::config::KafkaConfig;
use creditstream::topology::record::{Decision, Order, OrderStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the watcher saw.
#[derive(Debug, Default)]
pub struct Watched {
    pub seen: u64,
    /// Outputs for an order that already had one.
    pub duplicates: u64,
    /// Outputs that could not be read as a decision (or, for the pass-through, an order).
    pub unreadable: u64,
    /// Decisions that differ from the reference, and the first of them.
    pub mismatches: u64,
    pub first_mismatch: Option<String>,
    /// Orders declined as unknown users (every user exists before the orders).
    pub unknown_user: u64,
    /// An order-independent digest of every (order id, status, balance) decided: equal
    /// digests mean the same decisions, order by order.
    pub digest: u64,
    /// Latency of each order, ms, by order id − 1 (NaN: not seen); empty unless asked for.
    pub latency_ms: Vec<f32>,
    pub error: Option<String>,
}

/// What to watch.
pub struct WatchSpec {
    pub system: System,
    pub topic: String,
    pub partitions: u32,
    /// Orders sent in all; the watcher stops once it saw this many outputs.
    pub expected: u64,
    pub timeout: Duration,
    pub reference: Arc<Reference>,
    pub keep_latency: bool,
}

/// A running watcher: milestones, and the output asked for by [`Watcher::mark_next`],
/// arrive on `reached` as (count, when).
pub struct Watcher {
    pub handle: JoinHandle<Watched>,
    pub reached: mpsc::Receiver<(u64, Instant)>,
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    /// The count whose time is wanted next (0: none).
    mark: Arc<AtomicU64>,
    expected: u64,
}

impl Watcher {
    /// Ends the watch early (a failed run must not wait out the timeout).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Outputs seen so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Asks for the count and time of the next output to become visible; returns the count
    /// to wait for, or `None` when every expected output was seen already.
    pub fn mark_next(&self) -> Option<u64> {
        let next = self.seen() + 1;
        (next <= self.expected).then(|| {
            self.mark.store(next, Ordering::Relaxed);
            next
        })
    }

    /// Waits for the watcher to end and returns what it saw.
    pub fn finish(self) -> Watched {
        self.handle.join().unwrap_or_else(|_| Watched {
            error: Some("the output watcher panicked".into()),
            ..Watched::default()
        })
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A decision's status and the balance after it (`None`: the user was unknown).
type Outcome = (OrderStatus, Option<i64>);

/// One output: its order id and order time, and the decision when the system decides.
fn parse(system: System, value: &[u8]) -> Option<(i64, i64, Option<Outcome>)> {
    match system {
        System::Creditstream | System::KafkaStreams => {
            let d: Decision = serde_json::from_slice(value).ok()?;
            Some((d.order_id, d.order_timestamp_ms, Some((d.status, d.balance_after))))
        }
        // The pass-through's decision is the order itself, padded to a decision's size.
        System::Passthrough => {
            let o: Order = serde_json::from_slice(value).ok()?;
            Some((o.order_id, o.timestamp_ms, None))
        }
    }
}

impl Watched {
    fn note(&mut self, spec: &WatchSpec, seen: &mut [bool], value: &[u8], visible_ms: i64) {
        let Some((order_id, ts, decision)) = parse(spec.system, value) else {
            self.unreadable += 1;
            return;
        };
        let slot = usize::try_from(order_id - 1).ok().filter(|&i| i < seen.len());
        let Some(slot) = slot else {
            self.mismatches += 1;
            self.first_mismatch
                .get_or_insert(format!("order {order_id} was never sent"));
            return;
        };
        if std::mem::replace(&mut seen[slot], true) {
            self.duplicates += 1;
            return;
        }
        if spec.keep_latency {
            self.latency_ms[slot] = (visible_ms - ts) as f32;
        }
        if let Some((status, balance)) = decision {
            if balance.is_none() {
                self.unknown_user += 1;
            }
            if let Err(problem) = spec.reference.check(order_id, status, balance) {
                self.mismatches += 1;
                self.first_mismatch.get_or_insert(problem);
            }
            let outcome = ((balance.unwrap_or(-1) as u64) << 1) | u64::from(status == OrderStatus::Completed);
            self.digest = self.digest.wrapping_add(mix(mix(order_id as u64) ^ outcome));
        }
    }
}

/// Starts watching; `milestones` are the output counts whose time is reported.
pub fn spawn(kafka: &KafkaConfig, spec: WatchSpec, milestones: Vec<u64>) -> Watcher {
    let (tx, reached) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let seen_count = Arc::new(AtomicU64::new(0));
    let progress = seen_count.clone();
    let mark = Arc::new(AtomicU64::new(0));
    let marked = mark.clone();
    let expected = spec.expected;
    let kafka = kafka.clone();
    let handle = std::thread::spawn(move || {
        let mut watched = Watched::default();
        if spec.keep_latency {
            watched.latency_ms = vec![f32::NAN; spec.expected as usize];
        }
        let mut seen = vec![false; spec.expected as usize];
        let result = load::watch(
            &kafka,
            &spec.topic,
            spec.partitions,
            spec.expected as usize,
            spec.timeout,
            &stopped,
            |value| {
                watched.note(&spec, &mut seen, value, now_ms());
                watched.seen += 1;
                progress.store(watched.seen, Ordering::Relaxed);
                // `>=`: the mark may be set after the output it named was seen. A mark and
                // a milestone on the same output send a message each, so that both reach
                // whoever waits for them.
                let wanted = marked.load(Ordering::Relaxed);
                if wanted != 0 && watched.seen >= wanted {
                    marked.store(0, Ordering::Relaxed);
                    let _ = tx.send((watched.seen, Instant::now()));
                }
                if milestones.contains(&watched.seen) {
                    let _ = tx.send((watched.seen, Instant::now()));
                }
            },
        );
        if let Err(e) = result {
            watched.error = Some(e.to_string());
        }
        watched
    });
    Watcher {
        handle,
        reached,
        stop,
        seen: seen_count,
        mark,
        expected,
    }
}

/// The p-th percentile (0..=100) of `values` (sorted in place, NaN dropped first).
pub fn percentile(values: &[f32], p: f64) -> Option<f64> {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f32::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(f64::from(sorted[rank.min(sorted.len() - 1)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_skip_orders_not_seen() {
        let values = [3.0, f32::NAN, 1.0, 2.0, 4.0];
        assert_eq!(percentile(&values, 50.0), Some(3.0));
        assert_eq!(percentile(&values, 100.0), Some(4.0));
        assert_eq!(percentile(&[f32::NAN], 99.0), None);
    }
}
