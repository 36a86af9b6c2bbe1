//! `creditstream-bench elastic`: what membership changes cost with large state, measured
//! on real replicas, broker and changelog (the figures; the tests assert only
//! bounds loose enough for a busy machine).
//!
//! The failover user count (and smaller) goes first, then the throughput runs, then the
//! larger user counts. For each user count the changelog is built once (one replica processes the creates and
//! stops gracefully). Then, repetition after repetition:
//! - restore: a replica on an empty state dir restores every task; records/s from the
//!   first restoring task seen to every task running, and its peak RSS;
//! - at the failover user count, with and without standbys, interleaved: three replicas on
//!   empty state dirs settle (restored, standbys caught up), a steady order load starts,
//!   one replica is killed with SIGKILL (failover: until a read_committed reader sees each
//!   of its partitions decide again; pause: the longest gap on the partitions that did not
//!   move), then a fourth replica joins (the longest gap on the partitions that stayed);
//!   every order must be decided exactly once;
//! - throughput at each user count, as the main benchmark's scaling runs.

use crate::decision_log::{self, DecisionLog};
use crate::elastic_report::{BuildResult, ElasticReport, FailoverResult, RestoreResult, ELASTIC_FORMAT};
use crate::error::BenchError;
use crate::load::{now_ms, Loader};
use crate::options::{BenchOptions, System};
use crate::replica::{alive, settled, waited, Replica, LAG_UNDER_LOAD, RESTORING};
use crate::run::{self, RunSpec};
use crate::steady_load::{SteadyLoad, Target};
use crate::topics;
use crate::uids::UidDistribution;
use crate::workload::Workload;
use creditstream::config::Config;
use creditstream::topology::definition::{ProcessingGuarantee, TopologyDefinition};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const RESTORED: &str = "creditstream_processor_restored_records_total";
const CONSUMED: &str = "creditstream_processor_records_consumed_total";
/// Load before the kill, and after each change settled.
const STEADY: Duration = Duration::from_secs(3);

/// What `elastic` measures.
pub struct ElasticOptions {
    /// User counts whose restore is measured.
    pub restore_users: Vec<u64>,
    /// The user count of the failover runs (0 skips them).
    pub failover_users: u64,
    /// User counts of the throughput runs (empty skips them).
    pub throughput_users: Vec<u64>,
    /// Orders per second of the steady load.
    pub order_rate: u64,
}

struct Built {
    users: u64,
    def: TopologyDefinition,
    dir: PathBuf,
    workload: Workload,
    /// The next order number not sent yet (order ids never repeat on one changelog).
    next_order: u64,
}

impl Built {
    fn topology_file(&self) -> PathBuf {
        self.dir.join("topology.toml")
    }
}

struct Cx<'a> {
    config: &'a Config,
    base: &'a TopologyDefinition,
    opts: &'a BenchOptions,
    elastic: &'a ElasticOptions,
    stamp: String,
    report: ElasticReport,
}

impl Cx<'_> {
    fn save(&self) {
        if let Some(path) = &self.opts.out {
            if let Err(e) = self.report.save(path) {
                eprintln!("elastic: cannot write {}: {e}", path.display());
            }
        }
    }

    fn replica(&self, built: &Built, name: &str, standbys: usize) -> Result<Replica, BenchError> {
        let state = built.dir.join(format!("{name}-{}", now_ms()));
        Replica::start(self.opts, self.config, &built.topology_file(), &state, name, standbys)
    }
}

/// Generous bounds for work that grows with the users: a minute plus 1 s per 10 000.
fn budget(users: u64) -> Duration {
    Duration::from_secs(60 + users / 10_000)
}

fn build(cx: &Cx<'_>, users: u64) -> Result<(Built, f64), String> {
    eprintln!("elastic: building the changelog of {users} users ...");
    let tag = format!("e{}-u{users}", cx.stamp);
    let (def, dir) = topics::prepare(cx.config, cx.base, cx.opts, &tag, ProcessingGuarantee::ExactlyOnceV2)
        .map_err(|e| e.to_string())?;
    let built = Built {
        users,
        def,
        dir,
        workload: Workload::new(users, users, UidDistribution::Uniform),
        next_order: 0,
    };
    let loader = Loader::new(&cx.config.kafka).map_err(|e| e.to_string())?;
    let partitions = built.def.partitions;
    loader
        .produce(&built.def.inputs.user_commands, users as usize, None, |i| {
            built.workload.user_record(i as u64, partitions)
        })
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut builder = cx.replica(&built, "builder", 0).map_err(|e| e.to_string())?;
    waited(budget(users) * 3, "the creates processed", || {
        alive(&mut [&mut builder])?;
        Ok(builder.metrics().filter(|m| m.value(CONSUMED) >= users as f64))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    match builder.stop() {
        Some(status) if status.success() => Ok((built, seconds)),
        other => Err(format!("the builder ended with {other:?}")),
    }
}

fn restore(cx: &Cx<'_>, built: &Built, repetition: u32) -> RestoreResult {
    eprintln!("elastic: restore of {} users, rep {repetition} ...", built.users);
    let mut result = RestoreResult {
        users: built.users,
        repetition,
        ok: false,
        error: None,
        restored_records: None,
        restore_s: None,
        records_per_s: None,
        start_to_running_s: None,
        peak_rss_mib: None,
    };
    if let Err(e) = restore_on(cx, built, &mut result) {
        result.error = Some(e);
    }
    result
}

fn restore_on(cx: &Cx<'_>, built: &Built, result: &mut RestoreResult) -> Result<(), String> {
    let started = Instant::now();
    let mut replica = cx.replica(built, "fresh", 0).map_err(|e| e.to_string())?;
    let mut first_restoring: Option<Instant> = None;
    let partitions = built.def.partitions as usize;
    let restored = waited(budget(built.users) * 3, "every task restored and running", || {
        alive(&mut [&mut replica])?;
        let Some(m) = replica.metrics() else {
            return Ok(None);
        };
        if m.value(RESTORING) > 0.0 {
            first_restoring.get_or_insert_with(Instant::now);
        }
        let running = m.active().len() == partitions && m.value(RESTORING) == 0.0;
        Ok((running && m.value(RESTORED) > 0.0).then(|| m.value(RESTORED)))
    })?;
    let done = Instant::now();
    let restore_s = (done - first_restoring.unwrap_or(started)).as_secs_f64();
    result.restored_records = Some(restored);
    result.restore_s = Some(restore_s);
    result.records_per_s = Some(restored / restore_s.max(1e-3));
    result.start_to_running_s = Some((done - started).as_secs_f64());
    result.peak_rss_mib = replica.peak_rss_mib();
    if restored < built.users as f64 {
        return Err(format!("restored {restored} records of at least {}", built.users));
    }
    result.ok = true;
    Ok(())
}

/// Partitions of `owners` whose owner is `name`.
fn owned_by(owners: &BTreeMap<i32, String>, name: &str) -> Vec<i32> {
    owners.iter().filter(|(_, o)| *o == name).map(|(p, _)| *p).collect()
}

fn failover(cx: &Cx<'_>, built: &mut Built, standbys: usize, repetition: u32) -> FailoverResult {
    eprintln!(
        "elastic: failover at {} users, {standbys} standbys, rep {repetition} ...",
        built.users
    );
    let rate = cx.elastic.order_rate;
    let mut result = FailoverResult {
        users: built.users,
        standbys,
        repetition,
        ok: false,
        error: None,
        order_rate: rate,
        moved: Vec::new(),
        failover_ms: None,
        unaffected_gap_ms: None,
        join_moved: Vec::new(),
        join_unaffected_gap_ms: None,
        orders: 0,
        decided_twice: 0,
        never_decided: 0,
        peak_rss_mib: None,
    };
    if let Err(e) = failover_on(cx, built, standbys, &mut result) {
        result.error = Some(e);
    }
    result
}

fn failover_on(cx: &Cx<'_>, built: &mut Built, standbys: usize, result: &mut FailoverResult) -> Result<(), String> {
    let e = |e: BenchError| e.to_string();
    let partitions = built.def.partitions;
    let mut a = cx.replica(built, "a", standbys).map_err(e)?;
    let mut b = cx.replica(built, "b", standbys).map_err(e)?;
    let mut c = cx.replica(built, "c", standbys).map_err(e)?;
    let before = settled(&mut [&mut a, &mut b, &mut c], partitions, 0.0, budget(built.users) * 3)?;
    let log = DecisionLog::start(&cx.config.kafka, &built.def.outputs.decisions, partitions).map_err(e)?;
    let first_order = built.next_order as i64 + 1;
    let target = Target {
        topic: built.def.inputs.orders.clone(),
        partitions,
        users: built.users,
        first: built.next_order,
    };
    let load = SteadyLoad::start(&cx.config.kafka, target, result.order_rate).map_err(e)?;
    std::thread::sleep(STEADY);
    let killed_at = now_ms();
    c.kill();
    result.moved = owned_by(&before, "c");
    let seen_again = waited(
        Duration::from_secs(60),
        "the killed replica's partitions deciding again",
        || {
            let firsts = log.first_seen_after(&result.moved, killed_at);
            Ok(firsts
                .iter()
                .all(Option::is_some)
                .then(|| firsts.into_iter().flatten().max()))
        },
    )?;
    result.failover_ms = seen_again.map(|t| t - killed_at);
    let after_kill = settled(&mut [&mut a, &mut b], partitions, LAG_UNDER_LOAD, budget(built.users))?;
    let failover_settled_at = now_ms();
    std::thread::sleep(STEADY);
    let joined_at = now_ms();
    let mut d = cx.replica(built, "d", standbys).map_err(e)?;
    let after_join = settled(
        &mut [&mut a, &mut b, &mut d],
        partitions,
        LAG_UNDER_LOAD,
        budget(built.users) * 2,
    )?;
    let join_settled_at = now_ms();
    std::thread::sleep(STEADY);
    let orders = load.stop()?;
    built.next_order += orders as u64;
    result.orders = orders;
    waited(Duration::from_secs(120), "every order decided", || {
        Ok((log.count() as i64 >= orders).then_some(()))
    })?;
    result.peak_rss_mib = [&a, &b, &d].iter().filter_map(|r| r.peak_rss_mib()).reduce(f64::max);
    let seen = log.finish();
    let stayed = |from: &BTreeMap<i32, String>, to: &BTreeMap<i32, String>| -> Vec<i32> {
        from.iter()
            .filter(|(p, o)| to.get(p) == Some(o))
            .map(|(p, _)| *p)
            .collect()
    };
    let longest =
        |ps: &[i32], from: i64, to: i64| ps.iter().map(|&p| decision_log::longest_gap(&seen, p, from, to)).max();
    result.unaffected_gap_ms = longest(&stayed(&before, &after_kill), killed_at, failover_settled_at);
    let join_stayed = stayed(&after_kill, &after_join);
    result.join_moved = owned_by(&after_join, "d");
    result.join_unaffected_gap_ms = longest(&join_stayed, joined_at, join_settled_at + STEADY.as_millis() as i64);
    let (twice, missing) = decision_log::twice_and_missing(&seen, first_order, orders);
    (result.decided_twice, result.never_decided) = (twice, missing);
    if twice > 0 || missing > 0 {
        return Err(format!("{twice} orders decided twice, {missing} never (of {orders})"));
    }
    result.ok = true;
    Ok(())
}

fn settings(config: &Config, elastic: &ElasticOptions) -> String {
    let p = &config.processor;
    format!(
        "Replicas: `creditstream process` with the default configuration (session_timeout_ms={}, commit_interval_ms={}, \
         commit_max_records={}, block_cache_mb={}, write_buffer_mb={}), each on its own empty state dir; every process \
         shares the machine's cores with the broker and the load. Restore: one replica alone (num_standby_replicas=0) \
         restores the changelog one replica built. Failover: {} orders/s, uniform over the users, num_standby_replicas 1 \
         and 0 interleaved; a read_committed reader times the decisions.",
        p.session_timeout_ms, p.commit_interval_ms, p.commit_max_records, p.block_cache_mb, p.write_buffer_mb, elastic.order_rate
    )
}

/// Runs everything `elastic` asks for. Blocking: call it from `spawn_blocking`.
pub fn run(
    config: &Config,
    base: &TopologyDefinition,
    opts: &BenchOptions,
    elastic: &ElasticOptions,
) -> Result<ElasticReport, BenchError> {
    std::fs::create_dir_all(&opts.work_dir)?;
    let started_at_ms = now_ms();
    let stamp = crate::schedule::run_id(started_at_ms, std::process::id());
    let report = ElasticReport {
        format: ELASTIC_FORMAT.into(),
        label: opts.label.clone(),
        machine: crate::report::machine(),
        started_at_ms,
        finished_at_ms: None,
        repetitions: opts.repetitions,
        settings: settings(config, elastic),
        builds: Vec::new(),
        restores: Vec::new(),
        failovers: Vec::new(),
        throughput: Vec::new(),
    };
    let mut cx = Cx {
        config,
        base,
        opts,
        elastic,
        stamp,
        report,
    };
    cx.save();
    let mut counts: Vec<u64> = elastic.restore_users.clone();
    counts.extend(Some(elastic.failover_users).filter(|&u| u > 0));
    counts.sort_unstable();
    counts.dedup();
    // The failover user count and smaller ones first, then the throughput runs, then the
    // larger restores (the longest part), so a run stopped early has the failovers.
    let mut throughput_done = false;
    for users in counts {
        if users > elastic.failover_users && !throughput_done {
            throughput(&mut cx);
            throughput_done = true;
        }
        let mut built = match build(&cx, users) {
            Ok((built, seconds)) => {
                cx.report.builds.push(BuildResult {
                    users,
                    ok: true,
                    error: None,
                    seconds: Some(seconds),
                });
                built
            }
            Err(e) => {
                eprintln!("elastic:   FAILED: {e}");
                cx.report.builds.push(BuildResult {
                    users,
                    ok: false,
                    error: Some(e),
                    seconds: None,
                });
                cx.save();
                continue;
            }
        };
        cx.save();
        for repetition in 0..opts.repetitions {
            if elastic.restore_users.contains(&users) {
                let result = restore(&cx, &built, repetition);
                report_line(result.error.as_deref());
                cx.report.restores.push(result);
                cx.save();
            }
            if users == elastic.failover_users {
                for standbys in [1, 0] {
                    let result = failover(&cx, &mut built, standbys, repetition);
                    report_line(result.error.as_deref());
                    cx.report.failovers.push(result);
                    cx.save();
                }
            }
        }
        topics::clean_up(&config.kafka, &built.def, System::Creditstream);
        let _ = std::fs::remove_dir_all(&built.dir);
    }
    if !throughput_done {
        throughput(&mut cx);
    }
    cx.report.finished_at_ms = Some(now_ms());
    cx.save();
    Ok(cx.report)
}

fn report_line(error: Option<&str>) {
    if let Some(e) = error {
        eprintln!("elastic:   FAILED: {e}");
    }
}

/// Throughput at each user count, interleaved (as the main benchmark's scaling runs).
fn throughput(cx: &mut Cx<'_>) {
    for repetition in 0..cx.opts.repetitions {
        for &users in &cx.elastic.throughput_users {
            let spec = RunSpec::scaling(
                users,
                cx.opts.orders,
                repetition,
                format!("e{}-scale-u{users}-n{repetition}", cx.stamp),
            );
            eprintln!("elastic: throughput at {users} users, rep {repetition} ...");
            let result = run::run_one(cx.config, cx.base, cx.opts, &spec);
            match &result.error {
                None => {
                    eprintln!("elastic:   {:.0} orders/s", result.throughput_per_s.unwrap_or(0.0));
                    let _ = std::fs::remove_dir_all(cx.opts.work_dir.join(&spec.tag));
                }
                Some(e) => eprintln!("elastic:   FAILED: {e}"),
            }
            cx.report.throughput.push(result);
            cx.save();
        }
    }
}
