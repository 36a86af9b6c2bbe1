//! Waits for a replica's consumer group to settle before a measured window begins.
//!
//! A replica's stream threads join the group one after the other. On a broker without an
//! initial rebalance delay (the local stack sets `group.initial.rebalance.delay.ms=0`) the
//! first to join is given every partition, and each later one takes half of them away in a
//! rebalance, which would fall inside the window and measure a group's start-up instead of
//! its threads. Invariant: read-only; it only describes the group.

use crate::children::Children;
use creditstream::config::KafkaConfig;
use creditstream::runtime::{client, group_members};
use rdkafka::consumer::BaseConsumer;
use std::time::{Duration, Instant};

/// Waits until `group` is stable with `members` members, each given partitions; fails once
/// a child exited or `timeout` passed since `since`.
pub fn wait(
    kafka: &KafkaConfig,
    group: &str,
    members: usize,
    children: &mut Children,
    since: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let consumer: BaseConsumer = client::group_reader(kafka, &format!("{group}-bench-describe"))
        .create()
        .map_err(|e| format!("a client to describe {group}: {e}"))?;
    children.wait_until(since, timeout, || {
        match group_members::describe(&consumer, group, group_members::DESCRIBE_WAIT) {
            Ok(g)
                if g.is_stable() && g.members.len() == members && g.members.iter().all(|m| !m.assigned.is_empty()) =>
            {
                Ok(())
            }
            Ok(g) => Err(format!(
                "group {group} did not settle with {members} members ({} with {} members)",
                g.state,
                g.members.len()
            )),
            Err(e) => Err(format!("group {group} did not settle with {members} members ({e})")),
        }
    })
}
