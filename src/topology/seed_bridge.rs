//! The seed bridge, sub-topology 1: turns each record of the seed's unkeyed topics into
//! the keyed input of the credit check, on the partition its uid belongs on (a broadcast
//! command on every partition), like Kafka Streams' `selectKey` + repartition. The seed
//! record's timestamp is kept, so the credit check merges bridged records in the order the
//! seed produced them. A record that cannot be translated becomes a dead letter.
//! Stateless: it never touches its store, so its tasks have none.

use super::codec::{encode_command, encode_order, InputTopic, RawRecord};
use super::conditions::FieldError;
use super::output::{Observation, OutputRecord, OutputTopic, Provenance};
use super::partitioner::partition_for;
use super::processor::{Context, ProcessError, Processor, Progress, RecordMeta};
use super::record::BROADCAST_KEY;
use super::seed::{decode_seed_order, decode_seed_user, derived_id, SeedInput};

/// The reason a seed record was dead-lettered (it labels a metric).
pub const SEED_SCHEMA_MISMATCH: &str = "seed_schema_mismatch";

/// The seed bridge processor. Ids of orders and creates without a uid are derived from
/// the seed record's topic name and coordinates, so a replayed seed record gets the same
/// id and is decided once.
#[derive(Debug, Clone)]
pub struct SeedBridge {
    orders_topic: String,
    users_topic: String,
}

impl SeedBridge {
    /// A bridge for the seed topics called `orders_topic` and `users_topic`.
    pub fn new(orders_topic: &str, users_topic: &str) -> Self {
        Self {
            orders_topic: orders_topic.to_string(),
            users_topic: users_topic.to_string(),
        }
    }

    fn translate(&self, meta: RecordMeta, raw: &RawRecord) -> Result<SeedInput, FieldError> {
        let name = match raw.topic {
            InputTopic::SeedOrders => &self.orders_topic,
            _ => &self.users_topic,
        };
        let id = derived_id(name, meta.partition as i32, meta.offset);
        match (raw.topic, raw.value.as_deref()) {
            (_, None) => Err(FieldError::new("value", "record has no value")),
            (InputTopic::SeedOrders, Some(bytes)) => decode_seed_order(bytes, id, meta.timestamp_ms),
            (InputTopic::SeedUsers, Some(bytes)) => decode_seed_user(bytes, id),
            (other, Some(_)) => Err(FieldError::new(
                "topic",
                format!("{} is not a seed topic", other.as_str()),
            )),
        }
    }
}

impl Processor for SeedBridge {
    type Input = RawRecord;
    type Output = OutputRecord;

    fn process(
        &mut self,
        ctx: &mut dyn Context<OutputRecord>,
        meta: RecordMeta,
        raw: &RawRecord,
    ) -> Result<Progress, ProcessError> {
        let (topic, (key, value)) = match self.translate(meta, raw) {
            Ok(SeedInput::Order(order)) => (OutputTopic::Orders, encode_order(&order)),
            Ok(SeedInput::Command(command)) => (OutputTopic::UserCommands, encode_command(&command)),
            Ok(SeedInput::Ignored) => return Ok(Progress::Done),
            Err(error) => {
                ctx.forward(OutputRecord {
                    topic: OutputTopic::DeadLetters,
                    partition: None,
                    timestamp_ms: Some(meta.timestamp_ms),
                    key: raw.key.clone(),
                    value: raw.value.clone(),
                    provenance: Some(Provenance {
                        source: raw.topic,
                        meta,
                        reason: SEED_SCHEMA_MISMATCH,
                        detail: error.to_string(),
                    }),
                    observation: Observation::DeadLetter {
                        reason: SEED_SCHEMA_MISMATCH,
                    },
                });
                return Ok(Progress::Done);
            }
        };
        let partitions: Vec<u32> = if key == BROADCAST_KEY {
            (0..ctx.partition_count()).collect()
        } else {
            vec![partition_for(&key, ctx.partition_count())]
        };
        for partition in partitions {
            ctx.forward(OutputRecord {
                topic,
                partition: Some(partition),
                timestamp_ms: Some(meta.timestamp_ms),
                key: Some(key.clone()),
                value: Some(value.clone()),
                provenance: None,
                observation: Observation::Nothing,
            });
        }
        Ok(Progress::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::store::{ChangeLoggingStore, InMemoryStore};
    use crate::topology::task_context::TaskContext;

    fn bridge(topic: InputTopic, offset: i64, value: &[u8]) -> Vec<OutputRecord> {
        let mut store = InMemoryStore::new();
        let (mut changes, mut outputs) = (Vec::new(), Vec::new());
        let meta = RecordMeta {
            partition: 1,
            offset,
            timestamp_ms: 1_000,
        };
        let raw = RawRecord {
            topic,
            meta,
            key: None,
            value: Some(value.to_vec()),
        };
        let mut ctx = TaskContext {
            store: ChangeLoggingStore::new(&mut store, &mut changes),
            outputs: &mut outputs,
            now_ms: 5_000,
            partition: 1,
            partition_count: 6,
        };
        let progress = SeedBridge::new("order", "user").process(&mut ctx, meta, &raw).unwrap();
        assert_eq!(progress, Progress::Done);
        assert!(changes.is_empty(), "the bridge keeps no state");
        outputs
    }

    #[test]
    fn a_seed_order_goes_keyed_to_its_uids_partition_with_the_seed_timestamp() {
        let out = bridge(InputTopic::SeedOrders, 7, br#"{"uid": 42, "amount": 5}"#);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, OutputTopic::Orders);
        assert_eq!(out[0].key.as_deref(), Some(&b"42"[..]));
        assert_eq!(out[0].partition, Some(partition_for(b"42", 6)));
        assert_eq!(out[0].timestamp_ms, Some(1_000));
        let order: crate::topology::record::Order = serde_json::from_slice(out[0].value.as_ref().unwrap()).unwrap();
        assert_eq!(
            order.order_id,
            derived_id("order", 1, 7),
            "the id comes from the coordinates"
        );
    }

    #[test]
    fn a_seed_update_by_condition_goes_to_every_partition() {
        let out = bridge(
            InputTopic::SeedUsers,
            0,
            br#"{"type":"U","condition":{"lname":"Rao"},"new_val":{"name":"Asha"}}"#,
        );
        assert_eq!(
            out.iter().map(|o| o.partition).collect::<Vec<_>>(),
            (0..6).map(Some).collect::<Vec<_>>()
        );
        assert!(out
            .iter()
            .all(|o| o.topic == OutputTopic::UserCommands && o.key.as_deref() == Some(BROADCAST_KEY)));
    }

    #[test]
    fn a_read_is_skipped_and_a_bad_record_is_dead_lettered_where_it_came_from() {
        assert!(bridge(InputTopic::SeedUsers, 0, br#"{"type":"R","uid":"1"}"#).is_empty());
        let out = bridge(InputTopic::SeedOrders, 3, br#"{"uid": 1}"#);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, OutputTopic::DeadLetters);
        assert_eq!(out[0].partition, None, "on the task's own partition");
        let provenance = out[0].provenance.as_ref().unwrap();
        assert_eq!((provenance.source, provenance.meta.offset), (InputTopic::SeedOrders, 3));
        assert_eq!(provenance.reason, SEED_SCHEMA_MISMATCH);
        assert_eq!(out[0].value.as_deref(), Some(&br#"{"uid": 1}"#[..]));
    }
}
