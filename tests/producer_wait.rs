//! Waiting for a producer's deliveries (every commit waits so, and the benchmark's loaders)
//! must sleep until librdkafka has something to report, not spin: rust-rdkafka's `poll`
//! waits in whole milliseconds and returns only at its deadline, so a loop of 1 ms polls
//! burns a core for as long as the broker takes to answer. Seen on the three-broker test
//! cluster: each replica's stream thread used 40 % of a core at ~40 orders/s, 97 % of it in
//! that loop, and the brokers it shares the machine with lost that CPU.

mod common;

use common::{producer_with, unique};
use creditstream::runtime::client;
use creditstream::runtime::event_wait::EventWait;
use rdkafka::producer::{BaseRecord, Producer};
use std::time::{Duration, Instant};

/// CPU time the calling thread has used (user and system), from `/proc/thread-self/stat`.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // The fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime field 14, stime field 15, in clock ticks (USER_HZ, 100/s).
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "current_thread")]
async fn a_wait_for_deliveries_sleeps_until_the_broker_answers() {
    let def = common::topology(1).await;
    let topic = def.inputs.orders.clone();
    // The record waits in librdkafka for its linger before it is even sent: a wait of
    // half a second that has nothing to do but sleep.
    let producer = producer_with(&[("linger.ms", "500"), ("client.id", &unique("wait-"))]);
    producer
        .send(BaseRecord::to(&topic).key("k").payload("v"))
        .map_err(|(error, _)| error)
        .expect("queued");

    let cpu_before = thread_cpu();
    let started = Instant::now();
    client::flush(&producer, Duration::from_secs(30)).expect("delivered");
    let waited = started.elapsed();
    let spent = thread_cpu() - cpu_before;
    eprintln!("waited {waited:?} for one delivery, using {spent:?} of CPU");

    assert!(
        waited >= Duration::from_millis(400),
        "the wait is the record's linger ({waited:?}); without it this test measures nothing"
    );
    // Spinning costs about the whole wait; sleeping, a few polls. A fifth leaves room for
    // a busy machine's clock-tick accounting.
    assert!(
        spent < waited / 5,
        "waiting {waited:?} for one delivery used {spent:?} of CPU: the wait spins"
    );
}

/// The other half: the sleep ends when the delivery comes, not at its timeout, so a wait
/// that sleeps without ever being woken (a lost wake-up) fails here.
#[tokio::test(flavor = "current_thread")]
async fn a_delivery_ends_the_sleep_before_its_timeout() {
    let def = common::topology(1).await;
    let topic = def.inputs.orders.clone();
    let producer = producer_with(&[("linger.ms", "0"), ("client.id", &unique("wake-"))]);
    let send = || {
        producer
            .send(BaseRecord::to(&topic).key("k").payload("v"))
            .map_err(|(error, _)| error)
            .expect("queued")
    };
    // The first delivery also looks up the partition's leader and the producer id.
    send();
    client::flush(&producer, Duration::from_secs(30)).expect("delivered");

    send();
    let events = EventWait::new(&producer).expect("a socket pair");
    let started = Instant::now();
    let mut sleeps = 0;
    loop {
        events.serve();
        if producer.in_flight_count() == 0 {
            break;
        }
        assert!(sleeps < 3, "still waiting after {sleeps} sleeps of 10 s");
        events.wait(Duration::from_secs(10));
        sleeps += 1;
    }
    let took = started.elapsed();
    eprintln!("one delivery in {took:?}, {sleeps} sleep(s)");
    assert!(
        took < Duration::from_secs(5),
        "the delivery took {took:?}: the sleep ran to its 10 s timeout, no wake-up came"
    );
}
