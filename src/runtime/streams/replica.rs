//! The replica's stream threads, as Kafka Streams' `KafkaStreams` client runs its
//! `num.stream.threads`: each thread is a member of the application's group with its own
//! consumer, transactional producer, state updater and tasks, and the group spreads the
//! tasks over every thread of every replica. The threads share the replica's id (one
//! transactional id each, `<application>-<replica>-stream-thread-<n>`), its state
//! directory (a store is open in one thread at a time: `rocks_store`'s directory lock) and
//! its block cache.
//!
//! Invariant: the replica runs all of its threads or stops them all. A thread that stops on
//! a fatal error, or panics, stops the others, which commit what they processed and leave
//! the group, so other replicas take every task over (Kafka Streams' SHUTDOWN_CLIENT); a
//! retriable failure stays within the thread that met it. The replica's topic watch runs
//! beside them and stops them the same way when a topic no longer fits the topology.

use super::error::StreamsError;
use super::recovery::ThreadState;
use super::stream_thread::{self, thread_name};
use super::thread_metrics::{set_share, Shared};
use super::topic_watch;
use crate::config::{KafkaConfig, ProcessorConfig};
use crate::runtime::rocks_store::StoreResources;
use crate::shutdown::{self, Shutdown};
use crate::topology::codec::RawRecord;
use crate::topology::definition::TopologyDefinition;
use crate::topology::output::Routed;
use crate::topology::processor::Processor;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::{info, warn};

/// How often the replica looks at the outer shutdown while its threads run.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(100);

/// Says, when dropped (also on a panic), that its thread ended.
struct Ended(usize, mpsc::Sender<usize>);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

/// Runs `cfg.num_stream_threads` stream threads, each with a processor from
/// `new_processor`, until `shutdown` or until one of them fails; blocking. Returns the first
/// thread's error, if any.
pub fn run<P>(
    kafka: KafkaConfig,
    mut cfg: ProcessorConfig,
    def: TopologyDefinition,
    new_processor: impl Fn() -> P,
    shutdown: Shutdown,
) -> Result<(), StreamsError>
where
    P: Processor<Input = RawRecord> + Send + 'static,
    P::Output: Routed + Send,
{
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| StreamsError::StateDir(format!("{}: {e}", cfg.state_dir.display())))?;
    cfg.replica_id = stream_thread::replica_id(&cfg)?;
    let threads = cfg.num_stream_threads.max(1);
    let resources = StoreResources::new(cfg.block_cache_mb, cfg.write_buffer_mb);
    info!(replica = cfg.replica_id, threads, "replica starting");
    let (stop, stopping) = shutdown::channel();
    let (ended, ends) = mpsc::channel();
    let mut handles: Vec<Option<JoinHandle<Result<(), StreamsError>>>> = Vec::with_capacity(threads + 1);
    let mut first_error: Option<StreamsError> = None;
    // The topic watch is the last "thread": index `threads`.
    // The topic watch's share of the replica's state: it has no state of its own until it
    // stops the replica.
    set_share(Shared::State, threads, ThreadState::Running as i64);
    let name = |thread: usize| {
        if thread == threads {
            "topic-watch".to_string()
        } else {
            thread_name(thread)
        }
    };
    for thread in 0..=threads {
        let (kafka, def, shutdown, ended) = (
            kafka.clone(),
            def.clone(),
            stopping.clone(),
            Ended(thread, ended.clone()),
        );
        let builder = std::thread::Builder::new().name(name(thread));
        let spawned = if thread == threads {
            builder.spawn(move || {
                let _ended = ended;
                topic_watch::run(&kafka, &def, &shutdown)
            })
        } else {
            let (cfg, processor, resources) = (cfg.clone(), new_processor(), resources.clone());
            builder.spawn(move || {
                let _ended = ended;
                stream_thread::run(kafka, cfg, def, processor, resources, thread, shutdown)
            })
        };
        match spawned {
            Ok(handle) => handles.push(Some(handle)),
            Err(e) => {
                first_error = Some(StreamsError::StateDir(format!("cannot start {}: {e}", name(thread))));
                stop.trigger();
                break;
            }
        }
    }
    let mut running = handles.len();
    while running > 0 {
        if shutdown.is_requested() {
            stop.trigger();
        }
        let Ok(thread) = ends.recv_timeout(SHUTDOWN_CHECK) else {
            continue;
        };
        let Some(handle) = handles.get_mut(thread).and_then(Option::take) else {
            continue;
        };
        running -= 1;
        let outcome = handle
            .join()
            .unwrap_or_else(|_| Err(StreamsError::ThreadPanicked { thread: name(thread) }));
        if let Err(error) = outcome {
            if !stopping.is_requested() {
                warn!(thread = name(thread), %error, "a thread of the replica failed; stopping its other threads");
                // `/readyz` and `creditstream_processor_state` say so while the others stop
                // (a stream thread that failed says it itself; the topic watch does not).
                set_share(Shared::State, threads, ThreadState::Failed as i64);
            }
            stop.trigger();
            first_error.get_or_insert(error);
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
