//! The seed bridge: repartitions the seed's unkeyed topics (`order`, `user`) into the
//! keyed input topics, like Kafka Streams' `selectKey` + repartition, so producers written
//! for the seed keep working unchanged.
//!
//! Invariant: each polled batch is republished and its offsets committed in one
//! transaction before the next poll, so no seed record is republished twice into committed
//! output, and nothing is in flight when a rebalance happens (rebalances run inside poll).
//! Records that cannot be translated go to the dead-letter topic in the same transaction.

use crate::config::KafkaConfig;
use crate::runtime::{client, dead_letter};
use crate::shutdown::Shutdown;
use crate::topology::codec::{encode_command, encode_order};
use crate::topology::definition::TopologyDefinition;
use crate::topology::partitioner::partition_for;
use crate::topology::seed::{decode_seed_order, decode_seed_user, derived_id, SeedInput};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

const TIMEOUT: Duration = Duration::from_secs(30);

struct Outgoing {
    topic: String,
    partition: i32,
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Option<OwnedHeaders>,
    /// The seed record's timestamp, kept (as Kafka Streams' repartitioning does).
    timestamp_ms: i64,
}

fn translate(
    def: &TopologyDefinition,
    topic: &str,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    value: Option<&[u8]>,
) -> Vec<Outgoing> {
    let id = derived_id(topic, partition, offset);
    let decoded = match value {
        None => Err(crate::topology::conditions::FieldError::new(
            "value",
            "record has no value",
        )),
        Some(bytes) if topic == def.seed_bridge.orders => decode_seed_order(bytes, id, timestamp_ms),
        Some(bytes) => decode_seed_user(bytes, id),
    };
    let keyed = |input_topic: &str, key: Vec<u8>, value: Vec<u8>| -> Vec<Outgoing> {
        if key == crate::topology::record::BROADCAST_KEY {
            (0..def.partitions as i32)
                .map(|p| Outgoing {
                    topic: input_topic.to_string(),
                    partition: p,
                    key: key.clone(),
                    value: value.clone(),
                    headers: None,
                    timestamp_ms,
                })
                .collect()
        } else {
            let partition = partition_for(&key, def.partitions) as i32;
            vec![Outgoing {
                topic: input_topic.to_string(),
                partition,
                key,
                value,
                headers: None,
                timestamp_ms,
            }]
        }
    };
    match decoded {
        Ok(SeedInput::Order(order)) => {
            let (key, value) = encode_order(&order);
            keyed(&def.inputs.orders, key, value)
        }
        Ok(SeedInput::Command(command)) => {
            let (key, value) = encode_command(&command);
            keyed(&def.inputs.user_commands, key, value)
        }
        Ok(SeedInput::Ignored) => Vec::new(),
        Err(error) => {
            let headers = dead_letter::headers(
                topic,
                i64::from(partition),
                offset,
                "seed_schema_mismatch",
                &error.to_string(),
            );
            vec![Outgoing {
                topic: def.outputs.dead_letters.clone(),
                partition: partition % def.partitions as i32,
                key: Vec::new(),
                value: value.map(<[u8]>::to_vec).unwrap_or_default(),
                headers: Some(headers),
                timestamp_ms,
            }]
        }
    }
}

/// Runs the bridge until `shutdown`; blocking (call it on its own thread).
/// `transactional_id` must be unique per replica (two bridges with one id fence each other).
pub fn run(
    kafka: &KafkaConfig,
    def: &TopologyDefinition,
    transactional_id: &str,
    transaction_timeout_ms: u64,
    shutdown: Shutdown,
) -> Result<(), KafkaError> {
    let group = format!("{}-seed-bridge", def.application_id);
    let new_producer = || -> Result<BaseProducer, KafkaError> {
        let producer: BaseProducer =
            client::transactional_producer(kafka, transactional_id, transaction_timeout_ms).create()?;
        producer.init_transactions(TIMEOUT)?;
        Ok(producer)
    };
    let mut producer = new_producer()?;
    let mut consumer_config = client::consumer(kafka, &group, true);
    consumer_config.set("partition.assignment.strategy", "range");
    let consumer: BaseConsumer = consumer_config.create()?;
    consumer.subscribe(&[&def.seed_bridge.orders, &def.seed_bridge.users])?;
    info!(
        orders = def.seed_bridge.orders,
        users = def.seed_bridge.users,
        "seed bridge running"
    );
    while !shutdown.is_requested() {
        let mut outgoing = Vec::new();
        let mut next_offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut timeout = Duration::from_millis(200);
        while next_offsets.len() < 1000 {
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let ts = m.timestamp().to_millis().unwrap_or(now);
                    outgoing.extend(translate(def, m.topic(), m.partition(), m.offset(), ts, m.payload()));
                    next_offsets.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                    timeout = Duration::ZERO;
                }
                Some(Err(error)) => {
                    warn!(%error, "seed bridge consumer error");
                    break;
                }
                None => break,
            }
        }
        if next_offsets.is_empty() {
            continue;
        }
        if let Err(error) = publish(&producer, &consumer, &outgoing, &next_offsets) {
            warn!(%error, "seed bridge transaction failed; rewinding");
            if producer.abort_transaction(TIMEOUT).is_err() {
                // The producer cannot be trusted with another transaction: replace it,
                // waiting out a broker outage, until shutdown.
                let mut backoff = Duration::from_millis(200);
                producer = loop {
                    match new_producer() {
                        Ok(p) => break p,
                        Err(KafkaError::ClientCreation(e)) => return Err(KafkaError::ClientCreation(e)),
                        Err(e) if shutdown.is_requested() => return Err(e),
                        Err(e) => {
                            warn!(error = %e, "seed bridge producer cannot start yet; retrying");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                };
            }
            let mut rewind = TopicPartitionList::new();
            for (topic, partition) in next_offsets.keys() {
                rewind.add_partition(topic, *partition);
            }
            client::seek_to_committed(&consumer, rewind, TIMEOUT)?;
        }
    }
    Ok(())
}

fn publish(
    producer: &BaseProducer,
    consumer: &BaseConsumer,
    outgoing: &[Outgoing],
    next_offsets: &HashMap<(String, i32), i64>,
) -> Result<(), KafkaError> {
    producer.begin_transaction()?;
    for out in outgoing {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&out.topic)
            .partition(out.partition)
            .timestamp(out.timestamp_ms)
            .payload(&out.value[..]);
        if !out.key.is_empty() {
            record = record.key(&out.key[..]);
        }
        if let Some(headers) = &out.headers {
            record = record.headers(headers.clone());
        }
        client::send_waiting(producer, record)?;
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next_offsets {
        offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    let group = consumer
        .group_metadata()
        .ok_or(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownGroup))?;
    producer.send_offsets_to_transaction(&offsets, &group, TIMEOUT)?;
    producer.commit_transaction(TIMEOUT)
}
