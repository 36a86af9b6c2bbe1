//! The one [`Context`] implementation, shared by the Kafka runtime and the test driver:
//! a change-logged store, a buffer of forwarded outputs, the clock and the partition.

use super::processor::Context;
use super::store::{ChangeLoggingStore, KeyValueStore};

pub struct TaskContext<'a, Out> {
    pub store: ChangeLoggingStore<'a>,
    pub outputs: &'a mut Vec<Out>,
    pub now_ms: i64,
    pub partition: u32,
    pub partition_count: u32,
}

impl<Out> Context<Out> for TaskContext<'_, Out> {
    fn forward(&mut self, output: Out) {
        self.outputs.push(output);
    }

    fn store(&mut self) -> &mut dyn KeyValueStore {
        &mut self.store
    }

    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn partition(&self) -> u32 {
        self.partition
    }

    fn partition_count(&self) -> u32 {
        self.partition_count
    }
}
