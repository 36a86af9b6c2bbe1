//! Fencing a task's previous owner. A replica that was killed or froze leaves its open
//! transaction behind; until the broker times it out (`transaction.timeout.ms`), it holds
//! back every `read_committed` reader of the partitions it wrote, the new owner's restore
//! and committed offsets included. The previous owner's transactional id is the one the
//! changelog's owner record names (written by each owner on taking a task over); a
//! producer initialised with it aborts that transaction at once.
//! Invariant: an owner that handed the task over and is still a member of the group is
//! never fenced (its transaction holds its other tasks' work).

use super::state_updater::{Updater, CALL_TIMEOUT};
use super::updater_tasks::{Entry, Role};
use crate::runtime::rocks_store::RocksStore;
use crate::runtime::{activity, client};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseProducer, Producer};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How long before the previous owner of one restore is fenced again.
const FENCE_AGAIN_AFTER: Duration = Duration::from_secs(5);
/// How long a departed-owner check waits for a description that settles it.
const CHECK_FOR: Duration = Duration::from_secs(30);

/// A task's previous owner, to be fenced if the group view says it left.
pub(super) struct OwnerCheck {
    owner: String,
    marked_at: Instant,
}

impl Updater {
    /// Whether the group's committed offsets of the inputs of `partition` can be read, so
    /// the task starts from them at once. They cannot while the previous owner's
    /// transaction, which commits them, is still open.
    pub(super) fn offsets_stable(&self, partition: u32) -> bool {
        if self.stopping() {
            return false;
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        for topic in &self.config.inputs {
            tpl.add_partition(topic, partition as i32);
        }
        let _call = activity::enter("committed_offsets");
        let unstable = match self.offsets.committed_offsets(tpl, Duration::from_millis(500)) {
            Ok(committed) => committed.elements().iter().find_map(|e| e.error().err()),
            Err(error) => Some(error),
        };
        if let Some(error) = &unstable {
            debug!(partition, %error, "restore caught up; the task's committed offsets cannot be read yet");
        }
        unstable.is_none()
    }

    /// Marks the task's previous owner to be fenced if it is no longer a member of the
    /// group (it was killed, or froze past its session): its open transaction would
    /// otherwise hold back the task's outputs from every `read_committed` reader until the
    /// transaction timed out, though the task decides again at once. An owner that handed
    /// the task over and is still a member is left alone (its transaction holds other
    /// tasks' work). The owner is read now, while the store is here (a caught-up task is
    /// handed over at once); [`Updater::fence_departed_owners`] decides once the group
    /// view has a description asked for after this mark.
    pub(super) fn fence_departed_owner(&mut self, partition: u32) {
        let me = &self.config.transactional_id;
        let owner = self.entries.get(&partition).and_then(|e| other_owner(&e.store, me));
        if let Some(owner) = owner {
            self.owner_checks.insert(
                partition,
                OwnerCheck {
                    owner,
                    marked_at: Instant::now(),
                },
            );
        }
    }

    /// Fences the previous owners [`Updater::fence_departed_owner`] marked, each once a
    /// description asked for after its mark shows the group with members and without it;
    /// a check no description settled within [`CHECK_FOR`] is dropped (a restore held up
    /// by the owner's transaction fences it anyway).
    pub(super) fn fence_departed_owners(&mut self) {
        if self.owner_checks.is_empty() || self.stopping() {
            return;
        }
        let Some(seen) = self.group.latest(CHECK_FOR) else {
            self.owner_checks
                .retain(|_, check| check.marked_at.elapsed() < CHECK_FOR);
            return;
        };
        let members = &seen.group.members;
        let mut departed = Vec::new();
        self.owner_checks.retain(|partition, check| {
            if seen.at <= check.marked_at || members.is_empty() {
                return check.marked_at.elapsed() < CHECK_FOR;
            }
            if !members.iter().any(|m| m.client_id == check.owner) {
                departed.push((*partition, check.owner.clone()));
            }
            false
        });
        for (partition, owner) in departed {
            if let Some(Entry {
                role: Role::Active { fenced_at, .. },
                ..
            }) = self.entries.get_mut(&partition)
            {
                *fenced_at = Some(Instant::now());
            }
            self.fence(partition, &owner, "it left the group");
        }
    }

    /// The previous owner of an active task whose restore is held up, unless it is this
    /// replica or was fenced for it a moment ago.
    pub(super) fn previous_owner_to_fence(&mut self, partition: u32) -> Option<String> {
        let entry = self.entries.get_mut(&partition)?;
        let Role::Active { fenced_at, .. } = &mut entry.role else {
            return None;
        };
        if fenced_at.is_some_and(|at| at.elapsed() < FENCE_AGAIN_AFTER) {
            return None;
        }
        *fenced_at = Some(Instant::now());
        other_owner(&entry.store, &self.config.transactional_id)
    }

    /// Aborts whatever transaction `owner` left open: a producer with its transactional
    /// id is initialised (which fences any producer of that id still alive) and dropped.
    pub(super) fn fence(&self, partition: u32, owner: &str, why: &str) {
        if self.stopping() {
            return;
        }
        info!(partition, owner, why, "fencing the task's previous owner");
        let _call = activity::enter("fence_previous_owner");
        // It only initialises (it sends no records), so its linger does not matter.
        let linger_ms = 0;
        let created =
            client::transactional_producer(&self.config.kafka, owner, self.config.transaction_timeout_ms, linger_ms)
                .create::<BaseProducer>();
        match created.and_then(|producer| producer.init_transactions(CALL_TIMEOUT)) {
            Ok(()) => info!(partition, owner, "previous owner fenced"),
            Err(error) => warn!(partition, owner, %error, "cannot fence the previous owner"),
        }
    }
}

/// The owner the store's changelog names, unless it is `me` (or none can be read).
fn other_owner(store: &RocksStore, me: &str) -> Option<String> {
    store.owner().ok().flatten().filter(|owner| owner != me)
}
