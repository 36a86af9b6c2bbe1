//! How an output leaves a task: which of the topology's output topics it goes to, its
//! partition, key, value and timestamp, and, for a dead letter, where its input came from.
//! The topology decides all of this; the runtime only maps an [`OutputTopic`] to a topic
//! name and sends the record (to the task's own partition unless the output names one).
//! Invariant: the runtime never inspects an output's meaning; what it reports to metrics
//! comes from the [`Observation`] the topology attached.

use super::codec::InputTopic;
use super::processor::RecordMeta;

/// The topics a topology writes: its outputs (`[outputs]` in the topology file), and the
/// credit check's inputs, which the seed bridge writes as a repartition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputTopic {
    Decisions,
    UserChanges,
    DeadLetters,
    UserCommands,
    Orders,
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

/// One record for an output topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub topic: OutputTopic,
    /// `None`: the partition of the task that produced it (co-partitioned outputs);
    /// a repartition names the partition its key belongs on.
    pub partition: Option<u32>,
    /// `None`: the time it is sent; a repartition keeps its input's timestamp.
    pub timestamp_ms: Option<i64>,
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

impl Routed for OutputRecord {
    fn into_record(self) -> OutputRecord {
        self
    }
}
