//! The watch on the stream thread's inputs, a detector: an input partition of a running
//! task whose position has not moved for a while, that is not paused, and whose last
//! stable offset has lain beyond the position for a while too (see `stall_clock`), holds
//! committed records the consumer does not fetch. That is a defect of the runtime (a leaked pause, a lost assignment), so it is
//! reported (log line, metric, alert) and nothing else: no read is started again here.
//! Invariant: only an input with committed records to read is ever reported; one that
//! waits for an open transaction (its last stable offset at the position) is left alone.

use super::paused_inputs::InputPartition;
use super::stall_clock::StallClock;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long an input may stand still before its last stable offset is looked at.
const STANDING_STILL: Duration = Duration::from_secs(10);
/// How long committed records must lie beyond an input standing still before it is reported.
const BEHIND: Duration = Duration::from_secs(5);
/// The longest the watch asks the broker for one input's last stable offset: it runs on
/// the stream thread, and an input stands still most often while its leader is away.
const LOOK_UP: Duration = Duration::from_millis(500);

/// An input that stood still `for_ms` at `position` below its last stable offset `stable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    pub input: InputPartition,
    pub position: i64,
    pub stable: i64,
    pub for_ms: u64,
}

#[derive(Debug, Default)]
pub struct InputWatch {
    /// Each watched input's position, since when it stands there and since when committed
    /// records lie beyond it.
    seen: BTreeMap<InputPartition, StallClock>,
}

impl InputWatch {
    /// The inputs of `watched` (not paused, of running tasks, each with the offset its task
    /// expects next where it knows it) that stand still although committed records lie
    /// beyond them, with their position and last stable offset.
    pub fn stalled<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        watched: &[(InputPartition, Option<i64>)],
    ) -> Vec<Stalled> {
        let positions = consumer.position().unwrap_or_else(|_| TopicPartitionList::new());
        let now = Instant::now();
        self.seen.retain(|input, _| watched.iter().any(|(w, _)| w == input));
        let mut stuck = Vec::new();
        for (input, expected) in watched {
            let polled = match positions.find_partition(&input.0, input.1).map(|e| e.offset()) {
                Some(Offset::Offset(position)) => Some(position),
                _ => None,
            };
            let Some(position) = polled.or(*expected) else {
                continue;
            };
            let clock = self
                .seen
                .entry(input.clone())
                .or_insert_with(|| StallClock::new(position, now));
            if clock.at(position, now) || clock.standing(now) < STANDING_STILL {
                continue;
            }
            // Under read_committed the consumer's watermark query answers the last stable offset.
            if let Ok((_, stable)) = consumer.fetch_watermarks(&input.0, input.1, LOOK_UP) {
                if clock.stalled(stable, now, BEHIND).is_some() {
                    stuck.push(Stalled {
                        input: input.clone(),
                        position,
                        stable,
                        for_ms: clock.standing(now).as_millis() as u64,
                    });
                    self.seen.remove(input);
                }
            }
        }
        stuck
    }
}
