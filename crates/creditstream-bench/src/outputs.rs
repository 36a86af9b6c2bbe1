//! What a system wrote: records and bytes (key + value, as produced, before compression)
//! on each of its output topics and its changelog, read committed after it stopped, and
//! the counts each topic must hold for the run's input.
//! Invariant: decisions, user changes and dead letters must match exactly; a changelog
//! may hold fewer records where a record cache folds repeated writes of one key into one,
//! but never fewer than one per key written.

use creditstream::config::KafkaConfig;
use creditstream::runtime::client;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// One topic's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicCount {
    pub role: String,
    pub topic: String,
    pub records: u64,
    pub bytes: u64,
}

/// Counts `topic`'s committed records and their key + value bytes, reading every
/// partition to its end.
pub fn count(
    kafka: &KafkaConfig,
    role: &'static str,
    topic: &str,
    partitions: u32,
    timeout: Duration,
) -> Result<TopicCount, String> {
    let mut config = client::standalone_consumer(kafka, true);
    config.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut ended = vec![false; partitions as usize];
    let (mut records, mut bytes) = (0u64, 0u64);
    while ended.iter().any(|e| !e) {
        if started.elapsed() > timeout {
            return Err(format!("{topic}: not read to its end within {timeout:?}"));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                records += 1;
                bytes += (message.key_len() + message.payload_len()) as u64;
                if let Some(e) = ended.get_mut(message.partition() as usize) {
                    *e = false;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some(e) = ended.get_mut(p as usize) {
                    *e = true;
                }
            }
            Some(Err(e)) => return Err(format!("{topic}: {e}")),
        }
    }
    Ok(TopicCount {
        role: role.to_string(),
        topic: topic.to_string(),
        records,
        bytes,
    })
}

/// What the input says each topic must hold.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedCounts {
    pub users: u64,
    pub orders: u64,
    /// Orders that complete (each changes its user).
    pub completed: u64,
    pub partitions: u32,
    /// Whether the changelog may fold repeated writes of a key (a record cache).
    pub cached_changelog: bool,
    /// User changes per user create: 2 for creditstream and the pass-through (the upsert
    /// and the command's outcome), 1 for the Kafka Streams peer (it reports no outcomes).
    pub user_changes_per_user: u64,
}

impl ExpectedCounts {
    /// Checks each counted topic; `Err` names the first that is off.
    pub fn check(&self, counts: &[TopicCount]) -> Result<(), String> {
        for c in counts {
            let (low, high) = match c.role.as_str() {
                "decisions" => (self.orders, self.orders),
                "user_changes" => {
                    let n = self.users * self.user_changes_per_user + self.completed;
                    (n, n)
                }
                "dead_letters" => (0, 0),
                "changelog" => {
                    // One record per write (user created, order seen, user changed), plus
                    // each task's owner record under exactly_once_v2 (one per claim).
                    let writes = self.users + self.orders + self.completed;
                    let high = writes + 4 * u64::from(self.partitions);
                    let keys = self.users + self.orders;
                    if self.cached_changelog {
                        (keys, high)
                    } else {
                        (writes, high)
                    }
                }
                _ => continue,
            };
            if c.records < low || c.records > high {
                let want = if low == high {
                    format!("{low}")
                } else {
                    format!("{low}..={high}")
                };
                return Err(format!(
                    "{} ({}) holds {} records, expected {want}",
                    c.role, c.topic, c.records
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(role: &'static str, records: u64) -> TopicCount {
        TopicCount {
            role: role.into(),
            topic: role.into(),
            records,
            bytes: 0,
        }
    }

    const EXPECTED: ExpectedCounts = ExpectedCounts {
        users: 10,
        orders: 100,
        completed: 80,
        partitions: 2,
        cached_changelog: false,
        user_changes_per_user: 1,
    };

    #[test]
    fn exact_topics_must_match_exactly() {
        let good = [
            topic("decisions", 100),
            topic("user_changes", 90),
            topic("dead_letters", 0),
        ];
        assert!(EXPECTED.check(&good).is_ok());
        let bad = [topic("decisions", 100), topic("user_changes", 89)];
        let err = EXPECTED.check(&bad).unwrap_err();
        assert!(
            err.contains("user_changes") && err.contains("89") && err.contains("90"),
            "{err}"
        );
    }

    #[test]
    fn a_record_cache_may_fold_changelog_writes_but_not_below_one_per_key() {
        assert!(EXPECTED.check(&[topic("changelog", 190)]).is_ok());
        assert!(EXPECTED.check(&[topic("changelog", 150)]).is_err());
        let cached = ExpectedCounts {
            cached_changelog: true,
            ..EXPECTED
        };
        assert!(cached.check(&[topic("changelog", 150)]).is_ok());
        assert!(cached.check(&[topic("changelog", 109)]).is_err());
        assert!(cached.check(&[topic("changelog", 199)]).is_err());
    }
}
