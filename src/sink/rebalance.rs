//! The sink consumer's context: librdkafka calls it from inside `recv`, and it logs and
//! counts every rebalance (so an operator sees the sink leave and rejoin its group) and
//! every offset commit the broker refused.
//! Invariants: a partition leaves the assignment resumed (librdkafka keeps an application's
//! pause through unassign, so one revoked while the database was away would come back
//! paused and never be read again); beyond that it only reports, and the sink's loop
//! decides what any failure means.

use crate::metrics::metrics;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{info, warn};

/// The sink consumer's context (see the module doc).
#[derive(Debug, Default)]
pub struct SinkContext;

impl ClientContext for SinkContext {}

fn partitions(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}-{}", e.topic(), e.partition()))
        .collect()
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let kind = if rdkafka::consumer::Consumer::assignment_lost(consumer) {
                    "lost"
                } else {
                    "revoke"
                };
                metrics().sink_rebalances.with_label_values(&[kind]).inc();
                info!(kind, partitions = ?partitions(tpl), "sink partitions revoked");
                let resumed = rdkafka::consumer::Consumer::resume(consumer, tpl);
                if resumed.is_err() || tpl.elements().iter().any(|e| e.error().is_err()) {
                    metrics().sink_kafka_errors.with_label_values(&["pause"]).inc();
                    warn!(result = ?resumed.err(), "revoked partitions could not be resumed");
                }
            }
            Rebalance::Assign(tpl) => {
                metrics().sink_rebalances.with_label_values(&["assign"]).inc();
                info!(partitions = ?partitions(tpl), "sink partitions assigned");
            }
            Rebalance::Error(error) => {
                metrics().sink_rebalances.with_label_values(&["error"]).inc();
                warn!(%error, "sink rebalance error");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let refused = refused(offsets);
        if result.is_err() || !refused.is_empty() {
            metrics().sink_kafka_errors.with_label_values(&["commit"]).inc();
            warn!(
                result = ?result.err(),
                ?refused,
                "offset commit refused; the records are re-read and re-applied idempotently"
            );
        }
    }
}

/// The partitions of `tpl` librdkafka marked with an error (pause, resume and commit
/// results come back per partition in the list), as `topic-partition: error`.
pub fn refused(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .filter_map(|e| {
            e.error()
                .err()
                .map(|error| format!("{}-{}: {error}", e.topic(), e.partition()))
        })
        .collect()
}
