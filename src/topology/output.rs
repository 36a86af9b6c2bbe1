//! How an output leaves a task: which of the topology's output topics it goes to, its key
//! and value bytes, and, for a dead letter, where its input came from. The topology
//! decides all of this; the runtime only maps an [`OutputTopic`] to a topic name and sends
//! the record to the task's own partition of it.
//! Invariant: the runtime never inspects an output's meaning; what it reports to metrics
//! comes from the [`Observation`] the topology attached.

use super::codec::InputTopic;
use super::processor::RecordMeta;

/// The output topics of a topology (`[outputs]` in the topology file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputTopic {
    Decisions,
    UserChanges,
    DeadLetters,
}

/// Where a dead letter's record came from, and why it could not be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub source: InputTopic,
    pub meta: RecordMeta,
    /// A bounded set of reasons (it labels a metric).
    pub reason: &'static str,
    pub detail: String,
}

/// What an output means to an operator once it is committed: it feeds metrics only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Nothing,
    /// A decision, its status, and the event time of the input it decided (for latency).
    Decision {
        status: &'static str,
        event_time_ms: i64,
    },
    DeadLetter {
        reason: &'static str,
    },
}

/// One record for an output topic, on the partition of the task that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub topic: OutputTopic,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Set for dead letters: becomes the record's headers.
    pub provenance: Option<Provenance>,
    pub observation: Observation,
}

/// An output type the runtime can send: the topology says where each one goes.
pub trait Routed {
    fn into_record(self) -> OutputRecord;
}
