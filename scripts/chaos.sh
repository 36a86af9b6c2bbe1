#!/usr/bin/env bash
# scripts/chaos.sh [--long] - the fault runner (tests/chaos.rs) on the local stack: three
# processor replicas, the sink and the ingest under load while replicas, the sink, MariaDB
# and the Kafka broker are killed and restarted; then the invariant checker must find
# nothing. The short run is part of scripts/test.sh; --long repeats it with longer outages.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--long" ]; then
  export CREDITSTREAM_CHAOS_LONG=1
fi
scripts/setup.sh
scripts/stack.sh up
export CREDITSTREAM_STACK=$PWD/scripts/stack.sh
cargo test --release --locked --test chaos -- --nocapture
