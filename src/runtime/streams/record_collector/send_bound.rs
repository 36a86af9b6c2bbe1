//! How long the send of a transaction's consumed offsets may block before its producer is
//! given up. The first give-up comes quickly: a send that outlasts [`FIRST`] has most likely
//! met a coordinator that will not answer (one under controlled shutdown answers only as
//! its process exits; librdkafka's stale coordinator, its issue 5511), which only a new
//! producer escapes. A send that outlasts the bound again soon after has met the broker
//! that took over, still loading the coordinator's state (seconds on a broker restarted
//! moments before): giving that one up only adds an abort to its work and a rollback to
//! ours, and in the rolling-restart runs give-ups came in chains of up to ten. So each
//! give-up within [`RECENT`] of the last doubles the bound, up to [`LONGEST`].
//!
//! Invariant: the bound is between [`FIRST`] and [`LONGEST`], and is [`FIRST`] again once
//! no send was given up for [`RECENT`].

use std::time::{Duration, Instant};

/// The bound while sends answer.
pub const FIRST: Duration = Duration::from_secs(2);
/// The longest bound: short of the 10 s socket timeout, after which librdkafka itself gives
/// a request to a silent broker up.
pub const LONGEST: Duration = Duration::from_secs(8);
/// How soon after a give-up another one counts as the same episode.
pub const RECENT: Duration = Duration::from_secs(30);

/// The send-of-offsets bound of one transactional producer's commits.
#[derive(Debug, Default)]
pub struct SendOffsetsBound {
    /// The last give-up and the bound it left.
    last: Option<(Instant, Duration)>,
}

impl SendOffsetsBound {
    /// The bound for a send starting at `now`.
    pub fn at(&self, now: Instant) -> Duration {
        match self.last {
            Some((at, bound)) if now.saturating_duration_since(at) < RECENT => bound,
            _ => FIRST,
        }
    }

    /// A send was given up at `now`.
    pub fn gave_up(&mut self, now: Instant) {
        let bound = match self.last {
            Some((at, bound)) if now.saturating_duration_since(at) < RECENT => (bound * 2).min(LONGEST),
            _ => FIRST * 2,
        };
        self.last = Some((now, bound));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn give_ups_in_a_row_lengthen_the_bound_up_to_the_longest() {
        let mut bound = SendOffsetsBound::default();
        let now = Instant::now();
        assert_eq!(bound.at(now), FIRST);
        bound.gave_up(now);
        assert_eq!(bound.at(now), FIRST * 2);
        bound.gave_up(now);
        assert_eq!(bound.at(now), FIRST * 4);
        bound.gave_up(now);
        assert_eq!(bound.at(now), LONGEST);
        bound.gave_up(now);
        assert_eq!(bound.at(now), LONGEST);
    }

    #[test]
    fn the_bound_is_short_again_once_sends_answer_for_a_while() {
        let mut bound = SendOffsetsBound::default();
        let now = Instant::now();
        bound.gave_up(now);
        bound.gave_up(now);
        assert_eq!(bound.at(now + RECENT - Duration::from_secs(1)), FIRST * 4);
        assert_eq!(bound.at(now + RECENT + Duration::from_secs(1)), FIRST);
        // A give-up after a quiet spell starts the doubling afresh.
        bound.gave_up(now + RECENT + Duration::from_secs(1));
        assert_eq!(bound.at(now + RECENT + Duration::from_secs(2)), FIRST * 2);
    }
}
