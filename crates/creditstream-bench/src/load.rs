//! The load generator: produce prepared records as fast as the client allows (or at a
//! fixed rate), never awaiting deliveries one by one, and read an output topic
//! (read_committed) as its records become visible.

use creditstream::config::KafkaConfig;
use creditstream::runtime::client;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A record to produce.
pub struct Outgoing {
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The benchmark's producer. One is made per run and kept for every batch, so a paced
/// batch never waits for a new producer's connections and producer id (which would show
/// up as latency of its first records).
pub struct Loader {
    producer: BaseProducer,
}

impl Loader {
    pub fn new(kafka: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut config = client::producer(kafka, 5);
        config.set("batch.size", "1000000");
        Ok(Self {
            producer: config.create()?,
        })
    }

    /// Produces `count` records to `topic`; `make` builds each at send time (so it can carry
    /// the send timestamp); with `per_second`, paces the sends. Returns when all are
    /// acknowledged.
    pub fn produce(
        &self,
        topic: &str,
        count: usize,
        per_second: Option<u64>,
        mut make: impl FnMut(usize) -> Outgoing,
    ) -> Result<(), KafkaError> {
        let started = Instant::now();
        for i in 0..count {
            if let Some(rate) = per_second {
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let out = make(i);
            let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .partition(out.partition)
                .key(&out.key[..])
                .payload(&out.value[..]);
            client::send_waiting(&self.producer, record)?;
            self.producer.poll(Duration::ZERO);
        }
        client::flush(&self.producer, Duration::from_secs(120))
    }
}

/// Reads `topic` from the start (read_committed) until `expected` records were seen,
/// `timeout` passed or `stop` is set; calls `seen` with each value as it becomes visible.
pub fn watch(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: u32,
    expected: usize,
    timeout: Duration,
    stop: &AtomicBool,
    mut seen: impl FnMut(&[u8]),
) -> Result<usize, KafkaError> {
    let consumer: BaseConsumer = client::standalone_consumer(kafka, true).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut count = 0;
    while count < expected && started.elapsed() < timeout && !stop.load(Ordering::Relaxed) {
        if let Some(result) = consumer.poll(Duration::from_millis(50)) {
            let message = result?;
            seen(message.payload().unwrap_or_default());
            count += 1;
        }
    }
    Ok(count)
}
