//! The measured window of a throughput repetition: it opens at the first decision visible
//! once the system's consumer group is stable with a member per stream thread, each given
//! partitions, and closes at the last decision. The system's counters (commits, commit
//! phases, CPU, the machine's busy time) are read at both ends.
//!
//! Invariant: the same rule opens every system's window, so a stream thread's late join,
//! and the rebalance it causes, is never inside it.

use crate::children::{self, Children, Usage};
use crate::group_settle;
use crate::options::System;
use crate::probe;
use crate::run::{RunSpec, RUN_TIMEOUT};
use crate::systems::Started;
use crate::watcher::Watcher;
use creditstream::config::Config;
use creditstream::topology::definition::TopologyDefinition;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A consumer group and the members it has once every stream thread of every replica
/// joined.
pub struct Group {
    pub id: String,
    pub members: usize,
}

impl Group {
    /// The group `spec.system` runs under.
    pub fn of(config: &Config, spec: &RunSpec, def: &TopologyDefinition) -> Self {
        let threads = spec
            .stream_threads
            .unwrap_or(config.processor.num_stream_threads as u32);
        let (id, threads) = match spec.system {
            System::Creditstream => (def.application_id.clone(), threads),
            System::Passthrough => (crate::passthrough::application_id(&def.application_id), threads),
            System::KafkaStreams => (def.application_id.clone(), spec.peer_threads),
        };
        Self {
            id,
            members: (threads * spec.replicas) as usize,
        }
    }

    /// Waits until the group is stable with all its members, each given partitions.
    pub fn settle(&self, config: &Config, children: &mut Children, since: Instant) -> Result<(), String> {
        group_settle::wait(&config.kafka, &self.id, self.members, children, since, RUN_TIMEOUT)
    }
}

/// What one window measured.
pub struct Window {
    /// When the first decision became visible.
    pub first: Instant,
    /// When the window opened, and how many decisions were visible then (they are not
    /// counted in it).
    pub start: Instant,
    pub counted_from: u64,
    /// Whether it opened after the group settled (`false`: the backlog was decided before
    /// that, and it opened at the first decision).
    pub settled: bool,
    pub last: Instant,
    /// Every replica's commit counter summed, at the start and at the end.
    pub commits: (Result<u64, String>, Result<u64, String>),
    /// The replicas' CPU and peak RSS, at the start and at the end.
    pub usage: (Option<Usage>, Option<Usage>),
    pub machine_cores_busy: Option<f64>,
    /// creditstream only: the mean of each commit phase, ms, and the share of the window
    /// its first replica spent committing.
    pub commit_phases_ms: Vec<(String, f64)>,
    pub commit_share: Option<f64>,
}

impl Window {
    pub fn seconds(&self) -> f64 {
        self.last.duration_since(self.start).as_secs_f64().max(1e-3)
    }

    /// Seconds from the first decision to the last: the window of older reports.
    pub fn seconds_from_first(&self) -> f64 {
        self.last.duration_since(self.first).as_secs_f64().max(1e-3)
    }
}

/// Why no window was measured.
pub enum Missed {
    /// The group never settled; the message says how it stood.
    Unsettled(String),
    /// A replica exited, the watcher ended or time ran out before the last decision.
    NotDecided,
}

/// Measures the window of `spec.orders` decisions seen by `watcher`.
pub fn measure(
    config: &Config,
    spec: &RunSpec,
    group: &Group,
    watcher: &Watcher,
    started: &mut Started,
    since: Instant,
) -> Result<Window, Missed> {
    let children = &mut started.children;
    let (_, first) = wait_for(watcher, 1, children, since).ok_or(Missed::NotDecided)?;
    group.settle(config, children, since).map_err(Missed::Unsettled)?;
    let marked = match watcher.mark_next() {
        Some(next) => Some(wait_for(watcher, next, children, since).ok_or(Missed::NotDecided)?),
        None => None,
    };
    // A window needs decisions after its start: when the backlog was (all but) decided
    // before the group settled, it opens at the first decision instead.
    let (counted_from, start, settled) = match marked {
        Some((n, at)) if n < spec.orders => (n, at, true),
        _ => (1, first, false),
    };
    let c0 = commits(spec.system, &started.probes);
    let p0 = phases(spec.system, &started.probes);
    let u0 = started.children.usage();
    let m0 = children::machine_ticks();
    let (_, last) = wait_for(watcher, spec.orders, &mut started.children, since).ok_or(Missed::NotDecided)?;
    let (c1, u1) = (commits(spec.system, &started.probes), started.children.usage());
    let mut window = Window {
        first,
        start,
        counted_from,
        settled,
        last,
        commits: (c0, c1),
        usage: (u0, u1),
        machine_cores_busy: machine_cores_busy(m0, children::machine_ticks()),
        commit_phases_ms: Vec::new(),
        commit_share: None,
    };
    if let (Some(p0), Some(p1)) = (p0, phases(spec.system, &started.probes)) {
        window.commit_phases_ms = probe::phase_means(&p0, &p1)
            .into_iter()
            .filter(|(name, _)| name.starts_with("commit:"))
            .collect();
        window.commit_share = Some(probe::commit_seconds(&p0, &p1) / window.seconds());
    }
    Ok(window)
}

/// Sum of every replica's commit counter.
fn commits(system: System, probes: &[SocketAddr]) -> Result<u64, String> {
    probes.iter().map(|&addr| probe::commits(system, addr)).sum()
}

/// creditstream's phase histograms on its first replica; `None` for the other systems.
fn phases(system: System, probes: &[SocketAddr]) -> Option<Vec<(&'static str, probe::PhaseTotals)>> {
    (system == System::Creditstream)
        .then(|| probes.first().and_then(|addr| probe::phases(*addr).ok()))
        .flatten()
}

/// Waits for milestone `count` of the watcher: the count it carried and when it became
/// visible; `None` if a replica exited, the watcher ended or time ran out.
fn wait_for(watcher: &Watcher, count: u64, children: &mut Children, since: Instant) -> Option<(u64, Instant)> {
    loop {
        match watcher.reached.recv_timeout(Duration::from_millis(200)) {
            Ok((n, at)) if n >= count => return Some((n, at)),
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if children.any_exited() || since.elapsed() > RUN_TIMEOUT || watcher.handle.is_finished() {
                    return None;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Cores the whole machine kept busy between two looks at /proc/stat (every process).
fn machine_cores_busy(from: Option<(u64, u64, usize)>, to: Option<(u64, u64, usize)>) -> Option<f64> {
    let ((b0, t0, cores), (b1, t1, _)) = (from?, to?);
    let all = t1.checked_sub(t0).filter(|t| *t > 0)?;
    Some(b1.saturating_sub(b0) as f64 / all as f64 * cores as f64)
}
