//! The changelog reader, as Kafka Streams' `StoreChangelogReader`: the state updater's one
//! consumer of the changelog. It reads any set of changelog partitions (no group), each
//! from an offset of its own, `read_committed`, and hands out their records by partition.
//! Invariants: only committed records are handed out, and [`ChangelogReader::positions`]
//! tells how far each partition was really read (aborted records and transaction markers
//! are skipped, so the position can run ahead of the last record handed out). A partition
//! is added again only once its previous read stopped, so a position is always the
//! current read's, never one left over from before (librdkafka moves it only forward).

use crate::config::KafkaConfig;
use crate::runtime::{activity, client, consumer_state, group_members};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A changelog record: the store key and its value (`None` is a delete).
pub type ChangelogRecord = (Vec<u8>, Option<Vec<u8>>);

/// How long [`ChangelogReader::add`] waits for the partition's previous read to stop.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// Why [`ChangelogReader::poll`] read nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A partition's position lies outside its log: the log's start moved past it (records
    /// deleted under the read) or its end fell below it. That partition's read stopped; the
    /// caller finds which and reads it again from the start.
    #[error("a changelog partition's position lies outside its log")]
    OutOfRange,
}

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The partition's previous read (removed a moment ago) has not stopped yet: adding it
    /// now would let that read's position stand for the new one. Try again shortly.
    #[error("changelog partition {partition}: its previous read has not stopped yet")]
    PreviousReadStopping { partition: u32 },
}

pub struct ChangelogReader {
    consumer: BaseConsumer,
    /// Asks for offsets as a `read_uncommitted` client sees them: the log's true end,
    /// not the last stable offset an open transaction holds back.
    offsets: BaseConsumer,
    topic: String,
}

impl ChangelogReader {
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Result<Self, KafkaError> {
        let mut config = client::with_fresh_metadata(client::standalone_consumer(kafka, true));
        // Restores read big runs of small records: fetch more per request than a live
        // consumer needs.
        // A position outside the log is reported, never skipped over to the earliest
        // offset: the store would then miss the records between.
        config
            .set("max.partition.fetch.bytes", "8388608")
            .set("fetch.wait.max.ms", "20")
            .set("auto.offset.reset", "error");
        Ok(Self {
            consumer: config.create()?,
            offsets: client::standalone_consumer(kafka, false).create()?,
            topic: topic.to_string(),
        })
    }

    /// The partition's first offset and the end of its log (the next offset to be
    /// written, open transactions included), asked of the broker. A restore that has
    /// read to this end has seen every committed record; one that cannot get there is
    /// held up by a transaction that is still open.
    pub fn watermarks(&self, partition: u32, timeout: Duration) -> Result<(i64, i64), KafkaError> {
        let _call = activity::enter("changelog_watermarks");
        self.with_leader(&self.offsets, timeout, || {
            self.offsets.fetch_watermarks(&self.topic, partition as i32, timeout)
        })
    }

    /// Runs `query` against the partition's leader; when the client's metadata names no
    /// live leader for it (librdkafka then answers at once from its cache, with "unknown
    /// partition" or "leader not available", and does not look again: seen for 54 s after
    /// a broker restart), the topic's metadata is fetched afresh and the query asked again.
    fn with_leader<T>(
        &self,
        client: &BaseConsumer,
        timeout: Duration,
        query: impl Fn() -> Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        match query() {
            Err(error) if leader_unknown(&error) => {
                let _ = client.fetch_metadata(Some(&self.topic), timeout);
                query()
            }
            answer => answer,
        }
    }

    /// The partition's last stable offset: the end of what a `read_committed` read can get
    /// to now (below the log's end while a transaction is open).
    pub fn stable_end(&self, partition: u32, timeout: Duration) -> Result<i64, KafkaError> {
        let _call = activity::enter("changelog_stable_offset");
        let (_, stable) = self.with_leader(&self.consumer, timeout, || {
            self.consumer.fetch_watermarks(&self.topic, partition as i32, timeout)
        })?;
        Ok(stable)
    }

    /// The end of the partition as the last fetch response gave it, if one did.
    pub fn cached_end(&self, partition: u32) -> Option<i64> {
        consumer_state::cached_watermarks(&self.consumer, &self.topic, partition as i32).map(|(_, high)| high)
    }

    /// Starts reading `partition` at `from`, once its previous read (if any) has stopped.
    pub fn add(&self, partition: u32, from: i64) -> Result<(), AddError> {
        let deadline = Instant::now() + STOP_WAIT;
        while consumer_state::app_position(&self.consumer, &self.topic, partition as i32).is_some() {
            if Instant::now() >= deadline {
                return Err(AddError::PreviousReadStopping { partition });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition as i32, Offset::Offset(from))?;
        Ok(self.consumer.incremental_assign(&tpl)?)
    }

    /// Stops reading `partition`.
    pub fn remove(&self, partition: u32) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition as i32);
        self.consumer.incremental_unassign(&tpl)
    }

    /// Reads up to `max` records, waiting at most `wait` for the first, into `out` by
    /// partition. Returns how many were read.
    pub fn poll(
        &self,
        max: usize,
        wait: Duration,
        out: &mut BTreeMap<u32, Vec<ChangelogRecord>>,
    ) -> Result<usize, ReadError> {
        let deadline = Instant::now() + wait;
        let mut read = 0;
        let mut timeout = wait;
        while read < max {
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => {
                    if let (Some(key), Ok(partition)) = (message.key(), u32::try_from(message.partition())) {
                        out.entry(partition)
                            .or_default()
                            .push((key.to_vec(), message.payload().map(<[u8]>::to_vec)));
                    }
                    read += 1;
                    timeout = Duration::ZERO;
                }
                Some(Err(error)) if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) => {
                    return Err(ReadError::OutOfRange)
                }
                Some(Err(error)) => return Err(error.into()),
                None if read == 0 && Instant::now() < deadline => {
                    timeout = deadline.saturating_duration_since(Instant::now());
                }
                None => break,
            }
        }
        Ok(read)
    }

    /// How far each partition read was consumed (the next offset it will hand out).
    pub fn positions(&self) -> BTreeMap<u32, i64> {
        let Ok(tpl) = self.consumer.position() else {
            return BTreeMap::new();
        };
        tpl.elements()
            .iter()
            .filter_map(|e| match (u32::try_from(e.partition()), e.offset()) {
                (Ok(p), Offset::Offset(next)) => Some((p, next)),
                _ => None,
            })
            .collect()
    }

    /// Consumer group `group`'s state, members and assignments (for standby placement).
    pub fn group(&self, group: &str, timeout: Duration) -> Result<group_members::Group, KafkaError> {
        let _call = activity::enter("describe_group");
        group_members::describe(&self.consumer, group, timeout)
    }
}

/// Whether `error` says the client does not know a live leader of the partition.
fn leader_unknown(error: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(C::UnknownPartition | C::UnknownTopicOrPartition | C::LeaderNotAvailable | C::NotLeaderForPartition)
    )
}
