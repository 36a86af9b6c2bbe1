#!/usr/bin/env bash
# scripts/bench.sh [creditstream-bench run flags...] - the whole benchmark, end to end, on
# the local stack and in one run (crates/creditstream-bench; the product binary has no
# benchmark in it):
# - the Kafka Streams peer's stream threads, 1 against 2, measured first; then creditstream's
#   own, 1 against 2 in one replica, --repetitions times each, interleaved (the report says
#   which pays; --stream-thread-probe-orders 0 skips it);
# - creditstream, the tuned Kafka Streams peer (benches/peers/kafka-streams, built here with
#   Maven) and the workload-matched pass-through, at exactly_once_v2 and at_least_once, at a
#   100 ms commit cadence and at creditstream's backlog cadence, each configuration 5 times,
#   interleaved; 2 replicas only where cores can be pinned to them;
# - latency at 25/50/75 % of Kafka Streams' maximum, the same rates for every system;
# - scaling: creditstream at 10 000, 1 000 000 and 10 000 000 users;
# - the sink against a plain INSERT loader, and the ingest against a 202-only route (wrk;
#   installed here from Debian's packages if missing, skipped and reported if it cannot be).
# Writes benches/results/<date>-<commit>[-dirty]-<time>.json and .md (every run keeps its
# own, failures included) and rewrites docs/benchmarks.md's section between <!-- bench:begin -->
# and <!-- bench:end --> from that report. Defaults: 100 000 users, 1 000 000 orders.
# Shrink with e.g. `scripts/bench.sh --users 10000 --orders 100000 --repetitions 2
# --scaling-users 10000,100000`; `creditstream-bench run --help` lists every flag.
set -euo pipefail
cd "$(dirname "$0")/.."
# The prerequisites and the local stack (unless CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS names
# a cluster); then both binaries: the bench runs `creditstream` from beside itself.
scripts/release-binary.sh >/dev/null
cargo build --release --locked -p creditstream -p creditstream-bench --bins >&2
bench="${CARGO_TARGET_DIR:-$PWD/target}/release/creditstream-bench"

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq wrk >/dev/null; }; then
    echo "bench: could not install wrk; the ingest runs will be skipped (the report says so)" >&2
  fi
fi
# Maven and the JDK are on the machine once the stack is up (scripts/stack.sh installs them).
peer=benches/peers/kafka-streams
echo "bench: building the Kafka Streams peer" >&2
mvn -q -B -f "$peer/pom.xml" package -DskipTests >&2
classpath="$PWD/$peer/target/classes:$PWD/$peer/target/lib/*"

# `scripts/bench.sh elastic [flags]`: restore, failover and joins with large state, and
# throughput by user count (creditstream-bench elastic; its own report and section of docs/benchmarks.md).
mode=run
if [ "${1:-}" = elastic ]; then
  mode=elastic
  shift
fi

scaling=(--scaling-users 10000,1000000,10000000)
for arg in "$@"; do
  case "$arg" in --scaling-users*) scaling=() ;; esac
done

label=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  label="$label-dirty"
fi
out="benches/results/$(date -u +%Y-%m-%d)-$label-$(date -u +%H%M%S).json"
mkdir -p benches/results
status=0
if [ "$mode" = elastic ]; then
  out="${out%.json}-elastic.json"
  echo "bench: $(nproc) cores; elasticity results in $out" >&2
  "$bench" elastic --label "$label" --out "$out" "$@" || status=$?
  if [ -f "$out" ]; then
    "$bench" docs --elastic-report "$out"
  fi
  exit "$status"
fi
echo "bench: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; results in $out" >&2
"$bench" run --label "$label" --kafka-streams-classpath "$classpath" "${scaling[@]}" --out "$out" "$@" || status=$?
if [ -f "$out" ]; then
  "$bench" docs --report "$out"
fi
exit "$status"
