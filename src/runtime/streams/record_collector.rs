//! The record collector: the stream thread's one producer, as Kafka Streams'
//! `RecordCollector`. It sends the topology's outputs (to the task's partition, or to the
//! one a repartition names) and the changelog records, follows their deliveries, and runs the producer's transactions.
//!
//! Invariants:
//! - Under `exactly_once_v2` every record goes into the open transaction; a transaction
//!   commits only if every one of its records was delivered.
//! - A dead letter always fits on its topic (`runtime::dead_letter` cuts it).
//! - A producer whose commit or abort did not answer is never used again (librdkafka
//!   lacks KIP-890, so a late answer could apply to a later transaction).
//! - No transactional call holds the stream thread past its deadline (`bounded_call`):
//!   one that does not return in time is an unknown outcome, and the producer is replaced.
//!   A commit librdkafka itself reports as still under way (its timeout passed, the commit
//!   goes on) is asked for again, which waits for that same commit: a new producer would
//!   wait for it too, and the stores would be restored for nothing.

use super::bounded_call::{BoundedCalls, Overdue};
use super::commit::{observe_phase, observe_phase_took};
use super::error::{is_fatal_code, Severity, StreamsError};
use super::faults::Faults;
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::runtime::{activity, client, dead_letter, error_codes};
use crate::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use crate::topology::output::OutputRecord;
use crate::topology::store::StoreChange;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use rdkafka::{ClientContext, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

/// Longest a Kafka call of the stream thread may block (rewinds, the start of a producer).
pub const KAFKA_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a call of an open transaction may block (sending its offsets, committing or
/// aborting it): a healthy one takes milliseconds, and the broker aborts the transaction
/// itself once `transaction.timeout.ms` passes, so waiting longer only stalls every task.
const TRANSACTION_CALL: Duration = Duration::from_secs(5);
/// How much longer than its own timeout a transactional call's answer is waited for, so that
/// librdkafka's answer (say, a retriable "timed out") comes before the call is given up.
const CALL_MARGIN: Duration = Duration::from_secs(1);
/// Longest a commit that librdkafka says is still under way is waited for, in all: past
/// the socket timeout (10 s), after which librdkafka gives a request to a frozen
/// coordinator up and asks the coordinator that replaced it, plus time for that answer.
/// Giving up at the socket timeout itself (it was 10 s) gave up the commit just as it was
/// about to finish: a broker frozen under a commit cost a new producer and a full restore.
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

/// Follows delivery reports: the failure that tells most about the open transaction (a
/// fatal one, such as an authorization error, over the first retriable one), and the
/// last offset written to each changelog partition.
pub struct DeliveryTracker {
    changelog_topic: String,
    failure: Mutex<Option<RDKafkaErrorCode>>,
    changelog_offsets: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) if message.topic() == self.changelog_topic => {
                if let Ok(mut offsets) = self.changelog_offsets.lock() {
                    let entry = offsets.entry(message.partition()).or_insert(-1);
                    *entry = (*entry).max(message.offset());
                }
            }
            Ok(_) => {}
            Err((error, message)) => {
                let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                if let Ok(mut failure) = self.failure.lock() {
                    // One line per failed transaction, not one per record: a leader that
                    // stops answering fails every record in flight to it at once.
                    if failure.is_none() {
                        warn!(topic = message.topic(), partition = message.partition(), %error,
                            "delivery failed; the open transaction will roll back (its other failed deliveries are not logged)");
                    }
                    if failure.is_none() || is_fatal_code(code) {
                        *failure = Some(code);
                    }
                }
            }
        }
    }
}

/// The producer, shared with the worker that runs its transactional calls.
type Shared = Arc<BaseProducer<DeliveryTracker>>;

pub struct RecordCollector {
    producer: Shared,
    /// Runs the producer's transactional calls with a deadline.
    calls: BoundedCalls,
    /// The topic names it sends to, and the inputs dead letters name as their source.
    def: TopologyDefinition,
    exactly_once: bool,
    in_transaction: bool,
    /// Set when the producer may not be trusted with another transaction (a commit or
    /// abort that did not answer, a fatal or fenced producer); cleared once replaced.
    stale: bool,
    /// What a new producer is built from, when the current one cannot be trusted.
    kafka: KafkaConfig,
    transactional_id: String,
    transaction_timeout_ms: u64,
    linger_ms: u64,
}

fn new_producer(
    kafka: &KafkaConfig,
    changelog: &str,
    exactly_once: bool,
    transactional_id: &str,
    transaction_timeout_ms: u64,
    linger_ms: u64,
    calls: &mut BoundedCalls,
) -> Result<Shared, StreamsError> {
    let tracker = DeliveryTracker {
        changelog_topic: changelog.to_string(),
        failure: Mutex::new(None),
        changelog_offsets: Mutex::new(HashMap::new()),
    };
    let config = if exactly_once {
        client::transactional_producer(kafka, transactional_id, transaction_timeout_ms, linger_ms)
    } else {
        client::producer(kafka, linger_ms)
    };
    let producer: Shared = Arc::new(config.create_with_context(tracker)?);
    if exactly_once {
        let shared = producer.clone();
        calls
            .run("init_transactions", KAFKA_CALL_TIMEOUT, move || {
                shared.init_transactions(KAFKA_CALL_TIMEOUT)
            })
            .map_err(unknown_outcome)??;
    }
    Ok(producer)
}

/// A transactional call that did not return in time: what the broker made of it is unknown.
fn unknown_outcome(overdue: Overdue) -> StreamsError {
    StreamsError::CommitOutcomeUnknown {
        source: KafkaError::Global(RDKafkaErrorCode::OperationTimedOut),
        waited: overdue.deadline,
    }
}

impl RecordCollector {
    pub fn new(
        kafka: &KafkaConfig,
        def: &TopologyDefinition,
        cfg: &ProcessorConfig,
        transactional_id: &str,
    ) -> Result<Self, StreamsError> {
        let exactly_once = def.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let mut calls = BoundedCalls::default();
        let producer = new_producer(
            kafka,
            &def.store.changelog,
            exactly_once,
            transactional_id,
            cfg.transaction_timeout_ms,
            cfg.linger_ms,
            &mut calls,
        )?;
        Ok(Self {
            producer,
            calls,
            def: def.clone(),
            exactly_once,
            in_transaction: false,
            stale: false,
            kafka: kafka.clone(),
            transactional_id: transactional_id.to_string(),
            transaction_timeout_ms: cfg.transaction_timeout_ms,
            linger_ms: cfg.linger_ms,
        })
    }

    pub fn exactly_once(&self) -> bool {
        self.exactly_once
    }

    /// The transactional id this replica's transactions run under.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Whether records were sent since the last commit or abort.
    pub fn is_open(&self) -> bool {
        self.in_transaction
    }

    fn begin_if_needed(&mut self) -> Result<(), StreamsError> {
        if self.exactly_once && !self.in_transaction {
            if let Err(error) = self.producer.begin_transaction() {
                self.stale = true;
                return Err(error.into());
            }
        }
        self.in_transaction = true;
        Ok(())
    }

    /// Sends one output of the task of `partition` to its topic: to the partition the
    /// output names, or else to the task's own.
    pub fn send(&mut self, partition: u32, output: &OutputRecord) -> Result<(), StreamsError> {
        self.begin_if_needed()?;
        let topic = self.def.output_name(output.topic);
        let partition = output.partition.unwrap_or(partition);
        let (key, value, headers) = match &output.provenance {
            None => (output.key.as_deref(), output.value.as_deref(), None),
            Some(provenance) => {
                let source = self.def.input_name(provenance.source);
                let (key, value, headers) = dead_letter::bounded_letter(output, provenance, source);
                (key, value, Some(headers))
            }
        };
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition as i32);
        if let Some(timestamp_ms) = output.timestamp_ms {
            record = record.timestamp(timestamp_ms);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        Ok(client::send_waiting(&self.producer, record)?)
    }

    /// Sends one store change to `partition` of the changelog (`None` is a tombstone).
    pub fn send_changelog(&mut self, partition: u32, change: &StoreChange) -> Result<(), StreamsError> {
        self.begin_if_needed()?;
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.def.store.changelog)
            .partition(partition as i32)
            .key(&change.key[..]);
        if let Some(value) = change.value.as_deref() {
            record = record.payload(value);
        }
        Ok(client::send_waiting(&self.producer, record)?)
    }

    /// Serves delivery reports without waiting.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits for every record sent to be acknowledged; fails with the delivery failure's own
    /// code if any failed, so a fatal cause (a denied topic) is classified as fatal. Stops
    /// waiting, `Ok(false)`, once `give_up` says the transaction is lost anyway.
    fn flush(&self, give_up: impl FnMut() -> bool) -> Result<bool, StreamsError> {
        let _call = activity::enter("flush");
        // Records the broker has not taken once the transaction timed out will not be.
        let flushed = client::flush_unless(
            &self.producer,
            Duration::from_millis(self.transaction_timeout_ms),
            give_up,
        )?;
        match self.take_failure() {
            Some(code) => Err(KafkaError::MessageProduction(code).into()),
            None => Ok(flushed),
        }
    }

    /// A transactional call past its deadline: the producer is stale, the transaction lost.
    fn overdue(&mut self, overdue: Overdue) -> StreamsError {
        self.stale = true;
        StreamsError::CallOverdue {
            call: overdue.call,
            waited: overdue.deadline,
        }
    }

    /// Records a delivery failure, as a delivery report would.
    fn record_failure(&self, code: RDKafkaErrorCode) {
        if let Ok(mut failure) = self.producer.context().failure.lock() {
            failure.get_or_insert(code);
        }
    }

    fn take_failure(&self) -> Option<RDKafkaErrorCode> {
        self.producer.context().failure.lock().ok().and_then(|mut f| f.take())
    }

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
        let mut send = match (self.exactly_once, offsets.count() > 0) {
            (true, true) => {
                let group = group.ok_or(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownGroup))?;
                let (producer, offsets) = (self.producer.clone(), offsets.clone());
                let held = faults.hold_offsets();
                let timeout = if faults.time_out_offsets() {
                    Duration::ZERO
                } else {
                    SEND_OFFSETS_CALL
                };
                let pending = self
                    .calls
                    .start("send_offsets_to_transaction", SEND_OFFSETS_CALL, move || {
                        if held {
                            std::thread::sleep(SEND_OFFSETS_CALL * 2);
                        }
                        producer.send_offsets_to_transaction(&offsets, &group, timeout)
                    });
                match pending {
                    Ok(pending) => Some(pending),
                    Err(overdue) => return Err(self.overdue(overdue)),
                }
            }
            _ => None,
        };
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
        if self.exactly_once {
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
                Ok(()) if !lost => {}
                Ok(()) => {
                    return Err(StreamsError::CommitOutcomeUnknown {
                        source: KafkaError::Global(RDKafkaErrorCode::OperationTimedOut),
                        waited: started.elapsed(),
                    })
                }
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
                    return Err(StreamsError::CommitOutcomeUnknown {
                        source: KafkaError::Transaction(e),
                        waited: started.elapsed(),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.in_transaction = false;
        Ok(())
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

    /// The last changelog offset delivered to each partition since the last call.
    pub fn take_changelog_offsets(&self) -> HashMap<i32, i64> {
        self.producer
            .context()
            .changelog_offsets
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// Abandons the open transaction: aborts it if `cause` allows, otherwise (fenced,
    /// fatal, an unknown outcome, or a failed abort) replaces the producer, whose
    /// `init_transactions` settles whatever the broker still holds open for this id.
    /// Says which of the two happened: after [`Abandoned::Replaced`] nobody here knows what
    /// the broker made of the abandoned work.
    pub fn abandon(&mut self, cause: &StreamsError) -> Result<Abandoned, StreamsError> {
        let was_open = std::mem::replace(&mut self.in_transaction, false);
        let _ = self.take_changelog_offsets();
        let _ = self.take_failure();
        if !self.exactly_once || !(was_open || self.stale) {
            return Ok(Abandoned::Clean);
        }
        let aborted = was_open && cause.abortable() && {
            let producer = self.producer.clone();
            let result = self.calls.run("abort_transaction", TRANSACTION_CALL, move || {
                producer.abort_transaction(TRANSACTION_CALL)
            });
            // The abort purges the records still in flight, and their reports come while it
            // runs: they belong to the aborted transaction, not the next.
            let _ = self.take_changelog_offsets();
            let _ = self.take_failure();
            matches!(result, Ok(Ok(())))
        };
        if aborted && !self.stale {
            return Ok(Abandoned::Clean);
        }
        self.stale = true;
        // Nothing the abandoned transaction sent may reach the broker later: librdkafka
        // would keep retrying queued and in-flight records, and one appended after the
        // replacement's epoch bump aborted the transaction elsewhere has no abort marker
        // on its partition, so the next commit of this transactional id makes it visible
        // (seen once in the long fault run, after a broker SIGKILL: a decision of the
        // abandoned transaction, then the same order decided again).
        self.producer
            .purge(PurgeConfig::default().queue().inflight().non_blocking());
        warn!(%cause, "replacing the transactional producer");
        self.producer = new_producer(
            &self.kafka,
            &self.def.store.changelog,
            true,
            &self.transactional_id,
            self.transaction_timeout_ms,
            self.linger_ms,
            &mut self.calls,
        )?;
        self.stale = false;
        Ok(Abandoned::Replaced)
    }
}

/// How [`RecordCollector::abandon`] left the open work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// Nothing was open, or the transaction was aborted: the broker keeps none of it.
    Clean,
    /// The producer was replaced: what the broker made of the open work is its own to say
    /// (it may have committed it), so local state must be rebuilt from what is committed.
    Replaced,
}
