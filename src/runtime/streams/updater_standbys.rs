//! The state updater's standby tasks: which this stream thread keeps, read from the group
//! every few seconds (see `standby_placement` for the rule), opened and dropped to match.
//! Invariant: a replica never keeps a standby of a task that any of its stream threads
//! runs, and drops one as soon as the group says such a thread got it (so that thread can
//! open the store).

use super::standby_placement::{replica_of, standby_partitions};
use super::state_updater::Updater;
use super::updater_tasks::Role;
use std::collections::BTreeSet;
use std::time::Instant;
use tracing::info;

impl Updater {
    /// Reads standby placement from the group view: this replica keeps standbys of the
    /// tasks the placement gives it, and of no task it runs itself. Waits (without
    /// blocking) for a description asked for after the last rebalance.
    pub(super) fn place_standbys(&mut self) {
        let Some(me) = self.member_id.clone() else {
            self.placed_at = Some(Instant::now());
            return;
        };
        if self.stopping() || self.config.standby_copies == 0 {
            self.placed_at = Some(Instant::now());
            return;
        }
        let Some(seen) = self.group.since(self.membership_at) else {
            return;
        };
        self.placed_at = Some(Instant::now());
        let members = match seen.group {
            group if group.is_stable() && group.members.iter().any(|m| m.id == me) => group.members,
            // Rebalancing, or this replica is not in the description yet: keep what is warm.
            _ => return,
        };
        let placed = standby_partitions(&members, &me, &self.config.leader_topic, self.config.standby_copies);
        // Tasks another stream thread of this replica runs are not kept here either.
        let replica = replica_of(&self.config.transactional_id);
        let siblings: BTreeSet<u32> = members
            .iter()
            .filter(|m| replica_of(&m.client_id) == replica)
            .flat_map(|m| m.assigned.iter())
            .filter(|(topic, _)| *topic == self.config.leader_topic)
            .map(|(_, p)| *p)
            .collect();
        let wanted: BTreeSet<u32> = placed
            .into_iter()
            .filter(|p| !self.active.contains(p) && !self.lent.contains(p) && !siblings.contains(p))
            .collect();
        if wanted != self.standby_set {
            info!(standbys = ?wanted, "standby tasks placed");
        }
        self.standby_set = wanted;
        let drop: Vec<u32> = self
            .entries
            .iter()
            .filter(|(p, e)| matches!(e.role, Role::Standby) && !self.standby_set.contains(p))
            .map(|(p, _)| *p)
            .collect();
        for partition in drop {
            self.close(partition);
        }
        let open: Vec<u32> = self
            .standby_set
            .iter()
            .copied()
            .filter(|p| !self.entries.contains_key(p) && !self.parked.contains_key(p))
            .filter(|p| !self.deferred.iter().any(|d| d.partition == *p))
            .collect();
        for partition in open {
            self.open(partition, None, None);
        }
    }
}
