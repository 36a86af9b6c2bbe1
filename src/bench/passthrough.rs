//! The raw pass-through peer of the benchmark: consume the orders topic, produce every
//! record unchanged to the decisions topic, with the same guarantee as the processor
//! (one transaction per commit interval with the consumed offsets under exactly_once_v2;
//! produce, flush, then commit offsets under at_least_once). No state, no logic: what this
//! reaches is the practical limit of the broker and client on the machine.

use crate::config::KafkaConfig;
use crate::runtime::client;
use crate::shutdown::Shutdown;
use crate::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs until `shutdown`; blocking.
pub fn run(
    kafka: &KafkaConfig,
    def: &TopologyDefinition,
    commit_interval: Duration,
    shutdown: Shutdown,
) -> Result<(), KafkaError> {
    let exactly_once = def.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
    let group = format!("{}-passthrough", def.application_id);
    let producer: BaseProducer = if exactly_once {
        client::transactional_producer(kafka, &group, 10_000).create()?
    } else {
        client::producer(kafka, 5).create()?
    };
    if exactly_once {
        producer.init_transactions(TIMEOUT)?;
    }
    let mut config = client::consumer(kafka, &group, exactly_once);
    config.set("partition.assignment.strategy", "range");
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[&def.inputs.orders])?;
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut last_commit = Instant::now();
    let mut open = false;
    while !shutdown.is_requested() {
        if let Some(result) = consumer.poll(Duration::from_millis(20)) {
            let message = result?;
            if exactly_once && !open {
                producer.begin_transaction()?;
            }
            open = true;
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&def.outputs.decisions).partition(message.partition());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(value) = message.payload() {
                record = record.payload(value);
            }
            client::send_waiting(&producer, record)?;
            next.insert(message.partition(), message.offset() + 1);
        }
        producer.poll(Duration::ZERO);
        if open && last_commit.elapsed() >= commit_interval {
            let mut offsets = TopicPartitionList::new();
            for (partition, offset) in next.drain() {
                offsets.add_partition_offset(&def.inputs.orders, partition, Offset::Offset(offset))?;
            }
            if exactly_once {
                let metadata = consumer
                    .group_metadata()
                    .ok_or(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownGroup))?;
                producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT)?;
                producer.commit_transaction(TIMEOUT)?;
            } else {
                client::flush(&producer, TIMEOUT)?;
                consumer.commit(&offsets, CommitMode::Sync)?;
            }
            open = false;
            last_commit = Instant::now();
        }
    }
    Ok(())
}
