#!/usr/bin/env bash
# scripts/cluster.sh ARGS... - scripts/stack.sh ARGS... on the three-broker cluster the
# liveness tests use (tests/cluster_liveness.rs): its own state dir and ports, so it runs
# beside the single-broker stack. Exports what the tests read to find it, e.g.
#   scripts/cluster.sh up --brokers 3 --kafka-only
#   scripts/cluster.sh brokers | scripts/cluster.sh kill broker-2 | scripts/cluster.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
export CREDITSTREAM_CLUSTER_STATE_DIR=${CREDITSTREAM_CLUSTER_STATE_DIR:-$PWD/.state/cluster3}
export CREDITSTREAM_CLUSTER_KAFKA_PORT=${CREDITSTREAM_CLUSTER_KAFKA_PORT:-19092}
export CREDITSTREAM_CLUSTER_CONTROLLER_PORT=${CREDITSTREAM_CLUSTER_CONTROLLER_PORT:-19093}
CREDITSTREAM_STATE_DIR=$CREDITSTREAM_CLUSTER_STATE_DIR \
  KAFKA_PORT=$CREDITSTREAM_CLUSTER_KAFKA_PORT \
  KAFKA_CONTROLLER_PORT=$CREDITSTREAM_CLUSTER_CONTROLLER_PORT \
  exec scripts/stack.sh "$@"
