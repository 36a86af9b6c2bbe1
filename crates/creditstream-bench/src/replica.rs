//! One creditstream replica of the elasticity runs, started, watched and ended on its
//! own: the runs kill one replica with SIGKILL, stop another with SIGTERM and start a
//! fresh one while the rest go on, which [`crate::children::Children`] (all or nothing)
//! does not do. What a replica runs is read from its Prometheus metrics, and when a
//! group of them has settled (every task running once, nothing restoring).
//! Invariant: a replica still running when dropped is stopped (SIGTERM, then waited for).

use crate::children;
use crate::error::BenchError;
use crate::options::BenchOptions;
use crate::probe;
use crate::systems;
use creditstream::config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The credit-check sub-topology's tasks are named `0_<partition>`.
const CREDIT_CHECK_TASK: &str = "0_";
pub const RESTORING: &str = "creditstream_processor_restoring_tasks";
const STANDBY_LAG: &str = "creditstream_processor_standby_lag_records";
/// How long the owners must stay the same to count as settled.
const SETTLE: Duration = Duration::from_secs(2);

pub struct Replica {
    pub name: String,
    child: Option<Child>,
    metrics: SocketAddr,
}

/// One reading of a replica's `/metrics`.
pub struct Metrics(String);

impl Metrics {
    /// The sum of a metric's samples over all its labels, 0 when absent.
    pub fn value(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse::<f64>().ok()
            })
            .sum()
    }

    /// The partitions whose credit-check task runs here (`active_task{task="0_N"} 1`).
    pub fn active(&self) -> BTreeSet<u32> {
        self.0
            .lines()
            .filter(|l| l.starts_with("creditstream_processor_active_task{") && l.ends_with(" 1"))
            .filter_map(|l| l.split("task=\"").nth(1)?.split('"').next())
            .filter_map(|task| task.strip_prefix(CREDIT_CHECK_TASK)?.parse().ok())
            .collect()
    }
}

impl Replica {
    /// `creditstream process` on `state` (created if missing), with `standbys` standby copies.
    pub fn start(
        opts: &BenchOptions,
        config: &Config,
        topology_file: &Path,
        state: &Path,
        name: &str,
        standbys: usize,
    ) -> Result<Self, BenchError> {
        std::fs::create_dir_all(state)?;
        let metrics = systems::free_port()?;
        let mut command = Command::new(&opts.creditstream_bin);
        command.arg("process");
        systems::creditstream_env(&mut command, topology_file, config, state, metrics);
        command
            .env("CREDITSTREAM__PROCESSOR__NUM_STANDBY_REPLICAS", standbys.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(state.with_extension("log"))?);
        Ok(Self {
            name: name.to_string(),
            child: Some(command.spawn()?),
            metrics,
        })
    }

    /// Its metrics now; `None` while it does not answer (starting, gone).
    pub fn metrics(&self) -> Option<Metrics> {
        probe::get(self.metrics, "/metrics").ok().map(Metrics)
    }

    /// Its peak resident set so far (VmHWM), MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        children::peak_rss_mib(self.child.as_ref()?.id())
    }

    /// Whether it has exited (crashed, refused its configuration).
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// SIGKILL: gone at once, with nothing committed or handed over.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and the wait for its graceful end; its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        child.wait().ok()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `poll` every 100 ms until it gives a value, fails, or `timeout` passed.
pub fn waited<T>(
    timeout: Duration,
    what: &str,
    mut poll: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Some(value) = poll()? {
            return Ok(value);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{what}: not within {} s", timeout.as_secs()))
}

pub fn alive(replicas: &mut [&mut Replica]) -> Result<(), String> {
    match replicas.iter_mut().find_map(|r| r.exited().then(|| r.name.clone())) {
        Some(name) => Err(format!("replica {name} exited")),
        None => Ok(()),
    }
}

/// Standby lag (records, summed over a replica's standbys) that still counts as caught up
/// under the steady load, which keeps every standby a few records behind at any instant.
pub const LAG_UNDER_LOAD: f64 = 5_000.0;

/// Waits until every partition runs on exactly one of `replicas`, nothing restores, every
/// replica's standbys lag at most `lag` records, and this held for [`SETTLE`]; the owner
/// of each partition.
pub fn settled(
    replicas: &mut [&mut Replica],
    partitions: u32,
    lag: f64,
    timeout: Duration,
) -> Result<BTreeMap<i32, String>, String> {
    let mut last: Option<(BTreeMap<i32, String>, Instant)> = None;
    waited(timeout, "the tasks settling", || {
        alive(replicas)?;
        let mut owners = BTreeMap::new();
        let mut quiet = true;
        for r in replicas.iter() {
            let Some(m) = r.metrics() else {
                quiet = false;
                continue;
            };
            quiet &= m.value(RESTORING) == 0.0 && m.value(STANDBY_LAG) <= lag;
            for p in m.active() {
                if owners.insert(p as i32, r.name.clone()).is_some() {
                    quiet = false;
                }
            }
        }
        if !quiet || owners.len() != partitions as usize {
            last = None;
            return Ok(None);
        }
        match &last {
            Some((previous, since)) if *previous == owners => Ok((since.elapsed() >= SETTLE).then_some(owners)),
            _ => {
                last = Some((owners, Instant::now()));
                Ok(None)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_credit_check_tasks_and_sums_over_labels() {
        let text = "# HELP creditstream_processor_active_task x\n\
                    creditstream_processor_active_task{task=\"0_1\"} 1\n\
                    creditstream_processor_active_task{task=\"0_4\"} 1\n\
                    creditstream_processor_active_task{task=\"0_5\"} 0\n\
                    creditstream_processor_active_task{task=\"1_2\"} 1\n\
                    creditstream_processor_restoring_tasks 2\n\
                    creditstream_processor_standby_lag_records{partition=\"1\"} 3\n\
                    creditstream_processor_standby_lag_records{partition=\"2\"} 4\n\
                    creditstream_processor_standby_lag_records_other 100\n";
        let m = Metrics(text.into());
        assert_eq!(m.active(), BTreeSet::from([1, 4]));
        assert_eq!(m.value("creditstream_processor_restoring_tasks"), 2.0);
        assert_eq!(m.value("creditstream_processor_standby_tasks"), 0.0);
        assert_eq!(m.value("creditstream_processor_standby_lag_records"), 7.0);
    }
}
