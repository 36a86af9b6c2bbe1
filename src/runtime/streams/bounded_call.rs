//! Transactional producer calls with a deadline the stream thread can rely on. librdkafka
//! blocks in `send_offsets_to_transaction` far past its timeout when the group coordinator
//! goes away (its timeout on coordinator requests is never checked, and a coordinator whose
//! broker was removed from the metadata is never looked up again: librdkafka issues 5456
//! and 5511; seen here for 158 s after the coordinator's broker was killed, every
//! partition of the replica undecided meanwhile). So each call runs on a worker thread
//! and the stream thread waits for it at most its deadline.
//!
//! Invariant: a call past its deadline counts as an unknown outcome. Its worker is given
//! up (it ends whenever librdkafka returns), and the caller replaces the producer, whose
//! `init_transactions` fences the one still blocked: nothing it does later can commit.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// The call did not return within its deadline (or its worker died).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    pub call: &'static str,
    pub deadline: Duration,
}

/// Runs calls on a worker thread of its own, one at a time.
#[derive(Default)]
pub struct BoundedCalls {
    worker: Option<Sender<Job>>,
}

impl BoundedCalls {
    /// Runs `call` on the worker and waits at most `deadline` for its result.
    pub fn run<T: Send + 'static>(
        &mut self,
        name: &'static str,
        deadline: Duration,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Overdue> {
        let overdue = Overdue { call: name, deadline };
        let (answer, result): (Sender<T>, Receiver<T>) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _call = crate::runtime::activity::enter(name);
            let _ = answer.send(call());
        });
        let worker = match self.worker.take() {
            Some(worker) => worker,
            None => spawn_worker().ok_or(overdue)?,
        };
        if worker.send(job).is_err() {
            return Err(overdue);
        }
        match result.recv_timeout(deadline) {
            Ok(value) => {
                self.worker = Some(worker);
                Ok(value)
            }
            // The worker stays with its call; the next call gets a new one.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                tracing::warn!(
                    call = name,
                    deadline_ms = deadline.as_millis() as u64,
                    "a transactional call did not return in time; its producer is given up"
                );
                Err(overdue)
            }
        }
    }
}

fn spawn_worker() -> Option<Sender<Job>> {
    let (jobs, queue): (Sender<Job>, Receiver<Job>) = mpsc::channel();
    std::thread::Builder::new()
        .name("transaction-calls".into())
        .spawn(move || {
            while let Ok(job) = queue.recv() {
                job();
            }
        })
        .ok()?;
    Some(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_past_its_deadline_is_given_up_and_the_next_runs_on_a_new_worker() {
        let mut calls = BoundedCalls::default();
        assert_eq!(calls.run("quick", Duration::from_secs(5), || 7), Ok(7));
        let (release, blocked) = mpsc::channel::<()>();
        let stuck = calls.run("stuck", Duration::from_millis(50), move || blocked.recv().is_ok());
        assert_eq!(
            stuck,
            Err(Overdue {
                call: "stuck",
                deadline: Duration::from_millis(50)
            })
        );
        assert_eq!(
            calls.run("after", Duration::from_secs(5), || 8),
            Ok(8),
            "not queued behind the stuck call"
        );
        let _ = release.send(());
    }
}
