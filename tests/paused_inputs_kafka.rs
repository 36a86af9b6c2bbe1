//! The paused-inputs set against the real broker: librdkafka keeps an application's pause
//! on a partition through unassign and a later assign, so a partition given up while
//! paused must be resumed as it goes, or it comes back paused and never fetches again.

mod common;

use common::{bootstrap, unique};
use creditstream::runtime::streams::paused_inputs::PausedInputs;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn reads_a_record_within(consumer: &BaseConsumer, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_given_up_while_paused_fetches_again_when_it_comes_back() {
    let def = common::topology(1).await;
    let topic = def.inputs.orders.clone();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("pauses-"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning).expect("tpl");
    consumer.incremental_assign(&tpl).expect("assign");
    let record = || common::produce(&topic, &[(Some(0), Some(b"k".to_vec()), Some(b"v".to_vec()))]);
    // Fetching, as a task's input is long before it is paused.
    record();
    assert!(
        reads_a_record_within(&consumer, Duration::from_secs(15)),
        "the partition fetches"
    );

    let mut paused = PausedInputs::default();
    let input = (topic.clone(), 0);
    paused.apply(&consumer, BTreeSet::from([input.clone()])).expect("pause");
    record();
    assert!(
        !reads_a_record_within(&consumer, Duration::from_secs(2)),
        "a paused partition fetches nothing"
    );
    // Given up while paused, as a restoring task's inputs are when it is revoked.
    paused.release(&consumer, &BTreeSet::from([input])).expect("release");
    consumer.incremental_unassign(&tpl).expect("unassign");
    assert!(paused.is_empty());

    // Assigned again later (from the start): nothing pauses it now, so it must fetch.
    consumer.incremental_assign(&tpl).expect("assign again");
    assert!(
        reads_a_record_within(&consumer, Duration::from_secs(15)),
        "the partition came back paused: its records were never fetched"
    );
}
