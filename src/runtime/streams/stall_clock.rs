//! When a read counts as stalled, for the detectors of the changelog reads (standbys,
//! restores) and of the stream thread's inputs: committed records have lain beyond its
//! position for a whole bound while the position did not move.
//! Invariant: the bound runs from the first moment committed records were seen beyond the
//! position, not from when the read last moved. A read that stood idle a minute and whose
//! first record was committed a moment ago is not stalled: the record is still on its way
//! (the fetch waits for the high watermark, then for the next fetch round).

use std::time::{Duration, Instant};

/// One read's position and since when committed records lie beyond it.
#[derive(Debug, Clone)]
pub struct StallClock {
    position: i64,
    moved_at: Instant,
    behind_since: Option<Instant>,
}

impl StallClock {
    pub fn new(position: i64, now: Instant) -> Self {
        Self {
            position,
            moved_at: now,
            behind_since: None,
        }
    }

    /// Records the read's position; returns whether it moved (which restarts the clock).
    pub fn at(&mut self, position: i64, now: Instant) -> bool {
        if position == self.position {
            return false;
        }
        *self = Self::new(position, now);
        true
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    /// How long the position has stood where it is.
    pub fn standing(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.moved_at)
    }

    /// Records the partition's last stable offset, as looked up at `now`; returns how long
    /// committed records have lain beyond the position without the read moving, or `None`
    /// while nothing committed lies beyond it (an idle log, or an open transaction).
    pub fn stable(&mut self, stable: i64, now: Instant) -> Option<Duration> {
        if stable <= self.position {
            self.behind_since = None;
            return None;
        }
        let since = *self.behind_since.get_or_insert(now);
        Some(now.saturating_duration_since(since))
    }

    /// Whether committed records have lain beyond the position for at least `bound`.
    pub fn stalled(&mut self, stable: i64, now: Instant, bound: Duration) -> Option<Duration> {
        self.stable(stable, now).filter(|behind| *behind >= bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    #[test]
    fn a_read_idle_for_long_is_not_stalled_when_its_first_record_was_committed_a_moment_ago() {
        let start = Instant::now();
        let mut clock = StallClock::new(2, start);
        // Idle: nothing committed beyond the position for 6 s.
        assert_eq!(clock.stalled(2, start + Duration::from_secs(4), BOUND), None);
        // A transaction commits; the record is on its way, 1 s later it is not there yet.
        assert_eq!(clock.stalled(4, start + Duration::from_secs(6), BOUND), None);
        assert_eq!(clock.stalled(4, start + Duration::from_secs(7), BOUND), None);
        assert!(clock.standing(start + Duration::from_secs(7)) >= BOUND);
    }

    #[test]
    fn committed_records_that_never_arrive_make_the_read_stalled_after_the_bound() {
        let start = Instant::now();
        let mut clock = StallClock::new(2, start);
        assert_eq!(clock.stalled(4, start + Duration::from_secs(1), BOUND), None);
        assert_eq!(clock.stalled(4, start + Duration::from_secs(5), BOUND), None);
        assert_eq!(
            clock.stalled(9, start + Duration::from_secs(6), BOUND),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn a_read_that_moves_or_an_open_transaction_restarts_the_clock() {
        let start = Instant::now();
        let mut clock = StallClock::new(2, start);
        assert_eq!(clock.stable(4, start), Some(Duration::ZERO));
        assert!(!clock.at(2, start + Duration::from_secs(3)));
        assert!(clock.at(4, start + Duration::from_secs(4)));
        assert_eq!(clock.position(), 4);
        assert_eq!(clock.stalled(8, start + Duration::from_secs(8), BOUND), None);
        // The last stable offset falls back to the position: an open transaction holds it.
        assert_eq!(clock.stable(4, start + Duration::from_secs(9)), None);
        assert_eq!(clock.stalled(8, start + Duration::from_secs(13), BOUND), None);
        assert_eq!(
            clock.stalled(8, start + Duration::from_secs(18), BOUND),
            Some(Duration::from_secs(5))
        );
    }
}
