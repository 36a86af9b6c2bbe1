//! Whether, and why, a task holds its buffered records back for its other input (Kafka
//! Streams' `max.task.idle.ms` and KIP-695): with no deadline while that input has records
//! on the broker not fetched yet, or a lag not known yet; for at most `max_idle` while it
//! is caught up (records may still arrive). Invariant: a wait for a caught-up input is
//! timed from when it was found caught up, so a wait that had no deadline never uses up
//! the idle time.

use crate::metrics::metrics;
use std::time::{Duration, Instant};

/// After this long without a deadline a wait is reported once (the input watch reports a
/// fetch that stood still; this says which task waits on it).
const LONG_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InputWait {
    /// Records are taken as they come.
    #[default]
    None,
    /// For an input with records on the broker, or whose lag is not known: no deadline.
    /// `reported`: this wait was reported as long (it stays so while the input goes
    /// between behind and caught up, until a record is taken).
    Unbounded { since: Instant, reported: bool },
    /// For a caught-up input: until `since + max_idle`.
    Idle { since: Instant, reported: bool },
}

impl InputWait {
    /// A record was taken, or nothing is buffered: no wait.
    pub fn end(&mut self) {
        *self = InputWait::None;
    }

    /// The other input holds, or may hold, records: wait for them. Says whether the wait
    /// just became long, to be reported (once per wait).
    pub fn hold(&mut self) -> bool {
        let (since, reported) = match *self {
            InputWait::None => {
                metrics().task_idle.with_label_values(&["waited"]).inc();
                *self = InputWait::Unbounded {
                    since: Instant::now(),
                    reported: false,
                };
                return false;
            }
            // Either it was behind, or it was caught up a moment ago and is behind again:
            // the wait goes on with no deadline.
            InputWait::Unbounded { since, reported } | InputWait::Idle { since, reported } => (since, reported),
        };
        let long = !reported && since.elapsed() >= LONG_WAIT;
        *self = InputWait::Unbounded {
            since,
            reported: reported || long,
        };
        long
    }

    /// The other input is caught up: wait for it at most `max_idle`. Says whether that
    /// time is up (go on without it).
    pub fn idle(&mut self, max_idle: Duration) -> bool {
        match *self {
            InputWait::Idle { since, .. } => since.elapsed() >= max_idle,
            // It caught up now: its idle time starts now.
            InputWait::Unbounded { reported, .. } => {
                *self = InputWait::Idle {
                    since: Instant::now(),
                    reported,
                };
                false
            }
            InputWait::None => {
                metrics().task_idle.with_label_values(&["waited"]).inc();
                *self = InputWait::Idle {
                    since: Instant::now(),
                    reported: false,
                };
                false
            }
        }
    }

    /// How long this wait has lasted, if it is one.
    pub fn waited(&self) -> Option<Duration> {
        match self {
            InputWait::None => None,
            InputWait::Unbounded { since, .. } | InputWait::Idle { since, .. } => Some(since.elapsed()),
        }
    }

    /// Until when the task waits for a caught-up input, if it does.
    pub fn until(&self, max_idle: Duration) -> Option<Instant> {
        match self {
            InputWait::Idle { since, .. } => Some(*since + max_idle),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_time_starts_when_the_input_is_found_caught_up() {
        let mut wait = InputWait::default();
        assert!(!wait.hold(), "a wait just begun is not long");
        assert_eq!(wait.until(Duration::from_secs(1)), None, "no deadline while behind");
        let before = Instant::now();
        assert!(!wait.idle(Duration::ZERO), "the idle time starts now, not at the hold");
        let until = wait.until(Duration::from_secs(1)).expect("a deadline once caught up");
        assert!(until >= before + Duration::from_secs(1));
        assert!(wait.idle(Duration::ZERO), "a zero idle time is up at once");
        wait.end();
        assert_eq!(wait, InputWait::None);
    }

    /// A wait that began `LONG_WAIT` ago, or `None` this early after boot.
    fn begun_long_ago() -> Option<Instant> {
        Instant::now().checked_sub(LONG_WAIT)
    }

    #[test]
    fn a_long_wait_is_reported_once() {
        let Some(since) = begun_long_ago() else { return };
        let mut wait = InputWait::Unbounded { since, reported: false };
        assert!(wait.hold());
        assert!(!wait.hold());
    }

    #[test]
    fn a_wait_reported_long_is_not_reported_again_when_its_input_catches_up_and_falls_behind() {
        let Some(since) = begun_long_ago() else { return };
        let mut wait = InputWait::Unbounded { since, reported: false };
        assert!(wait.hold(), "long: reported");
        assert!(!wait.idle(Duration::from_secs(60)), "caught up: its idle time starts");
        wait = match wait {
            InputWait::Idle { reported, .. } => InputWait::Idle { since, reported },
            other => panic!("caught up, the wait is idle: {other:?}"),
        };
        assert!(!wait.hold(), "behind again, the same wait: not reported a second time");
        wait.end();
        assert!(!wait.hold(), "a new wait, not long yet");
    }

    #[test]
    fn a_wait_that_became_long_while_caught_up_is_reported_when_its_input_falls_behind() {
        let Some(since) = begun_long_ago() else { return };
        let mut wait = InputWait::Idle { since, reported: false };
        assert!(wait.hold());
    }
}
