//! Fault injection for the fault tests: makes the stream thread meet, at an exact point,
//! a fault that the real world only produces by chance. Off unless
//! `CREDITSTREAM_TEST_FAULTS` is set, to a comma-separated list of:
//! - `commit_outcome_unknown=N`: the next N commits that succeed on the broker are
//!   reported to the stream thread as timed out (the answer was lost);
//! - `process_error=N`: the Nth record processed fails with a store error after its
//!   outputs and changelog records went into the open transaction (a disk that fails
//!   mid-record); the replica then stops, as on any fatal error.
//! - `restore_rate=N`: the state updater applies at most N changelog records a second
//!   (a restore of a large store, held long enough for a test to act during it).
//! - `updater_panic=N`: the state updater thread panics on the Nth store it is asked to
//!   restore (a bug, or a library that aborts its thread).
//! - `offsets_overdue=N`: the next N sends of the consumed offsets to the transaction
//!   answer only long after their deadline (librdkafka's send_offsets_to_transaction when
//!   the group coordinator moves or dies; its issues 5456 and 5511).
//! - `commit_times_out=N`: the next N commits first ask librdkafka to commit with no time
//!   to wait, so that it answers "timed out" while the commit goes on in the background (what a
//!   commit that meets a transaction coordinator moving away answers after its timeout).
//! - `offsets_time_out=N`: the next N sends of the consumed offsets are asked of librdkafka
//!   with no time to wait, so that it fails them (abortable) while the transaction's
//!   records may still be in flight (a send that meets a coordinator moving away).
//! - `deliveries_time_out=N`: the next N transactions find, when they wait for their
//!   deliveries, one of them timed out (a partition whose new leader, a broker that just
//!   restarted, does not answer within message.timeout.ms during a rolling restart).
//! - `queued_records_purged=N`: the Nth commit with work finds the records of its
//!   transaction that still wait in the producer's queue purged (once). It purges through
//!   librdkafka's public call, which, unlike librdkafka's own purges, leaves the purged
//!   records' sequence numbers spent: it stands in for the OUT_OF_ORDER_SEQUENCE_NUMBER
//!   seen twice after a send of the offsets was refused with ILLEGAL_GENERATION and
//!   librdkafka purged the queue, whose cause inside librdkafka is not known.
//! - `hang_in_transaction_once=PATH`: once the file PATH exists, each stream thread's next
//!   transaction is left open after its records were delivered and its offsets sent: the
//!   thread says so in the log and waits there for good (a replica that dies
//!   mid-transaction, at the moment a test chooses, by killing it then). PATH cannot hold
//!   a comma, the separator of this list.
//!
//! Invariant: an injected fault is one the code must already survive, put where the real
//! one can strike; injection never changes what the broker does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub const ENV: &str = "CREDITSTREAM_TEST_FAULTS";

#[derive(Debug, Default)]
pub struct Faults {
    commit_outcome_unknown: AtomicU32,
    process_error: AtomicU32,
    restore_rate: AtomicU32,
    updater_panic: AtomicU32,
    offsets_overdue: AtomicU32,
    offsets_time_out: AtomicU32,
    deliveries_time_out: AtomicU32,
    commit_times_out: AtomicU32,
    queued_records_purged: AtomicU32,
    hang_in_transaction_once: OnceLock<PathBuf>,
}

impl Faults {
    /// Reads [`ENV`]; unknown names are ignored with a warning.
    pub fn from_env() -> Self {
        let faults = Faults::default();
        let Ok(spec) = std::env::var(ENV) else {
            return faults;
        };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some(("commit_outcome_unknown", n)) => {
                    faults
                        .commit_outcome_unknown
                        .store(n.parse().unwrap_or(1), Ordering::Relaxed);
                }
                Some(("process_error", n)) => {
                    faults.process_error.store(n.parse().unwrap_or(1), Ordering::Relaxed);
                }
                Some(("updater_panic", n)) => {
                    faults.updater_panic.store(n.parse().unwrap_or(1), Ordering::Relaxed);
                }
                Some(("offsets_overdue", n)) => {
                    faults.offsets_overdue.store(n.parse().unwrap_or(1), Ordering::Relaxed);
                }
                Some(("offsets_time_out", n)) => {
                    faults.offsets_time_out.store(n.parse().unwrap_or(1), Ordering::Relaxed);
                }
                Some(("deliveries_time_out", n)) => {
                    faults
                        .deliveries_time_out
                        .store(n.parse().unwrap_or(1), Ordering::Relaxed);
                }
                Some(("commit_times_out", n)) => {
                    faults.commit_times_out.store(n.parse().unwrap_or(1), Ordering::Relaxed);
                }
                Some(("queued_records_purged", n)) => {
                    faults
                        .queued_records_purged
                        .store(n.parse().unwrap_or(1), Ordering::Relaxed);
                }
                Some(("hang_in_transaction_once", path)) => {
                    let _ = faults.hang_in_transaction_once.set(PathBuf::from(path));
                }
                Some(("restore_rate", n)) => {
                    faults.restore_rate.store(n.parse().unwrap_or(1000), Ordering::Relaxed);
                }
                _ => tracing::warn!(item, "unknown injected fault; ignored"),
            }
        }
        tracing::warn!(spec, "fault injection is on");
        faults
    }

    /// Whether the record just processed is to fail (the Nth of `process_error=N`, once).
    pub fn fail_record(&self) -> bool {
        count_down(&self.process_error) == Ok(1)
    }

    /// Whether the state updater is to panic on this restore (the Nth, once).
    pub fn panic_on_restore(&self) -> bool {
        count_down(&self.updater_panic) == Ok(1)
    }

    /// The most changelog records the state updater may apply a second, if throttled.
    pub fn restore_rate(&self) -> Option<u32> {
        Some(self.restore_rate.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// Whether this send of the offsets to the transaction is to answer past its deadline.
    pub fn hold_offsets(&self) -> bool {
        count_down(&self.offsets_overdue).is_ok()
    }

    /// Whether this send of the offsets is to be asked of librdkafka with no time to wait.
    pub fn time_out_offsets(&self) -> bool {
        count_down(&self.offsets_time_out).is_ok()
    }

    /// Whether the deliveries of this transaction are to be reported as timed out.
    pub fn time_out_deliveries(&self) -> bool {
        count_down(&self.deliveries_time_out).is_ok()
    }

    /// Whether this commit is first to be asked of librdkafka with a timeout it cannot meet.
    pub fn time_out_commit(&self) -> bool {
        count_down(&self.commit_times_out).is_ok()
    }

    /// Whether this commit is to find its queued records purged (the Nth, once).
    pub fn purge_queued_records(&self) -> bool {
        count_down(&self.queued_records_purged) == Ok(1)
    }

    /// Whether the open transaction is to be left open for good (its trigger file exists).
    pub fn hang_in_transaction(&self) -> bool {
        self.hang_in_transaction_once.get().is_some_and(|path| path.exists())
    }

    /// Whether this commit, which the broker has applied, is to be reported as timed out.
    pub fn lose_commit_answer(&self) -> bool {
        count_down(&self.commit_outcome_unknown).is_ok()
    }
}

/// Takes one from `counter` unless it is 0; gives the count it had (`Err(0)`: none left).
fn count_down(counter: &AtomicU32) -> Result<u32, u32> {
    counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_error_fails_the_nth_record_once() {
        let faults = Faults::default();
        faults.process_error.store(3, Ordering::Relaxed);
        let failed: Vec<bool> = (0..6).map(|_| faults.fail_record()).collect();
        assert_eq!(failed, [false, false, true, false, false, false]);
        assert!(!Faults::default().fail_record(), "off unless asked for");
    }
}
