#!/usr/bin/env bash
# scripts/setup.sh - installs what building creditstream needs on a bare Debian machine:
# libclang (bindgen for librocksdb-sys), a C/C++ toolchain, make and cmake (RocksDB and
# librdkafka are built from source by their crates). Idempotent and quick when all is there.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v perl >/dev/null 2>&1 || need+=(perl)
command -v curl >/dev/null 2>&1 || need+=(curl)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev clang)
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || need+=(golang-go) # tests/grafana_schema (Go >= 1.21)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not on PATH; install Rust (rustup, stable >= 1.88) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component" >/dev/null 2>&1 || echo "setup: could not add the $component component" >&2
  fi
done
