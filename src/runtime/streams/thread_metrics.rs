//! A stream thread's share of the replica's gauges. Each stream thread sets its own value;
//! the replica's gauge shows the sum over its threads (tasks, partitions, restore rate)
//! or, for the state, the worst of them, and `creditstream_stream_thread_state{thread}`
//! shows each thread's own state.
//!
//! Invariant: a replica-wide gauge always combines the latest value of every thread that
//! set one; no thread's value overwrites another's.

use super::stream_thread::thread_name;
use crate::metrics::metrics;
use prometheus::core::Collector;
use prometheus::IntGauge;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How the threads' values of one gauge make the replica's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    Sum,
    Max,
}

/// The latest value of every (gauge, thread).
static SHARES: Mutex<BTreeMap<(String, usize), i64>> = Mutex::new(BTreeMap::new());

/// Sets `thread`'s share of `gauge` to `value`; the gauge shows the threads' combination.
pub fn set_share(gauge: &IntGauge, thread: usize, value: i64, combine: Combine) {
    let name = gauge.desc().first().map(|d| d.fq_name.clone()).unwrap_or_default();
    let mut shares = SHARES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    shares.insert((name.clone(), thread), value);
    let values = shares.range((name.clone(), 0)..=(name, usize::MAX)).map(|(_, v)| *v);
    gauge.set(match combine {
        Combine::Sum => values.sum(),
        Combine::Max => values.max().unwrap_or(0),
    });
}

/// Sets `thread`'s state: its own gauge, and the replica's (the worst of its threads').
pub fn set_thread_state(thread: usize, state: i64) {
    set_share(&metrics().processor_state, thread, state, Combine::Max);
    metrics()
        .stream_thread_state
        .with_label_values(&[&thread_name(thread)])
        .set(state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_add_up_and_the_worst_state_wins() {
        let tasks = IntGauge::new("thread_metrics_test_tasks", "test").unwrap();
        set_share(&tasks, 0, 3, Combine::Sum);
        set_share(&tasks, 1, 2, Combine::Sum);
        assert_eq!(tasks.get(), 5);
        set_share(&tasks, 0, 1, Combine::Sum);
        assert_eq!(tasks.get(), 3, "a thread's new value replaces its old one only");

        let state = IntGauge::new("thread_metrics_test_state", "test").unwrap();
        set_share(&state, 0, 0, Combine::Max);
        set_share(&state, 1, 1, Combine::Max);
        assert_eq!(state.get(), 1);
        set_share(&state, 1, 0, Combine::Max);
        assert_eq!(state.get(), 0);
    }
}
