//! The processor API: what a piece of topology logic may see and do.
//! A processor sees only a [`Context`] (forward outputs, its state store, the clock and
//! the record's coordinates); the same processor therefore runs under the Kafka runtime
//! and under the test driver unchanged.

use super::store::{KeyValueStore, StoreError};
use super::task_id::TaskId;

/// Where an input record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub partition: u32,
    pub offset: i64,
    /// The record's timestamp, ms since the Unix epoch.
    pub timestamp_ms: i64,
}

/// What the runtime (or the test driver) offers a processor while it handles one record.
pub trait Context<Out> {
    /// Sends an output record downstream; the runtime routes it to its sink topic.
    fn forward(&mut self, output: Out);
    /// The task's state store; writes are change-logged by the runtime.
    fn store(&mut self) -> &mut dyn KeyValueStore;
    /// Wall-clock time, ms since the Unix epoch (fixed by the test driver when it wants).
    fn now_ms(&self) -> i64;
    /// The partition this task owns and how many there are.
    fn partition(&self) -> u32;
    fn partition_count(&self) -> u32;
}

/// A failure that stops the task: the runtime aborts the transaction and gives up the task.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state value for key {key:?} cannot be read: {reason}")]
    CorruptState { key: Vec<u8>, reason: String },
}

/// How far a record's work got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Part of the work is done and its state saved in the store: the runtime commits what
    /// was done, then hands the same record in again. Keeps one record's transaction
    /// bounded, however much state it touches.
    Partial,
}

/// Topology logic for one input type and one output type.
pub trait Processor {
    type Input;
    type Output;

    fn process(
        &mut self,
        ctx: &mut dyn Context<Self::Output>,
        meta: RecordMeta,
        input: &Self::Input,
    ) -> Result<Progress, ProcessError>;

    /// Scheduled work on the task's state (Kafka Streams' wall-clock punctuation), run
    /// about once a second per task inside the task's transaction: expiring entries whose
    /// retention passed, for instance. Bounded per call; returns how many entries it
    /// expired.
    fn punctuate(&mut self, ctx: &mut dyn Context<Self::Output>) -> Result<usize, ProcessError> {
        let _ = ctx;
        Ok(0)
    }

    /// Task `task` starts or stops running here. Its store may have changed without this
    /// processor (restored from the changelog, moved from another thread or replica), so
    /// anything the processor remembers of that partition in memory must go; all that
    /// matters is in the store.
    fn forget(&mut self, task: TaskId) {
        let _ = task;
    }
}
