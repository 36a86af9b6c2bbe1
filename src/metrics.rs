//! Every Prometheus metric creditstream exports, registered once in one registry, plus
//! the `/metrics` endpoint the processor and sink serve when run alone (the ingest serves
//! the same registry on its own port). Labels are bounded: routes, statuses, topics,
//! partitions and reasons, never a uid or an order id.

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::LazyLock;
use warp::Filter;

pub struct Metrics {
    pub registry: Registry,
    // ingest
    pub ingest_requests: IntCounterVec,
    pub ingest_request_duration: HistogramVec,
    pub ingest_produce_duration: HistogramVec,
    pub ingest_produce_errors: IntCounterVec,
    pub ingest_unavailable: IntCounter,
    // processor
    pub records_consumed: IntCounterVec,
    pub decisions: IntCounterVec,
    pub end_to_end_latency: Histogram,
    pub commit_duration: Histogram,
    pub commit_phase: HistogramVec,
    pub decision_phase: HistogramVec,
    pub transactions_aborted: IntCounter,
    pub rebalances: IntCounterVec,
    pub assigned_partitions: IntGauge,
    pub processor_state: IntGauge,
    pub stream_thread_state: IntGaugeVec,
    pub restoring_tasks: IntGauge,
    pub restored_records: IntCounter,
    pub restore_duration: Histogram,
    pub restore_rate: IntGauge,
    pub standby_tasks: IntGauge,
    pub standby_lag: IntGaugeVec,
    pub task_idle: IntCounterVec,
    pub active_tasks: IntGaugeVec,
    pub paused_partitions: IntGauge,
    pub expired_entries: IntCounter,
    pub changelog_read_stalls: IntCounter,
    pub input_read_stalls: IntCounter,
    pub store_keys: IntGaugeVec,
    pub store_size: IntGaugeVec,
    pub dead_letters: IntCounterVec,
    pub processor_lag: IntGaugeVec,
    // sink
    pub sink_rows: IntCounterVec,
    pub sink_batch_rows: Histogram,
    pub sink_batch_duration: Histogram,
    pub sink_db_errors: IntCounterVec,
    pub sink_db_retries: IntCounter,
    pub sink_lag: IntGaugeVec,
    pub sink_rebalances: IntCounterVec,
    pub thread_call_seconds: GaugeVec,
    pub sink_kafka_errors: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    metric
}

fn plain_histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    metric
}

fn seconds_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 16).unwrap_or_default()
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        let _ = r.register(Box::new(pc));
        let secs = seconds_buckets;
        Self {
            ingest_requests: counter(
                &r,
                "creditstream_ingest_requests_total",
                "HTTP requests by route and status code.",
                &["route", "status"],
            ),
            ingest_request_duration: histogram(
                &r,
                "creditstream_ingest_request_duration_seconds",
                "HTTP request duration by route.",
                &["route"],
                secs(),
            ),
            ingest_produce_duration: histogram(
                &r,
                "creditstream_ingest_produce_duration_seconds",
                "Time from produce to broker acknowledgement, by topic.",
                &["topic"],
                secs(),
            ),
            ingest_produce_errors: counter(
                &r,
                "creditstream_ingest_produce_errors_total",
                "Produces that failed or timed out, by kind.",
                &["kind"],
            ),
            ingest_unavailable: IntCounter::new(
                "creditstream_ingest_unavailable_total",
                "Requests answered 503 because Kafka or MySQL was unavailable.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            records_consumed: counter(
                &r,
                "creditstream_processor_records_consumed_total",
                "Input records consumed, by topic.",
                &["topic"],
            ),
            decisions: counter(
                &r,
                "creditstream_processor_decisions_total",
                "Order decisions committed, by status.",
                &["status"],
            ),
            end_to_end_latency: plain_histogram(
                &r,
                "creditstream_processor_end_to_end_latency_seconds",
                "Order timestamp to decision committed.",
                secs(),
            ),
            commit_phase: histogram(
                &r,
                "creditstream_processor_commit_phase_seconds",
                "One phase of a commit: flush (the transaction's deliveries acknowledged), send_offsets (its wait past the flush: the offsets are sent while the deliveries are awaited), commit_transaction, stores (the stores' write batches).",
                &["phase"],
                secs(),
            ),
            decision_phase: histogram(
                &r,
                "creditstream_processor_decision_phase_seconds",
                "Where a committed decision's time went: queued (order timestamp to processed: produce, fetch, buffering), awaiting_commit (processed to its transaction committed).",
                &["phase"],
                secs(),
            ),
            commit_duration: plain_histogram(
                &r,
                "creditstream_processor_commit_duration_seconds",
                "Duration of a commit (transaction commit under exactly_once_v2).",
                secs(),
            ),
            transactions_aborted: IntCounter::new(
                "creditstream_processor_transactions_aborted_total",
                "Transactions aborted and rolled back.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            rebalances: counter(
                &r,
                "creditstream_processor_rebalances_total",
                "Rebalance events, by kind (assign, revoke, lost).",
                &["kind"],
            ),
            assigned_partitions: IntGauge::new(
                "creditstream_processor_assigned_partitions",
                "Partitions of the topology this replica owns (its credit-check tasks).",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            processor_state: IntGauge::new(
                "creditstream_processor_state",
                "The replica's state, the worst of its stream threads': 0 running, 1 recovering from a retriable failure, 2 stopped on a fatal error.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            stream_thread_state: gauge(
                &r,
                "creditstream_stream_thread_state",
                "Each stream thread's state: 0 running, 1 recovering from a retriable failure, 2 stopped on a fatal error.",
                &["thread"],
            ),
            restoring_tasks: IntGauge::new(
                "creditstream_processor_restoring_tasks",
                "Tasks restoring their store from the changelog right now.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            restored_records: IntCounter::new(
                "creditstream_processor_restored_records_total",
                "Changelog records applied while restoring state.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            restore_duration: plain_histogram(
                &r,
                "creditstream_processor_restore_duration_seconds",
                "Duration of one task's restore.",
                exponential_buckets(0.001, 2.0, 18).unwrap_or_default(),
            ),
            restore_rate: IntGauge::new(
                "creditstream_processor_restore_records_per_second",
                "Changelog records applied per second by the state updater over the last second (restores and standbys).",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            standby_tasks: IntGauge::new(
                "creditstream_processor_standby_tasks",
                "Standby tasks this replica keeps warm (a copy of another replica's store).",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            standby_lag: gauge(
                &r,
                "creditstream_processor_standby_lag_records",
                "Changelog records a standby task has not applied yet, by partition.",
                &["partition"],
            ),
            active_tasks: gauge(
                &r,
                "creditstream_processor_active_task",
                "1 for each task this replica runs right now (restored, reading its inputs), by task id (sub-topology_partition).",
                &["task"],
            ),
            task_idle: counter(
                &r,
                "creditstream_processor_task_idle_total",
                "Times a task began to wait for its other input (waited), and records it processed without a caught-up input once max_task_idle_ms had passed (enforced).",
                &["outcome"],
            ),
            paused_partitions: IntGauge::new(
                "creditstream_processor_paused_partitions",
                "Input partitions paused: their task is restoring, or its buffer of them is full while it waits for the other input.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            expired_entries: IntCounter::new(
                "creditstream_processor_expired_entries_total",
                "State entries the processor's scheduled work removed once their retention passed (order de-duplication entries).",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            changelog_read_stalls: IntCounter::new(
                "creditstream_processor_changelog_read_stalls_total",
                "Times a changelog read (restore, standby) stood still 5 s with committed records beyond it: a defect, detected and logged with the partition, position and last stable offset, never worked around.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            input_read_stalls: IntCounter::new(
                "creditstream_processor_input_read_stalls_total",
                "Times a running task's unpaused input stood still 10 s with committed records beyond it: a defect, detected and logged with the partition, position and last stable offset, never worked around.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            store_keys: gauge(
                &r,
                "creditstream_processor_store_keys",
                "RocksDB's estimate of live keys, by partition.",
                &["partition"],
            ),
            store_size: gauge(
                &r,
                "creditstream_processor_store_size_bytes",
                "RocksDB's SST files plus memtables, by partition.",
                &["partition"],
            ),
            dead_letters: counter(
                &r,
                "creditstream_processor_dead_letters_total",
                "Records sent to the dead-letter topic, by reason.",
                &["reason"],
            ),
            processor_lag: gauge(
                &r,
                "creditstream_processor_consumer_lag_records",
                "Records between the committed position and the log end, by topic and partition.",
                &["topic", "partition"],
            ),
            sink_rows: counter(
                &r,
                "creditstream_sink_rows_written_total",
                "Rows written to MySQL, by table.",
                &["table"],
            ),
            sink_batch_rows: plain_histogram(
                &r,
                "creditstream_sink_batch_size_rows",
                "Records per database transaction.",
                exponential_buckets(1.0, 2.0, 14).unwrap_or_default(),
            ),
            sink_batch_duration: plain_histogram(
                &r,
                "creditstream_sink_batch_duration_seconds",
                "Duration of one batch's database transaction.",
                secs(),
            ),
            sink_db_errors: counter(
                &r,
                "creditstream_sink_db_errors_total",
                "Database errors, by kind (transient, fatal).",
                &["kind"],
            ),
            sink_db_retries: IntCounter::new(
                "creditstream_sink_db_retries_total",
                "Batches retried after a transient database error.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            sink_lag: gauge(
                &r,
                "creditstream_sink_consumer_lag_records",
                "Records between the sink's position and the log end, by topic and partition.",
                &["topic", "partition"],
            ),
            sink_rebalances: counter(
                &r,
                "creditstream_sink_rebalances_total",
                "The sink consumer's rebalance events, by kind (assign, revoke, lost, error).",
                &["kind"],
            ),
            sink_kafka_errors: counter(
                &r,
                "creditstream_sink_kafka_errors_total",
                "Errors the sink's consumer met, by kind (transient, fatal, commit, pause).",
                &["kind"],
            ),
            thread_call_seconds: {
                let name = "creditstream_thread_call_seconds";
                let metric = GaugeVec::new(
                    Opts::new(
                        name,
                        "How long each runtime thread has been in the call it makes now (broker calls, commits, polls).",
                    ),
                    &["thread", "call"],
                )
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
                r.register(Box::new(metric.clone()))
                    .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
                metric
            },
            registry: r,
        }
        .register_plain()
    }

    fn register_plain(self) -> Self {
        for c in [
            &self.ingest_unavailable,
            &self.transactions_aborted,
            &self.restored_records,
            &self.expired_entries,
            &self.changelog_read_stalls,
            &self.input_read_stalls,
            &self.sink_db_retries,
        ] {
            let _ = self.registry.register(Box::new(c.clone()));
        }
        let _ = self.registry.register(Box::new(self.assigned_partitions.clone()));
        let _ = self.registry.register(Box::new(self.processor_state.clone()));
        for g in [
            &self.restoring_tasks,
            &self.restore_rate,
            &self.standby_tasks,
            &self.paused_partitions,
        ] {
            let _ = self.registry.register(Box::new(g.clone()));
        }
        self
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The registry in Prometheus' text format.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&metrics().registry.gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}

/// The `/metrics` route.
pub fn route() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| warp::reply::with_header(render(), "content-type", "text/plain; version=0.0.4"))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown` completes.
/// `/readyz` answers 503 while a stream thread recovers from a failure or after it
/// stopped on a fatal one (`creditstream_processor_state` above 0).
pub async fn serve(addr: SocketAddr, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), warp::Error> {
    let health = warp::path("healthz").and(warp::path::end()).map(|| "ok");
    let ready = warp::path("readyz").and(warp::path::end()).map(|| {
        let (status, text) = match metrics().processor_state.get() {
            0 => (warp::http::StatusCode::OK, "ok"),
            1 => (warp::http::StatusCode::SERVICE_UNAVAILABLE, "recovering"),
            _ => (warp::http::StatusCode::SERVICE_UNAVAILABLE, "failed"),
        };
        warp::reply::with_status(text, status)
    });
    let (_, server) = warp::serve(route().or(health).or(ready)).try_bind_with_graceful_shutdown(addr, shutdown)?;
    server.await;
    Ok(())
}
