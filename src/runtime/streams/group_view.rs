//! The application's consumer group as the state updater sees it: a thread of its own
//! describes the group every [`REFRESH_EVERY`] (or at once when asked, after a rebalance)
//! and keeps the latest answer, for standby placement and for fencing a departed owner.
//! Invariant: reading the view never waits on a broker. A description waits on the
//! brokers for at most [`DESCRIBE_WAIT`], and only this thread waits: a broker that froze
//! delays the view by that much, never a restore.

use crate::config::KafkaConfig;
use crate::runtime::group_members::{self, Group, DESCRIBE_WAIT};
use crate::runtime::{activity, client};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::warn;

/// How often the group is described when nobody asks.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// A description and when it was asked for (everything the group did before then is in it).
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub group: Group,
}

/// The handle: the latest description, and a way to ask for a new one. Dropping it stops
/// the thread once the description under way returns.
pub struct GroupView {
    latest: Arc<Mutex<Option<Seen>>>,
    refresh: Sender<()>,
}

impl GroupView {
    /// Starts describing `group` with a client of its own, on a thread named `thread`.
    pub fn start(kafka: &KafkaConfig, group: &str, thread: String) -> Result<Self, KafkaError> {
        let describer: BaseConsumer = client::standalone_consumer(kafka, false).create()?;
        let latest = Arc::new(Mutex::new(None));
        let (refresh, asked) = mpsc::channel::<()>();
        let shared = latest.clone();
        let group = group.to_string();
        let run = move || loop {
            let at = Instant::now();
            let described = {
                let _call = activity::enter("describe_group");
                group_members::describe(&describer, &group, DESCRIBE_WAIT)
            };
            match described {
                Ok(group) => *shared.lock().unwrap_or_else(PoisonError::into_inner) = Some(Seen { at, group }),
                Err(error) => warn!(%error, "cannot describe the group; its last description stands"),
            }
            match asked.recv_timeout(REFRESH_EVERY.saturating_sub(at.elapsed())) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => while asked.try_recv().is_ok() {},
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        std::thread::Builder::new()
            .name(thread)
            .spawn(run)
            .map_err(|_| KafkaError::ClientCreation("cannot start the group view's thread".into()))?;
        Ok(Self { latest, refresh })
    }

    /// The latest description, if one was asked for within `max_age`.
    pub fn latest(&self, max_age: Duration) -> Option<Seen> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.as_ref().filter(|seen| seen.at.elapsed() <= max_age).cloned()
    }

    /// The latest description, if it was asked for after `since`.
    pub fn since(&self, since: Instant) -> Option<Seen> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.as_ref().filter(|seen| seen.at > since).cloned()
    }

    /// Asks for a description now (the group just changed).
    pub fn refresh(&self) {
        // Fails only once the thread is gone; the view then keeps its last description.
        if self.refresh.send(()).is_err() {
            warn!("the group view's thread is gone; standby placement and fencing see no new description");
        }
    }
}
