//! Choices made before the throughput runs: the Kafka Streams peer's stream threads (1
//! against 2, measured in a small exactly_once_v2 run at 100 ms, unless given),
//! creditstream's stream threads measured 1 against 2 (unless skipped), and the
//! replica counts this machine can compare honestly (more than one only pinned with
//! taskset to cores of their own, else dropped with the reason in the report).

use crate::children::Cores;
use crate::options::{Cadence, PeerThreads, System};
use crate::report::ThreadsChoice;
use crate::run::{RunResult, RunSpec};
use crate::schedule::Context;
use crate::stats;
use creditstream::topology::definition::ProcessingGuarantee;

/// Repetitions of each thread count in the peer's thread probe.
const PROBE_REPETITIONS: u32 = 2;

/// The peer's thread count: given, or the faster of 1 and 2 in a small exactly_once_v2 run.
pub(crate) fn choose_threads(cx: &mut Context<'_>) -> Option<u32> {
    let peer = cx.opts.peer.as_ref()?;
    if !cx.opts.measures(System::KafkaStreams) {
        return None;
    }
    if let PeerThreads::Fixed(n) = peer.threads {
        cx.report.peer_threads = Some(ThreadsChoice {
            threads: n,
            reason: "Given with --kafka-streams-threads.".into(),
            probe: Vec::new(),
        });
        return Some(n);
    }
    let orders = peer.probe_orders.max(1000);
    let users = (cx.opts.users * orders / cx.opts.orders.max(1)).max(100);
    let mut probe = Vec::new();
    for repetition in 0..PROBE_REPETITIONS {
        for threads in [1, 2] {
            let spec = RunSpec {
                section: "thread probe",
                system: System::KafkaStreams,
                guarantee: ProcessingGuarantee::ExactlyOnceV2,
                cadence: Cadence::Every100Ms,
                replicas: 1,
                repetition,
                users,
                orders,
                peer_commit_interval_ms: 100,
                peer_threads: threads,
                stream_threads: None,
                pinned: None,
                tag: cx.tag(&format!("probe-t{threads}-n{repetition}")),
                users_first: false,
            };
            probe.push(cx.run(&spec));
        }
    }
    let median_of = |threads: u32| {
        let v: Vec<f64> = probe
            .iter()
            .filter(|r| r.ok && r.peer_threads == Some(threads))
            .filter_map(|r| r.throughput_per_s)
            .collect();
        stats::median(&v)
    };
    let (one, two) = (median_of(1), median_of(2));
    let (threads, reason) = match (one, two) {
        (Some(a), Some(b)) if b > a => (
            2,
            format!("Measured: 2 threads {b:.0} orders/s against 1 thread {a:.0} (median of {PROBE_REPETITIONS}, {orders} orders, exactly_once_v2, 100 ms): 2 is faster."),
        ),
        (Some(a), Some(b)) => (
            1,
            format!("Measured: 1 thread {a:.0} orders/s against 2 threads {b:.0} (median of {PROBE_REPETITIONS}, {orders} orders, exactly_once_v2, 100 ms): a second thread on {} cores does not pay.", cx.report.cores.nproc),
        ),
        _ => (1, "The thread probe did not give both figures (see its failures); 1 thread, Kafka Streams' default.".into()),
    };
    cx.report.peer_threads = Some(ThreadsChoice { threads, reason, probe });
    cx.save();
    Some(threads)
}

/// creditstream's stream threads, 1 against 2 in one replica: exactly_once_v2 at the
/// backlog cadence, `--repetitions` times each, interleaved (1 2 1 2 ...). Recorded in the
/// report with the measured reason; the throughput runs keep config/default.toml's count,
/// as users get it.
pub(crate) fn probe_stream_threads(cx: &mut Context<'_>) {
    let orders = cx.opts.stream_thread_probe_orders;
    if orders == 0 {
        return;
    }
    let users = (cx.opts.users * orders / cx.opts.orders.max(1)).max(100);
    let mut choice = ThreadsChoice {
        threads: cx.config.processor.num_stream_threads as u32,
        reason: String::new(),
        probe: Vec::new(),
    };
    for repetition in 0..cx.opts.repetitions {
        for threads in [1, 2] {
            let tag = cx.tag(&format!("st{threads}-n{repetition}"));
            let spec = RunSpec::stream_thread_probe(threads, users, orders, repetition, tag);
            choice.probe.push(cx.run(&spec));
            cx.report.stream_threads = Some(choice.clone());
            cx.save();
        }
    }
    // Where the cores went: the replica's own share, and the whole machine's (broker, load).
    let cores = |threads: u32, figure: fn(&RunResult) -> Option<f64>| {
        let values: Vec<f64> = choice
            .probe
            .iter()
            .filter(|r| r.ok && r.stream_threads == Some(threads))
            .filter_map(figure)
            .collect();
        stats::median(&values).map_or_else(|| "?".to_string(), |v| format!("{v:.2}"))
    };
    let replica = |r: &RunResult| Some(r.cpu_seconds? / r.window_s?);
    let machine = |r: &RunResult| r.machine_cores_busy;
    let reason = match choice.stream_thread_ratio(2) {
        Some(ratio) => format!(
            "Measured: 2 threads over 1 thread {:.2}x ({:.2}-{:.2}; median of {} paired repetitions, {orders} orders, exactly_once_v2, backlog cadence, {} cores). Cores busy, median: the replica {} with 1 thread and {} with 2; the whole machine (broker and load included) {} and {}. config/default.toml ships {}.",
            ratio.median,
            ratio.min,
            ratio.max,
            ratio.n,
            cx.report.cores.nproc,
            cores(1, replica),
            cores(2, replica),
            cores(1, machine),
            cores(2, machine),
            choice.threads
        ),
        None => "The probe did not give both figures (see its failures).".into(),
    };
    choice.reason = reason;
    cx.report.stream_threads = Some(choice);
    cx.save();
}

/// A replica count to run, and the cores each replica is pinned to (none: unpinned).
pub(crate) type ReplicaRun = (u32, Option<Vec<String>>);

/// The replica counts that can mean something here, and the cores of each replica.
pub(crate) fn replica_plan(cx: &mut Context<'_>) -> Vec<ReplicaRun> {
    let opts = cx.opts;
    let (plan, notes) = plan_replicas(
        &cx.report.cores,
        &opts.replicas,
        opts.cores_per_replica,
        opts.reserved_cores,
    );
    cx.report.replica_scaling = format!("{}.", notes.join("; "));
    for note in notes.iter().filter(|n| n.contains("dropped")) {
        cx.report.skipped.push(note.clone());
    }
    plan
}

/// Replicas to run (with the cores each is pinned to) and why others are dropped: more
/// than one replica only pinned with taskset (util-linux; a machine without it drops them)
/// and only where the cores suffice.
fn plan_replicas(cores: &Cores, replicas: &[u32], per_replica: u32, reserved: u32) -> (Vec<ReplicaRun>, Vec<String>) {
    let mut plan = Vec::new();
    let mut notes = vec!["1 replica runs unpinned (its cores are listed per repetition)".to_string()];
    for &r in replicas {
        if r <= 1 {
            plan.push((1, None));
            continue;
        }
        let needed = (r * per_replica + reserved) as usize;
        if !cores.taskset {
            notes.push(format!(
                "{r} replicas dropped: taskset (util-linux) is missing, so they cannot be pinned"
            ));
        } else if cores.nproc < needed {
            notes.push(format!(
                "{r} replicas dropped: they need {needed} cores ({} each, pinned with taskset, plus {} for the broker and the load generator) and this machine has {}; on shared cores the figure would measure oversubscription, not scaling",
                per_replica, reserved, cores.nproc
            ));
        } else {
            let lists = (0..r)
                .map(|i| {
                    let first = reserved + i * per_replica;
                    format!("{first}-{}", first + per_replica - 1)
                })
                .collect::<Vec<_>>();
            notes.push(format!(
                "{r} replicas pinned with taskset to cores {}",
                lists.join(", ")
            ));
            plan.push((r, Some(lists)));
        }
    }
    plan.dedup_by_key(|(r, _)| *r);
    (plan, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(nproc: usize, taskset: bool) -> Cores {
        Cores {
            nproc,
            taskset,
            bench_affinity: "0-7".into(),
        }
    }

    #[test]
    fn two_replicas_run_only_pinned_with_taskset_on_cores_to_spare() {
        let (plan, notes) = plan_replicas(&cores(8, true), &[1, 2], 2, 2);
        assert_eq!(plan, vec![(1, None), (2, Some(vec!["2-3".into(), "4-5".into()]))]);
        assert!(notes[1].contains("pinned with taskset to cores 2-3, 4-5"), "{notes:?}");

        let (plan, notes) = plan_replicas(&cores(8, false), &[1, 2], 2, 2);
        assert_eq!(plan, vec![(1, None)], "no taskset: dropped, never run unpinned");
        assert!(notes[1].contains("taskset (util-linux) is missing"), "{notes:?}");

        let (plan, notes) = plan_replicas(&cores(2, true), &[1, 2], 2, 2);
        assert_eq!(plan, vec![(1, None)]);
        assert!(notes[1].contains("need 6 cores"), "{notes:?}");
    }
}
