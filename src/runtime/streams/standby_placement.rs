//! Where standby tasks go (pure): for every stateful task, the replicas that keep a warm
//! copy of its store, chosen so that a replica that fails hands each of its tasks to a
//! replica that already has the copy.
//!
//! The group's assignor (librdkafka's cooperative-sticky) keeps every partition where it
//! is and deals the partitions of a departed member to the member with the fewest
//! partitions, the lowest member id on a tie, taking them in descending (topic,
//! partition) order (the order its map of partitions iterates in). The first standby of a task is the
//! replica that this rule would hand it to if its owner left now; further copies follow
//! that replica around the ring of member ids. The prediction is advisory: if the assignor
//! decides otherwise, the new owner restores from the changelog, which is slower, never
//! wrong.

use crate::runtime::group_members::Member;
use std::collections::{BTreeMap, BTreeSet};

/// The partitions of `topic` that member `me` keeps standby copies of, `copies` per task.
pub fn standby_partitions(members: &[Member], me: &str, topic: &str, copies: usize) -> BTreeSet<u32> {
    let mut mine = BTreeSet::new();
    if copies == 0 || members.len() < 2 || !members.iter().any(|m| m.id == me) {
        return mine;
    }
    for owner in members.iter().filter(|m| m.id != me) {
        let ring: Vec<&str> = members
            .iter()
            .map(|m| m.id.as_str())
            .filter(|id| *id != owner.id)
            .collect();
        for ((t, partition), first) in predicted_takers(members, owner) {
            if t != topic {
                continue;
            }
            let start = ring.iter().position(|id| *id == first).unwrap_or(0);
            let holders = (0..copies.min(ring.len())).map(|i| ring[(start + i) % ring.len()]);
            if holders.into_iter().any(|id| id == me) {
                mine.insert(partition);
            }
        }
    }
    mine
}

/// Who would take each of `leaving`'s partitions if it left: dealt, last partition first,
/// to the member with the fewest partitions, the lowest id on a tie.
fn predicted_takers<'a>(members: &'a [Member], leaving: &Member) -> BTreeMap<(String, u32), &'a str> {
    let mut load: Vec<(usize, &str)> = members
        .iter()
        .filter(|m| m.id != leaving.id)
        .map(|m| (m.assigned.len(), m.id.as_str()))
        .collect();
    let mut takers = BTreeMap::new();
    for tp in leaving.assigned.iter().rev() {
        let Some(least) = load.iter_mut().min() else {
            break;
        };
        least.0 += 1;
        takers.insert(tp.clone(), least.1);
    }
    takers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, partitions: &[u32]) -> Member {
        Member {
            id: id.to_string(),
            client_id: format!("{id}-client"),
            assigned: partitions.iter().map(|p| ("orders".to_string(), *p)).collect(),
        }
    }

    fn group() -> Vec<Member> {
        vec![member("a", &[0, 1]), member("b", &[2, 3]), member("c", &[4, 5])]
    }

    #[test]
    fn one_copy_goes_where_the_assignor_would_move_each_task() {
        // If a leaves, 1 goes to b (a tie, lower id), then 0 to c (now the least loaded).
        let g = group();
        assert_eq!(standby_partitions(&g, "a", "orders", 1), BTreeSet::from([3, 5]));
        assert_eq!(standby_partitions(&g, "b", "orders", 1), BTreeSet::from([1, 4]));
        assert_eq!(standby_partitions(&g, "c", "orders", 1), BTreeSet::from([0, 2]));
    }

    #[test]
    fn every_other_replica_holds_a_copy_when_copies_cover_the_ring() {
        let g = group();
        assert_eq!(standby_partitions(&g, "a", "orders", 2), BTreeSet::from([2, 3, 4, 5]));
        assert_eq!(
            standby_partitions(&g, "a", "orders", 5),
            standby_partitions(&g, "a", "orders", 2)
        );
    }

    #[test]
    fn no_standby_alone_without_copies_or_for_another_topic() {
        assert!(standby_partitions(&[member("a", &[0, 1])], "a", "orders", 1).is_empty());
        assert!(standby_partitions(&group(), "a", "orders", 0).is_empty());
        assert!(standby_partitions(&group(), "a", "seed", 1).is_empty());
        assert!(standby_partitions(&group(), "z", "orders", 1).is_empty());
    }
}
