//! Fault injection for the fault tests: makes the stream thread meet, at an exact point,
//! a fault that the real world only produces by chance (a commit whose answer is lost
//! after the broker applied it). Off unless `CREDITSTREAM_TEST_FAULTS` is set, for
//! example `commit_outcome_unknown=2`: the next two commits that succeed on the broker
//! are reported to the stream thread as timed out.
//! Invariant: an injected fault is one the code must already survive; injection never
//! changes what the broker does, only what the stream thread is told.

use std::sync::atomic::{AtomicU32, Ordering};

pub const ENV: &str = "CREDITSTREAM_TEST_FAULTS";

#[derive(Debug, Default)]
pub struct Faults {
    commit_outcome_unknown: AtomicU32,
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
                _ => tracing::warn!(item, "unknown injected fault; ignored"),
            }
        }
        tracing::warn!(spec, "fault injection is on");
        faults
    }

    /// Whether this commit, which the broker has applied, is to be reported as timed out.
    pub fn lose_commit_answer(&self) -> bool {
        self.commit_outcome_unknown
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}
