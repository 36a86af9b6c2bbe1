//! Consumer lag from the broker's watermarks: for each assigned partition, how many records
//! lie between the consumer's position and the log end. Shared by the processor and the sink.

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::Offset;
use std::time::Duration;

/// `(topic, partition, lag)` for every assigned partition with a known position.
pub fn consumer_lag<C: ConsumerContext + 'static>(consumer: &impl Consumer<C>) -> Vec<(String, i32, i64)> {
    let (Ok(assignment), Ok(positions)) = (consumer.assignment(), consumer.position()) else {
        return Vec::new();
    };
    assignment
        .elements()
        .iter()
        .filter_map(|element| {
            let (topic, partition) = (element.topic(), element.partition());
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(1))
                .ok()?;
            match positions.find_partition(topic, partition)?.offset() {
                Offset::Offset(position) => Some((topic.to_string(), partition, (high - position).max(0))),
                _ => None,
            }
        })
        .collect()
}
