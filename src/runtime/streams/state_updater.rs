//! The state updater, as Kafka Streams' `DefaultStateUpdater`: a thread of its own that
//! restores the stores of newly assigned tasks and keeps standby copies of other
//! replicas' stores warm. The stream thread never waits for a restore: it keeps polling,
//! so the group sees it alive, and its other tasks keep deciding.
//!
//! Invariants:
//! - Only this thread opens a store. It hands a store to the stream thread once the store
//!   holds the committed changelog up to the end the partition had when the restore began,
//!   and gets it back when the task closes; a store is used by one side at a time.
//! - A standby never writes to Kafka: it applies the committed changelog and checkpoints
//!   what it applied, so promoting it costs only the records it has not read yet.
//! - A restore that cannot progress (the broker is away, a transaction is still open)
//!   waits; no timer fails the replica. When it is held up by a transaction the task's
//!   previous owner left open (it was killed, or froze), that owner's transactional id
//!   is fenced, which aborts the transaction at once instead of after its timeout.

use super::changelog_reader::ChangelogReader;
use super::error::StreamsError;
use super::faults::Faults;
use super::group_view::GroupView;
use super::owner_fencing::OwnerCheck;
use super::thread_metrics::{set_share, Shared};
use super::updater_tasks::{Entry, Role};
use crate::config::KafkaConfig;
use crate::metrics::metrics;
use crate::runtime::client;
use crate::runtime::rocks_store::{RocksStore, StoreResources};
use rdkafka::consumer::BaseConsumer;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Longest a broker call of the state updater may block.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often standby placement is read again from the group view.
const PLACEMENT_EVERY: Duration = Duration::from_secs(2);
/// How long a request that met a broker error waits before it is tried again.
pub(super) const RETRY_AFTER: Duration = Duration::from_millis(500);

/// What the stream thread asks of the state updater.
pub enum Command {
    /// Hand over the store of `partition` for an active task, caught up. `store` is the
    /// task's own store when it is restored again after a failure (from its checkpoint).
    Restore {
        partition: u32,
        ticket: u64,
        store: Option<RocksStore>,
    },
    /// The task of `partition` was closed here (revoked, or restoring when revoked); its
    /// store, if the stream thread held it, comes back. Kept as a standby if placed here.
    Release { partition: u32, store: Option<RocksStore> },
    /// This replica's member id and active partitions, after every rebalance.
    Membership {
        member_id: Option<String>,
        active: BTreeSet<u32>,
    },
}

/// What the state updater reports back.
pub enum Event {
    Restored {
        partition: u32,
        ticket: u64,
        store: RocksStore,
        /// When the store was handed over (the stream thread logs how long it took it up).
        at: Instant,
    },
    /// A store could not be opened or written: fatal for the replica.
    Failed { partition: u32, error: StreamsError },
    /// The state updater's thread is gone (it panicked): no restore or standby can go on.
    Stopped,
}

/// Everything the state updater needs to know to open and place stores.
pub struct UpdaterConfig {
    pub kafka: KafkaConfig,
    pub changelog: String,
    /// Where partition p's store lives: `<root>/<p>`.
    pub store_root: PathBuf,
    pub resources: StoreResources,
    /// `num_standby_replicas`: standby copies per stateful task.
    pub standby_copies: usize,
    pub group_id: String,
    /// The topic whose partitions the group assigns for the stateful sub-topology.
    pub leader_topic: String,
    /// This replica's transactional id: a task's previous owner is fenced only if it is
    /// another replica.
    pub transactional_id: String,
    /// The input topics of the stateful sub-topology: a restored task is handed over once
    /// their committed offsets are stable too (no transaction of a previous owner holds them).
    pub inputs: Vec<String>,
    pub transaction_timeout_ms: u64,
    /// Which stream thread of the replica this updater serves (names, metrics' share).
    pub thread: usize,
}

/// The stream thread's side: commands go in, events come out; dropping it stops the thread
/// once the broker call it is in returns (it makes no further call once asked to stop).
pub struct StateUpdater {
    commands: Option<Sender<Command>>,
    stop: Arc<AtomicBool>,
    events: Receiver<Event>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StateUpdater {
    pub fn start(config: UpdaterConfig) -> Result<Self, StreamsError> {
        let reader = ChangelogReader::new(&config.kafka, &config.changelog)?;
        let offsets: BaseConsumer = client::group_reader(&config.kafka, &config.group_id).create()?;
        let group = GroupView::start(&config.kafka, &config.group_id, format!("group-view-{}", config.thread))?;
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let updater = Updater::new(config, reader, offsets, group, command_rx, event_tx, stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("state-updater-{}", updater.config.thread))
            .spawn(move || updater.run())
            .map_err(|e| StreamsError::StateDir(format!("cannot start the state updater: {e}")))?;
        Ok(Self {
            commands: Some(commands),
            stop,
            events,
            thread: Some(thread),
        })
    }

    pub fn send(&self, command: Command) {
        if let Some(commands) = &self.commands {
            // Fails only once the thread is gone, which `next_event` reports.
            let _ = commands.send(command);
        }
    }

    /// The next event, without waiting; [`Event::Stopped`] once the thread is gone.
    pub fn next_event(&self) -> Option<Event> {
        match self.events.try_recv() {
            Ok(event) => Some(event),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Event::Stopped),
        }
    }
}

impl Drop for StateUpdater {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A request that met a broker error, tried again after [`RETRY_AFTER`].
pub(super) struct Deferred {
    pub(super) partition: u32,
    ticket: Option<u64>,
    store: Option<RocksStore>,
    at: Instant,
}

pub(super) struct Updater {
    pub(super) config: UpdaterConfig,
    pub(super) reader: ChangelogReader,
    /// Reads the application group's committed offsets (see [`Updater::offsets_stable`]).
    pub(super) offsets: BaseConsumer,
    /// The group's members, described on a thread of its own (see [`GroupView`]).
    pub(super) group: GroupView,
    /// When this replica's membership last changed: standby placement waits for a
    /// description asked for after it (a fencing check, for one asked after its mark).
    pub(super) membership_at: Instant,
    /// Restoring tasks whose previous owner is fenced if the group view says it left.
    pub(super) owner_checks: BTreeMap<u32, OwnerCheck>,
    pub(super) commands: Receiver<Command>,
    pub(super) events: Sender<Event>,
    pub(super) entries: BTreeMap<u32, Entry>,
    /// Partitions whose store the stream thread holds.
    pub(super) lent: BTreeSet<u32>,
    /// Restores asked for while the store was still lent, by ticket.
    pub(super) parked: BTreeMap<u32, u64>,
    pub(super) deferred: Vec<Deferred>,
    pub(super) member_id: Option<String>,
    pub(super) active: BTreeSet<u32>,
    pub(super) standby_set: BTreeSet<u32>,
    pub(super) placed_at: Option<Instant>,
    pub(super) applied_since: u64,
    pub(super) rate_since: Instant,
    /// A read fell outside its changelog partition's log; which one is looked up.
    pub(super) out_of_range: bool,
    /// The partition whose broker call went unanswered last: the next round asks the
    /// partitions after it first, so one that keeps failing does not starve the others.
    pub(super) unanswered: Option<u32>,
    /// Partitions whose standby lag this updater reports.
    pub(super) lag_reported: BTreeSet<u32>,
    pub(super) faults: Faults,
    /// Set when the stream thread lets go of the updater: no further broker call is made.
    stop: Arc<AtomicBool>,
}

impl Updater {
    fn new(
        config: UpdaterConfig,
        reader: ChangelogReader,
        offsets: BaseConsumer,
        group: GroupView,
        commands: Receiver<Command>,
        events: Sender<Event>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            config,
            reader,
            offsets,
            group,
            membership_at: Instant::now(),
            owner_checks: BTreeMap::new(),
            commands,
            events,
            entries: BTreeMap::new(),
            lent: BTreeSet::new(),
            parked: BTreeMap::new(),
            deferred: Vec::new(),
            member_id: None,
            active: BTreeSet::new(),
            standby_set: BTreeSet::new(),
            placed_at: None,
            applied_since: 0,
            rate_since: Instant::now(),
            out_of_range: false,
            unanswered: None,
            lag_reported: BTreeSet::new(),
            faults: Faults::from_env(),
            stop,
        }
    }

    /// Whether the updater is to stop. Every step that calls the broker asks this first and
    /// does nothing once stopping (a store it was given is closed), so a stop waits for
    /// the one call under way, not for a round of them: a broker that cannot answer makes
    /// each call wait out [`CALL_TIMEOUT`], and a round makes one per task.
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(mut self) {
        while !self.stopping() {
            let wait = if self.entries.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            match self.commands.recv_timeout(wait) {
                Ok(command) => {
                    self.handle(command);
                    while let Ok(command) = self.commands.try_recv() {
                        self.handle(command);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.retry_deferred();
            self.fence_departed_owners();
            if self.placed_at.is_none_or(|at| at.elapsed() >= PLACEMENT_EVERY) {
                self.place_standbys();
            }
            if !self.entries.is_empty() {
                self.read_and_apply();
            }
            self.report();
        }
        for shared in [Shared::RestoringTasks, Shared::StandbyTasks, Shared::RestoreRate] {
            set_share(shared, self.config.thread, 0);
        }
        for partition in &self.lag_reported {
            let _ = metrics().standby_lag.remove_label_values(&[&partition.to_string()]);
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Restore {
                partition,
                ticket,
                store,
            } => self.restore(partition, ticket, store),
            Command::Release { partition, store } => self.release(partition, store),
            Command::Membership { member_id, active } => {
                self.member_id = member_id;
                self.active = active;
                self.placed_at = None;
                self.membership_at = Instant::now();
                self.group.refresh();
            }
        }
    }

    pub(super) fn fail(&self, partition: u32, error: StreamsError) {
        let _ = self.events.send(Event::Failed { partition, error });
    }

    fn restore(&mut self, partition: u32, ticket: u64, store: Option<RocksStore>) {
        if self.faults.panic_on_restore() {
            panic!("injected fault: the state updater panics on the restore of partition {partition}");
        }
        if self.stopping() {
            return;
        }
        if store.is_some() {
            self.lent.remove(&partition);
        } else if self.lent.contains(&partition) {
            // The store is still with the stream thread (a stale hand-over on its way back).
            self.parked.insert(partition, ticket);
            return;
        }
        self.parked.remove(&partition);
        if let Some(entry) = self.entries.get_mut(&partition) {
            match self.reader.watermarks(partition, CALL_TIMEOUT) {
                Ok((_, high)) => {
                    entry.role = Role::active(ticket, high);
                    info!(
                        partition,
                        from = entry.position,
                        to = high,
                        "promoting the standby task"
                    );
                    self.fence_departed_owner(partition);
                }
                Err(error) => {
                    warn!(partition, %error, "cannot read the changelog's end; retrying");
                    self.defer(partition, Some(ticket), None);
                }
            }
            return;
        }
        self.open(partition, Some(ticket), store);
    }

    fn release(&mut self, partition: u32, store: Option<RocksStore>) {
        self.deferred.retain(|d| d.partition != partition || d.ticket.is_none());
        match store {
            Some(store) => {
                self.lent.remove(&partition);
                if let Some(ticket) = self.parked.remove(&partition) {
                    self.restore(partition, ticket, Some(store));
                } else if self.standby_set.contains(&partition) {
                    self.open(partition, None, Some(store));
                }
            }
            None => {
                self.parked.remove(&partition);
                let keep = self.standby_set.contains(&partition);
                match self.entries.get_mut(&partition) {
                    Some(entry) if keep => entry.role = Role::Standby,
                    Some(_) => self.close(partition),
                    None => {}
                }
            }
        }
    }

    pub(super) fn defer(&mut self, partition: u32, ticket: Option<u64>, store: Option<RocksStore>) {
        self.deferred.push(Deferred {
            partition,
            ticket,
            store,
            at: Instant::now() + RETRY_AFTER,
        });
    }

    fn retry_deferred(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| d.at <= now);
        self.deferred = later;
        for d in due {
            match d.ticket {
                Some(ticket) => self.restore(d.partition, ticket, d.store),
                None if self.standby_set.contains(&d.partition) && !self.entries.contains_key(&d.partition) => {
                    self.open(d.partition, None, d.store)
                }
                None => {}
            }
        }
    }

    /// Opens the store of `partition` (or takes `store`), checks its checkpoint against the
    /// changelog, and starts reading it: for an active task when `ticket` is given, else as
    /// a standby.
    pub(super) fn open(&mut self, partition: u32, ticket: Option<u64>, store: Option<RocksStore>) {
        if self.stopping() {
            return;
        }
        let (low, high) = match self.reader.watermarks(partition, CALL_TIMEOUT) {
            Ok(marks) => marks,
            Err(error) => {
                warn!(partition, %error, "cannot read the changelog's offsets; retrying");
                self.defer(partition, ticket, store);
                return;
            }
        };
        let path = self.config.store_root.join(partition.to_string());
        let opened = match store {
            Some(store) => Ok(store),
            None => match RocksStore::try_open(&path, &self.config.resources) {
                Ok(Some(store)) => Ok(store),
                Ok(None) => {
                    // Another stream thread of this replica still has it (a standby it
                    // drops once it sees the task here, or a task it hands over).
                    debug!(partition, "the store is open in another stream thread; waiting");
                    self.defer(partition, ticket, None);
                    return;
                }
                Err(error) => Err(error),
            },
        };
        let (store, position) = match opened.and_then(|store| checked(store, low, high, &self.config.resources)) {
            Ok(opened) => opened,
            Err(error) => return self.fail(partition, error.into()),
        };
        if let Err(error) = self.reader.add(partition, position) {
            warn!(partition, %error, "cannot read the changelog; retrying");
            self.defer(partition, ticket, Some(store));
            return;
        }
        let role = match ticket {
            Some(ticket) => Role::active(ticket, high),
            None => Role::Standby,
        };
        self.entries.insert(partition, Entry::new(store, position, role));
        if ticket.is_some() {
            self.fence_departed_owner(partition);
        }
    }

    pub(super) fn close(&mut self, partition: u32) {
        if self.entries.remove(&partition).is_some() {
            self.stop_reading(partition);
        }
    }

    pub(super) fn stop_reading(&mut self, partition: u32) {
        if let Err(error) = self.reader.remove(partition) {
            warn!(partition, %error, "cannot stop reading the changelog partition");
        }
    }
}

/// Whether a read at `offset` lies within a log that starts at `low` and ends at `high`.
pub(super) fn within_log(offset: i64, low: i64, high: i64) -> bool {
    (low..=high).contains(&offset)
}

/// The store and the offset to read from: its checkpoint, or the changelog's start. Local
/// state the changelog cannot vouch for (a checkpoint outside its offsets) is wiped.
fn checked(
    store: RocksStore,
    low: i64,
    high: i64,
    resources: &StoreResources,
) -> Result<(RocksStore, i64), crate::topology::store::StoreError> {
    match store.checkpoint()? {
        Some(next) if within_log(next, low, high) => Ok((store, next)),
        None => Ok((store, low)),
        Some(next) => {
            warn!(
                checkpoint = next,
                low, high, "local state does not match the changelog; wiping it"
            );
            Ok((store.wipe(resources)?, low))
        }
    }
}
