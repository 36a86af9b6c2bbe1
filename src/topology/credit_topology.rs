//! The whole topology as the one processor the runtime runs: each record goes to the
//! processor of its sub-topology (the credit check or the seed bridge, see [`task_id`]),
//! and every output leaves as the [`OutputRecord`] its processor routed it to.
//!
//! [`task_id`]: super::task_id

use super::codec::RawRecord;
use super::credit_check::CreditCheck;
use super::definition::TopologyDefinition;
use super::output::{OutputRecord, Routed};
use super::processor::{Context, ProcessError, Processor, Progress, RecordMeta};
use super::seed_bridge::SeedBridge;
use super::store::KeyValueStore;
use super::task_id::{SubTopology, TaskId};

pub struct CreditTopology {
    check: CreditCheck,
    bridge: SeedBridge,
}

impl CreditTopology {
    pub fn new(def: &TopologyDefinition) -> Self {
        Self {
            check: CreditCheck::new(def.store.dedup_retention_ms),
            bridge: SeedBridge::new(&def.seed_bridge.orders, &def.seed_bridge.users),
        }
    }
}

impl Processor for CreditTopology {
    type Input = RawRecord;
    type Output = OutputRecord;

    fn process(
        &mut self,
        ctx: &mut dyn Context<OutputRecord>,
        meta: RecordMeta,
        raw: &RawRecord,
    ) -> Result<Progress, ProcessError> {
        match raw.topic.subtopology() {
            SubTopology::CreditCheck => self.check.process(&mut Routing(ctx), meta, raw),
            SubTopology::SeedBridge => self.bridge.process(ctx, meta, raw),
        }
    }

    /// Only the credit check has state to look after; the runtime calls this for tasks
    /// with a store.
    fn punctuate(&mut self, ctx: &mut dyn Context<OutputRecord>) -> Result<usize, ProcessError> {
        self.check.punctuate(&mut Routing(ctx))
    }

    fn forget(&mut self, task: TaskId) {
        match task.subtopology {
            SubTopology::CreditCheck => self.check.forget(task),
            SubTopology::SeedBridge => self.bridge.forget(task),
        }
    }
}

/// A processor's context seen through the topology's: its outputs are routed as it says.
struct Routing<'a, 'b>(&'a mut (dyn Context<OutputRecord> + 'b));

impl<Out: Routed> Context<Out> for Routing<'_, '_> {
    fn forward(&mut self, output: Out) {
        self.0.forward(output.into_record());
    }

    fn store(&mut self) -> &mut dyn KeyValueStore {
        self.0.store()
    }

    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }

    fn partition(&self) -> u32 {
        self.0.partition()
    }

    fn partition_count(&self) -> u32 {
        self.0.partition_count()
    }
}
