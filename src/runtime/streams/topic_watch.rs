//! Watches the topology's topics while the replica runs, on a thread of its own with its
//! own client: a topic whose partition count changed stops the replica (its inputs would no
//! longer be co-partitioned), and a topic missing from the metadata is logged. No stream
//! thread waits on these metadata calls: when they ran on the stream thread, every 10 s,
//! each topic's call could hold it up to 2 s while a broker was frozen or shutting down.
//!
//! Invariant: the watch only reads metadata; its one outcome that acts is a fatal
//! [`StreamsError::CoPartitioning`] (or a denied metadata call), returned as a failed
//! stream thread's error is, which stops the replica.

use super::assignment;
use super::error::StreamsError;
use crate::config::KafkaConfig;
use crate::runtime::client;
use crate::shutdown::Shutdown;
use crate::topology::definition::TopologyDefinition;
use rdkafka::consumer::BaseConsumer;
use std::time::{Duration, Instant};
use tracing::warn;

/// How often the topics are looked at.
const EVERY: Duration = Duration::from_secs(10);
/// The longest one topic's metadata call may take (one that cannot be answered now is made
/// again next round).
const CALL: Duration = Duration::from_secs(2);
/// How often the watch looks at the shutdown signal between rounds.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(100);

/// Runs the watch until `shutdown`, or until a topic no longer fits the topology.
pub fn run(kafka: &KafkaConfig, def: &TopologyDefinition, shutdown: &Shutdown) -> Result<(), StreamsError> {
    let consumer: BaseConsumer = client::standalone_consumer(kafka, false).create()?;
    let mut last = Instant::now();
    // Whether the last round's calls went unanswered (logged once until one is answered).
    let mut unanswered = false;
    while !shutdown.is_requested() {
        if last.elapsed() < EVERY {
            std::thread::sleep(SHUTDOWN_CHECK);
            continue;
        }
        last = Instant::now();
        // One topic at a time, so a shutdown never waits for more than one call.
        match assignment::verify_partition_counts(&consumer, def, CALL, || shutdown.is_requested()) {
            Ok(missing) => {
                unanswered = false;
                if let Some(topic) = missing {
                    warn!(topic, "a topic of the topology is missing from the broker's metadata");
                }
            }
            Err(error) if error.is_retriable() => {
                if !unanswered {
                    warn!(%error, "cannot read the topics' metadata; the partition counts are checked again in 10 s");
                }
                unanswered = true;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
