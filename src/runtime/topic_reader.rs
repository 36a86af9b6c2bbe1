//! Reads whole topics, or the tail of one partition, (read_committed) to their end, for the
//! invariant checker, the benchmark and `creditstream state`. "The end" is each partition's high watermark at the start; aborted records
//! and transaction markers are skipped by the consumer, and its position says how far it
//! really got.

use crate::config::KafkaConfig;
use crate::runtime::client;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// One record of a topic.
#[derive(Debug, Clone)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header names and values (values read as UTF-8, lossily).
    pub headers: Vec<(String, String)>,
}

impl TopicRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {topic} was not read to its end within {waited:?}")]
    Timeout { topic: String, waited: Duration },
}

/// Every committed record of `topic`, in offset order per partition.
pub fn read_to_end(kafka: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Vec<TopicRecord>, ReadError> {
    let consumer: BaseConsumer = client::standalone_consumer(kafka, true).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let mut ranges = Vec::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ranges.push((p, low, high));
    }
    read_ranges(&consumer, topic, &ranges, timeout)
}

/// The committed records among the last `last` offsets of `topic` partition `partition`.
pub fn read_tail(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    last: i64,
    timeout: Duration,
) -> Result<Vec<TopicRecord>, ReadError> {
    let consumer: BaseConsumer = client::standalone_consumer(kafka, true).create()?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
    read_ranges(&consumer, topic, &[(partition, low.max(high - last), high)], timeout)
}

/// Reads each `(partition, from, to)` of `topic` from offset `from` until the position
/// reaches `to`.
fn read_ranges(
    consumer: &BaseConsumer,
    topic: &str,
    ranges: &[(i32, i64, i64)],
    timeout: Duration,
) -> Result<Vec<TopicRecord>, ReadError> {
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for &(p, from, to) in ranges {
        if to > from {
            ends.push((p, to));
            tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut records = Vec::new();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                                (h.key.to_string(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(TopicRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
        let positions = consumer.position()?;
        let done = ends.iter().all(|(p, high)| {
            matches!(positions.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(pos)) if pos >= *high)
        });
        if done {
            return Ok(records);
        }
        if started.elapsed() > timeout {
            return Err(ReadError::Timeout {
                topic: topic.to_string(),
                waited: timeout,
            });
        }
    }
}
