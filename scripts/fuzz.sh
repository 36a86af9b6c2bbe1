#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] - runs every fuzz target (tests/fuzz: topic payloads, state
# values, HTTP parameters and dict literals) for SECONDS each (default 60) with cargo fuzz
# on the nightly toolchain. Crashes land in tests/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in topic_payloads state_values http_parameters; do
  echo "fuzz: $target for ${seconds}s"
  cargo +nightly fuzz run --fuzz-dir . -O "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | grep -E "DONE|Done|ERROR|SUMMARY" || true
  if [ -n "$(ls artifacts/"$target" 2>/dev/null)" ]; then
    echo "fuzz: $target found crashes in tests/fuzz/artifacts/$target" >&2
    exit 1
  fi
done
