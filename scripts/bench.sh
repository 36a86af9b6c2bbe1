#!/usr/bin/env bash
# scripts/bench.sh [creditstream bench flags...] - the benchmark, end to end on the local
# stack: creditstream (1 and 2 replicas) and the raw pass-through peer, at exactly_once_v2
# and at_least_once, on the same broker and input. Writes
# benches/results/<date>-<commit>.json and .md. Defaults: 100 000 users, 1 000 000 orders;
# shrink with e.g. `scripts/bench.sh --users 10000 --orders 100000`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/release-binary.sh)
out="benches/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD 2>/dev/null || echo nogit).json"
mkdir -p benches/results
echo "bench: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; results in $out"
"$bin" bench --out "$out" "$@"
