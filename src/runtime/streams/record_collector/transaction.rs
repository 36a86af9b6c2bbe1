//! How the record collector ends a transaction: the consumed offsets are sent while the
//! deliveries are awaited, then the commit is asked for, and asked again while librdkafka
//! says it is still under way. Every call is bounded (`bounded_call`); one that does not
//! answer in time leaves the producer stale.
//! Invariant: a commit is reported done only when librdkafka answered it done; any answer
//! that leaves the broker's outcome open is [`StreamsError::CommitOutcomeUnknown`].

use super::{unknown_outcome, RecordCollector, TRANSACTION_CALL};
use crate::runtime::error_codes;
use crate::runtime::streams::bounded_call::Pending;
use crate::runtime::streams::commit::{observe_phase, observe_phase_took};
use crate::runtime::streams::error::{Severity, StreamsError};
use crate::runtime::streams::faults::Faults;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{Producer, PurgeConfig};
use rdkafka::TopicPartitionList;
use std::time::{Duration, Instant};
use tracing::warn;

/// How much longer than its own timeout a transactional call's answer is waited for, so that
/// librdkafka's answer (say, a retriable "timed out") comes before the call is given up.
const CALL_MARGIN: Duration = Duration::from_secs(1);
/// Longest a commit that librdkafka says is still under way is waited for, in all: past
/// two socket timeouts (5 s each: a request to a frozen coordinator given up, asked of it
/// again while the cluster has not fenced it yet, then of the coordinator that replaced
/// it), plus time for that answer. Giving up at the first timeout gave up the commit just as
/// it was about to finish: a broker frozen under a commit cost a new producer and a full
/// restore.
const COMMIT_WAIT: Duration = Duration::from_secs(13);
/// The least time between two asks for the same commit (librdkafka answers "still under
/// way" at its timeout; an answer that comes sooner is not asked again in a busy loop).
const ASK_AGAIN_AFTER: Duration = Duration::from_millis(100);
/// Longest the send of the consumed offsets may block. Shorter than the other calls: when
/// it outlasts this it has most likely met librdkafka's stale group coordinator (its
/// issue 5511: a coordinator whose broker shut down stays cached and the request waits for
/// an unrelated broker's state change), which only a new producer escapes; and giving it up
/// costs no restore, since the transaction was never asked to commit.
const SEND_OFFSETS_CALL: Duration = Duration::from_secs(2);

impl RecordCollector {
    /// Ends the open transaction with `offsets` (the consumed positions) in it. Under
    /// at_least_once it only waits for the deliveries; the caller commits the offsets.
    /// A commit that does not answer in time is [`StreamsError::CommitOutcomeUnknown`].
    ///
    /// The offsets are sent while the deliveries are awaited, as the Java producer allows:
    /// when a broker shuts down, both wait on it (its partitions' leaders and its group
    /// coordinator move), and in sequence the two waits added up.
    pub fn commit(
        &mut self,
        offsets: &TopicPartitionList,
        group: Option<ConsumerGroupMetadata>,
        faults: &Faults,
    ) -> Result<(), StreamsError> {
        if faults.purge_queued_records() {
            warn!("injected fault: the transaction's queued records are purged");
            self.producer.purge(PurgeConfig::default().queue());
        }
        let send = match (self.exactly_once, offsets.count() > 0) {
            (true, true) => Some(self.start_sending_offsets(offsets, group, faults)?),
            _ => None,
        };
        self.await_deliveries(send, faults)?;
        if self.exactly_once {
            self.end_transaction(faults)?;
        }
        self.in_transaction = false;
        Ok(())
    }

    /// Starts sending the consumed offsets to the open transaction, on the worker that
    /// bounds transactional calls (at most [`SEND_OFFSETS_CALL`]).
    fn start_sending_offsets(
        &mut self,
        offsets: &TopicPartitionList,
        group: Option<ConsumerGroupMetadata>,
        faults: &Faults,
    ) -> Result<Pending<KafkaResult<()>>, StreamsError> {
        let group = group.ok_or(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownGroup))?;
        let (producer, offsets) = (self.producer.clone(), offsets.clone());
        let held = faults.hold_offsets();
        let timeout = if faults.time_out_offsets() {
            Duration::ZERO
        } else {
            SEND_OFFSETS_CALL
        };
        self.calls
            .start("send_offsets_to_transaction", SEND_OFFSETS_CALL, move || {
                if held {
                    std::thread::sleep(SEND_OFFSETS_CALL * 2);
                }
                producer.send_offsets_to_transaction(&offsets, &group, timeout)
            })
            .map_err(|overdue| self.overdue(overdue))
    }

    /// Waits for the transaction's deliveries and for the send of its offsets, if any; fails
    /// with what tells most of the two (a fatal delivery failure, else a failed or overdue
    /// send, else a failed delivery).
    fn await_deliveries(
        &mut self,
        mut send: Option<Pending<KafkaResult<()>>>,
        faults: &Faults,
    ) -> Result<(), StreamsError> {
        if faults.time_out_deliveries() {
            // As librdkafka reports a record it gave up on, while the send may be under way.
            self.record_failure(RDKafkaErrorCode::MessageTimedOut);
        }
        let flushed = Instant::now();
        // Waiting for the deliveries is for nothing once the send is overdue (the producer
        // is replaced). After a failed send it goes on: the abort that follows must not
        // meet records whose reports nobody serves (librdkafka's abort waits for them and
        // timed out, seen when a rebalance failed the send with ILLEGAL_GENERATION).
        let delivered = self.flush(|| send.as_mut().is_some_and(|s| s.overdue()));
        let flush_took = flushed.elapsed();
        // The send is over before the transaction is ended or given up, whatever the
        // deliveries' outcome (librdkafka refuses an abort while it is under way).
        let sending = Instant::now();
        let sent = match send.map(|pending| self.calls.finish(pending)) {
            Some(Err(overdue)) => {
                let overdue = self.overdue(overdue);
                // A fatal delivery failure (a denied topic) still says most; the producer
                // is stale either way, since the send goes on.
                return Err(match delivered {
                    Err(failed) if failed.severity() == Severity::Fatal => failed,
                    _ => overdue,
                });
            }
            Some(Ok(sent)) => Some(sent),
            None => None,
        };
        let delivered = match (delivered, sent) {
            // A fatal delivery failure (a denied topic) tells most.
            (Err(failed), _) if failed.severity() == Severity::Fatal => return Err(failed),
            // A failed send makes librdkafka purge the transaction's queued records, whose
            // reports then fail: the send is the cause.
            (_, Some(Err(send_failed))) => return Err(send_failed.into()),
            (delivered, Some(Ok(()))) => {
                // What the send added to the commit past the deliveries.
                observe_phase("send_offsets", sending);
                delivered?
            }
            (delivered, None) => delivered?,
        };
        if delivered {
            observe_phase_took("flush", flush_took);
        } else {
            // The flush gave up on a send that then answered just in time (it looked
            // overdue a moment before `finish`): the deliveries are awaited before the commit.
            self.flush(|| false)?;
        }
        Ok(())
    }

    /// Commits the open transaction, its deliveries and offsets done. An answer that
    /// leaves the outcome unknown (no answer in time, a fatal one, a lost connection) is
    /// [`StreamsError::CommitOutcomeUnknown`]: the caller assumes it may have committed.
    fn end_transaction(&mut self, faults: &Faults) -> Result<(), StreamsError> {
        if faults.hang_in_transaction() {
            warn!("injected fault: the open transaction stays open; the stream thread stops here");
            loop {
                std::thread::park();
            }
        }
        let started = Instant::now();
        let (committed, under_way) = self.commit_transaction(faults)?;
        if committed.is_ok() {
            observe_phase("commit_transaction", started);
        }
        let lost = committed.is_ok() && faults.lose_commit_answer();
        match committed {
            Ok(()) if !lost => Ok(()),
            Ok(()) => Err(StreamsError::CommitOutcomeUnknown {
                source: KafkaError::Global(RDKafkaErrorCode::OperationTimedOut),
                waited: started.elapsed(),
            }),
            // Unknown too: a fatal answer (librdkafka's "succeeded on the broker but failed
            // locally" among them) and a commit whose request timed out or lost its
            // connection (librdkafka answers those abortable, without retrying, though the
            // coordinator may have applied it). Assuming a commit costs only a restore.
            Err(KafkaError::Transaction(e))
                if under_way
                    || e.is_retriable()
                    || e.is_fatal()
                    || error_codes::timed_out(e.code())
                    || error_codes::connection_lost(e.code()) =>
            {
                Err(StreamsError::CommitOutcomeUnknown {
                    source: KafkaError::Transaction(e),
                    waited: started.elapsed(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Asks librdkafka to commit the open transaction and, while it answers that the commit
    /// has not finished yet (retriable: it goes on in the background, as when the
    /// transaction coordinator moves), asks again, which waits for that same commit, for
    /// up to [`COMMIT_WAIT`] in all. Giving the producer up instead would gain nothing: its
    /// successor's start waits for this commit too, and the stores would be restored. A
    /// call that outlasts its own timeout (librdkafka stuck on a coordinator, its issues
    /// 5456 and 5511) is overdue: the producer is stale. Says, beside the last answer,
    /// whether an earlier answer left the commit under way: any failure after it is of
    /// unknown outcome (the commit may have reached the coordinator).
    fn commit_transaction(&mut self, faults: &Faults) -> Result<(KafkaResult<()>, bool), StreamsError> {
        let started = Instant::now();
        let mut timeout = if faults.time_out_commit() {
            Duration::ZERO
        } else {
            TRANSACTION_CALL
        };
        let mut under_way = false;
        loop {
            let asked = Instant::now();
            let producer = self.producer.clone();
            let answer = self
                .calls
                .run("commit_transaction", TRANSACTION_CALL + CALL_MARGIN, move || {
                    producer.commit_transaction(timeout)
                });
            let answer = match answer {
                Ok(answer) => answer,
                Err(overdue) => {
                    self.stale = true;
                    return Err(unknown_outcome(overdue));
                }
            };
            match answer {
                Err(KafkaError::Transaction(e)) if e.is_retriable() && started.elapsed() < COMMIT_WAIT => {
                    warn!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        error = %e,
                        "the commit has not finished; waiting again for the commit"
                    );
                    under_way = true;
                    // An answer that came back at once is not waited on again at once.
                    if asked.elapsed() < ASK_AGAIN_AFTER {
                        std::thread::sleep(ASK_AGAIN_AFTER);
                    }
                    // The last ask ends with the wait.
                    timeout = TRANSACTION_CALL.min(COMMIT_WAIT.saturating_sub(started.elapsed()));
                }
                answer => return Ok((answer, under_way)),
            }
        }
    }
}
