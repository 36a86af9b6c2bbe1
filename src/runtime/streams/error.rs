//! The stream thread's errors, classified once, here, at the boundary with librdkafka and
//! RocksDB. Everything above this file decides by [`StreamsError::severity`], never by
//! inspecting a Kafka error code or a message.

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
    /// The state directory cannot be used.
    #[error("state dir: {0}")]
    StateDir(String),
    /// A commit's call did not return in time: the broker may or may not have committed.
    #[error("commit outcome unknown after {waited:?}: {source}")]
    CommitOutcomeUnknown { source: KafkaError, waited: Duration },
    /// Inputs of running tasks stood still although committed records lay beyond them (a
    /// fetcher that stopped): their tasks read again from the last commit.
    #[error("inputs stood still with committed records to read: {inputs:?}")]
    InputStalled { inputs: Vec<(String, i32)> },
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
            StreamsError::CommitOutcomeUnknown { .. } | StreamsError::InputStalled { .. } => Severity::Retriable,
            StreamsError::Store(_)
            | StreamsError::Process { .. }
            | StreamsError::StateDir(_)
            | StreamsError::CoPartitioning { .. } => Severity::Fatal,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.severity() == Severity::Retriable
    }

    /// Whether the open transaction can be aborted with the same producer.
    pub fn abortable(&self) -> bool {
        matches!(self, StreamsError::Kafka { source: KafkaError::Transaction(e), .. } if e.txn_requires_abort())
    }
}

impl From<KafkaError> for StreamsError {
    fn from(source: KafkaError) -> Self {
        let severity = classify(&source);
        StreamsError::Kafka { source, severity }
    }
}

/// Errors that say the deployment is wrong, not that the broker is away: credentials,
/// permissions, configuration, a broker too old for transactions. Everything else
/// (timeouts, transport, leader moves, fencing, coordinator changes) is retriable.
fn classify(error: &KafkaError) -> Severity {
    if matches!(error, KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..)) {
        return Severity::Fatal;
    }
    if let KafkaError::Transaction(e) = error {
        // A fatal transactional error of librdkafka means this producer is done; a new
        // producer (which the retry path creates) is the cure, unless the code says otherwise.
        if !is_fatal_code(e.code()) {
            return Severity::Retriable;
        }
    }
    match error.rdkafka_error_code() {
        Some(code) if is_fatal_code(code) => Severity::Fatal,
        _ => Severity::Retriable,
    }
}

pub(super) fn is_fatal_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::DelegationTokenAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::InvalidConfig
            | C::InvalidArgument
            | C::InvalidTransactionTimeout
            | C::InvalidSessionTimeout
            | C::UnsupportedVersion
            | C::UnsupportedForMessageFormat
            | C::UnsupportedFeature
            | C::InvalidReplicationFactor
    )
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
        ];
        for error in fatal {
            assert_eq!(StreamsError::from(error).severity(), Severity::Fatal);
        }
        let retriable = [
            KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
            KafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure),
            KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownMemberId),
            KafkaError::MessageProduction(RDKafkaErrorCode::NotCoordinator),
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
