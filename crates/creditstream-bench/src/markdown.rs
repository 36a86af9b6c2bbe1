//! The report as Markdown: the configurations, the throughput and efficiency of every
//! configuration (median, min and max over its repetitions), the paired ratios with the
//! targets and whether each is met, latency at the fixed rates, the failures with their
//! errors, and the other sections. The same text goes beside the JSON and into docs/benchmarks.md.

use crate::latency::{LatencyPhase, LatencyResult};
use crate::report::BenchReport;
use crate::run::RunResult;
use crate::stats::{self, Spread};
use crate::targets::targets;
use std::fmt::Write;

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.digits$}"))
}

/// "median (min–max)".
fn spread_cell(s: Option<Spread>, digits: usize) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.n == 1 => format!("{:.digits$}", s.median),
        Some(s) => format!("{:.digits$} ({:.digits$}–{:.digits$})", s.median, s.min, s.max),
    }
}

fn throughput(r: &RunResult) -> Option<f64> {
    r.throughput_per_s
}
fn cpu_per_million(r: &RunResult) -> Option<f64> {
    r.cpu_seconds_per_million_orders
}
fn rss(r: &RunResult) -> Option<f64> {
    r.peak_rss_mib
}
fn rss_per_million(r: &RunResult) -> Option<f64> {
    r.peak_rss_mib_per_million_orders
}
fn commit_interval(r: &RunResult) -> Option<f64> {
    r.achieved_commit_interval_ms
}
/// creditstream's share of the window its stream thread spent committing, %.
fn committing(r: &RunResult) -> Option<f64> {
    r.commit_share.map(|s| s * 100.0)
}
fn records_per_s(r: &RunResult) -> Option<f64> {
    r.output_records_per_s
}
fn mb_per_s(r: &RunResult) -> Option<f64> {
    r.output_bytes_per_s.map(|b| b / 1e6)
}
fn records_per_order(r: &RunResult) -> Option<f64> {
    r.output_records_per_order
}

fn configuration(out: &mut String, r: &BenchReport) {
    let _ = writeln!(out, "#### Configuration\n");
    let _ = writeln!(
        out,
        "- Cores: nproc {}; the bench ran on cores {}; taskset {}. {}",
        r.cores.nproc,
        r.cores.bench_affinity,
        if r.cores.taskset { "installed" } else { "missing" },
        r.replica_scaling
    );
    let _ = writeln!(out, "- Commit cadence: {}", r.cadence_matching);
    for s in &r.creditstream {
        let _ = writeln!(
            out,
            "- creditstream at {}: commit_interval_ms={}, commit_max_records={} (a backlog commits at most every {} ms), \
             commit_min_interval_ms={}, block_cache_mb={}, write_buffer_mb={}, buffered_records_per_partition={}, \
             max_task_idle_ms={}, num_standby_replicas={}, transaction_timeout_ms={}; {}.",
            s.cadence.label(),
            s.commit_interval_ms,
            s.commit_max_records,
            s.backlog_commits_at_most_every_ms,
            s.commit_min_interval_ms,
            s.block_cache_mb,
            s.write_buffer_mb,
            s.buffered_records_per_partition,
            s.max_task_idle_ms,
            s.num_standby_replicas,
            s.transaction_timeout_ms,
            s.clients
        );
    }
    if let Some(ks) = &r.kafka_streams {
        peer_configuration(out, ks);
    }
    if let Some(t) = &r.peer_threads {
        let _ = writeln!(out, "- Kafka Streams stream threads: {}. {}", t.threads, t.reason);
    }
    if let Some(t) = &r.stream_threads {
        let _ = writeln!(
            out,
            "- creditstream stream threads: {} (config/default.toml). {}",
            t.threads, t.reason
        );
    }
    out.push('\n');
}

/// `k=v, k=v` of a JSON object (strings unquoted).
fn pairs(v: &serde_json::Value, sep: &str) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect::<Vec<_>>()
                .join(sep)
        })
        .unwrap_or_default()
}

/// The peer's configuration as it printed it: its flags, JVM and RocksDB in the text, and
/// every resolved Streams, producer and consumer value in a folded block.
fn peer_configuration(out: &mut String, ks: &serde_json::Value) {
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "- Kafka Streams {} peer, flags: {}.",
        ks["kafka_streams_version"].as_str().unwrap_or("?"),
        pairs(&ks["flags"], ", ")
    );
    let _ = writeln!(
        out,
        "  - Store: {}; RocksDB: {}.",
        pairs(&ks["store"], ", "),
        pairs(&ks["rocksdb"], ", ")
    );
    let jvm = &ks["jvm"];
    let _ = writeln!(
        out,
        "  - JVM: Java {}, {} cores visible, max heap {} MiB, collectors {}, arguments `{}`.",
        jvm["java_version"].as_str().unwrap_or("?"),
        jvm["available_processors"],
        jvm["max_heap_bytes"].as_u64().map_or(0, |b| b >> 20),
        list(&jvm["garbage_collectors"]),
        list(&jvm["input_arguments"])
    );
    for (section, what) in [
        ("streams", "Streams"),
        ("producer", "producer"),
        ("main_consumer", "main consumer"),
    ] {
        let _ = writeln!(
            out,
            "  <details><summary>every {what} value</summary>\n\n  `{}`\n\n  </details>",
            pairs(&ks[section], "`, `")
        );
    }
}

fn throughput_table(out: &mut String, r: &BenchReport) {
    let _ = writeln!(
        out,
        "#### Throughput and efficiency ({}-order backlogs; median (min–max) of the repetitions that passed)\n",
        r.orders
    );
    // Reports from before the commit's share was read render as they did.
    let shares = r.runs.iter().any(|x| x.commit_share.is_some());
    let share_head = if shares { " committing % of the window |" } else { "" };
    let _ = writeln!(
        out,
        "| system | guarantee | cadence | replicas | passed | orders/s | commit every ms (achieved) |{share_head} CPU s / M orders | peak RSS MiB | RSS MiB / M orders | output records/order | records/s | MB/s |\n\
         |---|---|---|---|---|---|---|{}---|---|---|---|---|---|",
        if shares { "---|" } else { "" }
    );
    for k in r.keys() {
        let all = r.of(k).count();
        let passed = r.of(k).filter(|x| x.ok).count();
        let share = if shares {
            format!(" {} |", spread_cell(r.spread(k, committing), 1))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {passed}/{all} | {} | {} |{share} {} | {} | {} | {} | {} | {} |",
            k.system.name(),
            k.guarantee,
            k.cadence.label(),
            k.replicas,
            spread_cell(r.spread(k, throughput), 0),
            spread_cell(r.spread(k, commit_interval), 0),
            spread_cell(r.spread(k, cpu_per_million), 1),
            spread_cell(r.spread(k, rss), 0),
            spread_cell(r.spread(k, rss_per_million), 0),
            spread_cell(r.spread(k, records_per_order), 2),
            spread_cell(r.spread(k, records_per_s), 0),
            spread_cell(r.spread(k, mb_per_s), 1),
        );
    }
    out.push('\n');
}

fn targets_table(out: &mut String, r: &BenchReport) {
    let _ = writeln!(
        out,
        "#### Targets (ratios are medians of paired ratios: repetition i over repetition i)\n"
    );
    out.push_str("| target | measured, median (min–max) | goal | met |\n|---|---|---|---|\n");
    for t in targets(r) {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {met} |",
            t.what,
            spread_cell(t.measured, 2),
            t.goal
        );
    }
    out.push('\n');
}

fn latency_table(out: &mut String, r: &BenchReport) {
    if r.latency.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "#### Latency at fixed rates (order produced → decision visible to a read_committed consumer; every system, caught up, commits every 100 ms: Kafka Streams with commit.interval.ms=100, creditstream and the pass-through with commit_interval_ms = commit_min_interval_ms = 100)\n"
    );
    for rates in &r.latency_rates {
        let _ = writeln!(out, "- {}: {}", rates.guarantee, rates.basis);
    }
    out.push_str("\n| system | guarantee | orders/s | measured s | p50 ms | p99 ms | p99.9 ms | max ms | passed |\n|---|---|---|---|---|---|---|---|---|\n");
    // One pass over each system's runs and rates: the table's row, and the phase
    // breakdown's line, which follows the table.
    let mut breakdown = String::new();
    for runs in latency_groups(&r.latency) {
        let first = runs[0];
        // A single run shows its figures whether it passed or not; repetitions show the
        // spread of those that passed.
        let counted: Vec<&LatencyResult> = runs.iter().copied().filter(|l| l.ok || runs.len() == 1).collect();
        let verdict = match runs.as_slice() {
            [only] if only.ok => "yes".to_string(),
            [only] => format!("NO: {}", only.error.clone().unwrap_or_default()),
            _ => format!("{}/{}", runs.iter().filter(|l| l.ok).count(), runs.len()),
        };
        let rates = runs.iter().map(|l| l.phases.len()).max().unwrap_or(0);
        if rates == 0 {
            let _ = writeln!(
                out,
                "| {} | {} | — | — | — | — | — | — | {verdict} |",
                first.system.name(),
                first.guarantee
            );
        }
        for i in 0..rates {
            let Some(phase) = runs.iter().find_map(|l| l.phases.get(i)) else {
                continue;
            };
            let phases: Vec<&LatencyPhase> = counted.iter().filter_map(|l| l.phases.get(i)).collect();
            let over = |figure: fn(&LatencyPhase) -> Option<f64>| {
                let values: Vec<f64> = phases.iter().filter_map(|p| figure(p)).collect();
                spread_cell(stats::spread(&values), 0)
            };
            let share = phase
                .share_of_peer_max
                .map_or(String::new(), |s| format!(" ({:.0} %)", s * 100.0));
            let _ = writeln!(
                out,
                "| {} | {} | {}{share} | {} | {} | {} | {} | {} | {verdict} |",
                first.system.name(),
                first.guarantee,
                phase.rate_per_s,
                first.measured_s,
                over(|p| p.p50_ms),
                over(|p| p.p99_ms),
                over(|p| p.p999_ms),
                over(|p| p.max_ms)
            );
            if let Some(parts) = phase_medians(&phases) {
                let what = if phases.len() > 1 {
                    format!(
                        "median over {} repetitions of the mean ms per phase over each window",
                        phases.len()
                    )
                } else {
                    "mean ms per phase over the window".to_string()
                };
                let _ = writeln!(
                    breakdown,
                    "- {} {} at {} orders/s, {what}: {parts}",
                    first.system.name(),
                    first.guarantee,
                    phase.rate_per_s
                );
            }
        }
    }
    out.push('\n');
    if !breakdown.is_empty() {
        out.push_str(&breakdown);
        out.push('\n');
    }
}

/// Each phase of the breakdown (`name median`, in the order first seen) over `phases`, the
/// same rate's figures of several repetitions; `None` when none was broken down.
fn phase_medians(phases: &[&LatencyPhase]) -> Option<String> {
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in phases.iter().flat_map(|p| &p.breakdown_ms) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let parts: Vec<String> = names
        .iter()
        .map(|name| {
            let values: Vec<f64> = phases
                .iter()
                .filter_map(|p| p.breakdown_ms.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms))
                .collect();
            format!("{name} {}", num(stats::median(&values), 1))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The latency runs grouped by system and guarantee, in the order they first ran.
fn latency_groups(latency: &[LatencyResult]) -> Vec<Vec<&LatencyResult>> {
    let mut groups: Vec<Vec<&LatencyResult>> = Vec::new();
    for l in latency {
        match groups
            .iter_mut()
            .find(|g| g[0].system == l.system && g[0].guarantee == l.guarantee)
        {
            Some(group) => group.push(l),
            None => groups.push(vec![l]),
        }
    }
    groups
}

fn correctness(out: &mut String, r: &BenchReport) {
    let _ = writeln!(out, "#### Correctness\n");
    let agree = match r.decisions_agree() {
        Some(true) => "creditstream and Kafka Streams made the same decision for every order in every passed repetition (equal digests of all decisions, each also checked against the reference).",
        Some(false) => "**creditstream and Kafka Streams disagree on some decisions** (different digests).",
        None => "creditstream and Kafka Streams were not both measured.",
    };
    let _ = writeln!(out, "- {agree}");
    let failed: Vec<&RunResult> = r
        .runs
        .iter()
        .chain(&r.scaling)
        .chain(r.peer_threads.iter().flat_map(|t| &t.probe))
        .chain(r.stream_threads.iter().flat_map(|t| &t.probe))
        .filter(|x| !x.ok)
        .collect();
    if failed.is_empty() {
        let _ = writeln!(out, "- Every repetition passed its checks.");
    }
    for f in failed {
        let _ = writeln!(
            out,
            "- FAILED: {} {} {} x{} repetition {} ({}): {}",
            f.system.name(),
            f.guarantee,
            f.cadence.label(),
            f.replicas,
            f.repetition,
            f.section,
            f.error.clone().unwrap_or_default()
        );
    }
    out.push('\n');
}

fn others(out: &mut String, r: &BenchReport) {
    if !r.scaling.is_empty() {
        let _ = writeln!(
            out,
            "#### Scaling (creditstream, exactly_once_v2, backlog cadence, 1 replica)\n"
        );
        out.push_str("| users | passed | orders/s | CPU s / M orders | peak RSS MiB |\n|---|---|---|---|---|\n");
        let mut users: Vec<u64> = r.scaling.iter().map(|s| s.users).collect();
        users.dedup();
        users.sort_unstable();
        users.dedup();
        for u in users {
            let of: Vec<&RunResult> = r.scaling.iter().filter(|s| s.users == u).collect();
            let pick = |f: fn(&RunResult) -> Option<f64>| {
                crate::stats::spread(&of.iter().filter(|s| s.ok).filter_map(|s| f(s)).collect::<Vec<_>>())
            };
            let _ = writeln!(
                out,
                "| {u} | {}/{} | {} | {} | {} |",
                of.iter().filter(|s| s.ok).count(),
                of.len(),
                spread_cell(pick(throughput), 0),
                spread_cell(pick(cpu_per_million), 1),
                spread_cell(pick(rss), 0)
            );
        }
        out.push('\n');
    }
    if !r.sink.is_empty() {
        let sink: Vec<f64> = r.sink.iter().filter_map(|s| s.sink_rows_per_s).collect();
        let loader: Vec<f64> = r.sink.iter().filter_map(|s| s.loader_rows_per_s).collect();
        let pairs = |f: fn(&crate::sink::SinkResult) -> Option<f64>| -> Vec<(u32, f64)> {
            r.sink
                .iter()
                .filter(|s| s.correct)
                .filter_map(|s| f(s).map(|v| (s.repetition, v)))
                .collect()
        };
        let ratio = crate::stats::paired_ratio(&pairs(|s| s.sink_rows_per_s), &pairs(|s| s.loader_rows_per_s));
        let _ = writeln!(
            out,
            "#### Sink\n\n{} rows per repetition; passed {}/{}. creditstream sink {} rows/s, plain INSERT loader {} rows/s; sink / loader {}.\n",
            r.sink[0].rows,
            r.sink.iter().filter(|s| s.correct).count(),
            r.sink.len(),
            spread_cell(crate::stats::spread(&sink), 0),
            spread_cell(crate::stats::spread(&loader), 0),
            spread_cell(ratio, 2)
        );
    }
    if !r.ingest.is_empty() {
        let real: Vec<f64> = r
            .ingest
            .iter()
            .filter_map(|i| i.ingest.as_ref().map(|f| f.requests_per_s))
            .collect();
        let ceiling: Vec<f64> = r
            .ingest
            .iter()
            .filter_map(|i| i.ceiling.as_ref().map(|f| f.requests_per_s))
            .collect();
        let _ = writeln!(
            out,
            "#### Ingest\n\nwrk, {} connections, {} s per route; passed {}/{}. Ingest {} requests/s, 202-only route {} requests/s.\n",
            r.ingest[0].connections,
            r.ingest[0].seconds,
            r.ingest.iter().filter(|i| i.correct).count(),
            r.ingest.len(),
            spread_cell(crate::stats::spread(&real), 0),
            spread_cell(crate::stats::spread(&ceiling), 0)
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "- Not measured: {s}");
    }
}

/// The whole report as Markdown; `source` names the JSON it came from.
pub fn render(r: &BenchReport, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run `{}` ({source}) on {}: {} users, {} orders per backlog, {} uids, {} repetitions of every configuration, interleaved.\n",
        r.label, r.machine, r.users, r.orders, r.uids, r.repetitions
    );
    configuration(&mut out, r);
    throughput_table(&mut out, r);
    targets_table(&mut out, r);
    latency_table(&mut out, r);
    correctness(&mut out, r);
    others(&mut out, r);
    out
}
