//! The pass-through peer of the benchmark: the stream thread of `runtime::streams`, with
//! its commits, transactions and restores, running a processor that forwards every order
//! unchanged to the decisions topic and ignores user commands. What it reaches is the
//! limit of the runtime, the broker and the client on the machine, with no credit logic.

use crate::config::{KafkaConfig, ProcessorConfig};
use crate::runtime::streams::{self, StreamsError};
use crate::shutdown::Shutdown;
use crate::topology::codec::{InputTopic, RawRecord};
use crate::topology::definition::TopologyDefinition;
use crate::topology::output::{Observation, OutputRecord, OutputTopic};
use crate::topology::processor::{Context, ProcessError, Processor, Progress, RecordMeta};

/// Forwards orders unchanged; keeps no state.
pub struct PassThrough;

impl Processor for PassThrough {
    type Input = RawRecord;
    type Output = OutputRecord;

    fn process(
        &mut self,
        ctx: &mut dyn Context<OutputRecord>,
        _: RecordMeta,
        raw: &RawRecord,
    ) -> Result<Progress, ProcessError> {
        if raw.topic == InputTopic::Orders {
            ctx.forward(OutputRecord {
                topic: OutputTopic::Decisions,
                partition: None,
                timestamp_ms: None,
                key: raw.key.clone(),
                value: raw.value.clone(),
                provenance: None,
                observation: Observation::Nothing,
            });
        }
        Ok(Progress::Done)
    }
}

/// Runs until `shutdown`; blocking. Its consumer group and transactional id are the
/// topology's with `-passthrough` appended, so it never joins a processor's group.
pub fn run(
    kafka: KafkaConfig,
    mut cfg: ProcessorConfig,
    def: &TopologyDefinition,
    shutdown: Shutdown,
) -> Result<(), StreamsError> {
    let mut def = def.clone();
    def.application_id = format!("{}-passthrough", def.application_id);
    cfg.run_seed_bridge = false;
    streams::run(kafka, cfg, def, PassThrough, shutdown)
}
