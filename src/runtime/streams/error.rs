//! The stream thread's errors, classified once, here, at the boundary with librdkafka and
//! RocksDB. Everything above this file decides by [`StreamsError::severity`], never by
//! inspecting a Kafka error code or a message.

use crate::runtime::error_codes::{self, class, class_of, Class};
use crate::topology::processor::ProcessError;
use crate::topology::store::StoreError;
use crate::topology::task_id::TaskId;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

/// What the stream thread may do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The broker or the network failed, or this producer was fenced: roll back to the
    /// last commit, rebuild the state from what is committed, and try again with backoff.
    Retriable,
    /// No retry can help (authorization, configuration, local state unusable, a failed
    /// record): abort the open transaction and stop the replica with this error.
    Fatal,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    /// A call to the broker failed, classified when the error was made.
    #[error("kafka: {source}")]
    Kafka { source: KafkaError, severity: Severity },
    /// The local store cannot be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The processor failed on one record; that record is neither committed nor applied.
    #[error("task {task}, processing offset {offset}: {source}")]
    Process {
        task: TaskId,
        offset: i64,
        source: ProcessError,
    },
    /// The consumer refused the group's assignment (librdkafka's rebalance state is not
    /// what the group said): nothing it fetches could be trusted to reach a task.
    #[error("the consumer refused the group's assignment: {0}")]
    Assignment(KafkaError),
    /// The state updater's thread stopped (it panicked): restoring tasks would wait forever.
    #[error("the state updater stopped (see the panic above); no task can be restored or kept as a standby")]
    UpdaterStopped,
    /// A stream thread panicked (see the panic above): the replica stops.
    #[error("{thread} panicked")]
    ThreadPanicked { thread: String },
    /// The state directory cannot be used.
    #[error("state dir: {0}")]
    StateDir(String),
    /// A commit's call did not return in time: the broker may or may not have committed.
    #[error("commit outcome unknown after {waited:?}: {source}")]
    CommitOutcomeUnknown { source: KafkaError, waited: Duration },
    /// A transactional call made before the commit was asked for (sending the consumed
    /// offsets) did not return in time. The transaction cannot have committed: only this
    /// producer could have ended it, and the producer that replaces it aborts it.
    #[error("{call} did not return within {waited:?}; the transaction was never asked to commit")]
    CallOverdue { call: &'static str, waited: Duration },
    /// A topic of the topology does not have the topology's partition count: the inputs
    /// of a task would no longer be read together, so the replica refuses to run.
    #[error("topic {topic} has {found} where the topology needs {expected} (inputs, outputs and changelog must be co-partitioned)")]
    CoPartitioning {
        topic: String,
        expected: u32,
        found: String,
    },
}

impl StreamsError {
    pub fn severity(&self) -> Severity {
        match self {
            StreamsError::Kafka { severity, .. } => *severity,
            StreamsError::CommitOutcomeUnknown { .. } | StreamsError::CallOverdue { .. } => Severity::Retriable,
            StreamsError::Store(_)
            | StreamsError::Process { .. }
            | StreamsError::StateDir(_)
            | StreamsError::Assignment(_)
            | StreamsError::UpdaterStopped
            | StreamsError::ThreadPanicked { .. }
            | StreamsError::CoPartitioning { .. } => Severity::Fatal,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.severity() == Severity::Retriable
    }

    /// Whether the failed work may have committed although the stream thread was not told
    /// so: only a commit that was asked for and not answered in time. Any other failure came
    /// before the commit was asked for (a delivery, a send of the offsets) or is the
    /// broker's answer to it, and a replaced producer's `init_transactions` aborts what its
    /// predecessor left open: the stores then only forget what they hold uncommitted, with
    /// no restore.
    pub fn may_have_committed(&self) -> bool {
        matches!(self, StreamsError::CommitOutcomeUnknown { .. })
    }

    /// Whether the open transaction may be aborted with the same producer, as Kafka Streams
    /// aborts for every failure but a fenced or fatal producer: a failed delivery, a failed
    /// send of the offsets or a refused commit leave librdkafka's transaction abortable
    /// (it purges the queued records itself). Not after a fatal transactional error (a
    /// fenced producer among them), nor after a call past its deadline, which may still be
    /// running (librdkafka refuses an abort meanwhile) or may have committed; nor after a
    /// delivery that timed out: its request may still be on its way, and librdkafka's abort
    /// writes its marker under the old epoch before it bumps the epoch, so a late append
    /// could land behind the marker. A new producer's start aborts under a new epoch, which
    /// the broker holds every late append of the old one against.
    pub fn abortable(&self) -> bool {
        match self {
            StreamsError::Kafka {
                source: KafkaError::Transaction(e),
                ..
            } => !e.is_fatal(),
            StreamsError::Kafka {
                source: KafkaError::MessageProduction(code) | KafkaError::Flush(code),
                ..
            } => !error_codes::timed_out(*code),
            StreamsError::CommitOutcomeUnknown { .. } | StreamsError::CallOverdue { .. } => false,
            _ => true,
        }
    }
}

impl From<KafkaError> for StreamsError {
    fn from(source: KafkaError) -> Self {
        let severity = classify(&source);
        StreamsError::Kafka { source, severity }
    }
}

/// What an error of librdkafka means for the stream thread, from the shared code table
/// (`runtime::error_codes`): a wrong deployment, and an output record the broker can never
/// take (retrying would roll the same record back forever; Kafka Streams' default
/// production handler fails too), are fatal; everything else (timeouts, transport, leader
/// moves, fencing, coordinator changes, metadata not propagated yet) is retried.
fn classify(error: &KafkaError) -> Severity {
    if let KafkaError::Transaction(e) = error {
        // A fatal transactional error of librdkafka means this producer is done; a new
        // producer (which the retry path creates) is the cure, unless the code says otherwise.
        return severity_of(class(e.code()));
    }
    severity_of(class_of(error))
}

fn severity_of(class: Class) -> Severity {
    match class {
        Class::Deployment | Class::Record => Severity::Fatal,
        Class::UnknownTopic | Class::Transient => Severity::Retriable,
    }
}

/// Whether a delivery failure with `code` is fatal for the replica.
pub(super) fn is_fatal_code(code: RDKafkaErrorCode) -> bool {
    severity_of(class(code)) == Severity::Fatal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_and_configuration_are_fatal_outages_are_not() {
        let fatal = [
            KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed),
            KafkaError::MessageConsumption(RDKafkaErrorCode::GroupAuthorizationFailed),
            KafkaError::Flush(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
            KafkaError::ClientCreation("bad".into()),
            // An output record the broker can never take: retrying would loop on it.
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        ];
        for error in fatal {
            assert_eq!(StreamsError::from(error).severity(), Severity::Fatal);
        }
        let retriable = [
            KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
            KafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure),
            KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownMemberId),
            KafkaError::MessageProduction(RDKafkaErrorCode::NotCoordinator),
            // A partition whose metadata has not reached the broker that answered yet.
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition),
        ];
        for error in retriable {
            assert_eq!(StreamsError::from(error).severity(), Severity::Retriable);
        }
    }

    #[test]
    fn a_failed_record_or_store_is_fatal_an_unknown_commit_is_retried() {
        let store = StreamsError::Store(StoreError("disk".into()));
        assert_eq!(store.severity(), Severity::Fatal);
        let unknown = StreamsError::CommitOutcomeUnknown {
            source: KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
            waited: Duration::from_secs(1),
        };
        assert!(unknown.is_retriable());
    }
}
