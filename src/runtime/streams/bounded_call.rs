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

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// The call did not return within its deadline (or its worker died).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    pub call: &'static str,
    pub deadline: Duration,
}

/// Runs calls on a worker thread of its own, one at a time as long as every started call
/// is finished before the next starts (a call past its deadline keeps its worker, and the
/// next call gets a new one).
#[derive(Default)]
pub struct BoundedCalls {
    worker: Option<Sender<Job>>,
}

/// A call under way on a worker, waited for with [`BoundedCalls::finish`]; its deadline
/// runs from its start. Dropped unfinished, the call goes on unwatched: a caller that does
/// so must treat its producer as stale, as for an overdue call.
#[must_use = "a started call is finished, or its producer treated as stale"]
pub struct Pending<T> {
    overdue: Overdue,
    started: Instant,
    answer: Receiver<T>,
    answered: Option<T>,
    worker: Sender<Job>,
}

impl<T> Pending<T> {
    /// The call's answer, if it has come (without waiting).
    pub fn answer(&mut self) -> Option<&T> {
        if self.answered.is_none() {
            self.answered = self.answer.try_recv().ok();
        }
        self.answered.as_ref()
    }

    /// Whether the call is past its deadline without an answer (or its worker died).
    pub fn overdue(&mut self) -> bool {
        if self.answered.is_some() {
            return false;
        }
        // One receive: an answer that arrives between two would be lost.
        match self.answer.try_recv() {
            Ok(value) => {
                self.answered = Some(value);
                false
            }
            Err(TryRecvError::Disconnected) => true,
            Err(TryRecvError::Empty) => self.started.elapsed() >= self.overdue.deadline,
        }
    }
}

impl BoundedCalls {
    /// Runs `call` on the worker and waits at most `deadline` for its result.
    pub fn run<T: Send + 'static>(
        &mut self,
        name: &'static str,
        deadline: Duration,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Overdue> {
        let pending = self.start(name, deadline, call)?;
        self.finish(pending)
    }

    /// Starts `call` on the worker without waiting for it, so the caller can do other work
    /// meanwhile; until [`Self::finish`] another call would get a worker of its own.
    pub fn start<T: Send + 'static>(
        &mut self,
        name: &'static str,
        deadline: Duration,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Pending<T>, Overdue> {
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
        Ok(Pending {
            overdue,
            started: Instant::now(),
            answer: result,
            answered: None,
            worker,
        })
    }

    /// Waits for a started call for what is left of its deadline.
    pub fn finish<T>(&mut self, mut pending: Pending<T>) -> Result<T, Overdue> {
        let left = pending.overdue.deadline.saturating_sub(pending.started.elapsed());
        let answer = match pending.answered.take() {
            Some(value) => Ok(value),
            None => pending.answer.recv_timeout(left),
        };
        match answer {
            Ok(value) => {
                self.worker = Some(pending.worker);
                Ok(value)
            }
            // The worker stays with its call; the next call gets a new one.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                let Overdue { call, deadline } = pending.overdue;
                tracing::warn!(
                    call,
                    deadline_ms = deadline.as_millis() as u64,
                    "a transactional call did not return in time; its producer is given up"
                );
                Err(pending.overdue)
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

    #[test]
    fn a_started_call_answers_or_is_overdue_without_being_waited_for() {
        let mut calls = BoundedCalls::default();
        let (release, blocked) = mpsc::channel::<()>();
        let mut answering = calls
            .start("answering", Duration::from_secs(5), move || blocked.recv().is_ok())
            .unwrap();
        assert!(answering.answer().is_none() && !answering.overdue());
        let _ = release.send(());
        assert!(
            wait_for(|| answering.answer().is_some()),
            "its answer is seen as soon as it comes"
        );
        assert!(!answering.overdue());
        assert_eq!(calls.finish(answering), Ok(true));

        let (_keep, blocked) = mpsc::channel::<()>();
        let mut stuck = calls
            .start("stuck", Duration::from_millis(50), move || blocked.recv().is_ok())
            .unwrap();
        assert!(wait_for(|| stuck.overdue()), "overdue once its deadline passed");
        assert!(calls.finish(stuck).is_err());
        assert_eq!(calls.run("after", Duration::from_secs(5), || 9), Ok(9));
    }

    #[test]
    fn an_answer_that_comes_while_it_is_looked_for_is_never_lost() {
        // The worker answers, then drops its end: an answer missed by one look would be
        // taken for a dead worker, so for an overdue call.
        let mut calls = BoundedCalls::default();
        for round in 0..2000 {
            let mut pending = calls.start("quick", Duration::from_secs(5), move || round).unwrap();
            loop {
                assert!(!pending.overdue(), "round {round}: an answered call taken for overdue");
                if pending.answer().is_some() {
                    break;
                }
            }
            assert_eq!(calls.finish(pending), Ok(round));
        }
    }

    fn wait_for(mut settled: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if settled() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }
}
