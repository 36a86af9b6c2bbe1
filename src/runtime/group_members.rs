//! The members of a consumer group and the partitions the group gave each, read with
//! DescribeGroups: the view the state updater places standby tasks from.
//! Invariant: read-only and advisory. A description that cannot be read or decoded yields
//! an error or leaves a member without partitions; it never affects who owns what.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use std::collections::BTreeSet;
use std::time::Duration;

/// One member of the group and the topic-partitions it was assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// The client id it joined with (a processor replica's transactional id).
    pub client_id: String,
    pub assigned: BTreeSet<(String, u32)>,
}

/// A group's state and members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// `Stable` once every member has its assignment; `PreparingRebalance`,
    /// `CompletingRebalance`, `Empty` or `Dead` otherwise.
    pub state: String,
    /// Sorted by member id. Assignments are complete only while the group is stable.
    pub members: Vec<Member>,
}

impl Group {
    pub fn is_stable(&self) -> bool {
        self.state == "Stable"
    }
}

/// The state of `group`, its members and their assignments.
pub fn describe<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    group: &str,
    timeout: Duration,
) -> Result<Group, KafkaError> {
    let groups = consumer.fetch_group_list(Some(group), timeout)?;
    let Some(found) = groups.groups().iter().find(|g| g.name() == group) else {
        return Ok(Group::default());
    };
    let mut members: Vec<Member> = found
        .members()
        .iter()
        .map(|m| Member {
            id: m.id().to_string(),
            client_id: m.client_id().to_string(),
            assigned: m.assignment().and_then(assigned_partitions).unwrap_or_default(),
        })
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Group {
        state: found.state().to_string(),
        members,
    })
}

/// Reads big-endian fields of Kafka's consumer-protocol encoding.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The topic-partitions of a consumer-protocol `Assignment` (any version: each has the
/// version, then the assigned partitions by topic, then user data, which is ignored).
pub fn assigned_partitions(bytes: &[u8]) -> Option<BTreeSet<(String, u32)>> {
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        let count = r.i32()?;
        for _ in 0..count.max(0) {
            out.insert((name.clone(), u32::try_from(r.i32()?).ok()?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(version: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut out = version.to_be_bytes().to_vec();
        out.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            out.extend((name.len() as i16).to_be_bytes());
            out.extend(name.as_bytes());
            out.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                out.extend(p.to_be_bytes());
            }
        }
        out.extend((-1_i32).to_be_bytes()); // no user data
        out
    }

    #[test]
    fn reads_every_assigned_partition_by_topic() {
        let bytes = encode(3, &[("orders", &[4, 1]), ("seed", &[2])]);
        let expected = [("orders", 1), ("orders", 4), ("seed", 2)].map(|(t, p)| (t.to_string(), p));
        assert_eq!(assigned_partitions(&bytes), Some(BTreeSet::from(expected)));
        assert_eq!(assigned_partitions(&encode(0, &[])), Some(BTreeSet::new()));
    }

    #[test]
    fn a_truncated_assignment_is_refused_not_misread() {
        let bytes = encode(0, &[("orders", &[4, 1])]);
        assert_eq!(assigned_partitions(&bytes[..bytes.len() - 9]), None);
        assert_eq!(assigned_partitions(&[]), None);
    }
}
