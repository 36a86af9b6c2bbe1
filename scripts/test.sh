#!/usr/bin/env bash
# scripts/test.sh - the whole test suite: unit and driver tests, then integration tests
# against the real Kafka broker and MariaDB of scripts/stack.sh (started here if needed).
# Everything builds in the release profile, like scripts/run.sh, so RocksDB's C++ is
# compiled once for both.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# wrk is optional here: without it the benchmark's smoke test
# (crates/creditstream-bench/tests/bench_smoke.rs) checks that the report says the ingest run
# was skipped. scripts/bench.sh installs it.
# With Prometheus: it installs Debian's package, which tests/observability.rs runs its own instance of.
scripts/stack.sh up --with-prometheus
# The alerting rules and their unit tests (promtool comes with Debian's Prometheus).
promtool check rules config/alerts.yml
promtool test rules config/alerts.test.yml

export CREDITSTREAM_TEST_KAFKA=${CREDITSTREAM_TEST_KAFKA:-127.0.0.1:9092}
export CREDITSTREAM_TEST_MYSQL=${CREDITSTREAM_TEST_MYSQL:-mysql://creditstream:creditstream@127.0.0.1:3306}
export CREDITSTREAM_STACK=${CREDITSTREAM_STACK:-$PWD/scripts/stack.sh}
# Where tests/common/cluster.rs finds the three-broker cluster (scripts/cluster.sh's defaults).
export CREDITSTREAM_CLUSTER_STATE_DIR=${CREDITSTREAM_CLUSTER_STATE_DIR:-$PWD/.state/cluster3}
export CREDITSTREAM_CLUSTER_KAFKA_PORT=${CREDITSTREAM_CLUSTER_KAFKA_PORT:-19092}
export CREDITSTREAM_CLUSTER_CONTROLLER_PORT=${CREDITSTREAM_CLUSTER_CONTROLLER_PORT:-19093}
# The API fuzzer tests/api_contract.rs runs (scripts/setup.sh installed it).
export CREDITSTREAM_SCHEMATHESIS=${CREDITSTREAM_SCHEMATHESIS:-${CREDITSTREAM_TOOLS:-$HOME/.cache/creditstream/tools}/schemathesis-4.32.5/bin/schemathesis}

# The whole workspace: the product and the benchmark crate (its smoke test runs the
# `creditstream` binary from beside `creditstream-bench`).
cargo build --release --locked --workspace --bins
cargo test --release --locked --workspace "$@" -- --skip on_three_brokers
# The liveness round on three brokers (replication factor 3, min.insync.replicas 2): the
# cluster (scripts/cluster.sh, its own state dir and ports beside the stack) runs only for
# it, so its brokers' load does not weigh on the timings of the tests above.
# Only the leader kill here, and the look-ups past a frozen broker (tests/cluster_lookups.rs:
# changelog offsets, the group's committed offsets, the group's description, the ingest's
# readiness probe): the coordinator kill, the rolling restart, the frozen broker, the
# frozen transaction coordinator and the frozen group coordinator run in
# scripts/chaos.sh --long (see tests/cluster_liveness.rs), which fails until each meets its
# bound (see benches/results/liveness/README.md).
scripts/cluster.sh up --brokers 3 --kafka-only
CREDITSTREAM_LIVENESS_FAULTS=${CREDITSTREAM_LIVENESS_FAULTS:-leader} \
  cargo test --release --locked --test cluster_liveness --test cluster_lookups -- on_three_brokers
scripts/cluster.sh down
