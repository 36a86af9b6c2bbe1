//! When the stream thread commits: a pure function of what is open, how much was
//! processed and how long ago the last commit was, so it is tested without a broker.
//!
//! A caught-up replica (its last poll drained the input) commits once the caught-up
//! interval has passed, so a decision becomes visible soon after it is made. While a
//! backlog is worked off (the last poll filled a whole batch) every commit would stall
//! processing for its round trips, so commits are spaced by `max_records` records
//! instead, and at most `10 × interval` apart: throughput when behind, latency when
//! caught up.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPolicy {
    /// `commit_interval_ms`: the cadence of a caught-up replica under at_least_once, and
    /// a tenth of the longest a backlog may keep a transaction open.
    pub interval: Duration,
    /// How soon a caught-up replica commits: under exactly_once_v2 decisions are invisible
    /// until the commit, so `commit_min_interval_ms`; under at_least_once they are visible
    /// once delivered, so `interval`.
    pub caught_up: Duration,
    /// `commit_max_records`: records processed since the last commit that force a commit.
    pub max_records: usize,
}

/// What the policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitState {
    /// Whether there is uncommitted work (an open transaction).
    pub open: bool,
    pub processed: usize,
    pub since_commit: Duration,
    /// Whether the last poll filled a whole batch (the input is not drained).
    pub backlog: bool,
}

impl CommitPolicy {
    pub fn due(&self, p: &CommitState) -> bool {
        p.open
            && (p.processed >= self.max_records
                || (p.since_commit >= self.caught_up && !p.backlog)
                || p.since_commit >= self.interval * 10)
    }

    /// How long the next poll may wait for records before a commit could become due.
    pub fn poll_wait(&self, open: bool, since_commit: Duration) -> Duration {
        let due_after = if open { self.caught_up } else { self.interval };
        due_after.saturating_sub(since_commit).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CommitPolicy = CommitPolicy {
        interval: Duration::from_millis(100),
        caught_up: Duration::from_millis(5),
        max_records: 1000,
    };

    fn progress(processed: usize, since_ms: u64, backlog: bool) -> CommitState {
        CommitState {
            open: true,
            processed,
            since_commit: Duration::from_millis(since_ms),
            backlog,
        }
    }

    #[test]
    fn nothing_open_is_never_due() {
        let p = CommitState {
            open: false,
            ..progress(5000, 10_000, false)
        };
        assert!(!POLICY.due(&p));
    }

    #[test]
    fn a_caught_up_replica_commits_after_the_caught_up_interval() {
        assert!(!POLICY.due(&progress(1, 4, false)));
        assert!(POLICY.due(&progress(1, 5, false)));
    }

    #[test]
    fn a_backlog_commits_by_records_or_after_ten_intervals() {
        assert!(!POLICY.due(&progress(999, 999, true)));
        assert!(POLICY.due(&progress(1000, 1, true)));
        assert!(POLICY.due(&progress(1, 1000, true)));
    }

    #[test]
    fn the_poll_waits_until_a_commit_could_be_due_but_at_least_a_millisecond() {
        assert_eq!(
            POLICY.poll_wait(true, Duration::from_millis(2)),
            Duration::from_millis(3)
        );
        assert_eq!(
            POLICY.poll_wait(false, Duration::from_millis(40)),
            Duration::from_millis(60)
        );
        assert_eq!(POLICY.poll_wait(true, Duration::from_secs(1)), Duration::from_millis(1));
    }
}
