//! librdkafka client configuration, in one place. Users' `[kafka.client]` properties come
//! first; the properties creditstream's guarantees rest on are set after them and win.
//! Invariant: every producer uses `partitioner=murmur2_random` (Java clients' placement)
//! and is idempotent.

use crate::config::KafkaConfig;
use crate::runtime::event_wait::Events;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// How long a request to a broker may go unanswered before the client gives the connection
/// up and looks for the partition's leader (or coordinator) again (librdkafka's
/// socket.timeout.ms, 60 s by default; Java clients' request.timeout.ms is 30 s). A broker
/// that is frozen (SIGSTOP, a stalled VM or disk) keeps its connections open and answers
/// nothing: the cluster moves its leaders and coordinators once it is fenced
/// (broker.session.timeout.ms, 9 s by default), but a client learns of that only when a
/// request fails. 5 s, half the default transaction timeout: where the cluster fences a
/// silent broker sooner than that, a commit asked of a transaction coordinator that froze
/// is asked again of the coordinator that replaced it before the transaction times out
/// there (at 10 s it always came too late: the new coordinator had aborted the
/// transaction, the producer was fenced and every store restored, 20 s without
/// decisions). Where fencing takes longer (Kafka's default is 9 s), a request is retried
/// on the frozen broker once more and fails at 10 s, as it did before.
pub const SOCKET_TIMEOUT_MS: &str = "5000";

/// The base configuration shared by every client: brokers plus the user's pass-through
/// properties, which win over its defaults here: a broker that refused connections is
/// tried again at least every second (librdkafka backs off to 10 s, so a client whose
/// partition leader came back from a restart kept away from it for up to 10 s more: stalled
/// changelog reads and restores in a rolling restart), and a request unanswered for
/// [`SOCKET_TIMEOUT_MS`] fails.
pub fn base(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("reconnect.backoff.max.ms", "1000");
    config.set("socket.timeout.ms", SOCKET_TIMEOUT_MS);
    for (key, value) in &kafka.client {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    config.set("log_level", "4");
    config
}

/// A producer: idempotent, acks=all, murmur2 placement.
pub fn producer(kafka: &KafkaConfig, linger_ms: u64) -> ClientConfig {
    let mut config = base(kafka);
    config
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Every delivery reported, successes too: the delivery tracker and every wait for
        // the deliveries (a commit's) count on it.
        .set("delivery.report.only.error", "false")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    config
}

/// A transactional producer for one processor replica.
pub fn transactional_producer(
    kafka: &KafkaConfig,
    transactional_id: &str,
    transaction_timeout_ms: u64,
    linger_ms: u64,
) -> ClientConfig {
    let mut config = producer(kafka, linger_ms);
    let message_timeout = transaction_timeout_ms.saturating_sub(2_000).max(5_000);
    config
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", transaction_timeout_ms.to_string())
        .set("message.timeout.ms", message_timeout.to_string());
    config
}

/// What every consumer shares: no automatic commits, reading from the start, and the
/// isolation level (`read_committed` sees only committed transactions).
fn reader(kafka: &KafkaConfig, group_id: &str, read_committed: bool) -> ClientConfig {
    let mut config = base(kafka);
    let isolation = if read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "50");
    config
}

/// A member of consumer group `group_id` that commits offsets itself.
///
/// It asks which broker coordinates its group every second (librdkafka: every 10 min while
/// the coordinator answers). A heartbeat sent to a coordinator whose broker froze or died
/// waits out the whole session timeout, after which librdkafka gives the assignment up as
/// lost; asking again finds the coordinator the controller moved once it fenced that
/// broker, and the heartbeat goes there while the session still holds.
pub fn consumer(kafka: &KafkaConfig, group_id: &str, read_committed: bool) -> ClientConfig {
    let mut config = reader(kafka, group_id, read_committed);
    config
        .set("coordinator.query.interval.ms", "1000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "300000");
    config
}

/// A client of consumer group `group_id` that never joins it, for reading the group's
/// committed offsets as its members will see them (`read_committed`: offsets a pending
/// transaction still holds are not answered until that transaction ends).
///
/// It asks which broker coordinates the group every second, as the members do: one that
/// kept the coordinator it knew while that broker was frozen asked it for 12 s and more
/// (`tests/cluster_lookups.rs`), and a restored task waited for its answer.
pub fn group_reader(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut config = reader(kafka, group_id, true);
    config.set("coordinator.query.interval.ms", "1000");
    config
}

/// A consumer that assigns partitions itself (no group membership), for restores and
/// verification reads.
pub fn standalone_consumer(kafka: &KafkaConfig, read_committed: bool) -> ClientConfig {
    reader(kafka, "creditstream-standalone", read_committed)
}

/// Metadata at most 5 s old (librdkafka's default is 5 min), for a consumer that reads
/// partitions it assigned itself: one that last saw a partition's leader on a broker that
/// has since gone away (librdkafka then drops that broker) learns the new leader within
/// seconds, not minutes. A user's own setting wins.
pub fn with_fresh_metadata(mut config: ClientConfig) -> ClientConfig {
    if config.get("topic.metadata.refresh.interval.ms").is_none() {
        config.set("topic.metadata.refresh.interval.ms", "5000");
    }
    config
}

/// Where [`seek_to_committed`] left one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewound {
    /// Moved to the committed offset (`None`: nothing committed, to the beginning).
    To(Option<i64>),
    /// Its fetcher has not started: librdkafka is still reading the committed offset it
    /// will start from (it waits while a transaction holds that offset), so nothing was
    /// fetched that a seek would discard.
    NotFetchedYet,
}

/// Moves `consumer` on every partition of `partitions` back to the group's committed offset
/// (the beginning where none is committed), so whatever was not committed is read again.
/// Returns where each partition was left. A seek that failed for any one partition fails
/// the whole call (a partition left where it was would skip records of an aborted
/// transaction or stall), except on a partition whose fetcher has not started yet: it will
/// start at the committed offset by itself.
pub fn seek_to_committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: TopicPartitionList,
    timeout: Duration,
) -> Result<Vec<(String, i32, Rewound)>, KafkaError> {
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut seek = TopicPartitionList::new();
    let mut sought = Vec::new();
    for element in committed.elements() {
        // A partition whose committed offset the broker did not answer has no offset in
        // the list: taking that as "nothing committed" would re-read it from the start.
        element.error()?;
        let offset = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        seek.add_partition_offset(
            element.topic(),
            element.partition(),
            offset.map_or(Offset::Beginning, Offset::Offset),
        )?;
        sought.push((element.topic().to_string(), element.partition(), Rewound::To(offset)));
    }
    let result = consumer.seek_partitions(seek, timeout)?;
    for element in result.elements() {
        match element.error() {
            Ok(()) => {}
            // librdkafka's answer for a partition whose fetcher has not started.
            Err(KafkaError::OffsetFetch(RDKafkaErrorCode::State)) => {
                if let Some(entry) = sought
                    .iter_mut()
                    .find(|(topic, partition, _)| topic == element.topic() && *partition == element.partition())
                {
                    entry.2 = Rewound::NotFetchedYet;
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(sought)
}

/// Waits until every record sent so far is acknowledged, serving delivery reports as they
/// arrive and sleeping between them ([`Events`]). rust-rdkafka's own `flush` polls in
/// fixed 100 ms steps, which would stall every commit for 100 ms.
pub fn flush<C: ProducerContext>(producer: &BaseProducer<C>, timeout: Duration) -> Result<(), KafkaError> {
    flush_unless(producer, timeout, || false).map(|_| ())
}

/// A poll timeout rounded up to whole milliseconds. rust-rdkafka hands librdkafka whole
/// milliseconds (truncated) and polls again until its own deadline, so the fraction of a
/// millisecond a wait ends with is spent in zero-timeout polls: a busy loop.
pub fn whole_millis(wait: Duration) -> Duration {
    let millis = wait.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// How long [`flush_unless`] sleeps at most before it asks `give_up` again.
const GIVE_UP_CHECK: Duration = Duration::from_millis(10);
/// How long [`send_waiting`] sleeps at most for a delivery to make room in a full queue.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// [`flush`], stopping early once `give_up` says the wait is for nothing: `Ok(false)` then.
pub fn flush_unless<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
    mut give_up: impl FnMut() -> bool,
) -> Result<bool, KafkaError> {
    if producer.in_flight_count() == 0 {
        return Ok(true);
    }
    let deadline = Instant::now() + timeout;
    let events = Events::new(producer);
    loop {
        events.serve();
        if producer.in_flight_count() == 0 {
            return Ok(true);
        }
        if give_up() {
            return Ok(false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        events.wait(left.min(GIVE_UP_CHECK));
    }
}

/// Sends a record without waiting for its delivery. When librdkafka's local queue is full,
/// serves the producer (delivery reports free the queue) and tries again instead of failing.
pub fn send_waiting<C: ProducerContext>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> Result<(), KafkaError> {
    let mut events = None;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                let events = events.get_or_insert_with(|| Events::new(producer));
                // Served reports made room already; otherwise sleep until one comes.
                if events.serve() == 0 {
                    events.wait(QUEUE_FULL_WAIT);
                }
                record = returned;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn kafka(vars: &[(&str, &str)]) -> KafkaConfig {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_from(None, vars).expect("a valid configuration").kafka
    }

    #[test]
    fn a_request_to_a_silent_broker_fails_after_five_seconds_unless_the_user_says_otherwise() {
        let shipped = base(&kafka(&[]));
        assert_eq!(shipped.get("socket.timeout.ms"), Some(SOCKET_TIMEOUT_MS));
        assert_eq!(shipped.get("reconnect.backoff.max.ms"), Some("1000"));
        let chosen = base(&kafka(&[("CREDITSTREAM__KAFKA__CLIENT__socket.timeout.ms", "30000")]));
        assert_eq!(chosen.get("socket.timeout.ms"), Some("30000"));
    }

    #[test]
    fn poll_waits_are_whole_milliseconds_never_shorter() {
        assert_eq!(whole_millis(Duration::ZERO), Duration::ZERO);
        assert_eq!(whole_millis(Duration::from_micros(1)), Duration::from_millis(1));
        assert_eq!(whole_millis(Duration::from_micros(2_300)), Duration::from_millis(3));
        assert_eq!(whole_millis(Duration::from_millis(50)), Duration::from_millis(50));
    }

    #[test]
    fn what_the_guarantees_rest_on_cannot_be_overridden() {
        let config = producer(&kafka(&[("CREDITSTREAM__KAFKA__CLIENT__partitioner", "random")]), 5);
        assert_eq!(config.get("partitioner"), Some("murmur2_random"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }
}
