//! A stream thread's share of the replica's gauges. Each stream thread sets its own value;
//! the replica's gauge shows the sum over its threads (tasks, partitions, restore rate)
//! or, for the state, the worst of them, and `creditstream_stream_thread_state{thread}`
//! shows each thread's own state.
//!
//! Invariant: a replica-wide gauge always combines the latest value of every thread that
//! set one; no thread's value overwrites another's.

use super::stream_thread::thread_name;
use crate::metrics::metrics;
use prometheus::IntGauge;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A replica-wide gauge the stream threads each hold a share of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shared {
    AssignedPartitions,
    PausedPartitions,
    RestoringTasks,
    StandbyTasks,
    RestoreRate,
    /// The worst of the threads' states, not their sum.
    State,
}

impl Shared {
    fn gauge(self) -> &'static IntGauge {
        let m = metrics();
        match self {
            Shared::AssignedPartitions => &m.assigned_partitions,
            Shared::PausedPartitions => &m.paused_partitions,
            Shared::RestoringTasks => &m.restoring_tasks,
            Shared::StandbyTasks => &m.standby_tasks,
            Shared::RestoreRate => &m.restore_rate,
            Shared::State => &m.processor_state,
        }
    }
}

type Shares = BTreeMap<(Shared, usize), i64>;

/// The latest value of every (gauge, thread).
static SHARES: Mutex<Shares> = Mutex::new(BTreeMap::new());

/// Records `thread`'s share of `shared` in `shares`; returns what the gauge shows now.
fn record(shares: &mut Shares, shared: Shared, thread: usize, value: i64) -> i64 {
    shares.insert((shared, thread), value);
    let values = shares.range((shared, 0)..=(shared, usize::MAX)).map(|(_, v)| *v);
    match shared {
        Shared::State => values.max().unwrap_or(0),
        _ => values.sum(),
    }
}

/// Sets `thread`'s share of `shared` to `value`; the gauge shows the threads' combination.
pub fn set_share(shared: Shared, thread: usize, value: i64) {
    let mut shares = SHARES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let combined = record(&mut shares, shared, thread, value);
    shared.gauge().set(combined);
}

/// Sets `thread`'s state: its own gauge, and the replica's (the worst of its threads').
pub fn set_thread_state(thread: usize, state: i64) {
    set_share(Shared::State, thread, state);
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
        let mut shares = Shares::new();
        assert_eq!(record(&mut shares, Shared::StandbyTasks, 0, 3), 3);
        assert_eq!(record(&mut shares, Shared::StandbyTasks, 1, 2), 5);
        assert_eq!(
            record(&mut shares, Shared::StandbyTasks, 0, 1),
            3,
            "a thread's new value replaces its old one only"
        );
        assert_eq!(record(&mut shares, Shared::State, 0, 0), 0);
        assert_eq!(record(&mut shares, Shared::State, 1, 1), 1);
        assert_eq!(record(&mut shares, Shared::State, 1, 0), 0);
        assert_eq!(
            record(&mut shares, Shared::RestoringTasks, 0, 7),
            7,
            "gauges do not mix"
        );
    }
}
