//! What each runtime thread waits on now, and since when. The stream thread and the state
//! updater name every call that can block on the broker before they make it; the process
//! reports any call that has lasted too long (a log line naming the thread, the call and
//! for how long; the gauge `creditstream_thread_call_seconds`), and on a shutdown that does
//! not finish in time says which thread holds it up. A hung replica is diagnosable from
//! its log and metrics alone.
//! Invariant: an entry exists exactly while its call runs (the guard removes it on drop,
//! also on unwinding).

use crate::metrics::metrics;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A call running on a thread: what, and since when.
#[derive(Debug, Clone)]
pub struct Call {
    pub thread: String,
    pub call: &'static str,
    pub since: Instant,
}

fn calls() -> &'static Mutex<BTreeMap<u64, Call>> {
    static CALLS: OnceLock<Mutex<BTreeMap<u64, Call>>> = OnceLock::new();
    CALLS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Removes its call's entry when dropped.
#[must_use = "the call is recorded only while the guard lives"]
pub struct Guard {
    key: u64,
    previous: Option<Call>,
}

/// Records that this thread now makes `call`, until the guard is dropped. Nested calls are
/// recorded innermost first; the outer one is back once the inner ends.
pub fn enter(call: &'static str) -> Guard {
    let thread = std::thread::current();
    let key = thread_key();
    let name = thread.name().unwrap_or("unnamed").to_string();
    let entry = Call {
        thread: name,
        call,
        since: Instant::now(),
    };
    let previous = calls().lock().ok().and_then(|mut c| c.insert(key, entry));
    Guard { key, previous }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut calls) = calls().lock() {
            match self.previous.take() {
                Some(previous) => calls.insert(self.key, previous),
                None => calls.remove(&self.key),
            };
        }
    }
}

fn thread_key() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut hasher);
    hasher.finish()
}

/// The calls running for longer than `at_least`, longest first.
pub fn long_calls(at_least: Duration) -> Vec<(Call, Duration)> {
    let now = Instant::now();
    let mut long: Vec<(Call, Duration)> = calls()
        .lock()
        .map(|c| c.values().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|call| {
            let lasted = now.saturating_duration_since(call.since);
            (call, lasted)
        })
        .filter(|(_, lasted)| *lasted >= at_least)
        .collect();
    long.sort_by_key(|(_, lasted)| std::cmp::Reverse(*lasted));
    long
}

/// Logs every call that has run for `at_least` and sets the gauge for each thread.
pub fn report(at_least: Duration) {
    let gauge = &metrics().thread_call_seconds;
    gauge.reset();
    for (call, lasted) in long_calls(Duration::ZERO) {
        gauge
            .with_label_values(&[&call.thread, call.call])
            .set(lasted.as_secs_f64());
        if lasted >= at_least {
            tracing::warn!(
                thread = call.thread,
                call = call.call,
                waited_ms = lasted.as_millis() as u64,
                "a runtime thread has been waiting on one call for long"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_listed_while_its_guard_lives_and_nesting_restores_the_outer_one() {
        let outer = enter("outer");
        {
            let _inner = enter("inner");
            let mine: Vec<&'static str> = long_calls(Duration::ZERO)
                .into_iter()
                .filter(|(c, _)| c.call == "inner" || c.call == "outer")
                .map(|(c, _)| c.call)
                .collect();
            assert_eq!(mine, ["inner"], "the innermost call stands for the thread");
        }
        assert!(long_calls(Duration::ZERO).iter().any(|(c, _)| c.call == "outer"));
        drop(outer);
        assert!(!long_calls(Duration::ZERO).iter().any(|(c, _)| c.call == "outer"));
    }
}
