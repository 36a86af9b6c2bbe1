//! Consumer lag from the watermarks the consumer's last fetch responses carried: for each
//! assigned partition, how many records lie between the consumer's position and the log
//! end. Shared by the processor and the sink.
//! Invariant: no broker call: a metric never holds up a poll loop, least of all while a
//! broker is away (a watermark query per partition then waits out its timeout).

use crate::runtime::consumer_state;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::Offset;

/// `(topic, partition, lag)` for every assigned partition with a known position and a
/// fetch answered since it was assigned.
pub fn consumer_lag<C: ConsumerContext + 'static>(consumer: &impl Consumer<C>) -> Vec<(String, i32, i64)> {
    let (Ok(assignment), Ok(positions)) = (consumer.assignment(), consumer.position()) else {
        return Vec::new();
    };
    assignment
        .elements()
        .iter()
        .filter_map(|element| {
            let (topic, partition) = (element.topic(), element.partition());
            let (_, high) = consumer_state::cached_watermarks(consumer, topic, partition)?;
            match positions.find_partition(topic, partition)?.offset() {
                Offset::Offset(position) => Some((topic.to_string(), partition, (high - position).max(0))),
                _ => None,
            }
        })
        .collect()
}
