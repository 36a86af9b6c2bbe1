//! The changelog reader, as Kafka Streams' `StoreChangelogReader`: the state updater's one
//! consumer of the changelog. It reads any set of changelog partitions (no group), each
//! from an offset of its own, `read_committed`, and hands out their records by partition.
//! Invariants: only committed records are handed out, and [`ChangelogReader::positions`]
//! tells how far each partition was really read (aborted records and transaction markers
//! are skipped, so the position can run ahead of the last record handed out). A partition
//! is added again only once its previous read stopped, so a position is always the
//! current read's, never one left over from before (librdkafka moves it only forward).
//! An offsets look-up never waits on a broker that stopped answering past [`FIRST_ASK`]
//! once the cluster has moved that broker's partitions: it asks a client bootstrapped anew.

use crate::config::KafkaConfig;
use crate::runtime::{activity, client, consumer_state, error_codes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A changelog record: the store key and its value (`None` is a delete).
pub type ChangelogRecord = (Vec<u8>, Option<Vec<u8>>);

/// How long [`ChangelogReader::add`] waits for the partition's previous read to stop.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// How long an offsets look-up waits for the reader's own client before it asks a client
/// bootstrapped afresh. A live leader answers in milliseconds; one on a broker that froze
/// never does, and the cluster moves its partitions once it fences that broker.
const FIRST_ASK: Duration = Duration::from_secs(2);
/// The least time left in which a client bootstrapped afresh is worth asking.
const AFRESH_AT_LEAST: Duration = Duration::from_millis(100);

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
    /// not the last stable offset an open transaction holds back. Replaced by a client
    /// bootstrapped afresh when it could not get an answer (see [`FIRST_ASK`]).
    offsets: RefCell<BaseConsumer>,
    kafka: KafkaConfig,
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
            offsets: RefCell::new(client::standalone_consumer(kafka, false).create()?),
            kafka: kafka.clone(),
            topic: topic.to_string(),
        })
    }

    /// The partition's first offset and the end of its log (the next offset to be
    /// written, open transactions included), asked of the broker. A restore that has
    /// read to this end has seen every committed record; one that cannot get there is
    /// held up by a transaction that is still open.
    pub fn watermarks(&self, partition: u32, timeout: Duration) -> Result<(i64, i64), KafkaError> {
        let _call = activity::enter("changelog_watermarks");
        let deadline = Instant::now() + timeout;
        let first = {
            let offsets = self.offsets.borrow();
            self.with_leader(&offsets, timeout.min(FIRST_ASK), |wait| {
                offsets.fetch_watermarks(&self.topic, partition as i32, wait)
            })
        };
        match first {
            Err(error) if unanswered(&error) => {
                let fresh = self.ask_afresh(false, partition, deadline, error)?;
                // The new client knows only the brokers that answer now: it stays, and the
                // old one (a request may still wait on a broker that does not answer) goes.
                retire(self.offsets.replace(fresh.client));
                Ok(fresh.marks)
            }
            answer => answer,
        }
    }

    /// Asks for `partition`'s watermarks through a client bootstrapped now, until
    /// `deadline`; `error` is what the first ask met, returned if no time is left.
    ///
    /// A client that last saw the partition's leader on a broker that froze keeps sending
    /// there: librdkafka sends its metadata requests to the broker it used last, which is
    /// that one, so asking it for fresh metadata waits as long. A new client connects to
    /// the brokers that answer and learns the leaders the cluster has moved.
    fn ask_afresh(
        &self,
        read_committed: bool,
        partition: u32,
        deadline: Instant,
        error: KafkaError,
    ) -> Result<Fresh, KafkaError> {
        let left = deadline.saturating_duration_since(Instant::now());
        // A client cannot bootstrap and ask in less: the first ask's error says more.
        if left < AFRESH_AT_LEAST {
            return Err(error);
        }
        let client: BaseConsumer = client::standalone_consumer(&self.kafka, read_committed).create()?;
        let marks = client.fetch_watermarks(&self.topic, partition as i32, left)?;
        Ok(Fresh { client, marks })
    }

    /// Runs `query` against the partition's leader; when the client's metadata names no
    /// live leader for it (librdkafka then answers at once from its cache, with "unknown
    /// partition" or "leader not available", and does not look again: seen for 54 s after
    /// a broker restart), the topic's metadata is fetched afresh and the query asked again.
    fn with_leader<T>(
        &self,
        client: &BaseConsumer,
        timeout: Duration,
        query: impl Fn(Duration) -> Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        let deadline = Instant::now() + timeout;
        match query(timeout) {
            Err(error) if leader_unknown(&error) => {
                let _ = client.fetch_metadata(Some(&self.topic), deadline.saturating_duration_since(Instant::now()));
                query(deadline.saturating_duration_since(Instant::now()))
            }
            answer => answer,
        }
    }

    /// The partition's last stable offset: the end of what a `read_committed` read can get
    /// to now (below the log's end while a transaction is open).
    pub fn stable_end(&self, partition: u32, timeout: Duration) -> Result<i64, KafkaError> {
        let _call = activity::enter("changelog_stable_offset");
        let deadline = Instant::now() + timeout;
        let first = self.with_leader(&self.consumer, timeout.min(FIRST_ASK), |wait| {
            self.consumer.fetch_watermarks(&self.topic, partition as i32, wait)
        });
        let (_, stable) = match first {
            // The reader keeps its assignment: the new client only answers this once.
            Err(error) if unanswered(&error) => self.ask_afresh(true, partition, deadline, error)?.marks,
            answer => answer?,
        };
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
        let mut timeout = client::whole_millis(wait);
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
                    timeout = client::whole_millis(deadline.saturating_duration_since(Instant::now()));
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
}

/// A client bootstrapped for one look-up, and its answer.
struct Fresh {
    client: BaseConsumer,
    marks: (i64, i64),
}

/// Whether a look-up's `error` may be the client's own (it waited on a broker that does not
/// answer, or still names no live leader), so a client bootstrapped afresh may get the answer.
fn unanswered(error: &KafkaError) -> bool {
    leader_unknown(error)
        || error
            .rdkafka_error_code()
            .is_some_and(|code| error_codes::timed_out(code) || error_codes::connection_lost(code))
}

/// Drops `client` on a thread of its own: its broker threads may be waiting on a broker that
/// does not answer, and the state updater does not wait for them to notice.
fn retire(client: BaseConsumer) {
    let spawned = std::thread::Builder::new()
        .name("retire-client".into())
        .spawn(move || drop(client));
    if let Err(error) = spawned {
        tracing::debug!(%error, "cannot start a thread to drop a replaced client; it is dropped here");
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
