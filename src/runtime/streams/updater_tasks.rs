//! The state updater's tasks and how they move forward: a store restored for an active
//! task (handed to the stream thread once it holds the committed changelog to the end it
//! had when the restore began, and the task's committed offsets can be read), or kept
//! warm as a standby; each loop reads what the changelog has and applies it.
//! Invariant: a store's checkpoint is written with the records applied, in one batch, so
//! a store is never ahead of what it claims to hold.

use super::changelog_reader::ChangelogRecord;
use super::state_updater::{Event, Updater, RETRY_AFTER};
use crate::metrics::metrics;
use crate::runtime::rocks_store::RocksStore;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Records read from the changelog before they are applied.
const BATCH: usize = 20_000;
/// How long a restore may stand still before it is reported as stuck (a "hanging"
/// transaction, one the broker lost track of, holds the partition).
const STUCK_AFTER: Duration = Duration::from_secs(30);
/// How long a restore may stand still below its target before the previous owner's
/// open transaction is fenced.
const HELD_UP_AFTER: Duration = Duration::from_millis(500);

/// A store the updater works on.
pub(super) struct Entry {
    pub(super) store: RocksStore,
    /// The next changelog offset to apply.
    pub(super) position: i64,
    pub(super) role: Role,
    pub(super) batch: Vec<ChangelogRecord>,
    /// Whether the reader's position for the partition can be taken: not while it may
    /// still be the one it had before the partition was last removed and re-added lower
    /// (until the first record of the new read).
    pub(super) trusted: bool,
}

pub(super) enum Role {
    /// Restoring for an active task: handed over once `position` reaches `target`.
    Active {
        ticket: u64,
        target: i64,
        started: Instant,
        applied: u64,
        /// When the restore last moved forward.
        progress_at: Instant,
        /// When the previous owner was last fenced for this restore.
        fenced_at: Option<Instant>,
        /// Whether the restore was reported as stuck.
        reported: bool,
    },
    Standby,
}

impl Role {
    pub(super) fn active(ticket: u64, target: i64) -> Self {
        let now = Instant::now();
        Role::Active {
            ticket,
            target,
            started: now,
            applied: 0,
            progress_at: now,
            fenced_at: None,
            reported: false,
        }
    }
}

impl Updater {
    /// Reads what the changelog has, applies it to the stores, and hands over every
    /// active task's store that reached its target.
    pub(super) fn read_and_apply(&mut self) {
        let mut read: BTreeMap<u32, Vec<ChangelogRecord>> = BTreeMap::new();
        let batch = match self.faults.restore_rate() {
            Some(rate) => {
                std::thread::sleep(Duration::from_millis(100));
                (rate as usize / 10).max(1)
            }
            None => BATCH,
        };
        if let Err(error) = self.reader.poll(batch, Duration::from_millis(50), &mut read) {
            warn!(%error, "changelog read failed; retrying");
            std::thread::sleep(RETRY_AFTER);
            return;
        }
        for (partition, records) in read {
            if let Some(entry) = self.entries.get_mut(&partition) {
                entry.trusted = true;
                entry.batch.extend(records);
            }
        }
        let positions = self.reader.positions();
        let mut caught_up = Vec::new();
        let mut failed = Vec::new();
        let mut held_up_restores = Vec::new();
        for (&partition, entry) in &mut self.entries {
            let read_to = positions.get(&partition).copied().filter(|_| entry.trusted);
            let position = read_to.unwrap_or(entry.position).max(entry.position);
            if position > entry.position || !entry.batch.is_empty() {
                let applied = entry.batch.len() as u64;
                if let Err(error) = entry.store.apply_restored(&entry.batch, position) {
                    failed.push((partition, error));
                    continue;
                }
                entry.batch.clear();
                entry.position = position;
                self.applied_since += applied;
                if let Role::Active {
                    applied: a,
                    progress_at,
                    ..
                } = &mut entry.role
                {
                    *a += applied;
                    *progress_at = Instant::now();
                }
            }
            match &mut entry.role {
                Role::Active { target, .. } if entry.position >= *target => caught_up.push(partition),
                Role::Active {
                    progress_at,
                    reported: false,
                    target,
                    ..
                } if progress_at.elapsed() >= STUCK_AFTER => {
                    tracing::error!(
                        partition,
                        at = entry.position,
                        end = *target,
                        topic = self.config.changelog,
                        "restore stuck: a transaction that no producer will end holds the changelog partition \
                         (a hanging transaction); find it with `kafka-transactions.sh find-hanging` and abort it \
                         with `kafka-transactions.sh abort`"
                    );
                    if let Role::Active { reported, .. } = &mut entry.role {
                        *reported = true;
                    }
                }
                Role::Active { progress_at, .. } if progress_at.elapsed() >= HELD_UP_AFTER => {
                    held_up_restores.push(partition)
                }
                _ => {}
            }
        }
        for (partition, error) in failed {
            self.close(partition);
            self.fail(partition, error.into());
        }
        for partition in caught_up {
            if self.offsets_stable(partition) {
                self.hand_over(partition);
            } else {
                held_up_restores.push(partition);
            }
        }
        for partition in held_up_restores {
            if let Some(owner) = self.previous_owner_to_fence(partition) {
                self.fence(partition, &owner, "its open transaction holds the restore up");
            }
        }
    }

    pub(super) fn hand_over(&mut self, partition: u32) {
        let Some(entry) = self.entries.remove(&partition) else {
            return;
        };
        self.stop_reading(partition, entry.position);
        let Role::Active {
            ticket,
            started,
            applied,
            ..
        } = entry.role
        else {
            return;
        };
        let elapsed = started.elapsed();
        metrics().restored_records.inc_by(applied);
        metrics().restore_duration.observe(elapsed.as_secs_f64());
        info!(
            partition,
            to = entry.position,
            restored = applied,
            elapsed_ms = elapsed.as_millis() as u64,
            "restored state from the changelog"
        );
        self.lent.insert(partition);
        let _ = self.events.send(Event::Restored {
            partition,
            ticket,
            store: entry.store,
        });
    }

    pub(super) fn report(&mut self) {
        if self.rate_since.elapsed() < Duration::from_secs(1) {
            return;
        }
        let m = metrics();
        let per_second = self.applied_since as f64 / self.rate_since.elapsed().as_secs_f64();
        m.restore_rate.set(per_second as i64);
        self.applied_since = 0;
        self.rate_since = Instant::now();
        let restoring = self
            .entries
            .values()
            .filter(|e| matches!(e.role, Role::Active { .. }))
            .count();
        m.restoring_tasks.set((restoring + self.parked.len()) as i64);
        m.standby_tasks.set((self.entries.len() - restoring) as i64);
        m.standby_lag.reset();
        for (partition, entry) in &self.entries {
            if matches!(entry.role, Role::Standby) {
                let end = self.reader.cached_end(*partition).unwrap_or(entry.position);
                m.standby_lag
                    .with_label_values(&[&partition.to_string()])
                    .set((end - entry.position).max(0));
            }
        }
    }
}
