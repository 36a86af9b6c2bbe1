//! The state updater's tasks and how they move forward: a store restored for an active
//! task (handed to the stream thread once its read's position reaches the end the
//! changelog had when the restore began, whatever lies between: records, aborted records,
//! transaction markers; and the task's committed offsets can be read), or kept warm as a
//! standby; each loop reads what the changelog has and applies it.
//! Invariants: a store's checkpoint is written with the records applied, in one batch, so
//! a store is never ahead of what it claims to hold. A read that stands still is looked
//! at: when a transaction holds it (the last stable offset is at the position), an active
//! task's restore fences the task's previous owner; when committed records lie beyond it,
//! that is a defect of the read, reported (log line, metric, alert), never papered over by
//! starting the read again.

use super::changelog_reader::{ChangelogRecord, ReadError};
use super::stall_clock::StallClock;
use super::state_updater::{within_log, Event, Updater, CALL_TIMEOUT, RETRY_AFTER};
use super::thread_metrics::{set_share, Shared};
use crate::metrics::metrics;
use crate::runtime::rocks_store::RocksStore;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Records read from the changelog before they are applied.
const BATCH: usize = 20_000;
/// How long a restore may stand still before it is reported as stuck (a "hanging"
/// transaction, one the broker lost track of, holds the partition).
const STUCK_AFTER: Duration = Duration::from_secs(30);
/// How long a read may stand still below the log's end before it is looked at.
const HELD_UP_AFTER: Duration = Duration::from_millis(500);
/// How often a read that stands still is looked at again.
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(2);
/// How long committed records must lie beyond a read that stands still before it is
/// reported as stalled (a busy fetcher can lag a moment; a stopped one never moves).
const READ_STALLED_AFTER: Duration = Duration::from_secs(5);

/// A store the updater works on.
pub(super) struct Entry {
    pub(super) store: RocksStore,
    /// The next changelog offset to apply.
    pub(super) position: i64,
    pub(super) role: Role,
    pub(super) batch: Vec<ChangelogRecord>,
    /// When the read last moved forward, and when a read standing still was last looked at.
    pub(super) progress_at: Instant,
    pub(super) looked_at: Option<Instant>,
    /// Since when committed records lie beyond the position (see `stall_clock`).
    stall: StallClock,
}

impl Entry {
    pub(super) fn new(store: RocksStore, position: i64, role: Role) -> Self {
        Self {
            store,
            position,
            role,
            batch: Vec::new(),
            progress_at: Instant::now(),
            looked_at: None,
            stall: StallClock::new(position, Instant::now()),
        }
    }

    /// Whether the read stood still long enough to be looked at (again).
    fn to_look_at(&self) -> bool {
        self.progress_at.elapsed() >= HELD_UP_AFTER && self.looked_at.is_none_or(|at| at.elapsed() >= LOOK_AGAIN_AFTER)
    }
}

/// Why a read stands still.
enum StandingStill {
    /// Committed records lie beyond it (up to `stable`): the reader does not fetch them.
    ReadStalled { stable: i64 },
    /// A transaction still open holds the partition's last stable offset at the position.
    HeldByTransaction,
}

pub(super) enum Role {
    /// Restoring for an active task: handed over once `position` reaches `target`.
    Active {
        ticket: u64,
        target: i64,
        started: Instant,
        applied: u64,
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
        match self.reader.poll(batch, Duration::from_millis(50), &mut read) {
            Ok(_) => {}
            Err(ReadError::OutOfRange) => self.out_of_range = true,
            Err(error) => {
                warn!(%error, "changelog read failed; retrying");
                std::thread::sleep(RETRY_AFTER);
                return;
            }
        }
        if self.out_of_range {
            self.read_again_outside_the_log();
        }
        for (partition, records) in read {
            if let Some(entry) = self.entries.get_mut(&partition) {
                entry.batch.extend(records);
            }
        }
        let positions = self.reader.positions();
        let mut caught_up = Vec::new();
        let mut failed = Vec::new();
        let mut standing_still = Vec::new();
        let mut held_up_restores = Vec::new();
        for (&partition, entry) in &mut self.entries {
            let position = positions
                .get(&partition)
                .copied()
                .unwrap_or(entry.position)
                .max(entry.position);
            if position > entry.position || !entry.batch.is_empty() {
                let applied = entry.batch.len() as u64;
                if let Err(error) = entry.store.apply_restored(&entry.batch, position) {
                    failed.push((partition, error));
                    continue;
                }
                entry.batch.clear();
                entry.position = position;
                entry.progress_at = Instant::now();
                entry.stall.at(position, entry.progress_at);
                self.applied_since += applied;
                if let Role::Active { applied: a, .. } = &mut entry.role {
                    *a += applied;
                }
            }
            let stuck_for = entry.progress_at.elapsed();
            match &mut entry.role {
                Role::Active { target, .. } if entry.position >= *target => caught_up.push(partition),
                Role::Active {
                    reported: false,
                    target,
                    ..
                } if stuck_for >= STUCK_AFTER => {
                    tracing::error!(
                        partition,
                        at = entry.position,
                        end = *target,
                        topic = self.config.changelog,
                        "restore stuck: its read has not reached the changelog's end for 30 s; when the \
                         partition's last stable offset stands at the position, a transaction no producer will \
                         end holds it (find it with `kafka-transactions.sh find-hanging`, abort it with \
                         `kafka-transactions.sh abort`); otherwise see the stalled-read warnings"
                    );
                    if let Role::Active { reported, .. } = &mut entry.role {
                        *reported = true;
                    }
                }
                _ => {}
            }
            if entry.to_look_at() && !caught_up.contains(&partition) {
                entry.looked_at = Some(Instant::now());
                standing_still.push((partition, entry.position, matches!(entry.role, Role::Active { .. })));
            }
        }
        for (partition, error) in failed {
            self.close(partition);
            self.fail(partition, error.into());
        }
        // A broker that cannot answer is asked once a round: the partitions after the first
        // one that failed are looked at again with it (after `LOOK_AGAIN_AFTER`), so these
        // checks wait at most one call's timeout a round, not one per partition. The next
        // round starts after the partition that failed.
        self.ask_after_unanswered(&mut standing_still, |&(partition, ..)| partition);
        let mut unanswered = false;
        for (partition, position, active) in standing_still {
            let why = if unanswered {
                None
            } else {
                self.why_standing_still(partition, position)
            };
            if why.is_none() && !unanswered {
                self.unanswered = Some(partition);
            }
            unanswered |= why.is_none();
            let Some(entry) = self.entries.get_mut(&partition) else {
                continue;
            };
            match why {
                Some(StandingStill::ReadStalled { stable }) => {
                    if let Some(behind) = entry.stall.stalled(stable, Instant::now(), READ_STALLED_AFTER) {
                        warn!(
                            partition,
                            position,
                            stable,
                            stood_still_ms = entry.progress_at.elapsed().as_millis() as u64,
                            behind_ms = behind.as_millis() as u64,
                            topic = self.config.changelog,
                            "changelog read stalled: committed records lie beyond its position but none arrive"
                        );
                        metrics().changelog_read_stalls.inc();
                    }
                }
                Some(StandingStill::HeldByTransaction) => {
                    entry.stall.stable(position, Instant::now());
                    if active {
                        held_up_restores.push(partition);
                    }
                }
                None => {}
            }
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

    /// Why the read of `partition`, standing at `position` below the log's end, does not
    /// move: the last stable offset tells (`None` if the broker cannot say now).
    fn why_standing_still(&self, partition: u32, position: i64) -> Option<StandingStill> {
        if self.stopping() {
            return None;
        }
        let stable = match self.reader.stable_end(partition, CALL_TIMEOUT) {
            Ok(stable) => stable,
            Err(error) => {
                warn!(partition, %error, "cannot read the changelog's last stable offset");
                return None;
            }
        };
        Some(if stable > position {
            StandingStill::ReadStalled { stable }
        } else {
            StandingStill::HeldByTransaction
        })
    }

    pub(super) fn hand_over(&mut self, partition: u32) {
        let Some(entry) = self.entries.remove(&partition) else {
            return;
        };
        self.stop_reading(partition);
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
            at: Instant::now(),
        });
    }

    pub(super) fn report(&mut self) {
        if self.rate_since.elapsed() < Duration::from_secs(1) {
            return;
        }
        let m = metrics();
        let thread = self.config.thread;
        let per_second = self.applied_since as f64 / self.rate_since.elapsed().as_secs_f64();
        set_share(Shared::RestoreRate, thread, per_second as i64);
        self.applied_since = 0;
        self.rate_since = Instant::now();
        let restoring = self
            .entries
            .values()
            .filter(|e| matches!(e.role, Role::Active { .. }))
            .count();
        set_share(Shared::RestoringTasks, thread, (restoring + self.parked.len()) as i64);
        set_share(Shared::StandbyTasks, thread, (self.entries.len() - restoring) as i64);
        // Only this thread's standbys: another stream thread's are its own to report.
        let standbys: BTreeSet<u32> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.role, Role::Standby))
            .map(|(p, _)| *p)
            .collect();
        for gone in self.lag_reported.difference(&standbys) {
            let _ = m.standby_lag.remove_label_values(&[&gone.to_string()]);
        }
        for (partition, entry) in &self.entries {
            if matches!(entry.role, Role::Standby) {
                let end = self.reader.cached_end(*partition).unwrap_or(entry.position);
                m.standby_lag
                    .with_label_values(&[&partition.to_string()])
                    .set((end - entry.position).max(0));
            }
        }
        self.lag_reported = standbys;
    }
}

impl Updater {
    /// Orders `items` (ascending by partition) to start after the partition whose call went
    /// unanswered last; that one comes last.
    fn ask_after_unanswered<T>(&self, items: &mut [T], partition: impl Fn(&T) -> u32) {
        if let Some(last) = self.unanswered {
            let first_after = items.partition_point(|item| partition(item) <= last);
            items.rotate_left(first_after);
        }
    }
}

impl Updater {
    /// Opens again every partition whose position lies outside its log (records were deleted
    /// under the read, or the log's end fell below it). Its store's checkpoint is that
    /// position, so the open wipes it and reads from the changelog's start, as Kafka Streams
    /// closes a corrupted task and restores it from scratch: the store then holds what the
    /// changelog holds, as a restore on any other replica would. A partition whose offsets
    /// cannot be read now is looked at again next round.
    fn read_again_outside_the_log(&mut self) {
        self.out_of_range = false;
        let mut partitions: Vec<u32> = self.entries.keys().copied().collect();
        self.ask_after_unanswered(&mut partitions, |&p| p);
        for partition in partitions {
            if self.stopping() {
                return;
            }
            let (low, high) = match self.reader.watermarks(partition, CALL_TIMEOUT) {
                Ok(marks) => marks,
                Err(error) => {
                    // The others are looked at next round too: a broker that cannot answer
                    // one partition now would make each of them wait out the timeout.
                    warn!(partition, %error, "cannot read the changelog's offsets; looking again");
                    self.out_of_range = true;
                    self.unanswered = Some(partition);
                    break;
                }
            };
            let inside = self
                .entries
                .get(&partition)
                .is_some_and(|e| within_log(e.position, low, high));
            if inside {
                continue;
            }
            let Some(entry) = self.entries.remove(&partition) else {
                continue;
            };
            warn!(
                partition,
                position = entry.position,
                start = low,
                end = high,
                "the read's position lies outside the changelog (records deleted under it?); wiping the store \
                 and restoring it from the changelog's start"
            );
            self.stop_reading(partition);
            let ticket = match entry.role {
                Role::Active { ticket, .. } => Some(ticket),
                Role::Standby => None,
            };
            self.defer(partition, ticket, Some(entry.store));
        }
    }
}
