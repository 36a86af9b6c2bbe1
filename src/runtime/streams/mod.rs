//! The processor runtime, split as Kafka Streams splits its own: it adapts Kafka and
//! RocksDB to any [`Processor`](crate::topology::processor::Processor) of the topology
//! layer and knows nothing of what the processor decides.
//!
//! - [`replica`]: the replica's stream threads (`processor.num_stream_threads`), each its
//!   own member of the group; one that fails stops them all.
//! - [`stream_thread`]: the poll loop; joins the group, feeds tasks, drives commits.
//! - [`task_manager`]: the tasks of a stream thread; `task_handover`: how they come and
//!   go (assign, revoke, a restored store starting its task);
//!   [`commit`]: their work committed as one transaction; [`recovery`]: what a failure
//!   of the open work leads to; `housekeeping`: the input watch and store metrics.
//! - [`task`]: one partition: its store, buffered input, positions, and the wait for an
//!   input that lags.
//! - [`assignment`]: leader and follower topics, co-partitioning checks; [`topic_watch`]:
//!   the replica's thread that checks them again while it runs.
//! - [`state_updater`]: restores assigned tasks and keeps standby tasks warm, on a thread
//!   of its own; [`updater_tasks`]: its tasks and how they move forward;
//!   [`updater_standbys`]: the standbys it keeps;
//!   [`owner_fencing`]: fencing a task's departed previous owner; [`group_view`]: the
//!   group's members, described on a thread of its own so no restore waits on a broker.
//! - [`changelog_reader`]: the state updater's consumer of the changelog.
//! - [`standby_placement`]: which replica keeps a standby of which task (pure).
//! - [`input_lag`]: whether a task's input has records it was not given yet;
//!   [`input_wait`]: whether a task holds its records back for its other input;
//! - [`paused_inputs`]: the input partitions paused, and why; [`input_watch`]: inputs that
//!   stand still with records to read; [`stall_clock`]: when a read counts as stalled (pure).
//! - [`record_collector`]: the one producer: outputs, changelog, dead letters, transactions;
//!   [`delivery_tracker`]: its delivery reports; [`bounded_call`]: its transactional calls, with a deadline the stream thread can rely on.
//! - [`commit_policy`]: when to commit (pure).
//! - [`rebalance`]: the consumer's rebalance callbacks.
//! - [`thread_metrics`]: each stream thread's share of the replica's gauges.
//! - [`process_id`]: the replica's unique, restart-stable id.
//! - [`error`]: the runtime's errors, classified retriable or fatal.
//! - [`faults`]: fault injection for the fault tests (off unless asked for).
//!
//! The guarantees, end to end:
//! - Under `exactly_once_v2`, outputs, changelog records and consumed offsets of a commit
//!   go out in one Kafka transaction; a task's store is written only after that
//!   transaction committed, with the changelog offset it corresponds to, so the store is
//!   never ahead of the committed changelog.
//! - Under `at_least_once`, an offset is committed only after every output and changelog
//!   record before it was acknowledged and the store was written.
//! - After any failure, whatever was not committed is forgotten: inputs are re-read from
//!   the committed offsets, and where the broker's outcome is unknown stores are restored
//!   from the committed changelog.
//! - A rebalance touches only the tasks that move; a restore never blocks the poll loop.

pub mod assignment;
pub mod bounded_call;
pub mod changelog_reader;
pub mod commit;
pub mod commit_policy;
pub mod delivery_tracker;
pub mod error;
pub mod faults;
pub mod group_view;
mod housekeeping;
pub mod input_lag;
pub mod input_wait;
pub mod input_watch;
pub mod owner_fencing;
pub mod paused_inputs;
pub mod process_id;
pub mod rebalance;
pub mod record_collector;
pub mod recovery;
pub mod replica;
pub mod stall_clock;
pub mod standby_placement;
pub mod state_updater;
pub mod stream_thread;
pub mod task;
mod task_handover;
pub mod task_manager;
pub mod thread_metrics;
pub mod topic_watch;
pub mod updater_standbys;
pub mod updater_tasks;

pub use error::StreamsError;
pub use replica::run;
