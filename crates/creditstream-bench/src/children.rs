//! The processes a run starts, and what /proc says about them: CPU seconds (user + sys
//! of the process, all its threads), peak RSS, and the cores it may run on.
//! Invariant: every child is stopped (SIGTERM, then waited for) when its [`Children`] is
//! dropped, so no run leaves a process behind, whatever way it ends.

use serde::{Deserialize, Serialize};
use std::process::{Child, Command};

/// Clock ticks per second of /proc/<pid>/stat's times (USER_HZ; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// One look at a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU seconds so far.
    pub cpu_seconds: f64,
    /// Peak resident set size so far (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// CPU seconds of a process from /proc/<pid>/stat (fields utime and stime).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

fn status_field(pid: u32, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    Some(line[name.len()..].trim().to_string())
}

pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let kb: f64 = status_field(pid, "VmHWM:")?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The machine's CPU time so far, from /proc/stat's first line: (busy ticks, all ticks, cores).
/// Busy is everything but idle and iowait, of every process (the broker's too).
pub fn machine_ticks() -> Option<(u64, u64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let ticks: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let cores = lines.filter(|l| l.starts_with("cpu")).count();
    Some((all.saturating_sub(idle), all, cores))
}

/// The cores a process may run on, as the kernel lists them ("0-1").
pub fn affinity(pid: u32) -> Option<String> {
    status_field(pid, "Cpus_allowed_list:")
}

/// Child processes, stopped when dropped.
pub struct Children(Vec<Child>);

impl Children {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn spawn(&mut self, mut command: Command) -> std::io::Result<()> {
        self.0.push(command.spawn()?);
        Ok(())
    }

    /// Summed CPU seconds and the highest peak RSS of all children; `None` when /proc
    /// could not be read for one of them (it exited).
    pub fn usage(&self) -> Option<Usage> {
        let mut total = Usage::default();
        for child in &self.0 {
            let pid = child.id();
            total.cpu_seconds += cpu_seconds(pid)?;
            total.peak_rss_mib = total.peak_rss_mib.max(peak_rss_mib(pid)?);
        }
        Some(total)
    }

    /// Each child's allowed cores.
    pub fn affinities(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|c| affinity(c.id()).unwrap_or_else(|| "unknown".into()))
            .collect()
    }

    /// Whether any child has already exited (it crashed or refused its arguments).
    pub fn any_exited(&mut self) -> bool {
        self.0.iter_mut().any(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Asks `check` every 100 ms until it answers `Ok`; gives up with its last answer once
    /// a child exited or `timeout` passed since `since`.
    pub fn wait_until(
        &mut self,
        since: std::time::Instant,
        timeout: std::time::Duration,
        mut check: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let not_yet = match check() {
                Ok(()) => return Ok(()),
                Err(not_yet) => not_yet,
            };
            if self.any_exited() || since.elapsed() > timeout {
                return Err(not_yet);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Default for Children {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// What the report says about the machine's cores and how the replicas were placed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cores {
    /// `nproc`: cores this process may use.
    pub nproc: usize,
    /// Whether taskset (util-linux) is installed, for pinning replicas.
    pub taskset: bool,
    /// The bench's own allowed cores (the load generator and watchers run here).
    pub bench_affinity: String,
}

impl Cores {
    pub fn detect() -> Self {
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            taskset: find_on_path("taskset").is_some(),
            bench_affinity: affinity(std::process::id()).unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// An executable named `name` on PATH.
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some_and(|s| s >= 0.0));
        assert!(peak_rss_mib(pid).is_some_and(|m| m > 0.0));
        assert!(affinity(pid).is_some_and(|a| !a.is_empty()));
    }

    #[test]
    fn waits_until_the_check_passes_or_gives_its_last_answer() {
        let mut children = Children::new();
        let start = std::time::Instant::now();
        let mut asked = 0;
        let passed = children.wait_until(start, std::time::Duration::from_secs(10), || {
            asked += 1;
            if asked == 3 {
                Ok(())
            } else {
                Err(format!("asked {asked}"))
            }
        });
        assert_eq!((passed, asked), (Ok(()), 3));
        let mut asked = 0;
        let gave_up = children.wait_until(start, std::time::Duration::ZERO, || {
            asked += 1;
            Err(format!("asked {asked}"))
        });
        assert_eq!(gave_up, Err("asked 1".to_string()));
    }
}
