#!/usr/bin/env bash
# scripts/bench.sh [creditstream bench flags...] - the whole benchmark, end to end, on the
# local stack and in one run:
# - creditstream (1 and 2 replicas), the Kafka Streams peer (benches/peers/kafka-streams,
#   built here with Maven) and the raw pass-through, at exactly_once_v2 and at_least_once;
# - scaling: creditstream at 10 000, 1 000 000 and 10 000 000 users;
# - the sink against a plain INSERT loader, and the ingest against a 202-only route (wrk).
# Writes benches/results/<date>-<commit>.json and .md. Defaults: 100 000 users, 1 000 000
# orders. Shrink with e.g. `scripts/bench.sh --users 10000 --orders 100000
# --scaling-users 10000,100000`; `creditstream bench --help` lists every flag.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/release-binary.sh)

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench: installing wrk from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq wrk >/dev/null
fi
# Maven and the JDK are on the machine once the stack is up (scripts/stack.sh installs them).
peer=benches/peers/kafka-streams
echo "bench: building the Kafka Streams peer" >&2
mvn -q -B -f "$peer/pom.xml" package -DskipTests >&2
classpath="$PWD/$peer/target/classes:$PWD/$peer/target/lib/*"

scaling=(--scaling-users 10000,1000000,10000000)
for arg in "$@"; do
  case "$arg" in --scaling-users*) scaling=() ;; esac
done

label=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
out="benches/results/$(date -u +%Y-%m-%d)-$label.json"
mkdir -p benches/results
echo "bench: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; results in $out" >&2
"$bin" bench --label "$label" --kafka-streams-classpath "$classpath" "${scaling[@]}" --out "$out" "$@"
