//! MariaDB stopped for a few seconds in the middle of a stream and started again: the
//! sink pauses, retries, catches up, and no row is missing or duplicated. (Its own test
//! binary: it takes the shared database server away, so nothing else may run beside it.)

mod common;

use common::*;
use creditstream::app;
use creditstream::shutdown;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn the_sink_rides_out_a_database_outage() {
    let dir = tempfile::tempdir().unwrap();
    let def = topology(3).await;
    let mysql = database().await;
    let config = config(
        &def,
        Some(&mysql),
        dir.path(),
        "[sink]\nbatch_size = 200\nlinger_ms = 5\nretry_max_ms = 1000",
    );
    // Decisions as the processor writes them; each becomes two rows (Initialised, outcome).
    let decisions =
        |from: i64, to: i64| -> Vec<RawRecord> { (from..to).map(|i| completed_decision_record(i, 3)).collect() };
    let (trigger, _) = shutdown::channel();
    let stopper = trigger.clone();
    let (c, d) = (config.clone(), def.clone());
    let sink = tokio::spawn(async move { app::sink(&c, d, &trigger, false).await });

    produce(&def.outputs.decisions, &decisions(0, 1000));
    let first = snapshot_until(&mysql, Duration::from_secs(60), |(_, o)| o.len() >= 2000).await;
    assert_eq!(first.1.len(), 2000);

    stack(&["stop", "mariadb"]);
    produce(&def.outputs.decisions, &decisions(1000, 3000));
    // The outage itself: the database stays away while records keep arriving.
    std::thread::sleep(Duration::from_secs(4));
    produce(&def.outputs.decisions, &decisions(3000, 4000));
    stack(&["start", "mariadb"]);

    let done = snapshot_until(&mysql, Duration::from_secs(120), |(_, o)| o.len() >= 8000).await;
    stopper.trigger();
    sink.await.expect("sink task").expect("the sink survived the outage");
    let mut ids: Vec<i64> = done.1.iter().map(|r| r.1).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(done.1.len(), 8000, "no row missing, none duplicated");
    assert_eq!(ids, (0..4000).collect::<Vec<_>>());
}
