#!/usr/bin/env bash
# scripts/release-binary.sh - what running the system needs, shared by run.sh and bench.sh:
# the build prerequisites, the local stack (unless CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS
# names a cluster), and the release binary. Prints the binary's path on stdout; everything
# else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  scripts/setup.sh
  if [ -z "${CREDITSTREAM__KAFKA__BOOTSTRAP_SERVERS:-}" ]; then
    scripts/stack.sh up
  fi
  cargo build --release --locked --bin creditstream
} >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/release/creditstream"
