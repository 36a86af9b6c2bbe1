//! The elasticity report (`creditstream-bench elastic`): every repetition's raw figures,
//! failures included, and its Markdown, which docs/benchmarks.md's section between
//! `<!-- elastic:begin -->` and `<!-- elastic:end -->` is made from.

use crate::run::RunResult;
use crate::stats::{self, Spread};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

pub const ELASTIC_FORMAT: &str = "creditstream-bench-elastic/1";

/// The targets.
pub const RESTORE_TARGET_PER_S: f64 = 500_000.0;
pub const FAILOVER_TARGET_MS: f64 = 5_000.0;
pub const UNAFFECTED_PAUSE_TARGET_MS: f64 = 1_000.0;
pub const LARGE_STATE_THROUGHPUT_TARGET: f64 = 0.8;

/// One changelog built for a user count (one replica processes the creates).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildResult {
    pub users: u64,
    pub ok: bool,
    pub error: Option<String>,
    pub seconds: Option<f64>,
}

/// A replica on an empty state dir restores every task from the changelog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreResult {
    pub users: u64,
    pub repetition: u32,
    pub ok: bool,
    pub error: Option<String>,
    /// Changelog records restored (the replica's `restored_records_total`).
    pub restored_records: Option<f64>,
    /// From the first restoring task seen to every task running, s.
    pub restore_s: Option<f64>,
    pub records_per_s: Option<f64>,
    /// From the process start to every task running (group join included), s.
    pub start_to_running_s: Option<f64>,
    /// Peak RSS of the restoring replica (VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Three replicas under a steady order load; one killed (SIGKILL), then a fourth joins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverResult {
    pub users: u64,
    pub standbys: usize,
    pub repetition: u32,
    pub ok: bool,
    pub error: Option<String>,
    pub order_rate: u64,
    /// Partitions the killed replica ran.
    pub moved: Vec<i32>,
    /// Kill to the moment a read_committed reader saw every moved partition decide
    /// again (the slowest of them), ms.
    pub failover_ms: Option<i64>,
    /// Longest stretch without a decision on a partition that did not move, from the
    /// kill until the survivors settled, ms.
    pub unaffected_gap_ms: Option<i64>,
    /// Partitions the joining replica took.
    pub join_moved: Vec<i32>,
    /// Longest stretch without a decision on a partition that stayed put while the
    /// fourth replica joined, ms.
    pub join_unaffected_gap_ms: Option<i64>,
    /// Orders sent and how many were decided twice or never (both must be 0).
    pub orders: i64,
    pub decided_twice: usize,
    pub never_decided: usize,
    /// Highest peak RSS of the replicas, MiB.
    pub peak_rss_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ElasticReport {
    pub format: String,
    pub label: String,
    pub machine: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub repetitions: u32,
    /// The settings the replicas ran with, as the report prints them.
    pub settings: String,
    pub builds: Vec<BuildResult>,
    pub restores: Vec<RestoreResult>,
    pub failovers: Vec<FailoverResult>,
    /// Throughput at each user count (the scaling runs of the main benchmark).
    pub throughput: Vec<RunResult>,
}

impl ElasticReport {
    pub fn correct(&self) -> bool {
        self.builds.iter().all(|b| b.ok)
            && self.restores.iter().all(|r| r.ok)
            && self.failovers.iter().all(|f| f.ok)
            && self.throughput.iter().all(|t| t.ok)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::report::save_json(self, path)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let report: Self = crate::report::load_json(path)?;
        if report.format != ELASTIC_FORMAT {
            return Err(format!("{}: not a {ELASTIC_FORMAT} report", path.display()));
        }
        Ok(report)
    }
}

fn cell(s: Option<Spread>, digits: usize) -> String {
    match s {
        Some(s) => format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits),
        None => "—".into(),
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn spread_of<T>(items: &[&T], f: impl Fn(&T) -> Option<f64>) -> Option<Spread> {
    stats::spread(&items.iter().filter_map(|x| f(x)).collect::<Vec<_>>())
}

/// The report's tables and each target's verdict, in Markdown.
pub fn render(r: &ElasticReport, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Elasticity: restore, failover, membership changes, large state\n\n\
         Run `{}` on {}, from `{source}`; {} repetitions of each configuration, interleaved; medians (min–max) of the \
         repetitions that passed. {}\n",
        r.label, r.machine, r.repetitions, r.settings
    );
    let mut restore_medians = Vec::new();
    if !r.restores.is_empty() {
        out.push_str(
            "| users | passed | restored records | records/s | restore s | start to running s | peak RSS MiB |\n\
             |---|---|---|---|---|---|---|\n",
        );
        let mut users: Vec<u64> = r.restores.iter().map(|x| x.users).collect();
        users.sort_unstable();
        users.dedup();
        for u in users {
            let all: Vec<&RestoreResult> = r.restores.iter().filter(|x| x.users == u).collect();
            let ok: Vec<&RestoreResult> = all.iter().copied().filter(|x| x.ok).collect();
            let rate = spread_of(&ok, |x| x.records_per_s);
            restore_medians.push(rate.map(|s| s.median));
            let _ = writeln!(
                out,
                "| {u} | {}/{} | {} | {} | {} | {} | {} |",
                ok.len(),
                all.len(),
                cell(spread_of(&ok, |x| x.restored_records), 0),
                cell(rate, 0),
                cell(spread_of(&ok, |x| x.restore_s), 1),
                cell(spread_of(&ok, |x| x.start_to_running_s), 1),
                cell(spread_of(&ok, |x| x.peak_rss_mib), 0)
            );
        }
        out.push('\n');
    }
    let mut failover_medians = Vec::new();
    let mut pause_medians = Vec::new();
    if !r.failovers.is_empty() {
        out.push_str(
            "3 replicas under a steady order load; one killed with SIGKILL; then a fourth joins.\n\n\
             | users | standbys | passed | failover ms (kill to every moved partition deciding, read_committed) | \
             longest gap on unmoved partitions, failover, ms | longest gap on unmoved partitions, join, ms |\n\
             |---|---|---|---|---|---|\n",
        );
        let mut configs: Vec<(u64, usize)> = r.failovers.iter().map(|x| (x.users, x.standbys)).collect();
        configs.sort_unstable();
        configs.dedup();
        for (u, s) in configs {
            let all: Vec<&FailoverResult> = r.failovers.iter().filter(|x| x.users == u && x.standbys == s).collect();
            let ok: Vec<&FailoverResult> = all.iter().copied().filter(|x| x.ok).collect();
            let failover = spread_of(&ok, |x| x.failover_ms.map(|v| v as f64));
            let gap = spread_of(&ok, |x| x.unaffected_gap_ms.map(|v| v as f64));
            let join = spread_of(&ok, |x| x.join_unaffected_gap_ms.map(|v| v as f64));
            if s > 0 {
                failover_medians.push(failover.map(|f| f.median));
            }
            pause_medians.extend([gap.map(|g| g.median), join.map(|j| j.median)]);
            let _ = writeln!(
                out,
                "| {u} | {s} | {}/{} | {} | {} | {} |",
                ok.len(),
                all.len(),
                cell(failover, 0),
                cell(gap, 0),
                cell(join, 0)
            );
        }
        out.push('\n');
    }
    let mut large_ratio = None;
    if !r.throughput.is_empty() {
        out.push_str(
            "Throughput at each user count (creditstream, exactly_once_v2, backlog cadence, 1 replica; the users are \
             created first, and the backlog of orders produced once every create was consumed, so the window holds \
             orders alone):\n\n\
             | users | passed | orders/s | CPU s / M orders | peak RSS MiB | Completed orders |\n|---|---|---|---|---|---|\n",
        );
        let mut users: Vec<u64> = r.throughput.iter().map(|x| x.users).collect();
        users.sort_unstable();
        users.dedup();
        for &u in &users {
            let all: Vec<&RunResult> = r.throughput.iter().filter(|x| x.users == u).collect();
            let ok: Vec<&RunResult> = all.iter().copied().filter(|x| x.ok).collect();
            let _ = writeln!(
                out,
                "| {u} | {}/{} | {} | {} | {} | {} |",
                ok.len(),
                all.len(),
                cell(spread_of(&ok, |x| x.throughput_per_s), 0),
                cell(spread_of(&ok, |x| x.cpu_seconds_per_million_orders), 1),
                cell(spread_of(&ok, |x| x.peak_rss_mib), 0),
                ok.first()
                    .map_or("—".into(), |x| format!("{} of {}", x.completed_orders, x.orders))
            );
        }
        if let (Some(&small), Some(&large)) = (users.first(), users.last()) {
            let pairs = |u: u64| -> Vec<(u32, f64)> {
                r.throughput
                    .iter()
                    .filter(|x| x.users == u && x.ok)
                    .filter_map(|x| Some((x.repetition, x.throughput_per_s?)))
                    .collect()
            };
            large_ratio = stats::paired_ratio(&pairs(large), &pairs(small));
            let _ = writeln!(
                out,
                "\nThroughput at {large} users / at {small} users (median of paired ratios): {}.",
                cell(large_ratio, 2)
            );
        }
        out.push('\n');
    }
    let all_met = |values: &[Option<f64>], ok: fn(f64) -> bool| -> Option<bool> {
        if values.is_empty() || values.iter().any(Option::is_none) {
            return None;
        }
        Some(values.iter().flatten().all(|v| ok(*v)))
    };
    let _ = writeln!(
        out,
        "Targets: restore >= 500 000 records/s: {}; failover <= 5 s (with standbys): {}; partitions that do not move \
         pause <= 1 s: {}; throughput at the largest user count >= 0.8 of the smallest: {}.",
        verdict(all_met(&restore_medians, |v| v >= RESTORE_TARGET_PER_S)),
        verdict(all_met(&failover_medians, |v| v <= FAILOVER_TARGET_MS)),
        verdict(all_met(&pause_medians, |v| v <= UNAFFECTED_PAUSE_TARGET_MS)),
        verdict(large_ratio.map(|s| s.median >= LARGE_STATE_THROUGHPUT_TARGET))
    );
    let failed: Vec<String> = r
        .builds
        .iter()
        .filter(|b| !b.ok)
        .map(|b| format!("building {} users: {}", b.users, b.error.clone().unwrap_or_default()))
        .chain(r.restores.iter().filter(|x| !x.ok).map(|x| {
            format!(
                "restore of {} users, repetition {}: {}",
                x.users,
                x.repetition,
                x.error.clone().unwrap_or_default()
            )
        }))
        .chain(r.failovers.iter().filter(|x| !x.ok).map(|x| {
            format!(
                "failover at {} users, {} standbys, repetition {}: {}",
                x.users,
                x.standbys,
                x.repetition,
                x.error.clone().unwrap_or_default()
            )
        }))
        .chain(r.throughput.iter().filter(|x| !x.ok).map(|x| {
            format!(
                "throughput at {} users, repetition {}: {}",
                x.users,
                x.repetition,
                x.error.clone().unwrap_or_default()
            )
        }))
        .collect();
    if failed.is_empty() {
        out.push_str("\nEvery repetition passed its checks (each order decided exactly once).\n");
    }
    for f in failed {
        let _ = writeln!(out, "\n- FAILED: {f}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore(users: u64, repetition: u32, per_s: f64) -> RestoreResult {
        RestoreResult {
            users,
            repetition,
            ok: true,
            error: None,
            restored_records: Some(users as f64),
            restore_s: Some(users as f64 / per_s),
            records_per_s: Some(per_s),
            start_to_running_s: Some(users as f64 / per_s + 1.0),
            peak_rss_mib: Some(300.0),
        }
    }

    fn report(restores: Vec<RestoreResult>, failovers: Vec<FailoverResult>) -> ElasticReport {
        ElasticReport {
            format: ELASTIC_FORMAT.into(),
            label: "abc".into(),
            machine: "2 cores".into(),
            started_at_ms: 0,
            finished_at_ms: None,
            repetitions: 2,
            settings: String::new(),
            builds: Vec::new(),
            restores,
            failovers,
            throughput: Vec::new(),
        }
    }

    #[test]
    fn medians_of_the_passed_repetitions_and_a_verdict_per_target() {
        let r = report(
            vec![
                restore(1_000, 0, 600_000.0),
                restore(1_000, 1, 400_000.0),
                restore(1_000, 2, 800_000.0),
            ],
            Vec::new(),
        );
        let text = render(&r, "x.json");
        assert!(
            text.contains("| 1000 | 3/3 | 1000 (1000–1000) | 600000 (400000–800000) |"),
            "{text}"
        );
        assert!(text.contains("restore >= 500 000 records/s: met"), "{text}");
        assert!(text.contains("failover <= 5 s (with standbys): not measured"), "{text}");
        assert!(r.correct());
    }

    #[test]
    fn a_failed_repetition_is_listed_and_fails_the_report() {
        let failed = FailoverResult {
            users: 1_000,
            standbys: 1,
            repetition: 0,
            ok: false,
            error: Some("2 orders decided twice, 0 never (of 10)".into()),
            order_rate: 100,
            moved: vec![1, 4],
            failover_ms: Some(4_000),
            unaffected_gap_ms: Some(200),
            join_moved: Vec::new(),
            join_unaffected_gap_ms: None,
            orders: 10,
            decided_twice: 2,
            never_decided: 0,
            peak_rss_mib: None,
        };
        let r = report(vec![restore(1_000, 0, 100_000.0)], vec![failed]);
        let text = render(&r, "x.json");
        assert!(!r.correct());
        assert!(text.contains("| 1000 | 1 | 0/1 | — | — | — |"), "{text}");
        assert!(
            text.contains("FAILED: failover at 1000 users, 1 standbys, repetition 0: 2 orders decided twice"),
            "{text}"
        );
        assert!(text.contains("restore >= 500 000 records/s: **missed**"), "{text}");
    }
}
