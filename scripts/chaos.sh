#!/usr/bin/env bash
# scripts/chaos.sh [--long] - the fault runners on the local stacks, then their invariant
# checks must find nothing:
# - tests/chaos.rs on the single-broker stack: three processor replicas, the sink and the
#   ingest under load while replicas, the sink, MariaDB and the Kafka broker are killed and
#   restarted;
# - tests/cluster_liveness.rs on the three-broker cluster (scripts/cluster.sh): broker
#   faults (leader and coordinator kill -9, rolling restart, a frozen broker, a frozen
#   transaction coordinator, a frozen group coordinator) under load, with every partition
#   deciding again within seconds, and tests/cluster_lookups.rs (an offsets look-up while a
#   partition's old leader is frozen, the group's committed offsets while its old
#   coordinator is frozen, the group's description and the ingest's readiness probe while
#   a broker is frozen).
# The short runs are part of scripts/test.sh; --long repeats them with longer outages and
# more rounds. The whole output is kept, failures included, in
# benches/results/chaos/<date>-<commit>-<time>[-long].log: docs/faults.md quotes it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--long" ]; then
  export CREDITSTREAM_CHAOS_LONG=1
  export CREDITSTREAM_LIVENESS_ROUNDS=${CREDITSTREAM_LIVENESS_ROUNDS:-3}
fi
scripts/setup.sh
scripts/stack.sh up
scripts/cluster.sh up --brokers 3 --kafka-only
export CREDITSTREAM_STACK=$PWD/scripts/stack.sh
export CREDITSTREAM_CLUSTER_STATE_DIR=${CREDITSTREAM_CLUSTER_STATE_DIR:-$PWD/.state/cluster3}
export CREDITSTREAM_CLUSTER_KAFKA_PORT=${CREDITSTREAM_CLUSTER_KAFKA_PORT:-19092}
export CREDITSTREAM_CLUSTER_CONTROLLER_PORT=${CREDITSTREAM_CLUSTER_CONTROLLER_PORT:-19093}
kind=${CREDITSTREAM_CHAOS_LONG:+-long}
mkdir -p benches/results/chaos
log=benches/results/chaos/$(date -u +%F)-$(git rev-parse --short HEAD)-$(date -u +%H%M%S)$kind.log
echo "chaos: keeping the output in $log"
# Every fault runner runs even when one before it failed; the script fails if any did.
{
  failed=0
  cargo test --release --locked --no-fail-fast --test chaos -- --nocapture || failed=1
  cargo test --release --locked --no-fail-fast --test cluster_liveness --test cluster_lookups -- --nocapture ||
    failed=1
  exit "$failed"
} 2>&1 | tee "$log"
