//! Where standby tasks go (pure): for every stateful task, the replicas that keep a warm
//! copy of its store, chosen so that a replica that fails hands each of its tasks to a
//! replica that already has the copy. A replica with several stream threads is several
//! members of the group (their client ids end in `-stream-thread-<n>`): it never keeps a
//! standby of a task any of its threads runs, and keeps each standby in one thread only,
//! the one the assignor would hand the task to if it can tell.
//!
//! The group's assignor (librdkafka's cooperative-sticky) keeps every partition where it
//! is and deals the partitions of a departed member to the member with the fewest
//! partitions, the lowest member id on a tie, taking them in descending (topic,
//! partition) order (the order its map of partitions iterates in). The first standby of a task is the
//! replica that this rule would hand it to if its owner (all of its threads) left now;
//! further copies follow that replica around the ring of replicas (ordered by their lowest
//! member id), each kept by the replica's lowest member. The prediction is advisory: if the assignor
//! decides otherwise, the new owner restores from the changelog, which is slower, never
//! wrong.

use crate::runtime::group_members::Member;
use std::collections::{BTreeMap, BTreeSet};

/// The replica a member belongs to: its client id without the stream thread's suffix.
pub fn replica_of(client_id: &str) -> &str {
    match client_id.rsplit_once("-stream-thread-") {
        Some((replica, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => replica,
        _ => client_id,
    }
}

/// The partitions of `topic` that member `me` keeps standby copies of, `copies` per task.
pub fn standby_partitions(members: &[Member], me: &str, topic: &str, copies: usize) -> BTreeSet<u32> {
    let mut mine = BTreeSet::new();
    let Some(my_replica) = members.iter().find(|m| m.id == me).map(|m| replica_of(&m.client_id)) else {
        return mine;
    };
    // Replicas in ring order (by their lowest member id; members come sorted by id).
    let mut replicas: Vec<&str> = Vec::new();
    for m in members {
        let replica = replica_of(&m.client_id);
        if !replicas.contains(&replica) {
            replicas.push(replica);
        }
    }
    if copies == 0 || replicas.len() < 2 {
        return mine;
    }
    let lowest_member = |replica: &str| {
        members
            .iter()
            .find(|m| replica_of(&m.client_id) == replica)
            .map(|m| m.id.as_str())
    };
    for &owner in replicas.iter().filter(|r| **r != my_replica) {
        let ring: Vec<&str> = replicas.iter().copied().filter(|r| *r != owner).collect();
        for ((t, partition), taker) in predicted_takers(members, owner) {
            if t != topic {
                continue;
            }
            let first = replica_of(&taker.client_id);
            let start = ring.iter().position(|r| *r == first).unwrap_or(0);
            let Some(holder) = (0..copies.min(ring.len()))
                .map(|i| ring[(start + i) % ring.len()])
                .find(|r| *r == my_replica)
            else {
                continue;
            };
            // Within the replica, the thread the assignor would pick, else its lowest member.
            let keeper = if holder == first {
                Some(taker.id.as_str())
            } else {
                lowest_member(holder)
            };
            if keeper == Some(me) {
                mine.insert(partition);
            }
        }
    }
    mine
}

/// Who would take each partition of replica `leaving` if all its members left: dealt, last
/// partition first, to the member with the fewest partitions, the lowest id on a tie.
fn predicted_takers<'a>(members: &'a [Member], leaving: &str) -> BTreeMap<(String, u32), &'a Member> {
    let (gone, staying): (Vec<&Member>, Vec<&Member>) =
        members.iter().partition(|m| replica_of(&m.client_id) == leaving);
    let mut load: Vec<(usize, &str, &Member)> = staying.iter().map(|m| (m.assigned.len(), m.id.as_str(), *m)).collect();
    let orphans: BTreeSet<&(String, u32)> = gone.iter().flat_map(|m| m.assigned.iter()).collect();
    let mut takers = BTreeMap::new();
    for tp in orphans.into_iter().rev() {
        let Some(least) = load.iter_mut().min_by_key(|(n, id, _)| (*n, *id)) else {
            break;
        };
        least.0 += 1;
        takers.insert(tp.clone(), least.2);
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

    fn thread(replica: &str, n: u32, partitions: &[u32]) -> Member {
        Member {
            id: format!("{replica}{n}"),
            client_id: format!("app-{replica}-stream-thread-{n}"),
            assigned: partitions.iter().map(|p| ("orders".to_string(), *p)).collect(),
        }
    }

    #[test]
    fn threads_of_one_replica_count_as_one_replica() {
        assert_eq!(replica_of("app-r1-stream-thread-12"), "app-r1");
        assert_eq!(replica_of("app-r1-stream-thread-"), "app-r1-stream-thread-");
        assert_eq!(replica_of("a-client"), "a-client");
        // Replica a runs 0,1 (thread a0) and 2 (a1); replica b runs 3,4 (b0) and 5 (b1).
        let g = vec![
            thread("a", 0, &[0, 1]),
            thread("a", 1, &[2]),
            thread("b", 0, &[3, 4]),
            thread("b", 1, &[5]),
        ];
        let of = |me: &str| standby_partitions(&g, me, "orders", 1);
        // If a left, 2 would go to b1 (fewest), 1 to b0 (a tie, lower id), 0 to b1: each
        // copy sits in the thread the assignor would hand the task to.
        assert_eq!(of("b0"), BTreeSet::from([1]));
        assert_eq!(of("b1"), BTreeSet::from([0, 2]));
        assert_eq!(of("a0"), BTreeSet::from([4]));
        assert_eq!(of("a1"), BTreeSet::from([3, 5]));
        // One replica with two threads keeps no standby: its own threads run every task.
        let alone = vec![thread("a", 0, &[0, 1, 2]), thread("a", 1, &[3, 4, 5])];
        assert!(standby_partitions(&alone, "a0", "orders", 1).is_empty());
        assert!(standby_partitions(&alone, "a1", "orders", 1).is_empty());
    }

    #[test]
    fn no_standby_alone_without_copies_or_for_another_topic() {
        assert!(standby_partitions(&[member("a", &[0, 1])], "a", "orders", 1).is_empty());
        assert!(standby_partitions(&group(), "a", "orders", 0).is_empty());
        assert!(standby_partitions(&group(), "a", "seed", 1).is_empty());
        assert!(standby_partitions(&group(), "z", "orders", 1).is_empty());
    }
}
