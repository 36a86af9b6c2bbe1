//! Several stream threads per replica (`processor.num_stream_threads`), on the real broker:
//! every thread is its own member of the group and the tasks spread over all of them;
//! replicas of two threads scale out and in under a backlog of orders; a thread that
//! fails on a fatal error stops its replica, whose tasks the others take over; a thread's
//! retriable failure rolls back that thread only; and every order is decided exactly once,
//! as the test driver decides it.

mod common;

use common::scenario::{assigned, Scenario, WAIT};
use common::*;
use creditstream::runtime::group_members::{self, Member};
use rdkafka::consumer::BaseConsumer;
use rdkafka::ClientConfig;
use std::collections::BTreeSet;
use std::time::Duration;

const USERS: i64 = 200;
const THREADS: (&str, &str) = ("CREDITSTREAM__PROCESSOR__NUM_STREAM_THREADS", "2");

/// The group's members once it is stable, sorted by member id.
fn members(group: &str) -> Vec<Member> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("consumer");
    match group_members::describe(&consumer, group, Duration::from_secs(5)) {
        Ok(g) if g.is_stable() => g.members,
        _ => Vec::new(),
    }
}

/// The credit-check partitions each member runs, by client id.
fn spread(members: &[Member], leader: &str) -> Vec<(String, BTreeSet<u32>)> {
    members
        .iter()
        .map(|m| {
            let mine = m
                .assigned
                .iter()
                .filter(|(t, _)| t == leader)
                .map(|(_, p)| *p)
                .collect();
            (m.client_id.clone(), mine)
        })
        .collect()
}

/// Waits until the group is stable with one member per thread in `clients`, each running at
/// least one credit-check task and all six running once.
fn spread_over(group: &str, leader: &str, clients: &[String]) -> Vec<(String, BTreeSet<u32>)> {
    let mut last = Vec::new();
    let settled = wait_until(WAIT, || {
        last = spread(&members(group), leader);
        let ids: BTreeSet<&String> = last.iter().map(|(c, _)| c).collect();
        let tasks: usize = last.iter().map(|(_, p)| p.len()).sum();
        let union: BTreeSet<u32> = last.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        ids == clients.iter().collect() && last.iter().all(|(_, p)| !p.is_empty()) && tasks == 6 && union.len() == 6
    });
    assert!(settled, "the tasks never spread over {clients:?}: {last:?}");
    last
}

/// The client ids of `replica`'s two stream threads.
fn threads_of(application: &str, replica: &str) -> Vec<String> {
    (0..2)
        .map(|n| format!("{application}-{replica}-stream-thread-{n}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_threads_per_replica_share_the_tasks_scale_and_fail_without_deciding_twice() {
    let dir = KeptOnFailure::new("stream-threads");
    let mut scenario = Scenario::new(USERS).await;
    let (group, leader) = (scenario.def.application_id.clone(), scenario.def.inputs.orders.clone());
    let root = dir.path().to_path_buf();
    let replica = |scenario: &Scenario, name: &str, extra: &[(&str, &str)]| {
        let mut env = vec![THREADS, ("CREDITSTREAM__PROCESSOR__REPLICA_ID", name)];
        env.extend_from_slice(extra);
        scenario.replica_with(&root.join(name), &env)
    };

    // One replica of two threads runs every task, three in each thread.
    scenario.orders(USERS, 1_500);
    let a = replica(&scenario, "a", &[]);
    let alone = spread_over(&group, &leader, &threads_of(&group, "a"));
    // The group's view settles before the second thread's assign callback has run.
    wait_until(WAIT, || assigned(&a) == 6.0);
    assert_eq!(assigned(&a), 6.0, "the replica's gauge sums its threads'");
    assert_eq!(
        a.metric("creditstream_stream_thread_state{thread=\"stream-thread-1\"}"),
        Some(0.0),
        "each thread reports its state"
    );
    drop(alone);

    // Scale out to two replicas of two threads under a backlog: four members, each runs a task.
    scenario.orders(USERS, 1_500);
    let mut b = replica(&scenario, "b", &[]);
    let mut four = threads_of(&group, "a");
    four.extend(threads_of(&group, "b"));
    spread_over(&group, &leader, &four);

    // Scale in: b leaves on SIGTERM, and a's threads take its tasks over.
    scenario.orders(USERS, 1_500);
    assert!(b.sigterm().success(), "b stops cleanly:\n{}", b.log_tail());
    spread_over(&group, &leader, &threads_of(&group, "a"));

    // A retriable failure (deliveries that time out) rolls back the thread that met it.
    scenario.orders(USERS, 1_500);
    let mut c = replica(&scenario, "c", &[("CREDITSTREAM_TEST_FAULTS", "deliveries_time_out=2")]);
    let mut with_c = threads_of(&group, "a");
    with_c.extend(threads_of(&group, "c"));
    spread_over(&group, &leader, &with_c);
    scenario.orders(USERS, 1_500);
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&c.log)
            .unwrap_or_default()
            .contains("rolled back; processing again")),
        "c never met its injected delivery timeout:\n{}",
        c.log_tail()
    );
    assert!(
        c.exited().is_none(),
        "a retriable failure stopped the replica:\n{}",
        c.log_tail()
    );
    assert!(c.sigterm().success(), "c stops cleanly:\n{}", c.log_tail());

    // A fatal failure in one thread stops the replica; a takes every task back. d joins
    // once every order so far is decided, so it fails on the orders produced after it got
    // its tasks, not on a backlog it is handed at once.
    let so_far = scenario.decisions(7_500).len();
    assert!(so_far >= 7_500, "only {so_far} of the first 7 500 orders were decided");
    let mut d = replica(&scenario, "d", &[("CREDITSTREAM_TEST_FAULTS", "process_error=100")]);
    let mut with_d = threads_of(&group, "a");
    with_d.extend(threads_of(&group, "d"));
    spread_over(&group, &leader, &with_d);
    scenario.orders(USERS, 1_500);
    let stopped = wait_until(WAIT, || d.exited().is_some());
    assert!(stopped, "a failed thread did not stop its replica:\n{}", d.log_tail());
    assert!(!d.exited().is_some_and(|s| s.success()), "d exits with its error");
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(
        log.contains("a thread of the replica failed; stopping its other threads"),
        "d does not say why it stopped:\n{}",
        d.log_tail()
    );
    spread_over(&group, &leader, &threads_of(&group, "a"));

    let total = 9_000;
    let decisions = scenario.decisions(total);
    scenario.check(&decisions);
    drop(a);
}
