//! The record collector: the stream thread's one producer, as Kafka Streams'
//! `RecordCollector`. It sends the topology's outputs (to the task's partition, or to the
//! one a repartition names) and the changelog records, follows their deliveries
//! (`delivery_tracker`), and runs the producer's transactions: how one ends is in
//! `record_collector/transaction.rs`, how one is abandoned here.
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
use super::delivery_tracker::DeliveryTracker;
use super::error::StreamsError;
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::runtime::{activity, client, dead_letter};
use crate::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use crate::topology::output::OutputRecord;
use crate::topology::store::StoreChange;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

mod transaction;

/// Longest a Kafka call of the stream thread may block (rewinds, the start of a producer).
pub const KAFKA_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a call of an open transaction may block (sending its offsets, committing or
/// aborting it): a healthy one takes milliseconds, and the broker aborts the transaction
/// itself once `transaction.timeout.ms` passes, so waiting longer only stalls every task.
const TRANSACTION_CALL: Duration = Duration::from_secs(5);

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
    let tracker = DeliveryTracker::new(changelog);
    let config = if exactly_once {
        client::transactional_producer(kafka, transactional_id, transaction_timeout_ms, linger_ms)
    } else {
        client::producer(kafka, linger_ms)
    };
    let started = Instant::now();
    let producer: Shared = Arc::new(config.create_with_context(tracker)?);
    if exactly_once {
        let created = started.elapsed();
        let shared = producer.clone();
        calls
            .run("init_transactions", KAFKA_CALL_TIMEOUT, move || {
                shared.init_transactions(KAFKA_CALL_TIMEOUT)
            })
            .map_err(unknown_outcome)??;
        // How long a new producer waits for its id's previous transaction to be settled
        // (the coordinator aborts it first): what a replaced producer costs.
        info!(
            create_ms = created.as_millis() as u64,
            init_ms = (started.elapsed() - created).as_millis() as u64,
            "transactional producer ready"
        );
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

    /// Opens a transaction unless one is open: before the first record of one, or for a
    /// commit of the consumed offsets alone.
    pub fn begin_if_needed(&mut self) -> Result<(), StreamsError> {
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
        self.producer.context().record_failure(code);
    }

    fn take_failure(&self) -> Option<RDKafkaErrorCode> {
        self.producer.context().take_failure()
    }

    /// The last changelog offset delivered to each partition since the last call.
    pub fn take_changelog_offsets(&self) -> HashMap<i32, i64> {
        self.producer.context().take_changelog_offsets()
    }

    /// Forgets what the delivery reports said of the abandoned transaction (its failure and
    /// changelog offsets); says whether any of its records was purged from the queue.
    fn forget_reports(&self) -> bool {
        let _ = self.take_changelog_offsets();
        let _ = self.take_failure();
        self.producer.context().take_purged()
    }

    /// Abandons the open transaction: aborts it if `cause` allows, otherwise (fenced,
    /// fatal, an unknown outcome, or a failed abort) replaces the producer, whose
    /// `init_transactions` settles whatever the broker still holds open for this id. An
    /// aborted transaction whose queued records were purged before the abort also gets a
    /// new producer.
    /// Says which of the two happened: after [`Abandoned::Replaced`] nobody here knows what
    /// the broker made of the abandoned work.
    pub fn abandon(&mut self, cause: &StreamsError) -> Result<Abandoned, StreamsError> {
        let was_open = std::mem::replace(&mut self.in_transaction, false);
        let purged = self.forget_reports();
        if !self.exactly_once || !(was_open || self.stale) {
            return Ok(Abandoned::Clean);
        }
        let aborted = was_open && cause.abortable() && {
            let producer = self.producer.clone();
            let result = self.calls.run("abort_transaction", TRANSACTION_CALL, move || {
                producer.abort_transaction(TRANSACTION_CALL)
            });
            // The abort purges the records still in flight, and their reports come while it
            // runs: they belong to the aborted transaction, not the next (and its own purge
            // is accounted for by librdkafka, which moves the epoch's sequence base past it).
            let _ = self.forget_reports();
            matches!(result, Ok(Ok(())))
        };
        if aborted && !self.stale {
            if !purged {
                return Ok(Abandoned::Clean);
            }
            // Records were purged before the abort (librdkafka purges the queue when the
            // transaction fails under it, e.g. a send of the offsets refused with
            // ILLEGAL_GENERATION). librdkafka moves the sequence base past them, yet twice
            // the kept producer's next transaction failed on OUT_OF_ORDER_SEQUENCE_NUMBER
            // and rolled back too, with an epoch bump (1.1-1.7 s without a decision); the
            // cause inside librdkafka is not known. A new epoch starts every sequence
            // afresh, for the epoch bump alone. The broker's outcome is known (aborted).
            // Stale until replaced: a replacement that fails is tried again by the recovery.
            self.stale = true;
            warn!(%cause, "replacing the transactional producer: records were purged from its queue before the abort");
            self.replace_producer()?;
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
        self.replace_producer()?;
        Ok(Abandoned::Replaced)
    }

    /// Starts a new transactional producer for this id in place of the current one; its
    /// `init_transactions` settles whatever the broker still holds open for the id.
    fn replace_producer(&mut self) -> Result<(), StreamsError> {
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
        Ok(())
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
